//! `{% for %}` and `{% tablerow %}`, adapted from liquid-lib 0.26
//! (`stdlib/blocks/for_block.rs`, MIT OR Apache-2.0) with two limits the
//! originals lack:
//! - a range is refused past [`MAX_RANGE`] numbers *before* its list is
//!   built, also when its bounds come from an event (`(1..hook.body.n)`);
//! - every iteration checks the render's deadline, so a loop that writes
//!   nothing (`{% for a in x %}{% for b in x %}{% if a == b %}…`) still
//!   stops at the time limit instead of holding a worker for hours.

use std::cell::Cell;
use std::io::Write;
use std::time::Instant;

use liquid_core::error::ResultLiquidExt;
use liquid_core::model::{KString, Object, Value, ValueCow, ValueView};
use liquid_core::parser::{BlockElement, TryMatchToken};
use liquid_core::runtime::{Interrupt, InterruptRegister, StackFrame};
use liquid_core::{
    BlockReflection, Error, Expression, Language, ParseBlock, Renderable, Result, Runtime, TagBlock, TagTokenIter,
    Template,
};

use super::MAX_LITERAL_RANGE as MAX_RANGE;

/// What the render limit's error says, so the renderer can name the limit.
pub const LIMIT_MARK: &str = "tale render limit";

thread_local! {
    /// When the template rendering on this thread must stop.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with loops stopping at `deadline` (the previous deadline is
/// restored afterwards: a filter may render another template).
pub fn with_deadline<T>(deadline: Instant, f: impl FnOnce() -> T) -> T {
    /// Puts the previous deadline back, also when `f` unwinds.
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DEADLINE.with(|d| d.replace(Some(deadline))));
    f()
}

fn past_deadline() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() > at))
}

#[derive(Copy, Clone, Debug, Default)]
pub struct ForBlock;

#[derive(Copy, Clone, Debug, Default)]
pub struct TableRowBlock;

impl BlockReflection for ForBlock {
    fn start_tag(&self) -> &str {
        "for"
    }
    fn end_tag(&self) -> &str {
        "endfor"
    }
    fn description(&self) -> &str {
        "loops over a list or a range"
    }
}

impl BlockReflection for TableRowBlock {
    fn start_tag(&self) -> &str {
        "tablerow"
    }
    fn end_tag(&self) -> &str {
        "endtablerow"
    }
    fn description(&self) -> &str {
        "an HTML table row per element"
    }
}

/// `x in list` or `x in (a..b)`, then `name: value` attributes.
fn parse_head(arguments: &mut TagTokenIter<'_>) -> Result<(KString, Source)> {
    let var_name = arguments
        .expect_next("Identifier expected.")?
        .expect_identifier()
        .into_result()?;
    arguments
        .expect_next("\"in\" expected.")?
        .expect_str("in")
        .into_result_custom_msg("\"in\" expected.")?;
    let range = arguments.expect_next("Array or range expected.")?;
    let source = match range.expect_value() {
        TryMatchToken::Matches(array) => Source::List(array),
        TryMatchToken::Fails(range) => match range.expect_range() {
            TryMatchToken::Matches((start, stop)) => Source::Range(start, stop),
            TryMatchToken::Fails(range) => return range.raise_error().into_err(),
        },
    };
    Ok((KString::from_ref(var_name), source))
}

fn parse_attr(arguments: &mut TagTokenIter<'_>) -> Result<Expression> {
    arguments
        .expect_next("\":\" expected.")?
        .expect_str(":")
        .into_result_custom_msg("\":\" expected.")?;
    arguments.expect_next("Value expected.")?.expect_value().into_result()
}

