//! `tale serve`: webhooks, schedules and durable execution on SQLite, with a
//! JSON API, metrics and reload (SPEC §1.4, §7). The executor and the store
//! live in the engine (`runtime::durable`) and the store crate (`tale_store::backend`); this module
//! wires them to HTTP, signals and files.

mod admin;
mod http;
mod listen;
mod load;
mod metrics;
mod prompt;
mod schedule;
pub(crate) mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use tale_engine::runtime::clock::{Clock, RealClock};
use tale_engine::runtime::durable::{Durable, Loaded};
use tale_engine::runtime::exec::Runtime;
use tale_engine::runtime::http::{HttpClient, RealHttp};
use tale_engine::runtime::mail::{Mailer, NoMailer, SmtpMailer};
use tale_store::backend::NodeOptions;
use tale_store::backend::Sync;
use tale_store::backend::{Database, ServeStore};

use self::load::{StoryStatus, load, served};
use self::metrics::{MeteredHttp, Metrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncMode {
    /// Sync the log at every commit: nothing acknowledged is lost, even to a power cut.
    Full,
    /// Sync at checkpoints: safe against a crash of tale, not of the machine.
    Normal,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A folder of stories to serve (searched recursively); repeat it to
    /// serve several (a story and the library it calls, say).
    #[arg(long, value_name = "DIR", default_value = ".", num_args = 1)]
    pub stories: Vec<PathBuf>,
    /// The database: `sqlite:PATH`.
    #[arg(long, value_name = "URL", default_value = "sqlite:tale.db")]
    pub db: String,
    /// Where to listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Logs as text for people or as JSON lines.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Work items that run at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub workers: usize,
    /// Threads that answer requests and run actions (default: one per
    /// core). The SQLite store writes on a thread of its own besides: on a
    /// small machine shared with other busy programs, fewer may do more.
    #[arg(long, value_name = "N", env = "TALE_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Requests in flight to one host at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub per_host: usize,
    /// How the database syncs its log (see docs/deployment.md).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = SyncMode::Normal)]
    pub sync: SyncMode,
    /// Work items ready or running beyond which webhooks answer 503 (past
    /// half of it, or twice --workers if less, webhooks wait up to a second
    /// for room first).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_queued: usize,
    /// Do not store a trace of every action execution (requests, attempts,
    /// rules, durations; `tale runs show` and the web UI read them).
    #[arg(long)]
    pub no_traces: bool,
    /// Largest webhook body accepted, in bytes (a webhook's own `max_body_bytes` may be lower).
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body: usize,
    /// A credentials file (refused when group- or world-readable).
    #[arg(long, value_name = "FILE", env = "TALE_CREDENTIALS_FILE")]
    pub credentials: Option<PathBuf>,
    /// Refuse requests to loopback, private, link-local and other internal
    /// addresses (names checked after resolution, redirects included).
    #[arg(long, env = "TALE_DENY_INTERNAL_ADDRESSES")]
    pub deny_internal_addresses: bool,
    /// More resources files (`resources.yaml` beside a story is always read).
    #[arg(long, value_name = "FILE")]
    pub resources: Vec<PathBuf>,
    /// How often story files are checked for changes (0: only on SIGHUP).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub watch: Duration,
    /// A token the JSON API requires (`Authorization: Bearer …`); without
    /// it the API is open to whoever reaches --listen, read-only for
    /// credentials and resources. Prefer the environment variable.
    #[arg(long, value_name = "TOKEN", env = "TALE_API_TOKEN", hide_env_values = true, value_parser = secret)]
    pub api_token: Option<SecretString>,
    /// The key credentials set through the API are sealed with: 32 random
    /// bytes in base64 or hex. Prefer the environment variable.
    #[arg(long, value_name = "KEY", env = "TALE_SECRET_KEY", hide_env_values = true, value_parser = secret)]
    pub secret_key: Option<SecretString>,
    /// Rotation: the key the stored credentials were sealed with until now.
    /// At start, each credential sealed with it is opened and sealed again
    /// with --secret-key, in one transaction; then it is no longer needed.
    #[arg(long, value_name = "KEY", env = "TALE_PREVIOUS_SECRET_KEY", hide_env_values = true, value_parser = secret)]
    pub previous_secret_key: Option<SecretString>,
    /// Where people reach this server: the base of `{% story_run_link %}`
    /// and `{% prompt %}` links (default: http:// and the listen address).
    #[arg(long, value_name = "URL", env = "TALE_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// How long a `{% prompt %}` link waits for its click; then the action
    /// emits nothing more and its run ends.
    #[arg(long, value_name = "DURATION", default_value = "3d", value_parser = humantime::parse_duration)]
    pub prompt_expiry: Duration,
    /// Refuse to start when a story is refused (has errors), instead of
    /// serving the others.
    #[arg(long)]
    pub strict: bool,
    /// How long a stop waits for work in flight before leaving it for the next start.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// How long a client has to send a request's head; also how long an
    /// idle keep-alive connection stays open.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// How long a webhook's body may take to arrive (408 beyond).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// Most connections open at once (default: 4096, or three quarters of
    /// the open-file limit when lower); more wait in the listen backlog.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// PostgreSQL: this node's name among the nodes sharing the database,
    /// stable across its restarts (default: the host name and the --listen
    /// port). A node starting under a dead node's name takes its work over
    /// at once rather than when its lease ends.
    #[arg(long, value_name = "TEXT", env = "TALE_NODE_NAME")]
    pub node_name: Option<String>,
    /// PostgreSQL: how long the other nodes wait for this one when it falls
    /// silent before taking its work over (renewed every quarter of it).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub node_lease: Duration,
    /// PostgreSQL: transactions of steps this node keeps in flight (1–12).
    /// Nodes sharing a database share its capacity: give N nodes about 4/N
    /// each (bench/results/2026-12-07-cluster-w1.md).
    #[arg(long, value_name = "N", default_value_t = tale_store::backend::COMMITTERS)]
    pub db_committers: usize,
    /// Let several processes on this host listen on the same --listen
    /// address (SO_REUSEPORT): the kernel spreads connections over them
    /// (nodes of a PostgreSQL cluster on one machine).
    #[arg(long)]
    pub reuse_port: bool,
}

/// A listening socket as `TcpListener::bind` makes it (`SO_REUSEADDR`, a
/// backlog of 1024), shared with other processes when `reuse_port`.
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The key in `--secret-key` or `--previous-secret-key`, if one is given.
fn seal_key(text: Option<&SecretString>) -> anyhow::Result<Option<tale_engine::runtime::sealed::SealKey>> {
    match text.map(|k| k.expose_secret().trim()).filter(|k| !k.is_empty()) {
        Some(k) => Ok(Some(tale_engine::runtime::sealed::SealKey::parse(k)?)),
        None => Ok(None),
    }
}

/// A secret given on the command line or in the environment, kept as
/// `secrecy` keeps credentials (zeroed when dropped, hidden in debug output).
fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// What the HTTP handlers share.
pub(crate) struct App {
    pub(crate) durable: Arc<Durable>,
    pub(crate) store: Arc<dyn ServeStore>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) statuses: RwLock<Vec<StoryStatus>>,
    pub(crate) max_body: usize,
    pub(crate) body_timeout: Duration,
    /// HTTP connections open now.
    pub(crate) connections: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) ready: AtomicBool,
    pub(crate) admin: admin::Admin,
    /// The web UI's session and CSRF keys.
    pub(crate) ui: ui::UiKeys,
    /// Run and prompt links (the prompt pages verify them).
    pub(crate) links: Arc<tale_engine::runtime::links::Links>,
}

