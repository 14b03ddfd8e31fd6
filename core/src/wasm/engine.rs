//! One wasmtime `Engine` for the process, and the thread that advances its epoch.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances: the resolution of every plugin's deadline.
pub const TICK: Duration = Duration::from_millis(5);

/// The process's engine. Fuel metering and epoch interruption are compiled into every
/// plugin (fuel is then set to "unlimited" for stages without `fuel`), so one engine and one
/// compiled artefact serve every stage configuration.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = match Engine::new(&config()) {
            Ok(engine) => engine,
            // Only a bug in `config()` gets here: every setting is supported on every host
            // this builds for.
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
            // Without the ticker deadlines never fire; better to say so loudly than to
            // run plugins unbounded.
            panic!("cannot start the WASM epoch thread: {e}");
        }
        engine
    })
}

fn config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Plugins use no WASIp3 async; turning it off halves the cost of a call.
        .concurrency_support(false)
        .epoch_interruption(true)
        .consume_fuel(true)
        .parallel_compilation(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

/// Epoch ticks for a deadline `timeout` from now (rounded up, at least one).
pub fn ticks(timeout: Duration) -> u64 {
    let tick = TICK.as_nanos().max(1);
    let n = timeout.as_nanos().div_ceil(tick);
    u64::try_from(n).unwrap_or(u64::MAX).max(1)
}
