//! Typed decoding over the [`Node`] tree.
//!
//! A serde `Deserializer` over our own tree instead of serde-saphyr's, for two
//! reasons: it fills [`Spanned<T>`] anywhere in a type (also inside the
//! action configs chosen by `type`, where serde-saphyr's spans are lost), and it
//! checks struct keys itself so that *every* unknown key is reported, not just
//! the first one serde stops at.

use std::cell::RefCell;
use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, Deserialize, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{Node, NodeKind};
use crate::span::{Span, Spanned};

const SPANNED: &str = "$tale::Spanned";

const SPANNED_FIELDS: &[&str] = &["$start", "$end", "$line", "$col", "$value"];

/// What went wrong while decoding one value.
#[derive(Clone, Debug, PartialEq)]
pub enum DeIssueKind {
    UnknownField {
        field: String,
        expected: &'static [&'static str],
        /// The key sits in the map the decode started at (an action body):
        /// the caller may add the keys it handles itself to `expected`.
        at_root: bool,
    },
    MissingField(&'static str),
    InvalidType {
        expected: String,
        found: String,
    },
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    Invalid(String),
}

/// A decoding problem at a span.
#[derive(Clone, Debug, PartialEq)]
pub struct DeIssue {
    pub span: Span,
    pub kind: DeIssueKind,
    /// Where in the decoded value: `signature`, `pagination.max_pages`,
    /// `matchers[1]` (empty at the top).
    pub path: String,
}

/// Issues found during a decode that did not stop it (unknown keys).
#[derive(Default)]
pub struct DeCx {
    issues: RefCell<Vec<DeIssue>>,
    /// The keys of the struct the decode started at, once it reached one:
    /// an unknown key deeper down that is one of them was indented too far.
    root_fields: std::cell::Cell<Option<&'static [&'static str]>>,
}

impl DeCx {
    pub fn take(&self) -> Vec<DeIssue> {
        std::mem::take(&mut self.issues.borrow_mut())
    }

    /// The keys of the outermost struct decoded (see `root_fields`).
    pub fn root_fields(&self) -> &'static [&'static str] {
        self.root_fields.get().unwrap_or(&[])
    }
}

/// Decodes `node` as `T`. Unknown keys are collected in `cx` and skipped; the
/// first hard error (missing key, wrong type) is returned.
pub fn decode<'de, T: Deserialize<'de>>(node: &Node, cx: &DeCx) -> Result<T, DeIssue> {
    T::deserialize(NodeDe { node, cx, root: true }).map_err(|e| DeIssue {
        span: e.span.unwrap_or(node.span),
        path: e.path_string(),
        kind: e.kind,
    })
}

#[derive(Debug)]
pub struct DeError {
    span: Option<Span>,
    kind: DeIssueKind,
    /// Keys and indexes from the failing value outwards.
    path: Vec<String>,
}

impl DeError {
    fn new(kind: DeIssueKind) -> Self {
        DeError {
            span: None,
            kind,
            path: Vec::new(),
        }
    }
    fn at(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }
    fn within(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }
    fn path_string(&self) -> String {
        let mut out = String::new();
        for segment in self.path.iter().rev() {
            if !out.is_empty() && !segment.starts_with('[') {
                out.push('.');
            }
            out.push_str(segment);
        }
        out
    }
    fn invalid_type(node: &Node, exp: &dyn de::Expected) -> Self {
        DeError {
            span: Some(node.span),
            kind: DeIssueKind::InvalidType {
                expected: exp.to_string(),
                found: describe(node),
            },
            path: Vec::new(),
        }
    }
}

