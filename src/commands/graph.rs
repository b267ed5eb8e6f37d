//! `tale graph STORY`: the story's actions and edges as Mermaid, DOT or SVG.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tale_engine::story::{Edge, Story};

use super::check::checked_story;
use crate::ExitStatus;
use tale_engine::checked::check_paths;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
    /// Laid out by tale itself, as the web UI draws it.
    Svg,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The story file.
    pub story: PathBuf,
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
    /// Folders of sub-stories that calls may target.
    #[arg(long = "stories", value_name = "DIR")]
    pub stories: Vec<PathBuf>,
}

pub(crate) fn run(args: &GraphArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let checked = check_paths(
        std::slice::from_ref(&args.story),
        &args.stories,
        false,
        None,
        &[],
        &tale_actions::Registry,
    );
    let Some(story) = checked_story(&checked, &args.story, "cannot be drawn", err)? else {
        return Ok(ExitStatus::Failure);
    };
    let text = match args.format {
        GraphFormat::Mermaid => mermaid(story),
        GraphFormat::Dot => dot(story),
        GraphFormat::Svg => crate::serve::story_svg(story) + "\n",
    };
    write!(out, "{text}")?;
    Ok(ExitStatus::Success)
}

fn type_of(story: &Story, i: usize) -> &'static str {
    story.actions[i].config.as_ref().map_or("?", |c| c.type_name())
}

fn title(story: &Story, i: usize) -> String {
    let a = &story.actions[i];
    a.name.clone().unwrap_or_else(|| a.slug.value.clone())
}

pub(crate) fn mermaid(story: &Story) -> String {
    let heading = serde_json::to_string(&story.name.replace('\n', " ")).unwrap_or_default();
    let mut s = format!("---\ntitle: {heading}\n---\nflowchart TD\n");
    for (i, a) in story.actions.iter().enumerate() {
        let label = format!("{}<br/><i>{}</i>", escape_mermaid(&title(story, i)), type_of(story, i));
        let (open, close) = match type_of(story, i) {
            "webhook" => ("([\"", "\"])"),
            "trigger" => ("{\"", "\"}"),
            "send_to_story" => ("[[\"", "\"]]"),
            _ => ("[\"", "\"]"),
        };
        s.push_str(&format!("    {}{open}{label}{close}\n", a.slug.value));
    }
    for e in story.graph.edge_indices() {
        let Some((from, to)) = story.graph.edge_endpoints(e) else {
            continue;
        };
        let (from, to) = (
            &story.actions[from.index()].slug.value,
            &story.actions[to.index()].slug.value,
        );
        match &story.graph[e] {
            Edge::Main => s.push_str(&format!("    {from} --> {to}\n")),
            Edge::Branch(b) => s.push_str(&format!("    {from} -. {b} .-> {to}\n")),
        }
    }
    s
}

fn escape_mermaid(s: &str) -> String {
    s.replace('"', "#quot;")
}

pub(crate) fn dot(story: &Story) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box, fontname=\"sans-serif\"];\n",
        escape_dot(&story.id.value)
    );
    for (i, a) in story.actions.iter().enumerate() {
        let shape = match type_of(story, i) {
            "webhook" => "oval",
            "trigger" => "diamond",
            "send_to_story" => "box3d",
            _ => "box",
        };
        s.push_str(&format!(
            "    \"{}\" [label=\"{}\\n{}\", shape={shape}];\n",
            escape_dot(&a.slug.value),
            escape_dot(&title(story, i)),
            type_of(story, i)
        ));
    }
    for e in story.graph.edge_indices() {
        let Some((from, to)) = story.graph.edge_endpoints(e) else {
            continue;
        };
        let (from, to) = (
            &story.actions[from.index()].slug.value,
            &story.actions[to.index()].slug.value,
        );
        match &story.graph[e] {
            Edge::Main => s.push_str(&format!("    \"{from}\" -> \"{to}\";\n")),
            Edge::Branch(b) => s.push_str(&format!("    \"{from}\" -> \"{to}\" [label=\"{b}\", style=dashed];\n")),
        }
    }
    s.push_str("}\n");
    s
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
