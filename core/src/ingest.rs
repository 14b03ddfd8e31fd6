//! The webhook endpoint: every `[[sources]]` path, one handler.
//!
//! Checks run cheapest first — path, method, declared size, content type, body size — and
//! only then does the source's verifier see the bytes. Only a verified request becomes an
//! [`Event`]. The 2xx is sent only after the event, with the pipelines it was routed to,
//! is committed to the journal (see `journal::Journal::accept`); a request that is authenticated but cannot be processed is committed as a dead
//! letter and also answered 2xx (nothing authenticated is lost, and the sender has nothing
//! to fix by retrying). A source's `respond` (see [`crate::respond`]) replaces the 2xx of a
//! committed event (or a duplicate), never an earlier answer. Every rejection is a status
//! code with a JSON `{"error": "..."}` body; nothing here panics on any input.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hookline_plugin_api::Event;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, warn};

use crate::internal_events::{
    DuplicateReceived, EventAccepted, RequestRejected, ResponseRenderFailed, TestPingAnswered,
    UnprocessableDeadLettered,
};
use crate::journal::{Accepted, Delivery, Journal, NewDeadLetter, NewEvent};
use crate::runtime::{Runtime, Source, Workers};
use crate::verify::{Rejection, Unverified, Verified};
use crate::{lograte, metrics};

/// Shared by every request; the runtime is swapped whole on reload.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) runtime: Arc<ArcSwap<Runtime>>,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) workers: Workers,
    /// Request bytes that may be held at once across all connections (`max_buffered`).
    pub(crate) budget: Budget,
    /// The journal's disk and size limits.
    pub(crate) floor: Arc<crate::storage::Floor>,
}

/// The `max_buffered` budget, in two pools so that large bodies cannot starve ordinary
/// webhooks: requests that declare at most [`Budget::SMALL`] bytes draw from a quarter of
/// it, larger ones (and bodies of unknown length) from the rest.
///
/// A small body holds room for the bytes it has sent, taken as they arrive, not for the
/// length it declares: a client that declares 64 KiB, sends a byte and goes quiet until the
/// body timeout holds one byte, so ordinary webhooks' room cannot be taken by connections
/// that send nothing. A large body takes the room it may need before it is read, so that
/// no more large bodies are read at once than the budget holds.
#[derive(Debug)]
pub(crate) struct Budget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl Budget {
    /// The largest body that counts as small: a webhook is usually a few KiB.
    pub(crate) const SMALL: u64 = 64 * 1024;
    /// How long a request waits for room before it is answered 503.
    const WAIT: Duration = Duration::from_secs(1);

    pub(crate) fn new(max_buffered: u64) -> Budget {
        let bytes = usize::try_from(max_buffered)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let small = (bytes / 4).max(Self::SMALL as usize);
        Budget {
            small: Arc::new(Semaphore::new(small)),
            large: Arc::new(Semaphore::new(bytes.saturating_sub(small).max(1))),
        }
    }

    /// Room for a large body of `bytes` at most, waiting up to a second; `None` when there
    /// is none.
    async fn reserve_large(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        let wait = Arc::clone(&self.large).acquire_many_owned(n);
        match tokio::time::timeout(Self::WAIT, wait).await {
            Ok(Ok(room)) => Some(room),
            _ => None,
        }
    }
}

/// Why a body could not be read whole.
enum BodyError {
    TooLarge,
    /// No room in the budget within [`Budget::WAIT`] (waits summed over the body).
    Busy,
    Read(axum::Error),
}

