//! One pipeline: which events it takes, and the stage runner.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use globset::GlobSet;
use hookline_plugin_api::{Event, Filter, Sink, StageError, Transform};

use super::gate::{Admission, SinkGate};
use crate::internal_events::{SinkAttempted, StageOutcome, StageRan, StageTelemetry};

/// A built stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// From the config (`name`), or the plugin name.
    pub name: String,
    pub plugin: String,
    pub op: StageOp,
    /// How a retryable failure here is retried (sinks set it; others use the default).
    pub retry: crate::config::RetryPolicy,
    /// A sink's circuit, rate and concurrency (none in `hookline test`, whose sinks record).
    pub(crate) gate: Option<Arc<SinkGate>>,
}

#[derive(Debug, Clone)]
pub enum StageOp {
    Filter(Arc<dyn Filter>),
    Transform(Arc<dyn Transform>),
    Sink(Arc<dyn Sink>),
}

impl Stage {
    /// A stage with the default retry policy and no limits (benchmarks, tests).
    pub fn new(name: &str, plugin: &str, op: StageOp) -> Self {
        Stage {
            name: name.to_string(),
            plugin: plugin.to_string(),
            op,
            retry: crate::config::RetryPolicy::default(),
            gate: None,
        }
    }
}

/// How one branch of an event's trip through a pipeline ended. A transform that splits an
/// event yields one outcome per branch.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Went through every stage.
    Completed,
    /// A filter (or a transform returning nothing) dropped it at this stage.
    Dropped { stage: usize },
    /// A stage failed. `event` is the event as it entered that stage, so a replay can resume
    /// there without repeating earlier sinks (except after a panic inside a transform's
    /// in-place `edit`, which cannot be undone: then as the edit left it).
    Failed {
        stage: usize,
        error: StageError,
        event: Box<Event>,
    },
    /// The sink's circuit is open: the event waits at this stage, without an attempt, until
    /// the circuit lets it through.
    Held {
        stage: usize,
        event: Box<Event>,
        until: jiff::Timestamp,
        error: String,
    },
    /// The sink had no call slot or rate to spare: again after `wait`, without an attempt.
    Later {
        stage: usize,
        event: Box<Event>,
        wait: std::time::Duration,
    },
}

#[derive(Debug)]
pub struct Pipeline {
    pub(crate) name: String,
    pub(crate) source: String,
    pub(crate) events: Vec<String>,
    matcher: GlobSet,
    pub stages: Vec<Stage>,
    /// Each stage's series, in stage order (resolved here, once).
    telemetry: Vec<StageTelemetry>,
    /// `order_key`: a payload path; events with the same value there are delivered in
    /// order, one at a time.
    pub(crate) order_key: Option<String>,
}

impl Pipeline {
    /// A pipeline from its parts; the `events` globs are compiled here.
    pub fn new(
        name: &str,
        source: &str,
        events: &[String],
        stages: Vec<Stage>,
    ) -> Result<Self, String> {
        let matcher = crate::config::event_matcher(events)?;
        Ok(Self::with_matcher(name, source, events, matcher, stages))
    }

