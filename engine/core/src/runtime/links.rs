//! Links a run's templates render: the run's page in the web UI
//! (`{% story_run_link %}`) and signed prompt links (`{% prompt status %}`,
//! Tines' human in the loop). A prompt link carries its run, action, the
//! event the action received, its status and its expiry, signed with
//! HMAC-SHA256: a click can answer only what was rendered, and only once
//! (the store holds one waiting item per prompted execution).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::event::RunId;

/// Where links point and how prompts are signed.
pub struct Links {
    /// Where `tale serve` answers, without a trailing slash.
    base: String,
    key: secrecy::SecretSlice<u8>,
    /// How long a prompt waits for its click.
    pub prompt_ttl_ms: i64,
    /// Whether an execution that rendered prompts waits for a click (only
    /// `tale serve` answers them; `tale run` and tests do not wait).
    pub wait: bool,
    /// Story tests: the answer given at once to each prompting action, by
    /// slug (a case's `prompts:`).
    pub answers: std::collections::BTreeMap<String, String>,
}

/// What a prompt link says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PromptClaim {
    /// The run's id.
    #[serde(rename = "r")]
    pub run: String,
    /// The action that rendered it.
    #[serde(rename = "a")]
    pub action: String,
    /// The id of the event that action received (none for a start).
    #[serde(rename = "e")]
    pub input: Option<String>,
    #[serde(rename = "s")]
    pub status: String,
    /// ms since the epoch.
    #[serde(rename = "x")]
    pub expires_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinkError {
    #[error("this is not a prompt link of this server")]
    Malformed,
    #[error("this prompt link was not signed by this server, or was changed")]
    BadSignature,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Links {
    /// `key`: any secret bytes (hashed into the HMAC key).
    pub fn new(base: &str, key: &[u8], prompt_ttl_ms: i64, wait: bool) -> Self {
        use sha2::Digest as _;
        let derived = Sha256::new_with_prefix(b"tale-prompt-links:")
            .chain_update(key)
            .finalize();
        Links {
            base: base.trim_end_matches('/').to_owned(),
            key: derived.to_vec().into(),
            prompt_ttl_ms,
            wait,
            answers: Default::default(),
        }
    }

    /// Answers given at once (story tests): an execution of one of these
    /// actions waits, and gets its answer as soon as the rest is idle.
    pub fn answering(mut self, answers: std::collections::BTreeMap<String, String>) -> Self {
        self.wait = self.wait || !answers.is_empty();
        self.answers = answers;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The run's page in the web UI.
    pub fn run_link(&self, run: RunId) -> String {
        format!("{}/ui/runs/{run}", self.base)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        use secrecy::ExposeSecret as _;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret()).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac
    }

    /// The link a person clicks to answer `claim.status`.
    pub fn prompt_link(&self, claim: &PromptClaim) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claim).unwrap_or_default());
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{}/prompt/{payload}.{signature}", self.base)
    }

    /// The claim of a link's token (what follows `/prompt/`), when this
    /// server signed it. Expiry is the caller's to check (against its clock).
    pub fn verify(&self, token: &str) -> Result<PromptClaim, LinkError> {
        let (payload, signature) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| LinkError::Malformed)?;
        self.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| LinkError::BadSignature)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| LinkError::Malformed)
    }
}

/// The wake payload of a prompted execution's waiting item, and of its answer.
pub fn prompt_waiting() -> serde_json::Value {
    serde_json::json!({"prompt": {"waiting": true}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> PromptClaim {
        PromptClaim {
            run: RunId::new().to_string(),
            action: "ask".into(),
            input: Some(super::super::event::EventId::new().to_string()),
            status: "contain".into(),
            expires_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn a_link_verifies_and_a_changed_one_does_not() {
        let links = Links::new("https://tale.example.com/", b"k3y", 60_000, true);
        let c = claim();
        let link = links.prompt_link(&c);
        let token = link
            .strip_prefix("https://tale.example.com/prompt/")
            .expect("the base, once");
        assert_eq!(links.verify(token), Ok(c.clone()));
        // Another status, same signature.
        let other = PromptClaim {
            status: "ignore".into(),
            ..c
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("json"));
        let signature = token.split_once('.').expect("dot").1;
        assert_eq!(
            links.verify(&format!("{forged_payload}.{signature}")),
            Err(LinkError::BadSignature)
        );
        assert_eq!(links.verify("nonsense"), Err(LinkError::Malformed));
        // Another server's key.
        let theirs = Links::new("https://tale.example.com", b"other", 60_000, true);
        assert_eq!(theirs.verify(token), Err(LinkError::BadSignature));
    }

    #[test]
    fn the_run_link_is_the_ui_page() {
        let links = Links::new("http://127.0.0.1:8080", b"k", 1, false);
        let run = RunId::new();
        assert_eq!(links.run_link(run), format!("http://127.0.0.1:8080/ui/runs/{run}"));
    }
}
