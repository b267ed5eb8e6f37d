//! The Tines filters, registered by name and arity so that templates using
//! them parse and check. Each filter's evaluation is a plain function over
//! liquid values; the runtime issue fills in the ones marked `pending`.

use std::fmt;

use liquid_core::parser::{FilterArguments, ParameterReflection};
use liquid_core::{Error, Expression, Filter, FilterReflection, ParseFilter, Result, Runtime, Value, ValueView};

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

fn pending(_: &dyn ValueView, _: &[Value]) -> Result<Value> {
    Err(Error::with_msg(
        "this filter is evaluated by the runtime, which is not available in `check`",
    ))
}

fn identity(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    Ok(input.to_value())
}

const NONE: &[ParameterReflection] = &[];
const KEY: &[ParameterReflection] = &[param!("key", "the secret key")];

/// Every Tines filter beyond standard Liquid (SPEC §3 and Tines' own list).
pub static TINES_FILTERS: &[FilterSpec] = &[
    spec(
        "as_object",
        "keeps the JSON type of the value instead of rendering it as text",
        NONE,
        0,
        identity,
    ),
    spec(
        "regex_replace",
        "replaces every match of a regex",
        &[
            param!("pattern", "regex"),
            param!("replacement", "text, may use \\1"),
            param!("flags", "i, m, x", optional),
        ],
        2,
        pending,
    ),
    spec(
        "jsonpath",
        "selects values with a JSONPath expression",
        &[param!("path", "JSONPath such as $.items[*].id")],
        1,
        pending,
    ),
    spec("json_parse", "parses JSON text into a value", NONE, 0, pending),
    spec("base64_decode", "decodes base64", NONE, 0, pending),
    spec("base64_encode", "encodes as base64", NONE, 0, pending),
    spec("base64url_encode", "encodes as URL-safe base64", NONE, 0, pending),
    spec("base64url_decode", "decodes URL-safe base64", NONE, 0, pending),
    spec("to_json", "renders a value as compact JSON", NONE, 0, pending),
    spec("neat_json", "renders a value as indented JSON", NONE, 0, pending),
    spec("sha256", "hex SHA-256 digest", NONE, 0, pending),
    spec("sha1", "hex SHA-1 digest", NONE, 0, pending),
    spec("sha512", "hex SHA-512 digest", NONE, 0, pending),
    spec("md5", "hex MD5 digest", NONE, 0, pending),
    spec("md5_base64", "base64 MD5 digest", NONE, 0, pending),
    spec("hmac_sha256", "hex HMAC-SHA256", KEY, 1, pending),
    spec("hmac_sha256_base64", "base64 HMAC-SHA256", KEY, 1, pending),
    spec("hmac_sha1", "hex HMAC-SHA1", KEY, 1, pending),
    spec(
        "get",
        "reads a key or a dotted path",
        &[param!("path", "key or a.b.c")],
        1,
        pending,
    ),
    spec(
        "in_cidr",
        "whether an IP address is inside a CIDR range",
        &[param!("cidr", "such as 10.0.0.0/8")],
        1,
        pending,
    ),
    spec(
        "csv_parse",
        "parses CSV text into rows",
        &[param!("headers", "true: rows become objects", optional)],
        0,
        pending,
    ),
    spec("to_csv", "renders rows as CSV", NONE, 0, pending),
    spec("to_snake_case", "converts text to snake_case", NONE, 0, pending),
    spec("type", "the JSON type of the value", NONE, 0, pending),
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
        pending,
    ),
    spec("unzip", "the inverse of zip", NONE, 0, pending),
    spec(
        "jwt_sign",
        "signs a JSON Web Token",
        &[
            param!("key", "private key or secret"),
            param!("algorithm", "RS256 (default) or HS256", optional),
        ],
        1,
        pending,
    ),
    spec("html_encode", "escapes HTML entities", NONE, 0, pending),
    spec("html_decode", "unescapes HTML entities", NONE, 0, pending),
    spec("random_element", "a random element of an array", NONE, 0, pending),
    spec(
        "pluralize",
        "the plural form of a word",
        &[
            param!("count", "pluralize unless 1", optional),
            param!("plural", "the plural form", optional),
        ],
        0,
        pending,
    ),
    spec("eml_parse", "parses an RFC 822 message", NONE, 0, pending),
    spec(
        "transliterate",
        "replaces non-ASCII letters by ASCII ones",
        NONE,
        0,
        pending,
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
        Ok(Value::scalar(crate::runtime::value::to_json(input).to_string()))
    }
}
