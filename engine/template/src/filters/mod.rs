//! The Tines filters, registered by name and arity so that templates using
//! them parse and check, and evaluated by plain functions over liquid values.
//!
//! This file is the registry (`TINES_FILTERS`) and the helpers every filter
//! shares; the implementations live one file per concern:
//! `encoding` (base64, HTML), `digest` (hashes, HMAC), `data` (JSON, paths,
//! arrays, CSV), `text` (regex, case, plurals, transliteration), `net`
//! (`in_cidr`), `jwt`, `email` (`eml_parse`) and `date` (which replaces the
//! standard `date`: the parser registers Tines filters after the standard
//! library, so the same name wins).
//!
//! Conventions: nil input gives nil (or an empty list where a list is
//! expected), as Liquid does; a value of the wrong type is an error that names
//! the filter (`sha256: expected text, got an array`).

pub mod data;
mod date;
mod digest;
mod email;
mod encoding;

pub use encoding::decode_base64;
mod jwt;
mod math;
mod net;
mod text;

use std::collections::BTreeMap;
use std::fmt;

use liquid_core::model::{ArrayView, ObjectView, ScalarCow};
use liquid_core::parser::{FilterArguments, ParameterReflection};
use liquid_core::{Error, Expression, Filter, FilterReflection, ParseFilter, Result, Runtime, Value, ValueView};
use serde_json::Value as J;

pub use data::normalize_jsonpath;
pub use date::with_now;
pub use digest::{hmac_sha1_hex, hmac_sha256_hex};
pub use encoding::html_escape_text;
pub use text::ruby_regex;

type Eval = fn(&dyn ValueView, &[Value]) -> Result<Value>;

/// A Tines filter: its name, how many positional arguments it takes, and what it does.
pub struct FilterSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub params: &'static [ParameterReflection],
    pub min_args: usize,
    eval: Eval,
}

macro_rules! param {
    ($name:literal, $desc:literal) => {
        ParameterReflection {
            name: $name,
            description: $desc,
            is_optional: false,
        }
    };
    ($name:literal, $desc:literal, optional) => {
        ParameterReflection {
            name: $name,
            description: $desc,
            is_optional: true,
        }
    };
}

const fn spec(
    name: &'static str,
    description: &'static str,
    params: &'static [ParameterReflection],
    min_args: usize,
    eval: Eval,
) -> FilterSpec {
    FilterSpec {
        name,
        description,
        params,
        min_args,
        eval,
    }
}

fn identity(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    Ok(input.to_value())
}

const NONE: &[ParameterReflection] = &[];
const KEY: &[ParameterReflection] = &[
    param!("key", "the secret key"),
    param!(
        "encoding",
        "how the key is written: text (default), base64 or hex",
        optional
    ),
];

/// Every Tines filter beyond standard Liquid (SPEC §3 and Tines' own list),
/// plus `date`, which replaces the standard one.
/// `first`/`last` as Tines (Ruby) has them: nil for nil or an empty list,
/// where the Liquid library fails with "Invalid input".
fn first(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    edge(input, true)
}

fn last(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    edge(input, false)
}

/// `join` as Shopify/Tines: nil joins to empty text and a single value to
/// itself, where the Liquid library fails with "Invalid input".
fn join(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let separator = match args.first() {
        Some(v) if !v.is_nil() => v.to_kstr().to_string(),
        _ => " ".to_owned(),
    };
    Ok(Value::scalar(match kind(input) {
        Kind::Nil => String::new(),
        Kind::Array(a) => a
            .values()
            .map(|v| v.to_kstr().into_owned())
            .collect::<Vec<_>>()
            .join(&separator),
        Kind::Scalar(s) => s.into_cow_str().into_owned(),
        Kind::Object(_) => input.to_kstr().to_string(),
    }))
}

