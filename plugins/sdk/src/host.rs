//! The host's imports, as plain functions.
//!
//! The bindings live in the plugin's crate (see the crate docs), so the export macro
//! installs the host functions here in `init`, before the plugin's `new` runs. Outside a
//! component (unit tests on the build machine) nothing is installed: logs go to stderr and
//! counters are ignored.

use std::sync::OnceLock;

use crate::http::{HttpError, Request, Response};

/// Log levels, as in the WIT `host.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The host's `http-send`, as the export macro adapts it.
#[doc(hidden)]
pub type HttpSend = fn(&Request) -> Result<Response, HttpError>;

/// The imports of the plugin's world, installed by the export macro.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct HostFns {
    pub log: fn(Level, &str),
    pub increment: fn(&str, u64),
    /// Only sinks import `http`.
    pub http_send: Option<HttpSend>,
}

static HOST: OnceLock<HostFns> = OnceLock::new();

#[doc(hidden)]
pub fn install(fns: HostFns) {
    let _ = HOST.set(fns);
}

pub(crate) fn http_send(request: &Request) -> Result<Response, HttpError> {
    match HOST.get().and_then(|h| h.http_send) {
        Some(send) => send(request),
        None => Err(HttpError::Denied(
            "outbound HTTP is only available to sink plugins".into(),
        )),
    }
}

/// Add `by` to this plugin's counter `name`. Hookline exports it labelled with the plugin's
/// name; keep names few and fixed (never from payload values).
pub fn increment(name: &str, by: u64) {
    if let Some(h) = HOST.get() {
        (h.increment)(name, by);
    }
}

/// Write to Hookline's log, tagged with the plugin and stage. Never log whole payloads or
/// secrets.
pub mod log {
    use super::{HOST, Level};

    pub fn write(level: Level, message: &str) {
        match HOST.get() {
            Some(h) => (h.log)(level, message),
            None => eprintln!("{level:?}: {message}"),
        }
    }

    pub fn trace(message: &str) {
        write(Level::Trace, message);
    }

    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }

    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}
