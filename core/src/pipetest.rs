//! `hookline test`: pipeline unit tests written in TOML next to the pipeline.
//!
//! Each test gives an input event (a LeadShark sample by name, or a payload) and says which
//! pipelines it must reach and what given stages must output, drop, fail or receive. The
//! config is built as `serve` builds it — filters, transforms and WASM plugins run for real
//! — but every sink is replaced by a recorder, so nothing leaves the machine.
//!
//! ```toml
//! [[test]]
//! name = "captured emails reach the CRM, tagged"
//! sample = "email.captured"              # or: type = "...", payload = { ... }
//! pipelines = ["crm", "archive"]          # exactly these pipelines take it
//!
//! [[test.expect]]
//! pipeline = "crm"
//! stage = "set"                           # stage name (or index)
//! payload = { data = { origin = "leadshark" } }   # its output contains this
//!
//! [[test.expect]]
//! pipeline = "crm"
//! stage = "http"                          # a sink: what it received contains this
//! reached = true
//! ```

mod compare;
pub mod from_journal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use hookline_plugin_api::{Event, Sink, StageError, async_trait};
use serde::Deserialize;
use serde_json::Value;

use crate::runtime::{Pipeline, Runtime, Stage, StageOp, StageTrace};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default, rename = "test")]
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    /// Source name; may be left out when the config has one source.
    source: Option<String>,
    /// A LeadShark sample by event type (`email.captured`, ...).
    sample: Option<String>,
    /// Event type, when giving a payload (default: the payload's `event` or `type` field).
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The payload, as a TOML table (becomes JSON).
    payload: Option<toml::Table>,
    /// The payload as JSON text.
    payload_json: Option<String>,
    /// Exactly the pipelines that must take the event.
    pipelines: Option<Vec<String>>,
    #[serde(default)]
    expect: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    pipeline: String,
    /// Stage name, or its index as a string.
    stage: String,
    /// The stage's output (for a sink: what it received) contains this (subset match).
    payload: Option<toml::Table>,
    /// The stage's output equals this exactly.
    payload_equals: Option<toml::Table>,
    /// The event was dropped at this stage (`true`) or passed it (`false`).
    dropped: Option<bool>,
    /// The stage saw the event (`true`) or never did (`false`).
    reached: Option<bool>,
    /// The stage failed with an error containing this text.
    fails: Option<String>,
}

/// A sink that records instead of delivering.
#[derive(Debug)]
struct Recorder;

#[async_trait]
impl Sink for Recorder {
    async fn deliver(&self, _event: &Event) -> Result<(), StageError> {
        Ok(())
    }
}

/// The runtime with every sink replaced by a recorder. A pipeline that cannot be rebuilt is
/// an error, never a fallback to the original: that one holds the real sinks.
fn with_recorders(runtime: &Runtime) -> anyhow::Result<Vec<Arc<Pipeline>>> {
    runtime
        .pipelines
        .iter()
        .map(|p| {
            let stages = p
                .stages
                .iter()
                .map(|s| Stage {
                    op: match &s.op {
                        StageOp::Sink(_) => StageOp::Sink(Arc::new(Recorder)),
                        other => other.clone(),
                    },
                    gate: None,
                    ..s.clone()
                })
                .collect();
            Pipeline::new(&p.name, &p.source, &p.events, stages)
                .map(Arc::new)
                .map_err(|e| anyhow::anyhow!("pipeline `{}`: {e}", p.name))
        })
        .collect()
}

/// Test files for a config: `<stem>.test.toml` beside it and `tests/*.toml`.
pub(crate) fn default_files(config: &Path) -> Vec<PathBuf> {
    let dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline");
    let mut files = vec![dir.join(format!("{stem}.test.toml"))];
    if let Ok(entries) = std::fs::read_dir(dir.join("tests")) {
        let mut more: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files.into_iter().filter(|f| f.exists()).collect()
}

/// The default test file name, for messages.
pub(crate) fn default_files_hint(config: &Path) -> String {
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline");
    format!("{stem}.test.toml")
}

/// Run the tests in `files` against `runtime`; prints a report; returns (passed, failed).
pub(crate) async fn run(
    runtime: &Runtime,
    files: &[PathBuf],
    name_filter: Option<&str>,
) -> anyhow::Result<(usize, usize)> {
    let pipelines = with_recorders(runtime)?;
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed: TestFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for case in parsed
            .tests
            .iter()
            .filter(|c| name_filter.is_none_or(|f| c.name.contains(f)))
        {
            match run_case(runtime, &pipelines, case).await {
                Ok(()) => {
                    outln!("test {} ... ok", case.name);
                    passed += 1;
                }
                Err(problems) => {
                    outln!("test {} ... FAILED", case.name);
                    for p in problems {
                        for line in p.lines() {
                            outln!("    {line}");
                        }
                    }
                    failed += 1;
                }
            }
        }
    }
    if passed + failed == 0 {
        bail!("no tests found");
    }
    Ok((passed, failed))
}