fn edge(input: &dyn ValueView, first: bool) -> Result<Value> {
    Ok(match kind(input) {
        Kind::Array(a) => {
            let item = if first { a.first() } else { a.last() };
            item.map_or(Value::Nil, |v| v.to_value())
        }
        Kind::Scalar(s) => {
            let text = s.into_cow_str();
            let c = if first {
                text.chars().next()
            } else {
                text.chars().last()
            };
            c.map_or(Value::Nil, |c| Value::scalar(c.to_string()))
        }
        Kind::Nil | Kind::Object(_) => Value::Nil,
    })
}

pub static TINES_FILTERS: &[FilterSpec] = &[
    spec(
        "plus",
        "adds a number (a non-number counts as 0, as Ruby Liquid)",
        &[param!("operand", "the number to add")],
        1,
        math::plus,
    ),
    spec(
        "minus",
        "subtracts a number (a non-number counts as 0)",
        &[param!("operand", "the number to subtract")],
        1,
        math::minus,
    ),
    spec(
        "times",
        "multiplies by a number (a non-number counts as 0)",
        &[param!("operand", "the factor")],
        1,
        math::times,
    ),
    spec(
        "divided_by",
        "divides by a number: whole numbers floor, as Ruby Liquid; by 0 is an error",
        &[param!("operand", "the divisor")],
        1,
        math::divided_by,
    ),
    spec(
        "modulo",
        "the remainder, with the divisor's sign (Ruby)",
        &[param!("operand", "the divisor")],
        1,
        math::modulo,
    ),
    spec(
        "join",
        "joins a list's elements with a separator (default a space); nil joins to empty text",
        &[param!("separator", "put between elements", optional)],
        0,
        join,
    ),
    spec(
        "first",
        "the first element of a list (nil when there is none)",
        NONE,
        0,
        first,
    ),
    spec(
        "last",
        "the last element of a list (nil when there is none)",
        NONE,
        0,
        last,
    ),
    spec(
        "as_object",
        "keeps the JSON type of the value instead of rendering it as text",
        NONE,
        0,
        identity,
    ),
    spec(
        "date",
        "formats a date (\"now\", unix seconds, ISO 8601, RFC 2822…) with strftime",
        &[param!("format", "strftime format such as %Y-%m-%d")],
        1,
        date::date,
    ),
    spec(
        "regex_replace",
        "replaces every match of a regex",
        &[
            param!("pattern", "regex"),
            param!("replacement", "text, may use \\1 (default: nothing)", optional),
            param!("flags", "i, m, x", optional),
        ],
        1,
        text::regex_replace,
    ),
    spec(
        "jsonpath",
        "selects values with a JSONPath expression",
        &[param!("path", "JSONPath such as $.items[*].id")],
        1,
        data::jsonpath,
    ),
    spec("json_parse", "parses JSON text into a value", NONE, 0, data::json_parse),
    spec(
        "sum",
        "adds the numbers of an array, or one property of its objects",
        &[param!("property", "the property to add", optional)],
        0,
        data::sum,
    ),
    spec("base64_decode", "decodes base64", NONE, 0, encoding::base64_decode),
    spec("base64_encode", "encodes as base64", NONE, 0, encoding::base64_encode),
    spec(
        "base64url_encode",
        "encodes as URL-safe base64",
        NONE,
        0,
        encoding::base64url_encode,
    ),
    spec(
        "base64url_decode",
        "decodes URL-safe base64",
        NONE,
        0,
        encoding::base64url_decode,
    ),
    spec(
        "to_json",
        "renders a value as compact JSON",
        NONE,
        0,
        data::to_json_filter,
    ),
    spec(
        "neat_json",
        "renders a value as indented JSON",
        NONE,
        0,
        data::neat_json,
    ),
    spec("sha256", "hex SHA-256 digest", NONE, 0, digest::sha256),
    spec("sha1", "hex SHA-1 digest", NONE, 0, digest::sha1),
    spec("sha512", "hex SHA-512 digest", NONE, 0, digest::sha512),
    spec("md5", "hex MD5 digest", NONE, 0, digest::md5),
    spec("md5_base64", "base64 MD5 digest", NONE, 0, digest::md5_base64),
    spec("hmac_sha256", "hex HMAC-SHA256", KEY, 1, digest::hmac_sha256),
    spec(
        "hmac_sha256_base64",
        "base64 HMAC-SHA256",
        KEY,
        1,
        digest::hmac_sha256_base64,
    ),
    spec("hmac_sha1", "hex HMAC-SHA1", KEY, 1, digest::hmac_sha1),
    spec(
        "bytesize",
        "the length of a text in UTF-8 bytes",
        NONE,
        0,
        digest::bytesize,
    ),
    spec(
        "get",
        "reads a key or a dotted path",
        &[param!("path", "key or a.b.c")],
        1,
        data::get,
    ),
    spec(
        "in_cidr",
        "whether an IP address is inside a CIDR range",
        &[param!("cidr", "such as 10.0.0.0/8, or a list of ranges")],
        1,
        net::in_cidr,
    ),
    spec(
        "csv_parse",
        "parses CSV text into rows",
        &[param!("headers", "true: rows become objects", optional)],
        0,
        data::csv_parse,
    ),
    spec("to_csv", "renders rows as CSV", NONE, 0, data::to_csv),
    spec(
        "to_snake_case",
        "converts text to snake_case",
        NONE,
        0,
        text::to_snake_case,
    ),
    spec(
        "type",
        "the type of the value (String, Integer, Array…)",
        NONE,
        0,
        data::type_of,
    ),
    spec(
        "zip",
        "pairs up the elements of arrays",
        &[
            param!("other", "an array"),
            param!("more", "more arrays", optional),
            param!("more", "more arrays", optional),
            param!("more", "more arrays", optional),
        ],
        1,
        data::zip,
    ),
    spec("unzip", "the inverse of zip", NONE, 0, data::unzip),
    spec(
        "map",
        "the value of a property (or a dotted path) of each element",
        &[param!("property", "a key, or a path such as `lookup.body.domain`")],
        1,
        data::map,
    ),
    spec(
        "force_array",
        "a list stays itself, nil is [], another value a one-element list",
        NONE,
        0,
        data::force_array,
    ),
    spec(
        "push",
        "the list with one more element at its end",
        &[param!("element", "the value to add")],
        1,
        data::push,
    ),
    spec(
        "set_key",
        "the object with a key set",
        &[param!("key", "the key"), param!("value", "its value")],
        2,
        data::set_key,
    ),
    spec(
        "merge",
        "the object with another object's keys added (the other wins)",
        &[param!("other", "an object")],
        1,
        data::merge,
    ),
    spec(
        "jwt_sign",
        "signs a JSON Web Token",
        &[
            param!("key", "private key or secret"),
            param!("algorithm", "RS256 (default) or HS256", optional),
            param!("headers", "extra header fields", optional),
        ],
        1,
        jwt::jwt_sign,
    ),
    spec("html_encode", "escapes HTML entities", NONE, 0, encoding::html_encode),
    spec("html_decode", "unescapes HTML entities", NONE, 0, encoding::html_decode),
    spec(
        "random_element",
        "a random element of an array",
        NONE,
        0,
        data::random_element,
    ),
    spec(
        "pluralize",
        "the singular or plural of a word, by a count (`{{ count | pluralize: 'item' }}`)",
        &[
            param!("word", "the singular word; the input is the count", optional),
            param!("plural", "the plural form", optional),
        ],
        0,
        text::pluralize,
    ),
    spec("eml_parse", "parses an RFC 822 message", NONE, 0, email::eml_parse),
    spec(
        "transliterate",
        "replaces non-ASCII letters by ASCII ones",
        NONE,
        0,
        text::transliterate,
    ),
];

