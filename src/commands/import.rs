//! `tale import EXPORT.json [--out DIR]`: a Tines story export (with the
//! sub-stories embedded in it) written as tale stories, an import report
//! of everything that did not carry over as it was, and a `tale.env`
//! template of the credentials and resources to set
//! (docs/migrating-from-tines.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value as J;

use crate::ExitStatus;

mod convert;
mod formula;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The Tines export (JSON: the UI's Export, or GET /api/v1/stories/<id>/export).
    pub(crate) export: PathBuf,
    /// Where the stories, `import-report.md` and `tale.env` go.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) out: PathBuf,
}

pub(crate) fn run(args: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let text = tale_engine::files::read_regular_text(&args.export, tale_engine::files::MAX_FILE_BYTES)
        .with_context(|| format!("cannot read {}", args.export.display()))?;
    let export: J = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON (a Tines export is)", args.export.display()))?;
    if !export["agents"].is_array() {
        anyhow::bail!(
            "{} has no `agents`: it is not a Tines story export",
            args.export.display()
        );
    }
    let stories = convert::stories(&export);
    // Names (and Tines slugs) of the stories of this export → tale ids.
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for s in &stories {
        let id = convert::story_id(s);
        if let Some(name) = s["name"].as_str() {
            ids.insert(name.to_owned(), id.clone());
            ids.insert(convert::slug(name), id.clone());
        }
        if let Some(slug) = s["slug"].as_str() {
            ids.insert(slug.to_owned(), id.clone());
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut report = format!(
        "# Import report: {}\n\nImported with `tale import` from `{}`. Review each note, set the credentials and\nresources (`tale.env` lists them), then `tale check --strict` this folder.\n",
        export["name"].as_str().unwrap_or("a Tines story"),
        args.export.display()
    );
    let mut env = String::from(
        "# Credentials and resources the imported stories name (fill in, then: set -a; . ./tale.env; set +a).\n",
    );
    let mut written = 0;
    let mut noted = 0;
    let mut seen_ids = std::collections::BTreeSet::new();
    let mut paths = std::collections::BTreeSet::new();
    for story in &stories {
        let imported = convert::convert(story, &ids, &mut paths);
        if !seen_ids.insert(imported.id.clone()) {
            // The same sub-story embedded twice.
            continue;
        }
        let file = args.out.join(format!("{}.yaml", imported.id));
        let yaml = serde_saphyr::to_string(&imported.story).context("cannot write YAML")?;
        let header = format!(
            "# Imported from the Tines story \"{}\" by `tale import`: see import-report.md.\n",
            story["name"].as_str().unwrap_or_default().replace('\n', " ")
        );
        std::fs::write(&file, header + &yaml).with_context(|| format!("cannot write {}", file.display()))?;
        written += 1;
        noted += imported.notes.len();
        if !imported.tests.is_empty() {
            write_tests(&args.out, &imported)?;
        }
        report.push_str(&format!("\n## `{}.yaml`\n\n", imported.id));
        if imported.notes.is_empty() {
            report.push_str("Everything carried over.\n");
        }
        for n in &imported.notes {
            report.push_str(&format!("- **{}**: {}\n", n.place, n.what));
        }
        if !imported.credentials.is_empty() {
            report.push_str("\nCredentials (with the hosts their requests use):\n\n");
            for (name, hosts) in &imported.credentials {
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                report.push_str(&format!(
                    "- `{name}`: {}\n",
                    if hosts.is_empty() {
                        "—".to_owned()
                    } else {
                        hosts.join(", ")
                    }
                ));
                env.push_str(&format!("export TALE_CREDENTIAL_{}=\n", name.to_ascii_uppercase()));
                if !hosts.is_empty() {
                    env.push_str(&format!(
                        "export TALE_CREDENTIAL_{}_ALLOWED_HOSTS=\"{}\"\n",
                        name.to_ascii_uppercase(),
                        hosts.join(",")
                    ));
                }
            }
        }
        let webhook_secret = format!("{}_webhook_secret", imported.id.replace('-', "_"));
        if imported.story.to_string().contains(&webhook_secret) {
            env.push_str(&format!(
                "export TALE_CREDENTIAL_{}=   # the webhook's secret (exports do not carry it)\n",
                webhook_secret.to_ascii_uppercase()
            ));
        }
        if !imported.resources.is_empty() {
            report.push_str("\nResources:\n\n");
            for name in &imported.resources {
                report.push_str(&format!("- `{name}`\n"));
                env.push_str(&format!("export TALE_RESOURCE_{}=\n", name.to_ascii_uppercase()));
            }
        }
    }
    let report_file = args.out.join("import-report.md");
    std::fs::write(&report_file, report).with_context(|| format!("cannot write {}", report_file.display()))?;
    std::fs::write(args.out.join("tale.env"), env).context("cannot write tale.env")?;
    writeln!(
        out,
        "imported {written} stor{} into {} with {noted} note(s): read {} and `tale check {}`",
        if written == 1 { "y" } else { "ies" },
        args.out.display(),
        report_file.display(),
        args.out.display()
    )?;
    Ok(ExitStatus::Success)
}

/// The story's Tines test actions as cases of `<id>.test.yaml`: the event
/// each sent; requests answered by nothing but allowed, and no expectation
/// yet (the report asks for them).
fn write_tests(dir: &std::path::Path, imported: &convert::Imported) -> anyhow::Result<()> {
    let cases: Vec<J> = imported
        .tests
        .iter()
        .map(|(name, payload)| {
            serde_json::json!({
                "name": format!("Tines test action: {name}"),
                "event": if payload.is_null() { serde_json::json!({}) } else { payload.clone() },
                "allow_unmatched": true,
                "expect": {},
            })
        })
        .collect();
    let file = serde_json::json!({ "cases": cases });
    let yaml = serde_saphyr::to_string(&file).context("cannot write YAML")?;
    let path = dir.join(format!("{}.test.yaml", imported.id));
    std::fs::write(
        &path,
        format!("# Story tests from the Tines test actions of the export (`tale import`): add the\n# mocks and the expectations each case should hold, then `tale test`.\n{yaml}"),
    )
    .with_context(|| format!("cannot write {}", path.display()))
}