/// A running server (tests start one in-process).
pub struct Server {
    pub addr: SocketAddr,
    app: Arc<App>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Stops accepting, waits up to `grace` for work in flight, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("the server task failed")?
    }

    /// Work items ready, running or waiting on a timer.
    pub fn pending(&self) -> usize {
        self.app.durable.queue_depth() + self.app.durable.waiting()
    }

    /// Waits until no work item is ready or running (timers may still
    /// wait): what tests wait for instead of sleeping.
    pub async fn idle(&self) {
        self.app.durable.wait_queue_below(1, None).await;
    }

    /// HTTP connections open now (also the `tale_http_connections` metric).
    pub fn connections(&self) -> usize {
        self.app.connections.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where links point and how prompt links are signed: with the sealing key
/// (`TALE_SECRET_KEY`), else the API token, so that links outlive a restart
/// and every node of a cluster accepts them; else a key of this process
/// (its prompt links stop working when it stops: said at start).
fn links(args: &ServeArgs, addr: SocketAddr) -> tale_engine::runtime::links::Links {
    let base = args
        .public_url
        .as_ref()
        .map_or_else(|| format!("http://{addr}"), |u| u.as_str().to_owned());
    let secret = args
        .secret_key
        .as_ref()
        .or(args.api_token.as_ref())
        .map(|k| k.expose_secret().as_bytes().to_vec())
        .filter(|k| !k.is_empty());
    let key = secret.unwrap_or_else(|| {
        tracing::info!(
            "prompt links are signed with a key of this process: set TALE_SECRET_KEY for links that outlive a restart"
        );
        tale_engine::runtime::sealed::random_bytes::<32>().to_vec()
    });
    let expiry = i64::try_from(args.prompt_expiry.as_millis()).unwrap_or(i64::MAX);
    tale_engine::runtime::links::Links::new(&base, &key, expiry, true)
}

/// Starts serving; `clock` replaces the real clock (tests of schedules).
pub async fn start(args: &ServeArgs, clock: Option<Arc<dyn Clock>>) -> anyhow::Result<Server> {
    let database: Database = args.db.parse()?;
    let sync = match args.sync {
        SyncMode::Full => Sync::Full,
        SyncMode::Normal => Sync::Normal,
    };
    let node = NodeOptions {
        name: args.node_name.clone().unwrap_or_else(|| {
            let host = tale_store::backend::hostname();
            match args.listen.port() {
                // Several processes share the port: the process tells them apart.
                port if port == 0 || args.reuse_port => format!("{host}:{port}:{}", std::process::id()),
                port => format!("{host}:{port}"),
            }
        }),
        lease: args.node_lease.max(Duration::from_millis(400)),
        committers: args.db_committers,
        flush_commits: matches!(args.sync, SyncMode::Full),
    };
    let store = database.open(sync, node).await?;
    // Bound before the runtime is built: links name the address it got.
    let listener = bind(args.listen, args.reuse_port).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let links = Arc::new(links(args, addr));
    let metrics = Metrics::new();
    // Fixed for the runtime's life: set once, not at every scrape.
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    metrics.threads.set(threads as i64);
    let http: Arc<dyn HttpClient> = Arc::new(MeteredHttp {
        inner: Arc::new(RealHttp::with_guard(
            args.per_host.max(1),
            args.deny_internal_addresses,
        )?),
        metrics: metrics.clone(),
    });
    let mail: Arc<dyn Mailer> = match SmtpMailer::from_env() {
        Some(m) => Arc::new(m?),
        None => Arc::new(NoMailer),
    };
    let clock = clock.unwrap_or_else(|| Arc::new(RealClock));
    let base = Runtime {
        http,
        mail,
        clock,
        store: store.clone(),
        max_in_flight: 64,
        trace: false,
        progress: None,
        on_event: None,
        keep_events: false,
        library: Default::default(),
        links: Some(links.clone()),
        story_state: Default::default(),
    };
    let stories_dir = args.stories.clone();
    let (resources, credentials) = (args.resources.clone(), args.credentials.clone());
    let key = seal_key(args.secret_key.as_ref())?.map(Arc::new);
    if let Some(previous) = seal_key(args.previous_secret_key.as_ref())? {
        let Some(key) = key.as_deref() else {
            anyhow::bail!("--previous-secret-key rotates to --secret-key (TALE_SECRET_KEY), which is not set");
        };
        let resealed = store.reseal_credentials(&previous, key, base.clock.now_ms()).await?;
        if resealed > 0 {
            tracing::info!(
                credentials = resealed,
                from = previous.id(),
                to = key.id(),
                "sealed the stored credentials again with the new key"
            );
        }
    }
    let stored = admin::read_stored(&*store, key.as_deref(), true).await?;
    let first = {
        let dir = stories_dir.clone();
        let (r, c) = (resources.clone(), credentials.clone());
        tokio::task::spawn_blocking(move || load(&dir, &r, c.as_deref(), &stored, &Default::default(), &[])).await?
    };
    log_statuses(&first.statuses);
    if args.strict {
        let refused: Vec<&str> = first
            .statuses
            .iter()
            .filter(|s| s.status != "ok")
            .map(|s| s.file.as_str())
            .collect();
        if !refused.is_empty() {
            anyhow::bail!(
                "--strict: {} story file(s) refused: {}",
                refused.len(),
                refused.join(", ")
            );
        }
    }
    let redactor = Arc::new(first.redactor);
    let loaded = Loaded::new(
        Runtime {
            library: Arc::new(first.library),
            ..base.clone()
        },
        redactor,
    );
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<Result<(), String>>>(16);
    let durable = Durable::start(
        loaded,
        store.clone(),
        args.workers,
        args.max_queued,
        Some(metrics.clone()),
    );
    if args.no_traces {
        durable.without_traces();
    }
    let resumed = durable.resume().await?;
    if resumed > 0 {
        tracing::info!(items = resumed, "resumed the work left by the previous run");
    }
    let api_token = args
        .api_token
        .as_ref()
        .filter(|t| !t.expose_secret().is_empty())
        .cloned();
    let app = Arc::new(App {
        durable: durable.clone(),
        store: store.clone(),
        metrics,
        statuses: RwLock::new(first.statuses),
        max_body: args.max_body,
        body_timeout: args.body_timeout,
        connections: Arc::default(),
        ready: AtomicBool::new(false),
        ui: ui::UiKeys::new(api_token.as_ref()),
        links,
        admin: admin::Admin {
            api_token: api_token.clone(),
            key: key.clone(),
            credentials_file: credentials.clone(),
            stories_dirs: stories_dir.clone(),
            resources: resources.clone(),
            reload: reload_tx,
        },
    });
    let schedules = Arc::new(Mutex::new(schedule::spawn_all(
        &durable,
        &durable.loaded().runtime.library,
    )));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);

    // Reload on SIGHUP and when a story file changes.
    let reload = {
        let app = app.clone();
        let schedules = schedules.clone();
        let base = base.clone();
        let watch = args.watch;
        let mut fingerprint = first.fingerprint;
        let mut seen = first.seen;
        let store = store.clone();
        tokio::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let poll = async {
                    if watch.is_zero() {
                        std::future::pending::<()>().await
                    } else {
                        tokio::time::sleep(watch).await
                    }
                };
                // The API asks for a reload after it changed a credential or
                // resource, and waits for it.
                let mut asked = None;
                let signalled = tokio::select! {
                    _ = async { match &mut hup { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                    Some(ack) = reload_rx.recv() => { asked = Some(ack); true }
                    () = poll => false,
                };
                let dir = stories_dir.clone();
                if !signalled {
                    let d = dir.clone();
                    let now = tokio::task::spawn_blocking(move || load::fingerprint(&d))
                        .await
                        .unwrap_or_default();
                    if now == fingerprint {
                        continue;
                    }
                }
                tracing::info!(signalled, "reloading the stories");
                let previous = {
                    let statuses = app.statuses.read().unwrap_or_else(|p| p.into_inner());
                    served(&app.durable.loaded().runtime.library, &statuses)
                };
                let failed = |asked: Option<tokio::sync::oneshot::Sender<Result<(), String>>>, why: String| {
                    tracing::error!("not reloaded: {why}");
                    if let Some(ack) = asked {
                        let _ = ack.send(Err(why));
                    }
                };
                let stored = match admin::read_stored(&*store, app.admin.key.as_deref(), false).await {
                    Ok(s) => s,
                    Err(e) => {
                        failed(asked, format!("{e:#}"));
                        continue;
                    }
                };
                let (r, c) = (resources.clone(), credentials.clone());
                let next = match tokio::task::spawn_blocking({
                    let earlier = seen.clone();
                    move || load(&dir, &r, c.as_deref(), &stored, &previous, &earlier)
                })
                .await
                {
                    Ok(next) => next,
                    Err(e) => {
                        failed(asked, e.to_string());
                        continue;
                    }
                };
                log_statuses(&next.statuses);
                fingerprint = next.fingerprint;
                seen = next.seen;
                let redactor = Arc::new(next.redactor);
                app.durable.replace(Loaded::new(
                    Runtime {
                        library: Arc::new(next.library),
                        ..base.clone()
                    },
                    redactor,
                ));
                *app.statuses.write().unwrap_or_else(|p| p.into_inner()) = next.statuses;
                let mut tasks = schedules.lock().unwrap_or_else(|p| p.into_inner());
                for t in tasks.drain(..) {
                    t.abort();
                }
                *tasks = schedule::spawn_all(&app.durable, &app.durable.loaded().runtime.library);
                drop(tasks);
                if let Some(ack) = asked {
                    let _ = ack.send(Ok(()));
                }
            }
        })
    };

    // Retention: each story's `keep_events_for`, checked every minute.
    let pruner = {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                let loaded = app.durable.loaded();
                let now = loaded.runtime.clock.now_ms();
                for story in loaded.runtime.library.values() {
                    let Some(keep) = story.keep_events_for else { continue };
                    match app.store.prune(&story.id, now - keep.as_millis() as i64).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(story = %story.id, runs = n, "pruned old runs"),
                        Err(e) => tracing::warn!(story = %story.id, "pruning failed: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        })
    };

    let router = http::router(app.clone());
    app.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(%addr, db = %database, "tale serve is listening");
    // Where each webhook answers (the secret goes after the path, or in
    // `Authorization: Bearer`; it is never printed).
    let mut paths: Vec<String> = app.durable.loaded().hooks.keys().cloned().collect();
    paths.sort();
    for p in paths {
        tracing::info!("webhook: http://{addr}/webhook/{p}/<secret>");
    }
    let grace = args.grace;
    let header_timeout = args.header_timeout;
    let body_timeout = args.body_timeout;
    let max_connections = args.max_connections.unwrap_or_else(listen::default_max_connections);
    let connections = app.connections.clone();
    let app2 = app.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let limits = listen::ConnLimits {
            header_timeout,
            // A request being answered (a webhook waits for its commit, a
            // slow store) moves no bytes for a while: well past both timeouts.
            stall: (header_timeout + body_timeout) * 2,
            max_connections,
            grace,
        };
        listen::serve(listener, router, limits, connections, shutdown).await;
        app2.ready.store(false, std::sync::atomic::Ordering::Relaxed);
        reload.abort();
        pruner.abort();
        for t in schedules.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
        // Finish what is in flight; what is not done by then stays stored.
        let deadline = tokio::time::Instant::now() + grace;
        app2.durable.wait_queue_below(1, Some(deadline)).await;
        let left = app2.durable.queue_depth() + app2.durable.waiting();
        app2.durable.stopped_cleanly().await;
        tracing::info!(left, "stopped; work left is resumed at the next start");
        Ok(())
    });
    Ok(Server { addr, app, stop, task })
}

fn log_statuses(statuses: &[StoryStatus]) {
    for s in statuses {
        let id = s.id.as_deref().unwrap_or("?");
        match s.status {
            "ok" => tracing::info!(story = id, file = %s.file, "serving"),
            "stale" => tracing::error!(
                story = id,
                file = %s.file,
                "the new version has errors; the previous version keeps running:\n{}",
                s.errors.join("")
            ),
            _ => tracing::error!(story = id, file = %s.file, "not served, it has errors:\n{}", s.errors.join("")),
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TALE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in a file or a journal.
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// A story's graph as a standalone SVG document, drawn as the web UI draws
/// it (`tale graph --format svg`).
pub fn story_svg(story: &tale_engine::story::Story) -> String {
    let (actions, graph) = ui::graph::parts_of_story(story);
    ui::graph::standalone(&story.name, &actions, &graph)
}

/// `tale serve` from the command line: runs until SIGTERM or Ctrl-C.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    init_logs(args.log_format);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        rt.worker_threads(usize::from(threads));
    }
    let rt = rt.enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async {
        let server = start(args, None).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("stopping");
        server.stop().await
    })?;
    Ok(())
}
