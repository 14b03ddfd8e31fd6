//! The `hookline` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand, ValueEnum};
use hookline_plugin_api::Registry;

use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::ingest::AppState;
use crate::reload::Reloader;
use crate::runtime::Workers;
use crate::runtime::load::{Loaded, Mode, load, load_with};
use crate::storage::{Role, Store};

#[derive(Debug, Parser)]
#[command(
    name = "hookline",
    version,
    about = "Receive webhooks, prove they are genuine, route them through pipelines."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "HOOKLINE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `hookline=debug,warn`).
    #[arg(long, global = true, default_value = "info", env = "HOOKLINE_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve {
        #[arg(long, short, default_value = "pipeline.toml", env = "HOOKLINE_CONFIG")]
        config: PathBuf,
        /// `ingest` answers webhooks, `worker` runs pipelines, `all` both (other roles need
        /// `[storage] backend = "nats"`).
        #[arg(long, value_enum, default_value = "all", env = "HOOKLINE_ROLE")]
        role: Role,
    },
    /// Validate a config as `serve` would, without serving. Exit code 1 on any problem.
    Check {
        #[arg(long, short, default_value = "pipeline.toml", env = "HOOKLINE_CONFIG")]
        config: PathBuf,
        /// Also try to reach every sink's destination (connect, authenticate, find the table,
        /// stream or exchange), without writing; say exactly what failed.
        #[arg(long)]
        connect: bool,
    },
    /// Sign and send LeadShark sample events, as LeadShark does (or as another scheme
    /// signs, `--scheme`); also a load generator.
    Send(crate::send::SendArgs),
    /// Say whether a request (body file and headers) verifies for a source, and if not,
    /// exactly why. Exit code 1 if it does not.
    Verify(crate::verify_cmd::VerifyArgs),
    /// Inspect, replay and purge dead letters (works whether or not `serve` is running).
    Dlq(crate::dlq::DlqArgs),
    /// Search the retained events and show one with where it went and every attempt
    /// (works whether or not `serve` is running).
    Events(crate::events_cmd::EventsArgs),
    /// Follow a running service live: each event as it is accepted and each stage's outcome
    /// as it happens.
    Tail(crate::tail_cmd::TailArgs),
    /// Pause and resume pipelines (their events are journaled meanwhile), or list them.
    Pipelines(crate::pipelines_cmd::PipelinesArgs),
    /// Write a commented starter pipeline.toml (and a test file) for a scheme and a sink.
    Init(crate::init::InitArgs),
    /// Run the pipeline tests written in TOML next to the config; sinks are replaced by
    /// recorders. Exit code 1 if any fails. With `--from-journal N`, run the config over the
    /// newest N journaled events instead and report the outcomes that would change.
    Test {
        #[arg(long, short, default_value = "pipeline.toml", env = "HOOKLINE_CONFIG")]
        config: PathBuf,
        /// Test files (default: `<config>.test.toml` and `tests/*.toml` beside the config).
        #[arg(conflicts_with = "from_journal")]
        files: Vec<PathBuf>,
        /// Only tests whose name contains this.
        #[arg(long, conflicts_with = "from_journal")]
        name: Option<String>,
        #[command(flatten)]
        journal: crate::pipetest::from_journal::FromJournalArgs,
    },
    /// WASM plugin projects: `hookline plugin new NAME --kind transform`.
    Plugin(crate::scaffold::PluginArgs),
}

/// Our own crates: a bare `--log-level debug` (or `trace`) applies to these only.
const OWN_TARGETS: &[&str] = &["hookline", "hookline_builtin", "hookline_plugin_api"];

/// The filter for `--log-level`. A bare `debug` or `trace` means that level for Hookline's
/// own targets and `info` for its dependencies (wasmtime, cranelift, globset, ... are
/// verbose at debug); any other text (`warn`, `hookline=debug,cranelift=trace`) is an
/// `EnvFilter` directive used as given.
pub(crate) fn log_filter(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        bare @ ("debug" | "trace") => std::iter::once("info".to_string())
            .chain(OWN_TARGETS.iter().map(|t| format!("{t}={bare}")))
            .collect::<Vec<_>>()
            .join(","),
        _ => level.to_string(),
    }
}

pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(level))
        .with_context(|| format!("bad --log-level `{level}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, never into a redirected log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    Ok(())
}

pub async fn serve(config: &Path, role: Role, registry: &Registry) -> anyhow::Result<()> {
    let Loaded {
        file,
        runtime,
        warnings,
        advice,
        ..
    } = load(config, registry)?;
    for w in &warnings {
        tracing::warn!("!!! WARNING: {w}");
    }
    for a in &advice {
        tracing::warn!("{a}");
    }
    let store = Store::open(&runtime, &file.base_dir(), role).await?;
    let journal = store.journal();
    let described = crate::storage::describe(&runtime);

    let listen = runtime.server.listen.clone();
    let admin_listen = runtime.admin.listen.clone();
    let listener = match role.ingests() {
        true => Some(
            tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {listen} (`[server] listen` in {})",
                        config.display()
                    )
                })?,
        ),
        false => None,
    };
    let admin_listener = tokio::net::TcpListener::bind(&admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {admin_listen} (`[admin] listen` in {})",
                config.display()
            )
        })?;
    let admin_addr = admin_listener.local_addr()?;
    for source in runtime.sources.values() {
        tracing::info!(source = %source.name, path = %source.path, pipelines = source.pipelines.len(), "serving source");
    }
    let concurrency = runtime.storage.concurrency;
    crate::metrics::preregister_common();
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    store.attach(runtime.clone()).await?;
    let depths = journal.depths().await?;
    tracing::info!(journal = %described, ?role, pending = depths.pending, dead_letters = depths.dead, "journal open");
    let workers = Workers::new(journal.clone(), runtime.clone(), concurrency);
    if role.works() {
        workers.start();
    }
    let reloader = Reloader::new(config, registry.clone(), runtime.clone());
    reloader.on_sighup();
    let _watcher = reloader.watch();
    let floor = crate::storage::Floor::watch(&store, runtime.clone());
    let state = Arc::new(AppState::new(
        runtime.clone(),
        journal.clone(),
        workers.clone(),
        floor,
    ));
    let stop = CancellationToken::new();
    let replays = crate::admin::replays::Runner::new(
        journal.clone(),
        registry.clone(),
        workers.clone(),
        stop.clone(),
    );
    // Resumes the replay jobs that were running when the last process stopped.
    tokio::spawn(replays.clone().supervise());
    let admin = tokio::spawn(crate::server::serve_admin(
        admin_listener,
        AdminState {
            journal,
            workers,
            runtime,
            reloader: Some(reloader),
            registry: registry.clone(),
            replays: Some(replays),
            stop: stop.clone(),
        },
        stop.clone(),
    ));
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        signal_stop.cancel();
    });
    // Machine-readable: tests and scripts wait for these lines.
    // A closed stdout must not stop a server: these lines are best effort.
    let _ = crate::out::line(format_args!("hookline admin on http://{admin_addr}"));
    match listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            let _ = crate::out::line(format_args!("hookline listening on http://{addr}"));
            tracing::info!(%addr, %admin_addr, "listening");
            crate::server::serve(listener, state, stop.clone()).await?;
        }
        None => {
            let _ = crate::out::line(format_args!(
                "hookline worker running (no webhook listener)"
            ));
            tracing::info!(%admin_addr, "working");
            crate::server::work_until(state, stop.clone()).await;
        }
    }
    stop.cancel();
    store.release().await;
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}