/// Every filter name templates may use: the Liquid standard library and Tines'.
pub fn all_filter_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = STDLIB_FILTERS.to_vec();
    names.extend(TINES_FILTERS.iter().map(|f| f.name));
    names.sort_unstable();
    names.dedup();
    names
}

/// The standard Liquid filters the `liquid` crate provides.
pub const STDLIB_FILTERS: &[&str] = &[
    "abs",
    "append",
    "at_least",
    "at_most",
    "capitalize",
    "ceil",
    "compact",
    "concat",
    "date",
    "default",
    "divided_by",
    "downcase",
    "escape",
    "escape_once",
    "first",
    "floor",
    "join",
    "last",
    "lstrip",
    "map",
    "minus",
    "modulo",
    "newline_to_br",
    "plus",
    "prepend",
    "remove",
    "remove_first",
    "replace",
    "replace_first",
    "reverse",
    "round",
    "rstrip",
    "size",
    "slice",
    "sort",
    "sort_natural",
    "split",
    "strip",
    "strip_html",
    "strip_newlines",
    "times",
    "truncate",
    "truncatewords",
    "uniq",
    "upcase",
    "url_decode",
    "url_encode",
    "where",
];

/// Registers a [`FilterSpec`] with the liquid parser.
#[derive(Clone, Copy)]
pub(crate) struct TinesFilter(pub(crate) &'static FilterSpec);

impl FilterReflection for TinesFilter {
    fn name(&self) -> &str {
        self.0.name
    }
    fn description(&self) -> &str {
        self.0.description
    }
    fn positional_parameters(&self) -> &'static [ParameterReflection] {
        self.0.params
    }
    fn keyword_parameters(&self) -> &'static [ParameterReflection] {
        &[]
    }
}

