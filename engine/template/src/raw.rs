//! JSON kept as its text and read lazily. A large output (a webhook body of
//! a million alerts, an implode's list) parsed into `serde_json::Value`
//! takes five to ten times its text in memory and is held as long as any
//! event below it lives; kept as text, a template that reads one field
//! indexes only the levels on its way (each level once, then cached), and
//! an explode parses one element at a time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use liquid_core::model::{ArrayView, DisplayCow, KStringCow, ObjectView, ScalarCow, State, Value, ValueView};
use serde_json::Value as J;
use serde_json::value::RawValue;

use crate::value::{Json, liquid_text, to_liquid};

/// One JSON value inside a shared text: its byte range, and the index of
/// its children once something reached into it.
pub struct RawJson {
    text: Arc<str>,
    start: usize,
    end: usize,
    index: OnceLock<Box<Index>>,
}

/// The children of an object or a list, each a range of the same text.
enum Index {
    Object(Keys),
    Array(Vec<RawJson>),
    /// A scalar, or text that no longer parses (never, once validated).
    Leaf,
}

/// An object's members in their order; a duplicate key keeps its first
/// place and its last value, as `serde_json`'s ordered map does.
struct Keys {
    members: Vec<(Box<str>, RawJson)>,
    /// For large objects: key → position (small ones are scanned).
    lookup: Option<HashMap<Box<str>, usize>>,
}

const SCAN_KEYS: usize = 16;

impl Keys {
    fn position(&self, key: &str) -> Option<usize> {
        match &self.lookup {
            Some(map) => map.get(key).copied(),
            None => self.members.iter().position(|(k, _)| &**k == key),
        }
    }
}

impl RawJson {
    /// `text` as a JSON value, validated whole (without building it).
    pub fn parse(text: impl Into<Arc<str>>) -> Result<Self, serde_json::Error> {
        let text: Arc<str> = text.into();
        check(&text)?;
        let raw: &RawValue = serde_json::from_str(&text)?;
        let (start, end) = range_in(&text, raw.get());
        Ok(Self::at(text, start, end))
    }

    fn at(text: Arc<str>, start: usize, end: usize) -> Self {
        Self {
            text,
            start,
            end,
            index: OnceLock::new(),
        }
    }

    /// The value's JSON text, as it arrived (its spacing included).
    pub fn text(&self) -> &str {
        &self.text[self.start..self.end]
    }

    /// The value parsed whole.
    pub fn to_json(&self) -> J {
        serde_json::from_str(self.text()).unwrap_or(J::Null)
    }

    fn first(&self) -> u8 {
        self.text().as_bytes().first().copied().unwrap_or(b'n')
    }

    pub fn is_array(&self) -> bool {
        self.first() == b'['
    }

