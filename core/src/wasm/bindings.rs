//! Host bindings of the worlds in `plugins/wit`, sharing the `types` and `host`
//! interfaces (generated once, in `filter`), and the host side of the `host` and `http`
//! imports.

use std::time::Instant;

use tracing::{debug, error, info, trace, warn};

use super::instance::State;

pub(crate) mod filter {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "hookline:plugin/filter",
    });
}

pub(crate) mod transform {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "hookline:plugin/transform",
        with: {
            "hookline:plugin/types": super::filter::hookline::plugin::types,
            "hookline:plugin/host": super::filter::hookline::plugin::host,
        },
    });
}

pub(crate) mod transform_changes {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "hookline:plugin/transform-changes",
        with: {
            "hookline:plugin/types": super::filter::hookline::plugin::types,
            "hookline:plugin/host": super::filter::hookline::plugin::host,
        },
    });
}

pub(crate) mod sink {
    wasmtime::component::bindgen!({
        path: "../plugins/wit",
        world: "hookline:plugin/sink",
        with: {
            "hookline:plugin/types": super::filter::hookline::plugin::types,
            "hookline:plugin/host": super::filter::hookline::plugin::host,
        },
    });
}

pub(crate) use filter::hookline::plugin::host::Level;
pub(crate) use filter::hookline::plugin::types::{Changes, Event, Output, StageError};
pub(crate) use sink::hookline::plugin::http::{HttpError, Request, Response};

/// Longest log message kept from a plugin.
const MAX_LOG: usize = 4096;

impl filter::hookline::plugin::types::Host for State {}

impl filter::hookline::plugin::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG {
            let mut end = MAX_LOG;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let (plugin, stage) = (&*self.plugin, &*self.stage);
        match level {
            Level::Trace => trace!(plugin, stage, "{message}"),
            Level::Debug => debug!(plugin, stage, "{message}"),
            Level::Info => info!(plugin, stage, "{message}"),
            Level::Warn => warn!(plugin, stage, "{message}"),
            Level::Error => error!(plugin, stage, "{message}"),
        }
    }

    fn increment(&mut self, name: String, by: u64) {
        super::counters::increment(&self.plugin, &name, by);
    }
}

impl sink::hookline::plugin::http::Host for State {
    fn send(&mut self, request: Request) -> Result<Response, HttpError> {
        let Some(policy) = self.http.clone() else {
            return Err(HttpError::Denied(
                "this stage makes no HTTP requests".into(),
            ));
        };
        let Some(runtime) = self.runtime.clone() else {
            return Err(HttpError::Denied(
                "outbound HTTP is only available while delivering an event".into(),
            ));
        };
        let budget = self.deadline.saturating_duration_since(Instant::now());
        let sent = runtime.block_on(policy.send(
            &request.method,
            &request.url,
            request.headers,
            request.body,
            budget,
        ));
        use super::http::Failure;
        match sent {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(Failure::Denied(m)) => {
                warn!(plugin = %self.plugin, stage = %self.stage, reason = %m, "refused a plugin's HTTP request");
                Err(HttpError::Denied(m))
            }
            Err(Failure::Timeout(m)) => Err(HttpError::Timeout(m)),
            Err(Failure::Failed(m)) => Err(HttpError::Failed(m)),
            Err(Failure::TooLarge(m)) => Err(HttpError::TooLarge(m)),
        }
    }
}
