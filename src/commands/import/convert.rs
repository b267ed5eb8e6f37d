//! A Tines export (one story and the sub-stories embedded in it) turned
//! into tale stories, as data: actions with `from`, options under tale's
//! keys, templates rewritten where a rewrite keeps their meaning. Every
//! mapping that loses something, and every part left out, is a [`Note`]
//! with its place in the export (docs/migrating-from-tines.md).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as J, json};

/// Something the import could not carry over as it was.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Note {
    /// Where in the export: `story › action › option`.
    pub(crate) place: String,
    pub(crate) what: String,
}

/// One story, ready to be written as YAML.
pub(crate) struct Imported {
    pub(crate) id: String,
    pub(crate) story: J,
    pub(crate) notes: Vec<Note>,
    /// Credentials its templates name, with the hosts of the requests that use them.
    pub(crate) credentials: BTreeMap<String, BTreeSet<String>>,
    pub(crate) resources: BTreeSet<String>,
    /// Tines test actions (calls of the story itself): (name, payload), as
    /// story-test cases.
    pub(crate) tests: Vec<(String, J)>,
}

/// Tines' slug rule: lower case, each run of other characters one `_`.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// Every story of an export: itself, then the embedded sub-stories (depth first).
pub(crate) fn stories(export: &J) -> Vec<&J> {
    let mut out = vec![export];
    for sub in export["send_to_stories"].as_array().into_iter().flatten() {
        out.extend(stories(sub));
    }
    out
}

/// The id of a story: its name as `{% story Name %}` resolves it.
pub(crate) fn story_id(story: &J) -> String {
    let name = story["name"].as_str().unwrap_or("imported story");
    let id = tale_engine::template::story_slug(name);
    if id.is_empty() { "imported-story".to_owned() } else { id }
}