impl ParseFilter for TinesFilter {
    fn parse(&self, mut arguments: FilterArguments) -> Result<Box<dyn Filter>> {
        let spec = self.0;
        if let Some((key, _)) = arguments.keyword.next() {
            return Err(Error::with_msg(format!(
                "filter `{}` takes no keyword argument `{key}`",
                spec.name
            )));
        }
        let args: Vec<Expression> = arguments.positional.collect();
        if args.len() < spec.min_args || args.len() > spec.params.len() {
            let expected = if spec.min_args == spec.params.len() {
                format!("{}", spec.min_args)
            } else {
                format!("{} to {}", spec.min_args, spec.params.len())
            };
            return Err(Error::with_msg(format!(
                "filter `{}` takes {expected} argument(s), given {}",
                spec.name,
                args.len()
            )));
        }
        Ok(Box::new(TinesFilterCall { spec, args }))
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self
    }
}

struct TinesFilterCall {
    spec: &'static FilterSpec,
    args: Vec<Expression>,
}

impl fmt::Debug for TinesFilterCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TinesFilterCall")
            .field("name", &self.spec.name)
            .finish()
    }
}

impl fmt::Display for TinesFilterCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec.name)?;
        for (i, a) in self.args.iter().enumerate() {
            write!(f, "{}{a}", if i == 0 { ": " } else { ", " })?;
        }
        Ok(())
    }
}

impl Filter for TinesFilterCall {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let args = self
            .args
            .iter()
            .map(|a| a.evaluate(runtime).map(|v| v.into_owned()))
            .collect::<Result<Vec<_>>>()?;
        (self.spec.eval)(input, &args)
    }
}

/// `tale_typed_value`: renders its input as JSON, so that the runtime can keep
/// the type of a whole-field `| as_object` template. Not for stories (the
/// checker does not list it).
#[derive(Clone, Copy)]
pub(crate) struct TypedValue;

impl FilterReflection for TypedValue {
    fn name(&self) -> &str {
        "tale_typed_value"
    }
    fn description(&self) -> &str {
        "internal"
    }
    fn positional_parameters(&self) -> &'static [ParameterReflection] {
        &[]
    }
    fn keyword_parameters(&self) -> &'static [ParameterReflection] {
        &[]
    }
}

impl ParseFilter for TypedValue {
    fn parse(&self, _arguments: FilterArguments) -> Result<Box<dyn Filter>> {
        Ok(Box::new(TypedValueCall))
    }
    fn reflection(&self) -> &dyn FilterReflection {
        self
    }
}

