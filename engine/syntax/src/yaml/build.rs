//! Builds the [`Node`] tree from the YAML parser's events (granit-parser,
//! the parser serde-saphyr itself runs on, reached through its re-export).
//!
//! Reading events directly instead of going through serde-saphyr's
//! `Spanned<T>` halves the cost of loading a story (`cargo bench --bench
//! check`), and the budgets are easy to apply where the events arrive: nesting
//! depth, node count, and alias expansion (billion laughs) are counted here.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, ScalarStyle, ScanError};

use super::{Limits, Node, NodeKind, YamlError};
use crate::span::Span;

enum Frame {
    Seq {
        start: Marker,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Marker,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

pub(super) fn build(text: &str, limits: &Limits) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut aliases = 0usize;
    let mut documents = 0usize;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| scan_error(text, &e))?;
        let node = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::Syntax {
                        message: "a story file holds one YAML document; remove the second `---`".into(),
                        span: to_span(text, span.start, span.start),
                    });
                }
                continue;
            }
            Event::StreamEnd => break,
            Event::Scalar(value, style, anchor, tag) => {
                // tale uses no YAML tags: a local one (`value: !important`)
                // is text that needs quotes, not a tag that silently empties it.
                if let Some(t) = tag.as_ref().filter(|t| t.handle() == "!") {
                    return Err(YamlError::Syntax {
                        message: format!(
                            "`!{}` is read as a YAML tag (and the value as empty): quote it, `'!{}{}'`",
                            t.suffix(),
                            t.suffix(),
                            if value.is_empty() {
                                String::new()
                            } else {
                                format!(" {value}")
                            }
                        ),
                        span: tag_span(text, to_span(text, span.start, span.end)),
                    });
                }
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                let kind = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&value)
                } else {
                    NodeKind::Str(value.into_owned())
                };
                let node = Node::new(to_span(text, span.start, span.end), kind);
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                if stack.len() >= limits.max_depth {
                    return Err(YamlError::Budget {
                        message: format!("the document nests deeper than {} levels", limits.max_depth),
                        span: to_span(text, span.start, span.end),
                    });
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        start: span.start,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        start: span.start,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    }
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (start, anchor, kind) = match stack.pop() {
                    Some(Frame::Seq { start, anchor, items }) => (start, anchor, NodeKind::Seq(items)),
                    Some(Frame::Map {
                        start, anchor, entries, ..
                    }) => (start, anchor, NodeKind::Map(merge_keys(entries))),
                    None => continue,
                };
                // A block collection's end event sits at the next token (the
                // next key, lines later): end the span at the last child.
                let last_child_end = match &kind {
                    NodeKind::Seq(items) => items.last().map(|n| n.span.end),
                    NodeKind::Map(entries) => entries.last().map(|(_, v)| v.span.end),
                    _ => None,
                };
                let mut span = to_span(text, start, span.end);
                if let Some(end) = last_child_end {
                    if !text[span.start..].starts_with(['[', '{']) {
                        span.end = end.max(span.start);
                    }
                }
                let node = Node::new(span, kind);
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::Alias(id) => {
                aliases += 1;
                if aliases > limits.max_aliases {
                    return Err(YamlError::Budget {
                        message: format!("the document uses more than {} aliases", limits.max_aliases),
                        span: to_span(text, span.start, span.end),
                    });
                }
                let Some(target) = anchors.get(&id) else {
                    return Err(YamlError::Syntax {
                        message: "unknown anchor".into(),
                        span: to_span(text, span.start, span.end),
                    });
                };
                // The expansion counts against the node budget: this is what
                // stops a billion laughs.
                nodes += count(target);
                let mut node = target.clone();
                node.span = to_span(text, span.start, span.end);
                node
            }
            _ => continue,
        };
        nodes += 1;
        if nodes > limits.max_nodes {
            return Err(YamlError::Budget {
                message: format!(
                    "the document expands to more than {} values (too many aliases?)",
                    limits.max_nodes
                ),
                span: node.span,
            });
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root.unwrap_or_else(|| Node::new(Span::start_of_file(), NodeKind::Null)))
}

