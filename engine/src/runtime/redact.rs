//! Keeps credential values out of what tale prints and stores: each value,
//! and its base64 and base64url encodings, becomes `[credential:name]`.

use base64::Engine as _;
use serde_json::Value as J;

/// Values shorter than this are not redacted: they would blank out ordinary
/// words (and are not secrets worth the name).
const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Default, Clone)]
pub struct Redactor {
    needles: Vec<(String, String)>,
}

impl Redactor {
    /// From the `CREDENTIAL` object templates see.
    pub fn new(credentials: &J) -> Self {
        match credentials {
            J::Object(o) => Self::from_pairs(o.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))),
            _ => Self::default(),
        }
    }

    /// From (name, value) pairs: one name may come with several values (a
    /// rotated credential still used by a story that kept its old version).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut needles = Vec::new();
        for (name, v) in pairs {
            if v.len() < MIN_SECRET_LEN {
                continue;
            }
            let label = format!("[credential:{name}]");
            let json_escaped = serde_json::to_string(v).unwrap_or_default();
            let engines = [
                base64::engine::general_purpose::STANDARD.encode(v),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(v),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v),
                // In a URL or a form, and inside JSON text.
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>(),
                json_escaped[1..json_escaped.len().saturating_sub(1).max(1)].to_owned(),
            ];
            needles.push((v.to_owned(), label.clone()));
            for e in engines.into_iter().filter(|e| e.len() >= MIN_SECRET_LEN) {
                needles.push((e, label.clone()));
            }
        }
        // Longest first, so that an encoding is replaced before a value inside it.
        needles.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        needles.dedup_by(|a, b| a.0 == b.0);
        Self { needles }
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (needle, label) in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), label);
            }
        }
        out
    }

    pub fn json(&self, value: &J) -> J {
        if self.needles.is_empty() {
            return value.clone();
        }
        match value {
            J::String(s) => J::String(self.text(s)),
            J::Array(a) => J::Array(a.iter().map(|v| self.json(v)).collect()),
            J::Object(o) => J::Object(o.iter().map(|(k, v)| (self.text(k), self.json(v))).collect()),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_their_encodings() {
        let r = Redactor::new(&json!({"graph": "s3cr3t-token", "short": "ab", "key": "abc+def/ghi=\"x"}));
        assert_eq!(r.text("?k=abc%2Bdef%2Fghi%3D%22x"), "?k=[credential:key]");
        assert_eq!(r.text(r#"{"t":"abc+def/ghi=\"x"}"#), r#"{"t":"[credential:key]"}"#);
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t-token");
        let out = r.json(&json!({"auth": "Bearer s3cr3t-token", "echo": [b64], "ab": "ab"}));
        assert_eq!(
            out,
            json!({"auth": "Bearer [credential:graph]", "echo": ["[credential:graph]"], "ab": "ab"})
        );
    }
}
