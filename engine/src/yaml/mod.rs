//! Reading YAML text into a [`Node`] tree, with budgets against hostile input.

mod build;
pub mod de;
mod node;

pub use de::{DeCx, DeIssue, DeIssueKind, decode};
pub use node::{Node, NodeKind};

use crate::span::Span;

/// Limits applied to every document, so that no input makes the loader hang,
/// abort or exhaust memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_document_bytes: usize,
    pub max_depth: usize,
    pub max_aliases: usize,
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: 4 * 1024 * 1024,
            max_depth: 64,
            max_aliases: 1_000,
            max_nodes: 250_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum YamlError {
    #[error("{message}")]
    Syntax { message: String, span: Span },
    #[error("{message}")]
    Budget { message: String, span: Span },
}

impl YamlError {
    pub fn span(&self) -> Span {
        match self {
            YamlError::Syntax { span, .. } | YamlError::Budget { span, .. } => *span,
        }
    }
}

/// A duplicated key: where it is repeated and where it first appeared.
#[derive(Clone, Debug, PartialEq)]
pub struct DuplicateKey {
    pub key: String,
    pub span: Span,
    pub first: Span,
    /// The mapping holding the key is the story's `actions:`.
    pub in_actions: bool,
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str, limits: &Limits) -> Result<Node, YamlError> {
    if text.len() > limits.max_document_bytes {
        return Err(YamlError::Budget {
            message: format!(
                "the document is {} bytes, more than the limit of {} bytes",
                text.len(),
                limits.max_document_bytes
            ),
            span: Span::start_of_file(),
        });
    }
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Node::new(Span::start_of_file(), NodeKind::Map(Vec::new())));
    }
    build::build(text, limits)
}

/// Every key that repeats an earlier key of the same mapping.
pub fn duplicate_keys(root: &Node) -> Vec<DuplicateKey> {
    let mut out = Vec::new();
    walk_duplicates(root, true, false, &mut out);
    out
}

fn walk_duplicates(node: &Node, is_root: bool, in_actions: bool, out: &mut Vec<DuplicateKey>) {
    match &node.kind {
        NodeKind::Map(entries) => {
            let mut seen: std::collections::HashMap<String, Span> = Default::default();
            for (k, _) in entries {
                let Some(text) = k.key_text() else { continue };
                match seen.get(&text) {
                    Some(first) => out.push(DuplicateKey {
                        key: text,
                        span: k.span,
                        first: *first,
                        in_actions,
                    }),
                    None => {
                        seen.insert(text, k.span);
                    }
                }
            }
            for (k, v) in entries {
                let actions = is_root && k.as_str() == Some("actions");
                walk_duplicates(v, false, actions, out);
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|n| walk_duplicates(n, false, false, out)),
        _ => {}
    }
}
