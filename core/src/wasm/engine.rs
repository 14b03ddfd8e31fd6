//! The process's wasmtime engines (one without fuel metering, one with it, made when first
//! needed) and the thread that advances each one's epoch.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances: the resolution of every plugin's deadline.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Whether a plugin is compiled with fuel metering.
///
/// Metering instruments every basic block of the generated code and costs about 1.3 µs per
/// call on a transform that parses its payload, whether or not the store's fuel is ever
/// low, so it is compiled in only for stages that set `fuel`. Both flavours get epoch
/// interruption: every call has a deadline either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Metering {
    /// Epoch deadline only (stages without `fuel`).
    Off,
    /// Epoch deadline and fuel (stages with `fuel`).
    Fuel,
}

impl Metering {
    pub(crate) fn of(fuel: Option<u64>) -> Metering {
        match fuel {
            Some(_) => Metering::Fuel,
            None => Metering::Off,
        }
    }
}

/// The engine for `metering`. A component, linker and store all belong to one engine, so a
/// plugin used with and without `fuel` is compiled once for each.
pub(crate) fn engine(metering: Metering) -> &'static Engine {
    static OFF: OnceLock<Engine> = OnceLock::new();
    static FUEL: OnceLock<Engine> = OnceLock::new();
    let cell = match metering {
        Metering::Off => &OFF,
        Metering::Fuel => &FUEL,
    };
    cell.get_or_init(|| start(metering))
}

fn start(metering: Metering) -> Engine {
    let engine = match Engine::new(&config(metering)) {
        Ok(engine) => engine,
        // Only a bug in `config()` gets here: every setting is supported on every host this
        // builds for.
        Err(e) => panic!("invalid wasmtime configuration: {e}"),
    };
    let ticker = engine.clone();
    let spawned = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                ticker.increment_epoch();
            }
        });
    if let Err(e) = spawned {
        // Without the ticker deadlines never fire; better to say so loudly than to run
        // plugins unbounded.
        panic!("cannot start the WASM epoch thread: {e}");
    }
    engine
}

fn config(metering: Metering) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Plugins use no WASIp3 async; turning it off halves the cost of a call.
        .concurrency_support(false)
        .epoch_interruption(true)
        .consume_fuel(metering == Metering::Fuel)
        .parallel_compilation(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

/// Epoch ticks for a deadline `timeout` from now (rounded up, at least one).
pub(crate) fn ticks(timeout: Duration) -> u64 {
    let tick = TICK.as_nanos().max(1);
    let n = timeout.as_nanos().div_ceil(tick);
    u64::try_from(n).unwrap_or(u64::MAX).max(1)
}
