//! `cel` filter: keeps events for which a [CEL](https://cel.dev) expression is true.
//!
//! ```toml
//! { filter = "cel", expr = "has(payload.data.lead.email) && !payload.data.lead.email.endsWith('@example.com')" }
//! { filter = "cel", expr = "event.type.startsWith('new.') && headers['x-webhook-event'] != ''" }
//! ```
//!
//! Variables: `payload` (the JSON payload), `event` (a map of `id`, `type`, `source` and
//! `received_at` as RFC 3339 text) and `headers` (lower-case header name to value).
//!
//! Two things about the `cel` crate to keep in mind when writing expressions: a missing map
//! key is an error, so guard optional fields with `has()` (LeadShark v1 and v2 bodies differ);
//! and non-negative JSON integers are `uint`, so write `payload.n + 1u` or `int(payload.n) + 1`.
//!
//! The expression is compiled at start-up, and a name other than the three variables (a
//! typo such as `paylod`) is refused then. Each evaluation binds only what the expression
//! reads of the event (see [`reads`]): a variable it never names is not built, and of the
//! payload only the fields it selects are converted. At run time, an evaluation error or a result that
//! is not a bool is a fatal error: the event is dead-lettered with the reason.
//!
//! **Budget.** The `cel` crate cannot stop an evaluation once it runs, so the cost is bounded
//! before it starts: each loop (`all`, `exists`, `exists_one`, `map`, `filter`) is assumed
//! to run over the largest list or map in the event, loops inside loops multiply, and an
//! event for which that bound exceeds [`BUDGET`] steps is dead-lettered with the bound and
//! the reason instead of evaluated. One loop over any list a 1 MiB body can hold fits; a
//! loop inside a loop over thousands of elements does not.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ::cel::common::ast::{EntryExpr, Expr};
use ::cel::parser::Expression;
use ::cel::{Context, Env, ExecutionError, Program, Value};
use hookline_plugin_api::{BuildContext, ConfigError, Event, Filter, PluginConfig, StageError};
use serde::Deserialize;

use crate::support::{event_meta, headers_map, truncate};

mod reads;
use reads::Need;

/// Evaluation steps an expression may be estimated to take on one event.
pub const BUDGET: u64 = 2_000_000;

/// Steps an evaluation may take at most, when every loop runs over `n` elements.
fn cost(expr: &Expression, n: u64) -> u64 {
    let sum = |exprs: &mut dyn Iterator<Item = &Expression>| {
        exprs.fold(0u64, |acc, e| acc.saturating_add(cost(e, n)))
    };
    let own = match &expr.expr {
        Expr::Comprehension(c) => {
            let body = cost(&c.loop_cond, n).saturating_add(cost(&c.loop_step, n));
            cost(&c.iter_range, n)
                .saturating_add(cost(&c.accu_init, n))
                .saturating_add(n.max(1).saturating_mul(body))
                .saturating_add(cost(&c.result, n))
        }
        Expr::Call(call) => sum(&mut call.target.iter().map(|t| &**t).chain(call.args.iter())),
        Expr::List(list) => sum(&mut list.elements.iter()),
        Expr::Map(map) => sum(&mut map.entries.iter().flat_map(|e| entry_parts(&e.expr))),
        Expr::Struct(s) => sum(&mut s.entries.iter().flat_map(|e| entry_parts(&e.expr))),
        Expr::Select(select) => cost(&select.operand, n),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    };
    own.saturating_add(1)
}