fn text(v: &J) -> Option<String> {
    match v {
        J::String(s) => Some(s.clone()),
        J::Number(n) => Some(n.to_string()),
        J::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn truthy(v: &J) -> bool {
    matches!(v, J::Bool(true)) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// A number written as text in the export (`"1000"`).
fn number(v: &J) -> Option<J> {
    match v {
        J::Number(_) => Some(v.clone()),
        J::String(s) => s.trim().parse::<i64>().ok().map(J::from),
        _ => None,
    }
}

/// Rewrites what tale reads differently: formula pills `<<path>>` and
/// formula fields `=path` that are plain references; anything else of the
/// formula language is kept and noted.
fn template(value: &J, place: &str, notes: &mut Vec<Note>) -> J {
    match value {
        J::String(s) => J::String(template_text(s, place, notes)),
        J::Array(a) => J::Array(a.iter().map(|v| template(v, place, notes)).collect()),
        J::Object(o) => J::Object(o.iter().map(|(k, v)| (k.clone(), template(v, place, notes))).collect()),
        other => other.clone(),
    }
}

fn is_reference(expr: &str) -> bool {
    let expr = expr.trim();
    !expr.is_empty()
        && expr.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && expr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '"' | '\'' | '-' | '#'))
}

fn template_text(s: &str, place: &str, notes: &mut Vec<Note>) -> String {
    let out = pills(s, place, notes);
    inputs_as_resources(out, place, notes)
}

/// Template inputs (`INPUT.x`) the export gives no value for read the
/// resources `input_x`, each a resource to set.
fn inputs_as_resources(text: String, place: &str, notes: &mut Vec<Note>) -> String {
    if !text.contains("INPUT.") {
        return text;
    }
    notes.push(Note {
        place: place.to_owned(),
        what: "a template input (`INPUT.x`) reads the resource `input_x`: set it (tale.env)".into(),
    });
    text.replace("INPUT.", "RESOURCE.input_")
}

fn pills(s: &str, place: &str, notes: &mut Vec<Note>) -> String {
    // A formula field: the whole value is an expression.
    if let Some(expr) = s.strip_prefix('=') {
        if is_reference(expr) {
            return format!("{{{{ {} | as_object }}}}", expr.trim());
        }
        if let Some(liquid) = super::formula::field(expr) {
            notes.push(Note {
                place: place.to_owned(),
                what: format!("a formula is read as Liquid: `{}` → `{}`", cut(s), cut(&liquid)),
            });
            return liquid;
        }
        notes.push(Note {
            place: place.to_owned(),
            what: format!("a formula is kept as text, not translated: `{}`", cut(s)),
        });
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // Pills of one text number their temporaries in one sequence.
    let mut temporaries = 0;
    while let Some(start) = rest.find("<<") {
        let Some(len) = rest[start + 2..].find(">>") else { break };
        let expr = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        // `{{ <<a.b>> }}` (a pill in Liquid braces): the braces are there already.
        let in_braces = out.trim_end().ends_with("{{");
        if is_reference(expr) && in_braces {
            out.push_str(expr.trim());
        } else if is_reference(expr) {
            out.push_str(&format!("{{{{ {} }}}}", expr.trim()));
        } else if let Some(liquid) = Some(expr)
            .filter(|_| !in_braces)
            .and_then(|e| super::formula::pill(e, &mut temporaries))
        {
            out.push_str(&liquid);
        } else {
            notes.push(Note {
                place: place.to_owned(),
                what: format!("a formula pill is kept as text, not translated: `<<{}>>`", cut(expr)),
            });
            out.push_str(&rest[start..start + 4 + len]);
        }
        rest = &rest[start + 4 + len..];
    }
    out.push_str(rest);
    out
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// Options that mean nothing to tale (Huginn leftovers, UI metadata).
const INERT: &[&str] = &["expected_update_period_in_days", "manual_time"];

/// Converts one story of an export. `ids` maps the export's story names
/// (and slugs) to tale ids, for `send_to_story`.
/// `paths`: the webhook paths taken by the stories converted before (one
/// server serves them all: a path is made unique with the story's id).
pub(crate) fn convert(story: &J, ids: &BTreeMap<String, String>, paths: &mut BTreeSet<String>) -> Imported {
    let id = story_id(story);
    let mut notes = Vec::new();
    let agents: Vec<&J> = story["agents"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    // Slugs: Tines' rule; a name used twice gets `_2`, `_3`.
    let mut slugs: Vec<String> = Vec::with_capacity(agents.len());
    // Slug → the actions that share it (by index): a name used twice.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, a) in agents.iter().enumerate() {
        let base = slug(a["name"].as_str().unwrap_or("action"));
        let base = if base.is_empty() { "action".to_owned() } else { base };
        // A slug starting with a digit cannot be read by a template.
        let base = if base.starts_with(|c: char| c.is_ascii_digit()) {
            notes.push(Note {
                place: format!("{id} › {}", a["name"].as_str().unwrap_or_default()),
                what: format!("a slug cannot start with a digit: `{base}` is `action_{base}`"),
            });
            format!("action_{base}")
        } else {
            base
        };
        let group = groups.entry(base.clone()).or_default();
        group.push(i);
        if group.len() == 1 {
            slugs.push(base);
        } else {
            let renamed = format!("{base}_{}", group.len());
            notes.push(Note {
                place: format!("{id} › {}", a["name"].as_str().unwrap_or_default()),
                what: format!(
                    "another action of this name is `{renamed}`: a template reading `{base}` reads the nearest of them upstream"
                ),
            });
            slugs.push(renamed);
        }
    }
    groups.retain(|_, members| members.len() > 1);
    let guid_index: BTreeMap<&str, usize> = agents
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a["guid"].as_str().map(|g| (g, i)))
        .collect();
    // Edges, without the ones that close a loop (tale stories are graphs
    // every run walks once: paging, polling, retries are options there).
    let mut edges: Vec<(usize, usize, Option<&'static str>)> = Vec::new();
    for link in story["links"].as_array().into_iter().flatten() {
        let (Some(s), Some(r)) = (link["source"].as_u64(), link["receiver"].as_u64()) else {
            continue;
        };
        let (s, r) = (s as usize, r as usize);
        if s >= agents.len() || r >= agents.len() {
            continue;
        }
        let branch = match link["link_type"].as_str() {
            Some("secondary") => Some("no_match"),
            Some("failure") => Some("failure"),
            _ => None,
        };
        // tale's failure branch is a request's, a call's, an e-mail's.
        let has_failure = matches!(
            agents[s]["type"].as_str(),
            Some("Agents::HTTPRequestAgent" | "Agents::SendToStoryAgent" | "Agents::EmailAgent")
        );
        if branch == Some("failure") && !has_failure {
            notes.push(Note {
                place: format!(
                    "{id} › {} → {}",
                    slug(agents[s]["name"].as_str().unwrap_or_default()),
                    slug(agents[r]["name"].as_str().unwrap_or_default())
                ),
                what: "a failure link from an action tale gives no failure branch is left out".into(),
            });
            continue;
        }
        edges.push((s, r, branch));
    }
    // A depth-first walk from the entry points (actions nothing leads to)
    // finds the links that go back up: those close the loops.
    let back = back_edges(agents.len(), &edges);
    let mut kept: Vec<(usize, usize, Option<&'static str>)> = Vec::new();
    for (k, (s, r, b)) in edges.into_iter().enumerate() {
        if back.contains(&k) || s == r || reaches(&kept, r, s) {
            notes.push(Note {
                place: format!("{id} › {} → {}", slugs[s], slugs[r]),
                what: "a link that closes a loop is left out (paging, polling or retrying in the loop: use `pagination`, `poll` or `retry_on_status` on the request)".into(),
            });
            continue;
        }
        kept.push((s, r, b));
    }
    let tests: Vec<(String, J)> = agents
        .iter()
        .filter(|a| a["type"] == "Agents::SendToStoryAgent")
        .filter(|a| text(&a["options"]["story"]).is_some_and(|t| resolve_story(&t, ids) == id))
        .map(|a| {
            (
                a["name"].as_str().unwrap_or("test").to_owned(),
                a["options"]["payload"].clone(),
            )
        })
        .collect();
    let mut credentials: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut resources: BTreeSet<String> = BTreeSet::new();
    let inputs = template_inputs(story);
    let mut actions = Map::new();
    for (i, a) in agents.iter().enumerate() {
        let name = a["name"].as_str().unwrap_or_default();
        let place = format!("{id} › {name}");
        let mut action = Map::new();
        let kind = a["type"].as_str().unwrap_or_default();
        let options = a["options"].as_object().cloned().unwrap_or_default();
        let mut from: Vec<J> = Vec::new();
        for (s, r, b) in &kept {
            if *r != i {
                continue;
            }
            let source = &slugs[*s];
            match b {
                Some(branch) => from.push(J::String(format!("{source}.{branch}"))),
                None => {
                    from.push(J::String(source.clone()));
                    // Liquid era: a trigger with `emit_no_match` sends both
                    // outcomes down the same link (read `rule_matched`).
                    if agents[*s]["type"] == "Agents::TriggerAgent" && truthy(&agents[*s]["options"]["emit_no_match"]) {
                        from.push(J::String(format!("{source}.no_match")));
                    }
                }
            }
        }
        action.insert("name".into(), J::String(name.to_owned()));
        let mut export = Export { story: &id, ids, paths };
        let tale_type = map_action(kind, &options, &place, &mut export, &mut action, &mut notes);
        action.shift_insert(1, "type".into(), J::String(tale_type.to_owned()));
        match from.len() {
            0 => {}
            1 => {
                action.insert("from".into(), from.remove(0));
            }
            _ => {
                action.insert("from".into(), J::Array(from));
            }
        }
        // An implode without `item_path` collects whole events in Tines:
        // each item the outputs of the actions before it, keyed by slug.
        if action.get("mode").and_then(J::as_str) == Some("implode") && !action.contains_key("item_path") {
            // A Tines event holds the outputs of every action before it.
            let sources: BTreeSet<&str> = ancestors(&kept, i).into_iter().map(|s| slugs[s].as_str()).collect();
            if !sources.is_empty() {
                let mut item = String::from("{{ \"{}\" | json_parse");
                for source in &sources {
                    item.push_str(&format!(" | set_key: \"{source}\", {source}"));
                }
                item.push_str(" | as_object }}");
                notes.push(Note {
                    place: place.clone(),
                    what: format!(
                        "an implode collects whole events in Tines: `item_path: {item}` keeps that shape (each item the outputs of the actions before it, by slug)"
                    ),
                });
                action.insert("item_path".into(), J::String(item));
            }
        }
        if let Some(schedule) = schedule(&a["schedule"], &place, &mut notes) {
            action.insert("schedule".into(), schedule);
        }
        if truthy(&a["disabled"]) {
            action.insert("disabled".into(), J::Bool(true));
        }
        // A webhook's own rules may name a request field bare
        // (`headers.Authorization`): Tines reads it from the request.
        if kind == "Agents::WebhookAgent" {
            if let Some(J::Array(rules)) = action.get_mut("rules") {
                for r in rules.iter_mut() {
                    let Some(path) = r["path"].as_str().map(str::trim) else {
                        continue;
                    };
                    let bare = !path.is_empty()
                        && !path.contains("{{")
                        && path
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                    if bare {
                        let field = match path.split_once('.') {
                            Some(("headers", name)) => format!("headers['{}']", name.to_ascii_lowercase()),
                            _ => path.to_owned(),
                        };
                        let read = format!("{{{{ {}.{field} }}}}", slugs[i]);
                        notes.push(Note {
                            place: place.clone(),
                            what: format!("a rule names the request field `{path}`: it reads `{read}`"),
                        });
                        r["path"] = J::String(read);
                    }
                }
            }
        }
        // A template-built action: its inputs are in the export.
        if let Some(values) = a["guid"].as_str().and_then(|g| inputs.get(g)) {
            localize_inputs(&mut action, values, &place, &mut notes);
        }
        // Names the templates read (as converted), for the report.
        let (mut read_credentials, mut read_resources) = (BTreeSet::new(), BTreeSet::new());
        names_read(&J::Object(action.clone()), &mut read_credentials, &mut read_resources);
        let hosts: BTreeSet<String> = options
            .get("url")
            .and_then(J::as_str)
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
            .into_iter()
            .collect();
        for c in read_credentials {
            credentials.entry(c).or_default().extend(hosts.iter().cloned());
        }
        resources.extend(read_resources);
        actions.insert(slugs[i].clone(), J::Object(action));
    }
    // Two actions of one name: a template reads the nearest one upstream
    // (Tines' rule), which may be the renamed one.
    if !groups.is_empty() {
        for (i, slug) in slugs.iter().enumerate() {
            let Some(J::Object(action)) = actions.get_mut(slug) else {
                continue;
            };
            let nearest = |root: &str| -> Option<String> {
                let members = groups.get(root)?;
                let found = nearest_upstream(&kept, i, members)?;
                (slugs[found] != root).then(|| slugs[found].clone())
            };
            // The names of several actions its templates read.
            let mut read: BTreeSet<&String> = BTreeSet::new();
            for (key, value) in action.iter_mut() {
                if !["name", "type", "from", "mode"].contains(&key.as_str()) {
                    for root in groups.keys() {
                        let mut members = BTreeSet::new();
                        members_read(value, root, &mut members);
                        if !members.is_empty() {
                            read.insert(root);
                        }
                    }
                    rename_roots(value, &nearest);
                }
            }
            // Several namesakes lead here: Tines reads the one the event came
            // through, tale one slug (the nearest).
            let upstream = ancestors(&kept, i);
            for root in read {
                let Some(members) = groups.get(root) else { continue };
                let leading: Vec<&str> = members
                    .iter()
                    .filter(|m| upstream.contains(m))
                    .map(|m| slugs[*m].as_str())
                    .collect();
                if leading.len() > 1 {
                    let chosen = nearest_upstream(&kept, i, members).map_or(root.as_str(), |m| slugs[m].as_str());
                    notes.push(Note {
                        place: format!("{id} › {slug}"),
                        what: format!(
                            "actions of one name lead here ({}): Tines reads the one each event came through, this story reads `{chosen}` for all: split the action, or read the other one where it matters",
                            leading.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
        }
    }
    // An old webhook (no `include_headers` in the export) whose readers take
    // fields at the top level (`{{ .hook.value }}`, never `.hook.body`):
    // its events were the body itself, as `include_headers: false` makes them.
    for (i, a) in agents.iter().enumerate() {
        if a["type"] != "Agents::WebhookAgent" || a["options"].get("include_headers").is_some() {
            continue;
        }
        let slug = &slugs[i];
        let mut members = BTreeSet::new();
        for action in actions.values() {
            members_read(action, slug, &mut members);
        }
        let wrapped = ["body", "headers", "method", "path", "query"];
        if !members.is_empty() && members.iter().all(|m| !wrapped.contains(&m.as_str())) {
            if let Some(J::Object(hook)) = actions.get_mut(slug) {
                hook.insert("include_headers".into(), J::Bool(false));
            }
            notes.push(Note {
                place: format!("{id} › {slug}"),
                what: format!(
                    "the stories reading this webhook take its fields at the top level (`{slug}.{}`): an event of the older webhook was the body itself, so `include_headers: false`",
                    members.iter().next().map(String::as_str).unwrap_or_default()
                ),
            });
        }
    }
    // A name that is not an action upstream renders empty in Tines; `nil`
    // renders empty in tale, and says so in the story.
    for (i, slug) in slugs.iter().enumerate() {
        let upstream = ancestors(&kept, i);
        let Some(J::Object(action)) = actions.get_mut(slug) else {
            continue;
        };
        let place = format!("{id} › {slug}");
        let readable = |root: &str| {
            upstream.iter().any(|a| slugs[*a] == root) || NAMESPACES.contains(&root) || LIQUID_WORDS.contains(&root)
        };
        for (key, value) in action.iter_mut() {
            if !["name", "type", "from", "mode"].contains(&key.as_str()) {
                nil_unknown(value, &readable, &place, &mut notes);
            }
        }
    }
    let mut out = Map::new();
    out.insert("tale".into(), J::from(1));
    out.insert("name".into(), story["name"].clone());
    if let Some(d) = story["description"].as_str().filter(|d| !d.trim().is_empty()) {
        out.insert("description".into(), J::String(d.to_owned()));
    }
    if let Some(secs) = number(&story["keep_events_for"])
        .and_then(|n| n.as_i64())
        .filter(|n| *n > 0)
    {
        out.insert("keep_events_for".into(), J::from(secs));
    }
    let mut exits: Vec<J> = Vec::new();
    for i in story["exit_agent_guids"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&story["exit_agent_guid"]))
        .filter_map(|g| g.as_str().and_then(|g| guid_index.get(g)))
    {
        // An export may name an exit twice (in the list and alone).
        let exit = J::String(slugs[*i].clone());
        if !exits.contains(&exit) {
            exits.push(exit);
        }
    }
    // Callable (an entry and its exits) only when it has exits: every
    // export names an entry webhook.
    if !exits.is_empty() {
        if let Some(entry) = story["entry_agent_guid"].as_str().and_then(|g| guid_index.get(g)) {
            out.insert("entry".into(), J::String(slugs[*entry].clone()));
        }
        out.insert("exits".into(), J::Array(exits));
    }
    out.insert("actions".into(), J::Object(actions));
    Imported {
        id,
        story: J::Object(out),
        notes,
        credentials,
        resources,
        tests,
    }
}

/// The indices of the edges a depth-first walk finds going back to an
/// action on its current path, starting from the actions nothing leads
/// to (in the export's order), then from any action not reached yet.
fn back_edges(n: usize, edges: &[(usize, usize, Option<&'static str>)]) -> BTreeSet<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; n];
    let mut back = BTreeSet::new();
    let has_incoming: BTreeSet<usize> = edges.iter().map(|(_, r, _)| *r).collect();
    let roots = (0..n).filter(|i| !has_incoming.contains(i)).chain(0..n);
    for root in roots.collect::<Vec<_>>() {
        if mark[root] != Mark::New {
            continue;
        }
        // (node, next edge index to look at)
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Open;
        while let Some((node, at)) = stack.pop() {
            let next = edges.iter().enumerate().skip(at).find(|(_, (s, _, _))| *s == node);
            match next {
                Some((k, (_, r, _))) => {
                    stack.push((node, k + 1));
                    match mark[*r] {
                        Mark::Open => {
                            back.insert(k);
                        }
                        Mark::New => {
                            mark[*r] = Mark::Open;
                            stack.push((*r, 0));
                        }
                        Mark::Done => {}
                    }
                }
                None => mark[node] = Mark::Done,
            }
        }
    }
    back
}

/// Roots every template may read besides the actions upstream.
const NAMESPACES: &[&str] = &[
    "CREDENTIAL",
    "RESOURCE",
    "STORY",
    "LOCAL",
    "META",
    "request",
    "response",
];
/// Liquid's own words and loop objects.
const LIQUID_WORDS: &[&str] = &[
    "true",
    "false",
    "nil",
    "null",
    "empty",
    "blank",
    "forloop",
    "tablerowloop",
];

/// The actions upstream of `of`.
fn ancestors(edges: &[(usize, usize, Option<&'static str>)], of: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![of];
    while let Some(n) = stack.pop() {
        for (s, _, _) in edges.iter().filter(|(_, r, _)| *r == n) {
            if seen.insert(*s) {
                stack.push(*s);
            }
        }
    }
    seen
}

/// The values of template inputs newer exports carry, by action guid:
/// `integrations[].action_inputs[]` with a `name` (`INPUT.<slug of name>`)
/// and a `value` written as JSON text.
fn template_inputs(story: &J) -> BTreeMap<String, Vec<(String, J)>> {
    let mut out: BTreeMap<String, Vec<(String, J)>> = BTreeMap::new();
    for integration in story["integrations"].as_array().into_iter().flatten() {
        let Some(guid) = integration["action_guid"].as_str() else {
            continue;
        };
        for input in integration["action_inputs"].as_array().into_iter().flatten() {
            let Some(name) = input["name"].as_str() else { continue };
            let value = match &input["value"] {
                J::String(text) => serde_json::from_str(text).unwrap_or_else(|_| J::String(text.clone())),
                other => other.clone(),
            };
            out.entry(guid.to_owned()).or_default().push((slug(name), value));
        }
    }
    out
}

/// A template-built action reads its inputs (`INPUT.x`, which the
/// conversion made `RESOURCE.input_x`) from its own `local` values, set
/// from the export's input values: each action keeps its own.
fn localize_inputs(action: &mut Map<String, J>, values: &[(String, J)], place: &str, notes: &mut Vec<Note>) {
    fn rename(value: &mut J, names: &[(String, J)]) {
        match value {
            J::String(s) => {
                for (name, _) in names {
                    let from = format!("RESOURCE.input_{name}");
                    // The whole name only: `input_host` is not `input_host_url`.
                    let mut out = String::with_capacity(s.len());
                    let mut rest = s.as_str();
                    while let Some(at) = rest.find(&from) {
                        let after = &rest[at + from.len()..];
                        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
                        out.push_str(&rest[..at]);
                        out.push_str(if whole { "LOCAL.input_" } else { "RESOURCE.input_" });
                        out.push_str(name);
                        rest = after;
                    }
                    out.push_str(rest);
                    *s = out;
                }
            }
            J::Array(a) => a.iter_mut().for_each(|v| rename(v, names)),
            J::Object(o) => o.values_mut().for_each(|v| rename(v, names)),
            _ => {}
        }
    }
    for (key, value) in action.iter_mut() {
        if !["name", "type", "from", "mode"].contains(&key.as_str()) {
            rename(value, values);
        }
    }
    let local = action.entry("local").or_insert_with(|| J::Object(Map::new()));
    if let J::Object(local) = local {
        for (name, value) in values {
            let value = template(value, &format!("{place} › input {name}"), notes);
            local.insert(format!("input_{name}"), value);
        }
    }
    // Its inputs are no longer resources to set.
    let own = |p: &str| p == place || p.strip_prefix(place).is_some_and(|rest| rest.starts_with(" › "));
    notes.retain(|n| !(own(&n.place) && n.what.starts_with("a template input (`INPUT.x`)")));
    notes.push(Note {
        place: place.to_owned(),
        what: format!(
            "its template inputs come from the export: `local` values {} (`INPUT.x` reads `LOCAL.input_x`)",
            values
                .iter()
                .map(|(n, _)| format!("`input_{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
}

/// The first keys templates read of `root` (`root.x…` → `x`).
fn members_read(value: &J, root: &str, out: &mut BTreeSet<String>) {
    match value {
        J::String(text) if text.contains("{{") || text.contains("{%") => {
            for r in tale_engine::template::scan(text).references {
                if r.root == root {
                    if let Some(m) = r.member {
                        out.insert(m);
                    }
                }
            }
        }
        J::Array(a) => a.iter().for_each(|v| members_read(v, root, out)),
        J::Object(o) => o.values().for_each(|v| members_read(v, root, out)),
        _ => {}
    }
}

/// Replaces each path whose root `readable` refuses (and the template does
/// not define itself) with `nil`, noting it.
fn nil_unknown(value: &mut J, readable: &dyn Fn(&str) -> bool, place: &str, notes: &mut Vec<Note>) {
    match value {
        J::String(text) if text.contains("{{") || text.contains("{%") => {
            let scan = tale_engine::template::scan(text);
            let mut refs: Vec<_> = scan
                .references
                .iter()
                .filter(|r| !readable(&r.root) && !scan.locals.contains(&r.root))
                .collect();
            if refs.is_empty() {
                return;
            }
            refs.sort_by_key(|r| std::cmp::Reverse(r.offset));
            let mut out = text.clone();
            let mut named = BTreeSet::new();
            for r in refs {
                let Some(rest) = out.get(r.offset..).filter(|rest| rest.starts_with(&r.root)) else {
                    continue;
                };
                let len = path_len(rest);
                // A leading dot (Tines' form) goes too.
                let start = if out[..r.offset].ends_with('.') {
                    r.offset - 1
                } else {
                    r.offset
                };
                named.insert(r.root.clone());
                out.replace_range(start..r.offset + len, "nil");
            }
            *text = out;
            for name in named {
                notes.push(Note {
                    place: place.to_owned(),
                    what: format!("`{name}` is not an action upstream: Tines renders it empty, and so does the `nil` written in its place"),
                });
            }
        }
        J::Array(a) => a.iter_mut().for_each(|v| nil_unknown(v, readable, place, notes)),
        J::Object(o) => o.values_mut().for_each(|v| nil_unknown(v, readable, place, notes)),
        _ => {}
    }
}

/// The length of the variable path at the start of `s`: names, dots and
/// bracketed keys.
fn path_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => i += 1,
            b'[' => match s[i..].find(']') {
                Some(end) => i += end + 1,
                None => break,
            },
            _ => break,
        }
    }
    i
}

/// The member of `members` nearest upstream of `of` (breadth first).
fn nearest_upstream(edges: &[(usize, usize, Option<&'static str>)], of: usize, members: &[usize]) -> Option<usize> {
    let mut queue = std::collections::VecDeque::from([of]);
    let mut seen = BTreeSet::from([of]);
    while let Some(n) = queue.pop_front() {
        for (s, _, _) in edges.iter().filter(|(_, r, _)| *r == n) {
            if members.contains(s) {
                return Some(*s);
            }
            if seen.insert(*s) {
                queue.push_back(*s);
            }
        }
    }
    None
}

/// Renames the variable roots `rename` says to, in every template of `value`.
fn rename_roots(value: &mut J, rename: &dyn Fn(&str) -> Option<String>) {
    match value {
        J::String(text) if text.contains("{{") || text.contains("{%") => {
            let scan = tale_engine::template::scan(text);
            let mut out = text.clone();
            // From the end: earlier offsets stay right.
            let mut refs: Vec<_> = scan.references.iter().collect();
            refs.sort_by_key(|r| std::cmp::Reverse(r.offset));
            for r in refs {
                if let Some(new) = rename(&r.root)
                    && out.get(r.offset..).is_some_and(|rest| rest.starts_with(&r.root))
                {
                    out.replace_range(r.offset..r.offset + r.root.len(), &new);
                }
            }
            *text = out;
        }
        J::Array(a) => a.iter_mut().for_each(|v| rename_roots(v, rename)),
        J::Object(o) => o.values_mut().for_each(|v| rename_roots(v, rename)),
        _ => {}
    }
}

/// Whether `to` is reachable from `from` over `edges`.
fn reaches(edges: &[(usize, usize, Option<&'static str>)], from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n) {
            stack.extend(edges.iter().filter(|(s, _, _)| *s == n).map(|(_, r, _)| *r));
        }
    }
    false
}

/// The credentials and resources the templates of `value` name, as `tale
/// check` finds them (`CREDENTIAL.x`, `{% credential x %}`, `RESOURCE.x`,
/// `{% global_resource x %}`), lower-cased.
fn names_read(value: &J, credentials: &mut BTreeSet<String>, resources: &mut BTreeSet<String>) {
    match value {
        J::String(text) => {
            credentials.extend(
                tale_engine::template::credential_names(text)
                    .into_iter()
                    .map(|(n, _)| n.to_ascii_lowercase()),
            );
            let scan = tale_engine::template::scan(text);
            resources.extend(
                scan.references
                    .iter()
                    .filter(|r| r.root == "RESOURCE")
                    .filter_map(|r| r.member.clone())
                    .chain(
                        scan.tags
                            .iter()
                            .filter(|t| t.name == "global_resource")
                            .filter_map(|t| t.arg.as_ref().map(|(a, _)| a.clone())),
                    )
                    .map(|n| n.to_ascii_lowercase()),
            );
        }
        J::Array(a) => a.iter().for_each(|v| names_read(v, credentials, resources)),
        J::Object(o) => o.values().for_each(|v| names_read(v, credentials, resources)),
        _ => {}
    }
}

fn schedule(value: &J, place: &str, notes: &mut Vec<Note>) -> Option<J> {
    // The Huginn-era form: `"every_1d"`, `"midnight"`, `"7am"`.
    if let Some(every) = value.as_str().filter(|e| *e != "never") {
        let cron = huginn_schedule(every);
        notes.push(Note {
            place: place.to_owned(),
            what: match &cron {
                Some(cron) => format!("the schedule `{every}` is the cron `{cron}` (UTC)"),
                None => format!("the schedule `{every}` has no cron reading: add a `schedule:` by hand"),
            },
        });
        return cron.map(J::String);
    }
    let list = value.as_array()?;
    let first = list.first()?;
    if list.len() > 1 {
        notes.push(Note {
            place: place.to_owned(),
            what: format!("{} schedules: only the first is kept", list.len()),
        });
    }
    let cron = first["cron"].as_str()?;
    Some(match first["timezone"].as_str() {
        Some(tz) => json!({"cron": cron, "timezone": tz}),
        None => J::String(cron.to_owned()),
    })
}

/// The cron of a Huginn-era schedule name (Tines' legacy `schedule`
/// strings: `every_5m`, `every_1h`, `every_1d`, `midnight`, `noon`, `7am`).
fn huginn_schedule(every: &str) -> Option<String> {
    let every = every.trim().to_ascii_lowercase();
    if let Some(n) = every.strip_prefix("every_") {
        let (count, unit) = n.split_at(n.find(|c: char| !c.is_ascii_digit())?);
        let count: u32 = count.parse().ok().filter(|c| *c > 0)?;
        return match (unit, count) {
            ("m", 1) => Some("* * * * *".into()),
            ("m", n) if n < 60 => Some(format!("*/{n} * * * *")),
            ("h", 1) => Some("0 * * * *".into()),
            ("h", n) if n < 24 => Some(format!("0 */{n} * * *")),
            ("d", 1) => Some("0 0 * * *".into()),
            ("d", 7) => Some("0 0 * * 0".into()),
            ("d", n) if n < 31 => Some(format!("0 0 */{n} * *")),
            _ => None,
        };
    }
    match every.as_str() {
        "midnight" => return Some("0 0 * * *".into()),
        "noon" => return Some("0 12 * * *".into()),
        _ => {}
    }
    let (hour, half) = every
        .strip_suffix("am")
        .map(|h| (h, 0))
        .or_else(|| every.strip_suffix("pm").map(|h| (h, 12)))?;
    let hour: u32 = hour.parse().ok().filter(|h| (1..=12).contains(h))?;
    Some(format!("0 {} * * *", hour % 12 + half))
}

/// Fills `action` with the tale keys of a Tines action; its tale type.
/// What converting an action needs of the whole export.
struct Export<'a> {
    /// The id of the story the action is in.
    story: &'a str,
    /// Story names of the export → ids.
    ids: &'a BTreeMap<String, String>,
    /// Webhook paths taken so far.
    paths: &'a mut BTreeSet<String>,
}

fn map_action(
    kind: &str,
    options: &Map<String, J>,
    place: &str,
    export: &mut Export<'_>,
    action: &mut Map<String, J>,
    notes: &mut Vec<Note>,
) -> &'static str {
    let (story, ids) = (export.story, export.ids);
    let paths = &mut *export.paths;
    // The options not used yet: each left at the end is noted.
    let left: std::cell::RefCell<BTreeSet<&str>> = std::cell::RefCell::new(
        options
            .keys()
            .map(String::as_str)
            .filter(|k| !INERT.contains(k))
            .collect(),
    );
    let take = |key: &str| {
        left.borrow_mut().remove(key);
        options.get(key)
    };
    let put = |action: &mut Map<String, J>, key: &str, value: J, notes: &mut Vec<Note>| {
        let value = template(&value, &format!("{place} › {key}"), notes);
        action.insert(key.to_owned(), value);
    };
    let tale_type = match kind {
        "Agents::WebhookAgent" => {
            let path = take("path")
                .and_then(text)
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| slug(place.rsplit(" › ").next().unwrap_or("hook")));
            let mut path = path.replace('_', "-");
            if !paths.insert(path.clone()) {
                path = format!("{story}/{path}");
                paths.insert(path.clone());
                notes.push(Note {
                    place: place.to_owned(),
                    what: format!("another story of the export listens on the same path: this one is `{path}`"),
                });
            }
            action.insert("path".into(), J::String(path));
            if take("secret").is_some() {
                let name = format!("{}_webhook_secret", story.replace('-', "_"));
                action.insert("secret".into(), J::String(format!("{{{{ CREDENTIAL.{name} }}}}")));
            }
            if let Some(verbs) = take("verbs").and_then(text) {
                let list: Vec<J> = verbs
                    .split(',')
                    .map(|v| J::String(v.trim().to_ascii_lowercase()))
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                    .collect();
                action.insert("verbs".into(), J::Array(list));
            }
            let mut response = Map::new();
            if let Some(code) = take("response_code").and_then(number) {
                response.insert("status".into(), code);
            }
            if let Some(body) = take("response") {
                // Tines renders the response from the request: tale reads it as `request`.
                let body = template(body, &format!("{place} › response"), notes);
                if body.to_string().contains("{{.") || body.to_string().contains("{{ .") {
                    notes.push(Note {
                        place: format!("{place} › response"),
                        what: "the response reads the request as `request.x`: check whether `x` is in `request.query` or `request.body` (Tines put a GET's parameters at the top)".into(),
                    });
                }
                let text = body
                    .to_string()
                    .replace("{{.", "{{ request.")
                    .replace("{{ .", "{{ request.");
                response.insert("body".into(), serde_json::from_str(&text).unwrap_or(body));
            }
            if let Some(headers) = take("response_headers").filter(|h| h.is_object()) {
                response.insert("headers".into(), headers.clone());
            }
            if !response.is_empty() {
                action.insert("response".into(), J::Object(response));
            }
            if let Some(v) = take("include_headers") {
                action.insert("include_headers".into(), J::Bool(truthy(v)));
            }
            "webhook"
        }
        "Agents::HTTPRequestAgent" => {
            for key in ["url", "payload", "headers", "basic_auth"] {
                if let Some(v) = take(key) {
                    put(action, key, v.clone(), notes);
                }
            }
            let method = take("method").and_then(text).unwrap_or_else(|| "post".into());
            action.insert("method".into(), J::String(method.to_ascii_lowercase()));
            if let Some(ct) = take("content_type").and_then(text) {
                let ct = match ct.trim() {
                    "application_json" | "json; charset=utf-8" | "application/json" => "json".to_owned(),
                    other => other.to_owned(),
                };
                if ct == "data"
                    && let Some(J::Object(fields)) = action.get_mut("payload")
                {
                    // `contents: "{{ x | base64_decode }}"` carries bytes that
                    // may not be text: tale sends `x` decoded, byte for byte.
                    for field in fields.values_mut() {
                        let J::Object(file) = field else { continue };
                        let encoded = file
                            .get("contents")
                            .and_then(J::as_str)
                            .and_then(|c| c.trim().strip_prefix("{{"))
                            .and_then(|c| c.strip_suffix("}}"))
                            .and_then(|c| c.trim().strip_suffix("base64_decode"))
                            .and_then(|c| c.trim_end().strip_suffix('|'))
                            .map(|c| format!("{{{{ {} }}}}", c.trim()));
                        if let Some(encoded) = encoded {
                            file.remove("contents");
                            file.insert("base64encodedcontents".into(), J::String(encoded));
                        }
                    }
                }
                action.insert("content_type".into(), J::String(ct));
            }
            if let Some(v) = take("disable_ssl_verification") {
                action.insert("disable_ssl_verification".into(), J::Bool(truthy(v)));
            }
            if let Some(v) = take("timeout").and_then(number) {
                action.insert("timeout_secs".into(), v);
            }
            for key in ["retry_on_status", "log_error_on_status"] {
                if let Some(J::Array(list)) = take(key) {
                    action.insert(
                        key.into(),
                        J::Array(list.iter().map(|s| number(s).unwrap_or_else(|| s.clone())).collect()),
                    );
                }
            }
            if let Some(v) = take("fail_on_status") {
                action.insert("fail_on_status".into(), J::Bool(truthy(v)));
            }
            if let Some(ua) = take("user_agent").and_then(text) {
                let headers = action.entry("headers").or_insert_with(|| J::Object(Map::new()));
                if let J::Object(h) = headers {
                    h.insert("user-agent".into(), J::String(ua));
                }
            }
            "http_request"
        }
        "Agents::TriggerAgent" => {
            if let Some(J::Array(rules)) = take("rules") {
                let rules: Vec<J> = rules.iter().map(|r| rule(r, place, notes)).collect();
                action.insert("rules".into(), J::Array(rules));
            }
            if let Some(n) = take("must_match").and_then(number) {
                action.insert("must_match".into(), n);
            }
            take("emit_no_match");
            "trigger"
        }
        "Agents::EventTransformationAgent" => {
            let mode = take("mode").and_then(text).unwrap_or_else(|| "message_only".into());
            action.insert("mode".into(), J::String(mode.clone()));
            match mode.as_str() {
                "message_only" => {
                    if let Some(p) = take("payload") {
                        put(action, "payload", p.clone(), notes);
                    } else {
                        // Legacy: the keys beside `mode` are the payload.
                        // In the export's order.
                        let legacy: Map<String, J> = options
                            .iter()
                            .filter(|(k, _)| {
                                left.borrow().contains(k.as_str()) && !["loop", "local"].contains(&k.as_str())
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        left.borrow_mut().retain(|k| ["loop", "local"].contains(k));
                        put(action, "payload", J::Object(legacy), notes);
                    }
                    if take("loop").is_some_and(|l| !matches!(l, J::Bool(false)) && l != "false") {
                        notes.push(Note {
                            place: place.to_owned(),
                            what: "`loop` is not translated: write a `{% for %}` in the payload".into(),
                        });
                    }
                }
                "explode" => {
                    if let Some(p) = take("path") {
                        let p = template(p, &format!("{place} › path"), notes);
                        let p = p.as_str().map_or(p.clone(), |s| J::String(as_object(s)));
                        action.insert("path".into(), p);
                    }
                    if let Some(to) = take("to").and_then(text) {
                        action.insert("to".into(), J::String(to));
                    }
                    if let Some(l) = take("limit").and_then(number) {
                        action.insert("limit".into(), l);
                    }
                }
                "implode" => {
                    for key in ["guid_path", "size_path", "item_path"] {
                        if let Some(v) = take(key) {
                            put(action, key, v.clone(), notes);
                        }
                    }
                    if let Some(s) = take("seconds").and_then(number) {
                        action.insert("seconds".into(), s);
                    }
                }
                "extract" => {
                    if let Some(m) = take("matchers") {
                        put(action, "matchers", m.clone(), notes);
                    }
                }
                "deduplicate" => {
                    if let Some(p) = take("path") {
                        put(action, "path", p.clone(), notes);
                    }
                    if let Some(l) = take("lookback").and_then(number) {
                        action.insert("lookback".into(), l);
                    }
                    if let Some(p) = take("period").and_then(number) {
                        action.insert("period_secs".into(), p);
                    }
                    if let Some(e) = take("emit_duplicates").or_else(|| take("emit_duplicate")) {
                        action.insert("emit_duplicates".into(), J::Bool(truthy(e)));
                    }
                }
                "delay" => {
                    if let Some(s) = take("seconds") {
                        action.insert("seconds".into(), number(s).unwrap_or_else(|| template(s, place, notes)));
                    }
                    if let Some(u) = take("until") {
                        put(action, "until", u.clone(), notes);
                    }
                }
                "throttle" => {
                    let interval = match take("interval").and_then(text).as_deref() {
                        Some("hour") => 3600,
                        Some("day") => 86_400,
                        _ => 60,
                    };
                    action.insert("interval".into(), J::from(interval));
                    if let Some(c) = take("capacity").or_else(|| take("runs_per_interval")).and_then(number) {
                        action.insert("runs_per_interval".into(), c);
                    }
                    if let Some(e) = take("events_per_run").and_then(number) {
                        action.insert("events_per_run".into(), e);
                    }
                    if let Some(k) = take("throttle_key") {
                        put(action, "throttle_key", k.clone(), notes);
                    }
                }
                other => {
                    notes.push(Note {
                        place: place.to_owned(),
                        what: format!("transform mode `{other}` has no tale equivalent: replaced by a message_only passing an empty payload"),
                    });
                    action.insert("mode".into(), J::String("message_only".into()));
                    action.insert("payload".into(), J::Object(Map::new()));
                    left.borrow_mut().clear();
                }
            }
            "transform"
        }
        "Agents::SendToStoryAgent"
            if take("story")
                .and_then(text)
                .is_some_and(|t| resolve_story(&t, ids) == story) =>
        {
            // Tines stories test themselves by calling their own entry.
            notes.push(Note {
                place: place.to_owned(),
                what: "a call to this very story (a Tines test action) is left out: it becomes a message_only passing its payload, and a case of the story's test file (add its expectations)".into(),
            });
            action.insert("mode".into(), J::String("message_only".into()));
            let payload = options.get("payload").cloned().unwrap_or(J::Object(Map::new()));
            put(action, "payload", payload, notes);
            left.borrow_mut().clear();
            "transform"
        }
        "Agents::SendToStoryAgent" => {
            if let Some(target) = take("story").and_then(text) {
                let resolved = resolve_story(&target, ids);
                action.insert("story".into(), J::String(resolved));
            }
            if let Some(p) = take("payload") {
                put(action, "payload", p.clone(), notes);
            }
            if let Some(b) = take("send_payload_as_body") {
                action.insert("send_payload_as_body".into(), J::Bool(truthy(b)));
            }
            "send_to_story"
        }
        "Agents::EmailAgent" => {
            for key in [
                "recipients",
                "subject",
                "body",
                "reply_to",
                "sender_name",
                "cc",
                "bcc",
                "attachments",
            ] {
                if let Some(v) = take(key) {
                    put(action, key, v.clone(), notes);
                }
            }
            take("advanced_html");
            take("sender_address");
            "send_email"
        }
        other => {
            notes.push(Note {
                place: place.to_owned(),
                what: format!(
                    "`{other}` has no tale equivalent: replaced by a message_only transform that emits an empty payload"
                ),
            });
            action.insert("mode".into(), J::String("message_only".into()));
            action.insert("payload".into(), J::Object(Map::new()));
            left.borrow_mut().clear();
            "transform"
        }
    };
    // Common keys.
    if let Some(J::Array(rules)) = take("rules") {
        let rules: Vec<J> = rules.iter().map(|r| rule(r, place, notes)).collect();
        action.insert("rules".into(), J::Array(rules));
        if let Some(n) = take("must_match").and_then(number) {
            action.insert("must_match".into(), n);
        }
    }
    if let Some(local) = take("local") {
        put(action, "local", local.clone(), notes);
    }
    for key in left.into_inner() {
        notes.push(Note {
            place: format!("{place} › {key}"),
            what: "an option tale does not know is left out".into(),
        });
    }
    tale_type
}

/// A path read as a value (an explode's list), not as its text.
fn as_object(path: &str) -> String {
    let t = path.trim();
    if t.starts_with("{{") && t.ends_with("}}") && !t.contains("as_object") && t.matches("{{").count() == 1 {
        format!("{} | as_object }}}}", t.trim_end_matches('}').trim_end())
    } else {
        path.to_owned()
    }
}

fn rule(r: &J, place: &str, notes: &mut Vec<Note>) -> J {
    let mut out = Map::new();
    let kind = r["type"].as_str().unwrap_or("field==value");
    if kind == "formula" {
        return formula_rule(r["path"].as_str().unwrap_or_default(), place, notes);
    }
    out.insert("type".into(), J::String(kind.to_owned()));
    out.insert("path".into(), template(&r["path"], place, notes));
    if !r["value"].is_null() {
        out.insert("value".into(), template(&r["value"], place, notes));
    }
    if r.get("case_sensitive").is_some() {
        out.insert("case_sensitive".into(), J::Bool(truthy(&r["case_sensitive"])));
    }
    J::Object(out)
}

/// A `formula` rule matches when its formula holds: a template rendering
/// `true` or `false`, compared with `true`.
fn formula_rule(formula: &str, place: &str, notes: &mut Vec<Note>) -> J {
    let Some(liquid) = super::formula::condition(formula.strip_prefix('=').unwrap_or(formula)) else {
        notes.push(Note {
            place: place.to_owned(),
            what: format!(
                "a `formula` rule is kept as an `is_present` test of its text: translate it: `{}`",
                cut(formula)
            ),
        });
        return json!({"type": "is_present", "path": template_text(formula, place, notes)});
    };
    notes.push(Note {
        place: place.to_owned(),
        what: format!(
            "a `formula` rule is read as Liquid: `{}` holds when `{}` renders `true`",
            cut(formula),
            cut(&liquid)
        ),
    });
    // Already Liquid: only template inputs are left to name as resources.
    json!({"type": "field==value", "path": inputs_as_resources(liquid, place, notes), "value": "true"})
}

/// `{% story Name %}` and `{{ .STORY.slug }}` → the id of a story of this
/// export when one has that name, else as written.
fn resolve_story(target: &str, ids: &BTreeMap<String, String>) -> String {
    let t = target.trim();
    let name = t
        .strip_prefix("{% story")
        .and_then(|s| s.strip_suffix("%}"))
        .map(str::trim)
        .or_else(|| {
            t.strip_prefix("{{")
                .and_then(|s| s.strip_suffix("}}"))
                .map(|s| s.trim().trim_start_matches('.'))
                .and_then(|s| s.strip_prefix("STORY."))
        })
        .or_else(|| t.strip_prefix("<<STORY.").and_then(|s| s.strip_suffix(">>")));
    match name {
        Some(n) => ids
            .get(n)
            .or_else(|| ids.get(&slug(n)))
            .cloned()
            .unwrap_or_else(|| tale_engine::template::story_slug(n)),
        None => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huginn_schedules_become_cron() {
        assert_eq!(huginn_schedule("every_1d").as_deref(), Some("0 0 * * *"));
        assert_eq!(huginn_schedule("every_5m").as_deref(), Some("*/5 * * * *"));
        assert_eq!(huginn_schedule("every_12h").as_deref(), Some("0 */12 * * *"));
        assert_eq!(huginn_schedule("midnight").as_deref(), Some("0 0 * * *"));
        assert_eq!(huginn_schedule("7am").as_deref(), Some("0 7 * * *"));
        assert_eq!(huginn_schedule("12am").as_deref(), Some("0 0 * * *"));
        assert_eq!(huginn_schedule("12pm").as_deref(), Some("0 12 * * *"));
        assert_eq!(huginn_schedule("never"), None);
    }

    #[test]
    fn slugs_follow_tines() {
        assert_eq!(slug("Explode Pre-Approved Accounts"), "explode_pre_approved_accounts");
        assert_eq!(slug("Throttle 1/s"), "throttle_1_s");
    }

    #[test]
    fn pills_that_are_references_become_liquid() {
        let mut notes = Vec::new();
        assert_eq!(template_text("id <<a.b[0]>>!", "p", &mut notes), "id {{ a.b[0] }}!");
        assert_eq!(template_text("=a.list", "p", &mut notes), "{{ a.list | as_object }}");
        assert!(notes.is_empty());
        assert_eq!(
            template_text("<<IF(a, 1, 2)>> and <<IF(b, 3)>>", "p", &mut notes),
            "{% if a %}{% assign _v1 = 1 %}{% else %}{% assign _v1 = 2 %}{% endif %}{{ _v1 }} and \
             {% if b %}{% assign _v2 = 3 %}{% else %}{% assign _v2 = nil %}{% endif %}{{ _v2 }}"
        );
        assert!(notes.is_empty());
        assert_eq!(
            template_text("<<MATCH(a, \"x\")>>", "p", &mut notes),
            "<<MATCH(a, \"x\")>>"
        );
        assert_eq!(notes.len(), 1);
        // A formula rule holds when its condition renders `true`.
        let rule = formula_rule("=IS_PRESENT(r.body.next)", "p", &mut notes);
        assert_eq!(
            rule,
            json!({"type": "field==value", "path": "{% if r.body.next != blank %}true{% else %}false{% endif %}", "value": "true"})
        );
    }
}
