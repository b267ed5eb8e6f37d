//! The stories shipped in `stories/` and `examples/` check clean, with the
//! environment of `examples/tale.env`, even with `--strict`.

use std::process::Command;

use crate::support::root;

/// `export NAME=value` lines of a shell env file.
pub(crate) fn env_file(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches(['"', '\'']).to_owned()))
        .collect()
}

#[test]
fn library_and_examples_check_clean_and_strict() {
    let root = root();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tale"));
    cmd.current_dir(&root)
        .args(["check", "--strict", "--color", "never", "stories", "examples"]);
    for (k, _) in std::env::vars() {
        if k.starts_with("TALE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env_file(&root.join("examples/tale.env")));
    let out = cmd.output().expect("run tale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.trim().is_empty(), "expected no diagnostics:\n{stdout}");
    assert!(stderr.contains("0 errors, 0 warnings"), "{stderr}");
}

/// The event of the first case of the story's tests that has one, else the
/// first sample event in its folder, else `{}`.
fn sample_event(story: &std::path::Path) -> std::path::PathBuf {
    let dir = story.parent().expect("folder");
    let tests = story.with_extension("test.yaml");
    if let Ok(text) = std::fs::read_to_string(&tests) {
        let limits = tale_engine::yaml::Limits::default();
        let json = tale_engine::yaml::parse(&text, &limits).expect("test file").to_json();
        let first = json["cases"].as_array().and_then(|cases| {
            cases
                .iter()
                .find(|c| c.get("event").is_some() || c.get("event_file").is_some())
        });
        if let Some(case) = first {
            if let Some(file) = case["event_file"].as_str() {
                return dir.join(file);
            }
            let path = std::env::temp_dir().join(format!(
                "tale-dry-{}.json",
                story.file_stem().and_then(|s| s.to_str()).unwrap_or("story")
            ));
            std::fs::write(&path, case["event"].to_string()).expect("write");
            return path;
        }
    }
    for name in ["sample-event.json", "alerts.json", "sample-notification.json"] {
        if dir.join(name).is_file() {
            return dir.join(name);
        }
    }
    let empty = std::env::temp_dir().join("tale-empty-event.json");
    std::fs::write(&empty, "{}").expect("write");
    empty
}

/// The `action:` of the first case of the story's tests, if it names one.
fn first_case_action(story: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(story.with_extension("test.yaml")).ok()?;
    let json = tale_engine::yaml::parse(&text, &tale_engine::yaml::Limits::default())
        .ok()?
        .to_json();
    json["cases"][0]["action"].as_str().map(str::to_owned)
}

#[test]
fn every_shipped_story_passes_a_dry_run_with_no_network() {
    let root = root();
    let mut stories: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["stories", "examples"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
                let p = entry.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
                if p.is_dir() {
                    stack.push(p);
                } else if name.ends_with(".yaml") && !name.ends_with(".test.yaml") && name != "resources.yaml" {
                    stories.push(p);
                }
            }
        }
    }
    stories.sort();
    assert!(stories.len() >= 17, "{stories:?}");
    for story in stories {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tale"));
        cmd.current_dir(&root)
            .arg("dry-run")
            .arg(&story)
            .arg("--event")
            .arg(sample_event(&story));
        // A story with several starts: where its first test case starts.
        if let Some(action) = first_case_action(&story) {
            cmd.args(["--action", &action]);
        }
        cmd.args([
            "--stories",
            "stories",
            "--stories",
            "examples/alert-triage",
            "--format",
            "json",
        ]);
        for (k, _) in std::env::vars() {
            if k.starts_with("TALE_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env_file(&root.join("examples/tale.env")));
        let out = cmd.output().expect("run tale");
        assert!(
            out.status.success(),
            "{}: {}{}",
            story.display(),
            String::from_utf8_lossy(&out.stdout)
                .chars()
                .take(3000)
                .collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