/// The expressions of a map entry or struct field.
fn entry_parts(entry: &EntryExpr) -> Vec<&Expression> {
    match entry {
        EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

/// The number of elements of the largest list or map in `value` (1 at least).
fn largest_collection(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .map(largest_collection)
            .fold(items.len() as u64, u64::max),
        serde_json::Value::Object(map) => map
            .values()
            .map(largest_collection)
            .fold(map.len() as u64, u64::max),
        _ => 1,
    }
}

/// Names bound for every expression.
const VARIABLES: [&str; 3] = ["payload", "event", "headers"];

/// Config of the `cel` filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CelFilterConfig {
    /// The CEL expression; it must evaluate to a bool. Required.
    pub expr: String,
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Filter>, ConfigError> {
    let cfg: CelFilterConfig = config.parse()?;
    let env = Arc::new(Env::stdlib());
    let program = env.compile(&cfg.expr).map_err(|e| {
        // "ERROR: <input>:1:13: …" names a position inside the expression.
        let detail = e.to_string().replace("ERROR: <input>:", "at ");
        config.error_at("expr", format!("invalid CEL expression {detail}"))
    })?;
    let unknown = undeclared_names(&program, &env);
    if !unknown.is_empty() {
        return Err(config.error_at(
            "expr",
            format!(
                "unknown name(s) in CEL expression: {}; the variables are `payload`, `event` and `headers`",
                unknown.join(", ")
            ),
        ));
    }
    let largest_literal = largest_literal(program.expression());
    let reads = reads::reads(program.expression(), &VARIABLES);
    // Without a loop the cost does not depend on the event: no need to measure it each time.
    let fixed_cost = (!has_loop(program.expression())).then(|| cost(program.expression(), 1));
    Ok(Arc::new(CelFilter {
        source: cfg.expr,
        env,
        program,
        largest_literal,
        reads,
        fixed_cost,
    }))
}

/// Whether the expression holds a comprehension (`all`, `exists`, `map`, …).
fn has_loop(expr: &Expression) -> bool {
    let any =
        |mut exprs: &mut dyn Iterator<Item = &Expression>| Iterator::any(&mut exprs, has_loop);
    match &expr.expr {
        Expr::Comprehension(_) => true,
        Expr::Call(call) => any(&mut call.target.iter().map(|t| &**t).chain(call.args.iter())),
        Expr::List(list) => any(&mut list.elements.iter()),
        Expr::Map(map) => any(&mut map.entries.iter().flat_map(|e| entry_parts(&e.expr))),
        Expr::Struct(s) => any(&mut s.entries.iter().flat_map(|e| entry_parts(&e.expr))),
        Expr::Select(select) => has_loop(&select.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => false,
    }
}

/// The longest list or map literal in the expression.
fn largest_literal(expr: &Expression) -> u64 {
    let children: Vec<&Expression> = match &expr.expr {
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::Call(call) => call
            .target
            .iter()
            .map(|t| &**t)
            .chain(call.args.iter())
            .collect(),
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Select(select) => vec![&*select.operand],
        _ => Vec::new(),
    };
    let own = match &expr.expr {
        Expr::List(list) => list.elements.len() as u64,
        Expr::Map(map) => map.entries.len() as u64,
        _ => 0,
    };
    children
        .into_iter()
        .map(largest_literal)
        .fold(own, u64::max)
}

/// Free names that neither our variables nor the environment (type names such as `string`,
/// function namespaces such as `optional`) resolve: each would fail every evaluation that
/// reaches it. Each candidate is tried the way the evaluator would meet it.
fn undeclared_names(program: &Program, env: &Arc<Env>) -> Vec<String> {
    let mut candidates = Vec::new();
    free_names(program.expression(), &mut Vec::new(), &mut candidates);
    let probe_ctx = Context::with_env(Arc::clone(env));
    let unknown: BTreeSet<&str> = candidates
        .iter()
        .filter(|c| !VARIABLES.contains(&c.root))
        .filter(|c| {
            env.compile(&c.probe).is_ok_and(|probe| {
                matches!(
                    probe.execute(&probe_ctx),
                    Err(ExecutionError::UndeclaredReference(_))
                )
            })
        })
        .map(|c| c.root)
        .collect();
    unknown.into_iter().map(str::to_string).collect()
}

/// A free name and a tiny program that fails with "undeclared reference" if it is unknown.
#[derive(Debug)]
struct Candidate<'e> {
    root: &'e str,
    probe: String,
}

/// Collects names not bound by an enclosing comprehension (`exists(x, …)` binds `x`). A call
/// on a dotted name (`optional.of(…)`, `paylod.x.endsWith(…)`) may be a namespaced function,
/// so its probe is the call itself rather than the name.
fn free_names<'e>(expr: &'e Expression, bound: &mut Vec<&'e str>, out: &mut Vec<Candidate<'e>>) {
    match &expr.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(&name.as_str()) {
                out.push(Candidate {
                    root: name,
                    probe: name.clone(),
                });
            }
        }
        Expr::Call(call) => {
            match call.target.as_deref().and_then(dotted_name) {
                Some((root, dotted)) => {
                    if !root.starts_with('@') && !bound.contains(&root) {
                        let probe = format!("{dotted}.{}()", call.func_name);
                        out.push(Candidate { root, probe });
                    }
                }
                None => call.target.iter().for_each(|t| free_names(t, bound, out)),
            }
            call.args.iter().for_each(|a| free_names(a, bound, out));
        }
        Expr::Comprehension(c) => {
            free_names(&c.iter_range, bound, out);
            free_names(&c.accu_init, bound, out);
            let outer = bound.len();
            bound.extend([c.iter_var.as_str(), c.accu_var.as_str()]);
            bound.extend(c.iter_var2.as_deref());
            for e in [&c.loop_cond, &c.loop_step, &c.result] {
                free_names(e, bound, out);
            }
            bound.truncate(outer);
        }
        Expr::List(list) => list.elements.iter().for_each(|e| free_names(e, bound, out)),
        Expr::Map(map) => map
            .entries
            .iter()
            .for_each(|e| entry_names(&e.expr, bound, out)),
        Expr::Struct(s) => s
            .entries
            .iter()
            .for_each(|e| entry_names(&e.expr, bound, out)),
        Expr::Select(select) => free_names(&select.operand, bound, out),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entry_names<'e>(entry: &'e EntryExpr, bound: &mut Vec<&'e str>, out: &mut Vec<Candidate<'e>>) {
    match entry {
        EntryExpr::StructField(field) => free_names(&field.value, bound, out),
        EntryExpr::MapEntry(entry) => {
            free_names(&entry.key, bound, out);
            free_names(&entry.value, bound, out);
        }
    }
}

