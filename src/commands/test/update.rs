//! `tale test --update`: writes what a failing check actually saw into the
//! test file. Only the values of failing checks change; passing checks,
//! comments and layout stay as written, and a new value takes the style of
//! the one it replaces (on one line when that was, a block when that was).

use std::path::Path;

use anyhow::Context;
use serde_json::Value as J;
use tale_engine::yaml::{self, Limits, Node, NodeKind};

use super::{Case, Outcome, contains, jsonpath, without_run_ids};

/// How the file writes YAML, for the values written into it.
#[derive(Clone, Copy)]
struct Style {
    compact_lists: bool,
}

/// A replacement of `text[start..end]`.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// Rewrites the failing checks of the failing cases; returns how many cases
/// changed.
pub(super) fn update_file(path: &Path, cases: &[Case], failing: &[&Outcome]) -> anyhow::Result<usize> {
    let text = tale_engine::files::read_regular_text(path, tale_engine::files::MAX_FILE_BYTES)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let root = yaml::parse(&text, &Limits::default()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let Some((cases_key, cases_node)) = root.entry("cases") else {
        anyhow::bail!("{}: no `cases`", path.display());
    };
    let NodeKind::Seq(case_nodes) = &cases_node.kind else {
        anyhow::bail!("{}: `cases` is not a list", path.display());
    };
    // Lists written as the file writes them: `- ` under its key, or indented.
    let style = Style {
        compact_lists: cases_key.span.col == cases_node.span.col,
    };
    let mut edits = Vec::new();
    let mut changed = 0;
    for outcome in failing {
        let (Some(node), Some(case)) = (case_nodes.get(outcome.index), cases.get(outcome.index)) else {
            continue;
        };
        let event_text = case.event.as_ref().map(J::to_string).unwrap_or_default();
        let emitted = |key: &str| -> Vec<J> {
            outcome
                .actual
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, outputs)| outputs.iter().map(|o| without_run_ids(o, &event_text)).collect())
                .unwrap_or_default()
        };
        let before = edits.len();
        match node.entry("expect") {
            Some((_, value)) if !case.expect.is_empty() => {
                for name in &outcome.failed_keys {
                    let (Some(expected), Some((k, v))) = (case.expect.get(name), value.entry(name)) else {
                        continue;
                    };
                    update_check(&text, style, k, v, expected, &emitted(name), &mut edits);
                }
            }
            found => {
                // No expectations yet: every action that emitted, but the
                // first (the webhook's request), as a block after the case.
                let mut expect = serde_json::Map::new();
                for (name, _) in outcome.actual.iter().skip(1) {
                    expect.insert(name.clone(), J::Array(emitted(name)));
                }
                let expect = J::Object(expect);
                match found {
                    Some((key, value)) => edits.push(replace_value(&text, style, key, value, &expect)),
                    None => {
                        let col = node.span.col as usize;
                        let indent = " ".repeat(col.saturating_sub(1));
                        let body = block(&expect, col + 2, style);
                        edits.push(Edit {
                            start: node.span.end,
                            end: node.span.end,
                            text: format!("\n{indent}expect:\n{}{body}", " ".repeat(col + 1)),
                        });
                    }
                }
            }
        }
        if edits.len() > before {
            changed += 1;
        }
    }
    // From the end of the file backwards, so that earlier spans stay valid.
    edits.sort_by_key(|e| std::cmp::Reverse(e.start));
    let mut text = text;
    for e in &edits {
        if e.start > e.end || e.end > text.len() || !text.is_char_boundary(e.start) || !text.is_char_boundary(e.end) {
            anyhow::bail!("{}: cannot place the update (spans moved)", path.display());
        }
        text.replace_range(e.start..e.end, &e.text);
    }
    if !edits.is_empty() {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(changed)
}

