//! WASM stages: the plugin-api traits over a small pool of instances.
//!
//! Filters and transforms run on the calling thread (the stage runtime's, see
//! `runtime/worker.rs`) on a reused instance, bounded by the deadline; the per-call overhead
//! is measured by `cargo bench --bench wasm_transform`. Sinks run on Tokio's
//! blocking pool, because their `http-send` import blocks on the network.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hookline_plugin_api::{
    BuildContext, ConfigError, Event, Filter, PluginConfig, Sink, StageError, StageKind, Transform,
};
use tracing::debug;

use super::Plugin;
use super::bindings;
use super::engine::Metering;
use super::instance::{CallError, Env, Instance, TrapKind};
use super::sandbox::{self, Sandbox};
use crate::internal_events::{PluginTelemetry, PluginTrapped};

/// The instances of one stage.
#[derive(Debug)]
pub(crate) struct Runner {
    env: Env,
    telemetry: PluginTelemetry,
    idle: Mutex<Vec<Instance>>,
    /// Instances made so far; read by tests (`instances_created`).
    #[cfg_attr(not(test), allow(dead_code))]
    created: AtomicU64,
}

impl Runner {
    fn new(
        plugin: &Plugin,
        kind: StageKind,
        config: &PluginConfig<'_>,
        ctx: &BuildContext,
    ) -> Result<Arc<Runner>, ConfigError> {
        plugin.check(kind).map_err(ConfigError::new)?;
        let (sandbox, table) = Sandbox::parse(kind, config)?;
        let http = match kind {
            StageKind::Sink => {
                Some(super::http::Policy::new(&sandbox.allowed_hosts).map_err(ConfigError::new)?)
            }
            _ => None,
        };
        let init_config = sandbox::to_json(table)
            .map_err(|e| ConfigError::new(format!("{}: {e}", plugin.name)))?;
        let env = Env {
            plugin: plugin.name.as_str().into(),
            stage: format!("{}/{}", ctx.pipeline, ctx.stage).into(),
            pre: plugin
                .pre(kind, Metering::of(sandbox.fuel))
                .map_err(ConfigError::new)?,
            sandbox,
            config: init_config,
            http,
        };
        let runner = Arc::new(Runner {
            env,
            telemetry: PluginTelemetry::new(&ctx.pipeline, &ctx.stage),
            idle: Mutex::new(Vec::new()),
            created: AtomicU64::new(0),
        });
        // Instantiate one now: `check` and start-up prove the plugin loads and accepts its
        // config, and the first event finds a warm instance.
        match runner.instantiate() {
            Ok(instance) => runner.put_back(instance),
            Err(CallError::Returned(e)) => {
                return Err(ConfigError {
                    message: format!("{} rejected its config: {}", plugin.name, e.message()),
                    span: Some(config.span()),
                    key: None,
                });
            }
            Err(CallError::Trapped(t)) => {
                return Err(ConfigError::new(format!(
                    "{} ({}) failed to start: {}",
                    plugin.name,
                    plugin.path.display(),
                    t.message
                )));
            }
        }
        Ok(runner)
    }

    fn instantiate(&self) -> Result<Instance, CallError> {
        self.created.fetch_add(1, Ordering::Relaxed);
        Instance::new(&self.env)
    }

    /// Instances created so far (the first at build time; then one per recycle).
    #[cfg(test)]
    pub(crate) fn instances_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    fn put_back(&self, instance: Instance) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.env.sandbox.instances {
            idle.push(instance);
        }
    }

    /// Run `f` on an idle instance (or a new one). The instance goes back to the pool only
    /// if the call succeeded and it is still fit; after a trap or an error result it is
    /// dropped, and the next call gets a fresh one.
    fn call<R>(
        &self,
        f: impl FnOnce(&Env, &mut Instance) -> Result<R, CallError>,
    ) -> Result<R, StageError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match idle {
            Some(i) => i,
            None => self.instantiate().map_err(|e| match e {
                CallError::Returned(e) => e,
                CallError::Trapped(t) => StageError::fatal(t.message),
            })?,
        };
        // A host function panicking must not take the worker down with it.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&self.env, &mut instance)));
        match result {
            Ok(Ok(value)) => {
                if instance.reusable(&self.env.sandbox) {
                    self.put_back(instance);
                } else {
                    debug!(plugin = %self.env.plugin, calls = instance.calls, memory = instance.memory(), "recycling a plugin instance");
                }
                Ok(value)
            }
            Ok(Err(CallError::Returned(e))) => Err(e),
            Ok(Err(CallError::Trapped(t))) => {
                PluginTrapped {
                    telemetry: &self.telemetry,
                    plugin: &self.env.plugin,
                    timeout: t.kind == TrapKind::Timeout,
                    message: &t.message,
                }
                .emit();
                Err(StageError::fatal(t.message))
            }
            Err(_) => Err(StageError::fatal(format!(
                "{}: the host failed while running the plugin",
                self.env.plugin
            ))),
        }
    }
}

