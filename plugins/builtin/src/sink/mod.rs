//! Sinks: deliver an event somewhere; the event then continues unchanged.

pub mod amqp;
pub mod file;
pub mod http;
pub mod nats;
pub mod postgres;
pub mod sqlite;
pub mod stdout;
