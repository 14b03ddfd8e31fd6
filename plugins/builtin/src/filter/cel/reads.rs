//! What an expression reads of its variables, so that an evaluation converts only that.
//!
//! Binding a variable converts a JSON value into CEL values, allocating a string, list or map
//! for every node: for a LeadShark body that is most of an evaluation's cost, although an
//! expression such as `payload.data.lead.email.endsWith('@acme.com')` looks at one string.
//! An expression can observe a value only through what it selects, so a variable is bound
//! with only the fields the expression selects from it — the rest of each selected object is
//! left out. A field is kept whole as soon as the expression does anything with it but select
//! a field from it (compare it, pass it to a function, loop over it, index it); a variable used
//! so (`type(payload)`, `payload[k]`) is converted whole, as before. Evaluations see the same
//! values either way: only unobservable siblings are missing.

use std::collections::{BTreeMap, HashMap};

use ::cel::common::ast::{EntryExpr, Expr};
use ::cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use ::cel::common::value::Val;
use ::cel::parser::Expression;

/// What an expression needs of a value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Need {
    /// All of it.
    Whole,
    /// Only whether it is there (`has(payload.x)`).
    Present,
    /// These fields of it, if it is an object (all of it otherwise).
    Fields(BTreeMap<String, Need>),
}

impl Need {
    fn merge(self, other: Need) -> Need {
        match (self, other) {
            (Need::Whole, _) | (_, Need::Whole) => Need::Whole,
            (Need::Present, n) | (n, Need::Present) => n,
            (Need::Fields(mut a), Need::Fields(b)) => {
                for (k, v) in b {
                    let merged = match a.remove(&k) {
                        Some(old) => old.merge(v),
                        None => v,
                    };
                    a.insert(k, merged);
                }
                Need::Fields(a)
            }
        }
    }

    /// The need for `path` below this value, ending in `last`.
    fn along(path: &[&str], last: Need) -> Need {
        path.iter().rev().fold(last, |need, field| {
            Need::Fields(BTreeMap::from([(field.to_string(), need)]))
        })
    }
}

/// What `expr` reads of each of `variables`; a variable it never names is absent.
pub(super) fn reads(expr: &Expression, variables: &[&str]) -> HashMap<String, Need> {
    let mut out = HashMap::new();
    walk(expr, variables, &mut Vec::new(), &mut out);
    out
}

fn record(out: &mut HashMap<String, Need>, root: &str, need: Need) {
    let merged = match out.remove(root) {
        Some(old) => old.merge(need),
        None => need,
    };
    out.insert(root.to_string(), merged);
}

/// `a.b.c` (or `has(a.b.c)`): the root name, the fields selected and whether it is a test.
fn selection(expr: &Expression) -> Option<(&str, Vec<&str>, bool)> {
    let Expr::Select(select) = &expr.expr else {
        return None;
    };
    let mut fields = vec![select.field.as_str()];
    let mut operand = &*select.operand;
    loop {
        match &operand.expr {
            Expr::Select(inner) if !inner.test => {
                fields.push(inner.field.as_str());
                operand = &inner.operand;
            }
            Expr::Ident(name) => {
                fields.reverse();
                return Some((name.as_str(), fields, select.test));
            }
            _ => return None,
        }
    }
}