impl ParseBlock for ForBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let (var_name, source) = parse_head(&mut arguments)?;
        let mut looped = Loop::new(var_name, source);
        while let Some(token) = arguments.next() {
            match token.as_str() {
                "limit" => looped.limit = Some(parse_attr(&mut arguments)?),
                "offset" => looped.offset = Some(parse_attr(&mut arguments)?),
                "reversed" => looped.reversed = true,
                _ => {
                    return token
                        .raise_custom_error("\"limit\", \"offset\" or \"reversed\" expected.")
                        .into_err();
                }
            }
        }
        arguments.expect_nothing()?;
        let mut body = Vec::new();
        while let Some(element) = tokens.next()? {
            match element {
                BlockElement::Tag(mut tag) => match tag.name() {
                    "else" => {
                        tag.tokens().expect_nothing()?;
                        looped.otherwise = Some(Template::new(tokens.parse_all(options)?));
                        break;
                    }
                    _ => body.push(tag.parse(&mut tokens, options)?),
                },
                element => body.push(element.parse(&mut tokens, options)?),
            }
        }
        tokens.assert_empty();
        looped.body = Template::new(body);
        Ok(Box::new(looped))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

impl ParseBlock for TableRowBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let (var_name, source) = parse_head(&mut arguments)?;
        let mut looped = Loop::new(var_name, source);
        let mut cols = None;
        while let Some(token) = arguments.next() {
            match token.as_str() {
                "cols" => cols = Some(parse_attr(&mut arguments)?),
                "limit" => looped.limit = Some(parse_attr(&mut arguments)?),
                "offset" => looped.offset = Some(parse_attr(&mut arguments)?),
                _ => {
                    return token
                        .raise_custom_error("\"cols\", \"limit\" or \"offset\" expected.")
                        .into_err();
                }
            }
        }
        arguments.expect_nothing()?;
        looped.body = Template::new(tokens.parse_all(options)?);
        tokens.assert_empty();
        looped.table = Some(cols);
        Ok(Box::new(looped))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

#[derive(Debug)]
enum Source {
    List(Expression),
    Range(Expression, Expression),
}

#[derive(Debug)]
struct Loop {
    var_name: KString,
    source: Source,
    body: Template,
    otherwise: Option<Template>,
    limit: Option<Expression>,
    offset: Option<Expression>,
    reversed: bool,
    /// A `tablerow`, with its `cols`.
    table: Option<Option<Expression>>,
}

impl Loop {
    fn new(var_name: KString, source: Source) -> Self {
        Self {
            var_name,
            source,
            body: Template::new(Vec::new()),
            otherwise: None,
            limit: None,
            offset: None,
            reversed: false,
            table: None,
        }
    }

    /// The elements of `held` (the evaluated list) or of the range, after
    /// `offset` and `limit`; a range is sized before it is built.
    fn elements<'v>(&self, held: Option<&'v ValueCow<'v>>, runtime: &dyn Runtime) -> Result<Vec<ValueCow<'v>>> {
        let limit = whole(self.limit.as_ref(), runtime, "limit")?;
        let offset = whole(self.offset.as_ref(), runtime, "offset")?.unwrap_or(0);
        let mut out: Vec<ValueCow<'v>> = match (&self.source, held) {
            (Source::Range(start, stop), _) => {
                let start = whole_number(start, runtime, "start")?;
                let stop = whole_number(stop, runtime, "end")?;
                let count = i128::from(stop) - i128::from(start) + 1;
                if count > i128::from(MAX_RANGE) {
                    return Err(Error::with_msg(format!(
                        "the range ({start}..{stop}) has {count} numbers, more than {MAX_RANGE}"
                    )));
                }
                (start..=stop).map(|x| ValueCow::Owned(Value::scalar(x))).collect()
            }
            (Source::List(_), Some(value)) => list(value.as_view())?,
            (Source::List(_), None) => Vec::new(),
        };
        let offset = offset.min(out.len());
        out.drain(..offset);
        if let Some(limit) = limit {
            out.truncate(limit);
        }
        if self.reversed {
            out.reverse();
        }
        Ok(out)
    }
}

/// A list's elements, an object's `[key, value]` pairs, nothing for nil.
fn list(view: &dyn ValueView) -> Result<Vec<ValueCow<'_>>> {
    if let Some(a) = view.as_array() {
        Ok(a.values().map(ValueCow::Borrowed).collect())
    } else if let Some(o) = view.as_object() {
        Ok(o.iter()
            .map(|(k, v)| ValueCow::Owned(Value::Array(vec![Value::scalar(k.into_owned()), v.to_value()])))
            .collect())
    } else if view.is_state() || view.is_nil() {
        Ok(Vec::new())
    } else {
        Err(Error::with_msg(format!("Expected array, found `{}`", view.type_name())))
    }
}

