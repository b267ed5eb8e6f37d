//! `{% assign %}` and `{% capture %}`, adapted from liquid-lib 0.26
//! (`stdlib/tags/assign_tag.rs`, `stdlib/blocks/capture_block.rs`, MIT OR
//! Apache-2.0) with a limit the originals lack: the bytes a render holds in
//! the variables it sets. The output limit does not see a string doubled by
//! `{% assign s = s | append: s %}` in a loop; this does, and fails the
//! render at [`MAX_HELD_BYTES`] instead of the process at gigabytes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;

use liquid_core::error::ResultLiquidExt;
use liquid_core::model::{KString, Value, ValueView};
use liquid_core::parser::{BlockReflection, FilterChain, ParseBlock, TagBlock, TagReflection, TagTokenIter};
use liquid_core::{Error, Language, ParseTag, Renderable, Result, Runtime, Template};

use super::loops::LIMIT_MARK;

/// Most bytes one render may hold in the variables it assigns and captures.
pub const MAX_HELD_BYTES: usize = 32 * 1024 * 1024;

thread_local! {
    /// The bytes held by the render on this thread, by variable.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct Held {
    total: usize,
    by_name: HashMap<KString, usize>,
}

/// Runs one render with a fresh budget (the previous one is restored
/// afterwards: a filter may render another template).
pub fn with_budget<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Held>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            HELD.with(|h| *h.borrow_mut() = previous);
        }
    }
    let _restore = Restore(HELD.with(|h| h.borrow_mut().replace(Held::default())));
    f()
}

fn over_limit() -> Error {
    Error::with_msg(format!(
        "{LIMIT_MARK}: the template holds more than {} MiB in its variables",
        MAX_HELD_BYTES / (1024 * 1024)
    ))
}

/// Counts `bytes` as what `name` holds now (replacing what it held).
fn hold(name: &KString, bytes: usize) -> Result<()> {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let Some(held) = h.as_mut() else { return Ok(()) };
        let before = held.by_name.insert(name.clone(), bytes).unwrap_or(0);
        held.total = held.total.saturating_sub(before).saturating_add(bytes);
        if held.total > MAX_HELD_BYTES {
            Err(over_limit())
        } else {
            Ok(())
        }
    })
}

/// The bytes of text a value holds (strings, keys, numbers as written),
/// counted up to `cap` (a large list is not walked past the limit). No
/// per-entry overhead: whatever a response within the default
/// `max_response_bytes` parses to can be assigned whole.
fn size_of(value: &Value, cap: usize) -> usize {
    fn walk(value: &Value, cap: usize, acc: &mut usize) {
        if *acc > cap {
            return;
        }
        match value {
            Value::Scalar(s) => *acc += s.to_kstr().len(),
            Value::Array(items) => {
                for item in items {
                    walk(item, cap, acc);
                }
            }
            Value::Object(o) => {
                for (k, v) in o.iter() {
                    *acc += k.len();
                    walk(v, cap, acc);
                }
            }
            Value::State(_) | Value::Nil => {}
        }
    }
    let mut acc = 0;
    walk(value, cap, &mut acc);
    acc
}

#[derive(Copy, Clone, Debug, Default)]
pub struct AssignTag;

impl TagReflection for AssignTag {
    fn tag(&self) -> &'static str {
        "assign"
    }
    fn description(&self) -> &'static str {
        "sets a variable"
    }
}

impl ParseTag for AssignTag {
    fn parse(&self, mut arguments: TagTokenIter<'_>, options: &Language) -> Result<Box<dyn Renderable>> {
        let dst = arguments
            .expect_next("Identifier expected.")?
            .expect_identifier()
            .into_result()?
            .to_owned()
            .into();
        arguments
            .expect_next("Assignment operator \"=\" expected.")?
            .expect_str("=")
            .into_result_custom_msg("Assignment operator \"=\" expected.")?;
        let src = arguments
            .expect_next("FilterChain expected.")?
            .expect_filter_chain(options)
            .into_result()?;
        arguments.expect_nothing()?;
        Ok(Box::new(Assign { dst, src }))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self
    }
}

#[derive(Debug)]
struct Assign {
    dst: KString,
    src: FilterChain,
}