/// The edits that make one failing check (`key: value`) pass with
/// `outputs`, touching only its failing parts: the elements of a list that
/// differ, the `count`, `equals`, `subset` or JSONPath values that differ.
fn update_check(
    text: &str,
    style: Style,
    key: &Node,
    value: &Node,
    expected: &J,
    outputs: &[J],
    edits: &mut Vec<Edit>,
) {
    match (expected, &value.kind) {
        (J::Array(wanted), NodeKind::Seq(items)) if wanted.len() == outputs.len() => {
            for ((want, got), item) in wanted.iter().zip(outputs).zip(items) {
                if !contains(got, want) {
                    edits.push(replace_node(text, style, item, &project(got, want)));
                }
            }
        }
        (J::Object(spec), NodeKind::Map(entries)) if !outputs.is_empty() || !spec.keys().any(|k| k != "count") => {
            // Nothing emitted and only a `count` checked: the count becomes 0.
            let first = outputs.first().unwrap_or(&J::Null);
            for (k, v) in entries {
                let Some(want) = k.as_str().and_then(|field| spec.get(field)) else {
                    continue;
                };
                let field = k.as_str().unwrap_or_default();
                match field {
                    "count" if want.as_u64() != Some(outputs.len() as u64) => {
                        edits.push(replace_node(text, style, v, &J::from(outputs.len())));
                    }
                    "equals" if first != want => edits.push(replace_node(text, style, v, first)),
                    "subset" if !contains(first, want) => {
                        edits.push(replace_node(text, style, v, &project(first, want)))
                    }
                    "jsonpath" => {
                        for (path, value) in v.as_map().unwrap_or(&[]) {
                            let Some(path) = path.as_str() else { continue };
                            let found = jsonpath(first, path);
                            let got = if found.len() == 1 {
                                found[0].clone()
                            } else {
                                J::Array(found)
                            };
                            if spec["jsonpath"].get(path) != Some(&got) {
                                edits.push(replace_node(text, style, value, &got));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {
            let now = if outputs.is_empty() {
                J::String("never".into())
            } else {
                match expected {
                    // A list keeps the keys it checked, element by element.
                    J::Array(wanted) => J::Array(
                        outputs
                            .iter()
                            .enumerate()
                            .map(|(i, got)| wanted.get(i).map_or_else(|| got.clone(), |want| project(got, want)))
                            .collect(),
                    ),
                    _ => J::Array(outputs.to_vec()),
                }
            };
            edits.push(replace_value(text, style, key, value, &now));
        }
    }
}

/// `actual` cut to the shape of `expected`: the keys an expected object
/// names (those `actual` has), lists element by element. A subset that was
/// wrong stays the same subset, with the values seen.
fn project(actual: &J, expected: &J) -> J {
    match (actual, expected) {
        (J::Object(a), J::Object(e)) => {
            let kept: serde_json::Map<String, J> = e
                .iter()
                .filter_map(|(k, ev)| a.get(k).map(|av| (k.clone(), project(av, ev))))
                .collect();
            if kept.is_empty() {
                actual.clone()
            } else {
                J::Object(kept)
            }
        }
        (J::Array(a), J::Array(e)) => J::Array(
            a.iter()
                .enumerate()
                .map(|(i, av)| e.get(i).map_or_else(|| av.clone(), |ev| project(av, ev)))
                .collect(),
        ),
        _ => actual.clone(),
    }
}

/// Whether a node is written on its key's line: a scalar or a flow
/// collection (`{count: 2}`, `[a, b]`).
fn inline(text: &str, node: &Node) -> bool {
    match node.kind {
        NodeKind::Map(_) | NodeKind::Seq(_) => text[node.span.start..].starts_with(['{', '[']),
        _ => true,
    }
}

/// Replaces a value in place (a list element, a nested value): on one line
/// when it was, else as a block at its column.
fn replace_node(text: &str, style: Style, node: &Node, new: &J) -> Edit {
    let new_text = if inline(text, node) || !is_collection(new) {
        flow(new)
    } else {
        block(new, node.span.col as usize, style)
    };
    Edit {
        start: node.span.start,
        end: node.span.end,
        text: new_text,
    }
}

/// Replaces the value of `key: value`; a block value that becomes a scalar
/// moves up onto the key's line.
fn replace_value(text: &str, style: Style, key: &Node, value: &Node, new: &J) -> Edit {
    if inline(text, value) || is_collection(new) {
        return replace_node(text, style, value, new);
    }
    Edit {
        start: key.span.end,
        end: value.span.end,
        text: format!(": {}", flow(new)),
    }
}

fn is_collection(value: &J) -> bool {
    match value {
        J::Object(o) => !o.is_empty(),
        J::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// One line of YAML: `{severity: HIGH, user: a@b.c}`, `[1, 2]`, `never`.
fn flow(value: &J) -> String {
    let written = match value {
        J::Object(o) => serde_saphyr::to_string(&serde_saphyr::FlowMap(o)),
        J::Array(a) => serde_saphyr::to_string(&serde_saphyr::FlowSeq(a)),
        other => serde_saphyr::to_string(other),
    };
    written.map_or_else(|_| value.to_string(), |s| s.trim_end().to_owned())
}

/// A block of YAML whose first line starts where the cursor is and whose
/// other lines are indented to `col` (1-based).
fn block(value: &J, col: usize, style: Style) -> String {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.compact_list_indent = style.compact_lists;
    let Ok(written) = serde_saphyr::to_string_with_options(value, options) else {
        return flow(value);
    };
    let indent = " ".repeat(col.saturating_sub(1));
    let mut out = String::new();
    for (n, line) in written.trim_end().lines().enumerate() {
        if n > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    out
}
