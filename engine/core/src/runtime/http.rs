//! Sending HTTP requests: the real client (reqwest, rustls) with a bound on
//! in-flight requests per host, and the mock client of dry runs and tests.
//! Neither follows redirects: the caller does, hop by hop, through
//! [`redirect_target`], so that each hop is checked like a first request
//! (a credential must not ride a redirect to a host it does not allow).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    pub verify_tls: bool,
    /// Reading the body stops beyond this many bytes (an error).
    pub max_response_bytes: u64,
}

/// The body limit of a request that names none (an action's
/// `max_response_bytes` default).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 32 * 1024 * 1024;
/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HttpError {
    #[error("the request timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Refused before sending (a redirect to a host a credential of the
    /// request does not allow, too many redirects): never retried.
    #[error("{0}")]
    Refused(String),
    #[error("the response is larger than {limit} bytes (`max_response_bytes`)")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Other(String),
}

pub trait HttpClient: Send + Sync {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>>;
}

/// reqwest behind a semaphore per host.
pub struct RealHttp {
    /// By whether TLS certificates are verified.
    clients: HashMap<bool, reqwest::Client>,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Refuse loopback, private, link-local and other internal addresses.
    deny_private: bool,
}

/// Addresses a request from tale should not reach when the guard is on:
/// the machine itself, private networks, link-local (cloud metadata at
/// 169.254.169.254), carrier-grade NAT, unique-local and unspecified ones.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded =
                |hi: u16, lo: u16| IpAddr::V4(std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
            // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48) and the
            // deprecated IPv4-compatible `::a.b.c.d` carry an IPv4 address
            // in their last 32 bits; 6to4 (2002::/16) right after the prefix.
            // The local-use NAT64 prefix (64:ff9b:1::/48) is never global,
            // and its IPv4 address may sit anywhere: internal as a whole.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                return true;
            }
            let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0];
            let compatible = s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1);
            // IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765).
            let translated = s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0;
            if nat64 || compatible || translated {
                return is_internal(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_internal(embedded(s[1], s[2]));
            }
            // Teredo (2001::/32): the server's IPv4 address, and the
            // client's with its bits inverted.
            if s[0] == 0x2001 && s[1] == 0 {
                return is_internal(embedded(s[2], s[3])) || is_internal(embedded(!s[6], !s[7]));
            }
            let first = s[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves names, then drops internal addresses (so a name pointing at
/// 127.0.0.1 or a rebinding answer cannot reach inside).
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<std::net::SocketAddr> = found.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("`{host}` resolves only to internal addresses (refused)").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// An address literal in a URL (resolution is skipped for those).
fn literal_internal(url: &reqwest::Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(ip) if is_internal(ip.into()) => Some(ip.to_string()),
        url::Host::Ipv6(ip) if is_internal(ip.into()) => Some(ip.to_string()),
        _ => None,
    }
}

impl RealHttp {
    /// `per_host`: how many requests may be in flight to one host at once.
    pub fn new(per_host: usize) -> Result<Self, HttpError> {
        Self::with_guard(per_host, false)
    }

    /// With `deny_private`, requests to internal addresses are refused, names
    /// included: their answers are checked after resolution. (A redirect is
    /// a request of its own, checked the same way.)
    pub fn with_guard(per_host: usize, deny_private: bool) -> Result<Self, HttpError> {
        let mut clients = HashMap::new();
        for verify in [true, false] {
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .danger_accept_invalid_certs(!verify)
                .user_agent(concat!("tale/", env!("CARGO_PKG_VERSION")));
            if deny_private {
                builder = builder.dns_resolver(Arc::new(GuardedResolver));
            }
            let client = builder.build().map_err(|e| HttpError::Other(e.to_string()))?;
            clients.insert(verify, client);
        }
        Ok(Self {
            clients,
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
            deny_private,
        })
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }
}

impl HttpClient for RealHttp {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async move {
            let url =
                reqwest::Url::parse(&request.url).map_err(|e| HttpError::Invalid(format!("{}: {e}", request.url)))?;
            if self.deny_private {
                if let Some(ip) = literal_internal(&url) {
                    return Err(HttpError::Invalid(format!("the internal address {ip} is refused")));
                }
            }
            let host = url.host_str().unwrap_or("").to_owned();
            let permit = self
                .semaphore(&host)
                .acquire_owned()
                .await
                .map_err(|e| HttpError::Other(e.to_string()))?;
            let client = &self.clients[&request.verify_tls];
            let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
                .map_err(|e| HttpError::Invalid(e.to_string()))?;
            let mut builder = client.request(method, url).timeout(request.timeout);
            for (k, v) in &request.headers {
                builder = builder.header(k, v);
            }
            if let Some(body) = request.body {
                builder = builder.body(body);
            }
            let response = builder
                .send()
                .await
                .map_err(|e| classify(&e.without_url(), request.timeout))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let limit = request.max_response_bytes;
            if response.content_length().is_some_and(|n| n > limit) {
                return Err(HttpError::TooLarge { limit });
            }
            // Read chunk by chunk: a body past the limit is never held whole.
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| classify(&e.without_url(), request.timeout))?
            {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(HttpError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            drop(permit);
            Ok(HttpResponse { status, headers, body })
        })
    }
}

/// The error without its URL: a query string may carry a secret.
fn classify(e: &reqwest::Error, timeout: Duration) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout(timeout)
    } else if e.is_connect() {
        HttpError::Connect(error_chain(e))
    } else {
        HttpError::Other(error_chain(e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Same scheme, host and port.
pub fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// Headers a redirect to another origin drops (as browsers and reqwest do).
const ORIGIN_BOUND_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "cookie2",
    "proxy-authorization",
    "www-authenticate",
];

/// The request a redirect answer asks for, or `None` when `response` is not
/// a redirect (301, 302, 303, 307, 308 with a `Location`). As browsers do:
/// 301/302/303 repeat a POST (any method but GET and HEAD) as a GET without
/// its body; 307/308 keep the method and body; a hop to another origin
/// drops the headers bound to the origin. The caller checks the new request
/// (credentials, hosts) before sending it.
pub fn redirect_target(request: &HttpRequest, response: &HttpResponse) -> Option<Result<HttpRequest, HttpError>> {
    if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.header("location")?.trim();
    let from = match url::Url::parse(&request.url) {
        Ok(u) => u,
        Err(e) => return Some(Err(HttpError::Invalid(e.to_string()))),
    };
    let to = match from.join(location) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(u) => {
            return Some(Err(HttpError::Refused(format!(
                "a redirect to a `{}` URL (only http and https are followed)",
                u.scheme()
            ))));
        }
        Err(e) => return Some(Err(HttpError::Invalid(format!("a redirect to an invalid URL: {e}")))),
    };
    let mut next = request.clone();
    if matches!(response.status, 301..=303) {
        next.body = None;
        next.headers.retain(|(k, _)| {
            ![
                "content-type",
                "content-length",
                "content-encoding",
                "transfer-encoding",
            ]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        });
        if !matches!(next.method.to_ascii_lowercase().as_str(), "get" | "head") {
            next.method = "get".into();
        }
    }
    if !same_origin(&from, &to) {
        next.headers
            .retain(|(k, _)| !ORIGIN_BOUND_HEADERS.iter().any(|h| k.eq_ignore_ascii_case(h)));
    }
    next.url = to.to_string();
    Some(Ok(next))
}

/// One canned answer of a dry run: a method (or `*`) and a URL pattern with
/// `*` wildcards, answered in turn by `responses` (the last one repeats).
#[derive(Debug, Clone)]
pub struct Mock {
    pub method: String,
    pub url: String,
    pub responses: Vec<HttpResponse>,
    /// How long each response takes (same order; missing: at once). A delay
    /// at or beyond the request's timeout is a timeout.
    pub delays: Vec<Duration>,
}

/// Answers from mocks, or `200 {}`; never opens a socket. Keeps every request.
#[derive(Debug, Default)]
pub struct MockHttp {
    mocks: Vec<Mock>,
    /// The clock delays pass on (the run's virtual clock).
    clock: Option<Arc<dyn super::clock::Clock>>,
    calls: Mutex<Vec<usize>>,
    pub requests: Mutex<Vec<HttpRequest>>,
    /// Requests no mock matched (answered `200 {}`).
    pub unmatched: Mutex<Vec<HttpRequest>>,
}

impl MockHttp {
    pub fn new(mocks: Vec<Mock>) -> Self {
        let calls = Mutex::new(vec![0; mocks.len()]);
        Self {
            mocks,
            clock: None,
            calls,
            requests: Mutex::new(Vec::new()),
            unmatched: Mutex::new(Vec::new()),
        }
    }

    /// Responses with a delay wait on `clock` (without one, delays are ignored).
    pub fn with_clock(mut self, clock: Arc<dyn super::clock::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
}

impl MockHttp {
    /// How many times each mock answered, in order.
    pub fn calls(&self) -> Vec<usize> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

impl HttpClient for MockHttp {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        let found = self.mocks.iter().position(|m| {
            (m.method == "*" || m.method.eq_ignore_ascii_case(&request.method)) && glob_match(&m.url, &request.url)
        });
        let (response, delay) = match found {
            Some(i) => {
                let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
                let n = calls[i];
                calls[i] += 1;
                let mock = &self.mocks[i];
                let k = n.min(mock.responses.len().saturating_sub(1));
                (mock.responses.get(k).cloned(), mock.delays.get(k).copied())
            }
            None => (None, None),
        };
        let response = response.unwrap_or_else(|| HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        });
        if found.is_none() {
            self.unmatched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(request.clone());
        }
        let timeout = request.timeout;
        let max_response_bytes = request.max_response_bytes;
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).push(request);
        Box::pin(async move {
            if response.body.len() as u64 > max_response_bytes {
                return Err(HttpError::TooLarge {
                    limit: max_response_bytes,
                });
            }
            let (Some(delay), Some(clock)) = (delay.filter(|d| !d.is_zero()), &self.clock) else {
                return Ok(response);
            };
            let waited = delay.min(timeout);
            clock.sleep_until(clock.now_ms() + waited.as_millis() as i64).await;
            if delay >= timeout {
                return Err(HttpError::Timeout(timeout));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod guard_tests {
    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:0:7f00:1",
            "64:ff9b:1:7f00:1::",
            "2001:0:7f00:1::",
            "2001:0:808:808::80ff:fffe",
        ] {
            assert!(super::is_internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "20.190.128.1",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!super::is_internal(ip.parse().expect("ip")), "{ip}");
        }
    }
}
