//! Typed credentials from a credentials file (SPEC §5): `text`, `basic`,
//! `header` and `oauth2_client_credentials`. An OAuth2 token is fetched when
//! a request first needs it, once however many requests need it at the same
//! moment (single flight), and kept until shortly before it expires; both
//! Microsoft identity platform forms work (v1 `resource`, v2 `scope`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value as J;

use super::clock::Clock;
use super::http::{HttpClient, HttpRequest};

/// A token is renewed this long before it expires.
const EARLY_MS: i64 = 60_000;

/// A credential's secret parts live in [`SecretString`]s: zeroed when
/// dropped, and `[REDACTED]` in any `Debug` output.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Sent as `Authorization: Bearer <value>`.
    Text(SecretString),
    /// Sent as `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: SecretString },
    /// Sent as the header `name: value`.
    Header { name: String, value: SecretString },
    /// A token from the token endpoint, sent as `Authorization: Bearer <token>`.
    OAuth2(OAuth2),
}

impl Credential {
    /// The type's name as the credentials file writes it.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Text(_) => "text",
            Credential::Basic { .. } => "basic",
            Credential::Header { .. } => "header",
            Credential::OAuth2(_) => "oauth2_client_credentials",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// v2 endpoints (`…/oauth2/v2.0/token`): `https://graph.microsoft.com/.default`.
    pub scope: Option<String>,
    /// v1 endpoints (`…/oauth2/token`): `https://graph.microsoft.com`.
    pub resource: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CredentialError {
    #[error("credential `{0}` is not configured")]
    Missing(String),
    #[error("credential `{name}`: the token endpoint answered {status}: {detail}")]
    Refused { name: String, status: u16, detail: String },
    #[error("credential `{name}`: the token endpoint could not be reached: {detail}")]
    Unreachable { name: String, detail: String },
    #[error("credential `{name}`: the token endpoint's answer has no usable access_token")]
    BadAnswer { name: String },
    #[error("{0}")]
    File(String),
}

/// One credential as the credentials file and the API write it: `check`
/// reads its name and hosts (decoded with spans), the runtime its values,
/// and the server's store keeps it sealed (`runtime::sealed`).
#[derive(Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
}

/// Only what is not secret.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("type", &self.kind)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The typed credential, or why the entry is incomplete (never quoting a value).
    pub fn to_credential(&self, name: &str) -> Result<Credential, String> {
        let need = |v: &Option<String>, key: &str| {
            v.clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("`{name}` needs `{key}`"))
        };
        let secret = |v: &Option<String>, key: &str| need(v, key).map(SecretString::from);
        Ok(match self.kind.as_deref().unwrap_or("text") {
            "text" => Credential::Text(secret(&self.value, "value")?),
            "basic" => Credential::Basic {
                username: need(&self.username, "username")?,
                password: secret(&self.password, "password")?,
            },
            "header" => Credential::Header {
                name: need(&self.header, "header")?,
                value: secret(&self.value, "value")?,
            },
            "oauth2_client_credentials" => {
                if self.scope.is_none() && self.resource.is_none() {
                    return Err(format!("`{name}` needs `scope` (v2) or `resource` (v1)"));
                }
                Credential::OAuth2(OAuth2 {
                    token_url: need(&self.token_url, "token_url")?,
                    client_id: need(&self.client_id, "client_id")?,
                    client_secret: secret(&self.client_secret, "client_secret")?,
                    scope: self.scope.clone(),
                    resource: self.resource.clone(),
                })
            }
            other => {
                return Err(format!(
                    "`{name}` has type `{other}`: text, basic, header or oauth2_client_credentials"
                ));
            }
        })
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: SecretString,
    expires_at_ms: i64,
}

/// The typed credentials, and the tokens fetched for them.
#[derive(Debug, Default)]
pub struct Vault {
    entries: HashMap<String, Credential>,
    /// Allowed hosts, by name.
    pub allowed_hosts: HashMap<String, Vec<String>>,
    /// One lock per OAuth2 credential: who holds it fetches, the others wait
    /// and then read the cached token.
    tokens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
    /// The tokens fetched, for the redactors and host checks built before.
    pub live: Arc<super::redact::LiveSecrets>,
}