async fn run_case(
    runtime: &Runtime,
    pipelines: &[Arc<Pipeline>],
    case: &TestCase,
) -> Result<(), Vec<String>> {
    let event = input_event(runtime, case).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    let reached: Vec<&Arc<Pipeline>> = pipelines
        .iter()
        .filter(|p| p.source == event.source && p.matches(&event.event_type))
        .collect();
    let names: Vec<&str> = reached.iter().map(|p| p.name.as_str()).collect();
    if let Some(expected) = &case.pipelines {
        let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
        let mut got = names.clone();
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            problems.push(format!("pipelines: expected {want:?}, got {got:?}"));
        }
    }
    let mut traces: BTreeMap<String, Vec<StageTrace>> = BTreeMap::new();
    for p in &reached {
        let mut recorded = Vec::new();
        p.run_traced(event.clone(), 0, &mut |t| recorded.push(t))
            .await;
        traces.insert(p.name.clone(), recorded);
    }
    for e in &case.expect {
        if let Err(p) = check(pipelines, &traces, e) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn input_event(runtime: &Runtime, case: &TestCase) -> Result<Event, String> {
    let source = match &case.source {
        Some(s) => s.clone(),
        None => {
            let mut names: Vec<&String> = runtime.sources.values().map(|s| &s.name).collect();
            names.dedup();
            match names.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    return Err(
                        "the config has several sources: say which with `source = \"...\"`".into(),
                    );
                }
            }
        }
    };
    if !runtime.sources.values().any(|s| s.name == source) {
        return Err(format!("no source named `{source}`"));
    }
    let payload: Value = match (&case.sample, &case.payload, &case.payload_json) {
        (Some(t), None, None) => hookline_leadshark::samples::sample(t, 1).ok_or_else(|| {
            format!(
                "no LeadShark sample `{t}`; samples: {}",
                hookline_leadshark::EVENT_TYPES.join(", ")
            )
        })?,
        (None, Some(table), None) => serde_json::to_value(table).map_err(|e| e.to_string())?,
        (None, None, Some(json)) => {
            serde_json::from_str(json).map_err(|e| format!("payload_json: {e}"))?
        }
        _ => return Err("give exactly one of `sample`, `payload` or `payload_json`".into()),
    };
    let event_type = case
        .event_type
        .clone()
        .or_else(|| {
            payload["event"]
                .as_str()
                .or(payload["type"].as_str())
                .map(str::to_string)
        })
        .ok_or("no event type: add `type = \"...\"`")?;
    Ok(Event {
        id: "test-event".into(),
        source,
        event_type,
        received_at: jiff::Timestamp::now(),
        headers: Vec::new(),
        payload,
    })
}

