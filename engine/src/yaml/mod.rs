//! Reading YAML text into a [`Node`] tree, with budgets against hostile input.

pub mod de;
mod node;

pub use de::{DeCx, DeIssue, DeIssueKind, decode};
pub use node::{Node, NodeKind};

use crate::span::{LineIndex, Span};

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
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = limits.max_depth;
    budget.max_aliases = limits.max_aliases;
    budget.max_nodes = limits.max_nodes;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    // Duplicates are found on the tree, so that the message can name both places.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    options.alias_limits.max_total_replayed_events = limits.max_nodes;
    match serde_saphyr::from_str_with_options::<node::SaphyrNode>(text, options) {
        Ok(node::SaphyrNode(node)) => Ok(node),
        Err(e) => Err(convert_error(text, &e)),
    }
}

fn convert_error(text: &str, e: &serde_saphyr::Error) -> YamlError {
    let index = LineIndex::new(text);
    let span = match e.location() {
        Some(loc) if loc.line() > 0 => {
            let line = loc.line() as u32;
            let range = index.line_range(text, line);
            // Columns from the parser count characters; find the byte offset.
            let col = loc.column().max(1) as usize;
            let start = text[range.clone()]
                .char_indices()
                .nth(col - 1)
                .map_or(range.end, |(i, _)| range.start + i);
            Span::new(start, start, line, col as u32)
        }
        _ => Span::start_of_file(),
    };
    let message = clean_message(&e.without_snippet().to_string());
    let budget = matches!(
        e,
        serde_saphyr::Error::Budget { .. }
            | serde_saphyr::Error::AliasReplayLimitExceeded { .. }
            | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
            | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
            | serde_saphyr::Error::AliasReplayCounterOverflow { .. }
    );
    if budget {
        YamlError::Budget { message, span }
    } else {
        YamlError::Syntax { message, span }
    }
}

/// serde-saphyr appends " at line X column Y"; the diagnostic shows that itself.
fn clean_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    first.trim_end_matches('.').to_owned()
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
