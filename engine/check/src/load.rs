//! Phase 1 and 2: YAML syntax, then the shape of the story and of each action
//! (decoded in two steps: the common keys, then the body by its `type`).

use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::DiGraph;

use crate::action::{ActionRegistry, COMMON_KEYS, DecodeCx, issue_to_diagnostic};
use crate::diagnostic::{Code, Diagnostic, did_you_mean, one_of};
use crate::model::{RULE_TYPES, RawCommon, RawStory, ScheduleMap};
use crate::span::{Span, Spanned};
use crate::story::{Action, Schedule, Source, Story};
use crate::yaml::{self, DeCx, Limits, Node, NodeKind, YamlError, decode};

use crate::values;

/// Loads one story file. Returns the story (possibly with broken actions,
/// which have no config) unless the file is not even a YAML mapping.
pub(crate) fn load_story(
    file: &Arc<PathBuf>,
    text: &str,
    registry: &dyn ActionRegistry,
    limits: &Limits,
    out: &mut Vec<Diagnostic>,
) -> Option<Loaded> {
    let mut root = parse_yaml(file, text, limits, out)?;
    if !matches!(root.kind, NodeKind::Map(_)) {
        out.push(
            Diagnostic::new(
                Code::WrongType,
                file,
                root.span,
                format!("a story is a mapping with `actions:`, found {}", root.type_name()),
            )
            .label("expected a mapping"),
        );
        return None;
    }

    // The actions are moved out and decoded one by one, by type.
    let actions_node = match &mut root.kind {
        NodeKind::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some("actions"))
            .map(|(_, v)| std::mem::replace(v, Node::new(v.span, NodeKind::Null))),
        _ => None,
    };
    // One key at a time, so that a wrong type in one (`exits: rows`) does not
    // hide the others.
    let actions_key_span = match &root.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("actions"))
            .map(|(k, _)| k.span),
        _ => None,
    };
    let mut raw = RawStory::default();
    let mut interface_broken = false;
    let root_span = root.span;
    if let NodeKind::Map(entries) = root.kind {
        for entry in entries {
            let single = Node::new(root_span, NodeKind::Map(vec![entry]));
            let de = DeCx::default();
            let key = match &single.kind {
                NodeKind::Map(e) => e.first().and_then(|(k, _)| k.key_text()),
                _ => None,
            };
            match decode::<RawStory>(&single, &de) {
                Ok(part) => raw.merge(part),
                Err(issue) => {
                    if matches!(key.as_deref(), Some("entry" | "exits" | "inputs")) {
                        interface_broken = true;
                    }
                    out.push(issue_to_diagnostic(file, "the story", &[], issue));
                }
            }
            for issue in de.take() {
                out.push(issue_to_diagnostic(file, "the story", &[], issue));
            }
        }
    }

    if let Some(version) = &raw.tale {
        if version.value != 1 {
            out.push(
                Diagnostic::new(
                    Code::UnsupportedVersion,
                    file,
                    version.span,
                    format!("story format version {} is not supported", version.value),
                )
                .label("this version")
                .help("this tale reads `tale: 1`"),
            );
        }
    }

    let id = match &raw.id {
        Some(id) => {
            if !values::is_story_id(&id.value) {
                out.push(
                    Diagnostic::new(
                        Code::InvalidSlug,
                        file,
                        id.span,
                        format!("`{}` is not a valid story id", id.value),
                    )
                    .help("story ids use a-z, 0-9, `_` and `-`"),
                );
            }
            id.clone()
        }
        None => {
            // Without `id:`, the story is named by its file; diagnostics about
            // the whole story point at its `name:` or at `actions:`.
            let span = raw
                .name
                .as_ref()
                .map(|n| n.span)
                .or(actions_key_span)
                .unwrap_or(Span::start_of_file());
            let stem = story_id_from_path(file);
            if !values::is_story_id(&stem) {
                out.push(
                    Diagnostic::new(
                        Code::InvalidSlug,
                        file,
                        span,
                        format!("the file name `{stem}` is not a valid story id"),
                    )
                    .help(format!(
                        "rename the file (`{}`) or give the story an `id:`",
                        values::slugify(&stem).replace('_', "-")
                    )),
                );
            }
            Spanned::new(stem, span)
        }
    };

    let keep_events_for = raw.keep_events_for.as_ref().and_then(|k| {
        let text = match &k.kind {
            NodeKind::Str(s) => s.clone(),
            NodeKind::Int(_) | NodeKind::UInt(_) => k.key_text().unwrap_or_default(),
            _ => {
                out.push(
                    Diagnostic::new(
                        Code::WrongType,
                        file,
                        k.span,
                        format!("`keep_events_for` is a duration such as `30d`, found {}", k.type_name()),
                    )
                    .label("expected a duration"),
                );
                return None;
            }
        };
        match values::duration(&text) {
            Ok(d) if d.is_zero() => {
                out.push(
                    Diagnostic::new(
                        Code::InvalidDuration,
                        file,
                        k.span,
                        "`keep_events_for` must be longer than 0",
                    )
                    .help("remove `keep_events_for` to keep events for ever"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                out.push(
                    Diagnostic::new(
                        Code::InvalidDuration,
                        file,
                        k.span,
                        format!("invalid duration `{text}`: {e}"),
                    )
                    .help("write a duration such as `30d`, `12h` or `90m`, or a number of seconds"),
                );
                None
            }
        }
    });

    let mut actions = Vec::new();
    match actions_node {
        None => {
            out.push(
                Diagnostic::new(Code::MissingKey, file, root.span, "the story has no `actions:`")
                    .label("add `actions:` to this story"),
            );
        }
        Some(node) => match node.kind {
            NodeKind::Map(entries) if entries.is_empty() => out.push(
                Diagnostic::new(
                    Code::MissingKey,
                    file,
                    actions_key_span.unwrap_or(node.span),
                    "the story has no actions",
                )
                .label("`actions:` is empty")
                .help("add the story's actions under `actions:`, keyed by slug"),
            ),
            NodeKind::Map(entries) => {
                let mut above: Option<(String, Node)> = None;
                for (key, body) in entries {
                    let previous = above.as_ref().map(|(slug, body)| (slug.as_str(), body));
                    let next = (key.key_text().unwrap_or_default(), body.clone());
                    if let Some(action) = load_action(file, &key, body, previous, registry, out) {
                        actions.push(action);
                    }
                    above = Some(next);
                }
            }
            NodeKind::Null => out.push(
                Diagnostic::new(
                    Code::MissingKey,
                    file,
                    actions_key_span.unwrap_or(node.span),
                    "the story has no actions",
                )
                .label("`actions:` is empty")
                .help("add the story's actions under `actions:`, keyed by slug"),
            ),
            _ => out.push(
                Diagnostic::new(
                    Code::WrongType,
                    file,
                    node.span,
                    format!("`actions` is a mapping of slug to action, found {}", node.type_name()),
                )
                .label("expected a mapping"),
            ),
        },
    }
    // A duplicated slug was reported above; keep the first so references stay meaningful.
    let mut seen = std::collections::HashSet::new();
    actions.retain(|a| seen.insert(a.slug.value.clone()));

    let index = actions
        .iter()
        .enumerate()
        .map(|(i, a)| (a.slug.value.clone(), i))
        .collect();
    let mut graph = DiGraph::with_capacity(actions.len(), actions.len());
    for i in 0..actions.len() {
        graph.add_node(i);
    }
    let name = raw.name.as_ref().map_or_else(|| id.value.clone(), |n| n.value.clone());
    let inputs = raw.inputs.as_ref().map(|i| i.value.clone()).unwrap_or_default();
    let story = Story {
        file: file.clone(),
        id,
        name,
        description: raw.description.clone(),
        actions,
        graph,
        entry: None,
        exits: Vec::new(),
        declares_inputs: raw.inputs.is_some(),
        inputs,
        keep_events_for,
        index,
        interface_broken,
    };
    Some(Loaded {
        story,
        entry: raw.entry,
        exits: raw.exits,
    })
}

/// A story before the graph phase, with its `entry`/`exits` still unresolved.
pub(crate) struct Loaded {
    pub(crate) story: Story,
    pub(crate) entry: Option<Spanned<String>>,
    pub(crate) exits: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `url: x` among the action slugs, right under an action: a key of that
/// action written one level too far left.
fn dedented_key(name: &str, above: Option<(&str, &Node)>, registry: &dyn ActionRegistry) -> Option<String> {
    let (slug, body) = above?;
    let (first, _) = body.as_map()?.first()?;
    let known = COMMON_KEYS.contains(&name) || {
        let mut generator = schemars::SchemaGenerator::default();
        registry.schemas(&mut generator).iter().any(|(_, schema)| {
            schema
                .get("properties")
                .and_then(|p| p.as_object())
                .is_some_and(|p| p.contains_key(name))
        })
    };
    known.then(|| {
        format!(
            "`{name}` looks like a key of action `{slug}` above it: indent it like `{}` (column {})",
            first.key_text().unwrap_or_default(),
            first.span.col
        )
    })
}

/// Parses a YAML file of tale's own (a story, a test or mocks file): the
/// tree, or `None` with the syntax error in `out`; repeated keys and
/// non-finite numbers are reported in `out` too.
pub fn parse_yaml(file: &Arc<PathBuf>, text: &str, limits: &Limits, out: &mut Vec<Diagnostic>) -> Option<Node> {
    let root = match yaml::parse(text, limits) {
        Ok(root) => root,
        Err(e) => {
            out.push(yaml_error(file, text, &e));
            return None;
        }
    };
    for dup in yaml::duplicate_keys(&root) {
        let (code, message) = if dup.in_actions {
            (Code::DuplicateSlug, format!("two actions are named `{}`", dup.key))
        } else {
            (Code::DuplicateKey, format!("the key `{}` is repeated", dup.key))
        };
        out.push(
            Diagnostic::new(code, file, dup.span, message)
                .label("repeated here")
                .secondary(file, dup.first, "first defined here")
                .help("YAML keeps only one of them; rename or remove the copy"),
        );
    }
    for span in yaml::non_finite_numbers(&root) {
        out.push(
            Diagnostic::new(Code::InvalidValue, file, span, "not a finite number")
                .label("`.nan` and `.inf` are not numbers a story can use")
                .help("write a number, or quote it to mean the text"),
        );
    }
    Some(root)
}

pub(crate) fn yaml_error(file: &Arc<PathBuf>, text: &str, e: &YamlError) -> Diagnostic {
    match e {
        YamlError::Syntax { message, span } => {
            Diagnostic::new(Code::YamlSyntax, file, *span, format!("invalid YAML: {message}"))
                .label("here")
                .help_opt(syntax_hint(text, *span, message))
        }
        YamlError::Budget { message, span } => Diagnostic::new(Code::YamlBudget, file, *span, message.clone())
            .help("tale refuses documents that are too large, too deeply nested or that expand too many aliases"),
    }
}

/// What usually causes the parser's complaint, from the lines around it:
/// tabs, a line indented under a key that already has a value, a `: `
/// inside a plain value.
fn syntax_hint(text: &str, span: Span, message: &str) -> Option<String> {
    if message.contains("tabs") {
        return Some("YAML indents with spaces only: replace the tabs at the start of the line with spaces".into());
    }
    if !message.contains("mapping values are not allowed") {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let at = (span.line as usize).checked_sub(1)?;
    let line = lines.get(at)?;
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let first_colon = line.find(": ").or_else(|| line.strip_suffix(':').map(str::len))?;
    if (span.col as usize).saturating_sub(1) > first_colon {
        let key = line[..first_colon].trim();
        return Some(format!(
            "a `: ` inside a plain value starts a new key: quote the value (`{key}: \"…\"`)"
        ));
    }
    let (number, above) = lines[..at]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let has_value = above
        .split_once(':')
        .is_some_and(|(_, v)| !v.trim().is_empty() && !matches!(v.trim(), "|" | ">" | "|-" | ">-"));
    (indent(line) > indent(above) && has_value).then(|| {
        let key = above
            .trim_start()
            .split(':')
            .next()
            .unwrap_or("")
            .trim_start_matches("- ");
        format!(
            "this line is indented more than `{key}:` on line {}, which already has a value: \
             indent it like `{key}` (column {})",
            number + 1,
            indent(above) + 1
        )
    })
}

pub(crate) fn story_id_from_path(path: &std::path::Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("story").to_owned()
}

fn load_action(
    file: &Arc<PathBuf>,
    key: &Node,
    body: Node,
    above: Option<(&str, &Node)>,
    registry: &dyn ActionRegistry,
    out: &mut Vec<Diagnostic>,
) -> Option<Action> {
    let Some(slug) = key.key_text() else {
        out.push(Diagnostic::new(
            Code::InvalidSlug,
            file,
            key.span,
            "an action slug must be a plain name",
        ));
        return None;
    };
    if let Err(why) = values::check_slug(&slug) {
        out.push(
            Diagnostic::new(
                Code::InvalidSlug,
                file,
                key.span,
                format!("`{slug}` is not a valid action slug: {why}"),
            )
            .label("invalid slug")
            .help(format!(
                "slugs use a-z, 0-9 and `_` and start with a letter, such as `{}`",
                values::slugify(&slug)
            )),
        );
    }
    let slug = Spanned::new(slug, key.span);
    let body_span = body.span;
    let NodeKind::Map(entries) = body.kind else {
        out.push(
            Diagnostic::new(
                Code::WrongType,
                file,
                if body.kind == NodeKind::Null {
                    key.span
                } else {
                    body.span
                },
                format!(
                    "action `{}` must be a mapping with a `type`, found {}",
                    slug.value,
                    body.type_name()
                ),
            )
            .label("expected a mapping")
            .help_opt(dedented_key(&slug.value, above, registry)),
        );
        return None;
    };

    // Step one: the common keys; step two: the rest, by type.
    let (common_entries, own_entries): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, _)| k.as_str().is_some_and(|k| COMMON_KEYS.contains(&k)));
    let has_rules_key = common_entries.iter().any(|(k, _)| k.as_str() == Some("rules"));
    // `form:` for `from:`: the links are mistyped, not absent. The unknown
    // key is reported (with its suggestion); the graph checks then stay
    // quiet about this action and what follows it, instead of saying the
    // same mistake three more ways.
    let mistyped_link = own_entries
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .any(|k| strsim::damerau_levenshtein(k, "from") == 1 || strsim::damerau_levenshtein(k, "schedule") == 1);
    let common_node = Node::new(body_span, NodeKind::Map(common_entries));
    let own_node = Node::new(body_span, NodeKind::Map(own_entries));

    let what = format!("action `{}`", slug.value);
    let mut cx = DecodeCx {
        file,
        diagnostics: out,
        slug_span: key.span,
        what: what.clone(),
        extra_keys: COMMON_KEYS,
    };
    // One common key at a time, so that a wrong type in one (`disabled: "yes"`)
    // does not hide the others (`type` above all).
    let mut common = RawCommon::default();
    if let NodeKind::Map(entries) = common_node.kind {
        for entry in entries {
            let single = Node::new(body_span, NodeKind::Map(vec![entry]));
            if let Some(part) = cx.decode::<RawCommon>(&single) {
                common.merge(part);
            }
        }
    }

    let config = match &common.kind {
        None => {
            cx.report(
                Code::MissingKey,
                key.span,
                format!("action `{}` has no `type`", slug.value),
            )
            .help = Some(format!("add `type:` with one of {}", one_of(registry.type_names())));
            None
        }
        Some(kind) => {
            cx.what = format!("{} action `{}`", kind.value, slug.value);
            match registry.decode(&kind.value, &own_node, &mut cx) {
                Some(config) => config,
                None => {
                    let help = did_you_mean(&kind.value, registry.type_names().iter().copied())
                        .unwrap_or_else(|| format!("action types are {}", one_of(registry.type_names())));
                    let d = cx.report(
                        Code::UnknownActionType,
                        kind.span,
                        format!("unknown action type `{}`", kind.value),
                    );
                    d.label = Some("unknown type".into());
                    d.help = Some(help);
                    None
                }
            }
        }
    };

    // `state:` renders with the last event an action emits when it runs: a
    // webhook (it answers requests, it does not run) and an explode (its
    // elements are emitted after its step) have none to give it.
    let mode = own_node.get("mode").and_then(|m| m.as_str());
    let kind = common.kind.as_ref().map(|k| k.value.as_str());
    let no_state = match (kind, mode) {
        (Some("webhook"), _) => Some("a webhook answers requests: set the state on the action after it"),
        (Some("transform"), Some("explode")) => {
            Some("an explode emits its elements after its step: set the state on the action after it")
        }
        _ => None,
    };
    if let (Some(why), Some((name, node))) = (no_state, common.state.iter().flatten().next()) {
        out.push(
            Diagnostic::new(
                Code::InvalidValue,
                file,
                node.span,
                format!("`state` (`{name}`) cannot be set here"),
            )
            .help(why),
        );
    }
    for (name, node) in common.state.iter().flatten() {
        if let Err(why) = crate::values::check_slug(name) {
            out.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    file,
                    node.span,
                    format!("`{name}` cannot name story state: {why}"),
                )
                .help("state names are read as `STATE.name`: use a-z, 0-9 and `_`, starting with a letter"),
            );
        }
    }
    let (sources, from_broken) = parse_from(file, common.from.as_ref(), out);
    let schedule = common.schedule.as_ref().and_then(|s| parse_schedule(file, s, out));
    let rules = common.rules.as_ref().map(|r| r.value.clone()).unwrap_or_default();
    check_rules(file, &rules, out);
    let must_match = common.must_match.as_ref().and_then(|m| {
        let n = m.value as usize;
        if n == 0 || n > rules.len() {
            out.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    file,
                    m.span,
                    format!("`must_match` is {n}, but the action has {} rule(s)", rules.len()),
                )
                .help("must_match counts how many rules must match: between 1 and the number of rules"),
            );
            None
        } else {
            Some(n)
        }
    });
    if let Some(rules_node) = &common.rules {
        if rules_node.value.is_empty() {
            out.push(
                Diagnostic::new(Code::InvalidValue, file, rules_node.span, "`rules` is empty")
                    .help("remove `rules:` or add a rule"),
            );
        }
    }

    if !has_rules_key && config.as_ref().is_some_and(|c| c.needs_rules()) {
        out.push(
            Diagnostic::new(Code::MissingKey, file, slug.span, format!("trigger `{}` has no rules", slug.value))
                .label("add `rules:` to this trigger")
                .help("a trigger passes on the events that match its `rules`, e.g. `- { type: field==value, path: \"{{ x.status }}\", value: open }`"),
        );
    }
    Some(Action {
        slug,
        type_name: common.kind,
        name: common.name,
        description: common.description,
        disabled: common.disabled,
        sources,
        schedule,
        rules,
        must_match,
        local: common.local.unwrap_or_default(),
        state: common.state.unwrap_or_default(),
        config,
        unresolved_from: from_broken || mistyped_link,
    })
}