/// Read `body`, at most `limit` bytes, taking room in `pool` (if any) for each piece as it
/// arrives. Returns the bytes and the room they hold, to be kept until the request is
/// answered.
async fn read_body(
    mut body: Body,
    limit: usize,
    pool: Option<&Arc<Semaphore>>,
) -> Result<(bytes::Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    // The pieces as they came (nothing allocated ahead for a length only declared), joined
    // once at the end.
    let mut pieces: Vec<bytes::Bytes> = Vec::new();
    let mut len = 0usize;
    let mut room: Option<OwnedSemaphorePermit> = None;
    let mut waited = Duration::ZERO;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers: not part of the body
        };
        if data.is_empty() {
            continue;
        }
        if len + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        let n = data.len();
        len += n;
        pieces.push(data);
        let Some(pool) = pool else {
            continue;
        };
        let n = u32::try_from(n).map_err(|_| BodyError::TooLarge)?;
        let more = match Arc::clone(pool).try_acquire_many_owned(n) {
            Ok(more) => more,
            Err(_) => {
                let started = tokio::time::Instant::now();
                let wait = Budget::WAIT.saturating_sub(waited);
                let got = tokio::time::timeout(wait, Arc::clone(pool).acquire_many_owned(n)).await;
                waited += started.elapsed();
                match got {
                    Ok(Ok(more)) => more,
                    _ => return Err(BodyError::Busy),
                }
            }
        };
        match &mut room {
            Some(room) => room.merge(more),
            None => room = Some(more),
        }
    }
    let body = match pieces.len() {
        0 => bytes::Bytes::new(),
        1 => pieces.swap_remove(0),
        _ => {
            let mut whole = bytes::BytesMut::with_capacity(len);
            for piece in &pieces {
                whole.extend_from_slice(piece);
            }
            whole.freeze()
        }
    };
    Ok((body, room))
}

impl AppState {
    pub(crate) fn new(
        runtime: Arc<ArcSwap<Runtime>>,
        journal: Arc<dyn Journal>,
        workers: Workers,
        floor: Arc<crate::storage::Floor>,
    ) -> AppState {
        let budget = Budget::new(runtime.load().server.max_buffered.as_u64());
        AppState {
            runtime,
            journal,
            workers,
            budget,
            floor,
        }
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// A rejection: status code and a message safe to show the sender.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Body,
) -> Response {
    // HTTP/2 carries the host in `:authority`, not in a Host header (RFC 9113, 8.3.1).
    // Write it as the Host header a proxy translating to HTTP/1.1 would write, so that a
    // scheme that signs the URL (Twilio) and a later rerun of the stored request see it.
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    let runtime = state.runtime.load_full();
    let path = match uri.path() {
        "/" => "/",
        p => p.strip_suffix('/').unwrap_or(p),
    };
    let Some(source) = runtime.sources.get(path) else {
        metrics::request("unknown", 404);
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no webhook source is configured at this path",
        )
        .into_response();
    };
    let response = match method {
        Method::POST => match receive(&state, &runtime, source, &uri, &headers, body).await {
            Ok(Receipt::Accepted(id)) => (
                StatusCode::OK,
                axum::Json(json!({ "received": true, "id": id })),
            )
                .into_response(),
            Ok(Receipt::Duplicate(id)) => (
                StatusCode::OK,
                axum::Json(json!({ "received": true, "id": id, "duplicate": true })),
            )
                .into_response(),
            Ok(Receipt::Handshake(answer)) => (StatusCode::OK, axum::Json(answer)).into_response(),
            Ok(Receipt::Answer(response)) => response,
            Err(e) => e.into_response(),
        },
        // LeadShark's "Test webhook" button sends a GET: answer it, process nothing.
        Method::GET | Method::HEAD => {
            TestPingAnswered {
                source: &source.telemetry,
            }
            .emit();
            (
                StatusCode::OK,
                axum::Json(json!({ "received": true, "test": true })),
            )
                .into_response()
        }
        _ => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed: webhooks are delivered with POST"),
        )
        .with_header(header::ALLOW, "GET, HEAD, POST")
        .into_response(),
    };
    metrics::request(&source.name, response.status().as_u16());
    response
}

/// How an accepted POST was answered.
enum Receipt {
    /// Journaled under this event id (or dead-lettered with it, if unprocessable).
    Accepted(String),
    /// Seen within the dedupe window: the first event's id.
    Duplicate(String),
    /// A provider's signed handshake, answered with this JSON; nothing journaled.
    Handshake(serde_json::Value),
    /// Journaled (or a duplicate), answered as the source's `respond` says.
    Answer(Response),
}

/// The source's `respond` answer for a committed event (`None`: the default answer). A
/// body that cannot be rendered is logged, and the default answer is sent: the event is
/// accepted either way.
fn custom_answer(source: &Source, event: &Event, duplicate: bool) -> Option<Receipt> {
    let responder = source.responder.as_ref()?;
    let mut default = json!({ "received": true, "id": event.id });
    if duplicate {
        default["duplicate"] = true.into();
    }
    match responder.answer(event, default) {
        Ok(response) => Some(Receipt::Answer(response)),
        Err(error) => {
            ResponseRenderFailed {
                source: &source.name,
                event_id: &event.id,
                error: &error,
            }
            .emit();
            None
        }
    }
}