fn whole_number(e: &Expression, runtime: &dyn Runtime, what: &str) -> Result<i64> {
    let value = e.evaluate(runtime)?;
    let n = value.as_scalar().and_then(|s| s.to_integer());
    n.ok_or_else(|| {
        Error::with_msg(format!(
            "`{what}` expects a whole number, found `{}`",
            value.type_name()
        ))
    })
}

fn whole(e: Option<&Expression>, runtime: &dyn Runtime, what: &str) -> Result<Option<usize>> {
    e.map(|e| whole_number(e, runtime, what).map(|n| usize::try_from(n).unwrap_or(0)))
        .transpose()
}

fn loop_object(i: usize, len: usize) -> Object {
    let (i, len) = (i as i64, len as i64);
    let mut o = Object::new();
    o.insert("length".into(), Value::scalar(len));
    o.insert("index0".into(), Value::scalar(i));
    o.insert("index".into(), Value::scalar(i + 1));
    o.insert("rindex0".into(), Value::scalar(len - i - 1));
    o.insert("rindex".into(), Value::scalar(len - i));
    o.insert("first".into(), Value::scalar(i == 0));
    o.insert("last".into(), Value::scalar(i == len - 1));
    o
}

fn write_markup(writer: &mut dyn Write, text: &str) -> Result<()> {
    writer
        .write_all(text.as_bytes())
        .map_err(|e| Error::with_msg(format!("Failed to render: {e}")))
}