impl Vault {
    pub fn new(entries: HashMap<String, Credential>) -> Self {
        Self {
            entries: entries.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
            ..Self::default()
        }
    }

    /// The credentials of a credentials file's text (a mapping of name to
    /// `{type, …}`); `origin` names the file in errors. Reading the file is
    /// the engine's (`environment::read_credentials_file`).
    pub fn from_text(origin: &str, text: &str) -> Result<Self, CredentialError> {
        let file = |m: String| CredentialError::File(format!("{origin}: {m}"));
        let node = crate::yaml::parse(text, &crate::yaml::Limits::default()).map_err(|e| file(e.to_string()))?;
        let raw: HashMap<String, Entry> = serde_json::from_value(node.to_json()).map_err(|e| file(e.to_string()))?;
        let mut vault = Vault::default();
        for (name, e) in raw {
            vault.insert(&name, &e).map_err(file)?;
        }
        Ok(vault)
    }

    /// Adds (or replaces) a credential.
    pub fn insert(&mut self, name: &str, entry: &Entry) -> Result<(), String> {
        let name = name.to_ascii_lowercase();
        let credential = entry.to_credential(&name)?;
        match &entry.allowed_hosts {
            Some(hosts) => self.allowed_hosts.insert(name.clone(), hosts.clone()),
            None => self.allowed_hosts.remove(&name),
        };
        self.entries.insert(name, credential);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Credential> {
        self.entries.get(&name.to_ascii_lowercase())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The OAuth2 credentials among `names` (their templates need a token).
    pub fn oauth2_among<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Vec<String> {
        let mut out: Vec<String> = names
            .into_iter()
            .map(str::to_ascii_lowercase)
            .filter(|n| matches!(self.entries.get(n), Some(Credential::OAuth2(_))))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// What templates see as `CREDENTIAL.name` (an OAuth2 credential's token
    /// is fetched when an action reads it: see [`Vault::token_for`]).
    pub fn template_value(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Credential::Text(v) => Some(v.expose_secret().to_owned()),
            Credential::Basic { username, password } => Some(format!("{username}:{}", password.expose_secret())),
            Credential::Header { value, .. } => Some(value.expose_secret().to_owned()),
            Credential::OAuth2(_) => None,
        }
    }

    /// Every secret value, for redaction: values, passwords, client secrets,
    /// and the tokens fetched so far.
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, c) in &self.entries {
            let value = match c {
                Credential::Text(v) => v,
                Credential::Basic { password, .. } => password,
                Credential::Header { value, .. } => value,
                Credential::OAuth2(o) => &o.client_secret,
            };
            out.push((name.clone(), value.expose_secret().to_owned()));
        }
        out.extend(self.live.snapshot());
        out
    }

    /// The current token of the OAuth2 credential `name` (fetched or cached).
    pub async fn token_for(
        &self,
        name: &str,
        http: &dyn HttpClient,
        clock: &dyn Clock,
    ) -> Result<String, CredentialError> {
        match self.get(name) {
            Some(Credential::OAuth2(o)) => self.token(name, o, http, clock).await,
            _ => Err(CredentialError::Missing(name.to_owned())),
        }
    }

