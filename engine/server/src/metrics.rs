//! Prometheus metrics (`/metrics`): events, runs, action durations, queue
//! depth, webhook answers, and outgoing HTTP statuses by host.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tale_engine::runtime::build::BuiltAction;
use tale_engine::runtime::durable::Observer;
use tale_engine::runtime::http::{HttpClient, HttpError, HttpRequest, HttpResponse};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ActionLabels {
    story: String,
    action: String,
    r#type: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RunLabels {
    story: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HostLabels {
    host: String,
    status: String,
}

pub(crate) struct Metrics {
    registry: Registry,
    events: Counter,
    runs: Family<RunLabels, Counter>,
    actions: Family<ActionLabels, Histogram>,
    pub(crate) webhooks: Family<StatusLabels, Counter>,
    http: Family<HostLabels, Counter>,
    pub(crate) queue_depth: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) waiting: Gauge,
    pub(crate) threads: Gauge,
    /// A cluster node's counters (PostgreSQL), by node name.
    claimed: Family<NodeLabels, Gauge>,
    lease_losses: Family<NodeLabels, Gauge>,
    notify_lag: Family<NodeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("tale");
        let events = Counter::default();
        registry.register("events", "Events committed", events.clone());
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs_finished", "Runs finished, by story and status", runs.clone());
        let actions = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 4.0, 10))
        });
        registry.register(
            "action_duration_seconds",
            "Action executions, by story, action, type and outcome",
            actions.clone(),
        );
        let webhooks = Family::<StatusLabels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook requests, by answer status",
            webhooks.clone(),
        );
        let http = Family::<HostLabels, Counter>::default();
        registry.register(
            "http_responses",
            "Responses to outgoing requests, by host and status (`error`: none)",
            http.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Work items ready or running", queue_depth.clone());
        let connections = Gauge::default();
        registry.register("http_connections", "HTTP connections open", connections.clone());
        let waiting = Gauge::default();
        registry.register("waiting_items", "Work items waiting on a timer", waiting.clone());
        let threads = Gauge::default();
        registry.register(
            "threads",
            "Threads answering requests and running actions (--threads)",
            threads.clone(),
        );
        let claimed = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "cluster_claimed_items",
            "Items this node claimed from dead nodes or was handed (total)",
            claimed.clone(),
        );
        let lease_losses = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "cluster_lease_losses",
            "Times the other nodes declared this one dead (total)",
            lease_losses.clone(),
        );
        let notify_lag = Family::<NodeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "cluster_notify_lag_seconds",
            "How late the last notification of waiting work arrived",
            notify_lag.clone(),
        );
        Arc::new(Self {
            claimed,
            lease_losses,
            notify_lag,
            registry,
            events,
            runs,
            actions,
            webhooks,
            http,
            queue_depth,
            connections,
            waiting,
            threads,
        })
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Copies a cluster node's counters (kept by the store) into the gauges.
    pub(crate) fn cluster(&self, stats: &tale_store::backend::ClusterStats) {
        let node = NodeLabels {
            node: stats.node.clone(),
        };
        self.claimed
            .get_or_create(&node)
            .set(i64::try_from(stats.claimed).unwrap_or(i64::MAX));
        self.lease_losses
            .get_or_create(&node)
            .set(i64::try_from(stats.lease_losses).unwrap_or(i64::MAX));
        self.notify_lag
            .get_or_create(&node)
            .set(stats.notify_lag_ms as f64 / 1000.0);
    }

    pub(crate) fn webhook(&self, status: u16) {
        self.webhooks
            .get_or_create(&StatusLabels {
                status: status.to_string(),
            })
            .inc();
    }
}

impl Observer for Metrics {
    fn action_done(&self, story: &str, action: &BuiltAction, seconds: f64, ok: bool) {
        self.actions
            .get_or_create(&ActionLabels {
                story: story.to_owned(),
                action: action.slug.to_string(),
                r#type: action.type_name.to_owned(),
                outcome: if ok { "ok" } else { "error" },
            })
            .observe(seconds);
    }

    fn events(&self, count: usize) {
        self.events.inc_by(count as u64);
    }

    fn run_finished(&self, story: &str, succeeded: bool) {
        self.runs
            .get_or_create(&RunLabels {
                story: story.to_owned(),
                status: if succeeded { "succeeded" } else { "failed" },
            })
            .inc();
    }
}

/// Counts the responses of the real client by host and status.
pub(crate) struct MeteredHttp {
    pub(crate) inner: Arc<dyn HttpClient>,
    pub(crate) metrics: Arc<Metrics>,
}

impl HttpClient for MeteredHttp {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async move {
            let host = url_host(&request.url);
            let result = self.inner.send(request).await;
            let status = match &result {
                Ok(r) => r.status.to_string(),
                Err(_) => "error".to_owned(),
            };
            self.metrics.http.get_or_create(&HostLabels { host, status }).inc();
            result
        })
    }
}

/// The host of a URL (the whole URL never becomes a label: it may hold secrets).
fn url_host(url: &str) -> String {
    url.split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_drop_credentials_and_paths() {
        assert_eq!(
            super::url_host("https://user:pw@graph.microsoft.com/v1.0/x?a=1"),
            "graph.microsoft.com"
        );
        assert_eq!(super::url_host("http://127.0.0.1:9900/w1"), "127.0.0.1:9900");
    }
}
