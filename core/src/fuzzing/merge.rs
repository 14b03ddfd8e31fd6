//! The JSON merge patch (RFC 7396) a WASM transform may return. The input is two JSON
//! values, the target and then the patch (`{"a": 1} {"a": null}`). Checked:
//!
//! - the result is what the RFC's pseudocode gives (written here independently);
//! - applying the patch again changes nothing (a merge patch is idempotent);
//! - a patch that is not an object replaces the target; an object patch gives an object
//!   where each `null` member is absent, each other non-object member is the patch's value,
//!   and each key of the target the patch does not name is unchanged;
//! - keys keep their place: the target's surviving keys first, in their order, then new
//!   keys in the patch's order.

use hookline_plugin_api::merge_patch as apply;
use serde_json::{Map, Value};

pub fn merge_patch(data: &[u8]) {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let (Some(Ok(target)), Some(Ok(patch))) = (values.next(), values.next()) else {
        return;
    };
    let mut merged = target.clone();
    apply(&mut merged, patch.clone());
    assert_eq!(
        merged,
        reference(target.clone(), &patch),
        "differs from RFC 7396"
    );

    let mut twice = merged.clone();
    apply(&mut twice, patch.clone());
    assert_eq!(twice, merged, "applying the patch twice changed the result");

    let Value::Object(p) = &patch else {
        assert_eq!(merged, patch, "a non-object patch must replace the target");
        return;
    };
    let Value::Object(m) = &merged else {
        panic!("an object patch gave a non-object");
    };
    for (key, value) in p {
        match value {
            Value::Null => assert!(!m.contains_key(key), "`{key}` was removed"),
            Value::Object(_) => assert!(m.get(key).is_some_and(Value::is_object), "`{key}`"),
            other => assert_eq!(m.get(key), Some(other), "`{key}`"),
        }
    }
    let empty = Map::new();
    let t = target.as_object().unwrap_or(&empty);
    for (key, value) in t {
        if !p.contains_key(key) {
            assert_eq!(m.get(key), Some(value), "`{key}` is not in the patch");
        }
    }
    let expected = t.keys().filter(|k| m.contains_key(*k)).chain(
        p.keys()
            .filter(|k| !t.contains_key(*k) && m.contains_key(*k)),
    );
    assert!(m.keys().eq(expected), "keys moved");
}

/// RFC 7396, section 2, as written there.
fn reference(target: Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            let current = target.get(name).cloned().unwrap_or(Value::Null);
            target.insert(name.clone(), reference(current, value));
        }
    }
    Value::Object(target)
}