async fn receive(
    state: &Arc<AppState>,
    runtime: &Runtime,
    source: &Arc<Source>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Receipt, ApiError> {
    let max_body = runtime.server.max_body.as_u64();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than the limit of {} bytes",
                max_body
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(too_large());
    }
    check_content_type(headers, |essence| {
        source.verifier.accepts_content_type(essence)
    })?;
    if let Some(words) = state.floor.refusal() {
        return Err(busy(words));
    }
    if let Some(max) = runtime.storage.max_pending
        && state.journal.pending_hint() >= max
    {
        if let Some(held_back) = lograte::allow(&format!("backpressure:{}", source.name)) {
            warn!(source = %source.name, max_pending = max, held_back, "backpressure: `max_pending` deliveries pending; answered 503");
        }
        return Err(busy("too many deliveries pending; retry later"));
    }

    // The body, in the budget of bytes held across all connections (room taken as the bytes
    // arrive, held until the request is answered), within the body timeout.
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let deadline = runtime.server.body_timeout;
    let (pool, _upfront) = match declared {
        Some(n) if n <= Budget::SMALL => (Some(&state.budget.small), None),
        _ => {
            let most = declared.unwrap_or(max_body).clamp(1, max_body.max(1));
            match state.budget.reserve_large(most).await {
                Some(room) => (None, Some(room)),
                None => {
                    debug!(source = %source.name, bytes = most, "request bytes in flight at `max_buffered`; answered 503");
                    return Err(busy("too many request bytes in flight; retry later"));
                }
            }
        }
    };
    let read = tokio::time::timeout(deadline, read_body(body, limit, pool)).await;
    let Ok(read) = read else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {}",
                humantime::format_duration(deadline)
            ),
        ));
    };
    let (bytes, _room) = match read {
        Ok(read) => read,
        Err(BodyError::TooLarge) => return Err(too_large()),
        Err(BodyError::Busy) => {
            debug!(source = %source.name, "request bytes in flight at `max_buffered`; answered 503");
            return Err(busy("too many request bytes in flight; retry later"));
        }
        Err(BodyError::Read(e)) => {
            debug!(error = %e, "could not read request body");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            ));
        }
    };

    let received_at = jiff::Timestamp::now();
    let target = uri.path_and_query().map(|p| p.as_str());
    let verified = match verify(source, target, headers, &bytes, received_at).await? {
        Ok(v) => v,
        Err(r) if r.authenticated() => {
            let reason = r.to_string();
            return dead_letter_request(state, source, headers, &bytes, None, reason, received_at)
                .await;
        }
        Err(r) => return Err(rejected(source, r)),
    };
    if let Some(answer) = source.verifier.handshake(&verified) {
        debug!(source = %source.name, event_type = %verified.event_type, "answered a signed handshake");
        return Ok(Receipt::Handshake(answer));
    }
    let problems = crate::verify::problems(source.verifier.as_ref(), &verified);
    if !problems.is_empty() {
        let reason = problems.join("; ");
        return dead_letter_request(
            state,
            source,
            headers,
            &bytes,
            Some(verified),
            reason,
            received_at,
        )
        .await;
    }

    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.name.clone(),
        event_type: verified.event_type,
        received_at,
        headers: kept_headers(headers, &source.verifier.signature_headers()),
        payload: verified.payload,
    };
    let (pipelines, order_keys): (Vec<String>, Vec<Option<String>>) = source
        .route(&event.event_type)
        .map(|p| (p.name.clone(), p.order_key_of(&event)))
        .unzip();
    let order_keys = if order_keys.iter().all(Option::is_none) {
        Vec::new()
    } else {
        order_keys
    };
    let dedupe_key = verified
        .idempotency_key
        .filter(|_| !source.dedupe_window.is_zero());
    let new = NewEvent {
        event,
        dedupe_key,
        dedupe_until: crate::time::later(received_at, source.dedupe_window),
        pipelines,
        order_keys,
    };
    // From here the event is stored and its runs started whatever the sender does. A
    // sender that hangs up while its event is being committed drops this handler; had the
    // commit been awaited here, the event would stay committed but never started, its
    // first runs claimed by this process until a restart, and the sender's retry answered
    // as a duplicate of it. So the commit is a task of its own, which the handler awaits.
    let commit = tokio::spawn(commit(Arc::clone(state), Arc::clone(source), new));
    match commit.await {
        Ok(receipt) => receipt,
        Err(e) => {
            error!(source = %source.name, error = %e, "storing an event failed unexpectedly; answered 503");
            Err(busy("the event could not be stored; retry later"))
        }
    }
}

