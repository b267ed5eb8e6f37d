//! The layers ARCHITECTURE.md draws, held by tests: which crate may depend
//! on which, which layers do no IO and run no async runtime, where YAML is
//! parsed and which types may be deserialized.

use std::path::{Path, PathBuf};

use crate::support::root;

/// The tale crates, where they live, and the tale crates each may use.
const LAYERS: &[(&str, &str, &[&str])] = &[
    ("tale-syntax", "engine/syntax", &[]),
    ("tale-template", "engine/template", &["tale-syntax"]),
    ("tale-core", "engine/core", &["tale-syntax", "tale-template"]),
    (
        "tale-check",
        "engine/check",
        &["tale-syntax", "tale-template", "tale-core"],
    ),
    ("tale-actions", "actions", &["tale-core"]),
    (
        "tale-engine",
        "engine",
        &["tale-syntax", "tale-template", "tale-core", "tale-check"],
    ),
    ("tale-store", "engine/store", &["tale-engine"]),
    (
        "tale-server",
        "engine/server",
        &["tale-engine", "tale-store", "tale-actions"],
    ),
];

/// The database drivers: only the store crate may use them.
const DRIVERS: &[&str] = &[
    "rusqlite",
    "tokio-postgres",
    "deadpool-postgres",
    "tokio-postgres-rustls",
];

/// The names in a Cargo.toml's `[dependencies]` table.
fn dependencies(dir: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).expect("Cargo.toml");
    let mut inside = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn dependencies_point_one_way() {
    for (name, dir, allowed) in LAYERS {
        for dep in dependencies(dir).iter().filter(|d| d.starts_with("tale-")) {
            assert!(
                allowed.contains(&dep.as_str()),
                "{name} depends on {dep}; it may use only {allowed:?}"
            );
        }
    }
    // The engine and the checker are above the action types: an action
    // depends on the contract, never on what runs or checks it.
    let actions = dependencies("actions");
    assert!(
        !actions.iter().any(|d| d == "tale-engine" || d == "tale-check"),
        "{actions:?}"
    );
}

/// The engine knows the store by its traits only: no crate but the store's
/// depends on a database driver or names one in its code.
#[test]
fn only_the_store_crate_talks_to_a_database() {
    for (name, dir, _) in LAYERS.iter().filter(|(name, _, _)| *name != "tale-store") {
        for dep in dependencies(dir) {
            assert!(!DRIVERS.contains(&dep.as_str()), "{name} depends on {dep}");
        }
    }
    for dir in [
        "engine/src",
        "engine/core/src",
        "engine/check/src",
        "engine/template/src",
        "engine/syntax/src",
        "engine/server/src",
        "actions/src",
        "src",
    ] {
        for file in sources(&root().join(dir)) {
            let code = code(&file);
            for word in ["rusqlite", "tokio_postgres", "deadpool_postgres"] {
                assert!(!code.contains(word), "{} names `{word}`", file.display());
            }
        }
    }
}

