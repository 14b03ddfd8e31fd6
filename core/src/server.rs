//! Serving on listeners the caller bound: accept until told to stop, then let work in
//! flight finish.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::AdminState;
use crate::ingest::{AppState, router};

/// How long shutdown waits for open requests to be answered.
pub(crate) const REQUEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for pipeline runs in flight; the rest resume at the next start.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Serve webhooks on an already-bound listener (tests bind port 0) until `stop` is
/// cancelled; then stop accepting, finish requests in flight, and give pipeline runs in
/// flight up to [`DRAIN_TIMEOUT`]. Deliveries still unfinished stay pending in the journal.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let limits = crate::listener::Limits::from_config(&state.runtime.load().server);
    crate::listener::serve(
        listener,
        router(state.clone()),
        limits,
        stop,
        REQUEST_DRAIN_TIMEOUT,
    )
    .await;
    drain(&state).await;
    Ok(())
}

/// A process without a webhook listener (`--role worker`): run until `stop`, then drain.
pub(crate) async fn work_until(state: Arc<AppState>, stop: CancellationToken) {
    stop.cancelled().await;
    drain(&state).await;
}

/// Give pipeline runs in flight up to [`DRAIN_TIMEOUT`].
async fn drain(state: &AppState) {
    let in_flight = state.workers.in_flight();
    info!(
        in_flight,
        "no longer accepting webhooks; waiting for pipeline runs in flight"
    );
    if !state.workers.shutdown(DRAIN_TIMEOUT).await {
        warn!(
            in_flight = state.workers.in_flight(),
            "runs still in flight at the deadline; their deliveries stay pending and resume at the next start"
        );
    }
}

/// Serve the admin API until `stop` is cancelled, with the listener's bounds
/// ([`crate::listener::Limits::admin`]); then let open requests finish for up to
/// [`REQUEST_DRAIN_TIMEOUT`].
pub(crate) async fn serve_admin(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    let limits = crate::listener::Limits::admin(&state.runtime.load().server);
    crate::listener::serve(
        listener,
        crate::admin::router(state),
        limits,
        stop,
        REQUEST_DRAIN_TIMEOUT,
    )
    .await;
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT: shutting down"),
        () = term => info!("SIGTERM: shutting down"),
    }
}
