//! Structured data: JSON in and out, JSONPath, `get`, `type`, arrays
//! (`zip`, `unzip`, `random_element`) and CSV.

use std::collections::BTreeSet;

use jsonpath_rust::JsonPath;
use liquid_core::model::KString;
use liquid_core::{Object, Result, Value, ValueView};
use serde_json::Value as J;

use super::{Kind, arg_text, fail, from_json, input_text, kind, to_json, truthy, type_label};

// ---------------------------------------------------------------------------
// JSON

/// `json_parse`: JSON text to a value. Nil and blank text give nil; a value
/// that is already structured (or a number, a boolean) is returned as it is.
pub(super) fn json_parse(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let text = match kind(input) {
        Kind::Nil => return Ok(Value::Nil),
        Kind::Scalar(s) if s.type_name() == "string" => s.into_cow_str().into_owned(),
        _ => return Ok(input.to_value()),
    };
    if text.trim().is_empty() {
        return Ok(Value::Nil);
    }
    let parsed: J =
        serde_json::from_str(&text).map_err(|e| fail("json_parse", format!("input is not valid JSON: {e}")))?;
    Ok(from_json(parsed))
}

/// `to_json`: compact JSON (`nil` is `null`, text is quoted).
pub(super) fn to_json_filter(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    Ok(Value::scalar(to_json(input).to_string()))
}

/// `neat_json`: Tines' `neat_json` is Ruby's `JSON.neat_generate` (the
/// neatjson gem) with its defaults: an array or object that fits in 80
/// columns stays on one line, otherwise each element goes on its own line,
/// indented by two spaces; no space after `:` or `,`.
pub(super) fn neat_json(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    Ok(Value::scalar(neat(&to_json(input), "")))
}

const NEAT_WRAP: usize = 80;
const NEAT_INDENT: &str = "  ";

fn neat(value: &J, indent: &str) -> String {
    match value {
        J::Array(items) => {
            let pieces: Vec<String> = items.iter().map(|v| neat(v, "")).collect();
            let one_line = format!("{indent}[{}]", pieces.join(","));
            if one_line.chars().count() <= NEAT_WRAP {
                return one_line;
            }
            let inner = format!("{indent}{NEAT_INDENT}");
            let lines: Vec<String> = items.iter().map(|v| neat(v, &inner)).collect();
            format!("{indent}[\n{}\n{indent}]", lines.join(",\n"))
        }
        J::Object(map) => {
            let pieces: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{}", J::String(k.clone()), neat(v, "")))
                .collect();
            let one_line = format!("{indent}{{{}}}", pieces.join(","));
            if one_line.chars().count() <= NEAT_WRAP {
                return one_line;
            }
            let inner = format!("{indent}{NEAT_INDENT}");
            let lines: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let key = format!("{inner}{}", J::String(k.clone()));
                    let one = format!("{key}:{}", neat(v, ""));
                    if one.chars().count() > NEAT_WRAP && (v.is_array() || v.is_object()) {
                        format!("{key}:{}", neat(v, &inner).trim_start())
                    } else {
                        one
                    }
                })
                .collect();
            format!("{indent}{{\n{}\n{indent}}}", lines.join(",\n"))
        }
        // A float with no fraction is written as an integer, as neatjson does.
        J::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{indent}{}", f as i64),
            _ => format!("{indent}{n}"),
        },
        other => format!("{indent}{other}"),
    }
}

// ---------------------------------------------------------------------------
// JSONPath and `get`

pub use crate::values::normalize_jsonpath;

/// `jsonpath`: the list of matches (an empty list when nothing matches).
/// Text input is parsed as JSON first ("supports escaped and non-escaped
/// JSON", says Tines); nil input gives an empty list.
pub(super) fn jsonpath(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let path = arg_text("jsonpath", args, 0, "path")?.ok_or_else(|| fail("jsonpath", "the path is nil"))?;
    let document = match kind(input) {
        Kind::Nil => return Ok(Value::Array(Vec::new())),
        Kind::Scalar(s) if s.type_name() == "string" => {
            let text = s.into_cow_str().into_owned();
            match serde_json::from_str::<J>(&text) {
                Ok(parsed) => parsed,
                Err(_) => J::String(text),
            }
        }
        _ => to_json(input),
    };
    let normalized = normalize_jsonpath(&path);
    let found = document.query(&normalized).map_err(|e| {
        let full = e.to_string();
        let why = crate::values::pest_message(&full).unwrap_or(full);
        fail("jsonpath", format!("invalid JSONPath `{path}`: {why}"))
    })?;
    Ok(Value::Array(found.into_iter().map(|v| from_json(v.clone())).collect()))
}

