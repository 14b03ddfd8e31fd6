//! Re-running a request that was verified but could not be processed: its stored raw body
//! and headers go through the source's steps after the signature check — decode, event type,
//! the scheme's required fields — under the config in force now. The signature was checked
//! when the request arrived, and signature headers are never stored, so it is not checked
//! again. On success the request becomes an event routed to the source's pipelines, as a new
//! request would be; the journal makes that and marking the request re-run one commit.

use std::str::FromStr;

use hookline_plugin_api::Event;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::journal::{Journal, JournalError, Rerun, RerunEvent, UnprocessableRequest};
use crate::runtime::Runtime;
use crate::verify::Unverified;

/// The event `request` becomes under `runtime`, or why it still cannot be processed.
pub(crate) fn prepare(
    runtime: &Runtime,
    request: &UnprocessableRequest,
) -> Result<RerunEvent, String> {
    let source = runtime
        .sources
        .values()
        .find(|s| s.name == request.source)
        .ok_or_else(|| {
            format!(
                "the source `{}` is not in the config any more",
                request.source
            )
        })?;
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        // What was stored came from a HeaderMap: a pair that no longer parses is left out.
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(name), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    let req = Unverified {
        headers: &headers,
        body: &request.raw,
        target: None,
        now: jiff::Timestamp::now(),
    };
    let verified = match source.verifier.decode(&req) {
        Some(Ok(v)) => v,
        Some(Err(rejection)) => return Err(rejection.to_string()),
        None => {
            return Err(format!(
                "the source `{}`'s scheme cannot re-run a request without its signature; have the sender resend it",
                source.name
            ));
        }
    };
    let problems = crate::verify::problems(source.verifier.as_ref(), &verified);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.name.clone(),
        event_type: verified.event_type,
        received_at: request.received_at,
        headers: request.headers.clone(),
        payload: verified.payload,
    };
    let (pipelines, order_keys): (Vec<String>, Vec<Option<String>>) = source
        .route(&event.event_type)
        .map(|p| (p.name.clone(), p.order_key_of(&event)))
        .unzip();
    Ok(RerunEvent {
        event,
        pipelines,
        order_keys,
    })
}

/// What a re-run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Journaled as `event_id`, with a pending delivery to each of `pipelines` pipelines.
    Rerun {
        event_id: String,
        pipelines: usize,
    },
    /// Re-run before, as `event_id`: nothing new.
    Already {
        event_id: String,
    },
    NotFound,
    /// The config in force still cannot process it: why.
    Unprocessable(String),
}

/// Re-run the request the 2xx named `id` under `runtime`.
pub(crate) async fn rerun(
    journal: &dyn Journal,
    runtime: &Runtime,
    id: &str,
) -> Result<Outcome, JournalError> {
    let Some(request) = journal.get_request(id.to_string()).await? else {
        return Ok(Outcome::NotFound);
    };
    if let Some(event_id) = request.event_id {
        return Ok(Outcome::Already { event_id });
    }
    let event = match prepare(runtime, &request) {
        Ok(event) => event,
        Err(why) => return Ok(Outcome::Unprocessable(why)),
    };
    Ok(match journal.rerun_request(id.to_string(), event).await? {
        Rerun::Accepted {
            event_id,
            pipelines,
        } => {
            tracing::info!(request = %id, event_id = %event_id, pipelines, "re-ran an unprocessable request");
            Outcome::Rerun {
                event_id,
                pipelines,
            }
        }
        Rerun::Already { event_id } => Outcome::Already { event_id },
        Rerun::NotFound => Outcome::NotFound,
    })
}