    /// The header a request with `credential: name` carries.
    pub async fn header(
        &self,
        name: &str,
        http: &dyn HttpClient,
        clock: &dyn Clock,
    ) -> Result<(String, String), CredentialError> {
        use base64::Engine as _;
        match self
            .get(name)
            .ok_or_else(|| CredentialError::Missing(name.to_owned()))?
        {
            Credential::Text(v) => Ok(("authorization".into(), format!("Bearer {}", v.expose_secret()))),
            Credential::Basic { username, password } => Ok((
                "authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose_secret()))
                ),
            )),
            Credential::Header { name, value } => Ok((name.to_ascii_lowercase(), value.expose_secret().to_owned())),
            Credential::OAuth2(o) => {
                let token = self.token(name, o, http, clock).await?;
                Ok(("authorization".into(), format!("Bearer {token}")))
            }
        }
    }

    /// The cached token, or a new one: one fetch at a time per credential.
    async fn token(
        &self,
        name: &str,
        o: &OAuth2,
        http: &dyn HttpClient,
        clock: &dyn Clock,
    ) -> Result<String, CredentialError> {
        let slot = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_ascii_lowercase())
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| t.expires_at_ms - EARLY_MS > clock.now_ms()) {
            return Ok(t.value.expose_secret().to_owned());
        }
        let token = fetch(name, o, http, clock).await?;
        let value = token.value.expose_secret().to_owned();
        self.live.add(&name.to_ascii_lowercase(), &value);
        *cached = Some(token);
        Ok(value)
    }
}