    /// A pipeline whose `events` the config checker already compiled.
    pub(crate) fn with_matcher(
        name: &str,
        source: &str,
        events: &[String],
        matcher: GlobSet,
        stages: Vec<Stage>,
    ) -> Self {
        Pipeline {
            name: name.to_string(),
            source: source.to_string(),
            events: events.to_vec(),
            matcher,
            telemetry: stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    StageTelemetry::new(source, name, &s.name, i, matches!(s.op, StageOp::Sink(_)))
                })
                .collect(),
            stages,
            order_key: None,
        }
    }

    pub(crate) fn with_order_key(mut self, order_key: Option<String>) -> Self {
        self.order_key = order_key;
        self
    }

    /// This event's ordering key in this pipeline: the value at `order_key` (strings as they
    /// are, other values as JSON); `None` when the pipeline is not ordered or the event has
    /// no value there.
    pub(crate) fn order_key_of(&self, event: &Event) -> Option<String> {
        let value = event.lookup(self.order_key.as_deref()?)?;
        match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// The name of the stage at `index`.
    pub(crate) fn stage_name(&self, index: usize) -> Option<String> {
        self.stages.get(index).map(|s| s.name.clone())
    }

    /// Where a stored delivery resumes: the stage named `name`, wherever a reload put it, so
    /// that inserting, removing or reordering stages never sends a waiting retry to another
    /// stage. Without a name (a first run; a retry stored before names were kept), the
    /// position. `Err` says why it cannot resume: its stage is no longer in the pipeline.
    pub(crate) fn resume_at(&self, stage: usize, name: Option<&str>) -> Result<usize, String> {
        let Some(name) = name else {
            return match stage < self.stages.len() {
                true => Ok(stage),
                false => Err(format!(
                    "pipeline `{}` has no stage {stage} any more",
                    self.name
                )),
            };
        };
        if self.stages.get(stage).is_some_and(|s| s.name == name) {
            return Ok(stage);
        }
        self.stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                format!(
                    "the stage `{name}` it waited at (stage {stage}) is no longer in pipeline `{}`",
                    self.name
                )
            })
    }

    /// The series of the stage at `index`.
    pub(crate) fn telemetry(&self, index: usize) -> Option<&StageTelemetry> {
        self.telemetry.get(index)
    }

    /// Whether events of this type enter the pipeline.
    pub(crate) fn matches(&self, event_type: &str) -> bool {
        self.matcher.is_match(event_type)
    }

    /// Whether a stage from `from` on is a transform that edits in place: a run from there
    /// that owns its event alone changes it without a copy.
    pub(crate) fn edits_in_place_from(&self, from: usize) -> bool {
        self.stages.iter().skip(from).any(|s| match &s.op {
            StageOp::Transform(t) => t.edits_in_place(),
            _ => false,
        })
    }

    /// Run `event` through the stages from index `from` on. An event shared with other
    /// pipelines (`Arc`) is copied only where a transform changes it.
    ///
    /// The caller gives the run its log context (the worker: a span naming the event, one
    /// for all of an event's pipelines that run together; a span is ≈ 1.6 µs).
    pub async fn run(&self, event: impl Into<Arc<Event>>, from: usize) -> Vec<Outcome> {
        self.run_inner(event.into(), from, None).await
    }

    /// Like [`Pipeline::run`], also reporting what each stage took and gave (`hookline test`).
    pub(crate) async fn run_traced(
        &self,
        event: Event,
        from: usize,
        observer: &mut (dyn FnMut(StageTrace) + Send),
    ) -> Vec<Outcome> {
        self.run_inner(Arc::new(event), from, Some(observer)).await
    }

    async fn run_inner(
        &self,
        event: Arc<Event>,
        from: usize,
        mut observer: Option<&mut (dyn FnMut(StageTrace) + Send)>,
    ) -> Vec<Outcome> {
        // Depth-first over splits, so branches finish in order.
        let mut work = vec![(event, from)];
        let mut outcomes = Vec::new();
        while let Some((event, index)) = work.pop() {
            let (Some(stage), Some(telemetry)) =
                (self.stages.get(index), self.telemetry.get(index))
            else {
                outcomes.push(Outcome::Completed);
                continue;
            };
            let input = observer.is_some().then(|| Event::clone(&event));
            // The live tail's only cost while nobody listens: this check.
            let tapped_id = crate::tap::listening().then(|| event.id.clone());
            let started = std::time::Instant::now();
            let mut permit = None;
            if let (StageOp::Sink(_), Some(gate)) = (&stage.op, &stage.gate) {
                match gate.admit().await {
                    Admission::Go(p) => permit = Some(p),
                    Admission::Hold { until, error } => {
                        outcomes.push(Outcome::Held {
                            stage: index,
                            event: owned(event),
                            until,
                            error,
                        });
                        continue;
                    }
                    Admission::Later { wait, .. } => {
                        outcomes.push(Outcome::Later {
                            stage: index,
                            event: owned(event),
                            wait,
                        });
                        continue;
                    }
                }
            }
            // Filters and sinks hand the event on as it is. A transform that edits in place
            // changes an event this run owns alone, and leaves it as it was on failure; any
            // other transform consumes a copy, so that "the event as it entered" is kept for
            // a failure.
            let result: Result<Vec<Arc<Event>>, (StageError, Arc<Event>)> = match &stage.op {
                StageOp::Filter(f) => match unpanicked(|| f.keep(&event)) {
                    Ok(true) => Ok(vec![event]),
                    Ok(false) => Ok(Vec::new()),
                    Err(e) => Err((e, event)),
                },
                StageOp::Transform(t) => {
                    let mut event = event;
                    let edited = if t.edits_in_place() {
                        Arc::get_mut(&mut event).map(|owned| unpanicked(|| t.edit(owned)))
                    } else {
                        None
                    };
                    match edited {
                        Some(Ok(())) => Ok(vec![event]),
                        Some(Err(e)) => Err((e, event)),
                        None => match unpanicked(|| t.apply(Event::clone(&event))) {
                            Ok(next) => Ok(next.into_iter().map(Arc::new).collect()),
                            Err(e) => Err((e, event)),
                        },
                    }
                }
                StageOp::Sink(s) => {
                    SinkAttempted { stage: telemetry }.emit();
                    // A panicking sink fails the delivery for good (dead-lettered) instead
                    // of taking the run down unsettled.
                    let delivered = AssertUnwindSafe(s.deliver(&event))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| Err(panicked(panic.as_ref())));
                    let mut probe_failed = None;
                    if let (Some(gate), Some(permit)) = (&stage.gate, permit.take()) {
                        let probe = permit.is_probe();
                        gate.record(permit, &delivered);
                        if probe && matches!(delivered, Err(StageError::Retryable { .. })) {
                            probe_failed = Some(gate.view());
                        }
                    }
                    match (delivered, probe_failed) {
                        // A failed probe tested the destination for the circuit: the
                        // delivery waits again with its attempts untouched.
                        (Err(e), Some(circuit)) => {
                            outcomes.push(Outcome::Held {
                                stage: index,
                                event: owned(event),
                                until: circuit.probe_at.unwrap_or_else(jiff::Timestamp::now),
                                error: e.to_string(),
                            });
                            continue;
                        }
                        (Ok(()), _) => Ok(vec![event]),
                        (Err(e), None) => Err((e, event)),
                    }
                }
            };
            StageRan {
                stage: telemetry,
                outcome: match &result {
                    Ok(next) if next.is_empty() => StageOutcome::Dropped,
                    Ok(_) => StageOutcome::Passed,
                    Err(_) => StageOutcome::Failed,
                },
                elapsed: started.elapsed(),
                tapped: tapped_id.as_deref().map(|id| {
                    let error = match &result {
                        Err((e, _)) => Some(e),
                        Ok(_) => None,
                    };
                    (id, error)
                }),
            }
            .emit();
            if let (Some(observe), Some(input)) = (observer.as_mut(), input) {
                observe(StageTrace {
                    stage: index,
                    input,
                    output: match &result {
                        Ok(next) => Ok(next.iter().map(|e| Event::clone(e)).collect()),
                        Err((e, _)) => Err(e.clone()),
                    },
                });
            }
            match result {
                Ok(next) if next.is_empty() => outcomes.push(Outcome::Dropped { stage: index }),
                Ok(next) => {
                    for e in next.into_iter().rev() {
                        work.push((e, index + 1));
                    }
                }
                Err((error, event)) => outcomes.push(Outcome::Failed {
                    stage: index,
                    error,
                    event: owned(event),
                }),
            }
        }
        outcomes
    }
}