impl Renderable for Loop {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let held = match &self.source {
            Source::List(e) => Some(e.evaluate(runtime)?),
            Source::Range(..) => None,
        };
        let elements = self.elements(held.as_ref(), runtime)?;
        let len = elements.len();
        if len == 0 {
            if let Some(t) = &self.otherwise {
                t.render_to(writer, runtime)?;
            }
            return Ok(());
        }
        let cols = match &self.table {
            Some(cols) => Some(whole(cols.as_ref(), runtime, "cols")?.filter(|c| *c > 0).unwrap_or(len)),
            None => None,
        };
        let parent = runtime.try_get(&[liquid_core::model::Scalar::new("forloop")]);
        for (i, v) in elements.into_iter().enumerate() {
            if past_deadline() {
                return Err(Error::with_msg(LIMIT_MARK));
            }
            let mut helper = loop_object(i, len);
            let name = match cols {
                Some(cols) => {
                    let (col, row) = (i % cols, i / cols);
                    helper.insert("col0".into(), Value::scalar(col as i64));
                    helper.insert("col".into(), Value::scalar(col as i64 + 1));
                    helper.insert("col_first".into(), Value::scalar(col == 0));
                    helper.insert("col_last".into(), Value::scalar(col == cols - 1 || i == len - 1));
                    if col == 0 {
                        write_markup(writer, &format!("<tr class=\"row{}\">", row + 1))?;
                    }
                    write_markup(writer, &format!("<td class=\"col{}\">", col + 1))?;
                    "tablerow"
                }
                None => {
                    let p = parent.as_ref().map_or(Value::Nil, |p| p.to_value());
                    helper.insert("parentloop".into(), p);
                    "forloop"
                }
            };
            let helper = Value::Object(helper);
            let mut root = std::collections::HashMap::<liquid_core::model::KStringRef<'_>, &dyn ValueView>::new();
            root.insert(name.into(), &helper);
            root.insert(self.var_name.as_ref(), &v);
            // A missing key of the loop variable is empty, as elsewhere.
            let scope = super::Lenient(StackFrame::new(runtime, &root));
            self.body
                .render_to(writer, &scope)
                .context_key("index")
                .value_with(|| format!("{}", i + 1).into())?;
            // `continue` needs nothing more at the end of the body; `break` stops.
            let interrupt = scope.registers().get_mut::<InterruptRegister>().reset();
            let stop = matches!(interrupt, Some(Interrupt::Break));
            if let Some(cols) = cols {
                write_markup(writer, "</td>")?;
                // A row is always closed, also by a `break` in its middle.
                if i % cols == cols - 1 || i == len - 1 || stop {
                    write_markup(writer, "</tr>")?;
                }
            }
            if stop {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::TemplateParser;

    fn globals() -> liquid::Object {
        liquid::object!({"xs": [3, 1, 2], "o": {"a": 1}, "n": 1_000_000_000_000i64, "empty": []})
    }

    #[test]
    fn loops_render_as_liquid_renders_them() {
        let standard = liquid::ParserBuilder::with_stdlib().build().expect("parser");
        let ours = TemplateParser::new();
        for t in [
            "{% for x in xs %}{{ forloop.index }}:{{ x }}{% if forloop.last %}.{% endif %} {% endfor %}",
            "{% for x in xs reversed %}{{ x }}{{ forloop.rindex0 }}{% endfor %}",
            "{% for x in xs limit: 2 offset: 1 %}{{ x }}{% endfor %}",
            "{% for x in (2..5) %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
            "{% for x in (1..4) %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}",
            "{% for x in empty %}no{% else %}none{% endfor %}",
            "{% for p in o %}{{ p[0] }}={{ p[1] }};{% endfor %}",
            "{% for a in (1..2) %}{% for b in (1..2) %}{{ forloop.parentloop.index }}{{ forloop.index }} {% endfor %}{% endfor %}",
            "{% for x in xs %}{{ forloop.parentloop | default: 'top' }}{% endfor %}",
            "{% for x in xs offset: 1 %}{{ x }}{% endfor %}{% for x in xs limit: 0 %}{{ x }}{% else %}none{% endfor %}",
            "{% tablerow x in xs cols: 2 %}{{ x }}{{ tablerow.col }}{% endtablerow %}",
            "{% tablerow x in (1..3) %}{{ x }}{% endtablerow %}",
        ] {
            let want = standard.parse(t).expect("parse").render(&globals()).expect("render");
            let got = ours.parse(t).expect("parse").render(&globals()).expect("render");
            assert_eq!(got, want, "{t}");
        }
    }

    /// Where liquid-lib differs from Shopify's Liquid, ours follows Shopify:
    /// no nil padding past the end, negative limits and offsets as zero.
    #[test]
    fn past_the_end_and_negative_attributes_follow_shopify() {
        let ours = TemplateParser::new();
        let render = |t: &str| ours.parse(t).expect("parse").render(&globals()).expect("render");
        assert_eq!(render("{% for x in xs offset: 2 limit: 2 %}[{{x}}]{% endfor %}"), "[2]");
        assert_eq!(
            render("{% for x in xs limit: -1 %}{{x}}{% else %}none{% endfor %}"),
            "none"
        );
        assert_eq!(render("{% for x in xs offset: -1 %}{{x}}{% endfor %}"), "312");
        assert_eq!(
            render("{% tablerow x in xs cols: 2 %}{{ x }}{% break %}{% endtablerow %}"),
            "<tr class=\"row1\"><td class=\"col1\">3</td></tr>"
        );
    }

    #[test]
    fn a_range_bound_from_data_is_sized_before_it_is_built() {
        let t = TemplateParser::new()
            .parse("{% for i in (1..n) %}x{% endfor %}")
            .expect("parse");
        let e = t.render(&globals()).expect_err("a trillion numbers");
        assert!(e.to_string().contains("more than 100000"), "{e}");
    }

    #[test]
    fn a_loop_that_writes_nothing_stops_at_the_deadline() {
        let t = TemplateParser::new()
            .parse("{% for a in (1..100000) %}{% for b in (1..100000) %}{% if a == 0 %}x{% endif %}{% endfor %}{% endfor %}")
            .expect("parse");
        let started = Instant::now();
        let e = with_deadline(Instant::now() + Duration::from_millis(50), || t.render(&globals()))
            .expect_err("ten billion iterations");
        assert!(e.to_string().contains(LIMIT_MARK), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the deadline was not honoured"
        );
    }
}
