//! `tale explain CODE`: the section of docs/diagnostics.md about one
//! diagnostic, from the copy built into the binary (no docs folder needed).

use std::io::Write;

use clap::Args;
use tale_engine::diagnostic::Code;

use crate::ExitStatus;

/// The diagnostics reference, as shipped.
const REFERENCE: &str = include_str!("../../docs/diagnostics.md");

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// A diagnostic code (`E404`) or name (`not-upstream`).
    pub(crate) code: String,
}

pub(crate) fn run(args: &ExplainArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let Some(code) = Code::from_code(args.code.trim()) else {
        writeln!(
            err,
            "error: `{}` is not a diagnostic code (such as E404 or W603)",
            args.code
        )?;
        return Ok(ExitStatus::Error);
    };
    match section(code.code()) {
        Some(text) => {
            writeln!(out, "{}", text.trim_end())?;
            Ok(ExitStatus::Success)
        }
        None => {
            writeln!(err, "error: {} has no section in the reference", code.code())?;
            Ok(ExitStatus::Failure)
        }
    }
}

/// From `## CODE …` to the next `## ` heading.
fn section(code: &str) -> Option<&'static str> {
    let start = REFERENCE.find(&format!("\n## {code} "))? + 1;
    let end = REFERENCE[start + 3..]
        .find("\n## ")
        .map_or(REFERENCE.len(), |i| start + 3 + i);
    Some(&REFERENCE[start..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_code_has_a_section() {
        for code in tale_engine::diagnostic::Code::ALL {
            let text = super::section(code.code()).unwrap_or_else(|| panic!("{} has no section", code.code()));
            assert!(
                text.starts_with(&format!("## {} {}", code.code(), code.name())),
                "{text}"
            );
        }
    }
}
