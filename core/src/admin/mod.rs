//! The admin listener: health, readiness, the API under `/api/v1`, and the web console at
//! `/ui` ([`ui`]).
//!
//! It listens on loopback by default. With `[admin] token` set, every request must carry
//! `Authorization: Bearer <token>` (compared in constant time); config checking refuses a
//! non-loopback address without one.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::ingest::ApiError;
use crate::journal::{DeadLetterFilter, Journal, Replayed};
use crate::runtime::Workers;

pub(crate) mod events;
pub(crate) mod replays;
mod requests;
mod tail;
mod ui;

#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) workers: Workers,
    /// The running config: the token is read from it, so a reload can rotate it.
    pub(crate) runtime: Arc<arc_swap::ArcSwap<crate::runtime::Runtime>>,
    pub(crate) reloader: Option<Arc<crate::reload::Reloader>>,
    /// The plugins, for a search's CEL expression (`q`), built as the `cel` filter.
    pub(crate) registry: hookline_plugin_api::Registry,
    /// Runs bulk replay jobs in this process.
    pub(crate) replays: Option<replays::Runner>,
    /// Cancelled when the service stops: ends the responses that would otherwise never end
    /// (the live tail), so that an open console does not hold up the stop.
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

pub(crate) fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/v1/dead-letters", get(list).delete(purge_many))
        .route("/api/v1/dead-letters/replay", post(replay_many))
        .route("/api/v1/dead-letters/{id}", get(show).delete(purge_one))
        .route("/api/v1/dead-letters/{id}/replay", post(replay_one))
        .route("/api/v1/events", get(events::list).delete(events::erase))
        .route("/api/v1/events/{id}", get(events::show))
        .route("/api/v1/events/{id}/replay", post(events::replay))
        .route("/api/v1/replays", get(replays::list).post(replays::create))
        .route(
            "/api/v1/replays/{id}",
            get(replays::show).delete(replays::cancel),
        )
        .route("/api/v1/replays/{id}/cancel", post(replays::cancel))
        .route("/api/v1/requests", get(requests::list))
        .route("/api/v1/requests/{id}", get(requests::show))
        .route("/api/v1/requests/{id}/rerun", post(requests::rerun))
        .route("/api/v1/tail", get(tail::tail))
        .route("/api/v1/pipelines", get(pipelines))
        .route("/api/v1/pipelines/{name}", get(pipeline_one))
        .route("/api/v1/pipelines/{name}/pause", post(pause))
        .route("/api/v1/pipelines/{name}/resume", post(resume))
        .route("/api/v1/reload", post(reload))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such admin endpoint") });
    api.layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            same_machine,
        ))
        .with_state(state)
        // The console's pages hold no data and need no token (the login form is one of them).
        .merge(ui::router())
}

/// A web page the operator happens to open must not be able to use the admin API: not by
/// sending requests to it (cross-site request forgery: a request whose `Origin` is not the
/// admin listener's own, or whose `Sec-Fetch-Site` says another site sent it, is refused,
/// whatever its method) and not by DNS rebinding (a request addressed to a name other than
/// this machine's loopback is refused unless it carries a token). The console at `/ui` is
/// the listener's own origin, so its requests pass.
async fn same_machine(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let presented = headers.contains_key(header::AUTHORIZATION);
    let listen = state.runtime.load().admin.listen.clone();
    if !presented && !is_local_host(&host, &listen) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the admin API answers requests addressed to this machine (localhost, 127.0.0.1, [::1]), not to `{}`, unless they carry the admin token",
                printable(&host)
            ),
        )
        .into_response();
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if is_cross_site(headers, origin, &host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a request from the web page `{}` may not use the admin API; use the console at /ui, the CLI, or send it without an Origin header",
                printable(origin.unwrap_or("another site"))
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Sent by a page of another site: `Sec-Fetch-Site` says so, or `Origin` names another host
/// than the one the request is addressed to.
fn is_cross_site(headers: &axum::http::HeaderMap, origin: Option<&str>, host: &str) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let foreign = origin.is_some_and(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_none_or(|rest| !rest.eq_ignore_ascii_case(host))
    });
    fetch_site || foreign
}

/// `localhost` (or a name under it), a loopback address, or the listener's own address.
fn is_local_host(host: &str, listen: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        let own = listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip() == ip && !ip.is_unspecified());
        return ip.is_loopback() || own;
    }
    false
}

/// A header value as it may be shown: control characters escaped, at most 100 characters.
fn printable(s: &str) -> String {
    s.chars().take(100).flat_map(char::escape_debug).collect()
}

