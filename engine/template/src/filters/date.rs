//! `date`, replacing the standard one: liquid's `date` reads only text (so
//! `{{ 'now' | date: '%s' | plus: 3600 | date: '%H:%M' }}`, where the second
//! `date` gets a number, printed the number unchanged) and only its own
//! formats (not ISO 8601 with a `T`, which every API returns).
//!
//! Accepted input: `"now"` / `"today"`, unix seconds (numbers or text,
//! fractions allowed), ISO 8601 / RFC 3339 (`2024-05-01T10:00:00Z`,
//! `2024-05-01T10:00:00.1234567+02:00`, `2024-05-01T10:00:00` read as UTC,
//! `2024-05-01`), RFC 2822 (`Fri, 20 Jan 2023 00:00:37 +0000`, as in e-mail),
//! and liquid's own formats (`2024-05-01 10:00:00 +0200`). The time keeps
//! the input's offset; "now" and unix seconds are UTC. Input that is not a
//! date comes back unchanged, as in Liquid.

use liquid_core::model::DateTime;
use liquid_core::{Result, Value, ValueView};
use time::format_description::well_known::{Iso8601, Rfc2822, Rfc3339};
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use super::{Kind, arg_text, fail, kind};

pub(super) fn date(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    let format = arg_text("date", args, 0, "format")?.unwrap_or_default();
    if format.is_empty() {
        return Ok(input.to_value());
    }
    let Some(when) = parse_input(input) else {
        return Ok(input.to_value());
    };
    let mut date_time = DateTime::default();
    *date_time = when;
    let text = date_time
        .format(&format)
        .map_err(|_| fail("date", format!("invalid format `{format}`")))?;
    Ok(Value::scalar(text))
}

fn parse_input(input: &dyn ValueView) -> Option<OffsetDateTime> {
    let Kind::Scalar(s) = kind(input) else {
        return None;
    };
    match s.type_name() {
        "whole number" => OffsetDateTime::from_unix_timestamp(s.to_integer()?).ok(),
        "fractional number" => from_seconds(s.to_float()?),
        "date time" => s.to_date_time().map(|d| *d),
        "date" => s.to_date().map(|d| d.midnight().assume_utc()),
        _ => parse_text(&s.into_cow_str()),
    }
}

fn from_seconds(seconds: f64) -> Option<OffsetDateTime> {
    if !seconds.is_finite() {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9).round() as i128).ok()
}

