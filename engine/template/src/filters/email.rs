//! `eml_parse`: an RFC 822 message as an object, in the shape of Tines'
//! e-mail events (what its IMAP action emits and what stories read after
//! `eml_parse`: `.subject`, `.from`, `.body`, `.headers`,
//! `.attachments[*].filename`, `.content_type`, `.sizeinbytes`,
//! `.base64encodedcontents`):
//!
//! ```json
//! {
//!   "message_id": "abc@example.com",
//!   "subject": "…",
//!   "from": "alice@example.com",
//!   "to": ["bob@example.com"], "cc": [], "bcc": [], "reply_to": [],
//!   "date": "2023-01-20T00:00:37+00:00",
//!   "mime_type": "multipart/alternative",
//!   "body": "<html>…",            // the HTML part if any, else the text part
//!   "body_text": "…", "body_html": "<html>…",
//!   "has_attachment": true,
//!   "attachments": [{"filename": "a.pdf", "content_type": "application/pdf",
//!                    "sizeinbytes": 1578, "md5": "…", "sha256": "…",
//!                    "base64encodedcontents": "…"}],
//!   "headers": {"Subject": "…", "Received": ["…", "…"], …}
//! }
//! ```
//!
//! Addresses are the bare addresses (a name-only address gives its name);
//! missing fields are nil or empty lists. A header that occurs more than
//! once (`Received`) is a list of its values; header values are the raw
//! text, unfolded, except that encoded words (`=?UTF-8?B?…?=`) are decoded.

use liquid_core::model::KString;
use liquid_core::{Object, Result, Value, ValueView};
use mail_parser::{Address, ContentType, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use md5::Md5;
use sha2::{Digest, Sha256};

use super::digest::hex;
use super::encoding::encode_base64;
use super::{fail, input_text};

const NAME: &str = "eml_parse";

pub(super) fn eml_parse(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let Some(text) = input_text(NAME, input)? else {
        return Ok(Value::Nil);
    };
    let message = MessageParser::default()
        .parse(text.as_bytes())
        .ok_or_else(|| fail(NAME, "the input is not an e-mail message (no headers found)"))?;
    Ok(Value::Object(to_object(&message)))
}

fn text(value: impl Into<String>) -> Value {
    Value::scalar(value.into())
}

fn optional_text(value: Option<impl Into<String>>) -> Value {
    value.map_or(Value::Nil, text)
}

fn insert(object: &mut Object, key: &'static str, value: Value) {
    object.insert(KString::from(key), value);
}

fn to_object(message: &Message<'_>) -> Object {
    let mut out = Object::new();
    insert(&mut out, "message_id", optional_text(message.message_id()));
    insert(&mut out, "subject", optional_text(message.subject()));
    let from = addresses(message.from());
    insert(&mut out, "from", from.into_iter().next().map_or(Value::Nil, text));
    insert(&mut out, "to", address_list(message.to()));
    insert(&mut out, "cc", address_list(message.cc()));
    insert(&mut out, "bcc", address_list(message.bcc()));
    insert(&mut out, "reply_to", address_list(message.reply_to()));
    insert(
        &mut out,
        "date",
        optional_text(message.date().map(|d| {
            let sign = if d.tz_before_gmt && (d.tz_hour > 0 || d.tz_minute > 0) {
                '-'
            } else {
                '+'
            };
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                d.year, d.month, d.day, d.hour, d.minute, d.second, d.tz_hour, d.tz_minute
            )
        })),
    );
    insert(&mut out, "mime_type", text(mime(message.content_type(), "text/plain")));

    let html = message.html_part(0).and_then(|p| match &p.body {
        PartType::Html(h) => Some(h.to_string()),
        _ => None,
    });
    let plain = message.text_part(0).and_then(|p| match &p.body {
        PartType::Text(t) => Some(t.to_string()),
        _ => None,
    });
    let body = html.clone().or_else(|| plain.clone()).unwrap_or_default();
    insert(&mut out, "body", text(body));
    insert(&mut out, "body_text", optional_text(plain));
    insert(&mut out, "body_html", optional_text(html));

    let attachments: Vec<Value> = message
        .attachments()
        .map(|part| {
            let contents = part.contents();
            let mut a = Object::new();
            insert(&mut a, "filename", optional_text(part.attachment_name()));
            let content_type = mime(part.content_type(), "application/octet-stream");
            insert(&mut a, "content_type", text(content_type));
            insert(&mut a, "sizeinbytes", Value::scalar(contents.len() as i64));
            insert(&mut a, "md5", text(hex(&Md5::digest(contents))));
            insert(&mut a, "sha256", text(hex(&Sha256::digest(contents))));
            insert(&mut a, "base64encodedcontents", text(encode_base64(contents)));
            Value::Object(a)
        })
        .collect();
    insert(&mut out, "has_attachment", Value::scalar(!attachments.is_empty()));
    insert(&mut out, "attachments", Value::Array(attachments));
    insert(&mut out, "headers", Value::Object(headers(message)));
    out
}