fn count(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Seq(items) => items.iter().map(count).sum(),
        NodeKind::Map(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
        _ => 0,
    }
}

/// YAML merge keys: `<<: *defaults` (or a list of them) adds the entries the
/// mapping does not set itself.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    if !entries.iter().any(|(k, _)| k.as_str() == Some("<<")) {
        return entries;
    }
    let mut own = Vec::new();
    let mut merged = Vec::new();
    for (k, v) in entries {
        if k.as_str() != Some("<<") {
            own.push((k, v));
            continue;
        }
        let sources = match v.kind {
            NodeKind::Seq(items) => items,
            kind => vec![Node::new(v.span, kind)],
        };
        for source in sources {
            match source.kind {
                NodeKind::Map(m) => merged.extend(m),
                kind => own.push((k.clone(), Node::new(source.span, kind))),
            }
        }
    }
    for (k, v) in merged {
        let present = own
            .iter()
            .any(|(o, _)| o.key_text().is_some() && o.key_text() == k.key_text());
        if !present {
            own.push((k, v));
        }
    }
    own
}

/// The YAML 1.2 core schema for plain scalars.
fn resolve_plain(value: &str) -> NodeKind {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" => return NodeKind::Bool(true),
        "false" | "False" | "FALSE" => return NodeKind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return NodeKind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return NodeKind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeKind::Float(f64::NAN),
        _ => {}
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return NodeKind::Str(value.to_owned());
    }
    let unsigned = value.trim_start_matches(['-', '+']);
    if let Some(hex) = value.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return NodeKind::Int(n);
        }
    }
    if let Some(oct) = value.strip_prefix("0o") {
        if let Ok(n) = i64::from_str_radix(oct, 8) {
            return NodeKind::Int(n);
        }
    }
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = value.parse::<i64>() {
            return NodeKind::Int(n);
        }
        if let Ok(n) = value.trim_start_matches('+').parse::<u64>() {
            return NodeKind::UInt(n);
        }
    }
    let float_like = unsigned.bytes().any(|b| b.is_ascii_digit())
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if float_like {
        if let Ok(f) = value.parse::<f64>() {
            return NodeKind::Float(f);
        }
    }
    NodeKind::Str(value.to_owned())
}

fn to_span(text: &str, start: Marker, end: Marker) -> Span {
    let s = start.byte_offset().unwrap_or_else(|| char_to_byte(text, start.index()));
    let e = end.byte_offset().unwrap_or_else(|| char_to_byte(text, end.index()));
    Span::new(s, e.max(s), start.line() as u32, start.col() as u32 + 1)
}

/// The tag before a scalar's span, on its line (the scalar's own span
/// starts after it).
fn tag_span(text: &str, scalar: Span) -> Span {
    let line_start = text[..scalar.start].rfind('\n').map_or(0, |i| i + 1);
    match text[line_start..scalar.start].rfind('!') {
        Some(at) => {
            let start = line_start + at;
            let end = text[start..]
                .find(char::is_whitespace)
                .map_or(text.len(), |n| start + n);
            let col = text[line_start..start].chars().count() as u32 + 1;
            Span::new(start, end, scalar.line, col)
        }
        None => scalar,
    }
}

fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i)
}

fn scan_error(text: &str, e: &ScanError) -> YamlError {
    let m = e.marker();
    let message = e.to_string();
    // The message ends with " at line X column Y" or similar: the span says it.
    let message = message
        .split(" at byte ")
        .next()
        .and_then(|m| m.split(" at char ").next())
        .and_then(|m| m.split(" at line ").next())
        .unwrap_or(&message)
        .trim()
        .to_owned();
    let span = to_span(text, *m, *m);
    if message.contains("recursion limit") {
        YamlError::Budget {
            message: format!("the document nests too deeply ({message})"),
            span,
        }
    } else {
        YamlError::Syntax { message, span }
    }
}
