//! `GET /api/v1/tail`: the live tail as server-sent events, one JSON object per event
//! accepted and per stage outcome, filtered by source, pipeline and stage.
//!
//! A listener costs the flow nothing it would wait for: it reads a ring (see [`crate::tap`]),
//! and one that falls behind gets a `lagged` entry saying how many it missed. At most
//! [`MAX_TAILS`] listen at once. A tail ends when the service stops (a client reconnects to
//! the next process), so an open one never holds up the stop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use super::AdminState;
use crate::ingest::ApiError;
use crate::tap::{Listener, Tapped};

/// Tail listeners at once; more are answered 503.
pub(crate) const MAX_TAILS: usize = 16;

fn slots() -> &'static Arc<Semaphore> {
    static SLOTS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| Arc::new(Semaphore::new(MAX_TAILS)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TailQuery {
    source: Option<String>,
    pipeline: Option<String>,
    /// A stage name: only that stage's outcomes (and no `accepted` entries).
    stage: Option<String>,
}

impl TailQuery {
    fn wants(&self, t: &Tapped) -> bool {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        if given(&self.source).is_some_and(|s| s != t.source()) {
            return false;
        }
        match (t.stage(), given(&self.pipeline), given(&self.stage)) {
            (None, None, None) => true,
            // An accepted event has no pipeline or stage yet.
            (None, ..) => false,
            (Some((pipeline, stage)), want_pipeline, want_stage) => {
                want_pipeline.is_none_or(|p| p == pipeline) && want_stage.is_none_or(|s| s == stage)
            }
        }
    }
}

struct Tail {
    listener: Listener,
    query: TailQuery,
    stop: tokio_util::sync::CancellationToken,
    _slot: OwnedSemaphorePermit,
}

pub(super) async fn tail(
    State(admin): State<AdminState>,
    q: Result<Query<TailQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let slot = slots().clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_TAILS} tails are open already; close one"),
        )
    })?;
    let state = Tail {
        listener: Listener::new(),
        query,
        stop: admin.stop.clone(),
        _slot: slot,
    };
    let stream = futures::stream::unfold(state, |mut tail| async move {
        loop {
            let received = tokio::select! {
                biased;
                () = tail.stop.cancelled() => return None,
                received = tail.listener.rx.recv() => received,
            };
            let item = match received {
                Ok(t) if tail.query.wants(&t) => Event::default().json_data(t.as_ref()),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(skipped)) => Event::default()
                    .json_data(serde_json::json!({ "kind": "lagged", "skipped": skipped })),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let event = item.unwrap_or_else(|e| Event::default().comment(e.to_string()));
            return Some((Ok::<_, Infallible>(event), tail));
        }
    });
    // A comment often enough that the admin listener's idle timeout (`[server]
    // idle_timeout`, which it shares) never cuts a quiet tail.
    let idle = admin.runtime.load().server.idle_timeout;
    let every = (idle / 3).clamp(Duration::from_millis(500), Duration::from_secs(15));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(every))
        .into_response())
}