/// `a.b.c` when the expression is only names and field selections: its root and text.
fn dotted_name(expr: &Expression) -> Option<(&str, String)> {
    match &expr.expr {
        Expr::Ident(name) => Some((name, name.clone())),
        Expr::Select(select) if !select.test => dotted_name(&select.operand)
            .map(|(root, text)| (root, format!("{text}.{}", select.field))),
        _ => None,
    }
}

/// Runtime form of the `cel` filter: the compiled program and its environment.
pub struct CelFilter {
    source: String,
    env: Arc<Env>,
    program: Program,
    /// The longest list written in the expression itself.
    largest_literal: u64,
    /// What the expression reads of each variable it names.
    reads: HashMap<String, Need>,
    /// The cost bound when the expression has no loop (then the same for every event).
    fixed_cost: Option<u64>,
}

impl std::fmt::Debug for CelFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelFilter")
            .field("expr", &self.source)
            .finish_non_exhaustive()
    }
}

impl Filter for CelFilter {
    fn keep(&self, event: &Event) -> Result<bool, StageError> {
        if self.fixed_cost.is_none_or(|c| c > BUDGET) {
            let n = largest_collection(&event.payload)
                .max(event.headers.len() as u64)
                .max(self.largest_literal);
            let estimate = cost(self.program.expression(), n);
            if estimate > BUDGET {
                return Err(StageError::fatal(format!(
                    "CEL budget exceeded: on this event (its largest list or map has {n} elements) the expression could take up to {estimate} steps, over the budget of {BUDGET}; loops inside loops over large lists are refused"
                )));
            }
        }
        // Built only when the expression names them; bound borrowing from here.
        let meta = self.reads.contains_key("event").then(|| event_meta(event));
        let headers = self
            .reads
            .contains_key("headers")
            .then(|| serde_json::Value::Object(headers_map(event)));
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        for (name, need) in &self.reads {
            let value = match name.as_str() {
                "event" => meta.as_ref(),
                "headers" => headers.as_ref(),
                _ => Some(&event.payload),
            };
            if let Some(value) = value {
                ctx.add_variable_as_val(name.as_str(), reads::to_cel(value, need));
            }
        }
        match self.program.execute(&ctx) {
            Ok(Value::Bool(keep)) => Ok(keep),
            Ok(other) => Err(StageError::fatal(format!(
                "CEL expression must evaluate to a bool, got {}",
                other.type_of()
            ))),
            Err(e) => {
                let text = e.to_string();
                let hint = match e {
                    ExecutionError::NoSuchKey(_) => " (guard optional fields with has())",
                    _ if text.contains("UInt") => {
                        " (non-negative JSON numbers are uint: write 1u, or convert with int())"
                    }
                    _ => "",
                };
                // Values in the error text come from the payload: bound their size.
                Err(StageError::fatal(format!(
                    "CEL evaluation failed: {}{hint}",
                    truncate(&text, 300)
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};
    use serde_json::json;

    fn filter(expr: &str) -> Arc<dyn Filter> {
        build(&config("cel", &format!("expr = {expr:?}")), &ctx()).expect("builds")
    }

    fn keeps(expr: &str, payload: serde_json::Value) -> Result<bool, StageError> {
        filter(expr).keep(&event("email.captured", payload))
    }

    #[test]
    fn reads_payload_event_and_headers() {
        for p in [leadshark_v1(), leadshark_v2()] {
            assert_eq!(
                keeps(
                    "payload.data.lead.email.endsWith('@example.com')",
                    p.clone()
                ),
                Ok(true)
            );
            assert_eq!(
                keeps(
                    "event.type == 'email.captured' && event.source == 'leadshark'",
                    p.clone()
                ),
                Ok(true)
            );
            assert_eq!(
                keeps("headers['x-webhook-event'] == event.type", p.clone()),
                Ok(true)
            );
            assert_eq!(keeps("event.received_at.startsWith('1970-')", p), Ok(true));
        }
    }

    /// The whole event bound as the `cel` crate converts it: what evaluations saw before
    /// they bound only what they read.
    fn reference(expr: &str, event: &Event) -> Result<Value, String> {
        let env = Arc::new(Env::stdlib());
        let program = env.compile(expr).expect("compiles");
        let mut ctx = Context::with_env(Arc::clone(&env));
        ctx.add_variable("payload", &event.payload).expect("binds");
        ctx.add_variable("event", event_meta(event)).expect("binds");
        ctx.add_variable("headers", headers_map(event))
            .expect("binds");
        program.execute(&ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn binding_only_what_is_read_evaluates_as_binding_everything() {
        let payloads = [
            leadshark_v1(),
            leadshark_v2(),
            json!({"data": "not an object", "items": [1, 2]}),
            json!({"data": {"lead": null, "tags": ["a", "b"], "n": -2, "x": 1.5}}),
        ];
        let exprs = [
            "has(payload.data.lead.email) && !payload.data.lead.email.endsWith('@test.invalid')",
            "payload.data.lead.email",
            "has(payload.data.lead)",
            "has(payload.data.tags) && payload.data.tags.exists(t, t == 'b')",
            "payload.data.n < 0",
            "payload.data.x > 1.0",
            "payload.data == 'not an object'",
            "payload.data.lead == null",
            "size(payload.data) > 1",
            "type(payload.data) == map",
            "payload.items.size() == 2",
            "has(payload.data.payload_version) && payload.data.payload_version >= 2u",
            "event.type == 'email.captured' && headers['x-webhook-event'] == event.type",
            "payload.data.lead.email.endsWith(event.source)",
            "{'k': payload.data.n}.k == -2",
        ];
        for payload in payloads {
            let ev = event("email.captured", payload.clone());
            for expr in exprs {
                let ours = filter(expr).keep(&ev);
                let want = reference(expr, &ev);
                match (&ours, &want) {
                    (Ok(k), Ok(v)) => assert_eq!(&Value::Bool(*k), v, "{expr} on {payload}"),
                    (Err(e), Ok(v)) => assert!(
                        !matches!(v, Value::Bool(_))
                            && e.message().contains("must evaluate to a bool"),
                        "{expr} on {payload}: {e:?} vs {v:?}"
                    ),
                    (Err(e), Err(w)) => assert!(
                        e.message().contains(&truncate(w, 300)),
                        "{expr} on {payload}: {e:?} vs {w}"
                    ),
                    (Ok(k), Err(w)) => panic!("{expr} on {payload}: {k} vs error {w}"),
                }
            }
        }
    }

    #[test]
    fn has_tells_v1_from_v2() {
        let expr = "has(payload.data.payload_version) && payload.data.payload_version >= 2u";
        assert_eq!(keeps(expr, leadshark_v2()), Ok(true));
        assert_eq!(keeps(expr, leadshark_v1()), Ok(false));
        assert_eq!(
            keeps("payload.data.automation == null", leadshark_v2()),
            Ok(true)
        );
        let expr = "payload.items.exists(i, i.score + 1u > 10u) && type(payload) == map";
        assert_eq!(
            keeps(expr, json!({"items": [{"score": 3}, {"score": 12}]})),
            Ok(true)
        );
    }

    #[test]
    fn builtin_names_are_not_mistaken_for_unknown_variables() {
        for expr in [
            "optional.of(1).hasValue()",
            "[1, 2].map(x, x * 2).size() == 2 && {'a': 1}.all(k, k == 'a')",
            "type(event.id) == string && int('3') == 3 && duration('1s') < duration('2s')",
        ] {
            assert_eq!(keeps(expr, json!({})), Ok(true), "{expr}");
        }
    }

    /// F6 of the bulkheads issue: a quadratic expression over 8 000 tags is refused before it
    /// runs (it took 25 s of CPU); the same expression over a few tags, and one loop over
    /// the 8 000, are evaluated.
    #[test]
    fn a_quadratic_expression_over_a_huge_list_is_refused_by_the_budget() {
        let expr = "payload.data.tags.all(t, payload.data.tags.exists(u, u == t))";
        let tags: Vec<String> = (0..8000).map(|i| format!("tag-{i}")).collect();
        let started = std::time::Instant::now();
        let err = keeps(expr, json!({"data": {"tags": tags}})).expect_err("over budget");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            format!("{err:?}").contains("CEL budget exceeded"),
            "{err:?}"
        );
        assert_eq!(
            keeps(expr, json!({"data": {"tags": ["a", "b", "c"]}})),
            Ok(true)
        );
        assert_eq!(
            keeps(
                "payload.data.tags.exists(t, t == 'tag-7999')",
                json!({"data": {"tags": tags}})
            ),
            Ok(true)
        );
    }

    #[test]
    fn runtime_failures_are_fatal() {
        let err =
            keeps("payload.data.payload_version == 2u", leadshark_v1()).expect_err("missing key");
        assert!(!err.is_retryable());
        assert!(err.message().contains("has()"), "{}", err.message());
        let err = keeps("payload.data.payload_version + 1 == 3", leadshark_v2()).expect_err("uint");
        assert!(err.message().contains("write 1u"), "{}", err.message());
        let err = keeps("payload.data.lead.name", leadshark_v2()).expect_err("not a bool");
        assert!(!err.is_retryable());
        assert!(err.message().contains("got string"), "{}", err.message());
    }

    #[test]
    fn config_errors_are_located() {
        let text = "expr = \"payload.data.lead.email ==\"";
        let err = build(&config("cel", text), &ctx()).expect_err("syntax");
        assert_eq!(spanned(text, &err), "\"payload.data.lead.email ==\"");
        assert!(
            err.message.starts_with("invalid CEL expression"),
            "{}",
            err.message
        );

        let text =
            "expr = \"paylod.x == 1 && payload.items.all(x, x > 0) && evnt.type.endsWith('x')\"";
        let err = build(&config("cel", text), &ctx()).expect_err("unknown variable");
        assert!(
            err.message
                .contains("unknown name(s) in CEL expression: evnt, paylod;"),
            "{}",
            err.message
        );
        assert_eq!(err.key.as_deref(), Some("expr"));

        let text = "expr = \"true\"\nexpression = \"x\"";
        let err = build(&config("cel", text), &ctx()).expect_err("unknown key");
        assert_eq!(spanned(text, &err), "expression");

        let err = build(&config("cel", ""), &ctx()).expect_err("missing");
        assert!(err.message.contains("expr"), "{}", err.message);
    }
}