/// Journal a verified event and start its runs (see [`receive`]: never cancelled halfway).
async fn commit(
    state: Arc<AppState>,
    source: Arc<Source>,
    new: NewEvent,
) -> Result<Receipt, ApiError> {
    let source = &source;
    let event = &new.event;
    match state.journal.accept(&new).await {
        Ok(Accepted::Duplicate { first_id }) => {
            DuplicateReceived {
                source: &source.telemetry,
                first_id: &first_id,
            }
            .emit();
            // Answered like the first: rendered over this copy (a retry carries the same
            // payload) under the first event's id.
            let answer = source.responder.as_ref().and_then(|_| {
                let mut first = new.event.clone();
                first.id = first_id.clone();
                custom_answer(source, &first, true)
            });
            Ok(answer.unwrap_or(Receipt::Duplicate(first_id)))
        }
        Ok(Accepted::New { deliveries, queued }) => {
            EventAccepted {
                source: &source.telemetry,
                event_id: &event.id,
                event_type: &event.event_type,
                routed: deliveries.len() + queued,
            }
            .emit();
            if queued > 0 {
                // Ordered deliveries wait their turn in the journal.
                state.workers.wake();
            }
            // Rendered now, while the event is at hand; sent once the runs are started.
            let answer = custom_answer(source, event, false);
            let id = event.id.clone();
            // The runs share the event; each pipeline copies it only where a transform
            // changes it.
            let event = Arc::new(new.event);
            let deliveries = deliveries
                .into_iter()
                .map(|d| Delivery {
                    id: d.id,
                    pipeline: d.pipeline,
                    stage: 0,
                    stage_name: None,
                    attempts: 0,
                    first_failed_at: None,
                    event: Arc::clone(&event),
                })
                .collect();
            // Let go before the runs start: a run that owns the event alone may edit it in
            // place instead of copying it.
            drop(event);
            let deferred = state.workers.try_start_all(deliveries);
            // Every run slot is busy: the backlog waits in the journal for the poller, so
            // memory stays bounded however far the sinks fall behind.
            if !deferred.is_empty() {
                let ids = deferred.iter().map(|d| d.id).collect();
                match state.journal.defer(ids).await {
                    Ok(()) => state.workers.wake(),
                    Err(e) => {
                        // Committed already: the poller tries the deferral again; no task
                        // and no copy of the event waits in memory meanwhile.
                        warn!(error = %e, "could not defer deliveries to the journal; the poller will try again");
                        state
                            .workers
                            .defer_later(deferred.into_iter().map(|d| d.id).collect());
                    }
                }
            }
            Ok(answer.unwrap_or(Receipt::Accepted(id)))
        }
        Err(e) => {
            if let Some(held_back) = lograte::allow(&format!("journal:{}", source.name)) {
                error!(source = %source.name, error = %e, held_back, "could not journal an event; answered 503");
            }
            Err(busy("the event could not be stored; retry later"))
        }
    }
}

