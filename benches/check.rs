//! `tale check` on 1,000 generated stories of 50 actions each (SPEC §8:
//! under 1 s on one core). The baseline, measured in the same run, is the
//! YAML parse alone: the figure to quote is the ratio check / parse.

use criterion::{Criterion, criterion_group, criterion_main};
use tale_engine::check::{CheckOptions, SourceFile, check};
use tale_engine::yaml::{self, Limits};

/// One realistic story: a webhook, then 49 actions in a tree, each reading
/// its parent with a template.
fn story(n: usize) -> String {
    let mut s = format!("name: Generated story {n}\ndescription: bench\nactions:\n");
    s.push_str("  a0:\n    type: webhook\n    path: hook\n    secret: static-secret\n");
    for i in 1..50 {
        let parent = (i - 1) / 2;
        match i % 4 {
            0 => s.push_str(&format!(
                "  a{i}:\n    type: http_request\n    from: a{parent}\n    method: post\n    url: \"https://api{n}.example.com/items/{{{{ a{parent}.body.id }}}}\"\n    payload:\n      id: \"{{{{ a{parent}.body.id | default: 'none' }}}}\"\n      severity: \"{{{{ a0.body.severity | upcase }}}}\"\n    retry_on_status: [429, \"500-599\"]\n"
            )),
            1 => s.push_str(&format!(
                "  a{i}:\n    type: trigger\n    from: a{parent}\n    rules:\n      - {{ type: field==value, path: \"{{{{ a{parent}.body.status }}}}\", value: open }}\n"
            )),
            2 => s.push_str(&format!(
                "  a{i}:\n    type: transform\n    mode: message_only\n    from: a{parent}\n    payload:\n      summary: \"{{{{ a{parent}.body.title | truncate: 40 }}}} ({{{{ a0.body.id }}}})\"\n      tags: \"{{{{ a0.body.tags | as_object }}}}\"\n"
            )),
            _ => s.push_str(&format!(
                "  a{i}:\n    type: transform\n    mode: explode\n    from: a{parent}\n    path: \"{{{{ a{parent}.body.value | as_object }}}}\"\n    to: item\n"
            )),
        }
    }
    s
}

fn sources() -> Vec<SourceFile> {
    (0..1000)
        .map(|n| SourceFile::new(format!("stories/s{n}.yaml"), story(n)))
        .collect()
}

fn registry() -> &'static dyn tale_engine::action::ActionRegistry {
    &tale_actions::Registry
}

fn bench(c: &mut Criterion) {
    let files = sources();
    let mut group = c.benchmark_group("check_1000x50");
    group.sample_size(10);
    group.bench_function("baseline_yaml_parse", |b| {
        b.iter(|| {
            for f in &files {
                let _ = yaml::parse(&f.text, &Limits::default());
            }
        })
    });
    group.bench_function("check", |b| {
        b.iter(|| check(&files, &[], registry(), &CheckOptions::default()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
