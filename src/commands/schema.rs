//! `tale schema`: the story JSON Schema.

use std::io::Write;

use crate::ExitStatus;

pub(crate) fn run(out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let schema = tale_engine::schema::story_schema(&tale_actions::Registry);
    writeln!(out, "{}", serde_json::to_string_pretty(&schema)?)?;
    Ok(ExitStatus::Success)
}
