//! base64 and HTML encodings.
//!
//! Tines runs on Ruby: `base64_encode` is `Base64.strict_encode64` (no line
//! breaks), `base64url_encode` is `Base64.urlsafe_encode64` (which keeps the
//! `=` padding). The decoders are lenient the way Tines users rely on:
//! whitespace and line breaks are ignored, padding is optional, and both
//! alphabets are accepted (Microsoft Graph sends standard base64 where
//! stories use `base64url_decode`; Ruby's `urlsafe_decode64` accepts it too).
//!
//! Decoded bytes become text: bytes that are not UTF-8 are replaced by
//! U+FFFD (a Liquid value is text, not bytes).

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE};
use liquid_core::{Result, Value, ValueView};

use super::{fail, input_text};

/// Standard alphabet, padding optional, trailing bits tolerated.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes base64 in either alphabet, ignoring whitespace.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    // Ruby's `Base64.decode64` (Tines' `base64_decode`): characters outside
    // the alphabet are skipped, padding is optional and an incomplete last
    // group is dropped; both alphabets are read.
    // Padding ends the data, as in Ruby (`"YQ==YQ=="` is `a`).
    let text = text.split('=').next().unwrap_or("");
    let mut cleaned: Vec<u8> = text
        .bytes()
        .filter_map(|c| match c {
            b'-' => Some(b'+'),
            b'_' => Some(b'/'),
            c if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' => Some(c),
            _ => None,
        })
        .collect();
    if cleaned.len() % 4 == 1 {
        cleaned.pop();
    }
    LENIENT.decode(&cleaned).ok()
}

/// Standard base64 with padding.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn encode_with(filter: &str, input: &dyn ValueView, url_safe: bool) -> Result<Value> {
    let Some(text) = input_text(filter, input)? else {
        return Ok(Value::Nil);
    };
    let out = if url_safe {
        URL_SAFE.encode(text.as_bytes())
    } else {
        STANDARD.encode(text.as_bytes())
    };
    Ok(Value::scalar(out))
}

fn decode_with(filter: &str, input: &dyn ValueView) -> Result<Value> {
    let Some(text) = input_text(filter, input)? else {
        return Ok(Value::Nil);
    };
    let bytes = decode_base64(&text).ok_or_else(|| fail(filter, "input is not valid base64"))?;
    Ok(Value::scalar(String::from_utf8_lossy(&bytes).into_owned()))
}

pub(super) fn base64_encode(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    encode_with("base64_encode", input, false)
}

pub(super) fn base64_decode(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    decode_with("base64_decode", input)
}

pub(super) fn base64url_encode(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    encode_with("base64url_encode", input, true)
}

pub(super) fn base64url_decode(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    decode_with("base64url_decode", input)
}

/// Escapes `& < > " '` as Ruby's `CGI.escapeHTML` does (`'` as `&#39;`);
/// other characters, accented letters included, are kept (Tines' own
/// example: `<élan>` becomes `&lt;élan&gt;`).
pub(super) fn html_encode(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let Some(text) = input_text("html_encode", input)? else {
        return Ok(Value::Nil);
    };
    Ok(Value::scalar(html_escape_text(&text)))
}