/// POSTs the client-credentials grant (form-encoded, as both Microsoft
/// endpoints want it) and reads `access_token` and `expires_in` (a number,
/// or text on v1 endpoints).
async fn fetch(name: &str, o: &OAuth2, http: &dyn HttpClient, clock: &dyn Clock) -> Result<Token, CredentialError> {
    // Built in a block: the serializer is not `Send`, and must not live
    // across the await below.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &o.client_id)
            .append_pair("client_secret", o.client_secret.expose_secret());
        if let Some(scope) = &o.scope {
            form.append_pair("scope", scope);
        }
        if let Some(resource) = &o.resource {
            form.append_pair("resource", resource);
        }
        form.finish().into_bytes()
    };
    let request = HttpRequest {
        method: "post".into(),
        url: o.token_url.clone(),
        headers: vec![
            ("content-type".into(), "application/x-www-form-urlencoded".into()),
            ("accept".into(), "application/json".into()),
        ],
        body: Some(body),
        timeout: Duration::from_secs(30),
        max_response_bytes: super::http::DEFAULT_MAX_RESPONSE_BYTES,
        verify_tls: true,
    };
    let started = clock.now_ms();
    let response = http.send(request).await.map_err(|e| CredentialError::Unreachable {
        name: name.to_owned(),
        detail: e.to_string(),
    })?;
    let body: J = serde_json::from_slice(&response.body).unwrap_or(J::Null);
    if !(200..300).contains(&response.status) {
        // AADSTS codes say why (`error_description`); never the request.
        let detail = body["error_description"]
            .as_str()
            .or_else(|| body["error"].as_str())
            .unwrap_or("no details")
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        return Err(CredentialError::Refused {
            name: name.to_owned(),
            status: response.status,
            detail,
        });
    }
    let value = body["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CredentialError::BadAnswer { name: name.to_owned() })?
        .to_owned();
    let expires_in = match &body["expires_in"] {
        J::Number(n) => n.as_i64(),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(3600)
    .clamp(0, 86_400 * 30);
    Ok(Token {
        value: value.into(),
        expires_at_ms: started + expires_in * 1000,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::clock::VirtualClock;
    use crate::runtime::http::{HttpResponse, Mock, MockHttp};

    fn token_mock(responses: Vec<(u16, &str)>) -> MockHttp {
        MockHttp::new(vec![Mock {
            method: "POST".into(),
            url: "https://login.test/*".into(),
            responses: responses
                .into_iter()
                .map(|(status, body)| HttpResponse {
                    status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body.as_bytes().to_vec(),
                })
                .collect(),
            delays: Vec::new(),
        }])
    }

    fn graph(scope: bool) -> Vault {
        Vault::new(HashMap::from([(
            "graph".to_owned(),
            Credential::OAuth2(OAuth2 {
                token_url: "https://login.test/tenant/oauth2/v2.0/token".into(),
                client_id: "app".into(),
                client_secret: "s3cret-value".into(),
                scope: scope.then(|| "https://graph.microsoft.com/.default".into()),
                resource: (!scope).then(|| "https://graph.microsoft.com".into()),
            }),
        )]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_requests_at_once_fetch_one_token() {
        let http = Arc::new(token_mock(vec![(
            200,
            r#"{"access_token": "tok-1", "expires_in": 3599}"#,
        )]));
        let clock = Arc::new(VirtualClock::new(1_000_000));
        let vault = Arc::new(graph(true));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (vault, http, clock) = (vault.clone(), http.clone(), clock.clone());
            tasks.push(tokio::spawn(
                async move { vault.header("graph", &*http, &*clock).await },
            ));
        }
        for t in tasks {
            assert_eq!(
                t.await.expect("join"),
                Ok(("authorization".into(), "Bearer tok-1".into()))
            );
        }
        let requests = http.requests.lock().expect("requests");
        assert_eq!(requests.len(), 1, "single flight");
        let form = String::from_utf8(requests[0].body.clone().expect("body")).expect("utf8");
        assert!(form.contains("grant_type=client_credentials"), "{form}");
        assert!(
            form.contains("scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"),
            "{form}"
        );
    }

    #[tokio::test]
    async fn tokens_are_renewed_before_they_expire_and_v1_sends_resource() {
        let http = token_mock(vec![
            (200, r#"{"access_token": "tok-1", "expires_in": "3599"}"#),
            (200, r#"{"access_token": "tok-2", "expires_in": "3599"}"#),
        ]);
        let clock = VirtualClock::new(0);
        let vault = graph(false);
        assert_eq!(vault.header("graph", &http, &clock).await.expect("1").1, "Bearer tok-1");
        clock.sleep_until(3_500_000).await; // 58 min: still good
        assert_eq!(vault.header("graph", &http, &clock).await.expect("2").1, "Bearer tok-1");
        clock.sleep_until(3_560_000).await; // within the last minute: renewed
        assert_eq!(vault.header("graph", &http, &clock).await.expect("3").1, "Bearer tok-2");
        let requests = http.requests.lock().expect("requests");
        assert_eq!(requests.len(), 2);
        let form = String::from_utf8(requests[0].body.clone().expect("body")).expect("utf8");
        assert!(form.contains("resource=https%3A%2F%2Fgraph.microsoft.com"), "{form}");
        assert!(!form.contains("scope="), "{form}");
    }

    #[tokio::test]
    async fn a_refusing_token_endpoint_is_a_clear_error_without_the_secret() {
        let http = token_mock(vec![(
            401,
            r#"{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"}"#,
        )]);
        let clock = VirtualClock::new(0);
        let err = graph(true).header("graph", &http, &clock).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("401") && text.contains("AADSTS7000215"), "{text}");
        assert!(!text.contains("s3cret-value") && !text.contains("Trace ID"), "{text}");
        let missing = Vault::default()
            .header("nope", &http, &clock)
            .await
            .expect_err("missing");
        assert_eq!(missing, CredentialError::Missing("nope".into()));
    }

    #[test]
    fn basic_and_header_credentials() {
        let text = "jira: {type: basic, username: bot, password: pw-123456}\nkey: {type: header, header: X-Api-Key, value: k-987654}\ngraph:\n  type: oauth2_client_credentials\n  token_url: https://login.test/t/oauth2/v2.0/token\n  client_id: app\n  client_secret: cs-5555\n  scope: https://graph.microsoft.com/.default\n  allowed_hosts: [graph.microsoft.com]\n";
        let vault = Vault::from_text("credentials.yaml", text).expect("vault");
        assert_eq!(vault.template_value("JIRA").as_deref(), Some("bot:pw-123456"));
        assert_eq!(vault.template_value("graph"), None);
        assert_eq!(vault.allowed_hosts["graph"], vec!["graph.microsoft.com".to_owned()]);
        let secrets: Vec<String> = vault.secrets().into_iter().map(|(_, v)| v).collect();
        for s in ["pw-123456", "k-987654", "cs-5555"] {
            assert!(secrets.contains(&s.to_owned()), "{s}");
        }
    }
}
