//! Runs and events (SPEC §3). An event holds its action's output once; its
//! parents are shared, so a template finds an upstream output by walking the
//! ancestry (nearest first) instead of copying merged objects forward.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value as J;
use tale_template::raw::RawJson;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(new_id())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            pub const fn into_bytes(self) -> [u8; 16] {
                self.0.into_bytes()
            }
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

id_type!(
    /// An event's id (a UUIDv7: ordered by creation). Not a run's.
    EventId
);
id_type!(
    /// A run's id (a UUIDv7: ordered by start). Not an event's.
    RunId
);

#[derive(Debug)]
pub struct Event {
    pub id: EventId,
    pub run_id: RunId,
    pub story: Arc<str>,
    /// The slug of the action that emitted it.
    pub action: Arc<str>,
    pub parents: Vec<Arc<Event>>,
    /// The action's output: parsed, or kept as its JSON text when large
    /// (read it with [`Event::output`], [`Event::view`], [`Event::output_text`]).
    output: Output,
    /// Milliseconds since the Unix epoch (virtual in a dry run).
    pub created_at: i64,
    /// The branch it went out on (`failure`, `no_match`), if not the main output.
    pub branch: Option<&'static str>,
    /// Upstream events found from here before, so that the next event of a
    /// chain finds them in one step instead of walking the whole ancestry
    /// (a chain of n steps reading the webhook was O(n²)).
    pub shortcuts: Shortcuts,
}

/// An event's output. A large one (a webhook body above
/// [`RAW_OUTPUT_BYTES`], an implode's list) stays JSON text, read in place
/// by templates and explodes ([`RawJson`]); it is parsed whole only for
/// a reader that needs the whole value (a test's expectation, `tale run`'s
/// report), and then once.
#[derive(Debug)]
pub enum Output {
    Json(J),
    Raw {
        raw: RawJson,
        parsed: std::sync::OnceLock<J>,
    },
}

/// From this size on, an output that arrives as JSON text stays text.
pub const RAW_OUTPUT_BYTES: usize = 1024 * 1024;

impl Clone for Output {
    fn clone(&self) -> Self {
        match self {
            Output::Json(j) => Output::Json(j.clone()),
            Output::Raw { raw, .. } => Output::from(raw.clone()),
        }
    }
}

impl PartialEq for Output {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl From<J> for Output {
    fn from(value: J) -> Self {
        Output::Json(value)
    }
}

impl From<RawJson> for Output {
    fn from(raw: RawJson) -> Self {
        Output::Raw {
            raw,
            parsed: std::sync::OnceLock::new(),
        }
    }
}

impl Output {
    /// JSON text read back from a store: kept as text when large.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        if text.len() >= RAW_OUTPUT_BYTES {
            RawJson::parse(text).map(Output::from)
        } else {
            serde_json::from_str(&text).map(Output::Json)
        }
    }

    /// The whole value (parsed once, if it is text).
    pub fn json(&self) -> &J {
        match self {
            Output::Json(j) => j,
            Output::Raw { raw, parsed } => parsed.get_or_init(|| raw.to_json()),
        }
    }

    /// As JSON text, what a store writes: text as it is, a value serialised.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Output::Json(j) => std::borrow::Cow::Owned(serde_json::to_string(j).unwrap_or_else(|_| "null".into())),
            Output::Raw { raw, .. } => std::borrow::Cow::Borrowed(raw.text()),
        }
    }

    /// What a template reads: the value in place, or the text read lazily.
    pub fn view(&self) -> &dyn liquid_core::ValueView {
        match self {
            Output::Json(j) => crate::template::value::Json::view(j),
            Output::Raw { raw, .. } => raw,
        }
    }

    pub fn raw(&self) -> Option<&RawJson> {
        match self {
            Output::Raw { raw, .. } => Some(raw),
            Output::Json(_) => None,
        }
    }
}

/// Slots of (slug, nearest event of that slug), filled once each.
#[derive(Debug, Default)]
pub struct Shortcuts([std::sync::OnceLock<(Arc<str>, Arc<Event>)>; 4]);

impl Shortcuts {
    fn get(&self, slug: &str) -> Option<&Arc<Event>> {
        self.0
            .iter()
            .map_while(|slot| slot.get())
            .find(|(s, _)| &**s == slug)
            .map(|(_, e)| e)
    }

    /// Remembers `event` as the nearest of its slug, in a free slot if any.
    fn remember(&self, event: &Arc<Event>) {
        for slot in &self.0 {
            match slot.get() {
                Some((s, _)) if *s == event.action => return,
                Some(_) => {}
                None => {
                    if slot.set((event.action.clone(), event.clone())).is_ok() {
                        return;
                    }
                }
            }
        }
    }
}

impl Event {
    pub fn new(
        run_id: RunId,
        story: Arc<str>,
        action: Arc<str>,
        parents: Vec<Arc<Event>>,
        output: impl Into<Output>,
        now: i64,
    ) -> Self {
        Self {
            id: EventId::new(),
            run_id,
            story,
            action,
            parents,
            output: output.into(),
            created_at: now,
            branch: None,
            shortcuts: Shortcuts::default(),
        }
    }