/// `get`: the value at a key or a dotted path (`a.b.0.c`, `a.b[0].c`). A key
/// that itself contains dots (`kibana.alert.rule.name`) is tried whole first.
/// A name applied to an array reads it from every element (as `map` does),
/// so `{{ list | where: 'name', 'x' | get: 'id' }}` gives the ids; a number
/// applied to an array is an index (negative from the end). Anything missing
/// gives nil.
pub(super) fn get(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let Some(path) = arg_text("get", args, 0, "path")? else {
        return Ok(Value::Nil);
    };
    if let Kind::Object(o) = kind(input) {
        if let Some(v) = o.get(&path) {
            if !v.is_nil() {
                return Ok(v.to_value());
            }
        }
    }
    let segments = split_path(&path);
    Ok(walk(input, &segments).unwrap_or(Value::Nil))
}

/// `map` as Ruby Liquid (and so Tines) has it: nil maps to `[]`, an object
/// to a one-element list, nested lists are flattened, an element without
/// the property gives nil (the Liquid library fails on nil and drops such
/// elements). Tines also reads a dotted path (`map: 'lookup.body.domain'`,
/// what its implode examples write): a key holding the dots wins.
pub(super) fn map(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let property = arg_text("map", args, 0, "property")?.unwrap_or_default();
    let mut items = Vec::new();
    flatten_into(input, &mut items);
    let segments = split_path(&property);
    Ok(Value::Array(
        items
            .into_iter()
            .map(|item| match kind(item) {
                // A view of JSON reads a missing key as nil: then the path.
                Kind::Object(o) => match o.get(&property).filter(|v| !v.is_nil()) {
                    Some(v) => v.to_value(),
                    None => walk(item, &segments).unwrap_or(Value::Nil),
                },
                _ => Value::Nil,
            })
            .collect(),
    ))
}

/// The elements of nested lists, borrowed: only the property `map` takes
/// of each is copied (a million elements are not converted whole).
fn flatten_into<'v>(value: &'v dyn ValueView, out: &mut Vec<&'v dyn ValueView>) {
    match kind(value) {
        Kind::Nil => {}
        Kind::Array(a) => {
            for v in a.values() {
                flatten_into(v, out);
            }
        }
        _ => out.push(value),
    }
}

/// `a.b[0].c` → `a`, `b`, `0`, `c`.
fn split_path(path: &str) -> Vec<String> {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches(['\'', '"']).to_owned())
        .collect()
}

fn walk(value: &dyn ValueView, segments: &[String]) -> Option<Value> {
    let Some((first, rest)) = segments.split_first() else {
        return Some(value.to_value());
    };
    match kind(value) {
        Kind::Object(o) => walk(o.get(first)?, rest),
        Kind::Array(a) => match first.parse::<i64>() {
            Ok(i) => walk(a.get(i)?, rest),
            Err(_) => Some(Value::Array(
                a.values()
                    .map(|item| walk(item, segments).unwrap_or(Value::Nil))
                    .collect(),
            )),
        },
        _ => None,
    }
}

/// `type`: Tines documents the output as "the class of a specified object,
/// e.g.: String or Array" (Ruby class names), so JSON types map to
/// `String`, `Integer`, `Float`, `TrueClass`, `FalseClass`, `NilClass`,
/// `Array` and `Hash`.
pub(super) fn type_of(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let name = match kind(input) {
        Kind::Nil => "NilClass",
        Kind::Array(_) => "Array",
        Kind::Object(_) => "Hash",
        Kind::Scalar(s) => match s.type_name() {
            "whole number" => "Integer",
            "fractional number" => "Float",
            "boolean" if s.to_bool() == Some(true) => "TrueClass",
            "boolean" => "FalseClass",
            "string" => "String",
            "date" => "Date",
            _ => "Time",
        },
    };
    Ok(Value::scalar(name))
}

// ---------------------------------------------------------------------------
// Arrays

/// The elements of an array argument (nil counts as empty).
fn array_arg(filter: &str, args: &[Value], i: usize) -> Result<Vec<Value>> {
    let Some(arg) = args.get(i) else {
        return Ok(Vec::new());
    };
    match kind(arg) {
        Kind::Nil => Ok(Vec::new()),
        Kind::Array(a) => Ok(a.values().map(|v| v.to_value()).collect()),
        _ => Err(fail(
            filter,
            format!("argument {} must be an array, got {}", i + 1, type_label(arg)),
        )),
    }
}

