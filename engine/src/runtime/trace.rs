//! Stored traces: one row per action execution under `tale serve` (what a
//! dry run prints), so that "which URL was called, how many retries, which
//! rule did not match" has an answer after the fact. Bounded in size;
//! built from an outcome the redactor has already seen, and its error text
//! redacted like a run's errors.

use serde_json::{Map, Value as J, json};

use super::event::{EventId, RunId};

/// A request body or a rendered value is kept up to this many bytes.
pub const EXCERPT_BYTES: usize = 2048;
/// At most this many detail entries (requests, rules) per execution.
pub const MAX_ENTRIES: usize = 32;
/// A trace's detail beyond this many bytes is replaced by a summary.
pub const MAX_DETAIL_BYTES: usize = 64 * 1024;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Succeeded,
    /// Errored, or took its `failure` branch.
    Failed,
    /// Its `rules` did not match (it did not run).
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "failed" => StepStatus::Failed,
            "skipped" => StepStatus::Skipped,
            _ => StepStatus::Succeeded,
        }
    }
}

/// One execution of an action, as it is stored.
#[derive(Debug, Clone)]
pub struct StepTrace {
    pub run_id: RunId,
    pub action: std::sync::Arc<str>,
    /// The event it received (none for a start).
    pub input: Option<EventId>,
    pub at_ms: i64,
    pub duration_us: i64,
    pub status: StepStatus,
    /// The branch it emitted on (`failure`, `no_match`…), if not the main one.
    pub branch: Option<&'static str>,
    /// How many events it emitted.
    pub emitted: i64,
    pub error: Option<String>,
    /// The detail entries as JSON text (requests with their attempts,
    /// rules with their rendered values), bounded; `None` when empty.
    pub detail: Option<String>,
}

impl StepTrace {
    /// The JSON the API and `tale runs show --json` give.
    pub fn to_json(&self) -> J {
        json!({
            "run_id": self.run_id.to_string(),
            "action": &*self.action,
            "input_event": self.input.map(|i| i.to_string()),
            "at": self.at_ms,
            "duration_ms": self.duration_us as f64 / 1000.0,
            "status": self.status,
            "branch": self.branch,
            "emitted": self.emitted,
            "error": self.error,
            "detail": self.detail.as_deref().and_then(|d| serde_json::from_str::<J>(d).ok()).unwrap_or(J::Array(Vec::new())),
        })
    }
}

/// The detail entries of an outcome, bounded: bodies and long rendered
/// values cut to an excerpt (with their size), a called story's own trace
/// left to its run, at most [`MAX_ENTRIES`], at most [`MAX_DETAIL_BYTES`].
pub fn bound_detail(entries: &[J]) -> Option<String> {
    if entries.is_empty() {
        return None;
    }
    // The common case, written as it is: nothing to cut or leave out.
    if entries.len() <= MAX_ENTRIES && entries.iter().all(within_bounds) {
        let text = serde_json::to_string(entries).ok()?;
        if text.len() <= MAX_DETAIL_BYTES {
            return Some(text);
        }
    }
    let mut kept: Vec<J> = entries.iter().take(MAX_ENTRIES).map(bound_entry).collect();
    if entries.len() > MAX_ENTRIES {
        kept.push(json!({"omitted_entries": entries.len() - MAX_ENTRIES}));
    }
    let text = serde_json::to_string(&kept).ok()?;
    if text.len() <= MAX_DETAIL_BYTES {
        return Some(text);
    }
    serde_json::to_string(&[json!({"omitted_entries": entries.len(), "bytes": text.len()})]).ok()
}

/// Whether an entry needs no cutting: no long text, no long list, no
/// called story's trace.
fn within_bounds(entry: &J) -> bool {
    match entry {
        J::String(s) => s.len() <= EXCERPT_BYTES,
        J::Array(a) => a.len() <= MAX_ENTRIES && a.iter().all(within_bounds),
        J::Object(o) => o.iter().all(|(k, v)| k != "trace" && within_bounds(v)),
        _ => true,
    }
}

fn bound_entry(entry: &J) -> J {
    let J::Object(o) = entry else {
        return excerpt_value(entry);
    };
    let mut out = Map::with_capacity(o.len());
    for (k, v) in o {
        match (k.as_str(), v) {
            // A called run keeps its own traces: only the link stays.
            ("trace", _) => {}
            ("body", J::String(s)) => {
                out.entry("body_bytes").or_insert_with(|| J::from(s.len()));
                out.insert("body".into(), J::String(excerpt(s)));
            }
            _ => {
                out.insert(k.clone(), excerpt_value(v));
            }
        }
    }
    J::Object(out)
}

/// A value with every string cut to an excerpt.
fn excerpt_value(v: &J) -> J {
    match v {
        J::String(s) => J::String(excerpt(s)),
        J::Array(a) => J::Array(a.iter().take(MAX_ENTRIES).map(excerpt_value).collect()),
        J::Object(o) => J::Object(o.iter().map(|(k, v)| (k.clone(), excerpt_value(v))).collect()),
        other => other.clone(),
    }
}

/// At most [`EXCERPT_BYTES`] of `s`, cut on a character boundary, marked
/// with `…` when cut.
pub fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT_BYTES {
        return s.to_owned();
    }
    let mut end = EXCERPT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_to_an_excerpt_with_their_size() {
        let body = "é".repeat(3000);
        let detail = bound_detail(&[json!({"method": "POST", "url": "https://x", "body": body, "attempt": 0})])
            .expect("test value");
        let d: J = serde_json::from_str(&detail).expect("test value");
        assert_eq!(d[0]["body_bytes"], 6000);
        let kept = d[0]["body"].as_str().expect("test value");
        assert!(kept.len() <= EXCERPT_BYTES + "…".len() && kept.ends_with('…'));
        assert_eq!(d[0]["method"], "POST");
    }

    #[test]
    fn many_entries_are_counted_not_kept() {
        let entries: Vec<J> = (0..100).map(|i| json!({"attempt": i})).collect();
        let d: J = serde_json::from_str(&bound_detail(&entries).expect("test value")).expect("test value");
        assert_eq!(d.as_array().expect("test value").len(), MAX_ENTRIES + 1);
        assert_eq!(d[MAX_ENTRIES]["omitted_entries"], 100 - MAX_ENTRIES);
        assert_eq!(bound_detail(&[]), None);
    }

    #[test]
    fn a_called_story_keeps_only_its_link() {
        let d = bound_detail(&[json!({"sub_story": "s", "run_id": "r", "trace": [{"action": "a"}]})]).expect("detail");
        let d: J = serde_json::from_str(&d).expect("json");
        assert_eq!(d, json!([{"run_id": "r", "sub_story": "s"}]));
    }

    #[test]
    fn a_huge_detail_becomes_a_summary() {
        let entries: Vec<J> = (0..MAX_ENTRIES)
            .map(|_| json!({"rows": (0..MAX_ENTRIES).map(|_| "x".repeat(EXCERPT_BYTES)).collect::<Vec<_>>()}))
            .collect();
        let d: J = serde_json::from_str(&bound_detail(&entries).expect("test value")).expect("test value");
        assert_eq!(d[0]["omitted_entries"], MAX_ENTRIES);
    }
}
