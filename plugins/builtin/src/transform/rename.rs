//! `rename` transform: moves payload fields to new paths.
//!
//! ```toml
//! { transform = "rename", fields = { "data.lead.email" = "data.contact.email", "event" = "type" } }
//! ```
//!
//! Each key is a source path and its value the destination path (quote dotted keys). A
//! missing source is skipped. Destinations are written like the `set` transform does:
//! missing objects are created, and a non-object in the way is a fatal error for the event.
//! Renames run in source-path order, each on what the ones before it left. When no path lies
//! at or below another and no segment is a number (`items.0`, or an object key like `2024`),
//! the usual case, no rename changes what another finds: every rename is checked before any
//! is made, so the event can be edited in place when its run holds it alone. Otherwise the
//! renames are made on a copy of the event, and a failure discards the copy.

use std::collections::BTreeMap;
use std::sync::Arc;

use hookline_plugin_api::{BuildContext, ConfigError, Event, PluginConfig, StageError, Transform};
use serde::Deserialize;
use serde_json::Value;

use crate::path::{self, FieldPath};

/// Config of the `rename` transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Source path to destination path. Required, non-empty.
    pub fields: BTreeMap<String, String>,
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Transform>, ConfigError> {
    let cfg: RenameConfig = config.parse()?;
    if cfg.fields.is_empty() {
        return Err(config.error_at("fields", "`fields` must rename at least one path"));
    }
    let err = |m: String| config.error_at("fields", m);
    let mut moves: Vec<(FieldPath, FieldPath)> = Vec::with_capacity(cfg.fields.len());
    for (from, to) in &cfg.fields {
        let from = FieldPath::parse(from).map_err(err)?;
        let to = FieldPath::parse(to).map_err(err)?;
        if from == to {
            return Err(err(format!("`{from}` is renamed to itself")));
        }
        if let Some((other, _)) = moves.iter().find(|(_, t)| *t == to) {
            return Err(err(format!(
                "`{other}` and `{from}` are both renamed to `{to}`"
            )));
        }
        moves.push((from, to));
    }
    let independent = independent(&moves);
    Ok(Arc::new(RenameTransform { moves, independent }))
}

/// Whether no move can change what another finds: no path lies at or below another (of
/// either side of any move), and none steps into an array, where a removal shifts the
/// elements after it. Then whether each move can be made is known from the payload as it
/// arrives, so every move can be checked before any is made.
fn independent(moves: &[(FieldPath, FieldPath)]) -> bool {
    let paths: Vec<&FieldPath> = moves.iter().flat_map(|(from, to)| [from, to]).collect();
    paths.iter().all(|p| !p.has_index())
        && paths.iter().enumerate().all(|(i, p)| {
            paths[i + 1..]
                .iter()
                .all(|q| !p.contains(q) && !q.contains(p))
        })
}

/// Runtime form of the `rename` transform.
#[derive(Debug)]
pub struct RenameTransform {
    moves: Vec<(FieldPath, FieldPath)>,
    /// The moves cannot affect each other (see [`independent`]): the transform edits in place.
    independent: bool,
}

impl RenameTransform {
    /// The moves one after the other, each on what the ones before it left; a failure leaves
    /// the earlier moves made, so this runs on a copy of the event.
    fn move_in_turn(&self, payload: &mut Value) -> Result<(), StageError> {
        for (from, to) in &self.moves {
            if let Some(value) = path::remove(payload, from) {
                path::set(payload, to, value).map_err(|e| refused(from, e))?;
            }
        }
        Ok(())
    }
}

fn refused(from: &FieldPath, e: String) -> StageError {
    StageError::fatal(format!("cannot rename `{from}`: {e}"))
}

impl Transform for RenameTransform {
    /// On a copy: a failure part way discards it, so nothing needs checking first.
    fn apply(&self, mut event: Event) -> Result<Vec<Event>, StageError> {
        self.move_in_turn(&mut event.payload)?;
        Ok(vec![event])
    }