/// `zip`: Ruby's `Array#zip`: `[1, 2] | zip: [3, 4]` is `[[1, 3], [2, 4]]`;
/// the result has one entry per element of the input, missing partners are
/// nil. (The Tines docs also describe a `zip` that builds a ZIP archive from
/// a file, `{{ file | zip: 'name', 'password' }}`; that form is refused with
/// a clear error rather than misread.)
pub(super) fn zip(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let first = match kind(input) {
        Kind::Nil => return Ok(Value::Nil),
        Kind::Array(a) => a,
        Kind::Scalar(s) if s.type_name() == "string" => {
            return Err(fail(
                "zip",
                "building a ZIP archive from a file is not supported; `zip` pairs up arrays",
            ));
        }
        _ => {
            return Err(fail("zip", format!("expected an array, got {}", type_label(input))));
        }
    };
    let others = (0..args.len())
        .map(|i| array_arg("zip", args, i))
        .collect::<Result<Vec<_>>>()?;
    let rows = first
        .values()
        .enumerate()
        .map(|(i, v)| {
            let mut row = vec![v.to_value()];
            row.extend(others.iter().map(|o| o.get(i).cloned().unwrap_or(Value::Nil)));
            Value::Array(row)
        })
        .collect();
    Ok(Value::Array(rows))
}

// ---------------------------------------------------------------------------
// Building values (Tines' formula functions FORCE_ARRAY, SET_KEY, MERGE and
// list literals have no Liquid filter: `tale import` translates them to these)

/// `force_array`: a list stays itself, nil is `[]`, any other value is a
/// one-element list (Tines' `FORCE_ARRAY`).
pub(super) fn force_array(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    Ok(match kind(input) {
        Kind::Nil => Value::Array(Vec::new()),
        Kind::Array(_) => input.to_value(),
        _ => Value::Array(vec![input.to_value()]),
    })
}

/// `push`: the list with one more element at its end; nil is an empty list,
/// any other value a one-element list. The element is added as it is (a
/// list stays one element, unlike `concat`).
pub(super) fn push(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let mut list = match kind(input) {
        Kind::Nil => Vec::new(),
        Kind::Array(a) => a.values().map(|v| v.to_value()).collect(),
        _ => vec![input.to_value()],
    };
    list.push(args.first().cloned().unwrap_or(Value::Nil));
    Ok(Value::Array(list))
}

/// `set_key`: the object with `key` set to `value` (nil is an empty object;
/// Tines' `SET_KEY`).
pub(super) fn set_key(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let mut object = object_of("set_key", input)?;
    let key = arg_text("set_key", args, 0, "key")?.unwrap_or_default();
    object.insert(KString::from_string(key), args.get(1).cloned().unwrap_or(Value::Nil));
    Ok(Value::Object(object))
}

/// `merge`: the object with the keys of another object added, the other's
/// value winning on a key both have (Tines' `MERGE`; nil on either side is an
/// empty object).
pub(super) fn merge(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let mut object = object_of("merge", input)?;
    if let Some(other) = args.first() {
        for (k, v) in object_of("merge", other)? {
            object.insert(k, v);
        }
    }
    Ok(Value::Object(object))
}

fn object_of(filter: &str, value: &dyn ValueView) -> Result<Object> {
    match kind(value) {
        Kind::Nil => Ok(Object::new()),
        Kind::Object(o) => Ok(o.iter().map(|(k, v)| (k.into(), v.to_value())).collect()),
        _ => Err(fail(filter, format!("expected an object, got {}", type_label(value)))),
    }
}

/// `sum` (Shopify Liquid 5): the sum of an array's numbers, or of one
/// property of its objects (`{{ alerts | sum: 'score' }}`). Nil elements and
/// missing properties count as 0; text that is not a number is an error.
/// Integers stay integers while they fit.
pub(super) fn sum(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let items = match kind(input) {
        Kind::Nil => return Ok(Value::scalar(0i64)),
        Kind::Array(a) => a,
        _ => return Err(fail("sum", format!("expected an array, got {}", type_label(input)))),
    };
    let property = args.first().map(|p| p.to_kstr().into_owned());
    let (mut int, mut float, mut is_float) = (0i64, 0f64, false);
    for item in items.values() {
        let value = match &property {
            Some(p) => match item.as_object().and_then(|o| o.get(p.as_str())) {
                Some(v) => v.to_value(),
                None => continue,
            },
            None => item.to_value(),
        };
        if value.is_nil() {
            continue;
        }
        let Some(scalar) = value.as_scalar() else {
            return Err(fail("sum", format!("cannot add {}", type_label(&value))));
        };
        if let (false, Some(i)) = (is_float, scalar.to_integer()) {
            match int.checked_add(i) {
                Some(n) => int = n,
                None => {
                    is_float = true;
                    float = int as f64 + i as f64;
                }
            }
        } else if let Some(f) = scalar.to_float() {
            if !is_float {
                is_float = true;
                float = int as f64;
            }
            float += f;
        } else {
            return Err(fail("sum", format!("cannot add `{}`: not a number", scalar.to_kstr())));
        }
    }
    Ok(if is_float {
        Value::scalar(float)
    } else {
        Value::scalar(int)
    })
}

