//! Keeps credential values out of what tale prints and stores: each value,
//! and every encoding of it a template can make (base64, base64url,
//! percent-escapes of every `url_encode`/form flavour, JSON, HTML), becomes
//! `[credential:name]`. The host check finds a value with the same list.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value as J;

/// Values shorter than this are not redacted: they would blank out ordinary
/// words (and are not secrets worth the name).
const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Default, Clone)]
pub struct Redactor {
    needles: Vec<(String, String)>,
    /// All needles in one automaton: almost every string holds none and is
    /// let through after one pass, without a copy.
    finder: Option<aho_corasick::AhoCorasick>,
    /// The raw values, to find inside decoded base64 (`user:<secret>` of a
    /// Basic header a template built).
    values: Vec<(String, String)>,
    /// The shortest base64 text that can decode to a text holding a value.
    min_encoded: usize,
    /// Secrets learned after the redactor was built (OAuth2 tokens).
    live: Vec<std::sync::Arc<LiveSecrets>>,
}

/// Secrets learned while running — OAuth2 tokens — shared by the vault that
/// fetches them and every redactor and host check built from it.
#[derive(Debug, Default)]
pub struct LiveSecrets {
    values: std::sync::RwLock<Vec<(String, String)>>,
    /// Rebuilt at each new secret (rare: a token fetch), read at every redaction.
    redactor: std::sync::RwLock<Option<std::sync::Arc<Redactor>>>,
}

/// Tokens kept per credential (a renewed token's predecessor may still be
/// in flight).
const LIVE_PER_NAME: usize = 4;

impl LiveSecrets {
    pub fn add(&self, name: &str, value: &str) {
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        if values.iter().any(|(n, v)| n == name && v == value) {
            return;
        }
        if values.iter().filter(|(n, _)| n == name).count() >= LIVE_PER_NAME {
            if let Some(oldest) = values.iter().position(|(n, _)| n == name) {
                values.remove(oldest);
            }
        }
        values.push((name.to_owned(), value.to_owned()));
        let built = Redactor::from_pairs(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        *self.redactor.write().unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::new(built));
    }

    fn redactor(&self) -> Option<std::sync::Arc<Redactor>> {
        self.redactor.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The (name, value) pairs known now.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.values.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_empty(&self) -> bool {
        self.redactor.read().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}

/// True when `s` has a run of at least `min` base64 or base64url characters
/// (what `BASE64ISH` would match and could hide a value in).
fn has_base64_run(s: &str, min: usize) -> bool {
    let mut run = 0;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-') {
            run += 1;
            if run >= min {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// What `url_encode` escapes (Liquid's: all but letters, digits, `-._`).
const URL_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');
/// RFC 3986 unreserved characters kept (`-._~`), as most URI libraries do.
const RFC3986: &percent_encoding::AsciiSet = &URL_ENCODE.remove(b'~');
/// JavaScript's `encodeURIComponent` (also keeps `!*'()`).
const URI_COMPONENT: &percent_encoding::AsciiSet = &RFC3986
    .remove(b'!')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// What a URL parser escapes in a query (WHATWG, special schemes): a value
/// echoed into a redirect's `Location` comes back in this form.
const WHATWG_QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\'');
/// …and in a path.
const WHATWG_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Every percent-escaped form of `v` a filter or a library commonly makes:
/// each escape set, spaces as `%20` or `+`, hex in upper or lower case.
fn percent_forms(v: &str) -> Vec<String> {
    let mut forms = Vec::new();
    for set in [URL_ENCODE, RFC3986, URI_COMPONENT, WHATWG_QUERY, WHATWG_PATH] {
        let escaped = percent_encoding::utf8_percent_encode(v, set).to_string();
        forms.push(escaped.replace("%20", "+"));
        forms.push(escaped);
    }
    // `application/x-www-form-urlencoded` (keeps `*`, spaces as `+`).
    let form: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
    forms.push(form.replace('+', "%20"));
    forms.push(form);
    let lower: Vec<String> = forms.iter().filter(|f| f.contains('%')).map(|f| lower_hex(f)).collect();
    forms.extend(lower);
    forms.retain(|f| f != v);
    forms.sort();
    forms.dedup();
    forms
}

/// `%2A` → `%2a`, the rest unchanged.
fn lower_hex(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&code.to_ascii_lowercase());
        rest = &rest[at + code.len()..];
    }
    out.push_str(rest);
    out
}

/// Text that may be base64 or base64url of something longer than a secret.
static BASE64ISH: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"[A-Za-z0-9+/_-]{6,}={0,2}").expect("a valid regex"));