/// `type/subtype` in lower case, or `default` without a Content-Type.
fn mime(content_type: Option<&ContentType<'_>>, default: &str) -> String {
    match content_type {
        None => default.to_owned(),
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{sub}", ct.ctype()).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
    }
}

/// The addresses of a field: each address, or its name when it has none.
fn addresses(field: Option<&Address<'_>>) -> Vec<String> {
    field
        .map(|a| {
            a.iter()
                .filter_map(|addr| addr.address().or_else(|| addr.name()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn address_list(field: Option<&Address<'_>>) -> Value {
    Value::Array(addresses(field).into_iter().map(text).collect())
}

/// Top-level headers by name; a repeated header is a list of values.
fn headers(message: &Message<'_>) -> Object {
    let mut out = Object::new();
    let raw: &[u8] = &message.raw_message;
    for header in message.headers() {
        let start = header.offset_start as usize;
        let end = header.offset_end as usize;
        let raw_value = raw
            .get(start..end)
            .map(|b| unfold(&String::from_utf8_lossy(b)))
            .unwrap_or_default();
        let value = match &header.value {
            HeaderValue::Text(decoded) if raw_value.contains("=?") => decoded.to_string(),
            _ => raw_value,
        };
        let key = KString::from(header.name().to_owned());
        match out.get_mut(key.as_str()) {
            None => {
                out.insert(key, text(value));
            }
            Some(Value::Array(values)) => values.push(text(value)),
            Some(existing) => {
                let first = std::mem::replace(existing, Value::Nil);
                *existing = Value::Array(vec![first, text(value)]);
            }
        }
    }
    out
}

/// A raw header value on one line: folding line breaks removed, trimmed.
fn unfold(raw: &str) -> String {
    raw.replace(['\r', '\n'], "").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, ok, table};

    /// The example of Tines' EML_PARSE documentation.
    const TINES_EXAMPLE: &str = "Delivered-To: john@example.com\nDate: Fri, 20 Jan 2023 00:00:37 +0000\nFrom: John Smith john@example.com\nReply-To:john@example.com\nTo: john@example.com\nMessage-ID: <message_id>\nSubject: Example email\nMime-Version: 1.0\nContent-Type: multipart/alternative;\n boundary=\"--==_mimepart_63c9d9a544871_73eb214182db\";\n charset=UTF-8\nContent-Transfer-Encoding: 7bit\n\n\n----==_mimepart_63c9d9a544871_73eb214182db\nContent-Type: text/plain;\n charset=UTF-8\nContent-Transfer-Encoding: 7bit\n\nA real email body could go here\n----==_mimepart_63c9d9a544871_73eb214182db\nContent-Type: text/html;\n charset=UTF-8\nContent-Transfer-Encoding: 7bit\n\n<!DOCTYPE html>\n<html>\n <head>\n <meta content=\"text/html; charset=UTF-8\" http-equiv=\"Content-Type\" />\n </head>\n <body>\n A real email body could go here\n </body>\n</html>\n\n----==_mimepart_63c9d9a544871_73eb214182db--";

    /// CRLF line ends, an encoded subject, two Received headers, a
    /// quoted-printable text body and a base64 attachment.
    const WITH_ATTACHMENT: &str = "Received: from a.example by b.example; Fri, 20 Jan 2023 00:00:30 +0000\r\nReceived: from c.example\r\n by a.example; Fri, 20 Jan 2023 00:00:20 +0000\r\nFrom: \"Alice Example\" <alice@example.com>\r\nTo: Bob <bob@example.com>, carol@example.com\r\nCc: dave@example.com\r\nSubject: =?UTF-8?B?w4ljaGFudGlsbG9u?= report\r\nDate: Mon, 2 Jan 2023 15:04:05 -0500\r\nMessage-ID: <abc123@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSee attached caf=C3=A9.\r\n--XYZ\r\nContent-Type: text/csv; name=\"data.csv\"\r\nContent-Disposition: attachment; filename=\"data.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYSxiCjEsMgo=\r\n--XYZ--\r\n";

    #[test]
    fn tines_documentation_example() {
        table(
            json!({"m": TINES_EXAMPLE}),
            &[
                ("{% assign e = m | eml_parse %}{{ e.subject }}", "Example email"),
                ("{% assign e = m | eml_parse %}{{ e.message_id }}", "message_id"),
                (
                    "{% assign e = m | eml_parse %}{{ e.to | to_json }}",
                    r#"["john@example.com"]"#,
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.reply_to | to_json }}",
                    r#"["john@example.com"]"#,
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.date }}",
                    "2023-01-20T00:00:37+00:00",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.mime_type }}",
                    "multipart/alternative",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.body | truncate: 15, '' }}",
                    "<!DOCTYPE html>",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.body_text | strip }}",
                    "A real email body could go here",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.body_html | strip_html | strip }}",
                    "A real email body could go here",
                ),
                ("{% assign e = m | eml_parse %}{{ e.attachments | to_json }}", "[]"),
                ("{% assign e = m | eml_parse %}{{ e.has_attachment }}", "false"),
                (
                    "{% assign e = m | eml_parse %}{{ e.headers['Delivered-To'] }}",
                    "john@example.com",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.headers['Reply-To'] }}",
                    "john@example.com",
                ),
                ("{% assign e = m | eml_parse %}{{ e.headers.Subject }}", "Example email"),
            ],
        );
    }

    #[test]
    fn addresses_attachments_and_headers() {
        table(
            json!({"m": WITH_ATTACHMENT}),
            &[
                ("{% assign e = m | eml_parse %}{{ e.subject }}", "Échantillon report"),
                ("{% assign e = m | eml_parse %}{{ e.from }}", "alice@example.com"),
                (
                    "{% assign e = m | eml_parse %}{{ e.to | join: ',' }}",
                    "bob@example.com,carol@example.com",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.cc | to_json }}",
                    r#"["dave@example.com"]"#,
                ),
                ("{% assign e = m | eml_parse %}{{ e.bcc | to_json }}", "[]"),
                (
                    "{% assign e = m | eml_parse %}{{ e.date }}",
                    "2023-01-02T15:04:05-05:00",
                ),
                ("{% assign e = m | eml_parse %}{{ e.message_id }}", "abc123@example.com"),
                ("{% assign e = m | eml_parse %}{{ e.mime_type }}", "multipart/mixed"),
                ("{% assign e = m | eml_parse %}{{ e.body }}", "See attached café."),
                ("{% assign e = m | eml_parse %}{{ e.body_html | to_json }}", "null"),
                ("{% assign e = m | eml_parse %}{{ e.has_attachment }}", "true"),
                (
                    "{% assign e = m | eml_parse %}{{ e.attachments | to_json }}",
                    r#"[{"base64encodedcontents":"YSxiCjEsMgo=","content_type":"text/csv","filename":"data.csv","md5":"e5ebd4c02cefbe7955977c67ada242b7","sha256":"492d5ea496056f1a6a6592241032fab764c321596317930b4fa0e1e8bc3b7470","sizeinbytes":8}]"#,
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.attachments | jsonpath: '*.filename' | first }}",
                    "data.csv",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.attachments.first.base64encodedcontents | base64_decode }}",
                    "a,b\n1,2\n",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.headers.Subject }}",
                    "Échantillon report",
                ),
                (
                    "{% assign e = m | eml_parse %}{{ e.headers.From }}",
                    "\"Alice Example\" <alice@example.com>",
                ),
                ("{% assign e = m | eml_parse %}{{ e.headers.Received | size }}", "2"),
                (
                    "{% assign e = m | eml_parse %}{{ e.headers.Received | last }}",
                    "from c.example by a.example; Fri, 20 Jan 2023 00:00:20 +0000",
                ),
            ],
        );
    }

    #[test]
    fn round_trip_through_base64() {
        let data = json!({"b64": super::encode_base64(WITH_ATTACHMENT.as_bytes())});
        assert_eq!(
            ok("{% assign e = b64 | base64_decode | eml_parse %}{{ e.from }}", data),
            "alice@example.com"
        );
    }

    #[test]
    fn nil_and_wrong_input() {
        table(json!({"n": null}), &[("{{ n | eml_parse | to_json }}", "null")]);
        fails(
            "{{ a | eml_parse }}",
            json!({"a": [1]}),
            "eml_parse: expected text, got an array",
        );
    }
}