/// `hookline test`.
pub async fn test(
    config: &Path,
    files: Vec<PathBuf>,
    name: Option<&str>,
    journal: &crate::pipetest::from_journal::FromJournalArgs,
    registry: &Registry,
) -> anyhow::Result<()> {
    // Pipeline tests start after verification, so they need no production secret: an
    // unset variable in a secret's place resolves to a placeholder (docs/testing.md).
    let Loaded { runtime, .. } = load_with(config, registry, Mode::Test)?;
    if journal.is_requested() {
        let changed =
            crate::pipetest::from_journal::run(config, &runtime, journal, registry).await?;
        if changed > 0 && journal.fail_on_change {
            bail!("{changed} outcome(s) changed (--fail-on-change)");
        }
        return Ok(());
    }
    let files = if files.is_empty() {
        crate::pipetest::default_files(config)
    } else {
        files
    };
    if files.is_empty() {
        bail!(
            "no test files: write {} or tests/*.toml beside the config (see docs/testing.md)",
            crate::pipetest::default_files_hint(config)
        );
    }
    let (passed, failed) = crate::pipetest::run(&runtime, &files, name).await?;
    outln!("\n{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} pipeline test(s) failed");
    }
    Ok(())
}

/// `hookline check`: print what would run, with secrets masked.
pub fn check(config: &Path, connect: bool, registry: &Registry) -> anyhow::Result<()> {
    let Loaded {
        file,
        runtime,
        warnings,
        advice,
        ..
    } = load_with(config, registry, Mode::Check)?;
    let parsed = file.parse()?;
    outln!("{}: OK", file.path.display());
    outln!(
        "listen {}  max_body {}",
        runtime.server.listen,
        runtime.server.max_body
    );
    outln!(
        "journal {}  retain {}  admin {}{}",
        crate::storage::describe(&runtime),
        humantime::format_duration(runtime.storage.retain),
        runtime.admin.listen,
        if runtime.admin.token.is_some() {
            " (token ***)"
        } else {
            ""
        }
    );
    outln!(
        "plugins {}  compiled cache {}",
        runtime.plugins_dir.display(),
        parsed.plugin_cache_dir().display()
    );
    for s in &parsed.sources {
        outln!(
            "source {}  POST {}  verify {}",
            s.name,
            s.path,
            s.verify.describe()
        );
        if let Some(respond) = &s.respond {
            outln!("  respond {}", respond.describe());
        }
    }
    for p in &parsed.pipelines {
        outln!(
            "pipeline {}  source {}  events {}{}",
            p.name,
            p.source,
            p.events.join(", "),
            p.order_key
                .as_ref()
                .map(|k| format!("  ordered by {k}"))
                .unwrap_or_default()
        );
        for s in &p.stages {
            let wasm = match s.plugin.strip_prefix(crate::wasm::PREFIX) {
                Some(stem) => format!(
                    "  [{}: loaded and instantiated]",
                    runtime.plugins_dir.join(format!("{stem}.wasm")).display()
                ),
                None => String::new(),
            };
            outln!("  {}. {} {} ({}){wasm}", s.index, s.kind, s.plugin, s.name);
            if let Some(limits) = &s.limits {
                outln!("     {}", limits.describe(&s.retry));
            }
        }
    }
    for w in warnings.iter().chain(&advice) {
        outln!("warning: {w}");
    }
    if connect {
        probe_sinks(&runtime)?;
    }
    Ok(())
}

/// How long `check --connect` waits for one destination.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `check --connect`: ask every sink to reach its destination, one after another.
fn probe_sinks(runtime: &crate::runtime::Runtime) -> anyhow::Result<()> {
    use crate::runtime::StageOp;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failed = 0;
    for p in &runtime.pipelines {
        for s in &p.stages {
            let StageOp::Sink(sink) = &s.op else { continue };
            let result = rt.block_on(async {
                match tokio::time::timeout(PROBE_TIMEOUT, sink.probe()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "no answer within {}",
                        humantime::format_duration(PROBE_TIMEOUT)
                    )),
                }
            });
            match result {
                Ok(()) => outln!("connect {}/{} ({}): OK", p.name, s.name, s.plugin),
                Err(e) => {
                    failed += 1;
                    outln!("connect {}/{} ({}): FAILED: {e}", p.name, s.name, s.plugin);
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} destination(s) could not be reached");
    }
    Ok(())
}
