//! Phase 5: across stories. send_to_story targets, inputs, and recursion.

use std::collections::HashMap;
use std::path::Path;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::model::InputType;
use crate::span::Span;
use crate::story::Story;
use crate::template;
use crate::yaml::{Node, NodeKind};

/// Finds stories by id or path.
pub struct StoryIndex<'a> {
    stories: &'a [Story],
    by_id: HashMap<&'a str, Vec<usize>>,
}

impl<'a> StoryIndex<'a> {
    pub fn new(stories: &'a [Story]) -> Self {
        let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, s) in stories.iter().enumerate() {
            by_id.entry(s.id.value.as_str()).or_default().push(i);
        }
        Self { stories, by_id }
    }

    /// The story a call names, from the caller's point of view: a path
    /// relative to the caller, or an id (preferring the caller's folder).
    pub fn resolve(&self, caller: &Story, target: &str) -> Option<usize> {
        let dir = caller.file.parent().unwrap_or(Path::new(""));
        if target.ends_with(".yaml") || target.ends_with(".yml") || target.contains('/') {
            let wanted = normalize(&dir.join(target));
            return self.stories.iter().position(|s| normalize(&s.file) == wanted);
        }
        let candidates = self.by_id.get(target)?;
        candidates
            .iter()
            .copied()
            .find(|&i| self.stories[i].file.parent() == Some(dir))
            .or_else(|| candidates.first().copied())
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().copied()
    }
}

fn normalize(p: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}

pub use crate::template::call_target;

/// Checks every call made by the stories `checked` (indexes into `stories`).
pub(crate) fn check_calls(stories: &[Story], checked: &[usize], out: &mut Vec<Diagnostic>) {
    let index = StoryIndex::new(stories);
    let mut calls: DiGraph<usize, Span> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..stories.len()).map(|i| calls.add_node(i)).collect();

    for (si, story) in stories.iter().enumerate() {
        let report = checked.contains(&si);
        for action in &story.actions {
            let Some(call) = action.config.as_ref().and_then(|c| c.story_call()) else {
                continue;
            };
            let Some(target) = call_target(call.story) else {
                continue;
            };
            let file = &story.file;
            let Some(ti) = index.resolve(story, &target) else {
                if report {
                    let help = did_you_mean(&target, index.ids()).unwrap_or_else(|| {
                        "stories are found by id in the files checked together, the caller's folder and --stories"
                            .into()
                    });
                    out.push(
                        Diagnostic::new(
                            Code::UnknownStory,
                            file,
                            call.story_span,
                            format!("story `{target}` cannot be found"),
                        )
                        .label("no story with this id")
                        .help(help),
                    );
                }
                continue;
            };
            calls.add_edge(nodes[si], nodes[ti], call.story_span);
            if !report {
                continue;
            }
            let callee = &stories[ti];
            if callee.interface_broken {
                continue;
            }
            if !callee.is_callable() {
                out.push(
                    Diagnostic::new(
                        Code::NotCallable,
                        file,
                        call.story_span,
                        format!(
                            "story `{}` cannot be called: it declares no `entry` and `exits`",
                            callee.id.value
                        ),
                    )
                    .secondary(&callee.file, callee.id.span, "the called story")
                    .help("a sub-story names its webhook in `entry:` and its message_only transforms in `exits:`"),
                );
                continue;
            }
            check_inputs(story, action.slug.span, callee, call.payload, out);
        }
    }

    for scc in tarjan_scc(&calls) {
        let self_loop = scc.len() == 1 && calls.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let start = *scc.iter().min().unwrap_or(&scc[0]);
        let mut path = vec![start];
        let mut current = start;
        while let Some(next) = calls.neighbors(current).filter(|n| scc.contains(n)).min() {
            if next == start || path.contains(&next) {
                break;
            }
            path.push(next);
            current = next;
        }
        let first = calls[start];
        if !checked.contains(&first) {
            continue;
        }
        let next = *path.get(1).unwrap_or(&start);
        let span = calls
            .edges_connecting(start, next)
            .next()
            .map_or(stories[first].id.span, |e| *e.weight());
        let names: Vec<&str> = path
            .iter()
            .chain(std::iter::once(&start))
            .map(|n| stories[calls[*n]].id.value.as_str())
            .collect();
        out.push(
            Diagnostic::new(
                Code::StoryRecursion,
                &stories[first].file,
                span,
                format!("stories call each other in a loop: {}", names.join(" → ")),
            )
            .label("this call starts the loop")
            .help("a sub-story must not call, directly or through others, a story that calls it"),
        );
    }
}

