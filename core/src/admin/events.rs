//! `/api/v1/events`: the retained events, searchable, each with where it stands in every
//! pipeline it went to and its attempts.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hookline_plugin_api::{BuildContext, Event, PluginConfig, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminState, internal};
use crate::ingest::ApiError;
use crate::journal::{EventFilter, EventOutcome, JournalError, Matcher};

/// Events a page holds by default, and at most.
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;

/// Query string of `GET /api/v1/events`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    pub(crate) source: Option<String>,
    #[serde(rename = "type")]
    pub(crate) event_type: Option<String>,
    pub(crate) pipeline: Option<String>,
    pub(crate) outcome: Option<String>,
    /// RFC 3339 time, or a duration ago such as `1h`.
    pub(crate) since: Option<String>,
    pub(crate) until: Option<String>,
    /// A CEL expression over the event, as the `cel` filter takes it.
    pub(crate) q: Option<String>,
    pub(crate) cursor: Option<String>,
    pub(crate) limit: Option<u64>,
    /// Erasure without any filter must say so.
    #[serde(default)]
    pub(crate) all: bool,
}

impl EventsQuery {
    /// No filter at all: every value missing or empty.
    pub(crate) fn is_unfiltered(&self) -> bool {
        [
            &self.source,
            &self.event_type,
            &self.pipeline,
            &self.outcome,
            &self.since,
            &self.until,
            &self.q,
        ]
        .iter()
        .all(|v| given(v).is_none())
    }

    /// The filter this query asks for; `Err` says which value is wrong and why (the admin API
    /// answers it with 400, `hookline events` prints it).
    pub(crate) fn to_filter(&self, registry: &Registry) -> Result<EventFilter, String> {
        let time = |v: &Option<String>| {
            given(v)
                .map(|s| crate::journal::parse_since(&s))
                .transpose()
        };
        let outcome = given(&self.outcome)
            .map(|o| {
                EventOutcome::parse(&o).ok_or_else(|| {
                    format!("`{o}` is not an outcome; one of {}", EventOutcome::NAMES)
                })
            })
            .transpose()?;
        let matcher = given(&self.q).map(|q| matcher(registry, &q)).transpose()?;
        Ok(EventFilter {
            source: given(&self.source),
            event_type: given(&self.event_type),
            pipeline: given(&self.pipeline),
            outcome,
            since: time(&self.since)?,
            until: time(&self.until).map_err(|e| e.replace("`since`", "`until`"))?,
            matcher,
        })
    }
}

/// A query value that says something: empty (or blank) counts as not given.
fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// `q` as a predicate: the expression is built exactly as a `cel` filter stage (so it
/// has the same variables, `payload`, `event` and `headers`, and the same evaluation
/// budget); an event it fails on does not match.
fn matcher(registry: &Registry, q: &str) -> Result<Matcher, String> {
    let factory = registry
        .get_filter("cel")
        .ok_or("this build has no `cel` filter to evaluate `q` with")?;
    let text = format!("expr = {}", toml::Value::String(q.to_string()));
    let config = PluginConfig::from_toml("cel", &text).map_err(|e| e.to_string())?;
    let ctx = BuildContext::new(".", "search", "q").with_dry_run(true);
    let filter = factory(&config, &ctx).map_err(|e| format!("q: {}", e.message))?;
    Ok(Arc::new(move |event: &Event| {
        matches!(filter.keep(event), Ok(true))
    }))
}

pub(super) async fn list(
    State(s): State<AdminState>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = q
        .to_filter(&s.registry)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page = s
        .journal
        .list_events(filter, given(&q.cursor), limit)
        .await
        .map_err(journal_error)?;
    Ok(axum::Json(page).into_response())
}

pub(super) async fn show(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.journal.get_event(id).await.map_err(journal_error)? {
        Some(event) => Ok(axum::Json(event).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such event (never received, or pruned after `retain`)",
        )),
    }
}

/// Query string of `POST /api/v1/events/{id}/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayQuery {
    /// Any pipeline of the event's source, including one added after it arrived.
    pipeline: String,
    /// `start` (default): from the first stage; `failed`: from the stage where it was
    /// dead-lettered in that pipeline.
    #[serde(default)]
    from: From,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum From {
    #[default]
    Start,
    Failed,
}

