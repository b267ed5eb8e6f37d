//! From a checked [`Story`] to a [`BuiltStory`]: every template compiled,
//! every action ready to run, edges as adjacency lists.

use std::sync::Arc;

use petgraph::visit::EdgeRef;

use super::render::{CompileError, Compiler, Tree};
use super::rules::Rules;
use super::scope::Globals;
use crate::action::Executable;
use crate::story::{Edge, Schedule, Story};
use crate::template::TemplateParser;

pub struct BuiltStory {
    pub id: Arc<str>,
    pub name: String,
    pub actions: Vec<BuiltAction>,
    pub entry: Option<usize>,
    pub exits: Vec<usize>,
    pub globals: Globals,
    /// Declared inputs (`None`: the story accepts any payload).
    pub inputs: Option<indexmap::IndexMap<String, crate::model::Input>>,
    /// How long `tale serve` keeps the events of finished runs.
    pub keep_events_for: Option<std::time::Duration>,
    /// Action positions by slug: work items name their action by slug.
    by_slug: std::collections::HashMap<Arc<str>, usize>,
}

pub struct BuiltAction {
    pub slug: Arc<str>,
    pub name: Option<String>,
    pub type_name: &'static str,
    pub disabled: bool,
    pub is_webhook: bool,
    /// The path a webhook listens on.
    pub webhook_path: Option<String>,
    /// The action evaluates its rules itself (a trigger).
    pub handles_rules: bool,
    pub rules: Rules,
    pub local: Option<Tree>,
    /// The order its `local` values render in: one that reads another
    /// (`LOCAL.x`) comes after it; and which of them read another.
    pub local_order: Vec<(usize, bool)>,
    /// `state:`: the story state it sets from its last event (name → value).
    pub state: Option<Tree>,
    /// The story state names its templates read (`STATE.name`): loaded from
    /// the store before it runs.
    pub state_reads: Vec<String>,
    pub schedule: Option<Schedule>,
    /// Where its events go, and on which branch.
    pub downstream: Vec<(usize, Edge)>,
    /// The branches it may emit on (`failure`, `no_match`).
    pub branches: &'static [&'static str],
    pub exec: Box<dyn Executable>,
    /// OAuth2 credentials its templates read: their tokens are fetched
    /// before it runs.
    pub tokens: Vec<String>,
    /// The statuses of the `{% prompt %}` links its templates render: each
    /// execution signs one link per status and waits for a click.
    pub prompts: Vec<String>,
    /// Its templates read the run's page (`{% story_run_link %}`).
    pub run_link: bool,
}

/// Every template text of an action: its fields, rules and `local` values.
fn template_texts(action: &crate::story::Action, mut each: impl FnMut(&str)) {
    let Some(config) = &action.config else {
        return;
    };
    let mut fields = Vec::new();
    config.templates(&mut fields);
    for f in &fields {
        each(f.text);
    }
    for rule in &action.rules {
        each(&rule.path.value);
        if let Some(v) = &rule.value {
            v.for_each_str(&mut |s, _| each(s));
        }
    }
    for node in action.local.values().chain(action.state.values()) {
        node.for_each_str(&mut |s, _| each(s));
    }
}

/// The story state names an action's templates read (`STATE.name`).
pub fn state_read(action: &crate::story::Action) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    template_texts(action, |t| {
        let scan = crate::template::scan(t);
        names.extend(
            scan.references
                .iter()
                .filter(|r| r.root == "STATE")
                .filter_map(|r| r.member.clone()),
        );
    });
    names.sort();
    names.dedup();
    names
}

/// The order `local` values render in: each after the values it reads
/// (`LOCAL.x`), otherwise as written; a cycle keeps the written order for
/// the rest (its reads see nil). With each, whether it reads another.
fn local_order(local: &indexmap::IndexMap<String, crate::yaml::Node>) -> Vec<(usize, bool)> {
    let names: Vec<&String> = local.keys().collect();
    let reads: Vec<Vec<usize>> = local
        .values()
        .map(|node| {
            let mut read = Vec::new();
            node.for_each_str(&mut |text, _| {
                for r in crate::template::scan(text).references {
                    if r.root == "LOCAL" {
                        if let Some(j) = r.member.as_ref().and_then(|m| names.iter().position(|n| *n == m)) {
                            read.push(j);
                        }
                    }
                }
            });
            read
        })
        .collect();
    let mut done = vec![false; names.len()];
    let mut order = Vec::with_capacity(names.len());
    while order.len() < names.len() {
        let ready = (0..names.len()).find(|&i| !done[i] && reads[i].iter().all(|&j| done[j] || j == i));
        // A cycle: the first value left, as written.
        let next = ready.or_else(|| (0..names.len()).find(|&i| !done[i]));
        let Some(i) = next else { break };
        done[i] = true;
        order.push((i, !reads[i].is_empty()));
    }
    order
}

/// A mapping of the story (`local:`, `state:`) as one YAML node to compile.
fn mapping(at: crate::span::Span, entries: &indexmap::IndexMap<String, crate::yaml::Node>) -> crate::yaml::Node {
    crate::yaml::Node::new(
        at,
        crate::yaml::NodeKind::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        crate::yaml::Node::new(v.span, crate::yaml::NodeKind::Str(k.clone())),
                        v.clone(),
                    )
                })
                .collect(),
        ),
    )
}

/// The credentials an action reads in its templates, rules and `local`
/// values (lower-cased, without `credential:`).
pub fn credentials_read(action: &crate::story::Action) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    template_texts(action, |t| {
        names.extend(
            crate::template::credential_names(t)
                .into_iter()
                .map(|(n, _)| n.to_ascii_lowercase()),
        )
    });
    names.sort();
    names.dedup();
    names
}