fn walk<'e>(
    expr: &'e Expression,
    variables: &[&str],
    bound: &mut Vec<&'e str>,
    out: &mut HashMap<String, Need>,
) {
    let free = |name: &str, bound: &[&str]| variables.contains(&name) && !bound.contains(&name);
    if let Some((root, fields, test)) = selection(expr)
        && free(root, bound)
    {
        let last = if test { Need::Present } else { Need::Whole };
        record(out, root, Need::along(&fields, last));
        return;
    }
    match &expr.expr {
        Expr::Ident(name) => {
            if free(name, bound) {
                record(out, name, Need::Whole);
            }
        }
        Expr::Select(select) => walk(&select.operand, variables, bound, out),
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                walk(target, variables, bound, out);
            }
            for arg in &call.args {
                walk(arg, variables, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, variables, bound, out);
            walk(&c.accu_init, variables, bound, out);
            let outer = bound.len();
            bound.extend([c.iter_var.as_str(), c.accu_var.as_str()]);
            bound.extend(c.iter_var2.as_deref());
            for e in [&c.loop_cond, &c.loop_step, &c.result] {
                walk(e, variables, bound, out);
            }
            bound.truncate(outer);
        }
        Expr::List(list) => {
            for e in &list.elements {
                walk(e, variables, bound, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                entry_walk(&entry.expr, variables, bound, out);
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                entry_walk(&entry.expr, variables, bound, out);
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entry_walk<'e>(
    entry: &'e EntryExpr,
    variables: &[&str],
    bound: &mut Vec<&'e str>,
    out: &mut HashMap<String, Need>,
) {
    match entry {
        EntryExpr::StructField(field) => walk(&field.value, variables, bound, out),
        EntryExpr::MapEntry(entry) => {
            walk(&entry.key, variables, bound, out);
            walk(&entry.value, variables, bound, out);
        }
    }
}

/// `value` as CEL sees it, as far as `need` reaches, borrowing its strings. Numbers convert
/// as the `cel` crate's serde conversion does: non-negative integers are `uint`, negative
/// ones `int`, the rest `double`.
pub(super) fn to_cel<'a>(value: &'a serde_json::Value, need: &Need) -> Box<dyn Val + 'a> {
    match (need, value) {
        (Need::Present, _) => Box::new(CelNull),
        (Need::Fields(fields), serde_json::Value::Object(object)) => {
            let map = fields
                .iter()
                .filter_map(|(name, need)| {
                    let (key, v) = object.get_key_value(name)?;
                    Some((CelMapKey::from(key.as_str()), to_cel(v, need)))
                })
                .collect::<HashMap<_, _>>();
            Box::new(CelMap::from(map))
        }
        (_, value) => whole(value),
    }
}

/// All of `value`.
pub(super) fn whole(value: &serde_json::Value) -> Box<dyn Val + '_> {
    match value {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Box::new(CelUInt::from(u)),
            (None, Some(i)) => Box::new(CelInt::from(i)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        serde_json::Value::String(s) => Box::new(CelString::from(s.as_str())),
        serde_json::Value::Array(items) => {
            Box::new(CelList::from(items.iter().map(whole).collect::<Vec<_>>()))
        }
        serde_json::Value::Object(object) => {
            let map = object
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), whole(v)))
                .collect::<HashMap<_, _>>();
            Box::new(CelMap::from(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What CEL evaluates the value to.
    fn value_of(v: Box<dyn Val + '_>) -> ::cel::Value {
        let env = std::sync::Arc::new(::cel::Env::stdlib());
        let program = env.compile("v").expect("compiles");
        let mut ctx = ::cel::Context::with_env(env);
        ctx.add_variable_as_val("v", v);
        program.execute(&ctx).expect("evaluates")
    }

    /// The `cel` crate's own conversion.
    fn serde(v: &serde_json::Value) -> ::cel::Value {
        ::cel::to_value(v).expect("serde")
    }

    fn need_of(expr: &str) -> HashMap<String, Need> {
        let env = ::cel::Env::stdlib();
        let program = env.compile(expr).expect("compiles");
        reads(program.expression(), &["payload", "event", "headers"])
    }

    fn fields(pairs: &[(&str, Need)]) -> Need {
        Need::Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn selections_read_only_their_fields() {
        let n = need_of("has(payload.data.lead.email) && !payload.data.lead.email.endsWith('@x')");
        let email = fields(&[("email", Need::Whole)]);
        assert_eq!(
            n["payload"],
            fields(&[("data", fields(&[("lead", email)]))])
        );
        assert!(!n.contains_key("event") && !n.contains_key("headers"));

        let n = need_of("has(payload.a.b) && event.type == 'x'");
        assert_eq!(
            n["payload"],
            fields(&[("a", fields(&[("b", Need::Present)]))])
        );
        assert_eq!(n["event"], fields(&[("type", Need::Whole)]));
    }

    #[test]
    fn anything_but_a_selection_reads_the_whole_value() {
        for expr in [
            "type(payload) == map",
            "payload['data'].x == 1",
            "size(payload) > 0",
            "payload.items.exists(i, i.x > 1u) && payload.items.size() > 0 && payload == {}",
        ] {
            assert_eq!(need_of(expr)["payload"], Need::Whole, "{expr}");
        }
        let n = need_of("payload.data.items.exists(i, i.score > 1u) && payload.data.id == 'x'");
        assert_eq!(
            n["payload"],
            fields(&[(
                "data",
                fields(&[("id", Need::Whole), ("items", Need::Whole)])
            )])
        );
        // A comprehension's own variable is not the event's.
        let n = need_of("[1].exists(payload, payload > 0)");
        assert!(!n.contains_key("payload"), "{n:?}");
    }

    #[test]
    fn conversion_keeps_only_what_is_needed_and_numbers_as_serde_does() {
        let v = json!({"data": {"lead": {"email": "a@b", "name": "n"}, "n": -1, "f": 1.5, "u": 3}, "x": [1]});
        let need = fields(&[(
            "data",
            fields(&[
                (
                    "lead",
                    fields(&[("email", Need::Whole), ("gone", Need::Whole)]),
                ),
                ("n", Need::Whole),
                ("f", Need::Whole),
                ("u", Need::Present),
            ]),
        )]);
        let want = json!({"data": {"lead": {"email": "a@b"}, "n": -1, "f": 1.5, "u": null}});
        assert_eq!(value_of(to_cel(&v, &need)), serde(&want));
        assert_eq!(value_of(whole(&v)), serde(&v));
        for n in [json!(3), json!(-3), json!(1.5), json!(u64::MAX)] {
            let ours = value_of(whole(&n));
            assert_eq!(ours, serde(&n), "{n}");
        }
        // Selecting into something that is not an object keeps it whole: the same error.
        let need = fields(&[("x", fields(&[("y", Need::Whole)]))]);
        assert_eq!(value_of(to_cel(&v, &need)), serde(&json!({"x": [1]})));
    }
}
