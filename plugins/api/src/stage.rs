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
}

/// Delivers an event somewhere. The event then continues unchanged to the next stage, so
/// `sink, transform, sink` chains work.
#[async_trait::async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    async fn deliver(&self, event: &Event) -> Result<(), StageError>;
}
