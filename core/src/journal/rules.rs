//! The journal's rules, one copy for both stores: the states a delivery and a dead letter
//! go through, which dead letters a filter selects (and how text is compared), where a
//! replay starts, and where an event stands in a pipeline. `sqlite/` and `nats/` only
//! store; what they store means the same.

use hookline_plugin_api::Event;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{
    Attempt, AttemptResult, DeadLetter, DeadLetterFilter, EventFilter, EventOutcome, EventSummary,
    Hold, PipelineState, Replayed,
};

/// A delivery row's state (SQLite). The SQL in `sqlite/` spells these words in its
/// statements (partial indexes need them literally); they are [`DeliveryState::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// To run: now, or when `next_attempt_at` comes.
    Pending,
    /// Delivered, dropped by a filter, or retired by a purge of its dead letter.
    Done,
    /// Gave up: its dead letter holds the rest.
    Dead,
    /// Its dead letter was sent back in (a new delivery runs it).
    Replayed,
}

impl DeliveryState {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Done => "done",
            DeliveryState::Dead => "dead",
            DeliveryState::Replayed => "replayed",
        }
    }
}

/// A dead letter's state, as stored and as the admin API and `dlq` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LetterState {
    Dead,
    /// Sent back into its pipeline (kept, with `replayed_at`, until purged).
    Replayed,
}

impl LetterState {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            LetterState::Dead => "dead",
            LetterState::Replayed => "replayed",
        }
    }

    /// The stored word; anything else is not a state this journal wrote.
    pub(crate) fn parse(s: &str) -> Option<LetterState> {
        match s {
            "dead" => Some(LetterState::Dead),
            "replayed" => Some(LetterState::Replayed),
            _ => None,
        }
    }
}

impl std::fmt::Display for LetterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How filter text and error text are compared: case-insensitively over all of Unicode
/// (`Ärger` matches `ärger`). SQLite calls this as `hookline_fold()`.
pub(crate) fn fold(s: &str) -> String {
    s.to_lowercase()
}

impl DeadLetterFilter {
    /// Whether a letter is selected: what the SQLite journal's `WHERE` clause says, for a
    /// store that filters in memory (NATS).
    pub(crate) fn matches(&self, l: &DeadLetter) -> bool {
        (self.include_replayed || l.state == LetterState::Dead)
            && self
                .pipeline
                .as_ref()
                .is_none_or(|p| l.pipeline.as_ref() == Some(p))
            && self.stage.as_ref().is_none_or(|s| {
                l.stage_name.as_ref() == Some(s)
                    || l.stage_index.map(|i| i.to_string()).as_ref() == Some(s)
            })
            && self
                .reason
                .as_ref()
                .is_none_or(|r| fold(&l.error).contains(&fold(r)))
            && self.since.is_none_or(|t| l.last_failed_at >= t)
            && self.event_id.as_ref().is_none_or(|e| &l.event_id == e)
    }
}

/// `2026-11-27T10:00:00Z`, or a duration back from now (`90m`, `1h`, `7d`): the `since` of a
/// dead-letter filter, as the admin API and `dlq` take it.
pub(crate) fn parse_since(s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        format!("`since` must be an RFC 3339 time or a duration such as 1h, not `{s}`")
    })?;
    let d = jiff::SignedDuration::try_from(d).map_err(|e| e.to_string())?;
    Timestamp::now().checked_sub(d).map_err(|e| e.to_string())
}

/// Where a replay of a dead letter starts, once its store has looked up what it needs.
#[derive(Debug)]
pub(crate) struct ReplayFrom<'a> {
    pub(crate) pipeline: &'a str,
    /// The event as it entered the failed stage.
    pub(crate) snapshot: &'a Event,
}

/// Whether a dead letter can be replayed at all: not twice, and only when it was routed (a
/// request that could not be decoded has no pipeline and no event).
pub(crate) fn replayable(dl: &DeadLetter) -> Result<ReplayFrom<'_>, Replayed> {
    if dl.state != LetterState::Dead {
        return Err(Replayed::Skipped {
            reason: "already replayed".into(),
        });
    }
    match (&dl.pipeline, &dl.event) {
        (Some(pipeline), Some(snapshot)) => Ok(ReplayFrom { pipeline, snapshot }),
        _ => Err(Replayed::Skipped {
            reason: "the request failed before routing (it could not be decoded); have the sender resend it".into(),
        }),
    }
}