fn check_inputs(caller: &Story, action_span: Span, callee: &Story, payload: Option<&Node>, out: &mut Vec<Diagnostic>) {
    if !callee.declares_inputs {
        return;
    }
    let file = &caller.file;
    let entries: &[(Node, Node)] = match payload.map(|p| &p.kind) {
        Some(NodeKind::Map(entries)) => entries,
        // A templated payload (`"{{ x | as_object }}"`) is only known at run time.
        Some(NodeKind::Str(s)) if template::has_markup(s) => return,
        _ => &[],
    };
    let at = payload.map_or(action_span, |p| p.span);
    for (key, value) in entries {
        let Some(name) = key.as_str() else { continue };
        match callee.inputs.get(name) {
            None => {
                let help = did_you_mean(name, callee.inputs.keys().map(String::as_str))
                    .unwrap_or_else(|| format!("`{}` declares {}", callee.id.value, list(callee)));
                out.push(
                    Diagnostic::new(
                        Code::UnknownInput,
                        file,
                        key.span,
                        format!("story `{}` has no input `{name}`", callee.id.value),
                    )
                    .label("unknown input")
                    .help(help),
                );
            }
            Some(input) => {
                let Some(kind) = &input.value.kind else { continue };
                if let Some(found) = literal_mismatch(kind.value, value) {
                    out.push(
                        Diagnostic::new(
                            Code::InputType,
                            file,
                            value.span,
                            format!(
                                "input `{name}` of `{}` is {}, found {found}",
                                callee.id.value,
                                article(kind.value)
                            ),
                        )
                        .label("wrong type")
                        .secondary(&callee.file, input.span, "declared here"),
                    );
                }
            }
        }
    }
    for (name, input) in &callee.inputs {
        if input.value.required && !entries.iter().any(|(k, _)| k.as_str() == Some(name)) {
            out.push(
                Diagnostic::new(
                    Code::MissingInput,
                    file,
                    at,
                    format!(
                        "the call to `{}` leaves out the required input `{name}`",
                        callee.id.value
                    ),
                )
                .label(format!("add `{name}:` to this payload"))
                .secondary(&callee.file, input.span, "declared here"),
            );
        }
    }
}

fn list(callee: &Story) -> String {
    if callee.inputs.is_empty() {
        "no inputs".into()
    } else {
        format!(
            "the inputs {}",
            crate::diagnostic::one_of(&callee.inputs.keys().map(String::as_str).collect::<Vec<_>>())
        )
    }
}

fn article(t: InputType) -> &'static str {
    match t {
        InputType::String => "a string",
        InputType::Number => "a number",
        InputType::Boolean => "a boolean",
        InputType::Object => "an object",
        InputType::Array => "an array",
    }
}

/// What a literal value is, when it cannot be of type `t`. Templates are
/// only known at run time, except that a template without `as_object` is a string.
fn literal_mismatch(t: InputType, value: &Node) -> Option<&'static str> {
    let found = match &value.kind {
        NodeKind::Str(s) if template::has_markup(s) => {
            if s.contains("as_object") || t == InputType::String {
                return None;
            }
            "a template that renders text (add `| as_object` to keep its type)"
        }
        NodeKind::Str(_) => "a string",
        NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) => "a number",
        NodeKind::Bool(_) => "a boolean",
        NodeKind::Seq(_) => "an array",
        NodeKind::Map(_) => "an object",
        NodeKind::Null => return None,
    };
    let ok = matches!(
        (t, &value.kind),
        (InputType::String, NodeKind::Str(_))
            | (
                InputType::Number,
                NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_)
            )
            | (InputType::Boolean, NodeKind::Bool(_))
            | (InputType::Object, NodeKind::Map(_))
            | (InputType::Array, NodeKind::Seq(_))
    );
    (!ok).then_some(found)
}
