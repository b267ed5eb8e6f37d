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

/// Where the tree holds `.nan`, `.inf` or `-.inf`: no key of a story takes
/// them (a duration, a count, a JSON payload), so `check` refuses them all.
pub fn non_finite_numbers(root: &Node) -> Vec<Span> {
    fn walk(node: &Node, out: &mut Vec<Span>) {
        match &node.kind {
            NodeKind::Float(f) if !f.is_finite() => out.push(node.span),
            NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
                walk(k, out);
                walk(v, out);
            }),
            NodeKind::Seq(items) => items.iter().for_each(|n| walk(n, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Node {
        parse(text, &Limits::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn spans_point_at_values_and_keys() {
        let text = "actions:\n  get_alert:\n    from: \"receive\"\n    url: https://x.test/{{ a }}\n";
        let root = parse_ok(text);
        let action = root.get("actions").and_then(|a| a.get("get_alert")).expect("action");
        let (key, from) = action.entry("from").expect("from");
        assert_eq!((key.span.line, key.span.col), (3, 5));
        assert_eq!((from.span.line, from.span.col), (3, 11));
        assert_eq!(&text[from.span.start..from.span.end], "\"receive\"");
        let url = action.get("url").expect("url");
        assert_eq!(&text[url.span.start..url.span.end], "https://x.test/{{ a }}");
    }

    #[test]
    fn columns_count_characters() {
        let text = "name: \"é\"\nx: été\n";
        let root = parse_ok(text);
        let x = root.get("x").expect("x");
        assert_eq!((x.span.line, x.span.col), (2, 4));
        assert_eq!(x.as_str(), Some("été"));
    }

    #[test]
    fn core_schema_scalars() {
        let root = parse_ok(
            "a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: yes\ng: '1'\nh: 0x1F\ni: !!str 3\nj: 18446744073709551615\n",
        );
        let kinds: Vec<_> = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
            .iter()
            .map(|k| root.get(k).map(|n| n.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some(NodeKind::Int(1)),
                Some(NodeKind::Int(-2)),
                Some(NodeKind::Float(1.5)),
                Some(NodeKind::Bool(true)),
                Some(NodeKind::Null),
                Some(NodeKind::Str("yes".into())),
                Some(NodeKind::Str("1".into())),
                Some(NodeKind::Int(31)),
                Some(NodeKind::Str("3".into())),
                Some(NodeKind::UInt(u64::MAX)),
            ]
        );
    }

    #[test]
    fn duplicates_name_both_places() {
        let text = "actions:\n  a:\n    type: webhook\n  a:\n    type: webhook\nname: x\nname: y\n";
        let root = parse_ok(text);
        let dups = duplicate_keys(&root);
        assert_eq!(dups.len(), 2);
        let slug = dups.iter().find(|d| d.key == "a").expect("duplicated slug");
        assert!(slug.in_actions && slug.span.line == 4 && slug.first.line == 2);
        let name = dups.iter().find(|d| d.key == "name").expect("duplicated key");
        assert!(!name.in_actions && name.span.line == 7 && name.first.line == 6);
    }

    #[test]
    fn merge_keys_and_aliases() {
        let root = parse_ok("base: &b {method: get, url: x}\nreq:\n  <<: *b\n  url: y\nlist: [*b]\n");
        let req = root.get("req").expect("req");
        assert_eq!(req.get("url").and_then(Node::as_str), Some("y"));
        assert_eq!(req.get("method").and_then(Node::as_str), Some("get"));
        assert!(req.get("<<").is_none());
    }

    #[test]
    fn budgets() {
        let limits = Limits::default();
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n";
        assert!(matches!(parse(bomb, &limits), Err(YamlError::Budget { .. })));
        let deep = "x: ".to_owned() + &"[".repeat(100) + &"]".repeat(100);
        assert!(matches!(parse(&deep, &limits), Err(YamlError::Budget { .. })));
        let big = "x".repeat(limits.max_document_bytes + 1);
        assert!(matches!(parse(&big, &limits), Err(YamlError::Budget { .. })));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: c\n", &Limits::default()).expect_err("invalid");
        assert!(matches!(err, YamlError::Syntax { .. }));
        assert!(err.span().line >= 1);
        let err = parse("a: 1\n---\nb: 2\n", &Limits::default()).expect_err("two documents");
        assert!(err.to_string().contains("one YAML document"));
    }
}
