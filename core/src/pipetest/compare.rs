//! What the tested config does with a journaled event in one pipeline, and whether that
//! differs from what really happened to it there (its recorded outcome). Pure: no journal,
//! no runtime — `from_journal` feeds it.

use serde::Serialize;

use crate::journal::{EventOutcome, PipelineState};
use crate::runtime::Outcome;

/// How a run of the tested config ended for one event in one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Now {
    /// Every branch went through every stage (sinks recorded).
    Delivered,
    /// Every branch was dropped; the first drop.
    Dropped { stage: usize, stage_name: String },
    /// A stage failed (the first failure of any branch): serve would retry it (`retryable`)
    /// or dead-letter it at once.
    Failed {
        stage: usize,
        stage_name: String,
        retryable: bool,
        error: String,
    },
}

impl Now {
    /// The outcome of a run from its branches' outcomes: a failure wins, then a delivery,
    /// then a drop. `name` gives a stage's name by index.
    pub(crate) fn of(outcomes: &[Outcome], name: impl Fn(usize) -> String) -> Now {
        if let Some((stage, error)) = outcomes.iter().find_map(|o| match o {
            Outcome::Failed { stage, error, .. } => Some((*stage, error)),
            _ => None,
        }) {
            return Now::Failed {
                stage,
                stage_name: name(stage),
                retryable: error.is_retryable(),
                error: error.to_string(),
            };
        }
        // A recorder never holds or defers (no gate); count those as reaching the sink.
        let dropped = outcomes.iter().try_fold(None, |first, o| match o {
            Outcome::Dropped { stage } => Some(first.or(Some(*stage))),
            _ => None,
        });
        match dropped {
            Some(Some(stage)) => Now::Dropped {
                stage,
                stage_name: name(stage),
            },
            _ => Now::Delivered,
        }
    }

    /// `delivered`, `dropped at 1:only-acme`, `failing at 2:score (fatal)`.
    pub(crate) fn text(&self) -> String {
        match self {
            Now::Delivered => "delivered".into(),
            Now::Dropped { stage, stage_name } => format!("dropped at {stage}:{stage_name}"),
            Now::Failed {
                stage,
                stage_name,
                retryable,
                ..
            } => format!(
                "failing at {stage}:{stage_name} ({})",
                if *retryable { "retryable" } else { "fatal" }
            ),
        }
    }
}

/// How the tested outcome compares with the recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Same,
    Changed,
    /// Nothing to compare with: the pipeline has no history in the sample (new in the
    /// config), or the event had not settled there (paused, first run under way).
    NotCompared,
}

/// Compare `now` (`None`: the tested config does not route the event to the pipeline) with
/// `was` (`None`: it was not routed there). `known`: the pipeline has history in the sample.
/// `is_sink(name)`: the tested pipeline has a sink stage of that name.
///
/// Stages are matched by name when the history has one (a stage inserted before it shifts
/// indices without changing the outcome), else by index. A failure at a sink — retrying or
/// dead-lettered there — is the destination's doing, which the test does not contact: it
/// counts as the same as reaching that sink now.
pub(crate) fn compare(
    was: Option<&PipelineState>,
    now: Option<&Now>,
    known: bool,
    is_sink: impl Fn(&str) -> bool,
) -> Verdict {
    let (was, now) = match (was, now) {
        (None, None) => return Verdict::Same,
        (None, Some(_)) if !known => return Verdict::NotCompared,
        (None, Some(_)) | (Some(_), None) => return Verdict::Changed,
        (Some(w), Some(n)) => (w, n),
    };
    let same_stage = |stage: usize, name: &str| match &was.stage_name {
        Some(w) => w == name,
        None => was.stage == Some(stage),
    };
    let same = match (was.outcome, now) {
        (EventOutcome::Paused | EventOutcome::InFlight, _) => return Verdict::NotCompared,
        (EventOutcome::Finished, n) => !matches!(n, Now::Failed { .. }),
        (EventOutcome::Delivered, n) => *n == Now::Delivered,
        (EventOutcome::Dropped, Now::Dropped { stage, stage_name }) => {
            same_stage(*stage, stage_name)
        }
        (EventOutcome::Dropped, _) => false,
        (EventOutcome::Retrying | EventOutcome::DeadLettered, n) => match n {
            Now::Failed {
                stage, stage_name, ..
            } => same_stage(*stage, stage_name),
            Now::Delivered => was.stage_name.as_deref().is_some_and(&is_sink),
            Now::Dropped { .. } => false,
        },
    };
    if same {
        Verdict::Same
    } else {
        Verdict::Changed
    }
}