fn describe(node: &Node) -> String {
    match &node.kind {
        // `url: {{ x }}` is YAML for a mapping whose key is a mapping.
        NodeKind::Map(entries) if entries.iter().any(|(k, _)| matches!(k.kind, NodeKind::Map(_))) => {
            "a mapping (a template must be quoted: \"{{ … }}\")".into()
        }
        NodeKind::Str(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        NodeKind::Int(i) => format!("the integer {i}"),
        NodeKind::Bool(b) => format!("the boolean {b}"),
        other => other.type_name().to_owned(),
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(DeIssueKind::Invalid(msg.to_string()))
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(DeIssueKind::InvalidType {
            expected: exp.to_string(),
            found: unexp.to_string(),
        })
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(DeIssueKind::Invalid(format!("invalid value {unexp}, expected {exp}")))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(DeIssueKind::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        })
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(DeIssueKind::UnknownField {
            field: field.to_owned(),
            expected,
            at_root: false,
        })
    }
    fn missing_field(field: &'static str) -> Self {
        DeError::new(DeIssueKind::MissingField(field))
    }
}

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    cx: &'a DeCx,
    root: bool,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node) -> NodeDe<'a> {
        NodeDe {
            node,
            cx: self.cx,
            root: false,
        }
    }

    /// Scalars as text, so that `secret: 12345` is the string "12345".
    fn scalar_text(&self) -> Option<String> {
        match &self.node.kind {
            NodeKind::Str(s) => Some(s.clone()),
            NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) | NodeKind::Bool(_) => self.node.key_text(),
            _ => None,
        }
    }
}

macro_rules! forward_to_any {
    ($($m:ident)*) => { $(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.deserialize_any(v)
        }
    )* };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Null => v.visit_unit(),
            NodeKind::Bool(b) => v.visit_bool(*b),
            NodeKind::Int(i) => v.visit_i64(*i),
            NodeKind::UInt(u) => v.visit_u64(*u),
            NodeKind::Float(f) => v.visit_f64(*f),
            NodeKind::Str(s) => v.visit_str(s),
            NodeKind::Seq(items) => v.visit_seq(SeqDe {
                de: self,
                iter: items.iter(),
                index: 0,
            }),
            NodeKind::Map(entries) => v.visit_map(MapDe {
                de: self,
                iter: entries.iter(),
                fields: None,
                value: None,
                key: None,
                seen: Vec::new(),
            }),
        };
        r.map_err(|e| e.at(self.node.span))
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar_text() {
            Some(s) => v.visit_string(s.to_owned()).map_err(|e: DeError| e.at(self.node.span)),
            None => Err(DeError::invalid_type(self.node, &v)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Seq(_) => self.deserialize_any(v),
            _ => Err(DeError::invalid_type(self.node, &v)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Map(_) => self.deserialize_any(v),
            _ => Err(DeError::invalid_type(self.node, &v)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED {
            return v.visit_map(SpannedDe { de: self, step: 0 });
        }
        if self.root {
            self.cx.root_fields.set(Some(fields));
        }
        match &self.node.kind {
            NodeKind::Map(entries) => v
                .visit_map(MapDe {
                    de: self,
                    iter: entries.iter(),
                    fields: Some(fields),
                    value: None,
                    key: None,
                    seen: Vec::new(),
                })
                .map_err(|e| e.at(self.node.span)),
            _ => Err(DeError::invalid_type(self.node, &v)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Str(s) => v
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.at(self.node.span)),
            _ => Err(DeError::invalid_type(self.node, &v)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }
}

struct SeqDe<'a, I> {
    de: NodeDe<'a>,
    iter: I,
    index: usize,
}

impl<'de, 'a, I: Iterator<Item = &'a Node>> de::SeqAccess<'de> for SeqDe<'a, I> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(node) => {
                let index = self.index;
                self.index += 1;
                seed.deserialize(self.de.child(node))
                    .map(Some)
                    .map_err(|e| e.at(node.span).within(format!("[{index}]")))
            }
            None => Ok(None),
        }
    }
}

struct MapDe<'a, I> {
    de: NodeDe<'a>,
    iter: I,
    /// The struct's keys: others are reported and skipped.
    fields: Option<&'static [&'static str]>,
    value: Option<&'a Node>,
    key: Option<&'a Node>,
    seen: Vec<&'a str>,
}