#[test]
fn the_layers_below_core_run_no_async_runtime_and_do_no_network() {
    for dir in ["engine/syntax", "engine/template", "engine/check"] {
        for dep in dependencies(dir) {
            assert!(
                !["tokio", "reqwest", "rusqlite", "lettre", "hyper", "axum"].contains(&dep.as_str()),
                "{dir} depends on {dep}"
            );
        }
    }
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// A source file without its test module (which comes last: clippy's
/// `items_after_test_module` holds that) and without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source");
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn syntax_template_and_check_do_no_io() {
    let forbidden = [
        "std::fs",
        "File::open",
        "TcpStream",
        "TcpListener",
        "UdpSocket",
        "std::process",
        "std::env::var",
        "tokio::",
        "reqwest::",
        "rusqlite::",
    ];
    for dir in ["engine/syntax/src", "engine/template/src", "engine/check/src"] {
        for file in sources(&root().join(dir)) {
            let code = code(&file);
            for word in forbidden {
                assert!(
                    !code.contains(word),
                    "{} uses `{word}`: this layer is given text, it does not read it",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn only_the_yaml_builder_runs_the_yaml_parser() {
    for dir in ["engine", "actions/src", "src"] {
        for file in sources(&root().join(dir)) {
            if file.ends_with("engine/syntax/src/yaml/build.rs") {
                continue;
            }
            let code = code(&file);
            for word in ["granit_parser", "serde_saphyr::from_", "serde_yaml"] {
                assert!(
                    !code.contains(word),
                    "{} parses YAML itself (`{word}`): go through tale_syntax::yaml, which applies the budgets",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn only_raw_types_and_stored_rows_derive_deserialize() {
    // Story files are decoded through yaml::de (spans, every unknown key):
    // the raw story model and the action configs. Besides them, the
    // credentials file's entries, the rows the SQLite store reads back, and
    // the claim of a signed prompt link (verified before it is decoded).
    let allowed = [
        "engine/syntax/src/model.rs",
        "engine/core/src/runtime/credentials.rs",
        "engine/core/src/runtime/links.rs",
        "engine/store/src/sqlite/mod.rs",
        "engine/src/runtime/runlog.rs",
    ];
    for dir in ["engine", "actions/src"] {
        for file in sources(&root().join(dir)) {
            let relative = file.strip_prefix(root()).expect("inside the repository");
            // The server decodes its own HTTP inputs (API bodies, UI forms),
            // as the binary decodes its arguments: not story files.
            if relative.starts_with("engine/server") {
                continue;
            }
            let is_action = relative.starts_with("actions/src");
            let derives = code(&file)
                .lines()
                .any(|l| l.trim_start().starts_with("#[derive(") && l.contains("Deserialize"));
            if derives {
                assert!(
                    is_action || allowed.iter().any(|a| relative == Path::new(a)),
                    "{} derives Deserialize",
                    relative.display()
                );
            }
        }
    }
}

/// The server and the commands reach a store through the traits
/// (`tale_store::backend`), never a backend by name: `--db` picks it once.
#[test]
fn nothing_above_the_engine_names_a_store_backend() {
    for file in sources(&root().join("src"))
        .into_iter()
        .chain(sources(&root().join("engine/server/src")))
    {
        let code = code(&file);
        for word in [
            "tale_store::sqlite",
            "tale_store::postgres",
            "SqliteStore",
            "SqliteReader",
            "PgStore",
            "rusqlite",
            "tokio_postgres",
        ] {
            assert!(
                !code.contains(word),
                "{} names `{word}`: go through tale_store::backend",
                file.display()
            );
        }
    }
}

/// The body of `pub trait NAME` in `code` (up to its closing brace).
fn trait_body<'a>(code: &'a str, name: &str) -> &'a str {
    let start = code
        .find(&format!("pub trait {name}"))
        .unwrap_or_else(|| panic!("no trait {name}"));
    let end = code[start..].find("\n}").expect("the end of the trait");
    &code[start..start + end]
}

/// The store contract is async (a database is: PostgreSQL will be), so
/// nothing waits for a store on an async thread: every method of the
/// store traits returns a future, except those that read a value the store
/// keeps in memory (`health`, `work_signal`, `incarnation`, `cluster`,
/// `keeps_traces`).
/// And nothing in the engine or the server blocks an async thread to wait
/// for the store (SQLite runs on its writer thread and on tokio's blocking
/// threads).
#[test]
fn the_store_contract_is_async_and_nothing_blocks_on_it() {
    let traits = [
        ("engine/core/src/runtime/store.rs", "StateStore"),
        ("engine/src/runtime/durable.rs", "DurableStore"),
        ("engine/src/runtime/runlog.rs", "RunLog"),
        ("engine/src/runtime/runlog.rs", "SecretStore"),
        ("engine/store/src/backend.rs", "ServeStore"),
    ];
    for (file, name) in traits {
        let code = code(&root().join(file));
        let body = trait_body(&code, name);
        let mut methods = 0;
        // Each signature runs from `fn` to its `;`.
        for signature in body.split("fn ").skip(1).map(|s| s.split(';').next().unwrap_or(s)) {
            methods += 1;
            if ["health(", "work_signal(", "incarnation(", "cluster(", "keeps_traces("]
                .iter()
                .any(|m| signature.starts_with(m))
            {
                continue;
            }
            assert!(
                signature.contains("BoxFuture<"),
                "{file}: `{name}::{}` does not return a future",
                signature.split('(').next().unwrap_or(signature)
            );
        }
        assert!(methods > 0, "{file}: no methods found in {name}");
    }
    for dir in ["engine/src", "engine/store/src", "engine/server/src", "src"] {
        for file in sources(&root().join(dir)) {
            let code = code(&file);
            for word in ["block_in_place", "blocking_send", "Handle::current().block_on"] {
                assert!(!code.contains(word), "{} waits with `{word}`", file.display());
            }
        }
    }
}

/// ARCHITECTURE.md names the test that holds each invariant: those tests
/// exist (a renamed or deleted test would leave an invariant unguarded).
#[test]
fn every_test_architecture_md_cites_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("## Invariants and boundaries")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the invariants section");
    let mut all_code = String::new();
    for dir in ["engine", "tests/it"] {
        for file in sources(&root().join(dir)) {
            all_code.push_str(&std::fs::read_to_string(file).expect("source"));
        }
    }
    let mut cited = 0;
    for quoted in section.split('`').skip(1).step_by(2) {
        let Some((module, name)) = quoted.rsplit_once("::") else {
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') || name.len() < 12 {
            continue;
        }
        cited += 1;
        assert!(
            all_code.contains(&format!("fn {name}(")),
            "ARCHITECTURE.md cites `{module}::{name}`, which no test defines"
        );
    }
    assert!(cited >= 10, "only {cited} tests cited");
}
