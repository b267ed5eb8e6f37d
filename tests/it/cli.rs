//! Exit codes, usage errors and `tale graph`.

use crate::support::tale;

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tale(&["check", "--format", "yaml"]).status, 2);
    assert_eq!(tale(&["no-such-command"]).status, 2);
    assert_eq!(tale(&["--help"]).status, 0);
}

#[test]
fn a_missing_path_is_an_error_not_a_crash() {
    let out = tale(&["check", "--format", "json", "does/not/exist.yaml"]);
    assert_eq!(out.status, 1);
    assert!(out.stdout.contains("\"E001\""), "{}", out.stdout);
}

const STORY: &str = r#"
name: Graph alert intake
actions:
  receive:
    type: webhook
    path: alerts
    secret: static-secret
  get_alert:
    type: http_request
    from: receive
    url: "https://graph.microsoft.com/v1.0/security/alerts_v2/{{ receive.body.id }}"
  is_high:
    type: trigger
    from: get_alert
    rules:
      - { type: field==value, path: "{{ get_alert.body.severity }}", value: high }
  report:
    type: http_request
    from: get_alert.failure
    method: post
    url: https://hooks.example.com/failures
"#;

#[test]
fn graph_draws_mermaid_and_dot_with_branches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("intake.yaml");
    std::fs::write(&path, STORY).expect("write");
    let p = path.to_str().expect("utf-8 path");

    let mermaid = tale(&["graph", p]);
    assert_eq!(mermaid.status, 0, "{}", mermaid.stderr);
    assert!(mermaid.stdout.contains("flowchart TD"));
    assert!(mermaid.stdout.contains("receive --> get_alert"));
    assert!(mermaid.stdout.contains("get_alert -. failure .-> report"));

    let dot = tale(&["graph", "--format", "dot", p]);
    assert_eq!(dot.status, 0);
    assert!(dot.stdout.starts_with("digraph \"intake\""));
    assert!(
        dot.stdout
            .contains("\"get_alert\" -> \"report\" [label=\"failure\", style=dashed];")
    );
}

#[test]
fn graph_refuses_a_broken_story() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("loop.yaml");
    std::fs::write(&path, STORY.replace("from: receive\n", "from: is_high\n")).expect("write");
    let out = tale(&["graph", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("E204"), "{}", out.stderr);
}

/// A dry run says when a URL has an empty part (an unset resource) or is
/// relative: a mock would answer it anyway.
#[test]
fn dry_run_warns_about_urls_with_empty_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("u.yaml");
    std::fs::write(
        &story,
        "name: U\nactions:\n  hook: {type: webhook, path: u}\n  arm:\n    type: http_request\n    from: hook\n    url: \"https://management.azure.com/subscriptions/{{ hook.body.sub }}/resourceGroups/rg\"\n  relative:\n    type: http_request\n    from: hook\n    url: \"{{ hook.body.base }}/v1.0/me\"\n",
    )
    .expect("story");
    let out = crate::support::tale(&["dry-run", story.to_str().expect("path")]);
    assert!(
        out.stderr
            .contains("warning: action `arm`: the URL path `/subscriptions//resourceGroups/rg` has an empty segment"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("warning: action `relative`: the URL `/v1.0/me` is relative"),
        "{}",
        out.stderr
    );
}

/// Every subcommand's `--help` ends with examples, and every example is a
/// command line tale accepts (flags that exist, where they are accepted).
#[test]
fn every_subcommand_shows_examples_that_parse() {
    let commands = [
        "check", "schema", "graph", "run", "dry-run", "test", "record", "serve", "runs", "events", "explain",
    ];
    for command in commands {
        let help = crate::support::tale(&[command, "--help"]).stdout;
        let examples: Vec<&str> = help
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("`tale {command} --help` has no examples"))
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("tale ") || l.contains(" tale "))
            .collect();
        assert!(!examples.is_empty(), "{command}");
        for line in examples {
            // The tale part: after a pipe into it and an environment
            // assignment, before a pipe or a redirection out of it.
            let from = line.find("tale ").expect("tale");
            let line = &line[from..];
            let line = line.split(" | ").next().unwrap_or(line);
            let line = line.split(" > ").next().unwrap_or(line);
            let args = split_words(line);
            if let Err(e) = tale::parses(&args) {
                panic!("`{line}` does not parse: {e}");
            }
        }
    }
}

/// One naming for placeholders: the same kind of value has the same name
/// in every subcommand (`FILE`, `DIR`, `URL`, `N`, `DURATION`…).
#[test]
fn placeholders_use_one_naming() {
    let allowed = [
        "FILE", "DIR", "PATH", "STORY", "SLUG", "URL", "ADDR", "N", "BYTES", "DURATION", "TEXT", "ID", "RUN", "CODE",
        "KEY", "TOKEN", "FORMAT", "COLOR", "MODE", "STATUS", "OPTIONS", "COMMAND",
    ];
    let commands = [
        "check", "schema", "graph", "run", "dry-run", "test", "record", "serve", "runs", "events", "explain",
    ];
    let mut found = Vec::new();
    for command in commands {
        let help = crate::support::tale(&[command, "--help"]).stdout;
        for (open, close) in [('<', '>'), ('[', ']')] {
            for part in help.split(open).skip(1) {
                let Some(name) = part.split(close).next() else { continue };
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    if !allowed.contains(&name) {
                        found.push(format!("tale {command}: {open}{name}{close}"));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "placeholders outside the naming: {found:?}");
}

/// Words of a shell line: spaces split, double quotes group.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut quoted, mut any) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// `tale explain CODE` prints the reference section of a diagnostic, by
/// code or by name; an unknown code is a usage error.
#[test]
fn explain_prints_the_section_of_a_diagnostic() {
    let by_code = crate::support::tale(&["explain", "E404"]);
    assert_eq!(by_code.status, 0);
    assert!(by_code.stdout.starts_with("## E404 not-upstream"), "{}", by_code.stdout);
    assert!(!by_code.stdout.contains("## E405"), "one section only");
    let by_name = crate::support::tale(&["explain", "not-upstream"]);
    assert_eq!(by_name.stdout, by_code.stdout);
    let unknown = crate::support::tale(&["explain", "E999"]);
    assert_eq!(unknown.status, 2);
}