async fn auth(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let runtime = state.runtime.load();
    if let Some(token) = &runtime.admin.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
                .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    next.run(req).await
}

async fn metrics(State(state): State<AdminState>) -> Response {
    match state.journal.depths().await {
        Ok(d) => crate::metrics::depths(d.pending, d.dead),
        Err(e) => {
            if let Some(held_back) = crate::lograte::allow("metrics-depths") {
                tracing::warn!(error = %e, held_back, "metrics: could not read journal depths");
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::metrics().encode(),
    )
        .into_response()
}

async fn reload(State(state): State<AdminState>) -> Response {
    let Some(reloader) = &state.reloader else {
        return ApiError::new(StatusCode::NOT_IMPLEMENTED, "reload is not available")
            .into_response();
    };
    match reloader.reload("admin API").await {
        Ok(()) => axum::Json(json!({ "reloaded": true })).into_response(),
        Err(d) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "error": "the new configuration is invalid; the running one stays",
                "problems": d.0.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if let Some(why) = state.journal.stalled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "not ready", "error": "the journal cannot take work", "reason": why })),
        )
            .into_response();
    }
    match state.journal.depths().await {
        Ok(d) => {
            axum::Json(json!({ "status": "ready", "pending": d.pending, "dead_letters": d.dead }))
                .into_response()
        }
        Err(e) => {
            if let Some(held_back) = crate::lograte::allow("readiness") {
                tracing::error!(error = %e, held_back, "readiness: journal unavailable");
            }
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "journal unavailable").into_response()
        }
    }
}

/// Query string of list, bulk replay and bulk purge.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterQuery {
    pipeline: Option<String>,
    stage: Option<String>,
    reason: Option<String>,
    /// RFC 3339 time, or a duration ago such as `1h`.
    since: Option<String>,
    #[serde(default)]
    include_replayed: bool,
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
    #[serde(default)]
    from_start: bool,
    /// Bulk purge without any filter must say so.
    #[serde(default)]
    all: bool,
}

impl FilterQuery {
    fn filter(&self) -> Result<DeadLetterFilter, ApiError> {
        let since = self
            .since
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(crate::journal::parse_since)
            .transpose()
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
        Ok(DeadLetterFilter {
            pipeline: given(&self.pipeline),
            stage: given(&self.stage),
            reason: given(&self.reason),
            since,
            include_replayed: self.include_replayed,
            event_id: None,
            summaries: false,
        })
    }

    /// No filter at all: every value missing or empty (`?reason=` filters nothing).
    fn is_unfiltered(&self) -> bool {
        [&self.pipeline, &self.stage, &self.reason, &self.since]
            .iter()
            .all(|v| given(v).is_none())
    }
}

/// A query value that says something: empty (or blank) counts as not given.
fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "admin API: journal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "journal error; see the service log",
    )
}

async fn list(
    State(s): State<AdminState>,
    q: Result<Query<FilterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let filter = DeadLetterFilter {
        summaries: true,
        ..q.filter()?
    };
    let page = s
        .journal
        .list_dead(filter, q.offset, limit)
        .await
        .map_err(internal)?;
    // Summaries only: the event and a raw body (personal data, up to `max_body` each) are
    // on the single-item endpoint. The page ends early at LIST_BYTES.
    let mut items = Vec::new();
    let mut bytes = 0;
    for dl in &page.items {
        let item = summary(dl);
        bytes += item.to_string().len();
        if bytes > LIST_BYTES && !items.is_empty() {
            break;
        }
        items.push(item);
    }
    let next = q.offset + items.len() as u64;
    Ok(axum::Json(json!({
        "items": items,
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": (next < page.total).then_some(next),
    }))
    .into_response())
}

/// The most one list response carries, in bytes of JSON (about).
const LIST_BYTES: usize = 1024 * 1024;
/// The longest error text a list item carries (the whole is on the single-item endpoint).
const LIST_ERROR_CHARS: usize = 2000;

/// A dead letter without its event or raw body, for lists.
fn summary(dl: &crate::journal::DeadLetter) -> serde_json::Value {
    let error: String = dl.error.chars().take(LIST_ERROR_CHARS).collect();
    json!({
        "id": dl.id,
        "event_id": dl.event_id,
        "source": dl.source,
        "event_type": dl.event.as_ref().map(|e| e.event_type.as_str()),
        "pipeline": dl.pipeline,
        "stage_index": dl.stage_index,
        "stage_name": dl.stage_name,
        "error": error,
        "attempts": dl.attempts,
        "first_failed_at": dl.first_failed_at,
        "last_failed_at": dl.last_failed_at,
        "created_at": dl.created_at,
        "state": dl.state,
        "replayed_at": dl.replayed_at,
        "has_event": dl.event.is_some(),
        "has_raw": dl.raw.is_some(),
    })
}

