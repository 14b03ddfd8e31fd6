use crate::{Event, StageError};

/// Decides whether an event continues down the pipeline.
pub trait Filter: Send + Sync + std::fmt::Debug {
    /// `Ok(true)` keeps the event, `Ok(false)` drops it (a normal outcome, not an error).
    fn keep(&self, event: &Event) -> Result<bool, StageError>;
}

/// Changes an event, or splits it into several.
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// Returns the events that continue: usually one; none drops the event; several split it.
    fn apply(&self, event: Event) -> Result<Vec<Event>, StageError>;

    /// Whether [`Transform::edit`] does this transform's work: one event in, the same event
    /// changed out. The runner then edits an event its run owns alone in place instead of
    /// copying it for [`Transform::apply`].
    fn edits_in_place(&self) -> bool {
        false
    }

    /// Change `event` in place, as [`Transform::apply`] would. Called only when
    /// [`Transform::edits_in_place`]. On `Err` the event must be left exactly as it was: the
    /// delivery is retried or dead-lettered as it entered this stage (check everything that
    /// can fail before changing anything). A panic here dead-letters the event as the edit
    /// left it.
    fn edit(&self, event: &mut Event) -> Result<(), StageError> {
        let _ = event;
        Err(StageError::fatal("this transform does not edit in place"))
    }
}

/// Delivers an event somewhere. The event then continues unchanged to the next stage, so
/// `sink, transform, sink` chains work.
#[async_trait::async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    async fn deliver(&self, event: &Event) -> Result<(), StageError>;

    /// Tries to reach the destination, for `hookline check --connect`: connect, authenticate,
    /// and check that what the sink writes to exists (a table, a stream, an exchange). `Err`
    /// says exactly what failed, in words for the user. The default, for sinks with nothing
    /// to reach ahead of a delivery, is `Ok`.
    ///
    /// Called on a sink built as a dry run (`BuildContext::dry_run`), so it must not rely on
    /// anything a dry run skips; it must not write.
    async fn probe(&self) -> Result<(), String> {
        Ok(())
    }
}
