//! Transforms: change an event's payload.

pub mod remove;
pub mod rename;
pub mod set;
pub mod template;
