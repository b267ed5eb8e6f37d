//! A story's graph as SVG: [`super::layout`] places it, a template draws
//! it (escaping every name), marks say how each action did.

use askama::Template;
use tale_engine::runtime::build::BuiltStory;
use tale_engine::story::{Edge, Story};

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

/// What a box shows of an action.
pub(crate) struct Drawn {
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) type_name: &'static str,
}

/// A served story's actions and edges.
fn parts_of_built(story: &BuiltStory) -> (Vec<Drawn>, layout::Graph) {
    let actions = story
        .actions
        .iter()
        .map(|a| Drawn {
            slug: a.slug.to_string(),
            name: a.name.clone().unwrap_or_else(|| a.slug.to_string()),
            type_name: a.type_name,
        })
        .collect();
    let graph = layout::Graph {
        nodes: story.actions.len(),
        edges: story
            .actions
            .iter()
            .enumerate()
            .flat_map(|(from, a)| a.downstream.iter().map(move |(to, edge)| (from, *to, branch_of(edge))))
            .collect(),
    };
    (actions, graph)
}

/// A checked story file's actions and edges (`tale graph --format svg`).
pub(crate) fn parts_of_story(story: &Story) -> (Vec<Drawn>, layout::Graph) {
    let actions = story
        .actions
        .iter()
        .map(|a| Drawn {
            slug: a.slug.value.clone(),
            name: a.name.clone().unwrap_or_else(|| a.slug.value.clone()),
            type_name: a.config.as_ref().map_or("?", |c| c.type_name()),
        })
        .collect();
    let graph = layout::Graph {
        nodes: story.actions.len(),
        edges: story
            .graph
            .edge_indices()
            .filter_map(|e| {
                let (from, to) = story.graph.edge_endpoints(e)?;
                Some((from.index(), to.index(), branch_of(&story.graph[e])))
            })
            .collect(),
    };
    (actions, graph)
}

fn branch_of(edge: &Edge) -> Option<String> {
    match edge {
        Edge::Main => None,
        Edge::Branch(b) => Some(b.clone()),
    }
}

/// Names longer than a box holds are cut (the full name is the tooltip).
const LABEL_CHARS: usize = 24;

/// A story drawn as an SVG file of its own (`tale graph --format svg`):
/// the stylesheet's graph rules go inside it.
pub(crate) fn standalone(title: &str, actions: &[Drawn], graph: &layout::Graph) -> String {
    let style: String = super::CSS
        .lines()
        .filter(|l| l.starts_with(":root") || l.starts_with("svg.graph"))
        .map(|l| l.replacen("svg.graph ", "", 1).replacen(":root", "svg", 1) + "\n")
        .collect();
    let svg = draw(title, actions, graph, &[]);
    match svg.find("<defs>") {
        Some(at) => format!(
            "{}<style>\n{style}text {{ font-family: sans-serif; }}\n</style>\n{}",
            &svg[..at],
            &svg[at..]
        ),
        None => svg,
    }
}

/// A served story drawn, each action marked by `marks` (by action index).
pub(crate) fn svg(story: &BuiltStory, marks: &[Mark]) -> String {
    let (actions, graph) = parts_of_built(story);
    draw(&story.name, &actions, &graph, marks)
}

/// Actions and edges drawn; an action without a mark is drawn plain.
pub(crate) fn draw(title: &str, actions: &[Drawn], graph: &layout::Graph, marks: &[Mark]) -> String {
    let placed = layout::layout(graph);
    let nodes = actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (x, y) = placed.nodes[i];
            let mark = marks.get(i).cloned().unwrap_or_default();
            NodeView {
                slug: a.slug.clone(),
                label: match a.name.char_indices().nth(LABEL_CHARS) {
                    Some((at, _)) => format!("{}…", &a.name[..at]),
                    None => a.name.clone(),
                },
                title: format!("{} ({})", a.name, a.slug),
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
            from: actions[e.from].slug.clone(),
            to: actions[e.to].slug.clone(),
            d: e.d,
            branch: e.branch,
            label_x: e.label_at.0,
            label_y: e.label_at.1,
            back: e.back,
        })
        .collect();
    GraphSvg {
        label: format!("the actions of {title}"),
        width: placed.width,
        height: placed.height,
        nodes,
        edges,
    }
    .render()
    .unwrap_or_default()
}