/// The sources of `from:`, and whether some entry could not be read.
fn parse_from(file: &Arc<PathBuf>, from: Option<&Node>, out: &mut Vec<Diagnostic>) -> (Vec<Source>, bool) {
    let Some(from) = from else { return (Vec::new(), false) };
    let mut broken = false;
    let mut listed = std::collections::HashSet::new();
    let items: Vec<&Node> = match &from.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Null => Vec::new(),
        _ => vec![from],
    };
    let mut sources = Vec::new();
    for item in items {
        let Some(text) = item.as_str() else {
            out.push(
                Diagnostic::new(
                    Code::WrongType,
                    file,
                    item.span,
                    format!("`from` takes a slug or a list of slugs, found {}", item.type_name()),
                )
                .label("expected a slug"),
            );
            broken = true;
            continue;
        };
        if !listed.insert(text) {
            out.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    file,
                    item.span,
                    format!("`{text}` is listed twice in `from`"),
                )
                .label("listed again")
                .help("the action would run twice for every event of that source; list it once"),
            );
            continue;
        }
        let (slug, branch) = match text.split_once('.') {
            Some((s, b)) => (s.to_owned(), Some(b.to_owned())),
            None => (text.to_owned(), None),
        };
        sources.push(Source {
            slug,
            branch,
            span: item.span,
        });
    }
    (sources, broken)
}

