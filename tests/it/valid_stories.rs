//! The stories shipped in `stories/` and `examples/` check clean, with the
//! environment of `examples/tale.env`, even with `--strict`.

use std::process::Command;

use crate::support::root;

/// `export NAME=value` lines of a shell env file.
fn env_file(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
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