/// Keep an authenticated request that cannot be processed, with its raw body and the reason.
async fn dead_letter_request(
    state: &AppState,
    source: &Source,
    headers: &HeaderMap,
    body: &[u8],
    verified: Option<Verified>,
    reason: String,
    received_at: jiff::Timestamp,
) -> Result<Receipt, ApiError> {
    let id = uuid::Uuid::now_v7().to_string();
    let kept = kept_headers(headers, &source.verifier.signature_headers());
    let event = verified.map(|v| Event {
        id: id.clone(),
        source: source.name.clone(),
        event_type: v.event_type,
        received_at,
        headers: kept.clone(),
        payload: v.payload,
    });
    let letter = NewDeadLetter {
        event_id: id.clone(),
        source: source.name.clone(),
        pipeline: None,
        stage_index: None,
        stage_name: None,
        error: reason.clone(),
        attempts: 0,
        first_failed_at: received_at,
        last_failed_at: received_at,
        event,
        raw: Some(body.to_vec()),
    };
    // The headers an event would keep go with it, so that it can be re-run.
    match state.journal.dead_letter_request(letter, kept).await {
        Ok(_) => {
            UnprocessableDeadLettered {
                source: &source.name,
                event_id: &id,
                reason: &reason,
            }
            .emit();
            Ok(Receipt::Accepted(id))
        }
        Err(e) => {
            if let Some(held_back) = lograte::allow(&format!("dead-letter:{}", source.name)) {
                error!(source = %source.name, error = %e, held_back, "could not store a dead letter; answered 503");
            }
            Err(busy("the request could not be stored; retry later"))
        }
    }
}

/// Bodies up to this size are verified on the thread that read them (microseconds); larger
/// ones — a scheme may have to parse them before it can verify (LeadShark's
/// re-serialisation) — on the blocking pool, at most one per core at a time.
const VERIFY_INLINE: usize = 64 * 1024;

async fn verify(
    source: &Arc<Source>,
    target: Option<&str>,
    headers: &HeaderMap,
    bytes: &bytes::Bytes,
    now: jiff::Timestamp,
) -> Result<Result<Verified, Rejection>, ApiError> {
    if bytes.len() <= VERIFY_INLINE {
        return Ok(source.verifier.verify(&Unverified {
            headers,
            body: bytes,
            target,
            now,
        }));
    }
    static SLOTS: std::sync::LazyLock<Arc<Semaphore>> = std::sync::LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores))
    });
    let slot = tokio::time::timeout(Duration::from_secs(1), SLOTS.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| busy("too many large requests being verified; retry later"))?;
    let (source, headers, bytes) = (source.clone(), headers.clone(), bytes.clone());
    let target = target.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        source.verifier.verify(&Unverified {
            headers: &headers,
            body: &bytes,
            target: target.as_deref(),
            now,
        })
    })
    .await
    .map_err(|e| {
        error!(error = %e, "verification task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "verification failed; see the service log",
        )
    })
}

fn busy(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).with_header(header::RETRY_AFTER, "1")
}

fn rejected(source: &Source, r: Rejection) -> ApiError {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    RequestRejected {
        source: &source.telemetry,
        reason: r.reason(),
        status: status.as_u16(),
        message: &r,
    }
    .emit();
    ApiError::new(status, r.to_string())
}

/// JSON bodies only (`application/json`, or any `+json` type, parameters ignored), unless
/// the source's scheme accepts more (Slack: forms).
fn check_content_type(headers: &HeaderMap, accepts: impl Fn(&str) -> bool) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "missing Content-Type: webhooks must be sent as application/json",
        ));
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if accepts(&essence) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type `{}` is not JSON: webhooks must be sent as application/json",
                value
                    .to_str()
                    .unwrap_or("(not text)")
                    .chars()
                    .take(100)
                    .collect::<String>()
            ),
        ))
    }
}

/// Headers an event keeps: text values, minus credentials and signatures.
fn kept_headers(headers: &HeaderMap, signatures: &[String]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !(n.contains("signature")
                || signatures.iter().any(|s| s == n)
                || n == "authorization"
                || n == "cookie"
                || n == "proxy-authorization"
                || n == "content-length")
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ok = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            check_content_type(&h, crate::verify::is_json).is_ok()
        };
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/cloudevents+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(check_content_type(&HeaderMap::new(), crate::verify::is_json).is_err());
    }

    #[test]
    fn signatures_and_credentials_are_not_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-webhook-signature", HeaderValue::from_static("abc"));
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("x-webhook-event", HeaderValue::from_static("new.like"));
        h.insert("x-acme-sig", HeaderValue::from_static("sha256=abc"));
        let kept = kept_headers(&h, &["x-acme-sig".to_string()]);
        assert_eq!(
            kept,
            vec![("x-webhook-event".to_string(), "new.like".to_string())]
        );
    }
}
