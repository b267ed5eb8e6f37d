//! A story's graph as SVG: [`super::layout`] places it, a template draws
//! it (escaping every name), marks say how each action did.

use askama::Template;
use tale_engine::runtime::build::BuiltStory;
use tale_engine::story::Edge;

use super::layout::{self, NODE_H, NODE_W};

/// How one action is shown: a CSS class (`succeeded`, `failed`,
/// `unreached`, `selected`…), a short text under its type, a link.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mark {
    pub(crate) class: &'static str,
    pub(crate) badge: String,
    pub(crate) href: String,
}

struct NodeView {
    slug: String,
    label: String,
    title: String,
    type_name: &'static str,
    class: &'static str,
    badge: String,
    href: String,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    tx: f64,
    ty1: f64,
    ty2: f64,
}

struct EdgeView {
    from: String,
    to: String,
    d: String,
    branch: Option<String>,
    label_x: f64,
    label_y: f64,
    back: bool,
}

#[derive(Template)]
#[template(path = "graph.svg", escape = "html")]
struct GraphSvg {
    label: String,
    width: f64,
    height: f64,
    nodes: Vec<NodeView>,
    edges: Vec<EdgeView>,
}

/// The layout's input for a story: its actions in order, its edges.
pub(crate) fn graph_of(story: &BuiltStory) -> layout::Graph {
    layout::Graph {
        nodes: story.actions.len(),
        edges: story
            .actions
            .iter()
            .enumerate()
            .flat_map(|(from, a)| {
                a.downstream.iter().map(move |(to, edge)| {
                    let branch = match edge {
                        Edge::Main => None,
                        Edge::Branch(b) => Some(b.clone()),
                    };
                    (from, *to, branch)
                })
            })
            .collect(),
    }
}

/// Names longer than a box holds are cut (the full name is the tooltip).
const LABEL_CHARS: usize = 24;

/// The story drawn, each action marked by `marks` (by action index; an
/// action without a mark is drawn plain).
pub(crate) fn svg(story: &BuiltStory, marks: &[Mark]) -> String {
    let placed = layout::layout(&graph_of(story));
    let nodes = story
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (x, y) = placed.nodes[i];
            let name = a.name.clone().unwrap_or_else(|| a.slug.to_string());
            let mark = marks.get(i).cloned().unwrap_or_default();
            NodeView {
                slug: a.slug.to_string(),
                label: match name.char_indices().nth(LABEL_CHARS) {
                    Some((at, _)) => format!("{}…", &name[..at]),
                    None => name.clone(),
                },
                title: format!("{name} ({})", a.slug),
                type_name: a.type_name,
                class: mark.class,
                badge: mark.badge,
                href: mark.href,
                x,
                y,
                w: NODE_W,
                h: NODE_H,
                tx: x + NODE_W / 2.0,
                ty1: y + 20.0,
                ty2: y + 37.0,
            }
        })
        .collect();
    let edges = placed
        .edges
        .into_iter()
        .map(|e| EdgeView {
            from: story.actions[e.from].slug.to_string(),
            to: story.actions[e.to].slug.to_string(),
            d: e.d,
            branch: e.branch,
            label_x: e.label_at.0,
            label_y: e.label_at.1,
            back: e.back,
        })
        .collect();
    GraphSvg {
        label: format!("the actions of {}", story.name),
        width: placed.width,
        height: placed.height,
        nodes,
        edges,
    }
    .render()
    .unwrap_or_default()
}
