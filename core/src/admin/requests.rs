//! `/api/v1/requests`: requests that passed verification but could not become events (not
//! JSON, no event type, a required field missing), newest first with a cursor, each with its
//! reason, the headers an event keeps and its raw body; and `POST …/{id}/rerun`, which runs
//! one through its source's steps after the signature check under the config in force
//! ([`crate::rerun`]).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{AdminState, internal};
use crate::ingest::ApiError;
use crate::journal::JournalError;
use crate::rerun::Outcome;

/// Query string of `GET /api/v1/requests`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestsQuery {
    cursor: Option<String>,
    limit: Option<u64>,
}

fn journal_error(e: JournalError) -> ApiError {
    match e {
        JournalError::Unsupported(why) => ApiError::new(StatusCode::NOT_IMPLEMENTED, why),
        JournalError::Invalid(why) => ApiError::new(StatusCode::BAD_REQUEST, why),
        e => internal(e),
    }
}

pub(super) async fn list(
    State(s): State<AdminState>,
    q: Result<Query<RequestsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let cursor = q.cursor.filter(|c| !c.trim().is_empty());
    let page = s
        .journal
        .list_requests(cursor, q.limit.unwrap_or(50).clamp(1, 500))
        .await
        .map_err(journal_error)?;
    Ok(axum::Json(page).into_response())
}

pub(super) async fn show(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.journal.get_request(id).await.map_err(journal_error)? {
        Some(request) => Ok(axum::Json(request).into_response()),
        None => Err(no_request()),
    }
}

pub(super) async fn rerun(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let runtime = s.runtime.load_full();
    match crate::rerun::rerun(s.journal.as_ref(), &runtime, &id)
        .await
        .map_err(journal_error)?
    {
        Outcome::Rerun {
            event_id,
            pipelines,
        } => {
            s.workers.wake();
            Ok(
                axum::Json(json!({ "rerun": true, "event_id": event_id, "pipelines": pipelines }))
                    .into_response(),
            )
        }
        Outcome::Already { event_id } => Ok(axum::Json(
            json!({ "rerun": false, "already": true, "event_id": event_id }),
        )
        .into_response()),
        Outcome::NotFound => Err(no_request()),
        Outcome::Unprocessable(why) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why)),
    }
}

fn no_request() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such unprocessable request (give the id its answer named)",
    )
}