/// `unzip`: the inverse of `zip` (a transpose): `[[1, 3], [2, 4]]` gives
/// `[[1, 2], [3, 4]]`. Rows of unequal length are padded with nil.
pub(super) fn unzip(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let rows = match kind(input) {
        Kind::Nil => return Ok(Value::Nil),
        Kind::Array(a) => a,
        _ => {
            return Err(fail(
                "unzip",
                format!("expected an array of arrays, got {}", type_label(input)),
            ));
        }
    };
    let mut table: Vec<Vec<Value>> = Vec::new();
    for row in rows.values() {
        match kind(row) {
            Kind::Array(cells) => table.push(cells.values().map(|c| c.to_value()).collect()),
            _ => {
                return Err(fail(
                    "unzip",
                    format!("expected an array of arrays, found {}", type_label(row)),
                ));
            }
        }
    }
    let width = table.iter().map(Vec::len).max().unwrap_or(0);
    let columns = (0..width)
        .map(|c| {
            Value::Array(
                table
                    .iter()
                    .map(|row| row.get(c).cloned().unwrap_or(Value::Nil))
                    .collect(),
            )
        })
        .collect();
    Ok(Value::Array(columns))
}

/// `random_element`: one element, chosen uniformly; nil for nil or an empty
/// array.
pub(super) fn random_element(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    match kind(input) {
        Kind::Nil => Ok(Value::Nil),
        Kind::Array(a) => {
            let len = usize::try_from(a.size()).unwrap_or(0);
            if len == 0 {
                return Ok(Value::Nil);
            }
            let i = fastrand::usize(..len);
            Ok(a.values().nth(i).map_or(Value::Nil, |v| v.to_value()))
        }
        _ => Err(fail(
            "random_element",
            format!("expected an array, got {}", type_label(input)),
        )),
    }
}

// ---------------------------------------------------------------------------
// CSV

/// The delimiter of CSV text: whichever of `,` `;` tab `|` occurs most on
/// the first line outside quotes (Tines: "auto-detection of the delimiter
/// character"); `,` when none does.
fn detect_delimiter(text: &str) -> u8 {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for b in first.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            if let Some(i) = candidates.iter().position(|c| *c == b) {
                counts[i] += 1;
            }
        }
    }
    let mut best = 0;
    for (i, count) in counts.iter().enumerate() {
        if *count > counts[best] {
            best = i;
        }
    }
    candidates[best]
}

/// `csv_parse`: rows of text fields (fields are trimmed, as in Tines'
/// `CSV_PARSE` example `first, second` → `"second"`). With `true`, the first
/// row names the fields and every other row becomes an object (Tines'
/// `CSV_PARSE_TO_OBJECTS`); missing fields are nil. Nil gives an empty list.
pub(super) fn csv_parse(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let headers = args.first().is_some_and(|a| truthy(a.as_view()));
    let Some(text) = input_text("csv_parse", input)? else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(detect_delimiter(&text))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| fail("csv_parse", format!("invalid CSV: {e}")))?;
        rows.push(record.iter().map(str::to_owned).collect());
    }
    if !headers {
        let rows = rows
            .into_iter()
            .map(|row| Value::Array(row.into_iter().map(Value::scalar).collect()))
            .collect();
        return Ok(Value::Array(rows));
    }
    let mut rows = rows.into_iter();
    let Some(names) = rows.next() else {
        return Ok(Value::Array(Vec::new()));
    };
    let objects = rows
        .map(|row| {
            let mut object = Object::new();
            for (i, name) in names.iter().enumerate() {
                let value = row.get(i).cloned().map_or(Value::Nil, Value::scalar);
                object.insert(KString::from(name.clone()), value);
            }
            Value::Object(object)
        })
        .collect();
    Ok(Value::Array(objects))
}

/// One CSV cell: text as it is, nil empty, arrays and objects as JSON.
fn cell(value: &dyn ValueView) -> String {
    match kind(value) {
        Kind::Nil => String::new(),
        Kind::Scalar(s) => s.into_cow_str().into_owned(),
        _ => to_json(value).to_string(),
    }
}

