//! The webhook endpoint: every `[[sources]]` path, one handler.
//!
//! Checks run cheapest first — path, method, declared size, content type, body size — and
//! only then does the source's verifier see the bytes. Only a verified request becomes an
//! [`Event`]. Every rejection is a status code with a JSON `{"error": "..."}` body; nothing
//! here panics on any input.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hookline_plugin_api::Event;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::runtime::{Dispatcher, Runtime, Source};
use crate::verify::{Rejection, Unverified};

/// Shared by every request; the runtime is swapped whole on reload.
#[derive(Debug)]
pub struct AppState {
    pub runtime: ArcSwap<Runtime>,
    pub dispatcher: Dispatcher,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// A rejection: status code and a message safe to show the sender.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
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
    headers: HeaderMap,
    body: Body,
) -> Response {
    let runtime = state.runtime.load_full();
    let path = match uri.path() {
        "/" => "/",
        p => p.strip_suffix('/').unwrap_or(p),
    };
    let Some(source) = runtime.sources.get(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no webhook source is configured at this path",
        )
        .into_response();
    };
    match method {
        Method::POST => match receive(&state, &runtime, source, &headers, body).await {
            Ok(id) => (
                StatusCode::OK,
                axum::Json(json!({ "received": true, "id": id })),
            )
                .into_response(),
            Err(e) => e.into_response(),
        },
        // LeadShark's "Test webhook" button sends a GET: answer it, process nothing.
        Method::GET | Method::HEAD => {
            info!(source = %source.name, "test ping (GET) answered; nothing processed");
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
    }
}

async fn receive(
    state: &AppState,
    runtime: &Runtime,
    source: &Arc<Source>,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, ApiError> {
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
    check_content_type(headers)?;

    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            debug!(error = %e, "could not read request body");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            ));
        }
    };

    let verified = source
        .verifier
        .verify(&Unverified {
            headers,
            body: &bytes,
        })
        .map_err(|r| rejected(source, r))?;

    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.name.clone(),
        event_type: verified.event_type,
        received_at: jiff::Timestamp::now(),
        headers: kept_headers(headers),
        payload: verified.payload,
    };
    let pipelines: Vec<_> = source.route(&event.event_type).cloned().collect();
    let id = event.id.clone();
    let routed = pipelines.len();
    info!(event_id = %id, source = %source.name, event_type = %event.event_type, routed, "accepted");
    state.dispatcher.dispatch(event, &pipelines).map_err(|_| {
        warn!(event_id = %id, source = %source.name, "busy: too many events in flight; answered 503");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many events in flight; retry later")
            .with_header(header::RETRY_AFTER, "1")
    })?;
    Ok(id)
}

fn rejected(source: &Source, r: Rejection) -> ApiError {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status == StatusCode::UNAUTHORIZED {
        // Worth an operator's attention (a wrong or rotated secret), but never the secret.
        warn!(source = %source.name, reason = r.reason(), "rejected: {r}");
    } else {
        debug!(source = %source.name, reason = r.reason(), "rejected: {r}");
    }
    ApiError::new(status, r.to_string())
}

/// JSON bodies only: `application/json`, or any `+json` type, parameters ignored.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
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
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
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
fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !(n.contains("signature")
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
            check_content_type(&h).is_ok()
        };
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/cloudevents+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn signatures_and_credentials_are_not_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-webhook-signature", HeaderValue::from_static("abc"));
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("x-webhook-event", HeaderValue::from_static("new.like"));
        let kept = kept_headers(&h);
        assert_eq!(
            kept,
            vec![("x-webhook-event".to_string(), "new.like".to_string())]
        );
    }
}
