//! Checks of single values: slugs, cron, time zones, durations, JSONPath, URLs.

use std::time::Duration;

/// Action slugs: `[a-z0-9_]+`.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Words a template cannot use as a variable name.
const LIQUID_WORDS: &[&str] = &[
    "empty", "blank", "nil", "null", "true", "false", "and", "or", "contains", "in",
];

/// Why `s` cannot be an action slug, if it cannot: `[a-z0-9_]+`, starting
/// with a letter or `_` (templates read slugs as variables), and not a Liquid word.
pub fn check_slug(s: &str) -> Result<(), &'static str> {
    if !is_slug(s) {
        return Err("slugs use a-z, 0-9 and `_`");
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("templates cannot read a slug that starts with a digit");
    }
    if LIQUID_WORDS.contains(&s) {
        return Err("it is a Liquid keyword, which templates cannot read as an action");
    }
    Ok(())
}

/// Story ids (file stems): `[a-z0-9_-]+`.
pub fn is_story_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A slug close to what the user wrote: `Get Alert` → `get_alert`,
/// `1_receive` → `step_1_receive`, `empty` → `empty_action`.
pub fn slugify(s: &str) -> String {
    let slug = slugify_chars(s);
    if slug.starts_with(|c: char| c.is_ascii_digit()) {
        format!("step_{slug}")
    } else if LIQUID_WORDS.contains(&slug.as_str()) {
        format!("{slug}_action")
    } else {
        slug
    }
}

fn slugify_chars(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_owned();
    if out.is_empty() { "action".into() } else { out }
}

/// `30d`, `12h`, `1h 30m`, or a number of seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// The cron dialect of SPEC §2: five fields, six with seconds first, or a nickname.
pub fn cron(expr: &str) -> Result<croner::Cron, String> {
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build();
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!("expected 5 or 6 fields, found {fields}"));
    }
    parser.parse(expr).map_err(|e| {
        // Which field: each one alone, the others `*`.
        let given: Vec<&str> = expr.split_whitespace().collect();
        let (names, ranges): (&[&str], &[&str]) = if given.len() == 6 {
            (
                &["second", "minute", "hour", "day of month", "month", "day of week"],
                &["0-59", "0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-7 or SUN-SAT"],
            )
        } else {
            (
                &["minute", "hour", "day of month", "month", "day of week"],
                &["0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-7 or SUN-SAT"],
            )
        };
        let culprit = (0..given.len().min(names.len())).find(|&i| {
            let alone: Vec<&str> = (0..given.len()).map(|j| if j == i { given[i] } else { "*" }).collect();
            parser.parse(&alone.join(" ")).is_err()
        });
        match culprit {
            Some(i) => format!(
                "the {} field `{}` is not valid ({}): {}",
                names[i],
                given[i],
                ranges[i],
                e.to_string().trim_start_matches("Component error: ")
            ),
            None => e.to_string(),
        }
    })
}

pub fn timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|e| e.to_string())
}

pub fn timezone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

pub fn jsonpath(path: &str) -> Result<(), String> {
    let path = normalize_jsonpath(path);
    jsonpath_rust::parser::parse_json_path(&path)
        .map(|_| ())
        .map_err(|e| pest_message(&e.to_string()).unwrap_or_else(|| "it does not parse".into()))
}

/// The explanation in a pest error (`= expected …`), or its first line when
/// that is not just a position.
pub fn pest_message(full: &str) -> Option<String> {
    if let Some(e) = full.lines().map(str::trim).find_map(|l| l.strip_prefix("= ")) {
        return Some(e.to_owned());
    }
    let first = full.lines().next()?.trim();
    let first = first
        .split("-->")
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches(':')
        .trim();
    (!first.is_empty()).then(|| first.to_owned())
}

/// Why a regular expression does not compile, in one line.
pub fn regex_error(text: &str) -> Option<String> {
    let e = regex::Regex::new(text).err()?;
    let detail = e.to_string();
    let last = detail
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    Some(last.trim_start_matches("error:").trim().to_owned())
}

/// The literal host of a URL template: `https://graph.microsoft.com/{{ x }}`
/// has host `graph.microsoft.com`; a templated host has none.
pub fn literal_host(url: &str) -> Option<String> {
    let after_scheme = url.split_once("://")?.1;
    let authority_end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_end];
    // A credential in the user-info part (`https://u:{{ CREDENTIAL.x }}@host/`)
    // goes to the host after the last `@`.
    let host_part = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_part.contains("{{") || host_part.contains("{%") || host_part.is_empty() {
        return None;
    }
    url::Url::parse(&format!("https://{host_part}/"))
        .ok()?
        .host_str()
        .map(str::to_owned)
}

/// Whether `host` matches an `allowed_hosts` entry (exact or `*.example.com`).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == pattern,
        }
    })
}

/// Tines' JSONPath (Ruby's jsonpath gem) accepts paths without the leading
/// `$` (`*.filename`, `items[0]`, `..id`); RFC 9535, which the `jsonpath-rust`
/// crate implements, requires it. This adds it.
pub fn normalize_jsonpath(path: &str) -> std::borrow::Cow<'_, str> {
    let p = path.trim();
    if p.is_empty() {
        std::borrow::Cow::Borrowed("$")
    } else if p.starts_with('$') {
        std::borrow::Cow::Borrowed(p)
    } else if p.starts_with(['.', '[']) {
        std::borrow::Cow::Owned(format!("${p}"))
    } else {
        std::borrow::Cow::Owned(format!("$.{p}"))
    }
}

/// A comma-separated list of hosts (`TALE_CREDENTIAL_<NAME>_ALLOWED_HOSTS`):
/// trimmed, empty entries left out.
pub fn host_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_dialect() {
        assert!(cron("*/5 * * * *").is_ok());
        assert!(cron("0 */5 * * * *").is_ok());
        assert!(cron("@hourly").is_ok());
        assert!(cron("0 9 * * MON-FRI").is_ok());
        assert!(cron("61 * * * *").is_err());
        assert!(cron("* * *").is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(
            literal_host("https://graph.microsoft.com/v1.0/{{ x }}").as_deref(),
            Some("graph.microsoft.com")
        );
        assert_eq!(literal_host("https://{{ RESOURCE.host }}/x"), None);
        assert_eq!(literal_host("{{ url }}"), None);
        assert_eq!(
            literal_host("https://u:{{ CREDENTIAL.x }}@evil.net/").as_deref(),
            Some("evil.net")
        );
        assert_eq!(
            literal_host("https://graph.microsoft.com:443/x").as_deref(),
            Some("graph.microsoft.com")
        );
        let allowed = vec!["*.microsoft.com".to_owned(), "api.example.com".to_owned()];
        assert!(host_allowed("graph.microsoft.com", &allowed));
        assert!(!host_allowed("microsoft.com.evil.net", &allowed));
        assert!(host_allowed("API.example.com", &allowed));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30d").ok(), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(duration("3600").ok(), Some(Duration::from_secs(3600)));
        assert!(duration("soon").is_err());
    }
}