impl Redactor {
    /// From the `CREDENTIAL` object templates see.
    pub fn new(credentials: &J) -> Self {
        match credentials {
            J::Object(o) => Self::from_pairs(o.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))),
            _ => Self::default(),
        }
    }

    /// From (name, value) pairs: one name may come with several values (a
    /// rotated credential still used by a story that kept its old version).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut needles = Vec::new();
        let mut values = Vec::new();
        for (name, v) in pairs {
            if v.len() < MIN_SECRET_LEN {
                continue;
            }
            let label = format!("[credential:{name}]");
            values.push((v.to_owned(), label.clone()));
            let json_escaped = serde_json::to_string(v).unwrap_or_default();
            let json_inner = json_escaped[1..json_escaped.len().saturating_sub(1).max(1)].to_owned();
            if json_inner != v {
                // Inside decoded base64 of JSON (a JWT's payload).
                values.push((json_inner.clone(), label.clone()));
            }
            let b64 = |v: &str| {
                use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
                [STANDARD.encode(v), STANDARD_NO_PAD.encode(v), URL_SAFE_NO_PAD.encode(v)]
            };
            let mut engines: Vec<String> = Vec::new();
            for encoded in b64(v) {
                // Base64 in a query or a form body (`+`, `/`, `=` escaped).
                engines.extend(percent_forms(&encoded));
                engines.push(encoded);
            }
            // In a URL or a form, inside JSON text, in HTML or XML.
            engines.extend(percent_forms(v));
            engines.push(json_inner);
            engines.push(crate::template::filters::html_escape_text(v));
            needles.push((v.to_owned(), label.clone()));
            for e in engines.into_iter().filter(|e| e.len() >= MIN_SECRET_LEN) {
                needles.push((e, label.clone()));
            }
        }
        values.sort();
        values.dedup();
        // Longest first, so that an encoding is replaced before a value inside it.
        needles.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        needles.dedup_by(|a, b| a.0 == b.0);
        // Needles are plain text of bounded length: building cannot fail;
        // without the automaton every string takes the careful path.
        let finder = (!needles.is_empty())
            .then(|| aho_corasick::AhoCorasick::new(needles.iter().map(|(n, _)| n.as_str())).ok())
            .flatten();
        // A value of n bytes inside decoded base64 needs 4n/3 characters
        // (6 for the shortest value redacted: a Basic header of `x:abcd`).
        let shortest = values.iter().map(|(v, _)| v.len()).min().unwrap_or(0);
        Self {
            needles,
            finder,
            values,
            min_encoded: (shortest * 4).div_ceil(3).max(6),
            live: Vec::new(),
        }
    }

    /// True when `text_static` would return `s` unchanged. Errs on the side
    /// of false: the careful path then decides.
    fn untouched(&self, s: &str) -> bool {
        if self.needles.is_empty() {
            return true;
        }
        match &self.finder {
            Some(f) if f.is_match(s) => false,
            Some(_) => !self.may_hide_in_base64(s),
            None => false,
        }
    }

    /// `s` has base64 long enough to decode to a text holding a value.
    fn may_hide_in_base64(&self, s: &str) -> bool {
        !self.values.is_empty() && has_base64_run(s, self.min_encoded)
    }

    /// True when `s` holds one of the values, in any form this redactor
    /// knows (as is, base64 and base64url with or without padding, URL- and
    /// JSON-escaped, inside decoded base64 text such as a Basic header).
    pub fn finds_secret_in(&self, s: &str) -> bool {
        // Whatever escape set made it: percent-decoded, the value shows.
        if s.contains('%') || s.contains('+') {
            let decoded = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
            let spaced = decoded.replace('+', " ");
            if self.finds_as_is(&decoded) || self.finds_as_is(&spaced) {
                return true;
            }
        }
        self.finds_as_is(s)
    }

    fn finds_as_is(&self, s: &str) -> bool {
        match &self.finder {
            Some(f) if f.is_match(s) => true,
            // What `text_static` would replace, without building the copy
            // (a request body can be large).
            Some(_) => {
                self.may_hide_in_base64(s) && BASE64ISH.find_iter(s).any(|m| self.hidden_in(m.as_str()).is_some())
            }
            None => self.text_static(s) != s,
        }
    }

    /// The live redactors that know a secret now (read once per value, not
    /// once per string).
    fn live_now(&self) -> Vec<Arc<Redactor>> {
        self.live.iter().filter_map(|l| l.redactor()).collect()
    }

    /// `s` redacted by this redactor and the live ones; borrowed when
    /// nothing in it is secret.
    fn redact_str<'a>(&self, live: &[Arc<Redactor>], s: &'a str) -> Cow<'a, str> {
        let mut out = if self.untouched(s) {
            Cow::Borrowed(s)
        } else {
            Cow::Owned(self.text_static(s))
        };
        for r in live {
            if !r.untouched(&out) {
                out = Cow::Owned(r.text_static(&out));
            }
        }
        out
    }

    /// Also hides what `live` learns from now on.
    pub fn with_live(mut self, live: std::sync::Arc<LiveSecrets>) -> Self {
        if !self.live.iter().any(|l| std::sync::Arc::ptr_eq(l, &live)) {
            self.live.push(live);
        }
        self
    }

    pub fn text(&self, s: &str) -> String {
        self.redact_str(&self.live_now(), s).into_owned()
    }

    fn text_static(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (needle, label) in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), label);
            }
        }
        if self.values.is_empty() || out.len() < 6 {
            return out;
        }
        // A secret inside something a template encoded (`'user:' | append:
        // CREDENTIAL.x | base64_encode`): decode what looks like base64.
        let replaced = BASE64ISH.replace_all(&out, |caps: &regex::Captures<'_>| {
            let token = &caps[0];
            match self.hidden_in(token) {
                Some(label) => label.to_owned(),
                None => token.to_owned(),
            }
        });
        replaced.into_owned()
    }

    /// The label of a secret that `token`, decoded as base64, contains.
    fn hidden_in(&self, token: &str) -> Option<&str> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        let decoded = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(token).ok())?;
        self.values
            .iter()
            .find(|(v, _)| decoded.windows(v.len()).any(|w| w == v.as_bytes()))
            .map(|(_, label)| label.as_str())
    }

    /// One emitted event redacted (text kept unparsed is parsed only when it
    /// may hold a secret); wake-ups and calls as they are.
    fn emit(&self, e: super::contract::Emit) -> super::contract::Emit {
        use super::contract::Emit;
        match e {
            Emit::Main(o) => Emit::Main(self.json_owned(o)),
            Emit::Text(raw) if self.text_may_hold_secret(raw.text()) => Emit::Main(self.json_owned(raw.to_json())),
            Emit::Branch(b, o) => Emit::Branch(b, self.json_owned(o)),
            other => other,
        }
    }

    /// An action's outcome with its emitted events and trace redacted.
    pub fn outcome(&self, outcome: super::contract::Outcome) -> super::contract::Outcome {
        super::contract::Outcome {
            emits: outcome.emits.into_iter().map(|e| self.emit(e)).collect(),
            trace: outcome.trace.into_iter().map(|t| self.json_owned(t)).collect(),
            state: outcome
                .state
                .into_iter()
                .map(|mut p| {
                    p.change = match p.change {
                        super::store::Change::Set(v) => super::store::Change::Set(self.json_owned(v)),
                        super::store::Change::Push(v) => super::store::Change::Push(self.json_owned(v)),
                        delete => delete,
                    };
                    p
                })
                .collect(),
            // An explode's elements, redacted as they are pulled.
            rest: outcome.rest.map(|rest| {
                let this = self.clone();
                Box::new(rest.map(move |e| this.emit(e))) as super::contract::LazyEmits
            }),
            ..outcome
        }
    }

    /// Nothing to hide (no value, no token fetched yet).
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty() && self.live.iter().all(|l| l.is_empty())
    }

    /// Whether JSON text may hold a value this redactor or a live one hides:
    /// as it is, JSON-escaped or encoded (what [`Redactor::finds_secret_in`]
    /// knows), or behind an escape other than `\"` and `\\` (`\u`, `\/`,
    /// a `\n` breaking a base64 run), which only parsing undoes. False means
    /// the text holds none; true, that it must be parsed to tell.
    pub fn text_may_hold_secret(&self, text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        has_escape(text) || self.finds_secret_in(text) || self.live_now().iter().any(|r| r.finds_secret_in(text))
    }

    /// `value` as JSON text with its strings and keys redacted. Redacting
    /// the text instead would also rewrite digits inside numbers (a numeric
    /// secret in a timestamp) and corrupt what is stored.
    pub fn json_text(&self, value: &J) -> String {
        if self.is_empty() {
            return value.to_string();
        }
        // Written as it is walked: a redacted copy of the tree first would
        // double the memory of a large event (a 130 MB webhook body).
        let mut out = Vec::new();
        self.write_json(&self.live_now(), value, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn write_json(&self, live: &[Arc<Redactor>], value: &J, out: &mut Vec<u8>) {
        // Writing JSON into a Vec cannot fail.
        match value {
            J::String(s) => {
                let _ = serde_json::to_writer(&mut *out, &self.redact_str(live, s));
            }
            J::Array(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write_json(live, v, out);
                }
                out.push(b']');
            }
            J::Object(o) => {
                out.push(b'{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, &self.redact_str(live, k));
                    out.push(b':');
                    self.write_json(live, v, out);
                }
                out.push(b'}');
            }
            scalar => {
                let _ = serde_json::to_writer(&mut *out, scalar);
            }
        }
    }

    pub fn json(&self, value: &J) -> J {
        self.json_owned(value.clone())
    }

    /// A redacted copy of `value` when it holds a secret; `None` (nothing
    /// copied) when it holds none.
    pub fn json_if_secret(&self, value: &J) -> Option<J> {
        if self.is_empty() {
            return None;
        }
        let live = self.live_now();
        self.holds_secret(&live, value).then(|| {
            let mut copy = value.clone();
            self.redact_in_place(&live, &mut copy);
            copy
        })
    }

    fn holds_secret(&self, live: &[Arc<Redactor>], value: &J) -> bool {
        let hides = |s: &str| matches!(self.redact_str(live, s), Cow::Owned(_));
        match value {
            J::String(s) => hides(s),
            J::Array(a) => a.iter().any(|v| self.holds_secret(live, v)),
            J::Object(o) => o.iter().any(|(k, v)| hides(k) || self.holds_secret(live, v)),
            _ => false,
        }
    }

    /// `value` redacted in place: only the strings that hold a secret are
    /// rewritten (an object whose keys hold one is rebuilt).
    pub fn json_owned(&self, mut value: J) -> J {
        if self.is_empty() {
            return value;
        }
        self.redact_in_place(&self.live_now(), &mut value);
        value
    }

    fn redact_in_place(&self, live: &[Arc<Redactor>], value: &mut J) {
        match value {
            J::String(s) => {
                if let Cow::Owned(new) = self.redact_str(live, s) {
                    *s = new;
                }
            }
            J::Array(a) => a.iter_mut().for_each(|v| self.redact_in_place(live, v)),
            J::Object(o) => {
                o.values_mut().for_each(|v| self.redact_in_place(live, v));
                if o.keys().any(|k| matches!(self.redact_str(live, k), Cow::Owned(_))) {
                    *o = std::mem::take(o)
                        .into_iter()
                        .map(|(k, v)| (self.redact_str(live, &k).into_owned(), v))
                        .collect();
                }
            }
            _ => {}
        }
    }
}

