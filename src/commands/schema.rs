//! `tale schema`: the story JSON Schema, or with `--tests` the schema of
//! story test files.

use std::io::Write;

use clap::Args;

use crate::ExitStatus;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The schema of story test files (`*.test.yaml`) instead of stories.
    #[arg(long)]
    pub tests: bool,
}

pub(crate) fn run(args: &SchemaArgs, out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let schema = if args.tests {
        serde_json::to_value(schemars::schema_for!(super::test::TestFile))?
    } else {
        serde_json::to_value(tale_engine::schema::story_schema(&tale_actions::Registry))?
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&schema)?)?;
    Ok(ExitStatus::Success)
}
