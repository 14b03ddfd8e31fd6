use clap::Parser;
use hookline::cli::{Cli, Command, check, init_logging, serve};

/// Rust's allocations go to jemalloc. An event is allocated on the listener's threads and
/// freed on others (the journal's writer, the stage threads, the file writer). glibc's
/// malloc takes the owning arena's lock for each such free once a thread's small cache is
/// full, and for every aligned allocation (each tokio task): in a load run, 6–9 % of the
/// CPU samples waited on those locks. jemalloc's per-thread caches take both without a lock.
/// Against glibc, in one interleaved run: one pipeline ×1.16–1.27 req/s, ten pipelines
/// ×1.44–1.49 (docs/performance.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment
/// overrides them key by key): a background thread gives freed memory back to the system
/// half a second after it is freed (`dirty_decay_ms`; jemalloc's default is 10 s and it
/// purges only while allocating), so memory comes back after an attack even when the
/// service then goes quiet. Arenas and thread caches stay at jemalloc's defaults, which
/// scale with the CPUs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
// SAFETY: jemalloc defines `const char *malloc_conf` (prefixed `_rjem_` by
// tikv-jemalloc-sys) as a weak symbol for the program to override, and only reads it;
// this is a pointer to a static NUL-terminated string.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static std::ffi::c_char> =
    Some(unsafe { &*c"background_thread:true,dirty_decay_ms:500".as_ptr() });

/// glibc's malloc, by default, raises its mmap threshold after large blocks are freed and
/// trims the heap rarely, so the buffers of thousands of connections (an attack, a burst)
/// stayed resident after they closed: 35 → 72 MiB for good in the hostile suite. A fixed
/// 64 KiB mmap threshold and a 128 KiB trim threshold give them back (72 → 46 MiB). Rust's
/// allocations now go to jemalloc; SQLite's still come from glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets two of the allocator's tunables; it is called first thing in
    // main, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_format, &cli.log_level) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let registry = hookline_builtin::registry();
    let result = match cli.command {
        Command::Check { config, connect } => check(&config, connect, &registry),
        Command::Serve { config, role } => {
            runtime().and_then(|rt| rt.block_on(serve(&config, role, &registry)))
        }
        Command::Send(args) => runtime().and_then(|rt| rt.block_on(hookline::send::run(args))),
        Command::Verify(args) => hookline::verify_cmd::run(args),
        Command::Dlq(args) => runtime().and_then(|rt| rt.block_on(hookline::dlq::run(args))),
        Command::Events(args) => {
            runtime().and_then(|rt| rt.block_on(hookline::events_cmd::run(args, &registry)))
        }
        Command::Tail(args) => runtime().and_then(|rt| rt.block_on(hookline::tail_cmd::run(args))),
        Command::Pipelines(args) => {
            runtime().and_then(|rt| rt.block_on(hookline::pipelines_cmd::run(args)))
        }
        Command::Init(args) => hookline::init::run(&args),
        Command::Test {
            config,
            files,
            name,
            journal,
        } => runtime().and_then(|rt| {
            rt.block_on(hookline::cli::test(
                &config,
                files,
                name.as_deref(),
                &journal,
                &registry,
            ))
        }),
        Command::Plugin(args) => hookline::scaffold::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `hookline dlq list | head`: the reader closed the pipe and has what it wanted.
        Err(e) if hookline::out::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<hookline::config::Diagnostics>() {
                // Config problems carry their own `error: ` prefix, one per line.
                Some(d) => {
                    eprintln!("{d}");
                    if let [first, _, ..] = d.0.as_slice() {
                        eprintln!("error: {} problems in {}", d.0.len(), first.file.display());
                    }
                }
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
