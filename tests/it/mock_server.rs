//! A real HTTP server on 127.0.0.1 standing in for Microsoft's APIs: it
//! records every request and answers from a script of routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};

/// A request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path_and_query: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    pub(crate) delay: Duration,
}

impl Reply {
    pub(crate) fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }
    pub(crate) fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub(crate) fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

#[derive(Default)]
struct Script {
    /// Path (without query) → answers in turn; the last repeats.
    routes: HashMap<String, Vec<Reply>>,
    calls: HashMap<String, usize>,
    received: Vec<Received>,
}

#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

/// Serves `app` on a free port of 127.0.0.1 from a thread of its own (its
/// own tokio runtime), so that it answers whatever runtime a test uses —
/// also a test that blocks, or runs the `tale` binary.
pub(crate) fn spawn_router(app: Router) -> SocketAddr {
    spawn_router_on("127.0.0.1", app)
}

/// [`spawn_router`] on another loopback address (`127.0.0.2`: another host
/// for the host checks, on the same machine).
pub(crate) fn spawn_router_on(ip: &str, app: Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind a loopback address");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    addr
}

impl Server {
    /// Starts on a thread of its own (its own tokio runtime).
    pub(crate) fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// On another loopback address, such as `127.0.0.2`.
    pub(crate) fn start_on(ip: &str) -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let addr = spawn_router_on(ip, Router::new().fallback(handle).with_state(script.clone()));
        Server { addr, script }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn route(&self, path: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .expect("script")
            .routes
            .insert(path.to_owned(), replies);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.script.lock().expect("script").received.clone()
    }

    /// The `id` of every body received, in arrival order: each must be a
    /// JSON object with an integer `id` (the forwarding stories' bodies).
    pub(crate) fn received_ids(&self) -> Vec<i64> {
        self.received()
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).expect("a JSON body")["id"]
                    .as_i64()
                    .expect("an integer id")
            })
            .collect()
    }
}

async fn handle(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let reply = {
        let mut s = script.lock().expect("script");
        s.received.push(Received {
            method: method.to_string(),
            path_and_query: uri.path_and_query().map_or_else(String::new, |p| p.to_string()),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let path = uri.path().to_owned();
        let n = *s.calls.get(&path).unwrap_or(&0);
        s.calls.insert(path.clone(), n + 1);
        s.routes.get(&path).and_then(|r| r.get(n).or(r.last()).cloned())
    };
    let reply = reply.unwrap_or_else(|| Reply::json(404, r#"{"error":"no route"}"#));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut builder =
        Response::builder().status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &reply.headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(reply.body)).unwrap_or_default()
}
