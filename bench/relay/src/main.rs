//! The lightest W1 relay on tale's own HTTP stack (axum server, reqwest
//! client, tokio, mimalloc), with no story, no template engine and no store:
//! answer the webhook, reshape the alert in code, POST it to the sink. What it
//! reaches on a machine is the ceiling `tale serve`'s W1 figure is read
//! against (bench/README.md). Usage: `tale-bench-relay ADDR SINK_URL`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Relay {
    client: reqwest::Client,
    target: String,
    /// Forwards in flight, as `tale serve --workers`: a slow sink slows the
    /// webhook down instead of piling up tasks.
    permits: Arc<tokio::sync::Semaphore>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(sink)) = (args.next(), args.next()) else {
        return Err("usage: tale-bench-relay ADDR SINK_URL".into());
    };
    let relay = Arc::new(Relay {
        client: reqwest::Client::new(),
        target: format!("{sink}/w1"),
        permits: Arc::new(tokio::sync::Semaphore::new(256)),
    });
    let app = Router::new()
        .route("/w1", post(hook))
        .route("/ready", get(|| async { "ok" }))
        .with_state(relay);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn hook(State(relay): State<Arc<Relay>>, body: Bytes) -> StatusCode {
    let Ok(alert) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let out = json!({
        "alert_id": alert["id"],
        "sev": text(&alert["severity"]).to_uppercase(),
        "summary": format!("{} on {}", text(&alert["title"]), text(&alert["entities"][0]["value"])),
        "tenant": alert["tenant"],
        "sent_us": alert["sent_us"],
    });
    let Ok(permit) = relay.permits.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let relay = relay.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let body = serde_json::to_vec(&out).unwrap_or_default();
        if let Ok(r) = relay
            .client
            .post(&relay.target)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
        {
            let _ = r.bytes().await;
        }
    });
    StatusCode::OK
}