/// The schedule, also when invalid (reported here): the action is still an
/// entry point, and nothing downstream should be called unreachable.
fn parse_schedule(file: &Arc<PathBuf>, node: &Node, out: &mut Vec<Diagnostic>) -> Option<Schedule> {
    let placeholder = Schedule {
        cron: String::new(),
        timezone: "UTC".into(),
        span: node.span,
    };
    let (cron, timezone) = match &node.kind {
        NodeKind::Str(s) => (Spanned::new(s.clone(), node.span), None),
        NodeKind::Map(_) => {
            let mut cx = DecodeCx {
                file,
                diagnostics: out,
                slug_span: node.span,
                what: "`schedule`".into(),
                extra_keys: &[],
            };
            let Some(map) = cx.decode::<ScheduleMap>(node) else {
                return Some(placeholder);
            };
            (map.cron, map.timezone)
        }
        _ => {
            out.push(
                Diagnostic::new(
                    Code::WrongType,
                    file,
                    node.span,
                    format!(
                        "`schedule` is a cron string or `{{cron, timezone}}`, found {}",
                        node.type_name()
                    ),
                )
                .label("expected a cron string"),
            );
            return Some(placeholder);
        }
    };
    if let Err(e) = values::cron(&cron.value) {
        out.push(
            Diagnostic::new(Code::InvalidCron, file, cron.span, format!("invalid cron expression `{}`: {e}", cron.value))
                .label("this schedule")
                .help("five fields (minute hour day month weekday), six with seconds first, or @hourly/@daily/@weekly/@monthly"),
        );
    }
    let tz = match &timezone {
        Some(tz) => {
            if values::timezone(&tz.value).is_err() {
                let help = did_you_mean(&tz.value, values::timezone_names())
                    .unwrap_or_else(|| "use an IANA name such as `Europe/Paris` or `UTC`".into());
                out.push(
                    Diagnostic::new(
                        Code::InvalidTimezone,
                        file,
                        tz.span,
                        format!("unknown time zone `{}`", tz.value),
                    )
                    .label("not an IANA time zone")
                    .help(help),
                );
            }
            tz.value.clone()
        }
        None => "UTC".to_owned(),
    };
    Some(Schedule {
        cron: cron.value,
        timezone: tz,
        span: node.span,
    })
}

