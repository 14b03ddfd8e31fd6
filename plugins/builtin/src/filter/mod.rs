//! Filters: decide whether an event continues down the pipeline.

pub mod cel;
pub mod event;
pub mod field;
