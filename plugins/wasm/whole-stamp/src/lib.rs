//! Test plugin: a transform written against the `transform` world with `wit-bindgen` alone
//! (no SDK), as another toolchain would: `apply` returns whole events. It sets
//! `"stamped": true` at the payload's top level. The host's tests use it to prove that
//! plugins of the `transform` world keep working beside the SDK's `transform-changes`.

// The generated bindings lower a 6-field record into 12 arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "hookline:plugin/transform@0.1.0",
});

struct Stamp;

impl Guest for Stamp {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn apply(mut event: Event) -> Result<Vec<Event>, StageError> {
        let mut payload: serde_json::Value = serde_json::from_str(&event.payload)
            .map_err(|e| StageError::Fatal(format!("payload is not JSON: {e}")))?;
        match payload.as_object_mut() {
            Some(map) => map.insert("stamped".into(), true.into()),
            None => return Err(StageError::Fatal("payload is not an object".into())),
        };
        event.payload = payload.to_string();
        Ok(vec![event])
    }
}

export!(Stamp);
