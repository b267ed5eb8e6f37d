//! The checked story: actions with resolved sources, the petgraph DAG,
//! entry and exits. Built by `check`; what the runtime will execute.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::action::ActionConfig;
use crate::model::{Input, Rule};
use crate::span::{Span, Spanned};
use crate::yaml::Node;

#[derive(Debug)]
pub struct Story {
    pub file: Arc<PathBuf>,
    /// The id other stories call it by: `id:` or the file stem.
    pub id: Spanned<String>,
    pub name: String,
    pub description: Option<String>,
    pub actions: Vec<Action>,
    /// One node per action (same index as `actions`); edges carry the branch.
    pub graph: DiGraph<usize, Edge>,
    pub entry: Option<usize>,
    pub exits: Vec<usize>,
    pub inputs: IndexMap<String, Spanned<Input>>,
    /// Whether the story declares `inputs:` at all (no declaration accepts any payload).
    pub declares_inputs: bool,
    pub keep_events_for: Option<Duration>,
    /// `entry`, `exits` or `inputs` could not be read (reported): checks of
    /// calls to this story stay quiet instead of guessing.
    pub interface_broken: bool,
    /// Slug → position in `actions`.
    pub index: HashMap<String, usize>,
}

impl Story {
    pub fn action(&self, slug: &str) -> Option<usize> {
        self.index.get(slug).copied()
    }

    pub fn node(&self, action: usize) -> NodeIndex {
        NodeIndex::new(action)
    }

    /// Callable as a sub-story: declares `entry` and `exits`.
    pub fn is_callable(&self) -> bool {
        self.entry.is_some() && !self.exits.is_empty()
    }
}

#[derive(Debug)]
pub struct Action {
    pub slug: Spanned<String>,
    /// The `type:` value as written.
    pub type_name: Option<Spanned<String>>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub disabled: bool,
    pub sources: Vec<Source>,
    pub schedule: Option<Schedule>,
    pub rules: Vec<Rule>,
    pub must_match: Option<usize>,
    pub local: IndexMap<String, Node>,
    /// The story state names it sets when it emits (`state:`).
    pub state: IndexMap<String, Node>,
    /// `None` when the body had errors: the checker then assumes the least.
    pub config: Option<Box<dyn ActionConfig>>,
    /// Some `from` entry named a missing action or branch: the graph around
    /// this action is incomplete, so checks that depend on it stay quiet.
    pub unresolved_from: bool,
}

impl Action {
    pub fn is_webhook(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.is_webhook())
    }
}

/// One entry of `from:`.
#[derive(Clone, Debug)]
pub struct Source {
    pub slug: String,
    pub branch: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edge {
    /// The source's normal output.
    Main,
    /// A named branch: `failure`, `no_match`.
    Branch(String),
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub cron: String,
    pub timezone: String,
    pub span: Span,
}
