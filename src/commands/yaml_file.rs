//! Test and mocks files decoded like stories: every mistake a diagnostic at
//! file:line:col with its "did you mean", all of them at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tale_engine::action::DecodeCx;
use tale_engine::diagnostic::{Diagnostic, Severity};
use tale_engine::report::{self, Sources};
use tale_engine::yaml::{Limits, Node};

/// The mistakes of one file, with its text to show them in.
#[derive(Debug)]
pub(crate) struct FileProblems {
    pub(crate) diagnostics: Vec<Diagnostic>,
    sources: Sources,
}

impl FileProblems {
    fn new(file: &Arc<PathBuf>, text: &Arc<str>, mut diagnostics: Vec<Diagnostic>) -> Self {
        // The same mistake seen from a case and from the whole file: once.
        diagnostics.sort_by_key(|d| (d.span.start, d.code));
        diagnostics.dedup_by_key(|d| (d.span.start, d.code));
        FileProblems {
            diagnostics,
            sources: Sources::from([(file.clone(), text.clone())]),
        }
    }

    /// The first problem's line, for reports that give one.
    pub(crate) fn line(&self) -> u32 {
        self.diagnostics.first().map_or(1, |d| d.span.line)
    }

    /// As `tale check` prints them, without colours.
    pub(crate) fn render(&self) -> String {
        report::human(&self.diagnostics, &self.sources, false)
    }
}

impl std::fmt::Display for FileProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.render().trim_end())
    }
}

impl std::error::Error for FileProblems {}

/// One YAML file being decoded: its tree, and the problems found so far.
pub(crate) struct YamlFile {
    pub(crate) file: Arc<PathBuf>,
    text: Arc<str>,
    pub(crate) root: Node,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl YamlFile {
    /// Reads and parses `path` (syntax, repeated keys).
    pub(crate) fn read(path: &Path) -> Result<YamlFile, anyhow::Error> {
        let text = tale_engine::files::read_regular_text(path, tale_engine::files::MAX_FILE_BYTES)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let file = Arc::new(path.to_path_buf());
        let text: Arc<str> = Arc::from(text);
        let mut diagnostics = Vec::new();
        match tale_engine::check::parse_yaml(&file, &text, &Limits::default(), &mut diagnostics) {
            Some(root) => Ok(YamlFile {
                file,
                text,
                root,
                diagnostics,
            }),
            None => Err(FileProblems::new(&file, &text, diagnostics).into()),
        }
    }

    /// Decodes `node` as `T`, each problem a diagnostic (`what` names the
    /// value in messages: "test case `closes`").
    pub(crate) fn decode<'de, T: Deserialize<'de>>(&mut self, node: &Node, what: String) -> Option<T> {
        let mut cx = DecodeCx {
            file: &self.file,
            diagnostics: &mut self.diagnostics,
            slug_span: node.span,
            what,
            extra_keys: &[],
        };
        cx.decode(node)
    }

    /// `Err` when an error was found; warnings alone pass.
    pub(crate) fn finish(self) -> Result<(), FileProblems> {
        if self.diagnostics.iter().any(|d| d.severity == Severity::Error) {
            Err(FileProblems::new(&self.file, &self.text, self.diagnostics))
        } else {
            Ok(())
        }
    }
}