fn check(
    pipelines: &[Arc<Pipeline>],
    traces: &BTreeMap<String, Vec<StageTrace>>,
    e: &Expect,
) -> Result<(), String> {
    let at = format!("pipeline `{}`, stage `{}`", e.pipeline, e.stage);
    let Some(pipeline) = pipelines.iter().find(|p| p.name == e.pipeline) else {
        return Err(format!("{at}: no such pipeline"));
    };
    let index = pipeline
        .stages
        .iter()
        .position(|s| s.name == e.stage)
        .or_else(|| {
            e.stage
                .parse::<usize>()
                .ok()
                .filter(|i| *i < pipeline.stages.len())
        })
        .ok_or_else(|| {
            let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
            format!("{at}: no such stage (stages: {})", names.join(", "))
        })?;
    let is_sink = matches!(pipeline.stages[index].op, StageOp::Sink(_));
    let runs: Vec<&StageTrace> = traces
        .get(&e.pipeline)
        .map(|t| t.iter().filter(|t| t.stage == index).collect())
        .unwrap_or_default();
    let stopped = || stopped_before(pipeline, traces.get(&e.pipeline), index);
    if let Some(want) = e.reached
        && want == runs.is_empty()
    {
        return Err(format!(
            "{at}: expected the event {}to reach it{}",
            if want { "" } else { "not " },
            if want { stopped() } else { String::new() }
        ));
    }
    if runs.is_empty()
        && (e.payload.is_some()
            || e.payload_equals.is_some()
            || e.dropped.is_some()
            || e.fails.is_some())
    {
        return Err(format!(
            "{at}: the event never reached this stage{}",
            stopped()
        ));
    }
    if let Some(want) = &e.fails {
        let errors: Vec<String> = runs
            .iter()
            .filter_map(|r| r.output.as_ref().err().map(|e| e.to_string()))
            .collect();
        if !errors.iter().any(|m| m.contains(want.as_str())) {
            return Err(format!(
                "{at}: expected a failure containing {want:?}, got {errors:?}"
            ));
        }
    }
    if let Some(want) = e.dropped {
        let dropped = runs
            .iter()
            .any(|r| r.output.as_ref().is_ok_and(|o| o.is_empty()));
        if dropped != want {
            return Err(format!(
                "{at}: expected the event to be {}",
                if want { "dropped" } else { "passed on" }
            ));
        }
    }
    // A sink passes on what it received; for every stage compare what came out.
    let outputs: Vec<&Value> = runs
        .iter()
        .flat_map(|r| match &r.output {
            Ok(events) if is_sink => vec![&r.input.payload],
            Ok(events) => events.iter().map(|e| &e.payload).collect(),
            Err(_) => Vec::new(),
        })
        .collect();
    for (want, exact) in [(&e.payload, false), (&e.payload_equals, true)] {
        let Some(want) = want else { continue };
        let want = serde_json::to_value(want).map_err(|e| e.to_string())?;
        let ok = outputs.iter().any(|got| {
            if exact {
                *got == &want
            } else {
                contains(got, &want)
            }
        });
        if !ok {
            // For a subset match, show only the keys the test names.
            let got = outputs
                .first()
                .map(|v| {
                    pretty(&if exact {
                        (*v).clone()
                    } else {
                        project(v, &want)
                    })
                })
                .unwrap_or_else(|| "(no output)".into());
            let what = if exact {
                "equal the expected payload"
            } else {
                "contain the expected payload (showing the keys the test names)"
            };
            return Err(format!(
                "{at}: output does not {what}\n{}",
                diff(&pretty(&want), &got)
            ));
        }
    }
    Ok(())
}

/// Why the event did not get to stage `index`: the earlier stage that failed (with its
/// error) or dropped it, as text to append to a message.
fn stopped_before(pipeline: &Pipeline, traces: Option<&Vec<StageTrace>>, index: usize) -> String {
    let name = |i: usize| {
        pipeline
            .stages
            .get(i)
            .map(|s| s.name.as_str())
            .unwrap_or("?")
    };
    let earlier = traces.into_iter().flatten().filter(|t| t.stage < index);
    let mut dropped = None;
    for t in earlier {
        match &t.output {
            Err(e) => {
                return format!(
                    ": stage `{}` (#{}) failed first: {e}",
                    name(t.stage),
                    t.stage
                );
            }
            Ok(next) if next.is_empty() && dropped.is_none() => dropped = Some(t.stage),
            Ok(_) => {}
        }
    }
    match dropped {
        Some(i) => format!(": stage `{}` (#{i}) dropped it", name(i)),
        None => String::new(),
    }
}

/// Whether `got` contains `want`: every key of `want` present with a contained value;
/// arrays and scalars compare equal.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        _ => got == want,
    }
}

/// `got` cut down to the keys `want` names (recursively), for a readable diff.
fn project(got: &Value, want: &Value) -> Value {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => Value::Object(
            w.iter()
                .filter_map(|(k, wv)| g.get(k).map(|gv| (k.clone(), project(gv, wv))))
                .collect(),
        ),
        _ => got.clone(),
    }
}

/// Pretty JSON with object keys sorted, so a diff shows only real differences.
fn pretty(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sorted(v)).unwrap_or_default() + "\n"
}

fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matching() {
        let got = json!({"a": 1, "b": {"c": 2, "d": [1, 2]}});
        assert!(contains(&got, &json!({"b": {"c": 2}})));
        assert!(contains(&got, &json!({"b": {"d": [1, 2]}})));
        assert!(!contains(&got, &json!({"b": {"d": [1]}})));
        assert!(!contains(&got, &json!({"x": 1})));
    }

    #[test]
    fn diff_marks_changed_lines() {
        let d = diff("{\n  \"a\": 1\n}\n", "{\n  \"a\": 2\n}\n");
        assert!(
            d.contains("-  \"a\": 1") && d.contains("+  \"a\": 2"),
            "{d}"
        );
    }
}
