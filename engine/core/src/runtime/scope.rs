//! What a template sees: upstream outputs by slug (through the event's
//! ancestry), the namespaces, and the names a field adds (`request`,
//! `response`, `LOOP`). Everything is read in place.

use std::fmt;
use std::sync::Arc;

use liquid_core::model::{DisplayCow, KStringCow, ObjectView, State, Value, ValueView};
use serde_json::Value as J;

use super::event::Event;
use crate::template::value::{Json, NIL};

/// The credential values templates read (`CREDENTIAL.name`): JSON for
/// Liquid, but zeroed when dropped and `[REDACTED]` in debug output, like
/// the [`secrecy`] types of the vault.
#[derive(Default, Clone)]
pub struct SecretValues(J);

impl From<J> for SecretValues {
    fn from(value: J) -> Self {
        Self(value)
    }
}

impl std::ops::Deref for SecretValues {
    type Target = J;
    fn deref(&self) -> &J {
        &self.0
    }
}

impl std::ops::DerefMut for SecretValues {
    fn deref_mut(&mut self) -> &mut J {
        &mut self.0
    }
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Drop for SecretValues {
    fn drop(&mut self) {
        use secrecy::zeroize::Zeroize as _;
        if let J::Object(o) = &mut self.0 {
            for v in o.values_mut() {
                if let J::String(s) = v {
                    s.zeroize();
                }
            }
        }
    }
}

/// Values shared by every render of a story: `CREDENTIAL`, `RESOURCE`, `STORY`.
#[derive(Debug, Default, Clone)]
pub struct Globals {
    pub credentials: SecretValues,
    pub resources: J,
    pub story: J,
    /// Credential name → the hosts it may be sent to (absent: anywhere).
    pub allowed_hosts: std::collections::BTreeMap<String, Vec<String>>,
    /// Typed credentials from a credentials file (OAuth2 tokens, Basic, a header).
    pub vault: std::sync::Arc<super::credentials::Vault>,
}

impl Globals {
    /// Every secret value the story may hold, by credential name: the plain
    /// credentials, and the typed ones' values, passwords, client secrets and
    /// tokens fetched so far (what a redactor must hide).
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .credentials
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        out.extend(self.vault.secrets());
        out
    }

