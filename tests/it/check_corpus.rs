//! The corpus of broken stories in `tests/data/check/`: each file (or folder,
//! for problems across stories) declares the codes it must produce in a
//! `# expect:` first line; its human and JSON outputs are snapshots.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tale_engine::diagnostic::Code;

use crate::support::{assert_snapshot, root, tale};

fn corpus() -> Vec<PathBuf> {
    let dir = root().join("tests/data/check");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/check exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    cases.sort();
    cases
}

/// The codes a case declares: `# expect: E202, W601` in the first line of
/// the file (or of any file of a folder case), or a sibling `.expect` file.
fn expected_codes(case: &Path) -> BTreeSet<String> {
    let mut texts = Vec::new();
    if case.is_dir() {
        for f in std::fs::read_dir(case).into_iter().flatten().flatten() {
            texts.push(std::fs::read(f.path()).unwrap_or_default());
        }
    } else {
        texts.push(std::fs::read(case).unwrap_or_default());
        texts.push(std::fs::read(case.with_extension("expect")).unwrap_or_default());
    }
    let mut codes = BTreeSet::new();
    for bytes in texts {
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().take(3) {
            let line = line.trim_start_matches('#').trim();
            if let Some(list) = line.strip_prefix("expect:") {
                codes.extend(list.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()));
            } else if line.len() == 4 && Code::from_code(line).is_some() {
                codes.insert(line.to_owned());
            }
        }
    }
    codes
}

#[cfg(unix)]
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

#[cfg(not(unix))]
fn set_private(_: &Path) {}

fn relative(case: &Path) -> String {
    case.strip_prefix(root()).unwrap_or(case).display().to_string()
}

#[test]
fn every_broken_story_reports_its_codes_at_the_snapshotted_places() {
    let cases = corpus();
    assert!(
        cases.len() >= 40,
        "the corpus has {} cases, want at least 40",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut seen_codes = BTreeSet::new();
    for case in &cases {
        let rel = relative(case);
        let want = expected_codes(case);
        if want.is_empty() {
            failures.push(format!("{rel}: no `# expect:` line"));
            continue;
        }
        // A case may come with a credentials file; tale refuses one that others
        // can read, and git checks files out as 0644: use a private copy.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut extra: Vec<String> = Vec::new();
        let creds = case.with_extension("credentials");
        if creds.is_file() {
            let private = dir.path().join("credentials.yaml");
            std::fs::copy(&creds, &private).expect("copy credentials");
            set_private(&private);
            extra = vec!["--credentials".into(), private.display().to_string()];
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let json = tale(&[&["check", "--format", "json"][..], &extra, &[rel.as_str()]].concat());
        let human = tale(&[&["check", "--color", "never"][..], &extra, &[rel.as_str()]].concat());
        let doc: serde_json::Value = match serde_json::from_str(&json.stdout) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{rel}: output is not JSON ({e}): {}", json.stdout));
                continue;
            }
        };
        let got: BTreeSet<String> = doc["diagnostics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["code"].as_str().map(str::to_owned))
            .collect();
        seen_codes.extend(got.iter().cloned());
        if got != want {
            failures.push(format!("{rel}: expected codes {want:?}, got {got:?}\n{}", human.stdout));
        }
        let errors = doc["errors"].as_u64().unwrap_or(0);
        let expected_status = if errors > 0 { 1 } else { 0 };
        if json.status != expected_status || human.status != expected_status {
            failures.push(format!(
                "{rel}: exit status {} / {}, expected {expected_status}",
                json.status, human.status
            ));
        }
        let snap = |ext: &str| {
            if case.is_dir() {
                case.join(format!("expected.{ext}"))
            } else {
                case.with_extension(ext)
            }
        };
        if let Err(e) = assert_snapshot(&snap("human.txt"), &format!("{}{}", human.stdout, human.stderr)) {
            failures.push(e);
        }
        if let Err(e) = assert_snapshot(&snap("json"), &json.stdout) {
            failures.push(e);
        }
    }
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.code())
        .filter(|c| !seen_codes.contains(*c))
        .collect();
    if !missing.is_empty() {
        failures.push(format!("no corpus case produces {missing:?}"));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_code_is_documented() {
    let docs = std::fs::read_to_string(root().join("docs/diagnostics.md")).expect("docs/diagnostics.md exists");
    for code in Code::ALL {
        let heading = format!("## {} {}", code.code(), code.name());
        assert!(
            docs.contains(&heading),
            "docs/diagnostics.md has no section `{heading}`"
        );
    }
}

#[test]
fn github_format_is_one_workflow_command_per_diagnostic() {
    let case = "tests/data/check";
    let out = tale(&["check", "--format", "github", case]);
    let json = tale(&["check", "--format", "json", case]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let n = doc["diagnostics"].as_array().map_or(0, Vec::len);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), n);
    for line in lines {
        assert!(
            line.starts_with("::error file=") || line.starts_with("::warning file="),
            "not a workflow command: {line}"
        );
        assert!(line.contains(",line=") && line.contains(",col=") && line.contains(",title="));
    }
    assert_eq!(out.status, 1);
}

#[test]
fn every_filter_is_documented() {
    let docs = std::fs::read_to_string(root().join("docs/templates.md")).expect("docs/templates.md exists");
    let words: BTreeSet<&str> = docs.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    for name in tale_engine::template::filters::all_filter_names() {
        assert!(
            words.contains(name),
            "docs/templates.md does not mention the filter `{name}`"
        );
    }
}

/// 20,000 repeated keys are one mistake made many times: the first
/// `MAX_REPEATS` are shown and the last says how many more there were; a
/// one-line flow mapping prints a window of its line, not the whole line
/// per diagnostic (82 MB before, for 4,000 repeats).
#[test]
fn repeated_diagnostics_are_capped_and_long_lines_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut block = String::from("name: Dup\nactions:\n  hook:\n    type: webhook\n    path: d\n");
    for _ in 0..20_000 {
        block.push_str("    path: d\n");
    }
    let many = dir.path().join("many.yaml");
    std::fs::write(&many, block).expect("write");
    let flow = dir.path().join("flow.yaml");
    std::fs::write(
        &flow,
        format!(
            "name: Dup\nactions:\n  hook: {{type: webhook, {}}}\n",
            vec!["path: d"; 4000].join(", ")
        ),
    )
    .expect("write");
    let cap = tale_engine::check::MAX_REPEATS;
    for format in ["human", "json"] {
        let out = tale(&["check", "--format", format, many.to_str().expect("path")]);
        let text = &out.stdout;
        // Each shown diagnostic names its code once, and the last also in its message.
        assert_eq!(text.matches("E004").count(), cap + 1, "{format}");
        assert!(text.contains(&format!("and {} more E004", 20_000 - cap)), "{format}");
    }
    let out = tale(&["check", flow.to_str().expect("path")]);
    assert!(out.stdout.len() < 100_000, "{} bytes", out.stdout.len());
    let text = &out.stdout;
    assert!(text.contains(&format!("and {} more E004", 3_999 - cap)), "{text}");
    // Exactly at the cap, nothing is hidden and nothing is said.
    let exact = dir.path().join("exact.yaml");
    let mut block = String::from("name: Dup\nactions:\n  hook:\n    type: webhook\n    path: d\n");
    for _ in 0..cap {
        block.push_str("    path: d\n");
    }
    std::fs::write(&exact, block).expect("write");
    let out = tale(&["check", exact.to_str().expect("path")]);
    assert_eq!(out.stdout.matches("error[E004]").count(), cap);
    assert!(!out.stdout.contains("more E004"));
}