/// `to_csv`: an array of scalars is one row; an array of arrays is one row
/// per element; an array of objects gets a header row with their keys
/// (sorted: object keys carry no order here) and one row per object. Rows end
/// with `\n`, as Ruby's CSV writes them.
pub(super) fn to_csv(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let items: Vec<&dyn ValueView> = match kind(input) {
        Kind::Nil => return Ok(Value::Nil),
        Kind::Array(a) => a.values().collect(),
        _ => {
            return Err(fail(
                "to_csv",
                format!("expected an array of rows, got {}", type_label(input)),
            ));
        }
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    if items.iter().all(|v| matches!(kind(*v), Kind::Nil | Kind::Scalar(_))) {
        if !items.is_empty() {
            rows.push(items.iter().map(|v| cell(*v)).collect());
        }
    } else {
        let mut header: BTreeSet<String> = BTreeSet::new();
        for item in &items {
            if let Kind::Object(o) = kind(*item) {
                header.extend(o.keys().map(|k| k.as_str().to_owned()));
            }
        }
        if !header.is_empty() {
            rows.push(header.iter().cloned().collect());
        }
        for item in &items {
            rows.push(match kind(*item) {
                Kind::Array(cells) => cells.values().map(cell).collect(),
                Kind::Object(o) => header.iter().map(|k| o.get(k).map(cell).unwrap_or_default()).collect(),
                _ => vec![cell(*item)],
            });
        }
    }
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    for row in &rows {
        writer.write_record(row).map_err(|e| fail("to_csv", e))?;
    }
    let bytes = writer.into_inner().map_err(|e| fail("to_csv", e))?;
    Ok(Value::scalar(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, ok, render, table};
    use super::*;

    #[test]
    fn map_reads_as_ruby_liquid_and_tines_paths() {
        // Ruby Liquid's `map` (InputIterator): nil is empty, lists flatten,
        // missing properties are nil; Tines' implode example maps a dotted path.
        table(
            json!({
                "events": [{"lookup": {"body": {"domain": "a.example"}}}, {"lookup": {"body": {"domain": "b.example"}}}],
                "mixed": [{"id": 1}, {"x": 2}, [{"id": 3}]],
                "dotted": [{"a.b": "whole"}],
                "one": {"id": 7},
                "nothing": null
            }),
            &[
                (
                    "{{ events | map: 'lookup.body.domain' | to_json }}",
                    r#"["a.example","b.example"]"#,
                ),
                ("{{ mixed | map: 'id' | to_json }}", "[1,null,3]"),
                ("{{ dotted | map: 'a.b' | to_json }}", r#"["whole"]"#),
                ("{{ one | map: 'id' | to_json }}", "[7]"),
                ("{{ nothing | map: 'id' | to_json }}", "[]"),
            ],
        );
    }

    #[test]
    fn building_values_as_tines_formulas_do() {
        // FORCE_ARRAY, SET_KEY, MERGE and list literals (Tines' formula
        // functions: https://www.tines.com/docs/formulas/functions/).
        table(
            json!({"l": [1, 2], "s": "a", "nothing": null, "o": {"a": 1, "b": 2}, "p": {"b": 3}}),
            &[
                ("{{ l | force_array | to_json }}", "[1,2]"),
                ("{{ s | force_array | to_json }}", r#"["a"]"#),
                ("{{ nothing | force_array | to_json }}", "[]"),
                ("{{ l | push: s | to_json }}", r#"[1,2,"a"]"#),
                ("{{ nothing | push: l | to_json }}", "[[1,2]]"),
                ("{{ o | set_key: 'c', l | to_json }}", r#"{"a":1,"b":2,"c":[1,2]}"#),
                ("{{ nothing | set_key: 'a', 1 | to_json }}", r#"{"a":1}"#),
                ("{{ o | merge: p | to_json }}", r#"{"a":1,"b":3}"#),
                ("{{ nothing | merge: p | to_json }}", r#"{"b":3}"#),
            ],
        );
        fails(
            "{{ l | merge: o }}",
            json!({"l": [1], "o": {}}),
            "merge: expected an object, got an array",
        );
    }

    #[test]
    fn sum_adds_numbers_or_a_property() {
        table(
            json!({"nothing": null, "n": [1, 2, 3, null], "f": [1, 2.5], "o": [{"id": 1}, {"id": 41}, {"x": 9}], "t": ["4", 5]}),
            &[
                ("{{ n | sum }}", "6"),
                ("{{ f | sum }}", "3.5"),
                ("{{ o | sum: 'id' }}", "42"),
                ("{{ t | sum }}", "9"),
                ("{{ nothing | sum }}", "0"),
            ],
        );
        fails("{{ 'abc' | sum }}", json!({}), "sum: expected an array");
        fails("{{ x | sum }}", json!({"x": ["a"]}), "sum: cannot add `a`");
    }

    #[test]
    fn json_parse_and_to_json() {
        table(
            json!({
                "text": r#"{"a": [1, 2.5, "x", null, true], "b": {"c": "é"}}"#,
                "obj": {"k": "v"},
                "n": null,
                "blank": "  ",
                "num": 7,
            }),
            &[
                (
                    "{{ text | json_parse | to_json }}",
                    r#"{"a":[1,2.5,"x",null,true],"b":{"c":"é"}}"#,
                ),
                ("{{ text | json_parse | get: 'b.c' }}", "é"),
                ("{{ '[1,2,3]' | json_parse | size }}", "3"),
                ("{{ '\"quoted\"' | json_parse }}", "quoted"),
                // already structured: unchanged
                ("{{ obj | json_parse | to_json }}", r#"{"k":"v"}"#),
                ("{{ num | json_parse | plus: 1 }}", "8"),
                ("{{ n | json_parse | to_json }}", "null"),
                ("{{ blank | json_parse | to_json }}", "null"),
                ("{{ 'abc' | to_json }}", r#""abc""#),
                ("{{ 'say \"hi\"' | to_json }}", r#""say \"hi\"""#),
                ("{{ num | to_json }}", "7"),
                ("{{ n | to_json }}", "null"),
                ("{{ obj | to_json }}", r#"{"k":"v"}"#),
            ],
        );
        fails(
            "{{ '{oops' | json_parse }}",
            json!({}),
            "json_parse: input is not valid JSON",
        );
    }

    #[test]
    fn neat_json_keeps_short_values_on_one_line() {
        table(
            json!({"o": {"b": 42.005, "a": [42, 17], "longer": true, "str": "yes\nplease"}, "f": 2.0, "n": null}),
            &[
                // the neatjson README example (keys sorted here)
                (
                    "{{ o | neat_json }}",
                    r#"{"a":[42,17],"b":42.005,"longer":true,"str":"yes\nplease"}"#,
                ),
                ("{{ f | neat_json }}", "2"),
                ("{{ n | neat_json }}", "null"),
                ("{{ 'x' | neat_json }}", r#""x""#),
            ],
        );
    }

    #[test]
    fn neat_json_wraps_long_values() {
        let data = json!({"v": {
            "alert": {"id": "1234567890", "title": "Suspicious sign-in from an unfamiliar location", "severity": "high"},
            "ips": ["10.0.0.1", "10.0.0.2"],
            "count": 3,
        }});
        let expected = "{\n  \"alert\":{\n    \"id\":\"1234567890\",\n    \"severity\":\"high\",\n    \"title\":\"Suspicious sign-in from an unfamiliar location\"\n  },\n  \"count\":3,\n  \"ips\":[\"10.0.0.1\",\"10.0.0.2\"]\n}";
        assert_eq!(ok("{{ v | neat_json }}", data), expected);
        let long: Vec<String> = (0..12).map(|i| format!("item-{i:02}")).collect();
        let expected = format!(
            "[\n{}\n]",
            long.iter()
                .map(|s| format!("  \"{s}\""))
                .collect::<Vec<_>>()
                .join(",\n")
        );
        assert_eq!(ok("{{ v | neat_json }}", json!({ "v": long })), expected);
    }

    #[test]
    fn jsonpath_selects_matches() {
        let data = json!({
            "doc": {"phoneNumbers": [
                {"name": "John", "type": "iPhone", "country": "Australia"},
                {"name": "Joe", "type": "Android", "country": "Australia"},
                {"name": "Jess", "type": "home", "country": "Ireland"},
            ]},
            "attachments": [{"filename": "a.eml", "size": 1}, {"filename": "b.txt", "size": 2}],
            "text": r#"{"items": [{"id": 1}, {"id": 2}]}"#,
            "n": null,
        });
        table(
            data.clone(),
            &[
                // Tines' documented example
                (
                    "{{ doc | jsonpath: '$.phoneNumbers[*].type' | to_json }}",
                    r#"["iPhone","Android","home"]"#,
                ),
                (
                    "{{ doc | jsonpath: '$.phoneNumbers[*].type' | join: ',' }}",
                    "iPhone,Android,home",
                ),
                (
                    "{{ doc | jsonpath: \"$.phoneNumbers[?(@.country == 'Ireland')].name\" | to_json }}",
                    r#"["Jess"]"#,
                ),
                (
                    "{{ doc | jsonpath: '$.phoneNumbers[0].name' | to_json }}",
                    r#"["John"]"#,
                ),
                (
                    "{{ doc | jsonpath: '$..country' | uniq | to_json }}",
                    r#"["Australia","Ireland"]"#,
                ),
                // without `$`, as Tines stories write it
                (
                    "{{ attachments | jsonpath: '*.filename' | to_json }}",
                    r#"["a.eml","b.txt"]"#,
                ),
                (
                    "{{ doc | jsonpath: 'phoneNumbers[1].type' | to_json }}",
                    r#"["Android"]"#,
                ),
                // JSON text is parsed first
                ("{{ text | jsonpath: '$.items[*].id' | to_json }}", "[1,2]"),
                ("{{ doc | jsonpath: '$.missing' | to_json }}", "[]"),
                ("{{ n | jsonpath: '$.a' | to_json }}", "[]"),
            ],
        );
        fails(
            "{{ doc | jsonpath: '$[?(' }}",
            data,
            "jsonpath: invalid JSONPath `$[?(`",
        );
    }

    #[test]
    fn normalizing_jsonpath() {
        assert_eq!(normalize_jsonpath("$.a"), "$.a");
        assert_eq!(normalize_jsonpath("*.filename"), "$.*.filename");
        assert_eq!(normalize_jsonpath("a.b"), "$.a.b");
        assert_eq!(normalize_jsonpath("[0]"), "$[0]");
        assert_eq!(normalize_jsonpath("..id"), "$..id");
        assert_eq!(normalize_jsonpath(" "), "$");
    }

    #[test]
    fn get_reads_paths() {
        table(
            json!({
                "alert": {"evidence": [{"url": "http://x"}, {"url": "http://y"}], "kibana.alert.rule.name": "R1", "n": null},
                "list": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
                "key": "evidence",
                "n": null,
            }),
            &[
                ("{{ alert | get: 'evidence.0.url' }}", "http://x"),
                ("{{ alert | get: 'evidence[1].url' }}", "http://y"),
                ("{{ alert | get: 'evidence.-1.url' }}", "http://y"),
                ("{{ alert | get: 'kibana.alert.rule.name' }}", "R1"),
                ("{{ alert | get: key | size }}", "2"),
                (
                    "{{ alert | get: 'evidence.url' | to_json }}",
                    r#"["http://x","http://y"]"#,
                ),
                ("{{ list | where: 'name', 'b' | get: 'id' }}", "2"),
                ("{{ list | get: 0 | get: 'name' }}", "a"),
                ("{{ alert | get: 'missing.deeper' | to_json }}", "null"),
                ("{{ alert | get: 'evidence.5.url' | to_json }}", "null"),
                ("{{ alert | get: 'n' | to_json }}", "null"),
                ("{{ n | get: 'a' | to_json }}", "null"),
                ("{{ 'text' | get: 'a' | to_json }}", "null"),
                ("{{ alert | get: n | to_json }}", "null"),
            ],
        );
    }

    #[test]
    fn type_names() {
        table(
            json!({"s": "x", "i": 1, "f": 1.5, "t": true, "fa": false, "n": null, "a": [], "o": {}}),
            &[
                ("{{ s | type }}", "String"),
                ("{{ i | type }}", "Integer"),
                ("{{ f | type }}", "Float"),
                ("{{ t | type }}", "TrueClass"),
                ("{{ fa | type }}", "FalseClass"),
                ("{{ n | type }}", "NilClass"),
                ("{{ a | type }}", "Array"),
                ("{{ o | type }}", "Hash"),
                ("{{ '[1]' | json_parse | type }}", "Array"),
            ],
        );
    }

    #[test]
    fn zip_and_unzip() {
        table(
            json!({
                "names": ["a", "b", "c"], "ids": [1, 2, 3], "short": [true], "nothing": [], "n": null,
                "pairs": [["a", 1], ["b", 2]], "ragged": [[1, 2], [3]],
            }),
            &[
                ("{{ names | zip: ids | to_json }}", r#"[["a",1],["b",2],["c",3]]"#),
                (
                    "{{ names | zip: ids, short | to_json }}",
                    r#"[["a",1,true],["b",2,null],["c",3,null]]"#,
                ),
                ("{{ short | zip: names | to_json }}", r#"[[true,"a"]]"#),
                ("{{ nothing | zip: names | to_json }}", "[]"),
                (
                    "{{ names | zip: n | to_json }}",
                    r#"[["a",null],["b",null],["c",null]]"#,
                ),
                ("{{ n | zip: names | to_json }}", "null"),
                ("{{ pairs | unzip | to_json }}", r#"[["a","b"],[1,2]]"#),
                ("{{ names | zip: ids | unzip | to_json }}", r#"[["a","b","c"],[1,2,3]]"#),
                ("{{ ragged | unzip | to_json }}", "[[1,3],[2,null]]"),
                ("{{ nothing | unzip | to_json }}", "[]"),
                ("{{ n | unzip | to_json }}", "null"),
            ],
        );
        let data = json!({"names": ["a"], "o": {"k": 1}});
        fails(
            "{{ names | zip: 'x' }}",
            data.clone(),
            "zip: argument 1 must be an array, got text",
        );
        fails(
            "{{ 'file' | zip: 'a.zip' }}",
            data.clone(),
            "zip: building a ZIP archive",
        );
        fails(
            "{{ o | zip: names }}",
            data.clone(),
            "zip: expected an array, got an object",
        );
        fails(
            "{{ names | unzip }}",
            data,
            "unzip: expected an array of arrays, found text",
        );
    }

    #[test]
    fn random_element_picks_from_the_array() {
        let data = json!({"a": ["x", "y", "z"], "one": [5], "empty": [], "n": null});
        for _ in 0..20 {
            let picked = ok("{{ a | random_element }}", data.clone());
            assert!(["x", "y", "z"].contains(&picked.as_str()), "{picked}");
        }
        table(
            data.clone(),
            &[
                ("{{ one | random_element }}", "5"),
                ("{{ empty | random_element | to_json }}", "null"),
                ("{{ n | random_element | to_json }}", "null"),
            ],
        );
        fails(
            "{{ 'abc' | random_element }}",
            data,
            "random_element: expected an array, got text",
        );
    }

    #[test]
    fn csv_parse_rows_and_objects() {
        table(
            json!({
                "csv": "name,time\n me,now\n",
                "doc": "first, second, third\n1, 2, 3",
                "semi": "a;b;c\n1;\"x;y\";3",
                "tabs": "a\tb\n1\t2",
                "quoted": "a,b\n\"line\nbreak\",\"say \"\"hi\"\"\"",
                "ragged": "a,b,c\n1,2\n1,2,3,4",
                "unicode": "名前,ville\n太郎,Zürich",
                "n": null,
            }),
            &[
                // the Shuffle copy of Tines' example
                ("{{ csv | csv_parse | to_json }}", r#"[["name","time"],["me","now"]]"#),
                // Tines' CSV_PARSE_TO_OBJECTS example
                (
                    "{{ doc | csv_parse: true | to_json }}",
                    r#"[{"first":"1","second":"2","third":"3"}]"#,
                ),
                ("{{ semi | csv_parse | to_json }}", r#"[["a","b","c"],["1","x;y","3"]]"#),
                ("{{ tabs | csv_parse | to_json }}", r#"[["a","b"],["1","2"]]"#),
                (
                    "{{ quoted | csv_parse | to_json }}",
                    r#"[["a","b"],["line\nbreak","say \"hi\""]]"#,
                ),
                (
                    "{{ ragged | csv_parse: true | to_json }}",
                    r#"[{"a":"1","b":"2","c":null},{"a":"1","b":"2","c":"3"}]"#,
                ),
                (
                    "{{ unicode | csv_parse: true | to_json }}",
                    r#"[{"ville":"Zürich","名前":"太郎"}]"#,
                ),
                ("{{ '' | csv_parse | to_json }}", "[]"),
                ("{{ 'a,b' | csv_parse: true | to_json }}", "[]"),
                ("{{ n | csv_parse | to_json }}", "[]"),
            ],
        );
        fails(
            "{{ a | csv_parse }}",
            json!({"a": [1]}),
            "csv_parse: expected text, got an array",
        );
    }

    #[test]
    fn to_csv_rows() {
        table(
            json!({
                "flat": ["a", 1, null, true],
                "rows": [["name", "note"], ["x", "has,comma"], ["y", "say \"hi\""]],
                "objects": [{"b": 2, "a": "x"}, {"a": "y", "c": [1]}],
                "empty": [],
                "n": null,
            }),
            &[
                ("{{ flat | to_csv }}", "a,1,,true\n"),
                (
                    "{{ rows | to_csv }}",
                    "name,note\nx,\"has,comma\"\ny,\"say \"\"hi\"\"\"\n",
                ),
                ("{{ objects | to_csv }}", "a,b,c\nx,2,\ny,,[1]\n"),
                ("{{ empty | to_csv }}", ""),
                ("{{ n | to_csv | to_json }}", "null"),
                (
                    "{{ rows | to_csv | csv_parse | to_json }}",
                    r#"[["name","note"],["x","has,comma"],["y","say \"hi\""]]"#,
                ),
            ],
        );
        assert!(render("{{ 'x' | to_csv }}", json!({})).is_err());
    }
}