    /// A redactor of [`Globals::secrets`] that also hides the tokens the
    /// vault fetches later.
    pub fn redactor(&self) -> super::redact::Redactor {
        let secrets = self.secrets();
        super::redact::Redactor::from_pairs(secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .with_live(self.vault.live.clone())
    }

    /// Refuses a request that carries a credential's value (in its URL,
    /// headers or body, however a template put it there) to a host the
    /// credential does not allow.
    pub fn check_request(&self, request: &super::http::HttpRequest) -> Result<(), String> {
        self.check_request_with(&self.credentials, request)
    }

    /// [`Globals::check_request`] with the values a render saw (OAuth2
    /// tokens included).
    pub fn check_request_with(&self, credentials: &J, request: &super::http::HttpRequest) -> Result<(), String> {
        // No credential is bound to hosts: nothing to refuse (and no URL to parse).
        if self.allowed_hosts.is_empty() {
            return Ok(());
        }
        let Some(host) = url::Url::parse(&request.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        else {
            return Ok(());
        };
        let empty = serde_json::Map::new();
        let credentials = match credentials {
            J::Object(o) => o,
            _ => &empty,
        };
        // Values templates may hold: plain ones, and the tokens fetched.
        let live = self.vault.live.snapshot();
        let values = credentials
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .chain(live.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = request
            .body
            .as_deref()
            .map_or(std::borrow::Cow::Borrowed(""), String::from_utf8_lossy);
        for (name, value) in values {
            let Some(hosts) = self.allowed_hosts.get(name) else {
                continue;
            };
            if value.len() < 4 || crate::values::host_allowed(&host, hosts) {
                continue;
            }
            // The forms the redactor hides are the forms a template can send
            // the value in: one list for both.
            let finder = super::redact::Redactor::from_pairs([(name, value)]);
            let carried = finder.finds_secret_in(&request.url)
                || request
                    .headers
                    .iter()
                    .any(|(k, v)| finder.finds_secret_in(k) || finder.finds_secret_in(v))
                || finder.finds_secret_in(&body);
            if carried {
                return Err(format!(
                    "credential `{name}` may not be sent to `{host}` (its allowed hosts are {})",
                    hosts.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// `META` (the run, event, action and story of an execution), built the
/// first time a template reads it: most actions never do, and building it
/// costs a dozen allocations per execution.
pub struct LazyMeta<'a> {
    value: std::sync::OnceLock<J>,
    build: &'a (dyn Fn() -> J + Sync + 'a),
}

impl<'a> LazyMeta<'a> {
    pub fn new(build: &'a (dyn Fn() -> J + Sync + 'a)) -> Self {
        Self {
            value: std::sync::OnceLock::new(),
            build,
        }
    }

    pub fn get(&self) -> &J {
        self.value.get_or_init(self.build)
    }
}

/// The variables of one render.
pub struct Scope<'a> {
    pub globals: &'a Globals,
    /// What `CREDENTIAL` reads: the globals' values, plus the OAuth2 tokens
    /// the action needs.
    pub credentials: &'a J,
    /// The event the action received (None for a scheduled start).
    pub input: Option<&'a Arc<Event>>,
    pub local: Option<&'a J>,
    /// The story state the action reads (`STATE`), loaded before it runs.
    pub state: Option<&'a J>,
    pub meta: Option<&'a LazyMeta<'a>>,
    /// Field-specific names: `request`, `response`, `LOOP`.
    pub extra: &'a [(&'a str, &'a J)],
    /// What `'now'` means in templates (ms since the epoch): the run's clock,
    /// virtual in dry runs and story tests. `None`: the system clock.
    pub now_ms: Option<i64>,
}

impl<'a> Scope<'a> {
    pub fn new(globals: &'a Globals, input: Option<&'a Arc<Event>>) -> Self {
        Self {
            globals,
            credentials: &globals.credentials,
            input,
            local: None,
            state: None,
            meta: None,
            extra: &[],
            now_ms: None,
        }
    }

    /// The same scope with other field names (`LOOP`, `request`, `response`).
    pub fn clone_with_extra<'b>(&self, extra: &'b [(&'b str, &'b J)]) -> Scope<'b>
    where
        'a: 'b,
    {
        Scope {
            globals: self.globals,
            credentials: self.credentials,
            input: self.input,
            local: self.local,
            state: self.state,
            meta: self.meta,
            extra,
            now_ms: self.now_ms,
        }
    }

    /// The upstream event a name reads, when it reads one (not a namespace
    /// or a field-specific name).
    pub fn source_event(&self, name: &str) -> Option<&'a Arc<Event>> {
        if self.extra.iter().any(|(n, _)| *n == name)
            || matches!(name, "CREDENTIAL" | "RESOURCE" | "STORY" | "LOCAL" | "STATE" | "META")
        {
            return None;
        }
        self.input.and_then(|e| e.nearest_event(name))
    }

    /// The JSON a name reads, if any.
    pub fn lookup(&self, name: &str) -> Option<&'a J> {
        if let Some((_, v)) = self.extra.iter().find(|(n, _)| *n == name) {
            return Some(v);
        }
        match name {
            "CREDENTIAL" => Some(self.credentials),
            "RESOURCE" => Some(&self.globals.resources),
            "STORY" => Some(&self.globals.story),
            "LOCAL" => self.local,
            "STATE" => self.state,
            "META" => self.meta.map(LazyMeta::get),
            _ => self.input.and_then(|e| e.nearest(name)),
        }
    }
}

impl Scope<'_> {
    /// Refuses a request that carries a credential to a host it does not allow.
    pub fn check_request(&self, request: &super::http::HttpRequest) -> Result<(), String> {
        self.globals.check_request_with(self.credentials, request)
    }
}

impl fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scope")
    }
}

impl ValueView for Scope<'_> {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }
    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"")
    }
    fn source(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"")
    }
    fn type_name(&self) -> &'static str {
        "object"
    }
    fn query_state(&self, state: State) -> bool {
        matches!(state, State::Truthy)
    }
    fn to_kstr(&self) -> KStringCow<'_> {
        KStringCow::from_static("")
    }
    fn to_value(&self) -> Value {
        Value::Nil
    }
    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
}

impl ObjectView for Scope<'_> {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        0
    }
    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        Box::new(std::iter::empty())
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        Box::new(std::iter::empty())
    }
    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        Box::new(std::iter::empty())
    }
    fn contains_key(&self, _index: &str) -> bool {
        // A name nothing defines reads as nil, as in Tines.
        true
    }
    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        // An upstream output is read as it is held: a large one kept as
        // text is indexed only along the path the template takes.
        if let Some(event) = self.source_event(index) {
            return Some(event.view());
        }
        Some(
            self.lookup(index)
                .map_or(&NIL as &dyn ValueView, |v| Json::view(v) as &dyn ValueView),
        )
    }
}