/// Rule types, values and regexes (shared by `rules:` and the trigger's rules).
pub fn check_rules(file: &Arc<PathBuf>, rules: &[crate::model::Rule], out: &mut Vec<Diagnostic>) {
    for rule in rules {
        let kind = rule.kind.value.as_str();
        if !RULE_TYPES.contains(&kind) {
            let help = did_you_mean(kind, RULE_TYPES.iter().copied())
                .unwrap_or_else(|| format!("rule types are {}", one_of(RULE_TYPES)));
            out.push(
                Diagnostic::new(
                    Code::UnknownRuleType,
                    file,
                    rule.kind.span,
                    format!("unknown rule type `{kind}`"),
                )
                .label("unknown rule type")
                .help(help),
            );
            continue;
        }
        let needs_value = !matches!(kind, "is_empty" | "is_present");
        match (&rule.value, needs_value) {
            (None, true) => out.push(
                Diagnostic::new(
                    Code::MissingKey,
                    file,
                    rule.kind.span,
                    format!("{} rule needs a `value`", article_code(kind)),
                )
                .label("this rule"),
            ),
            (Some(v), false) => out.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    file,
                    v.span,
                    format!("{} rule takes no `value`", article_code(kind)),
                )
                .help("remove `value:`"),
            ),
            (Some(v), true) => {
                let is_list = matches!(v.kind, NodeKind::Seq(_));
                let list_rule = matches!(kind, "in" | "not in");
                if matches!(v.kind, NodeKind::Map(_)) || (is_list && !list_rule) {
                    out.push(
                        Diagnostic::new(
                            Code::WrongType,
                            file,
                            v.span,
                            format!(
                                "{} rule compares with a string, number or boolean, found {}",
                                article_code(kind),
                                v.type_name()
                            ),
                        )
                        .label("wrong type"),
                    );
                } else if kind.ends_with("regex") {
                    if let Some(re) = v.as_str() {
                        let mut vcx = crate::action::ValueCx { file, diagnostics: out };
                        vcx.regex(re, v.span);
                    }
                }
            }
            (None, false) => {}
        }
    }
}

/// "an `is_empty`", "a `regex`"
fn article_code(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} `{word}`", if vowel { "an" } else { "a" })
}
