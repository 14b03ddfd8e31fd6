//! One plugin instance: a `Store` with its limits, the instantiated world, and calls made
//! under a deadline. Failures come back as [`CallError`], with traps described for people
//! ("timed out after 100ms", "panicked: ...", "exceeded its memory limit of 16 MiB").

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::{MemoryOutputPipe, SinkOutputStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{Event, Output, StageError, filter, sink, transform, transform_changes};
use super::engine::Metering;
use super::plugin::Pre;
use super::sandbox::Sandbox;

/// Captured stderr per instance: enough for a panic message.
const STDERR_CAPACITY: usize = 16 << 10;

/// What a stage needs to make instances.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) plugin: Arc<str>,
    pub(crate) stage: Arc<str>,
    pub(crate) pre: Pre,
    pub(crate) sandbox: Sandbox,
    /// The plugin's table as JSON, for `init`.
    pub(crate) config: String,
    pub(crate) http: Option<super::http::Policy>,
}

/// The store's data.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    pub(crate) plugin: Arc<str>,
    pub(crate) stage: Arc<str>,
    stderr: MemoryOutputPipe,
    pub(crate) http: Option<super::http::Policy>,
    /// When the current call must be over (bounds HTTP inside it).
    pub(crate) deadline: Instant,
    /// Set while a sink delivers, for `http-send` to block on.
    pub(crate) runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("plugin", &self.plugin)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory and table caps; records the memory in use and whether a cap was hit.
struct Limits {
    memory_cap: u64,
    memory: u64,
    hit: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = u64::try_from(desired).unwrap_or(u64::MAX);
        if desired > self.memory_cap {
            self.hit = true;
            return Ok(false);
        }
        self.memory = self.memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

enum Bound {
    Filter(filter::Filter),
    Transform(transform::Transform),
    TransformChanges(transform_changes::TransformChanges),
    Sink(sink::Sink),
}

/// How a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The plugin returned an error result.
    Returned(hookline_plugin_api::StageError),
    /// The plugin stopped: which way, and in words for the dead letter.
    Trapped(Trapped),
}

/// How a plugin was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrapKind {
    /// Still running at the stage's `timeout` (an epoch interrupt).
    Timeout,
    /// Grew past the stage's `memory`.
    Memory,
    /// Out of fuel, a panic, any other trap, or a host failure.
    Trap,
}

/// A plugin stopped by a trap, the deadline or the memory cap.
#[derive(Debug)]
pub(crate) struct Trapped {
    pub(crate) kind: TrapKind,
    /// Names the plugin and the cause.
    pub(crate) message: String,
}

impl CallError {
    /// Any other failure of the host's: counted and worded as a trap.
    pub(crate) fn trap(message: impl Into<String>) -> Self {
        CallError::Trapped(Trapped {
            kind: TrapKind::Trap,
            message: message.into(),
        })
    }
}

pub(crate) struct Instance {
    store: Store<State>,
    bound: Bound,
    pub(crate) calls: u64,
    /// The last event handed to the plugin: its strings' buffers are reused for the next.
    pub(crate) scratch: Option<Event>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.store.data().plugin)
            .field("calls", &self.calls)
            .finish()
    }
}