/// One diff line: `0193a1c2-… crm: was delivered, now dropped at 1:only-acme`.
pub(crate) fn diff_line(
    event_id: &str,
    pipeline: &str,
    was: Option<&PipelineState>,
    now: Option<&Now>,
) -> String {
    let was = was.map_or_else(|| "not routed".to_string(), crate::events_cmd::state_text);
    let now = now.map_or_else(|| "not routed".to_string(), Now::text);
    format!("{event_id}  {pipeline}: was {was}, now {now}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_plugin_api::{Event, StageError};

    fn was(outcome: EventOutcome, stage: Option<(usize, &str)>) -> PipelineState {
        PipelineState {
            pipeline: "crm".into(),
            outcome,
            stage: stage.map(|s| s.0),
            stage_name: stage.map(|s| s.1.to_string()),
            error: None,
            attempts: 1,
            next_attempt_at: None,
        }
    }

    fn dropped(stage: usize, name: &str) -> Now {
        Now::Dropped {
            stage,
            stage_name: name.into(),
        }
    }

    fn failed(stage: usize, name: &str, retryable: bool) -> Now {
        Now::Failed {
            stage,
            stage_name: name.into(),
            retryable,
            error: "boom".into(),
        }
    }

    fn no_sink(_: &str) -> bool {
        false
    }

    #[test]
    fn delivered_stays_delivered_and_any_other_outcome_is_a_change() {
        let w = was(EventOutcome::Delivered, Some((1, "http")));
        assert_eq!(
            compare(Some(&w), Some(&Now::Delivered), true, no_sink),
            Verdict::Same
        );
        for now in [dropped(0, "only-acme"), failed(0, "score", false)] {
            assert_eq!(
                compare(Some(&w), Some(&now), true, no_sink),
                Verdict::Changed,
                "{now:?}"
            );
        }
        assert_eq!(compare(Some(&w), None, true, no_sink), Verdict::Changed);
    }

    #[test]
    fn drops_compare_by_stage_name_so_an_inserted_stage_is_no_change() {
        let w = was(EventOutcome::Dropped, Some((0, "only-acme")));
        assert_eq!(
            compare(Some(&w), Some(&dropped(1, "only-acme")), true, no_sink),
            Verdict::Same
        );
        assert_eq!(
            compare(Some(&w), Some(&dropped(0, "only-new")), true, no_sink),
            Verdict::Changed
        );
        assert_eq!(
            compare(Some(&w), Some(&Now::Delivered), true, no_sink),
            Verdict::Changed
        );
        // No recorded name: the index decides.
        let mut unnamed = w.clone();
        unnamed.stage_name = None;
        assert_eq!(
            compare(Some(&unnamed), Some(&dropped(0, "x")), true, no_sink),
            Verdict::Same
        );
        assert_eq!(
            compare(Some(&unnamed), Some(&dropped(1, "x")), true, no_sink),
            Verdict::Changed
        );
    }

    #[test]
    fn a_failure_at_a_sink_counts_as_reaching_it_a_failure_elsewhere_must_recur() {
        let at_sink = was(EventOutcome::DeadLettered, Some((1, "http")));
        let is_http = |n: &str| n == "http";
        assert_eq!(
            compare(Some(&at_sink), Some(&Now::Delivered), true, is_http),
            Verdict::Same
        );
        assert_eq!(
            compare(Some(&at_sink), Some(&dropped(0, "f")), true, is_http),
            Verdict::Changed
        );
        let at_transform = was(EventOutcome::Retrying, Some((0, "score")));
        assert_eq!(
            compare(
                Some(&at_transform),
                Some(&failed(0, "score", true)),
                true,
                is_http
            ),
            Verdict::Same
        );
        assert_eq!(
            compare(Some(&at_transform), Some(&Now::Delivered), true, is_http),
            Verdict::Changed
        );
    }

    #[test]
    fn unsettled_or_new_pipelines_are_not_compared_and_routing_changes_are() {
        let paused = was(EventOutcome::Paused, Some((0, "http")));
        assert_eq!(
            compare(Some(&paused), Some(&Now::Delivered), true, no_sink),
            Verdict::NotCompared
        );
        assert_eq!(
            compare(None, Some(&Now::Delivered), false, no_sink),
            Verdict::NotCompared
        );
        assert_eq!(
            compare(None, Some(&Now::Delivered), true, no_sink),
            Verdict::Changed
        );
        let finished = was(EventOutcome::Finished, None);
        assert_eq!(
            compare(Some(&finished), Some(&dropped(0, "f")), true, no_sink),
            Verdict::Same
        );
        assert_eq!(
            compare(Some(&finished), Some(&failed(0, "f", false)), true, no_sink),
            Verdict::Changed
        );
    }

    #[test]
    fn a_run_is_failed_if_any_branch_failed_else_delivered_if_any_branch_was() {
        let name = |i: usize| format!("s{i}");
        let event = Box::new(Event {
            id: "e".into(),
            source: "s".into(),
            event_type: "t".into(),
            received_at: jiff::Timestamp::UNIX_EPOCH,
            headers: Vec::new(),
            payload: serde_json::Value::Null,
        });
        let fail = Outcome::Failed {
            stage: 2,
            error: StageError::retryable("boom"),
            event,
        };
        let drop = Outcome::Dropped { stage: 1 };
        assert_eq!(
            Now::of(&[Outcome::Completed, drop.clone(), fail], name),
            failed(2, "s2", true)
        );
        assert_eq!(
            Now::of(&[drop.clone(), Outcome::Completed], name),
            Now::Delivered
        );
        assert_eq!(
            Now::of(&[drop, Outcome::Dropped { stage: 3 }], name),
            dropped(1, "s1")
        );
        assert_eq!(Now::of(&[], name), Now::Delivered);
    }

    #[test]
    fn diff_lines_name_the_event_the_pipeline_and_both_outcomes() {
        let w = was(EventOutcome::Delivered, Some((1, "http")));
        assert_eq!(
            diff_line("e1", "crm", Some(&w), Some(&dropped(1, "only-acme"))),
            "e1  crm: was delivered, now dropped at 1:only-acme"
        );
        assert_eq!(
            diff_line("e1", "crm", None, Some(&failed(0, "score", false))),
            "e1  crm: was not routed, now failing at 0:score (fatal)"
        );
        let dead = was(EventOutcome::DeadLettered, Some((2, "http")));
        assert_eq!(
            diff_line("e1", "crm", Some(&dead), None),
            "e1  crm: was dead-lettered at 2:http, now not routed"
        );
    }
}