/// Where a replay enters its pipeline and with what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplayStart {
    pub(crate) stage: usize,
    /// The failed stage's name, so the replay runs that stage even if a reload moved it
    /// (`None`: from the first stage).
    pub(crate) stage_name: Option<String>,
    pub(crate) event: Event,
}

/// The stage and event a replay runs: the failed stage with the snapshot, or — `from_start`
/// — stage 0 with the original event, which the store looked up (`None`: no longer kept).
pub(crate) fn replay_start(
    dl: &DeadLetter,
    from: &ReplayFrom<'_>,
    from_start: bool,
    original: Option<Event>,
) -> Result<ReplayStart, Replayed> {
    let first = |event| ReplayStart {
        stage: 0,
        stage_name: None,
        event,
    };
    if !from_start {
        return Ok(ReplayStart {
            stage: dl.stage_index.unwrap_or(0),
            stage_name: dl.stage_name.clone(),
            event: from.snapshot.clone(),
        });
    }
    match original {
        Some(e) => Ok(first(e)),
        // Failed at the first stage: the snapshot is the event as it entered stage 0.
        None if dl.stage_index == Some(0) => Ok(first(from.snapshot.clone())),
        None => Err(Replayed::Skipped {
            reason: "the original event is no longer in the journal; replay from the failed stage instead".into(),
        }),
    }
}

/// What a store knows of an event's delivery in one pipeline besides its attempts: the
/// SQLite journal from its delivery rows, the NATS journal from what its workers and replays
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Standing {
    /// To run (again) at `stage`: when `next_attempt_at` comes, or once released (`hold`).
    Waiting {
        stage: usize,
        /// Its name when the store keeps it; otherwise the last attempt's there.
        stage_name: Option<String>,
        error: Option<String>,
        hold: Option<Hold>,
        next_attempt_at: Option<Timestamp>,
    },
    /// Gave up at `stage`: a dead letter holds the rest. (The SQLite journal's dead
    /// delivery rows: NATS reads this from the last attempt.)
    Dead {
        stage: usize,
        stage_name: Option<String>,
        error: Option<String>,
    },
}

impl EventFilter {
    /// Whether an event's pipelines satisfy `pipeline` and `outcome`: routed to `pipeline`
    /// (with `outcome` there), or with `outcome` in any pipeline. The other conditions are
    /// the reader's, on the event itself.
    pub(crate) fn selects(&self, summary: &EventSummary) -> bool {
        if self.pipeline.is_none() && self.outcome.is_none() {
            return true;
        }
        summary.pipelines.iter().any(|p| {
            self.pipeline
                .as_deref()
                .is_none_or(|want| p.pipeline == want)
                && self.outcome.is_none_or(|want| p.outcome == want)
        })
    }
}

