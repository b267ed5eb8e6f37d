//! A zero-copy view of stored JSON as Liquid values: templates read action
//! outputs in place, without converting whole outputs for every render.
//! A missing key reads as nil (Tines renders a missing path as empty).

use std::fmt;

use liquid_core::model::{ArrayView, DisplayCow, KStringCow, ObjectView, ScalarCow, State, Value, ValueView};
use ref_cast::RefCast;
use serde_json::Value as J;

/// A JSON value seen as a Liquid value.
#[derive(Debug, RefCast)]
#[repr(transparent)]
pub struct Json(pub J);

/// What a missing key or index reads as.
pub static NIL: Json = Json(J::Null);

impl Json {
    pub fn view(value: &J) -> &Json {
        Json::ref_cast(value)
    }

    fn scalar(&self) -> Option<ScalarCow<'_>> {
        match &self.0 {
            J::String(s) => Some(ScalarCow::new(s.as_str())),
            J::Bool(b) => Some(ScalarCow::new(*b)),
            J::Number(n) => Some(match n.as_i64() {
                Some(i) => ScalarCow::new(i),
                None => ScalarCow::new(n.as_f64().unwrap_or(f64::NAN)),
            }),
            _ => None,
        }
    }
}

/// How a value renders into text: strings as they are, null as nothing,
/// arrays and objects as compact JSON (what an API payload wants).
pub fn render_json(value: &J, out: &mut String) {
    match value {
        J::Null => {}
        J::String(s) => out.push_str(s),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => out.push_str(&n.to_string()),
        other => out.push_str(&other.to_string()),
    }
}

/// How Liquid writes a value into a template's text, as it writes its own
/// values: a list as its elements one after the other, an object as its
/// keys and values (in the document's order), numbers as Liquid's scalars
/// (`1.0` as `1`). A borrowed view and the owned copy render the same.
pub fn liquid_text(value: &J, out: &mut String) {
    match value {
        J::Null => {}
        J::String(s) => out.push_str(s),
        J::Array(a) => a.iter().for_each(|v| liquid_text(v, out)),
        J::Object(o) => o.iter().for_each(|(k, v)| {
            out.push_str(k);
            liquid_text(v, out);
        }),
        scalar => {
            if let Some(s) = Json::view(scalar).scalar() {
                out.push_str(&s.to_kstr());
            }
        }
    }
}

struct Rendered(String);

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ValueView for Json {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        match &self.0 {
            J::String(s) => DisplayCow::Borrowed(s),
            other => {
                let mut s = String::new();
                liquid_text(other, &mut s);
                DisplayCow::Owned(Box::new(Rendered(s)))
            }
        }
    }

    fn source(&self) -> DisplayCow<'_> {
        DisplayCow::Owned(Box::new(self.0.to_string()))
    }

    fn type_name(&self) -> &'static str {
        match &self.0 {
            J::Null => "nil",
            J::Bool(_) => "boolean",
            J::Number(n) if n.is_i64() => "whole number",
            J::Number(_) => "fractional number",
            J::String(_) => "string",
            J::Array(_) => "array",
            J::Object(_) => "object",
        }
    }

    fn query_state(&self, state: State) -> bool {
        match &self.0 {
            J::Null => !matches!(state, State::Truthy),
            J::Array(a) => match state {
                State::Truthy => true,
                _ => a.is_empty(),
            },
            J::Object(o) => match state {
                State::Truthy => true,
                _ => o.is_empty(),
            },
            _ => self.scalar().is_some_and(|s| s.query_state(state)),
        }
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        match &self.0 {
            J::String(s) => KStringCow::from_ref(s),
            other => {
                let mut s = String::new();
                liquid_text(other, &mut s);
                KStringCow::from_string(s)
            }
        }
    }

    fn to_value(&self) -> Value {
        to_liquid(&self.0)
    }

    fn as_scalar(&self) -> Option<ScalarCow<'_>> {
        self.scalar()
    }

    fn as_array(&self) -> Option<&dyn ArrayView> {
        matches!(self.0, J::Array(_)).then_some(self as &dyn ArrayView)
    }

    fn as_object(&self) -> Option<&dyn ObjectView> {
        // As Liquid's own values (null is not an object): a view compares,
        // tests and renders as the copy it replaces. `a.missing.deeper`
        // reads nil through the runtime's lenient lookup.
        matches!(self.0, J::Object(_)).then_some(self as &dyn ObjectView)
    }

    fn is_nil(&self) -> bool {
        self.0.is_null()
    }
}

impl ArrayView for Json {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        self.0.as_array().map_or(0, |a| a.len() as i64)
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match &self.0 {
            J::Array(a) => Box::new(a.iter().map(|v| Json::view(v) as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn contains_key(&self, index: i64) -> bool {
        ArrayView::get(self, index).is_some()
    }

    fn get(&self, index: i64) -> Option<&dyn ValueView> {
        let a = self.0.as_array()?;
        let i = if index < 0 { a.len() as i64 + index } else { index };
        let item = usize::try_from(i).ok().and_then(|i| a.get(i));
        item.map(|v| Json::view(v) as &dyn ValueView)
    }
}

impl ObjectView for Json {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        self.0.as_object().map_or(0, |o| o.len() as i64)
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        match &self.0 {
            J::Object(o) => Box::new(o.keys().map(|k| KStringCow::from_ref(k))),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match &self.0 {
            J::Object(o) => Box::new(o.values().map(|v| Json::view(v) as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        match &self.0 {
            J::Object(o) => Box::new(
                o.iter()
                    .map(|(k, v)| (KStringCow::from_ref(k), Json::view(v) as &dyn ValueView)),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn contains_key(&self, index: &str) -> bool {
        self.0.as_object().is_some_and(|o| o.contains_key(index))
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        // A missing key is missing, as in Liquid's own objects (the runtime
        // reads a missing path as nil; `x.size` falls back to the size).
        self.0
            .as_object()
            .and_then(|o| o.get(index))
            .map(|v| Json::view(v) as &dyn ValueView)
    }
}

/// A JSON value as an owned Liquid value.
pub fn to_liquid(value: &J) -> Value {
    match value {
        J::Null => Value::Nil,
        J::Bool(b) => Value::scalar(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::scalar(i),
            None => Value::scalar(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::scalar(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(to_liquid).collect()),
        J::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone().into(), to_liquid(v))).collect()),
    }
}

/// A Liquid value as JSON (one implementation, shared with the filters:
/// object keys come out sorted, since Liquid's own objects are unordered).
pub fn to_json(value: &dyn ValueView) -> J {
    crate::filters::to_json(value)
}
