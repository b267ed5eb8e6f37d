//! `multipart/form-data` bodies (RFC 7578) for `http_request` with
//! `content_type: data`, in Tines' payload shape: each key a field; a field
//! whose value is `{contents, filename}` (or `base64encodedcontents` for
//! bytes that are not text) is a file. The body is built as bytes, like
//! every other body, so that the credential host checks see all of it.

use serde_json::Value as J;

/// A field: its name, for a file its (file name, content type), its bytes.
type Part = (String, Option<(String, String)>, Vec<u8>);

/// The `content-type` header and the body of `payload` (an object).
pub(crate) fn encode(payload: &J) -> Result<(String, Vec<u8>), String> {
    let J::Object(fields) = payload else {
        return Err("`content_type: data` takes an object payload: one key per form field".into());
    };
    let mut parts: Vec<Part> = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        match value {
            J::Object(file) if file.contains_key("contents") || file.contains_key("base64encodedcontents") => {
                let bytes = match (file.get("base64encodedcontents"), file.get("contents")) {
                    // As Tines (Ruby's decode64): what is not base64 is skipped.
                    (Some(b64), _) => tale_core::template::filters::decode_base64(b64.as_str().unwrap_or_default())
                        .ok_or_else(|| format!("field `{name}`: `base64encodedcontents` is not base64"))?,
                    (None, Some(J::String(text))) => text.clone().into_bytes(),
                    (None, Some(other)) => other.to_string().into_bytes(),
                    (None, None) => Vec::new(),
                };
                let filename = file.get("filename").and_then(J::as_str).unwrap_or(name).to_owned();
                let content_type = file
                    .get("content_type")
                    .and_then(J::as_str)
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                parts.push((name.clone(), Some((filename, content_type)), bytes));
            }
            J::String(text) => parts.push((name.clone(), None, text.clone().into_bytes())),
            J::Null => parts.push((name.clone(), None, Vec::new())),
            other => parts.push((name.clone(), None, other.to_string().into_bytes())),
        }
    }
    // A boundary that occurs in no part.
    let boundary = loop {
        let candidate = format!("tale-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        if !parts.iter().any(|(_, _, b)| contains(b, candidate.as_bytes())) {
            break candidate;
        }
    };
    let mut body = Vec::new();
    for (name, file, bytes) in &parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", quoted(name));
        if let Some((filename, _)) = file {
            disposition.push_str(&format!("; filename=\"{}\"", quoted(filename)));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some((_, content_type)) = file {
            body.extend_from_slice(format!("Content-Type: {}\r\n", single_line(content_type)).as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((format!("multipart/form-data; boundary={boundary}"), body))
}

/// A name or file name inside quotes, as browsers escape it (HTML's
/// multipart/form-data encoding): `"` and line breaks percent-encoded.
fn quoted(s: &str) -> String {
    s.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A")
}

fn single_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_and_files_become_parts() {
        let (ct, body) = encode(&json!({
            "environment_id": "100",
            "count": 2,
            "file": {"contents": "hello", "filename": "a \"b\".txt"},
            "bin": {"base64encodedcontents": "AAH/", "filename": "x.bin", "content_type": "application/zip"}
        }))
        .expect("encoded");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").expect("a boundary");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"environment_id\"\r\n\r\n100\r\n"
        )));
        assert!(text.contains("name=\"count\"\r\n\r\n2\r\n"));
        assert!(text.contains(
            "name=\"file\"; filename=\"a %22b%22.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n"
        ));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        // The bytes of a base64 file arrive as they are.
        let at = body
            .windows(4)
            .position(|w| w == [0x00, 0x01, 0xff, b'\r'])
            .expect("the raw bytes");
        assert!(String::from_utf8_lossy(&body[..at]).ends_with("Content-Type: application/zip\r\n\r\n"));
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_refused() {
        assert!(encode(&json!("text")).is_err());
        // As Ruby's decode64 (Tines): what is not base64 is skipped, not refused.
        assert!(encode(&json!({"f": {"base64encodedcontents": "***"}})).is_ok());
    }
}