pub(super) async fn replay(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    q: Result<Query<ReplayQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let Some(event) = s
        .journal
        .get_event(id.clone())
        .await
        .map_err(journal_error)?
    else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such event"));
    };
    {
        let runtime = s.runtime.load();
        let pipeline = runtime.pipeline(&q.pipeline).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no pipeline `{}`", q.pipeline),
            )
        })?;
        if pipeline.source != event.summary.source {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "pipeline `{}` takes events of source `{}`, and this event came from `{}`",
                    q.pipeline, pipeline.source, event.summary.source
                ),
            ));
        }
    }
    let from_failed = matches!(q.from, From::Failed);
    match s
        .journal
        .replay_event(id, q.pipeline.clone(), from_failed)
        .await
        .map_err(journal_error)?
    {
        crate::journal::Replayed::Queued { delivery_id } => {
            s.workers.wake();
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(
                    json!({ "replayed": true, "pipeline": q.pipeline, "delivery_id": delivery_id }),
                ),
            )
                .into_response())
        }
        crate::journal::Replayed::NotFound => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "no such event"))
        }
        crate::journal::Replayed::Skipped { reason } => {
            Err(ApiError::new(StatusCode::CONFLICT, reason))
        }
    }
}

/// Every id a filter selects, page by page (each page a bounded read).
pub(crate) async fn select_ids(
    journal: &dyn crate::journal::Journal,
    filter: EventFilter,
) -> Result<Vec<String>, JournalError> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = journal.list_events(filter.clone(), cursor, 500).await?;
        ids.extend(page.items.into_iter().map(|e| e.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

/// `DELETE /api/v1/events?<filters>`: erase matching events and everything kept of them.
pub(super) async fn erase(
    State(s): State<AdminState>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if q.is_unfiltered() && !q.all {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "erasing needs a filter (source, type, pipeline, outcome, since, until, q), or all=true for every event",
        ));
    }
    let filter = q
        .to_filter(&s.registry)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let ids = select_ids(s.journal.as_ref(), filter)
        .await
        .map_err(journal_error)?;
    let erased = s.journal.erase_events(ids).await.map_err(journal_error)?;
    tracing::info!(
        events = erased.events,
        dead_letters = erased.dead_letters,
        busy = erased.busy,
        "erased events on request"
    );
    Ok(axum::Json(erased).into_response())
}

fn journal_error(e: JournalError) -> ApiError {
    match e {
        JournalError::Unsupported(why) => ApiError::new(StatusCode::NOT_IMPLEMENTED, why),
        JournalError::Invalid(why) => ApiError::new(StatusCode::BAD_REQUEST, why),
        e => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(email: &str) -> Event {
        Event {
            id: "e1".into(),
            source: "leadshark".into(),
            event_type: "email.captured".into(),
            received_at: jiff::Timestamp::now(),
            headers: vec![],
            payload: json!({ "data": { "lead": { "email": email } } }),
        }
    }

    #[test]
    fn q_is_a_cel_filter_over_the_event() {
        let registry = hookline_builtin::registry();
        let m = matcher(
            &registry,
            r#"payload.data.lead.email.endsWith("@acme.com")"#,
        )
        .expect("compiles");
        assert!(m(&event("ada@acme.com")));
        assert!(!m(&event("ada@example.com")));
        // An evaluation error (a missing key) is no match, not a failure.
        let m = matcher(&registry, "payload.nope == 1").expect("compiles");
        assert!(!m(&event("ada@acme.com")));
        let err = matcher(&registry, "paylod.x == 1").err().expect("refused");
        assert!(err.contains("paylod"), "{err}");
        let err = matcher(&registry, "payload.x ==").err().expect("refused");
        assert!(err.starts_with("q:"), "{err}");
    }

    #[test]
    fn filters_are_checked() {
        let registry = hookline_builtin::registry();
        let q = EventsQuery {
            outcome: Some("lost".into()),
            ..Default::default()
        };
        assert!(q.to_filter(&registry).is_err());
        let q = EventsQuery {
            since: Some("yesterday-ish".into()),
            ..Default::default()
        };
        assert!(q.to_filter(&registry).is_err());
        let q = EventsQuery {
            outcome: Some("dead_lettered".into()),
            since: Some("1h".into()),
            source: Some(" ".into()),
            ..Default::default()
        };
        let f = q.to_filter(&registry).expect("valid");
        assert_eq!(f.outcome, Some(EventOutcome::DeadLettered));
        assert!(f.since.is_some() && f.source.is_none());
    }
}
