//! Phase 3: the graph. Resolves `from`, builds the petgraph DAG, and checks
//! branches, cycles, entry points, reachability, `entry` and `exits`.

use petgraph::algo::tarjan_scc;
use petgraph::graph::NodeIndex;
use petgraph::visit::{Bfs, Reversed};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::story::{Edge, Story};

use super::load::Loaded;

pub(crate) fn build(loaded: Loaded, out: &mut Vec<Diagnostic>) -> Story {
    let Loaded {
        mut story,
        entry,
        exits,
    } = loaded;
    let file = story.file.clone();

    // Edges.
    let mut unresolved: Vec<bool> = story.actions.iter().map(|a| a.unresolved_from).collect();
    for (target, action) in story.actions.iter().enumerate() {
        for source in &action.sources {
            let Some(src) = story.action(&source.slug) else {
                let slugs = story.actions.iter().map(|a| a.slug.value.as_str());
                let help = did_you_mean(&source.slug, slugs)
                    .unwrap_or_else(|| "`from` names another action of this story by its slug".into());
                out.push(
                    Diagnostic::new(
                        Code::UnknownSource,
                        &file,
                        source.span,
                        format!("action `{}` does not exist", source.slug),
                    )
                    .label("no action with this slug")
                    .help(help),
                );
                unresolved[target] = true;
                continue;
            };
            let edge = match &source.branch {
                None => Edge::Main,
                Some(branch) => {
                    let src_action = &story.actions[src];
                    if let Some(config) = &src_action.config {
                        let branches = config.branches();
                        if !branches.contains(&branch.as_str()) {
                            let message = format!(
                                "{} action has no `{branch}` branch",
                                crate::diagnostic::article(config.type_name())
                            );
                            let help = if branches.is_empty() {
                                format!(
                                    "{} actions have no branches: use `from: {}`",
                                    config.type_name(),
                                    source.slug
                                )
                            } else {
                                did_you_mean(branch, branches.iter().copied()).unwrap_or_else(|| {
                                    format!("its branches are {}", crate::diagnostic::one_of(branches))
                                })
                            };
                            out.push(
                                Diagnostic::new(Code::UnknownBranch, &file, source.span, message)
                                    .label("unknown branch")
                                    .secondary(
                                        &file,
                                        src_action.slug.span,
                                        format!("`{}` is defined here", source.slug),
                                    )
                                    .help(help),
                            );
                            unresolved[target] = true;
                            continue;
                        }
                    }
                    Edge::Branch(branch.clone())
                }
            };
            story.graph.add_edge(NodeIndex::new(src), NodeIndex::new(target), edge);
        }
    }

    // Anything downstream of a broken `from` has an incomplete graph.
    for (i, _) in unresolved.iter().enumerate().filter(|(_, u)| **u) {
        {
            let mut bfs = Bfs::new(&story.graph, NodeIndex::new(i));
            while let Some(n) = bfs.next(&story.graph) {
                story.actions[n.index()].unresolved_from = true;
            }
        }
    }

    // Entry points: webhooks and schedules.
    for action in &story.actions {
        if let Some(schedule) = &action.schedule {
            if !action.sources.is_empty() {
                out.push(
                    Diagnostic::new(
                        Code::ScheduleWithFrom,
                        &file,
                        schedule.span,
                        format!("action `{}` has both `schedule` and `from`", action.slug.value),
                    )
                    .label("schedule")
                    .secondary(&file, action.sources[0].span, "from")
                    .help("a scheduled action starts runs of its own: remove `from` or `schedule`"),
                );
            }
        }
        if let (true, Some(schedule)) = (action.is_webhook(), &action.schedule) {
            out.push(
                Diagnostic::new(
                    Code::ScheduleOnWebhook,
                    &file,
                    schedule.span,
                    format!("webhook `{}` cannot have a `schedule`", action.slug.value),
                )
                .label("schedule")
                .help("a webhook runs when it is called; put the schedule on the first action of a scheduled story"),
            );
        }
        if action.is_webhook() && !action.sources.is_empty() {
            out.push(
                Diagnostic::new(
                    Code::EntryWithFrom,
                    &file,
                    action.sources[0].span,
                    format!("webhook `{}` cannot have `from`", action.slug.value),
                )
                .help("a webhook receives HTTP requests; use a transform to pass events on"),
            );
        }
    }

    // Cycles, each reported once at a `from` inside it.
    let mut in_cycle = vec![false; story.actions.len()];
    for scc in tarjan_scc(&story.graph) {
        let self_loop = scc.len() == 1 && story.graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        for n in &scc {
            in_cycle[n.index()] = true;
        }
        let path = cycle_path(&story, &scc);
        let first = path[0];
        let last = *path.last().unwrap_or(&first);
        // The `from` that closes the loop: the first action's, naming the last.
        let span = story.actions[first]
            .sources
            .iter()
            .find(|s| s.slug == story.actions[last].slug.value)
            .map_or(story.actions[first].slug.span, |s| s.span);
        let names: Vec<&str> = path
            .iter()
            .chain(std::iter::once(&first))
            .map(|&i| story.actions[i].slug.value.as_str())
            .collect();
        out.push(
            Diagnostic::new(
                Code::Cycle,
                &file,
                span,
                format!("actions form a cycle: {}", names.join(" → ")),
            )
            .label("this `from` closes the cycle")
            .help("events flow one way: a story is a directed acyclic graph"),
        );
    }

    // Reachability from the entry points: webhooks, scheduled actions and
    // actions without `from`, which run when started by hand (as in Tines).
    let starts: Vec<usize> = story
        .actions
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_webhook() || a.schedule.is_some() || a.sources.is_empty())
        .map(|(i, _)| i)
        .collect();
    for &i in &starts {
        let a = &story.actions[i];
        if a.is_webhook() || a.schedule.is_some() || a.disabled || a.config.is_none() || a.unresolved_from {
            continue;
        }
        out.push(
            Diagnostic::new(
                Code::ManualAction,
                &file,
                a.slug.span,
                format!(
                    "action `{}` has no `from` and no `schedule`: it runs only when started by hand",
                    a.slug.value
                ),
            )
            .label("started by hand")
            .help(format!(
                "start it with `tale run STORY --action {0}` or `POST /api/stories/<id>/actions/{0}/run`; \
                 if something should lead to it, give it a `from:` (or a `schedule`)",
                a.slug.value
            )),
        );
    }
    if starts.is_empty() && !story.actions.is_empty() {
        out.push(
            Diagnostic::new(Code::NoEntryPoint, &file, story.id.span, "nothing can start this story")
                .help("every action has a `from`: add a webhook, or an action without `from` (with a `schedule`, or started by hand)"),
        );
    } else {
        let mut reached = vec![false; story.actions.len()];
        for &s in &starts {
            let mut bfs = Bfs::new(&story.graph, NodeIndex::new(s));
            while let Some(n) = bfs.next(&story.graph) {
                reached[n.index()] = true;
            }
        }
        for (i, action) in story.actions.iter().enumerate() {
            if reached[i] || action.disabled || in_cycle[i] || action.unresolved_from {
                continue;
            }
            let message = format!("no entry point leads to action `{}`", action.slug.value);
            out.push(
                Diagnostic::new(Code::Unreachable, &file, action.slug.span, message)
                    .label("unreachable")
                    .help("its `from` chain starts in a cycle: link it to a webhook, a scheduled action or an action without `from`"),
            );
        }
    }

    // `entry` and `exits`.
    let declared_inputs = story.declares_inputs;
    match &entry {
        Some(e) => match story.action(&e.value) {
            Some(i) if story.actions[i].is_webhook() || story.actions[i].config.is_none() => story.entry = Some(i),
            Some(i) => out.push(
                Diagnostic::new(
                    Code::InvalidEntry,
                    &file,
                    e.span,
                    format!(
                        "`entry` must name a webhook, and `{}` is {}",
                        e.value,
                        type_of(&story, i)
                    ),
                )
                .secondary(&file, story.actions[i].slug.span, "defined here"),
            ),
            None => out.push(
                Diagnostic::new(
                    Code::InvalidEntry,
                    &file,
                    e.span,
                    format!("`entry` names `{}`, which does not exist", e.value),
                )
                .help_opt(did_you_mean(
                    &e.value,
                    story.actions.iter().map(|a| a.slug.value.as_str()),
                )),
            ),
        },
        None => {
            if let Some(x) = &exits {
                out.push(
                    Diagnostic::new(
                        Code::InvalidEntry,
                        &file,
                        x.span,
                        "the story declares `exits` but no `entry`",
                    )
                    .help("a sub-story needs `entry:` (its webhook) as well as `exits:`"),
                );
            } else if declared_inputs {
                out.push(
                    Diagnostic::new(
                        Code::InvalidEntry,
                        &file,
                        story.id.span,
                        "the story declares `inputs` but no `entry`",
                    )
                    .help("inputs arrive at the webhook named by `entry:`"),
                );
            }
        }
    }
    match &exits {
        Some(x) => {
            if x.value.is_empty() {
                out.push(
                    Diagnostic::new(Code::InvalidExit, &file, x.span, "`exits` is empty")
                        .help("list the message_only transforms whose output returns to the caller"),
                );
            }
            for exit in &x.value {
                match story.action(&exit.value) {
                    Some(i) if story.actions[i].config.as_ref().is_none_or(|c| c.is_exit()) => story.exits.push(i),
                    Some(i) => out.push(
                        Diagnostic::new(
                            Code::InvalidExit,
                            &file,
                            exit.span,
                            format!(
                                "exits must be message_only transforms, and `{}` is {}",
                                exit.value,
                                type_of(&story, i)
                            ),
                        )
                        .secondary(&file, story.actions[i].slug.span, "defined here"),
                    ),
                    None => out.push(
                        Diagnostic::new(
                            Code::InvalidExit,
                            &file,
                            exit.span,
                            format!("`exits` names `{}`, which does not exist", exit.value),
                        )
                        .help_opt(did_you_mean(
                            &exit.value,
                            story.actions.iter().map(|a| a.slug.value.as_str()),
                        )),
                    ),
                }
            }
        }
        None if story.interface_broken => {}
        None => {
            if let Some(e) = &entry {
                out.push(
                    Diagnostic::new(
                        Code::InvalidExit,
                        &file,
                        e.span,
                        "the story declares `entry` but no `exits`",
                    )
                    .help("add `exits:` with the message_only transforms whose output returns to the caller"),
                );
            }
        }
    }
    story
}

