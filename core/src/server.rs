//! Serving: bind, accept until told to stop, then let work in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::ingest::{AppState, router};

/// How long shutdown waits for pipeline runs in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve webhooks on an already-bound listener (tests bind port 0) until `shutdown`
/// resolves; then stop accepting, finish requests in flight, and drain pipeline runs.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    let in_flight = state.dispatcher.in_flight();
    if in_flight > 0 {
        info!(in_flight, "waiting for pipeline runs in flight");
    }
    if !state.dispatcher.drain(DRAIN_TIMEOUT).await {
        warn!(
            in_flight = state.dispatcher.in_flight(),
            "shutdown timed out with pipeline runs still in flight"
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