thread_local! {
    /// The run's "now" while a template renders (see `with_now`).
    static NOW_MS: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// Renders with `'now'` meaning `now_ms` (the run's clock): a render is
/// synchronous, so a thread-local set around it is seen by every filter in it.
pub fn with_now<R>(now_ms: Option<i64>, render: impl FnOnce() -> R) -> R {
    let before = NOW_MS.with(|n| n.replace(now_ms));
    let result = render();
    NOW_MS.with(|n| n.set(before));
    result
}

fn now() -> OffsetDateTime {
    NOW_MS
        .with(std::cell::Cell::get)
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// Text in any of the formats above.
pub(crate) fn parse_text(text: &str) -> Option<OffsetDateTime> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if t.eq_ignore_ascii_case("now") || t.eq_ignore_ascii_case("today") {
        return Some(now());
    }
    if let Ok(seconds) = t.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(seconds).ok();
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
        if let Ok(seconds) = t.parse::<f64>() {
            return from_seconds(seconds);
        }
    }
    OffsetDateTime::parse(t, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(t, &Iso8601::DEFAULT))
        .or_else(|_| PrimitiveDateTime::parse(t, &Iso8601::DEFAULT).map(PrimitiveDateTime::assume_utc))
        .or_else(|_| Date::parse(t, &Iso8601::DEFAULT).map(|d| d.midnight().assume_utc()))
        .or_else(|_| OffsetDateTime::parse(t, &Rfc2822))
        .ok()
        .or_else(|| DateTime::from_str(t).map(|d| *d))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{ok, table};
    use super::*;

    #[test]
    fn formats_dates_from_every_source() {
        table(
            json!({
                "secs": 1455616800,
                "text_secs": "1455616800",
                "frac": 1455616800.75,
                "iso": "2016-02-16T10:00:00Z",
                "iso_offset": "2016-02-16T10:00:00+01:00",
                "iso_frac": "2016-02-16T10:00:00.1234567Z",
                "iso_local": "2016-02-16T10:00:00",
                "day": "2016-02-16",
                "mail": "Fri, 20 Jan 2023 00:00:37 +0000",
                "liquid": "2016-02-16 10:00:00 +0100",
                "n": null,
                "word": "soon",
            }),
            &[
                ("{{ secs | date: '%Y-%m-%dT%H:%M:%S' }}", "2016-02-16T10:00:00"),
                ("{{ text_secs | date: '%Y-%m-%d %H:%M' }}", "2016-02-16 10:00"),
                ("{{ frac | date: '%s' }}", "1455616800"),
                ("{{ iso | date: '%d/%m/%Y %H:%M:%S %z' }}", "16/02/2016 10:00:00 +0000"),
                ("{{ iso_offset | date: '%H:%M %z' }}", "10:00 +0100"),
                ("{{ iso_offset | date: '%s' }}", "1455613200"),
                ("{{ iso_frac | date: '%s' }}", "1455616800"),
                ("{{ iso_local | date: '%s' }}", "1455616800"),
                ("{{ day | date: '%A %-d %B %Y' }}", "Tuesday 16 February 2016"),
                ("{{ mail | date: '%Y-%m-%d %H:%M:%S' }}", "2023-01-20 00:00:37"),
                ("{{ liquid | date: '%s' }}", "1455613200"),
                // the arithmetic idiom: `date: '%s'` gives text, `plus` a number
                (
                    "{{ text_secs | date: '%s' | plus: 86400 | date: '%Y-%m-%d' }}",
                    "2016-02-17",
                ),
                ("{{ 0 | date: '%Y' }}", "1970"),
                // not a date: unchanged, as in Liquid
                ("{{ word | date: '%Y' }}", "soon"),
                ("{{ n | date: '%Y' }}", ""),
                ("{{ iso | date: '' }}", "2016-02-16T10:00:00Z"),
            ],
        );
    }

    #[test]
    fn now_is_now() {
        let before = OffsetDateTime::now_utc().unix_timestamp();
        let rendered = ok("{{ 'now' | date: '%s' }}", json!({}));
        let after = OffsetDateTime::now_utc().unix_timestamp();
        let got: i64 = rendered.parse().expect("seconds");
        assert!((before..=after).contains(&got), "{got} not in {before}..={after}");
        let tomorrow = ok("{{ 'now' | date: '%s' | plus: 86400 | date: '%s' }}", json!({}));
        let tomorrow: i64 = tomorrow.parse().expect("seconds");
        assert!((before + 86400..=after + 86400).contains(&tomorrow));
        assert_eq!(ok("{{ 'Today' | date: '%Y' }}", json!({})).len(), 4);
    }

    #[test]
    fn now_follows_the_run_clock_while_a_template_renders() {
        let rendered = super::with_now(Some(1_736_845_200_000), || {
            ok("{{ 'now' | date: '%Y-%m-%dT%H:%M' }}", json!({}))
        });
        assert_eq!(rendered, "2025-01-14T09:00");
        // Outside the render, the system clock again.
        let year: i64 = ok("{{ 'now' | date: '%Y' }}", json!({})).parse().expect("year");
        assert!(year >= 2025);
    }

    #[test]
    fn parses_text() {
        let at = |t: &str| parse_text(t).map(|d| d.unix_timestamp());
        assert_eq!(at("1455616800"), Some(1455616800));
        assert_eq!(at("-1"), Some(-1));
        assert_eq!(at("2016-02-16T10:00:00.5-01:00"), Some(1455620400));
        assert_eq!(at("Tue, 16 Feb 2016 10:00:00 GMT"), Some(1455616800));
        assert_eq!(at("16 Feb 2016 10:00:00 +0000"), Some(1455616800));
        assert_eq!(at("yesterday-ish"), None);
        assert_eq!(at(""), None);
    }
}