fn type_of(story: &Story, i: usize) -> String {
    let action = &story.actions[i];
    match &action.config {
        Some(c) => crate::diagnostic::article(c.type_name()) + " action",
        None => "broken action".into(),
    }
}

/// The actions of a strongly connected component in the order events flow.
fn cycle_path(story: &Story, scc: &[NodeIndex]) -> Vec<usize> {
    let start = *scc
        .iter()
        .min_by_key(|n| story.actions[n.index()].slug.span)
        .unwrap_or(&scc[0]);
    let mut path = vec![start.index()];
    let mut current = start;
    while path.len() <= scc.len() {
        let next = story
            .graph
            .neighbors(current)
            .filter(|n| scc.contains(n))
            .min_by_key(|n| story.actions[n.index()].slug.span);
        match next {
            Some(n) if n == start => break,
            Some(n) if !path.contains(&n.index()) => {
                path.push(n.index());
                current = n;
            }
            _ => break,
        }
    }
    path
}

/// Every action upstream of `action` (its ancestors), as a membership vector.
pub(crate) fn ancestors(story: &Story, action: usize) -> Vec<bool> {
    let mut seen = vec![false; story.actions.len()];
    let reversed = Reversed(&story.graph);
    let mut bfs = Bfs::new(reversed, NodeIndex::new(action));
    while let Some(n) = bfs.next(reversed) {
        if n.index() != action {
            seen[n.index()] = true;
        }
    }
    seen
}