impl Renderable for Assign {
    fn render_to(&self, _writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let value = self
            .src
            .evaluate(runtime)
            .trace_with(|| format!("{{% assign {} = {}%}}", self.dst, self.src).into())?
            .into_owned();
        hold(&self.dst, size_of(&value, MAX_HELD_BYTES))?;
        runtime.set_global(self.dst.clone(), value);
        Ok(())
    }
}

#[derive(Copy, Clone, Debug, Default)]
pub struct CaptureBlock;

impl BlockReflection for CaptureBlock {
    fn start_tag(&self) -> &str {
        "capture"
    }
    fn end_tag(&self) -> &str {
        "endcapture"
    }
    fn description(&self) -> &str {
        "sets a variable to the text rendered inside"
    }
}

impl ParseBlock for CaptureBlock {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        mut tokens: TagBlock<'_, '_>,
        options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let id: KString = arguments
            .expect_next("Identifier expected")?
            .expect_identifier()
            .into_result()?
            .to_owned()
            .into();
        arguments.expect_nothing()?;
        let template = Template::new(
            tokens
                .parse_all(options)
                .trace_with(|| format!("{{% capture {} %}}", &id).into())?,
        );
        tokens.assert_empty();
        Ok(Box::new(Capture { id, template }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

#[derive(Debug)]
struct Capture {
    id: KString,
    template: Template,
}

/// A capture's buffer: refuses to grow past the render's budget (liquid
/// reports any writer error as "Failed to render": `tripped` says why).
struct BoundedCapture(Vec<u8>, bool);

impl Write for BoundedCapture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + data.len() > MAX_HELD_BYTES {
            self.1 = true;
            return Err(std::io::Error::other(LIMIT_MARK));
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Renderable for Capture {
    fn render_to(&self, _writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let mut captured = BoundedCapture(Vec::new(), false);
        let rendered = self.template.render_to(&mut captured, runtime);
        rendered
            .map_err(|e| if captured.1 { over_limit() } else { e })
            .trace_with(|| format!("{{% capture {} %}}", self.id).into())?;
        let output = String::from_utf8(captured.0).map_err(|_| Error::with_msg("the capture is not UTF-8"))?;
        hold(&self.id, output.len())?;
        runtime.set_global(self.id.clone(), Value::scalar(output));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::filters::testing::{ok, render};
    use serde_json::json;

    #[test]
    fn assign_and_capture_work_as_before() {
        assert_eq!(
            ok(
                "{% assign a = x | append: 'b' %}{% capture c %}[{{ a }}]{% endcapture %}{{ c }}{{ c | size }}",
                json!({"x": "a"})
            ),
            "[ab]4"
        );
    }

    #[test]
    fn a_string_doubled_in_a_loop_stops_at_the_budget() {
        let started = std::time::Instant::now();
        let e = crate::held::with_budget(|| {
            render(
                "{% assign s = 'xxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{{ s | size }}",
                json!({}),
            )
        })
        .expect_err("stopped");
        assert!(e.contains("holds more than 32 MiB"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        let e = crate::held::with_budget(|| {
            render(
                "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..30) %}{% capture s %}{{ s }}{{ s }}{% endcapture %}{% endfor %}",
                json!({}),
            )
        })
        .expect_err("stopped");
        assert!(e.contains("holds more than 32 MiB"), "{e}");
    }

    #[test]
    fn a_whole_default_sized_response_can_be_assigned() {
        // 30 MiB of JSON text in 100,000 strings: under the budget.
        let items: Vec<String> = (0..100_000).map(|i| format!("{i:0>300}")).collect();
        let out = crate::held::with_budget(|| {
            render(
                "{% assign rows = body.value %}{{ rows | size }}",
                json!({"body": {"value": items}}),
            )
        })
        .expect("within the budget");
        assert_eq!(out, "100000");
    }

    #[test]
    fn reassigning_a_variable_frees_what_it_held() {
        // 1 MiB assigned 200 times to the same name: 1 MiB held, not 200.
        let out = crate::held::with_budget(|| {
            render(
                "{% for i in (1..200) %}{% assign s = big | append: i %}{% endfor %}{{ s | size }}",
                json!({"big": "y".repeat(1 << 20)}),
            )
        })
        .expect("within the budget");
        assert_eq!(out, ((1 << 20) + 3).to_string());
    }
}
