//! The listeners' connections, each with a bound: at most `max_connections` open
//! (the rest wait in the kernel's accept queue), headers within `header_timeout`, nothing
//! read or written for `idle_timeout` while no request waits for its answer closes the
//! connection, request heads of at most
//! [`MAX_HEAD`] bytes, and HTTP/1.1 only unless `http2` is on (then at most
//! [`H2_STREAMS`] streams per connection and small flow-control windows). Bodies have their
//! own deadline and a shared byte budget in [`crate::ingest`].
//!
//! The webhook listener takes its bounds from `[server]`; the admin listener
//! ([`Limits::admin`]) the same timeouts, HTTP/1.1 only, and at most
//! [`ADMIN_MAX_CONNECTIONS`].
//!
//! Hyper does the HTTP; this file only accepts, configures and watches.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::ServerConfig;

/// The largest request line plus headers accepted (hyper answers `431` above it). Webhook
/// senders send a few KiB; this also bounds what a slow client can make the process hold.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// HTTP/2 streams one connection may have open at once (when `http2` is on).
pub(crate) const H2_STREAMS: u32 = 32;
/// HTTP/2 flow-control windows: what a peer may send before the server has read it.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// How much longer than `idle_timeout` a connection may stay silent while one of its
/// requests waits for its answer.
const WORKING_QUIET: Duration = Duration::from_secs(600);

/// Connections the admin listener serves at once (a Prometheus scraper, a few console tabs,
/// the CLI); more wait in the kernel's accept queue.
pub(crate) const ADMIN_MAX_CONNECTIONS: usize = 64;

/// A listener's bounds, from `[server]`; read once at start.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Which listener, for its log lines.
    pub(crate) name: &'static str,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) http2: bool,
}

impl Limits {
    pub(crate) fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            name: "webhooks",
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
            http2: server.http2,
        }
    }

    /// The admin listener's: `[server]`'s timeouts (a quiet live tail sends a keep-alive
    /// every third of the idle timeout, at most 15 s), HTTP/1.1, [`ADMIN_MAX_CONNECTIONS`].
    pub(crate) fn admin(server: &ServerConfig) -> Limits {
        Limits {
            name: "admin",
            max_connections: ADMIN_MAX_CONNECTIONS,
            http2: false,
            ..Limits::from_config(server)
        }
    }
}

/// Accept and serve connections until `stop`; then let open requests finish for up to
/// `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    if limits.http2 {
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_STREAMS)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEAD as u32)
            .max_send_buf_size(256 * 1024)
            .keep_alive_interval(limits.idle_timeout / 2)
            .keep_alive_timeout(limits.header_timeout);
    } else {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut full_logged = false;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if !full_logged {
                    warn!(
                        listener = limits.name,
                        max_connections = limits.max_connections,
                        "connection limit reached; new connections wait to be accepted"
                    );
                    full_logged = true;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    warn!(listener = limits.name, error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if slots.available_permits() > 0 {
            full_logged = false;
        }
        let _ = stream.set_nodelay(true);
        let last = Arc::new(AtomicU64::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let io = TokioIo::new(Watched {
            inner: stream,
            last: last.clone(),
            started,
        });
        let service = Counted {
            app: app.clone(),
            busy: busy.clone(),
        };
        let builder = builder.clone();
        let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let mut check = idle;
            loop {
                tokio::select! {
                    result = &mut conn => {
                        if let Err(e) = result {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    () = tokio::time::sleep(check) => {
                        let quiet = started.elapsed()
                            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                        // A request still waiting for its answer is a handler at work (a
                        // bulk admin operation, a slow journal), not a quiet peer: it gets
                        // up to `WORKING_QUIET` more.
                        let limit = if busy.load(Ordering::Relaxed) > 0 {
                            idle + WORKING_QUIET
                        } else {
                            idle
                        };
                        if quiet >= limit {
                            debug!(%peer, "connection idle for {limit:?}; closed");
                            return;
                        }
                        // Looked at again within `idle`: the request may be answered by then.
                        check = (limit - quiet).min(idle);
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            listener = limits.name,
            "requests still open at the shutdown deadline were cut off"
        );
    }
}

/// The app, counting the requests of one connection that are waiting for their answer's
/// head (after it, writing the body counts as activity).
struct Counted {
    app: Router,
    busy: Arc<AtomicUsize>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Counted {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = CountedFuture;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> CountedFuture {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let working = Working(self.busy.clone());
        let mut app = self.app.clone();
        CountedFuture {
            inner: tower_service::Service::call(&mut app, req),
            _working: working,
        }
    }
}

struct CountedFuture {
    inner: axum::routing::future::RouteFuture<std::convert::Infallible>,
    _working: Working,
}

impl std::future::Future for CountedFuture {
    type Output = Result<axum::response::Response, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// One request waiting for its answer, until dropped.
struct Working(Arc<AtomicUsize>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection that notes when it last read or wrote a byte.
struct Watched {
    inner: TcpStream,
    /// Milliseconds after `started` of the last read or write.
    last: Arc<AtomicU64>,
    started: Instant,
}

impl Watched {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    use super::{Limits, serve};

    /// Everything `s` sends until it closes the connection or `wait` passes; and whether
    /// it closed.
    async fn read_until_closed(s: &mut TcpStream, wait: Duration) -> (String, bool) {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (String::from_utf8_lossy(&got).into(), false),
            }
        }
    }

    /// A handler working longer than the idle timeout is answered (an admin bulk operation,
    /// a slow journal): the watchdog cuts quiet peers, not requests waiting for an answer.
    /// Once answered, the quiet keep-alive connection is cut at the idle timeout as before.
    #[tokio::test]
    async fn a_request_at_work_is_not_idle() {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = Limits {
            name: "test",
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_millis(300),
            max_connections: 4,
            http2: false,
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            app,
            limits,
            stop.clone(),
            Duration::from_secs(1),
        ));
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let started = tokio::time::Instant::now();
        let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
            "the slow request is answered, not cut at the idle timeout: {answer:?}"
        );
        assert!(closed, "the quiet connection is closed after its answer");
        println!("answered and closed after {:?}", started.elapsed());
        stop.cancel();
        server.await.expect("server");
    }
}