#[derive(Debug)]
struct TypedValueCall;

impl fmt::Display for TypedValueCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tale_typed_value")
    }
}

impl Filter for TypedValueCall {
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> Result<Value> {
        Ok(Value::scalar(crate::value::to_json(input).to_string()))
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the implementations.

/// A Liquid value as JSON. Strings, dates and other scalars without a JSON
/// counterpart become text; object keys come out sorted, so the output does
/// not depend on the map a value came from.
pub fn to_json(value: &dyn ValueView) -> J {
    match kind(value) {
        Kind::Nil => J::Null,
        Kind::Array(a) => J::Array(a.values().map(to_json).collect()),
        Kind::Object(o) => {
            let sorted: BTreeMap<String, J> = o.iter().map(|(k, v)| (k.as_str().to_owned(), to_json(v))).collect();
            J::Object(sorted.into_iter().collect())
        }
        Kind::Scalar(s) => scalar_to_json(s),
    }
}

fn scalar_to_json(s: ScalarCow<'_>) -> J {
    match s.type_name() {
        "boolean" => J::Bool(s.to_bool().unwrap_or(false)),
        "whole number" => s.to_integer().map_or(J::Null, J::from),
        "fractional number" => s
            .to_float()
            .and_then(serde_json::Number::from_f64)
            .map_or(J::Null, J::Number),
        _ => J::String(s.into_cow_str().into_owned()),
    }
}

/// JSON as an owned Liquid value. Integers that do not fit an `i64` become
/// floats.
pub fn from_json(value: J) -> Value {
    crate::value::to_liquid(&value)
}

/// What a value is, checked in the order that matters: the runtime's view of
/// JSON null also answers `as_object` (every key of null is nil), so nil must
/// be tested first.
pub(crate) enum Kind<'a> {
    Nil,
    Scalar(ScalarCow<'a>),
    Array(&'a dyn ArrayView),
    Object(&'a dyn ObjectView),
}

pub(crate) fn kind(value: &dyn ValueView) -> Kind<'_> {
    if value.is_nil() || value.is_state() {
        Kind::Nil
    } else if let Some(a) = value.as_array() {
        Kind::Array(a)
    } else if let Some(o) = value.as_object() {
        Kind::Object(o)
    } else if let Some(s) = value.as_scalar() {
        Kind::Scalar(s)
    } else {
        Kind::Nil
    }
}

/// A user-facing name for the type of a value, for error messages.
pub(crate) fn type_label(value: &dyn ValueView) -> &'static str {
    match kind(value) {
        Kind::Nil => "nil",
        Kind::Array(_) => "an array",
        Kind::Object(_) => "an object",
        Kind::Scalar(s) => match s.type_name() {
            "whole number" | "fractional number" => "a number",
            "boolean" => "a boolean",
            "string" => "text",
            _ => "a date",
        },
    }
}

/// An error that names the filter.
pub(crate) fn fail(filter: &str, message: impl fmt::Display) -> Error {
    Error::with_msg(format!("{filter}: {message}"))
}

/// The input as text: nil is `None`, a scalar is its text (numbers and
/// booleans as Liquid renders them), an array or an object is an error.
pub(crate) fn input_text(filter: &str, input: &dyn ValueView) -> Result<Option<String>> {
    match kind(input) {
        Kind::Nil => Ok(None),
        Kind::Scalar(s) => Ok(Some(s.into_cow_str().into_owned())),
        _ => Err(fail(filter, format!("expected text, got {}", type_label(input)))),
    }
}

/// Positional argument `i` as text, with the same rules as [`input_text`].
pub(crate) fn arg_text(filter: &str, args: &[Value], i: usize, name: &str) -> Result<Option<String>> {
    let Some(arg) = args.get(i) else {
        return Ok(None);
    };
    match kind(arg) {
        Kind::Nil => Ok(None),
        Kind::Scalar(s) => Ok(Some(s.into_cow_str().into_owned())),
        _ => Err(fail(
            filter,
            format!("the {name} must be text, got {}", type_label(arg)),
        )),
    }
}

/// Whether a value is true the way Liquid sees it (nil and false are not).
pub(crate) fn truthy(value: &dyn ValueView) -> bool {
    value.query_state(liquid_core::model::State::Truthy)
}

#[doc(hidden)]
pub mod testing {
    //! Rendering real templates through the parser every story uses (for
    //! tests here and in the layers above).

    use liquid_core::Value;

    use crate::TemplateParser;

    /// Renders `template` with `data` (a JSON object) as the globals.
    pub fn render(template: &str, data: serde_json::Value) -> Result<String, String> {
        let parser = TemplateParser::new();
        let parsed = parser.parse(template).map_err(|e| e.message)?;
        let globals = match super::from_json(data) {
            Value::Object(o) => o,
            _ => liquid_core::Object::new(),
        };
        parsed.render(&globals).map_err(|e| e.to_string())
    }

    /// Renders and expects success.
    pub fn ok(template: &str, data: serde_json::Value) -> String {
        render(template, data).unwrap_or_else(|e| panic!("`{template}` failed: {e}"))
    }

    /// Renders and expects an error containing `needle`.
    pub fn fails(template: &str, data: serde_json::Value, needle: &str) {
        match render(template, data) {
            Ok(out) => panic!("`{template}` rendered {out:?}, expected an error with {needle:?}"),
            Err(e) => assert!(
                e.contains(needle),
                "`{template}`: error {e:?} does not contain {needle:?}"
            ),
        }
    }

    /// Checks a table of `(template, expected output)` against the same data.
    pub fn table(data: serde_json::Value, cases: &[(&str, &str)]) {
        for (template, expected) in cases {
            assert_eq!(ok(template, data.clone()), *expected, "template `{template}`");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testing::{ok, table};
    use super::*;
    use crate::TemplateParser;

    #[test]
    fn json_round_trip_keeps_types() {
        let data = json!({"s": "x", "i": 3, "f": 1.5, "b": true, "n": null, "a": [1, "2"], "o": {"k": [null]}});
        assert_eq!(to_json(&from_json(data.clone())), data);
    }

    #[test]
    fn join_takes_nil_and_single_values_as_ruby_does() {
        table(
            json!({"tags": ["a", "b"], "none": null, "one": "solo", "nums": [1, 2.5]}),
            &[
                ("{{ tags | join: ';' }}", "a;b"),
                ("{{ tags | join }}", "a b"),
                ("[{{ none | join: ';' }}]", "[]"),
                ("{{ one | join: ';' }}", "solo"),
                ("{{ nums | join: ', ' }}", "1, 2.5"),
            ],
        );
    }

    #[test]
    fn big_integers_become_floats() {
        let v = from_json(json!(18446744073709551615u64));
        assert_eq!(to_json(&v), json!(18446744073709551615.0));
    }

    #[test]
    fn every_tines_filter_is_registered_once() {
        let mut names: Vec<&str> = TINES_FILTERS.iter().map(|f| f.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        for name in ["date", "zip", "eml_parse", "jwt_sign"] {
            assert!(all_filter_names().contains(&name), "{name}");
        }
    }

    #[test]
    fn as_object_is_identity() {
        table(
            json!({"o": {"a": [1, 2]}}),
            &[("{{ o | as_object | to_json }}", r#"{"a":[1,2]}"#)],
        );
    }

    #[test]
    fn arity_is_checked_at_parse_time() {
        let parser = TemplateParser::new();
        let Err(e) = parser.parse("{{ 'a' | sha256: 'x' }}") else {
            panic!("sha256 takes no argument");
        };
        assert!(e.message.contains("argument"), "{}", e.message);
        assert!(parser.parse("{{ 'a' | hmac_sha256 }}").is_err());
        assert!(parser.parse("{{ 'a' | date }}").is_err());
        assert_eq!(ok("{{ 'a' | as_object }}", json!({})), "a");
    }
}
