//! The HTTP accept loop of `tale serve`: hyper's HTTP/1 with the limits
//! `axum::serve` does not set. A client gets `--header-timeout` to send its
//! request head, also when idle between keep-alive requests (hyper starts
//! that timer whenever it waits for a head); a webhook body gets
//! `--body-timeout` (in the handler); at most `--max-connections` are open,
//! below the process's file descriptor limit, so slow or idle clients can
//! neither exhaust descriptors nor stop `/healthz` and the store from
//! working: past the cap, new connections wait in the listen backlog until
//! a timeout frees a slot. A connection on which nothing moves for
//! `stall` (a client that sends nothing, or stops reading what it asked
//! for) is closed whatever hyper waits for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The limits of incoming connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) header_timeout: Duration,
    /// No byte read or written for this long closes the connection.
    pub(crate) stall: Duration,
    pub(crate) max_connections: usize,
    /// How long a stop waits for open connections to finish.
    pub(crate) grace: Duration,
}

/// A connection's socket, noting when bytes last moved either way.
struct Watched {
    stream: TcpStream,
    /// Milliseconds since `epoch` at the last read or write.
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl Watched {
    fn moved(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The default connection cap: 4,096, or three quarters of the soft limit
/// on open files when that is lower (the rest is for the database, the
/// outgoing requests, the story files).
pub(crate) fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<usize>().ok())
    });
    soft.map_or(4096, |n| (n * 3 / 4).clamp(16, 4096))
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// open connections finish their requests. `open` counts the connections.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    open: Arc<AtomicUsize>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: past the cap, connections wait in the backlog.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait a little.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let last = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let io = Watched {
            stream,
            last: last.clone(),
            epoch,
        };
        let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        let stall = limits.stall;
        tokio::spawn(async move {
            tokio::pin!(connection);
            let tick = (stall / 4).max(Duration::from_millis(50));
            loop {
                tokio::select! {
                    // A client that goes away mid-request is its own business.
                    _ = &mut connection => break,
                    () = tokio::time::sleep(tick) => {
                        let idle = epoch.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                        if idle >= stall {
                            break; // dropping the connection closes it
                        }
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    // Idle connections close at once; one stuck mid-request gets `grace`.
    if tokio::time::timeout(limits.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the grace period are closed");
    }
}