/// The statuses of the `{% prompt status %}` links an action renders.
pub fn prompt_statuses(action: &crate::story::Action) -> Vec<String> {
    let mut statuses: Vec<String> = Vec::new();
    template_texts(action, |t| statuses.extend(crate::template::prompt_statuses(t)));
    statuses.sort();
    statuses.dedup();
    statuses
}

/// Whether an action's templates read its run's page
/// (`{% story_run_link %}`, `META.run…`): only those get the link built.
pub fn reads_run_link(action: &crate::story::Action) -> bool {
    let mut reads = false;
    template_texts(action, |t| {
        let scan = crate::template::scan(t);
        reads |= scan.tags.iter().any(|tag| tag.name == "story_run_link")
            || scan
                .references
                .iter()
                .any(|r| r.root == "META" && r.member.as_deref() == Some("run"));
    });
    reads
}

impl BuiltAction {
    /// The story state names it sets (`state:`).
    pub fn state_names(&self) -> impl Iterator<Item = String> + '_ {
        let names = match &self.state {
            Some(Tree::Object(entries)) => entries.as_slice(),
            _ => &[],
        };
        names.iter().map(|(name, _)| name.clone())
    }
}

impl BuiltStory {
    pub fn action(&self, slug: &str) -> Option<usize> {
        self.by_slug.get(slug).copied()
    }

    /// Whether the action at `i` may start a run without an event: a
    /// scheduled action, or one nothing leads to (started by hand, as in
    /// Tines: `tale run --action`, the API).
    pub fn starts_without_event(&self, i: usize) -> bool {
        let Some(action) = self.actions.get(i) else {
            return false;
        };
        if action.is_webhook {
            return false;
        }
        action.schedule.is_some() || !self.actions.iter().any(|a| a.downstream.iter().any(|(d, _)| *d == i))
    }

    /// Where a run enters: `entry`, else the only webhook, else (a story
    /// with no webhook) the only scheduled action, else the only action
    /// started by hand.
    pub fn default_entry(&self) -> Option<usize> {
        let only = |keep: &dyn Fn(&BuiltAction) -> bool| {
            let mut found = self.actions.iter().enumerate().filter(|(_, a)| keep(a));
            match (found.next(), found.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        };
        self.entry.or_else(|| {
            if self.actions.iter().any(|a| a.is_webhook) {
                only(&|a| a.is_webhook)
            } else if self.actions.iter().any(|a| a.schedule.is_some()) {
                only(&|a| a.schedule.is_some())
            } else {
                let mut manual = (0..self.actions.len()).filter(|i| self.starts_without_event(*i));
                match (manual.next(), manual.next()) {
                    (Some(i), None) => Some(i),
                    _ => None,
                }
            }
        })
    }
}

impl std::fmt::Debug for BuiltStory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltStory")
            .field("id", &self.id)
            .field("actions", &self.actions.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("action `{action}`: {source}")]
    Template { action: String, source: CompileError },
    #[error("action `{0}` has errors; run `tale check`")]
    Broken(String),
}

/// Builds a checked story (one without errors) for running.
pub fn build(story: &Story, parser: &TemplateParser, globals: Globals) -> Result<BuiltStory, BuildError> {
    let compiler = Compiler::new(parser);
    let mut actions = Vec::with_capacity(story.actions.len());
    for (i, a) in story.actions.iter().enumerate() {
        let slug = a.slug.value.clone();
        let err = |source| BuildError::Template {
            action: slug.clone(),
            source,
        };
        let config = a.config.as_ref().ok_or_else(|| BuildError::Broken(slug.clone()))?;
        let exec = config.build(&compiler).map_err(err)?;
        let rules = Rules::compile(&compiler, &a.rules, a.must_match).map_err(err)?;
        let local = if a.local.is_empty() {
            None
        } else {
            Some(compiler.tree("local", &mapping(a.slug.span, &a.local)).map_err(err)?)
        };
        let state = if a.state.is_empty() {
            None
        } else {
            Some(compiler.tree("state", &mapping(a.slug.span, &a.state)).map_err(err)?)
        };
        // In the order the actions are written (petgraph lists edges newest first).
        let mut downstream: Vec<(usize, Edge)> = story
            .graph
            .edges(story.node(i))
            .map(|e| (e.target().index(), e.weight().clone()))
            .collect();
        downstream.sort_by_key(|(target, _)| *target);
        actions.push(BuiltAction {
            slug: slug.as_str().into(),
            name: a.name.clone(),
            type_name: config.type_name(),
            disabled: a.disabled,
            is_webhook: config.is_webhook(),
            webhook_path: config.webhook_path().map(|(p, _)| p.to_owned()),
            handles_rules: config.needs_rules(),
            rules,
            local,
            local_order: local_order(&a.local),
            state,
            state_reads: state_read(a),
            schedule: a.schedule.clone(),
            downstream,
            branches: config.branches(),
            exec,
            tokens: globals
                .vault
                .oauth2_among(credentials_read(a).iter().map(String::as_str)),
            prompts: prompt_statuses(a),
            run_link: reads_run_link(a),
        });
    }
    let by_slug = actions.iter().enumerate().map(|(i, a)| (a.slug.clone(), i)).collect();
    Ok(BuiltStory {
        by_slug,
        id: story.id.value.as_str().into(),
        name: story.name.clone(),
        actions,
        entry: story.entry,
        exits: story.exits.clone(),
        globals,
        inputs: story
            .declares_inputs
            .then(|| story.inputs.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect()),
        keep_events_for: story.keep_events_for,
    })
}