async fn show(State(s): State<AdminState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match s.journal.get_dead(id).await.map_err(internal)? {
        Some(dl) => Ok(axum::Json(dl).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such dead letter")),
    }
}

async fn replay_one(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    q: Result<Query<FilterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    match s.journal.replay(id, q.from_start).await.map_err(internal)? {
        Replayed::Queued { delivery_id } => {
            crate::metrics::dead_letter_replayed();
            s.workers.wake();
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "replayed": true, "delivery_id": delivery_id })),
            )
                .into_response())
        }
        Replayed::NotFound => Err(ApiError::new(StatusCode::NOT_FOUND, "no such dead letter")),
        Replayed::Skipped { reason } => Err(ApiError::new(StatusCode::CONFLICT, reason)),
    }
}

async fn replay_many(
    State(s): State<AdminState>,
    q: Result<Query<FilterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let ids = s.journal.dead_ids(q.filter()?).await.map_err(internal)?;
    let (mut queued, mut skipped) = (0u64, 0u64);
    for id in ids {
        match s.journal.replay(id, q.from_start).await.map_err(internal)? {
            Replayed::Queued { .. } => {
                crate::metrics::dead_letter_replayed();
                queued += 1;
            }
            _ => skipped += 1,
        }
    }
    s.workers.wake();
    Ok(axum::Json(json!({ "queued": queued, "skipped": skipped })).into_response())
}

async fn purge_one(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.journal.purge(vec![id]).await.map_err(internal)? {
        0 => Err(ApiError::new(StatusCode::NOT_FOUND, "no such dead letter")),
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn purge_many(
    State(s): State<AdminState>,
    q: Result<Query<FilterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if q.is_unfiltered() && !q.all {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "purging every dead letter needs `all=true`; or filter by pipeline, stage, reason or since",
        ));
    }
    let ids = s.journal.dead_ids(q.filter()?).await.map_err(internal)?;
    let purged = s.journal.purge(ids).await.map_err(internal)?;
    Ok(axum::Json(json!({ "purged": purged })).into_response())
}

/// A pipeline as the admin API shows it: its stages, and for each sink its retry policy,
/// limits and circuit.
fn pipeline_view(p: &crate::runtime::Pipeline, paused: bool) -> serde_json::Value {
    let stages: Vec<serde_json::Value> = p
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let kind = match s.op {
                crate::runtime::StageOp::Filter(_) => "filter",
                crate::runtime::StageOp::Transform(_) => "transform",
                crate::runtime::StageOp::Sink(_) => "sink",
            };
            let mut v = json!({
                "index": i,
                "name": s.name,
                "plugin": s.plugin,
                "kind": kind,
                "runs": crate::metrics::stage_runs(&p.name, &s.name),
            });
            if let Some(gate) = &s.gate {
                let limits = gate.limits();
                v["retry"] = json!(s.retry.describe());
                v["rate"] = json!(limits.rate.map(|r| r.to_string()));
                v["concurrency"] = json!(limits.concurrency.map(|c| c.get()));
                v["circuit"] = json!(gate.view());
            }
            v
        })
        .collect();
    json!({
        "name": p.name,
        "source": p.source,
        "events": p.events,
        "order_key": p.order_key,
        "paused": paused,
        "stages": stages,
    })
}

async fn pipelines(State(s): State<AdminState>) -> Response {
    let runtime = s.runtime.load();
    let items: Vec<serde_json::Value> = runtime
        .pipelines
        .iter()
        .map(|p| pipeline_view(p, s.workers.is_paused(&p.name)))
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

async fn pipeline_one(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let runtime = s.runtime.load();
    let p = runtime.pipeline(&name).ok_or_else(no_pipeline)?;
    Ok(axum::Json(pipeline_view(p, s.workers.is_paused(&p.name))).into_response())
}

fn no_pipeline() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such pipeline")
}

async fn pause(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(s, name, true).await
}

async fn resume(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(s, name, false).await
}

async fn set_paused(s: AdminState, name: String, paused: bool) -> Result<Response, ApiError> {
    if s.runtime.load().pipeline(&name).is_none() {
        return Err(no_pipeline());
    }
    match s.workers.set_paused(&name, paused).await {
        Ok(changed) => Ok(axum::Json(
            json!({ "pipeline": name, "paused": paused, "changed": changed }),
        )
        .into_response()),
        Err(crate::journal::JournalError::Unsupported(why)) => {
            Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, why))
        }
        Err(e) => Err(internal(e)),
    }
}