impl<'de, 'a, I: Iterator<Item = &'a (Node, Node)>> de::MapAccess<'de> for MapDe<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for (key, value) in self.iter.by_ref() {
            if let Some(fields) = self.fields {
                // A repeated key was reported by `duplicate_keys`: the first one counts.
                if let Some(k) = key.as_str() {
                    if self.seen.contains(&k) {
                        continue;
                    }
                    self.seen.push(k);
                }
                let known = key.as_str().is_some_and(|k| fields.contains(&k));
                if !known {
                    self.de.cx.issues.borrow_mut().push(DeIssue {
                        path: String::new(),
                        span: key.span,
                        kind: DeIssueKind::UnknownField {
                            field: key.key_text().unwrap_or_else(|| key.type_name().into()),
                            expected: fields,
                            at_root: self.de.root,
                        },
                    });
                    continue;
                }
            }
            self.value = Some(value);
            self.key = Some(key);
            return seed
                .deserialize(self.de.child(key))
                .map(Some)
                .map_err(|e| e.at(key.span));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value requested before its key"))?;
        let key = self.key.and_then(Node::key_text).unwrap_or_default();
        seed.deserialize(self.de.child(node))
            .map_err(|e| e.at(node.span).within(key))
    }
}

/// Feeds a [`Spanned`] its span fields, then its value.
struct SpannedDe<'a> {
    de: NodeDe<'a>,
    step: usize,
}

impl<'de> de::MapAccess<'de> for SpannedDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match SPANNED_FIELDS.get(self.step) {
            Some(key) => seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let span = self.de.node.span;
        self.step += 1;
        match self.step {
            1 => seed.deserialize((span.start as u64).into_deserializer()),
            2 => seed.deserialize((span.end as u64).into_deserializer()),
            3 => seed.deserialize(u64::from(span.line).into_deserializer()),
            4 => seed.deserialize(u64::from(span.col).into_deserializer()),
            _ => seed.deserialize(self.de),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value with its source span")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut nums = [0u64; 4];
                for n in &mut nums {
                    map.next_key::<&str>()?;
                    *n = map.next_value()?;
                }
                map.next_key::<&str>()?;
                let value = map.next_value()?;
                let span = Span::new(nums[0] as usize, nums[1] as usize, nums[2] as u32, nums[3] as u32);
                Ok(Spanned::new(value, span))
            }
        }
        d.deserialize_struct(SPANNED, SPANNED_FIELDS, V(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Kind(NodeKind);
        impl<'de> Deserialize<'de> for Kind {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct KV;
                impl<'de> Visitor<'de> for KV {
                    type Value = NodeKind;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("any value")
                    }
                    fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
                        Ok(NodeKind::Bool(v))
                    }
                    fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
                        Ok(NodeKind::Int(v))
                    }
                    fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
                        Ok(NodeKind::UInt(v))
                    }
                    fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
                        Ok(NodeKind::Float(v))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
                        Ok(NodeKind::Str(v.to_owned()))
                    }
                    fn visit_unit<E>(self) -> Result<NodeKind, E> {
                        Ok(NodeKind::Null)
                    }
                    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<NodeKind, A::Error> {
                        let mut items = Vec::new();
                        while let Some(n) = s.next_element::<Node>()? {
                            items.push(n);
                        }
                        Ok(NodeKind::Seq(items))
                    }
                    fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<NodeKind, A::Error> {
                        let mut entries = Vec::new();
                        while let Some(k) = m.next_key::<Node>()? {
                            entries.push((k, m.next_value::<Node>()?));
                        }
                        Ok(NodeKind::Map(entries))
                    }
                }
                d.deserialize_any(KV).map(Kind)
            }
        }
        let Spanned { value, span } = Spanned::<Kind>::deserialize(d)?;
        Ok(Node::new(span, value.0))
    }
}

impl schemars::JsonSchema for Node {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Value".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!(true)
    }
}