/// Whether JSON text escapes anything but a quote or a backslash: `\u`,
/// `\/`, `\n`… change the bytes a value is written with (a secret behind
/// `\/`, a base64 run broken by `\n`), so only parsing tells what it holds.
fn has_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|b| *b == b'\\') {
        let next = bytes.get(i + at + 1).copied();
        if !matches!(next, Some(b'"' | b'\\')) {
            return true;
        }
        i += at + 2;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// JSON text kept unparsed (a large webhook body) is parsed to redact
    /// whenever a secret may hide in it, in any way JSON can write it.
    #[test]
    fn text_that_may_hide_a_secret_is_told_apart() {
        let r = Redactor::new(&json!({"api": "abc/def-123456"}));
        let clean = r#"{"a": "plain \"quoted\" and \\ backslash", "n": 1}"#;
        assert!(!r.text_may_hold_secret(clean));
        for hidden in [
            r#"{"a": "abc/def-123456"}"#,
            r#"{"a": "abc\/def-123456"}"#,
            r#"{"a": "\u0061bc/def-123456"}"#,
            r#"{"a": "x\nYWJjL2RlZi0xMjM0NTY="}"#,
        ] {
            assert!(r.text_may_hold_secret(hidden), "{hidden}");
            serde_json::from_str::<J>(hidden).expect("valid JSON");
        }
        assert!(!Redactor::new(&json!({})).text_may_hold_secret(r#"{"a": "\u0041"}"#));
    }

    /// A numeric secret inside a number is left alone: redacting JSON text
    /// would have stored `[176411[credential:pin]000]`, which no longer parses.
    #[test]
    fn json_text_is_the_redacted_tree_serialized() {
        let r = Redactor::new(&json!({"api": "s3cr3t-token"}));
        let v = json!({"a": [1, 2.5, null, true, "x s3cr3t-token"], "s3cr3t-token": {"q": "\"quoted\"\n"}});
        assert_eq!(r.json_text(&v), r.json(&v).to_string());
        assert_eq!(Redactor::default().json_text(&v), v.to_string());
    }

    #[test]
    fn stored_json_keeps_its_numbers() {
        let r = Redactor::new(&json!({"pin": "4821"}));
        let text = r.json_text(&json!({"times": [1764114821000i64], "note": "pin 4821"}));
        let back: J = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(
            back,
            json!({"times": [1764114821000i64], "note": "pin [credential:pin]"})
        );
    }

    #[test]
    fn a_secret_inside_encoded_text_is_found() {
        let r = Redactor::new(&json!({"api": "leaky-Secret-9a8b7c6d"}));
        let basic = base64::engine::general_purpose::STANDARD.encode("user:leaky-Secret-9a8b7c6d");
        let text = format!(
            "x-basic: Basic {basic}; other: {}",
            base64::engine::general_purpose::STANDARD.encode("not a secret at all")
        );
        let out = r.text(&text);
        assert!(!out.contains(&basic), "{out}");
        assert!(out.contains("Basic [credential:api]"), "{out}");
        assert!(
            out.contains("bm90IGEgc2VjcmV0IGF0IGFsbA=="),
            "harmless base64 was replaced: {out}"
        );
    }

    /// The one-pass check lets a string through only when the careful path
    /// would have left it unchanged.
    #[test]
    fn the_fast_path_agrees_with_the_careful_one() {
        let r = Redactor::new(&json!({"api": "leaky-Secret-9a8b7c6d", "pin": "4821"}));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut samples: Vec<String> = [
            "",
            "plain words",
            "pin 4821",
            "leaky-Secret-9a8b7c6",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "abcdefghijklmnopqrstuvwxyz0123456789",
        ]
        .map(String::from)
        .into();
        samples.push(b64("user:leaky-Secret-9a8b7c6d"));
        samples.push(format!("Basic {}==", b64("leaky-Secret-9a8b7c6d")));
        samples.push(b64("4821 and more text"));
        let pieces = [
            "leaky-", "Secret-", "9a8b7c6d", "4821", "bGVha3kt", "+", "/", " ", "=", "%2B", "x",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3000 {
            let n = rng.usize(0..10);
            samples.push((0..n).map(|_| pieces[rng.usize(..pieces.len())]).collect());
        }
        for s in &samples {
            let careful = r.text_static(s);
            assert_eq!(r.redact_str(&[], s).into_owned(), careful, "{s:?}");
            assert_eq!(r.finds_secret_in(s), careful != *s, "{s:?}");
        }
    }

    /// Base64 as a form or a query string carries it, and HTML-escaped text.
    #[test]
    fn base64_in_a_form_and_html_escaped_values_are_found() {
        let r = Redactor::new(&json!({"x": "token???<&>"}));
        let b64 = base64::engine::general_purpose::STANDARD.encode("token???<&>");
        let form: String = url::form_urlencoded::byte_serialize(b64.as_bytes()).collect();
        assert!(form.contains('%'), "{form}");
        assert_eq!(r.text(&format!("k={form}")), "k=[credential:x]");
        assert_eq!(r.text("<p>token???&lt;&amp;&gt;</p>"), "<p>[credential:x]</p>");
    }

    /// A short password in a short Basic header (8 characters of base64).
    #[test]
    fn a_short_value_inside_a_short_basic_header_is_found() {
        let r = Redactor::new(&json!({"pin": "abcd"}));
        let basic = base64::engine::general_purpose::STANDARD.encode("x:abcd");
        assert_eq!(basic.len(), 8);
        assert_eq!(r.text(&format!("Basic {basic}")), "Basic [credential:pin]");
        assert!(r.finds_secret_in(&basic));
        assert!(!r.finds_secret_in("Basic eDpxcnN0"), "x:qrst holds no secret");
    }

    #[test]
    fn values_and_their_encodings() {
        let r = Redactor::new(&json!({"graph": "s3cr3t-token", "short": "ab", "key": "abc+def/ghi=\"x"}));
        assert_eq!(r.text("?k=abc%2Bdef%2Fghi%3D%22x"), "?k=[credential:key]");
        assert_eq!(r.text(r#"{"t":"abc+def/ghi=\"x"}"#), r#"{"t":"[credential:key]"}"#);
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t-token");
        let out = r.json(&json!({"auth": "Bearer s3cr3t-token", "echo": [b64], "ab": "ab"}));
        assert_eq!(
            out,
            json!({"auth": "Bearer [credential:graph]", "echo": ["[credential:graph]"], "ab": "ab"})
        );
    }

    /// Every shipped filter, over random values: whenever its output carries
    /// the value in a form a shipped decoder gives back, the redactor hides
    /// it and the host check (`finds_secret_in`) finds it.
    #[test]
    fn every_filter_output_that_carries_a_value_is_found_and_redacted() {
        use crate::template::filters::testing::render;
        const ALPHABET: &[char] = &[
            'a', 'Z', '7', ' ', '*', '+', '/', '=', '&', '?', '%', '#', '<', '>', '"', '\'', '\\', ':', ';', '@', '!',
            '~', '(', ')', '[', ']', '{', '}', '.', '-', '_', ',', '$', '^', '|', '`', 'é', '漢', '\n',
        ];
        let decoders = [
            "url_decode",
            "html_decode",
            "base64_decode",
            "base64url_decode",
            "json_parse",
        ];
        // What a template can get back from `text`: the text, each decoder's
        // output, and the decoded dot-separated parts (a JWT).
        let decoded = |text: &str| -> Vec<String> {
            let mut out = vec![text.to_owned()];
            let parts: Vec<&str> = text.split('.').collect();
            for part in std::iter::once(text).chain(parts.iter().copied().filter(|_| parts.len() > 1)) {
                for d in decoders {
                    if let Ok(s) = render(&format!("{{{{ x | {d} }}}}"), json!({ "x": part })) {
                        out.push(s);
                    }
                }
            }
            out
        };
        let mut rng = fastrand::Rng::with_seed(0x7a1e);
        let mut checked = 0;
        for round in 0..40 {
            let len = rng.usize(6..20);
            let mut value: String = (0..len)
                .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
                .collect::<String>();
            // Letters at both ends: a value is not blank-padded.
            value = format!("k{value}q{round}");
            let r = Redactor::from_pairs([("x", value.as_str())]);
            for filter in crate::template::filters::all_filter_names() {
                let outputs = [
                    format!("{{{{ v | {filter} }}}}"),
                    format!("{{{{ v | {filter}: 'k' }}}}"),
                    format!("{{{{ v | {filter}: 'k', 'HS256' }}}}"),
                ]
                .iter()
                .find_map(|t| render(t, json!({ "v": value })).ok());
                let Some(out) = outputs else { continue };
                if !decoded(&out).iter().any(|d| d.contains(&value)) {
                    continue;
                }
                checked += 1;
                assert!(r.finds_secret_in(&out), "{filter} of {value:?}: {out:?} not found");
                let hidden = r.text(&out);
                assert!(
                    !decoded(&hidden).iter().any(|d| d.contains(&value)),
                    "{filter} of {value:?}: {out:?} redacted to {hidden:?}"
                );
            }
        }
        assert!(checked > 400, "only {checked} outputs carried the value");
    }

    #[test]
    fn url_encoded_values_in_every_flavour_are_found() {
        let r = Redactor::new(&json!({"k": "a b*c/d"}));
        for form in [
            "a%20b%2Ac%2Fd",
            "a+b%2Ac%2Fd",
            "a%20b%2ac%2fd",
            "a+b*c%2Fd",
            "a%20b*c%2fd",
        ] {
            assert!(r.finds_secret_in(&format!("q={form}&x=1")), "{form}");
            assert_eq!(r.text(&format!("q={form}&x=1")), "q=[credential:k]&x=1", "{form}");
        }
    }
}