/// [`to_wit`] into the buffers of an earlier event: a transform call then allocates
/// nothing to hand the event over (the payload is still serialised each time).
fn fill_wit(e: &Event, w: Option<bindings::Event>) -> Result<bindings::Event, StageError> {
    let Some(mut w) = w else {
        return Ok(to_wit(e));
    };
    fn set(to: &mut String, from: &str) {
        to.clear();
        to.push_str(from);
    }
    set(&mut w.id, &e.id);
    set(&mut w.source, &e.source);
    set(&mut w.type_, &e.event_type);
    w.received_at.clear();
    {
        use std::fmt::Write as _;
        let _ = write!(w.received_at, "{}", e.received_at);
    }
    w.headers.truncate(e.headers.len());
    for (i, (name, value)) in e.headers.iter().enumerate() {
        match w.headers.get_mut(i) {
            Some((n, v)) => {
                set(n, name);
                set(v, value);
            }
            None => w.headers.push((name.clone(), value.clone())),
        }
    }
    let mut payload = std::mem::take(&mut w.payload).into_bytes();
    payload.clear();
    serde_json::to_writer(&mut payload, &e.payload)
        .map_err(|err| StageError::fatal(format!("cannot encode the payload: {err}")))?;
    w.payload = String::from_utf8(payload)
        .map_err(|err| StageError::fatal(format!("cannot encode the payload: {err}")))?;
    Ok(w)
}

fn to_wit(e: &Event) -> bindings::Event {
    bindings::Event {
        id: e.id.clone(),
        source: e.source.clone(),
        type_: e.event_type.clone(),
        received_at: e.received_at.to_string(),
        headers: e.headers.clone(),
        payload: e.payload.to_string(),
    }
}

/// The plugin's event back as ours. The id, source and time of arrival are the host's:
/// a plugin changes the type, headers and payload only.
fn from_wit(plugin: &str, original: &Event, e: bindings::Event) -> Result<Event, StageError> {
    let payload = serde_json::from_str(&e.payload).map_err(|err| {
        StageError::fatal(format!(
            "{plugin} returned a payload that is not JSON: {err}"
        ))
    })?;
    Ok(Event {
        id: original.id.clone(),
        source: original.source.clone(),
        event_type: e.type_,
        received_at: original.received_at,
        headers: e.headers,
        payload,
    })
}

/// A `wasm:` filter.
#[derive(Debug)]
pub(crate) struct WasmFilter(pub Arc<Runner>);

impl Filter for WasmFilter {
    fn keep(&self, event: &Event) -> Result<bool, StageError> {
        let event = to_wit(event);
        self.0.call(|env, i| i.keep(env, &event))
    }
}

/// A `wasm:` transform.
#[derive(Debug)]
pub(crate) struct WasmTransform(pub Arc<Runner>);

impl Transform for WasmTransform {
    fn apply(&self, event: Event) -> Result<Vec<Event>, StageError> {
        let outputs = self.0.call(|env, i| {
            let wit = fill_wit(&event, i.scratch.take()).map_err(CallError::Returned)?;
            let outputs = i.apply(env, &wit);
            i.scratch = Some(wit);
            outputs
        })?;
        let plugin = &*self.0.env.plugin;
        let mut events = Vec::with_capacity(outputs.len());
        let mut outputs = outputs.into_iter().peekable();
        while let Some(output) = outputs.next() {
            let next = match output {
                bindings::Output::Whole(e) => from_wit(plugin, &event, e)?,
                // The last output made of changes takes the event itself: no copy.
                bindings::Output::Changed(c) if outputs.peek().is_none() => {
                    events.push(changed(plugin, event, c)?);
                    return Ok(events);
                }
                bindings::Output::Changed(c) => changed(plugin, event.clone(), c)?,
            };
            events.push(next);
        }
        Ok(events)
    }
}

/// `event` with a plugin's changes: the payload the host holds, with the patch merged in.
pub(super) fn changed(
    plugin: &str,
    mut event: Event,
    c: bindings::Changes,
) -> Result<Event, StageError> {
    if let Some(patch) = c.payload_patch {
        let patch = serde_json::from_str(&patch).map_err(|err| {
            StageError::fatal(format!(
                "{plugin} returned a payload patch that is not JSON: {err}"
            ))
        })?;
        hookline_plugin_api::merge_patch(&mut event.payload, patch);
    }
    if let Some(t) = c.type_ {
        event.event_type = t;
    }
    if let Some(h) = c.headers {
        event.headers = h;
    }
    Ok(event)
}

/// A `wasm:` sink.
#[derive(Debug)]
pub(crate) struct WasmSink(pub Arc<Runner>);

#[async_trait::async_trait]
impl Sink for WasmSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let runner = self.0.clone();
        let event = to_wit(event);
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || runner.call(|env, i| i.deliver(env, &event, handle)))
            .await
            .unwrap_or_else(|e| {
                Err(StageError::fatal(format!(
                    "{}: the plugin call was lost: {e}",
                    self.0.env.plugin
                )))
            })
    }
}

pub(crate) fn build_filter(
    plugin: &Plugin,
    config: &PluginConfig<'_>,
    ctx: &BuildContext,
) -> Result<Arc<WasmFilter>, ConfigError> {
    Runner::new(plugin, StageKind::Filter, config, ctx).map(|r| Arc::new(WasmFilter(r)))
}

pub(crate) fn build_transform(
    plugin: &Plugin,
    config: &PluginConfig<'_>,
    ctx: &BuildContext,
) -> Result<Arc<WasmTransform>, ConfigError> {
    Runner::new(plugin, StageKind::Transform, config, ctx).map(|r| Arc::new(WasmTransform(r)))
}

pub(crate) fn build_sink(
    plugin: &Plugin,
    config: &PluginConfig<'_>,
    ctx: &BuildContext,
) -> Result<Arc<WasmSink>, ConfigError> {
    Runner::new(plugin, StageKind::Sink, config, ctx).map(|r| Arc::new(WasmSink(r)))
}