    pub fn is_object(&self) -> bool {
        self.first() == b'{'
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Box::new(self.build_index()))
    }

    fn build_index(&self) -> Index {
        let text = self.text();
        let child = |raw: &RawValue| {
            let (s, e) = range_in(text, raw.get());
            RawJson::at(self.text.clone(), self.start + s, self.start + e)
        };
        if self.is_array() {
            match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => Index::Array(items.into_iter().map(child).collect()),
                Err(_) => Index::Leaf,
            }
        } else if self.is_object() {
            let Ok(members) = serde_json::from_str::<Members<'_>>(text) else {
                return Index::Leaf;
            };
            let mut keys = Keys {
                members: Vec::with_capacity(members.0.len()),
                lookup: (members.0.len() > SCAN_KEYS).then(HashMap::new),
            };
            for (key, raw) in members.0 {
                let value = child(raw);
                match keys.position(&key) {
                    Some(at) => keys.members[at].1 = value,
                    None => {
                        let key: Box<str> = key.into();
                        if let Some(map) = keys.lookup.as_mut() {
                            map.insert(key.clone(), keys.members.len());
                        }
                        keys.members.push((key, value));
                    }
                }
            }
            Index::Object(keys)
        } else {
            Index::Leaf
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&RawJson> {
        match self.index() {
            Index::Object(keys) => keys.position(key).map(|at| &keys.members[at].1),
            _ => None,
        }
    }

    /// The element `i` of a list (negative: from the end).
    pub fn element(&self, i: i64) -> Option<&RawJson> {
        match self.index() {
            Index::Array(items) => {
                let at = if i < 0 { items.len() as i64 + i } else { i };
                usize::try_from(at).ok().and_then(|at| <[RawJson]>::get(items, at))
            }
            _ => None,
        }
    }

    /// How many elements or members (0 for a scalar).
    pub fn len(&self) -> usize {
        match self.index() {
            Index::Array(items) => items.len(),
            Index::Object(keys) => keys.members.len(),
            Index::Leaf => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This object with the member `key` set to `value` at its end (or, for
    /// anything else, `{"value": this, key: value}`), still as text: what a
    /// trigger or a deduplicate adds to a large event it passes on. A key
    /// already there keeps its place and takes the value, as when parsed.
    pub fn with_member(&self, key: &str, value: &J) -> Result<RawJson, serde_json::Error> {
        let key = serde_json::to_string(key)?;
        let value = serde_json::to_string(value)?;
        let text = self.text();
        let joined = match text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            Some(inner) if inner.trim().is_empty() => format!("{{{key}:{value}}}"),
            Some(inner) => format!("{{{inner},{key}:{value}}}"),
            None => format!("{{\"value\":{text},{key}:{value}}}"),
        };
        RawJson::parse(joined)
    }

    /// A scalar, parsed (small: a number, a string, true, false, null).
    fn scalar_json(&self) -> J {
        if self.is_array() || self.is_object() {
            return J::Null;
        }
        self.to_json()
    }
}

impl Clone for RawJson {
    /// The same range of the same text (the index is built again if needed).
    fn clone(&self) -> Self {
        Self::at(self.text.clone(), self.start, self.end)
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({} bytes)", self.end - self.start)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

/// An object's members with borrowed values, in the order of the text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, &'a RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The deepest nesting `serde_json` parses (127 levels: its recursion
/// limit of 128 is reached at the 128th).
pub const MAX_DEPTH: usize = 127;

/// Whether `text` is one JSON value that parsing whole accepts. Skipped
/// over, nesting is not limited: it is held to what parsing accepts, so that
/// text kept can always be parsed.
pub fn check(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<&RawValue>(text)?;
    if nesting(text) > MAX_DEPTH {
        return Err(serde::de::Error::custom("recursion limit exceeded"));
    }
    Ok(())
}

/// How deep lists and objects nest in valid JSON text.
pub fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Where `part` (a slice of `whole`) sits in it.
fn range_in(whole: &str, part: &str) -> (usize, usize) {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    (start, start + part.len())
}

struct Rendered(String);

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// As Liquid writes the value (see [`liquid_text`]).
fn rendered(value: &J) -> String {
    let mut s = String::new();
    liquid_text(value, &mut s);
    s
}

impl ValueView for RawJson {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Owned(Box::new(Rendered(rendered(&self.to_json()))))
    }

    fn source(&self) -> DisplayCow<'_> {
        DisplayCow::Owned(Box::new(Rendered(self.to_json().to_string())))
    }

    fn type_name(&self) -> &'static str {
        match self.first() {
            b'[' => "array",
            b'{' => "object",
            _ => Json::view(&self.scalar_json()).type_name(),
        }
    }

    fn query_state(&self, state: State) -> bool {
        if self.is_array() || self.is_object() {
            return match state {
                State::Truthy => true,
                _ => self.is_empty(),
            };
        }
        Json::view(&self.scalar_json()).query_state(state)
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        KStringCow::from_string(rendered(&self.to_json()))
    }

    fn to_value(&self) -> Value {
        to_liquid(&self.to_json())
    }

    fn as_scalar(&self) -> Option<ScalarCow<'_>> {
        match self.scalar_json() {
            J::String(s) => Some(ScalarCow::new(s)),
            J::Bool(b) => Some(ScalarCow::new(b)),
            J::Number(n) => Some(match n.as_i64() {
                Some(i) => ScalarCow::new(i),
                None => ScalarCow::new(n.as_f64().unwrap_or(f64::NAN)),
            }),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&dyn ArrayView> {
        self.is_array().then_some(self as &dyn ArrayView)
    }

    fn as_object(&self) -> Option<&dyn ObjectView> {
        self.is_object().then_some(self as &dyn ObjectView)
    }

    fn is_nil(&self) -> bool {
        self.first() == b'n'
    }
}

impl ArrayView for RawJson {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        if self.is_array() { self.len() as i64 } else { 0 }
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match self.index() {
            Index::Array(items) => Box::new(items.iter().map(|v| v as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn contains_key(&self, index: i64) -> bool {
        self.element(index).is_some()
    }

    fn get(&self, index: i64) -> Option<&dyn ValueView> {
        self.element(index).map(|v| v as &dyn ValueView)
    }
}

impl ObjectView for RawJson {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        if self.is_object() { self.len() as i64 } else { 0 }
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        match self.index() {
            Index::Object(keys) => Box::new(keys.members.iter().map(|(k, _)| KStringCow::from_ref(k))),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match self.index() {
            Index::Object(keys) => Box::new(keys.members.iter().map(|(_, v)| v as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        match self.index() {
            Index::Object(keys) => Box::new(
                keys.members
                    .iter()
                    .map(|(k, v)| (KStringCow::from_ref(k), v as &dyn ValueView)),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn contains_key(&self, index: &str) -> bool {
        RawJson::get(self, index).is_some()
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        // A missing key is missing, as in Liquid's own objects (the runtime
        // reads a missing path as nil; `x.size` falls back to the size).
        RawJson::get(self, index).map(|v| v as &dyn ValueView)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_levels_in_place_and_parses_what_it_reaches() {
        let raw = RawJson::parse(r#" {"a": {"b": [1, "x\"y", {"c": null}]}, "n": 2.5} "#).expect("present");
        assert_eq!(raw.text().as_bytes()[0], b'{');
        let b = raw.get("a").and_then(|a| a.get("b")).expect("present");
        assert_eq!(b.len(), 3);
        assert_eq!(b.element(1).expect("present").to_json(), json!("x\"y"));
        assert_eq!(b.element(-1).expect("present").to_json(), json!({"c": null}));
        assert!(b.element(3).is_none());
        assert_eq!(raw.get("n").expect("present").to_json(), json!(2.5));
        assert!(raw.get("missing").is_none());
        assert_eq!(raw.to_json(), json!({"a": {"b": [1, "x\"y", {"c": null}]}, "n": 2.5}));
    }

    #[test]
    fn a_duplicate_key_keeps_its_place_and_its_last_value_as_serde_json_does() {
        let text = r#"{"k": 1, "j": 2, "k": 3}"#;
        let raw = RawJson::parse(text).expect("present");
        let parsed: J = serde_json::from_str(text).expect("present");
        let keys: Vec<_> = ObjectView::keys(&raw).map(|k| k.to_string()).collect();
        assert_eq!(keys, ["k", "j"]);
        assert_eq!(raw.get("k").expect("present").to_json(), parsed["k"]);
        // A large object uses its map and says the same.
        let mut big: String = (0..40).map(|i| format!("\"k{i}\": {i},")).collect();
        big = format!("{{{big} \"k3\": \"last\"}}");
        let raw = RawJson::parse(big.as_str()).expect("present");
        assert_eq!(raw.len(), 40);
        assert_eq!(raw.get("k3").expect("present").to_json(), json!("last"));
        assert_eq!(raw.get("k39").expect("present").to_json(), json!(39));
    }

    #[test]
    fn invalid_json_is_refused_whole() {
        assert!(RawJson::parse(r#"{"a": [1, 2}"#).is_err());
        assert!(RawJson::parse("").is_err());
        assert!(RawJson::parse("[1] 2").is_err());
        // As deep as parsing accepts, no deeper: what is kept as text can
        // always be parsed whole later.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for n in [1, 127, 128, 129, 300] {
            let text = deep(n);
            let parsed = serde_json::from_str::<J>(&text).is_ok();
            assert_eq!(RawJson::parse(text).is_ok(), parsed, "{n} levels");
        }
        assert!(RawJson::parse(deep(300)).is_err());
        let strings = format!(r#"{{"a": "[[[[{{\"", "b": [{}]}}"#, "1");
        assert_eq!(nesting(&strings), 2, "{strings}");
    }

    #[test]
    fn templates_read_it_as_they_read_parsed_json() {
        let text =
            r#"{"items": [{"id": 1, "sev": "high"}, {"id": 2, "sev": "low"}], "t": true, "e": [], "s": "a\u00e9"}"#;
        let raw = RawJson::parse(text).expect("present");
        let parsed: J = serde_json::from_str(text).expect("present");
        let parser = crate::TemplateParser::new();
        for source in [
            "{{ doc.items | size }} {{ doc.items[1].sev }} {{ doc.items.size }}",
            "{{ doc.items | map: 'id' | sum }}",
            "{% for i in doc.items %}{{ i.id }}:{{ i.sev | upcase }};{% endfor %}",
            "{% if doc.t %}yes{% endif %}{% if doc.e == empty %}empty{% endif %}{{ doc.missing.deeper }}",
            "{{ doc.s }} {{ doc.items[0].sev }} {{ doc.items[-1].id | plus: 1 }}",
            "{{ doc.items | first | to_json }} {{ doc.items | jsonpath: '$[*].id' | join: ',' }}",
        ] {
            let template = parser.parse(source).expect("present");
            let b = template.render(&Doc(Json::view(&parsed))).expect("present");
            let c = template.render(&Doc(&raw)).expect("present");
            assert_eq!(c, b, "{source}");
        }
    }

    #[test]
    fn views_test_and_compare_as_liquids_own_values() {
        let text = r#"{"a": 1, "n": null, "list": [null], "o": {"a": null}, "p": {"b": 1}}"#;
        let raw = RawJson::parse(text).expect("json");
        let parsed: J = serde_json::from_str(text).expect("json");
        let parser = crate::TemplateParser::new();
        for (source, expected) in [
            ("{% if doc contains 'a' %}y{% else %}n{% endif %}", "y"),
            ("{% if doc contains 'missing' %}y{% else %}n{% endif %}", "n"),
            ("{% if doc.o == doc.p %}same{% else %}differ{% endif %}", "differ"),
            (
                "{% if doc.n == empty %}e{% endif %}{{ doc.n.deeper }}|{{ doc.missing.deeper }}|",
                "e||",
            ),
            ("{{ doc.list.size }} {{ doc.list[5] }}|{{ doc.o.size }}", "1 |1"),
        ] {
            let template = parser.parse(source).expect("parse");
            let owned = {
                let mut globals = liquid_core::Object::new();
                globals.insert("doc".into(), to_liquid(&parsed));
                template.render(&globals).expect("render")
            };
            assert_eq!(owned, expected, "{source} (owned)");
            assert_eq!(
                template.render(&Doc(&raw)).expect("render"),
                expected,
                "{source} (text)"
            );
            assert_eq!(
                template.render(&Doc(Json::view(&parsed))).expect("render"),
                expected,
                "{source} (view)"
            );
        }
    }

    #[test]
    fn a_member_is_added_to_the_text_as_to_the_parsed_value() {
        let raw = RawJson::parse(r#"{"a": 1, "k": 0}"#).expect("json");
        let added = raw.with_member("k", &json!(true)).expect("added");
        assert_eq!(added.to_json(), json!({"a": 1, "k": true}));
        let keys: Vec<_> = ObjectView::keys(&added).map(|k| k.to_string()).collect();
        assert_eq!(keys, ["a", "k"]);
        let empty = RawJson::parse("{ }").expect("json");
        assert_eq!(
            empty.with_member("m", &json!(1)).expect("added").to_json(),
            json!({"m": 1})
        );
        let list = RawJson::parse("[1, 2]").expect("json");
        assert_eq!(
            list.with_member("m", &json!(false)).expect("added").to_json(),
            json!({"value": [1, 2], "m": false})
        );
    }

    /// A root object holding a value as `doc`, read in place.
    struct Doc<'a>(&'a dyn ValueView);
    impl fmt::Debug for Doc<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Doc")
        }
    }
    impl liquid_core::ObjectView for Doc<'_> {
        fn as_value(&self) -> &dyn ValueView {
            self
        }
        fn size(&self) -> i64 {
            1
        }
        fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
            Box::new(std::iter::once(KStringCow::from_static("doc")))
        }
        fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
            Box::new(std::iter::once(self.0))
        }
        fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
            Box::new(std::iter::once((KStringCow::from_static("doc"), self.0)))
        }
        fn contains_key(&self, index: &str) -> bool {
            index == "doc"
        }
        fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
            (index == "doc").then_some(self.0)
        }
    }
    impl ValueView for Doc<'_> {
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
}