impl Instance {
    /// Instantiate and `init`. An `Err(Returned)` is the plugin rejecting its config.
    pub(crate) fn new(env: &Env) -> Result<Instance, CallError> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stdout(SinkOutputStream)
            .stderr(stderr.clone())
            .build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limits: Limits {
                memory_cap: env.sandbox.memory,
                memory: 0,
                hit: false,
            },
            plugin: env.plugin.clone(),
            stage: env.stage.clone(),
            stderr,
            http: env.http.clone(),
            deadline: Instant::now(),
            runtime: None,
        };
        let metering = Metering::of(env.sandbox.fuel);
        let mut store = Store::new(super::engine::engine(metering), state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        arm(&mut store, &env.sandbox).map_err(|e| describe(&store, &env.sandbox, e))?;
        let bound = match &env.pre {
            Pre::Filter(p) => p.instantiate(&mut store).map(Bound::Filter),
            Pre::Transform(p) => p.instantiate(&mut store).map(Bound::Transform),
            Pre::TransformChanges(p) => p.instantiate(&mut store).map(Bound::TransformChanges),
            Pre::Sink(p) => p.instantiate(&mut store).map(Bound::Sink),
        }
        .map_err(|e| describe(&store, &env.sandbox, e))?;
        let mut instance = Instance {
            store,
            bound,
            calls: 0,
            scratch: None,
        };
        instance.init(env)?;
        Ok(instance)
    }

    fn init(&mut self, env: &Env) -> Result<(), CallError> {
        self.arm(&env.sandbox)?;
        let store = &mut self.store;
        let result = match &self.bound {
            Bound::Filter(b) => b.call_init(&mut *store, &env.config),
            Bound::Transform(b) => b.call_init(&mut *store, &env.config),
            Bound::TransformChanges(b) => b.call_init(&mut *store, &env.config),
            Bound::Sink(b) => b.call_init(&mut *store, &env.config),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(CallError::Returned(hookline_plugin_api::StageError::fatal(
                message,
            ))),
            Err(e) => Err(describe(&self.store, &env.sandbox, e)),
        }
    }

    /// Set the deadline (and fuel) for the next call.
    fn arm(&mut self, sandbox: &Sandbox) -> Result<(), CallError> {
        arm(&mut self.store, sandbox).map_err(|e| describe(&self.store, sandbox, e))
    }

    pub(crate) fn keep(&mut self, env: &Env, event: &Event) -> Result<bool, CallError> {
        self.arm(&env.sandbox)?;
        self.calls += 1;
        let Bound::Filter(b) = &self.bound else {
            return Err(CallError::trap("not a filter instance"));
        };
        let result = b.call_keep(&mut self.store, event);
        self.settle(env, result)
    }

    /// A `transform` plugin's events come back whole; a `transform-changes` plugin's may be
    /// changes to `event`.
    pub(crate) fn apply(&mut self, env: &Env, event: &Event) -> Result<Vec<Output>, CallError> {
        self.arm(&env.sandbox)?;
        self.calls += 1;
        let result = match &self.bound {
            Bound::TransformChanges(b) => b.call_apply_changes(&mut self.store, event),
            Bound::Transform(b) => b
                .call_apply(&mut self.store, event)
                .map(|r| r.map(|events| events.into_iter().map(Output::Whole).collect())),
            _ => return Err(CallError::trap("not a transform instance")),
        };
        self.settle(env, result)
    }

    /// Deliver; `runtime` is what `http-send` blocks on (this runs off the async workers).
    pub(crate) fn deliver(
        &mut self,
        env: &Env,
        event: &Event,
        runtime: tokio::runtime::Handle,
    ) -> Result<(), CallError> {
        self.arm(&env.sandbox)?;
        self.calls += 1;
        let Bound::Sink(b) = &self.bound else {
            return Err(CallError::trap("not a sink instance"));
        };
        self.store.data_mut().runtime = Some(runtime);
        let result = b.call_deliver(&mut self.store, event);
        self.store.data_mut().runtime = None;
        self.settle(env, result)
    }

    fn settle<T>(
        &self,
        env: &Env,
        result: wasmtime::Result<Result<T, StageError>>,
    ) -> Result<T, CallError> {
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(StageError::Retryable(m))) => Err(CallError::Returned(
                hookline_plugin_api::StageError::retryable(format!("{}: {m}", env.plugin)),
            )),
            Ok(Err(StageError::Fatal(m))) => Err(CallError::Returned(
                hookline_plugin_api::StageError::fatal(format!("{}: {m}", env.plugin)),
            )),
            Err(e) => Err(describe(&self.store, &env.sandbox, e)),
        }
    }

    /// Whether to keep the instance for another event: not after `recycle_after` calls, nor
    /// past the memory high-water mark.
    pub(crate) fn reusable(&self, sandbox: &Sandbox) -> bool {
        let limits = &self.store.data().limits;
        self.calls < sandbox.recycle_after && limits.memory <= sandbox.high_water() && !limits.hit
    }

    /// Linear memory in use (the largest memory's size), in bytes.
    pub(crate) fn memory(&self) -> u64 {
        self.store.data().limits.memory
    }
}

fn arm(store: &mut Store<State>, sandbox: &Sandbox) -> wasmtime::Result<()> {
    store.set_epoch_deadline(super::engine::ticks(sandbox.timeout));
    // Only a metered store has fuel to set (the plugin was compiled for it: `Metering::of`).
    if let Some(fuel) = sandbox.fuel {
        store.set_fuel(fuel)?;
    }
    store.data_mut().deadline = Instant::now() + sandbox.timeout;
    Ok(())
}

/// A failure, in words that name the plugin and the cause.
fn describe(store: &Store<State>, sandbox: &Sandbox, e: wasmtime::Error) -> CallError {
    let state = store.data();
    let name = &state.plugin;
    if state.limits.hit {
        let cap = match sandbox.memory {
            m if m % (1 << 20) == 0 => format!("{} MiB", m >> 20),
            m => bytesize::ByteSize(m).display().iec().to_string(),
        };
        return CallError::Trapped(Trapped {
            kind: TrapKind::Memory,
            message: format!("{name} exceeded its memory limit of {cap}"),
        });
    }
    let message = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "{name} timed out: still running after {} (the stage's `timeout`)",
            humantime::format_duration(sandbox.timeout)
        ),
        Some(Trap::OutOfFuel) => format!(
            "{name} ran out of fuel ({} per call, the stage's `fuel`)",
            sandbox.fuel.unwrap_or_default()
        ),
        Some(Trap::UnreachableCodeReached) => match panic_message(&state.stderr) {
            Some(m) => format!("{name} panicked: {m}"),
            None => format!("{name} trapped: unreachable code (an abort or a panic)"),
        },
        Some(trap) => format!("{name} trapped: {trap}"),
        None => format!("{name} failed: {e:#}"),
    };
    let kind = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => TrapKind::Timeout,
        _ => TrapKind::Trap,
    };
    CallError::Trapped(Trapped { kind, message })
}

/// The last Rust panic message written to the instance's stderr.
fn panic_message(stderr: &MemoryOutputPipe) -> Option<String> {
    let text = String::from_utf8_lossy(&stderr.contents()).into_owned();
    let at = text.rfind("panicked at ")?;
    let rest = &text[at + "panicked at ".len()..];
    let rest = rest.split("\nnote:").next().unwrap_or(rest);
    let one_line: String = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(one_line.chars().take(500).collect())
}