/// `html_encode` (and Liquid's `escape`): the five characters HTML and XML
/// give meaning to. The redactor hides a credential in this form too.
pub fn html_escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes every named (HTML5) and numeric entity; an `&` that starts no
/// known entity is kept as it is.
pub(super) fn html_decode(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let Some(text) = input_text("html_decode", input)? else {
        return Ok(Value::Nil);
    };
    Ok(Value::scalar(decode_entities(&text)))
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match entity(after) {
            Some((decoded, used)) => {
                out.push_str(&decoded);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The entity at the start of `after` (the text right after an `&`): what it
/// decodes to and how many bytes it spans, `;` included.
fn entity(after: &str) -> Option<(String, usize)> {
    // The longest HTML5 entity name has 32 characters.
    let semi = after.bytes().take(40).position(|b| b == b';')?;
    let name = &after[..semi];
    let decoded = if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse::<u32>().ok()?,
        };
        char::from_u32(code)?.to_string()
    } else {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let found = html_escape::NAMED_ENTITIES
            .binary_search_by(|(n, _)| n.cmp(&name.as_bytes()))
            .ok()?;
        html_escape::NAMED_ENTITIES[found].1.to_owned()
    };
    Some((decoded, semi + 1))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, ok, table};

    #[test]
    fn base64() {
        table(
            json!({"n": null, "num": 42, "bin": "/w==", "nl": "dXNl\ncjpw\r\nYXNz"}),
            &[
                ("{{ 'user:pass' | base64_encode }}", "dXNlcjpwYXNz"),
                ("{{ '' | base64_encode }}", ""),
                ("{{ 'a' | base64_encode }}", "YQ=="),
                ("{{ 'é' | base64_encode }}", "w6k="),
                ("{{ num | base64_encode }}", "NDI="),
                ("{{ n | base64_encode }}", ""),
                ("{{ 'dXNlcjpwYXNz' | base64_decode }}", "user:pass"),
                ("{{ 'YQ==' | base64_decode }}", "a"),
                // padding is optional, whitespace and line breaks are ignored
                ("{{ 'YQ' | base64_decode }}", "a"),
                ("{{ nl | base64_decode }}", "user:pass"),
                ("{{ 'w6k=' | base64_decode }}", "é"),
                ("{{ n | base64_decode }}", ""),
                // a byte that is not UTF-8 becomes U+FFFD
                ("{{ bin | base64_decode }}", "\u{FFFD}"),
                ("{{ '' | base64_decode }}", ""),
            ],
        );
    }

    #[test]
    fn base64url() {
        table(
            json!({"n": null}),
            &[
                // bytes 3f 3f 3e: '+' in the standard alphabet, '-' in the URL-safe one
                ("{{ '??>' | base64url_encode }}", "Pz8-"),
                ("{{ '??>' | base64_encode }}", "Pz8+"),
                ("{{ 'a' | base64url_encode }}", "YQ=="),
                ("{{ 'Pz8-' | base64url_decode }}", "??>"),
                // the standard alphabet and missing padding are accepted
                ("{{ 'Pz8+' | base64url_decode }}", "??>"),
                ("{{ 'YQ' | base64url_decode }}", "a"),
                ("{{ 'eyJhbGciOiJIUzI1NiJ9' | base64url_decode }}", r#"{"alg":"HS256"}"#),
                ("{{ n | base64url_decode }}", ""),
            ],
        );
    }

    #[test]
    fn base64_errors() {
        // As Ruby's decode64: what is not base64 is skipped, not an error.
        assert_eq!(ok("{{ 'dXNl cjpw!YXNz' | base64_decode }}", json!({})), "user:pass");
        assert_eq!(ok("{{ 'a' | base64url_decode }}", json!({})), "");
        assert_eq!(ok("{{ 'YQ==YQ==' | base64_decode }}", json!({})), "a");
        fails(
            "{{ a | base64_encode }}",
            json!({"a": [1]}),
            "base64_encode: expected text, got an array",
        );
        fails(
            "{{ o | base64_decode }}",
            json!({"o": {"k": 1}}),
            "base64_decode: expected text, got an object",
        );
    }

    #[test]
    fn html() {
        table(
            json!({"n": null}),
            &[
                ("{{ '<élan>' | html_encode }}", "&lt;élan&gt;"),
                (
                    r#"{{ 'a & b "c" it' | append: "'s" | html_encode }}"#,
                    "a &amp; b &quot;c&quot; it&#39;s",
                ),
                ("{{ 'plain' | html_encode }}", "plain"),
                ("{{ n | html_encode }}", ""),
                ("{{ '&lt;élan&gt;' | html_decode }}", "<élan>"),
                (
                    "{{ '&amp;amp; &quot;&#39;&#x41;&#66;&nbsp;&copy;' | html_decode }}",
                    "&amp; \"'AB\u{a0}©",
                ),
                ("{{ 'AT&T &unknown; & done' | html_decode }}", "AT&T &unknown; & done"),
                // a stray `&` does not hide the entities after it
                ("{{ 'Tom & Jerry &lt;3 &#;' | html_decode }}", "Tom & Jerry <3 &#;"),
                ("{{ '&#128512; &#x1F600;' | html_decode }}", "\u{1F600} \u{1F600}"),
                ("{{ n | html_decode }}", ""),
            ],
        );
    }
}