    /// The same event (id, run, ancestry, time) with another output: what
    /// a store is given when the output held a secret.
    pub fn with_output(&self, output: J) -> Self {
        Self {
            id: self.id,
            run_id: self.run_id,
            story: self.story.clone(),
            action: self.action.clone(),
            parents: self.parents.clone(),
            output: Output::Json(output),
            created_at: self.created_at,
            branch: self.branch,
            shortcuts: Shortcuts::default(),
        }
    }

    /// An event read back from a store (its id and time as stored).
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        id: EventId,
        run_id: RunId,
        story: Arc<str>,
        action: Arc<str>,
        parents: Vec<Arc<Event>>,
        output: Output,
        created_at: i64,
        branch: Option<&'static str>,
    ) -> Self {
        Self {
            id,
            run_id,
            story,
            action,
            parents,
            output,
            created_at,
            branch,
            shortcuts: Shortcuts::default(),
        }
    }

    /// The whole output (a large one kept as text is parsed, once).
    pub fn output(&self) -> &J {
        self.output.json()
    }

    /// The output as it is held: parsed, or text.
    pub fn held_output(&self) -> &Output {
        &self.output
    }

    /// The output as JSON text (what a store writes).
    pub fn output_text(&self) -> std::borrow::Cow<'_, str> {
        self.output.text()
    }

    /// The output as a template reads it, without parsing a large one.
    pub fn view(&self) -> &dyn liquid_core::ValueView {
        self.output.view()
    }

    pub fn with_branch(mut self, branch: Option<&'static str>) -> Self {
        self.branch = branch;
        self
    }

    pub fn parent_ids(&self) -> Vec<EventId> {
        self.parents.iter().map(|p| p.id).collect()
    }

    /// The output of the nearest event of `slug` in this event's ancestry,
    /// itself included (breadth first: the nearest wins).
    pub fn nearest(self: &Arc<Self>, slug: &str) -> Option<&J> {
        self.nearest_event(slug).map(|e| e.output())
    }

    /// The nearest event of `slug` among this one and its ancestors.
    pub fn nearest_event<'a>(self: &'a Arc<Self>, slug: &str) -> Option<&'a Arc<Event>> {
        if &*self.action == slug {
            return Some(self);
        }
        // Along a chain (one parent each) the nearest is the first on the
        // way up, and an ancestor's shortcut is the rest of that way.
        let mut at: &'a Arc<Event> = self;
        loop {
            if let Some(found) = at.shortcuts.get(slug) {
                if !std::ptr::eq(at, self) {
                    self.shortcuts.remember(found);
                }
                return Some(found);
            }
            match at.parents.as_slice() {
                [] => return None,
                [parent] => {
                    if &*parent.action == slug {
                        if !std::ptr::eq(at, self) {
                            self.shortcuts.remember(parent);
                        }
                        return Some(parent);
                    }
                    at = parent;
                }
                _ => break,
            }
        }
        // Several parents: breadth first from there, the nearest wins.
        let mut frontier: Vec<&'a Arc<Event>> = at.parents.iter().collect();
        let mut seen: std::collections::HashSet<EventId> = std::collections::HashSet::new();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for e in frontier {
                if &*e.action == slug {
                    self.shortcuts.remember(e);
                    return Some(e);
                }
                if seen.insert(e.id) {
                    next.extend(e.parents.iter());
                }
            }
            frontier = next;
        }
        None
    }

    /// As JSON, the way traces and `tale run` show it.
    pub fn to_json(&self) -> J {
        serde_json::json!({
            "id": self.id.to_string(),
            "run_id": self.run_id.to_string(),
            "story": &*self.story,
            "action": &*self.action,
            "parent_ids": self.parents.iter().map(|p| p.id.to_string()).collect::<Vec<_>>(),
            "branch": self.branch,
            "output": self.output(),
            "created_at": self.created_at,
        })
    }
}

/// A UUIDv7 (time-ordered) from the clock and a fast PRNG: the operating
/// system's random source per event costs a system call.
pub fn new_id() -> Uuid {
    let ms = now_millis().max(0) as u128 & ((1 << 48) - 1);
    let random = fastrand::u128(..);
    let bits = (ms << 80) | (0x7 << 76) | (random & ((1 << 76) - 1));
    // RFC 9562 variant bits (10xx) in the top of the low 64 bits.
    let bits = (bits & !(0b11 << 62)) | (0b10 << 62);
    Uuid::from_u128(bits)
}

/// The same id for the same parts (a UUID of version 8 from their SHA-256):
/// what a step made and makes again after a crash must match.
pub fn derived_id(parts: &[&str]) -> Uuid {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for p in parts {
        hash.update(p.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::Event;

    /// An output is stored once, in its event: a template reaches it through
    /// the parents (the same allocation), never through a copy.
    #[test]
    fn upstream_outputs_are_reached_through_parents_not_copied() {
        let run = super::RunId::new();
        let story: Arc<str> = Arc::from("s");
        let root = Arc::new(Event::new(
            run,
            story.clone(),
            Arc::from("hook"),
            vec![],
            json!({"big": "x"}),
            0,
        ));
        let mut at = root.clone();
        for n in 0..5 {
            let slug: Arc<str> = Arc::from(format!("step{n}").as_str());
            at = Arc::new(Event::new(run, story.clone(), slug, vec![at], json!({"n": n}), 0));
        }
        let found = at.nearest("hook").expect("the webhook's output");
        assert!(std::ptr::eq(found, root.output()), "a copy of the output was found");
    }
    #[test]
    fn ids_are_version_7_and_distinct() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }
}
