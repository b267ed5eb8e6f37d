//! In-memory engine throughput (SPEC §8: a three-action transform chain, at
//! least 200,000 events/s on one core). The baseline, measured in the same
//! run, renders the chain's templates directly with no executor, no events
//! and no store: the ratio is what running a story costs on top of Liquid.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tale_engine::check::{CheckOptions, SourceFile, check};
use tale_engine::runtime::build::build;
use tale_engine::runtime::clock::VirtualClock;
use tale_engine::runtime::event::Event;
use tale_engine::runtime::exec::{Runtime, WebhookRequest};
use tale_engine::runtime::http::MockHttp;
use tale_engine::runtime::render::Compiler;
use tale_engine::runtime::scope::{Globals, Scope};
use tale_engine::template::TemplateParser;

const CHAIN: &str = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  normalize:
    type: transform
    mode: message_only
    from: receive
    payload: {id: "{{ receive.body.id }}", severity: "{{ receive.body.severity | downcase }}"}
  enrich:
    type: transform
    mode: message_only
    from: normalize
    payload: {id: "{{ normalize.id }}", serious: "{% if normalize.severity == 'high' %}yes{% endif %}"}
  shape:
    type: transform
    mode: message_only
    from: enrich
    payload: {title: "Alert {{ enrich.id }}", serious: "{{ enrich.serious }}"}
"#;

const RUNS: usize = 1000;

fn bench(c: &mut Criterion) {
    let files = [SourceFile::new("chain.yaml", CHAIN)];
    let checked = check(&files, &[], &tale_actions::Registry, &CheckOptions::default());
    assert_eq!(checked.errors(), 0, "{:?}", checked.diagnostics);
    let parser = TemplateParser::new();
    let story = Arc::new(build(&checked.stories[0], &parser, Globals::default()).expect("builds"));
    let entry = story.default_entry().expect("webhook");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("chain_3_transforms");
    // Four events a run: the webhook's and one per transform.
    group.throughput(Throughput::Elements((RUNS * 4) as u64));
    group.bench_function("engine", |b| {
        b.iter(|| {
            let runtime = Runtime::contained(
                Arc::new(MockHttp::default()),
                Arc::new(tale_engine::runtime::mail::NoMailer),
                Arc::new(VirtualClock::new(0)),
            );
            rt.block_on(async {
                for i in 0..RUNS {
                    let body = format!(r#"{{"id":"a{i}","severity":"HIGH"}}"#).into_bytes();
                    let request = WebhookRequest {
                        method: "post".into(),
                        body,
                        headers: vec![("content-type".into(), "application/json".into())],
                        trusted: true,
                        ..WebhookRequest::default()
                    };
                    let report = runtime.run_webhook(story.clone(), entry, request).await.expect("runs");
                    assert_eq!(report.events.len(), 4);
                }
            });
        })
    });

    // Baseline: the same templates rendered over the same data, by hand.
    let compiler = Compiler::new(&parser);
    let span = tale_engine::span::Span::default();
    let templates = [
        compiler.field("a", "{{ receive.body.id }}", span).expect("compiles"),
        compiler
            .field("b", "{{ receive.body.severity | downcase }}", span)
            .expect("compiles"),
        compiler
            .field("c", "{% if receive.body.severity == 'high' %}yes{% endif %}", span)
            .expect("compiles"),
        compiler
            .field("d", "Alert {{ receive.body.id }}", span)
            .expect("compiles"),
        compiler.field("e", "{{ receive.body.id }}", span).expect("compiles"),
    ];
    let globals = Globals::default();
    group.bench_function("baseline_render_only", |b| {
        b.iter(|| {
            for i in 0..RUNS {
                let output = serde_json::json!({"body": {"id": format!("a{i}"), "severity": "HIGH"}});
                let event = Arc::new(Event::new(
                    tale_engine::runtime::event::RunId::default(),
                    "s".into(),
                    "receive".into(),
                    Vec::new(),
                    output,
                    0,
                ));
                let scope = Scope::new(&globals, Some(&event));
                for t in &templates {
                    std::hint::black_box(t.render(&scope).expect("renders"));
                }
            }
        })
    });
    group.finish();
}

/// A story of `n` transforms in a line, each reading the webhook's body.
fn long_chain(n: usize) -> String {
    let mut text = String::from("actions:\n  hook: {type: webhook, path: c, secret: s}\n");
    let mut previous = "hook".to_owned();
    for i in 0..n {
        text.push_str(&format!(
            "  t{i}:\n    type: transform\n    mode: message_only\n    from: {previous}\n    payload: {{x: \"{{{{ hook.body.x }}}}\"}}\n"
        ));
        previous = format!("t{i}");
    }
    text
}

/// One run of a 500-step and of a 2,000-step chain reading the webhook at
/// every step: linear is 4x; walking the ancestry at each step was 34x.
fn chain_scaling(c: &mut Criterion) {
    let parser = TemplateParser::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("chain_scaling");
    group.sample_size(10);
    for n in [500, 2000] {
        let files = [SourceFile::new("long.yaml", long_chain(n))];
        let checked = check(&files, &[], &tale_actions::Registry, &CheckOptions::default());
        assert_eq!(checked.errors(), 0, "{:?}", checked.diagnostics);
        let story = Arc::new(build(&checked.stories[0], &parser, Globals::default()).expect("builds"));
        let entry = story.default_entry().expect("webhook");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("steps_{n}"), |b| {
            b.iter(|| {
                let runtime = Runtime::contained(
                    Arc::new(MockHttp::default()),
                    Arc::new(tale_engine::runtime::mail::NoMailer),
                    Arc::new(VirtualClock::new(0)),
                );
                rt.block_on(async {
                    let request = WebhookRequest {
                        method: "post".into(),
                        body: br#"{"x": 1}"#.to_vec(),
                        headers: vec![("content-type".into(), "application/json".into())],
                        trusted: true,
                        ..WebhookRequest::default()
                    };
                    let report = runtime.run_webhook(story.clone(), entry, request).await.expect("runs");
                    assert_eq!(report.events.len(), n + 1);
                });
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, chain_scaling);
criterion_main!(benches);