    fn edits_in_place(&self) -> bool {
        self.independent
    }

    /// Every destination whose source is there is checked before anything moves, so a
    /// failure leaves the event as it was. Only called for independent moves, for which
    /// that check is the same as making the moves in turn.
    fn edit(&self, event: &mut Event) -> Result<(), StageError> {
        if !self.independent {
            return Err(StageError::fatal(
                "this rename moves paths that depend on each other and does not edit in place",
            ));
        }
        for (from, to) in &self.moves {
            if event.lookup(from.as_str()).is_some() {
                path::settable(&event.payload, to).map_err(|e| refused(from, e))?;
            }
        }
        self.move_in_turn(&mut event.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};
    use serde_json::{Value, json};

    fn apply(text: &str, payload: Value) -> Result<Value, StageError> {
        let t = build(&config("rename", text), &ctx()).expect("builds");
        Ok(t.apply(event("email.captured", payload))?.remove(0).payload)
    }

    #[test]
    fn moves_values_and_skips_missing_sources() {
        let text = r#"fields = { "data.lead.email" = "contact.email", "data.lead.actor_id" = "contact.actor" }"#;
        let v1 = apply(text, leadshark_v1()).expect("v1");
        assert_eq!(v1["contact"], json!({"email": "john.doe@example.com"}));
        assert!(v1["data"]["lead"].get("email").is_none());
        let v2 = apply(text, leadshark_v2()).expect("v2");
        assert_eq!(
            v2["contact"],
            json!({"email": "john.doe@example.com", "actor": "ACoA123"})
        );
    }

    #[test]
    fn blocked_destination_is_fatal() {
        let err = apply(
            r#"fields = { "event" = "data.automation.event" }"#,
            leadshark_v2(),
        )
        .expect_err("null");
        assert!(!err.is_retryable());
        assert!(
            err.message().contains("cannot rename `event`"),
            "{}",
            err.message()
        );
    }

    fn rename(pairs: &[(&str, &str)]) -> RenameTransform {
        let moves: Vec<(FieldPath, FieldPath)> = pairs
            .iter()
            .map(|(from, to)| {
                let parse = |p: &str| FieldPath::parse(p).expect("valid path");
                (parse(from), parse(to))
            })
            .collect();
        RenameTransform {
            independent: independent(&moves),
            moves,
        }
    }

    #[test]
    fn a_refused_rename_in_place_leaves_the_event_as_it_was() {
        let t = build(
            &config(
                "rename",
                r#"fields = { "data.lead.email" = "contact.email", "event" = "data.automation.event" }"#,
            ),
            &ctx(),
        )
        .expect("builds");
        assert!(t.edits_in_place());
        let mut e = event("email.captured", leadshark_v2());
        let before = serde_json::to_string(&e.payload).expect("json");
        let err = t.edit(&mut e).expect_err("data.automation is null");
        assert!(
            err.message()
                .contains("cannot rename `event`: cannot set `data.automation.event`"),
            "{}",
            err.message()
        );
        // The first rename, which could be made, was not: nothing moved, nothing reordered.
        assert_eq!(serde_json::to_string(&e.payload).expect("json"), before);
        // A destination in the way of a source that is not there is not an error.
        let mut e = event("email.captured", json!({"data": {"automation": null}}));
        t.edit(&mut e).expect("nothing to move");
    }

    #[test]
    fn renames_that_depend_on_each_other_are_made_in_turn_on_a_copy() {
        for pairs in [
            &[("a", "b"), ("b", "c")][..],
            &[("data.lead", "lead"), ("lead.email", "email")],
            &[("data", "data.old")],
            &[("items.0", "first")],
            &[("items.+0", "x")],
        ] {
            assert!(!rename(pairs).edits_in_place(), "{pairs:?}");
        }
        let t = rename(&[("a", "b"), ("b", "c")]);
        let out = t
            .apply(event("e", json!({"a": 1, "b": 2})))
            .expect("moves")
            .remove(0);
        assert_eq!(out.payload, json!({"c": 1}));
        let t = rename(&[("items.0", "first"), ("items.1", "second")]);
        let out = t
            .apply(event("e", json!({"items": [1, 2, 3]})))
            .expect("moves")
            .remove(0);
        assert_eq!(out.payload, json!({"items": [2], "first": 1, "second": 3}));
    }

    /// Checking every independent move first and then making them gives what making them in
    /// turn gives, refusals included, over sets of up to three moves between these paths, on
    /// payloads that block some of them: so the independence check lets through no set whose
    /// moves affect each other here.
    #[test]
    fn independent_renames_checked_first_match_renames_in_turn() {
        let paths = [
            "a",
            "a.b",
            "a.c",
            "b",
            "b.x.y",
            "c",
            "n",
            "n.m",
            "s.t",
            "data.lead.email",
            "data.automation.id",
            "event",
            "items.0",
            "items.1.id",
        ];
        let payloads = [
            json!({"a": {"b": 1, "c": [2]}, "b": {"x": {"y": 3}}, "n": null, "s": "text"}),
            json!({"a": 5, "c": {"d": 1}, "n": {"m": 2}, "s": {"t": 4}}),
            leadshark_v1(),
            leadshark_v2(),
            json!([1, 2]),
            json!({"items": [{"id": 1}, {"id": 2}], "a": {}, "event": "x"}),
            json!({"items": [1, {"id": 2}], "b": 1}),
        ];
        let pairs: Vec<(&str, &str)> = paths
            .iter()
            .flat_map(|from| paths.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from != to)
            .collect();
        let mut checked = 0;
        for (i, first) in pairs.iter().enumerate() {
            for (j, second) in pairs.iter().enumerate().skip(i + 1) {
                for third in pairs.iter().skip(j + 1).step_by(11) {
                    let mut set = vec![*first, *second, *third];
                    set.sort();
                    set.dedup_by(|x, y| x.0 == y.0);
                    let t = rename(&set);
                    if !t.edits_in_place() {
                        continue;
                    }
                    for payload in &payloads {
                        let mut in_place = event("e", payload.clone());
                        let mut in_turn = payload.clone();
                        let edited = t.edit(&mut in_place).map_err(|e| e.message().to_string());
                        let moved = t
                            .move_in_turn(&mut in_turn)
                            .map_err(|e| e.message().to_string());
                        assert_eq!(edited, moved, "{set:?} on {payload}");
                        match edited {
                            Ok(()) => assert_eq!(
                                serde_json::to_string(&in_place.payload).ok(),
                                serde_json::to_string(&in_turn).ok(),
                                "{set:?} on {payload}"
                            ),
                            // As text: `==` on objects ignores their order.
                            Err(_) => assert_eq!(
                                serde_json::to_string(&in_place.payload).ok(),
                                serde_json::to_string(payload).ok(),
                                "{set:?} on {payload}"
                            ),
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50_000, "only {checked} cases were independent");
    }

    #[test]
    fn config_errors_are_located() {
        let text = "fields = { \"a\" = \"a\" }";
        let err = build(&config("rename", text), &ctx()).expect_err("self");
        assert_eq!(spanned(text, &err), "{ \"a\" = \"a\" }");
        let text = "fields = { \"a\" = \"c\", \"b\" = \"c\" }";
        let err = build(&config("rename", text), &ctx()).expect_err("same destination");
        assert!(
            err.message.contains("both renamed to `c`"),
            "{}",
            err.message
        );
        let text = "fields = { \"a\" = \"b.\" }";
        assert!(build(&config("rename", text), &ctx()).is_err());
        let text = "fields = { \"a\" = 1 }";
        let err = build(&config("rename", text), &ctx()).expect_err("not a string");
        assert_eq!(spanned(text, &err), "1");
        let text = "fields = { \"a\" = \"b\" }\nto = 1";
        assert_eq!(
            spanned(
                text,
                &build(&config("rename", text), &ctx()).expect_err("unknown")
            ),
            "to"
        );
    }
}