/// Where an event stands in one pipeline — one rule for both stores: what waits (or gave
/// up) first, then the last attempt; with neither, its first run is under way (`in_flight`)
/// or finished before history was kept. A first run that waits in the journal untried (the
/// run slots were full, or it had not finished when its row was written) is `in_flight`
/// too, not `retrying`: nothing has failed. `tried` are the pipeline's attempts, oldest
/// first.
pub(crate) fn pipeline_state(
    name: &str,
    standing: Option<Standing>,
    tried: &[&Attempt],
    in_flight: bool,
) -> PipelineState {
    let mut state = PipelineState {
        pipeline: name.to_string(),
        outcome: EventOutcome::Finished,
        stage: None,
        stage_name: None,
        error: None,
        attempts: u32::try_from(tried.len()).unwrap_or(u32::MAX),
        next_attempt_at: None,
    };
    let stage_name = |stage: usize| {
        tried
            .iter()
            .rev()
            .find(|a| a.stage == stage)
            .map(|a| a.stage_name.clone())
    };
    match standing {
        Some(Standing::Waiting {
            error: None,
            hold: None,
            ..
        }) if tried.is_empty() => state.outcome = EventOutcome::InFlight,
        Some(Standing::Waiting {
            stage,
            stage_name: known,
            error,
            hold,
            next_attempt_at,
        }) => {
            state.outcome = match hold {
                Some(Hold::Paused) => EventOutcome::Paused,
                _ => EventOutcome::Retrying,
            };
            state.stage = Some(stage);
            state.stage_name = known.or_else(|| stage_name(stage));
            state.error = error;
            if hold.is_none() {
                state.next_attempt_at = next_attempt_at;
            }
        }
        Some(Standing::Dead {
            stage,
            stage_name: known,
            error,
        }) => {
            state.outcome = EventOutcome::DeadLettered;
            state.stage = Some(stage);
            state.stage_name = known.or_else(|| stage_name(stage));
            state.error = error;
        }
        None => match tried.last() {
            Some(last) => {
                state.outcome = match last.result {
                    AttemptResult::Delivered => EventOutcome::Delivered,
                    AttemptResult::Dropped => EventOutcome::Dropped,
                    AttemptResult::Retry => EventOutcome::Retrying,
                    AttemptResult::Dead => EventOutcome::DeadLettered,
                };
                state.stage = Some(last.stage);
                state.stage_name = Some(last.stage_name.clone());
                state.error = last.error.clone();
            }
            None if in_flight => state.outcome = EventOutcome::InFlight,
            None => {}
        },
    }
    state
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn letter(
        state: &str,
        stage: Option<(usize, &str)>,
        error: &str,
        at: i64,
    ) -> DeadLetter {
        DeadLetter {
            id: format!("id-{at}"),
            event_id: "e".into(),
            source: "s".into(),
            pipeline: Some("crm".into()),
            stage_index: stage.map(|s| s.0),
            stage_name: stage.map(|s| s.1.to_string()),
            error: error.into(),
            attempts: 1,
            first_failed_at: Timestamp::from_second(at).expect("time"),
            last_failed_at: Timestamp::from_second(at).expect("time"),
            created_at: Timestamp::from_second(at).expect("time"),
            state: LetterState::parse(state).expect("state"),
            replayed_at: None,
            event: None,
            raw: None,
        }
    }

    #[test]
    fn filters_mirror_the_sqlite_journal() {
        let l = letter("dead", Some((2, "http")), "HTTP 500 from peer", 100);
        let all = DeadLetterFilter::default();
        assert!(all.matches(&l));
        let by = |f: DeadLetterFilter| f.matches(&l);
        assert!(by(DeadLetterFilter {
            pipeline: Some("crm".into()),
            ..all.clone()
        }));
        assert!(!by(DeadLetterFilter {
            pipeline: Some("other".into()),
            ..all.clone()
        }));
        assert!(by(DeadLetterFilter {
            stage: Some("http".into()),
            ..all.clone()
        }));
        assert!(by(DeadLetterFilter {
            stage: Some("2".into()),
            ..all.clone()
        }));
        assert!(!by(DeadLetterFilter {
            stage: Some("1".into()),
            ..all.clone()
        }));
        assert!(by(DeadLetterFilter {
            reason: Some("http 500".into()),
            ..all.clone()
        }));
        assert!(!by(DeadLetterFilter {
            reason: Some("timeout".into()),
            ..all.clone()
        }));
        let since = |s| Some(Timestamp::from_second(s).expect("time"));
        assert!(by(DeadLetterFilter {
            since: since(100),
            ..all.clone()
        }));
        assert!(!by(DeadLetterFilter {
            since: since(101),
            ..all.clone()
        }));
        assert!(by(DeadLetterFilter {
            event_id: Some("e".into()),
            ..all.clone()
        }));
        assert!(!by(DeadLetterFilter {
            event_id: Some("other".into()),
            ..all.clone()
        }));
        let replayed = letter("replayed", None, "x", 1);
        assert!(!all.matches(&replayed));
        assert!(
            DeadLetterFilter {
                include_replayed: true,
                ..all
            }
            .matches(&replayed)
        );
    }

    #[test]
    fn reasons_fold_all_of_unicode() {
        let filter = DeadLetterFilter {
            reason: Some("ärger".into()),
            ..Default::default()
        };
        assert!(filter.matches(&letter("dead", None, "HTTP 500: Ärger mit dem CRM", 1)));
        assert!(!filter.matches(&letter("dead", None, "HTTP 500: Aerger", 1)));
    }

    fn attempt(stage: usize, result: AttemptResult) -> Attempt {
        Attempt {
            event_id: "e".into(),
            pipeline: "crm".into(),
            stage,
            stage_name: format!("s{stage}"),
            at: Timestamp::from_second(1).expect("time"),
            duration_us: 1,
            result,
            error: (result == AttemptResult::Retry).then(|| "HTTP 503".into()),
        }
    }

    #[test]
    fn a_pipeline_state_is_what_waits_then_the_last_attempt() {
        let retry = attempt(1, AttemptResult::Retry);
        let done = attempt(1, AttemptResult::Delivered);
        let at = Timestamp::from_second(9).expect("time");
        let waiting = |hold| Standing::Waiting {
            stage: 1,
            stage_name: None,
            error: Some("HTTP 503".into()),
            hold,
            next_attempt_at: Some(at),
        };
        let s = pipeline_state("crm", Some(waiting(None)), &[&retry], false);
        assert_eq!(s.outcome, EventOutcome::Retrying);
        assert_eq!((s.stage, s.stage_name.as_deref()), (Some(1), Some("s1")));
        assert_eq!((s.attempts, s.next_attempt_at), (1, Some(at)));
        let s = pipeline_state("crm", Some(waiting(Some(Hold::Paused))), &[&retry], false);
        assert_eq!((s.outcome, s.next_attempt_at), (EventOutcome::Paused, None));
        // A first run waiting in the journal, untried: under way, not retrying.
        let first = Standing::Waiting {
            stage: 0,
            stage_name: None,
            error: None,
            hold: None,
            next_attempt_at: Some(at),
        };
        let s = pipeline_state("crm", Some(first.clone()), &[], false);
        assert_eq!(
            (s.outcome, s.attempts, s.stage),
            (EventOutcome::InFlight, 0, None)
        );
        // Once tried, or held, it is what the attempt or the hold says.
        let s = pipeline_state("crm", Some(first), &[&retry], false);
        assert_eq!(s.outcome, EventOutcome::Retrying);
        let held = Standing::Waiting {
            stage: 0,
            stage_name: None,
            error: None,
            hold: Some(Hold::Paused),
            next_attempt_at: None,
        };
        assert_eq!(
            pipeline_state("crm", Some(held), &[], false).outcome,
            EventOutcome::Paused
        );
        let dead = Standing::Dead {
            stage: 1,
            stage_name: None,
            error: Some("HTTP 400".into()),
        };
        let s = pipeline_state("crm", Some(dead), &[], false);
        assert_eq!(s.outcome, EventOutcome::DeadLettered);
        // The name the store kept wins over the last attempt's at that position: after a
        // reload that reordered stages, the attempt there may have been another stage's.
        let moved = Standing::Waiting {
            stage: 1,
            stage_name: Some("http".into()),
            error: Some("HTTP 503".into()),
            hold: None,
            next_attempt_at: Some(at),
        };
        let s = pipeline_state("crm", Some(moved), &[&retry], false);
        assert_eq!((s.stage, s.stage_name.as_deref()), (Some(1), Some("http")));
        let s = pipeline_state("crm", None, &[&retry, &done], false);
        assert_eq!((s.outcome, s.attempts), (EventOutcome::Delivered, 2));
        let dropped = attempt(0, AttemptResult::Dropped);
        assert_eq!(
            pipeline_state("crm", None, &[&dropped], true).outcome,
            EventOutcome::Dropped
        );
        assert_eq!(
            pipeline_state("crm", None, &[], true).outcome,
            EventOutcome::InFlight
        );
        assert_eq!(
            pipeline_state("crm", None, &[], false).outcome,
            EventOutcome::Finished
        );
    }

    #[test]
    fn states_are_their_stored_words() {
        for s in [LetterState::Dead, LetterState::Replayed] {
            assert_eq!(LetterState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::json!(s.as_str())
            );
        }
    }
}