/// The event an outcome keeps: taken if no other pipeline shares it, copied if one does.
fn owned(event: Arc<Event>) -> Box<Event> {
    Box::new(Arc::unwrap_or_clone(event))
}

/// What one stage took and gave, for one event.
#[derive(Debug, Clone)]
pub struct StageTrace {
    pub(crate) stage: usize,
    pub(crate) input: Event,
    /// The events that continue (none: dropped), or the error.
    pub(crate) output: Result<Vec<Event>, StageError>,
}

/// `f`, a stage's own code: a panic in it (a plugin's bug on an input it did not expect)
/// fails this event at this stage, dead-lettered with the panic's message, instead of
/// taking the whole run down with its other pipelines and leaving the delivery unsettled.
fn unpanicked<R>(f: impl FnOnce() -> Result<R, StageError>) -> Result<R, StageError> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(panicked(panic.as_ref())))
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> StageError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    StageError::fatal(format!("the stage panicked: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct KeepIf(&'static str);
    impl Filter for KeepIf {
        fn keep(&self, e: &Event) -> Result<bool, StageError> {
            Ok(e.event_type == self.0)
        }
    }

    #[derive(Debug)]
    struct Split;
    impl Transform for Split {
        fn apply(&self, e: Event) -> Result<Vec<Event>, StageError> {
            let mut a = e.clone();
            a.payload = json!({"part": 1});
            let mut b = e;
            b.payload = json!({"part": 2});
            Ok(vec![a, b])
        }
    }

    #[derive(Debug, Default)]
    struct Record(Mutex<Vec<serde_json::Value>>);
    #[async_trait::async_trait]
    impl Sink for Record {
        async fn deliver(&self, e: &Event) -> Result<(), StageError> {
            self.0.lock().expect("lock").push(e.payload.clone());
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Fail;
    #[async_trait::async_trait]
    impl Sink for Fail {
        async fn deliver(&self, _: &Event) -> Result<(), StageError> {
            Err(StageError::retryable("down"))
        }
    }

    #[derive(Debug)]
    struct Panics;
    #[async_trait::async_trait]
    impl Sink for Panics {
        async fn deliver(&self, e: &Event) -> Result<(), StageError> {
            panic!("cannot handle {}", e.event_type)
        }
    }
    impl Transform for Panics {
        fn apply(&self, e: Event) -> Result<Vec<Event>, StageError> {
            panic!("cannot transform {}", e.event_type)
        }
    }

    /// A stage's panic (the `amqp` sink's on a long non-ASCII event type, once) fails the
    /// event there for good, with the message: dead-lettered, not a run that never settles.
    #[tokio::test]
    async fn a_panicking_stage_fails_the_event_instead_of_the_run() {
        for op in [
            StageOp::Sink(Arc::new(Panics)),
            StageOp::Transform(Arc::new(Panics)),
        ] {
            let p =
                Pipeline::new("p", "s", &["*".into()], vec![stage("bad", op)]).expect("pipeline");
            match p.run(event("lead.created"), 0).await.as_slice() {
                [Outcome::Failed { stage, error, .. }] => {
                    assert_eq!(*stage, 0);
                    assert!(!error.is_retryable());
                    assert!(
                        error.to_string().contains("the stage panicked: cannot")
                            && error.to_string().contains("lead.created"),
                        "{error}"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn stage(name: &str, op: StageOp) -> Stage {
        Stage {
            name: name.into(),
            plugin: name.into(),
            op,
            retry: crate::config::RetryPolicy::default(),
            gate: None,
        }
    }

    fn event(t: &str) -> Event {
        Event {
            id: "e1".into(),
            source: "s".into(),
            event_type: t.into(),
            received_at: jiff::Timestamp::UNIX_EPOCH,
            headers: vec![],
            payload: json!({"n": 0}),
        }
    }

    /// A retry resumes at its stage by name wherever a reload moved it; a retry stored
    /// without a name, at its position; a stage that is gone is an error, not another stage.
    #[test]
    fn a_stored_delivery_resumes_at_its_stage_by_name() {
        let sink = || StageOp::Sink(Arc::new(Record::default()));
        let p = Pipeline::new(
            "crm",
            "s",
            &["*".into()],
            vec![
                stage("audit", sink()),
                stage("file", sink()),
                stage("http", sink()),
            ],
        )
        .expect("pipeline");
        assert_eq!(p.resume_at(2, Some("http")), Ok(2), "in place");
        assert_eq!(
            p.resume_at(1, Some("http")),
            Ok(2),
            "a stage inserted before it"
        );
        assert_eq!(p.resume_at(2, Some("audit")), Ok(0), "moved to the front");
        assert_eq!(p.resume_at(7, Some("file")), Ok(1), "past the end now");
        assert_eq!(p.resume_at(1, None), Ok(1), "no name: the position");
        assert_eq!(p.resume_at(0, None), Ok(0), "a first run");
        let gone = p.resume_at(1, Some("cel")).expect_err("removed");
        assert!(
            gone.contains("`cel`") && gone.contains("no longer in pipeline `crm`"),
            "{gone}"
        );
        let past = p.resume_at(3, None).expect_err("no stage 3");
        assert!(past.contains("has no stage 3 any more"), "{past}");
    }

    #[test]
    fn globs_match_event_types() {
        let p = Pipeline::new("p", "s", &["new.*".into(), "email.captured".into()], vec![])
            .expect("globs");
        assert!(p.matches("new.like"));
        assert!(p.matches("new.profile.visit"));
        assert!(p.matches("email.captured"));
        assert!(!p.matches("lead.sent"));
        let all = Pipeline::new("p", "s", &["*".into()], vec![]).expect("globs");
        assert!(all.matches("anything.at.all"));
    }

    #[tokio::test]
    async fn sink_transform_sink_chain_and_split() {
        let first = Arc::new(Record::default());
        let second = Arc::new(Record::default());
        let p = Pipeline::new(
            "p",
            "s",
            &["*".into()],
            vec![
                stage("keep", StageOp::Filter(Arc::new(KeepIf("a")))),
                stage("first", StageOp::Sink(first.clone())),
                stage("split", StageOp::Transform(Arc::new(Split))),
                stage("second", StageOp::Sink(second.clone())),
            ],
        )
        .expect("pipeline");
        assert_eq!(
            p.run(event("a"), 0).await,
            vec![Outcome::Completed, Outcome::Completed]
        );
        assert_eq!(*first.0.lock().expect("lock"), vec![json!({"n": 0})]);
        assert_eq!(
            *second.0.lock().expect("lock"),
            vec![json!({"part": 1}), json!({"part": 2})]
        );
        assert_eq!(
            p.run(event("b"), 0).await,
            vec![Outcome::Dropped { stage: 0 }]
        );
    }

    /// Sets `payload.n`, in place where it may; counts how it was asked. Refuses an event
    /// whose `n` is a string, leaving it as it was.
    #[derive(Debug, Default)]
    struct Bump {
        edits: std::sync::atomic::AtomicUsize,
        applies: std::sync::atomic::AtomicUsize,
    }
    impl Transform for Bump {
        fn apply(&self, mut e: Event) -> Result<Vec<Event>, StageError> {
            self.applies
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.change(&mut e)?;
            Ok(vec![e])
        }
        fn edits_in_place(&self) -> bool {
            true
        }
        fn edit(&self, e: &mut Event) -> Result<(), StageError> {
            self.edits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.change(e)
        }
    }
    impl Bump {
        fn change(&self, e: &mut Event) -> Result<(), StageError> {
            if e.payload["n"].is_string() {
                return Err(StageError::fatal("n is text"));
            }
            e.payload["n"] = json!(e.payload["n"].as_i64().unwrap_or(0) + 1);
            Ok(())
        }
        fn asked(&self) -> (usize, usize) {
            use std::sync::atomic::Ordering::Relaxed;
            (self.edits.load(Relaxed), self.applies.load(Relaxed))
        }
    }

    /// A transform that edits in place changes an event the run owns alone without copying
    /// it; one that others still hold is copied, and they keep it unchanged; a failed edit
    /// keeps the event as it entered the stage.
    #[tokio::test]
    async fn a_transform_edits_in_place_only_an_event_the_run_owns_alone() {
        let bump = Arc::new(Bump::default());
        let out = Arc::new(Record::default());
        let p = Pipeline::new(
            "p",
            "s",
            &["*".into()],
            vec![
                stage("bump", StageOp::Transform(bump.clone())),
                stage("out", StageOp::Sink(out.clone())),
            ],
        )
        .expect("pipeline");
        assert!(p.edits_in_place_from(0));
        assert!(!p.edits_in_place_from(1));

        assert_eq!(p.run(event("a"), 0).await, vec![Outcome::Completed]);
        assert_eq!(bump.asked(), (1, 0), "owned alone: edited in place");

        let shared = Arc::new(event("a"));
        assert_eq!(
            p.run(Arc::clone(&shared), 0).await,
            vec![Outcome::Completed]
        );
        assert_eq!(bump.asked(), (1, 1), "shared: copied");
        assert_eq!(
            shared.payload,
            json!({"n": 0}),
            "the other holder's is unchanged"
        );
        assert_eq!(
            *out.0.lock().expect("lock"),
            vec![json!({"n": 1}), json!({"n": 1})]
        );

        let mut text = event("a");
        text.payload = json!({"n": "x"});
        match p.run(text, 0).await.as_slice() {
            [Outcome::Failed { stage, event, .. }] => {
                assert_eq!(*stage, 0);
                assert_eq!(event.payload, json!({"n": "x"}));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(bump.asked(), (2, 1));
    }

    #[tokio::test]
    async fn failure_keeps_the_event_as_it_entered_the_stage() {
        let p = Pipeline::new(
            "p",
            "s",
            &["*".into()],
            vec![
                stage("split", StageOp::Transform(Arc::new(Split))),
                stage("down", StageOp::Sink(Arc::new(Fail))),
            ],
        )
        .expect("pipeline");
        let out = p.run(event("a"), 0).await;
        assert_eq!(out.len(), 2);
        match &out[0] {
            Outcome::Failed {
                stage,
                error,
                event,
            } => {
                assert_eq!(*stage, 1);
                assert!(error.is_retryable());
                assert_eq!(event.payload, json!({"part": 1}));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Resuming at the failed stage skips the ones before it.
        let resumed = p.run(event("a"), 1).await;
        assert_eq!(resumed.len(), 1);
    }
}
