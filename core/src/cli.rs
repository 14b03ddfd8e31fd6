//! The `hookline` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand, ValueEnum};
use hookline_plugin_api::Registry;

use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::config::{ConfigFile, Diagnostics};
use crate::ingest::AppState;
use crate::journal::{Journal, SqliteJournal};
use crate::runtime::{Runtime, Workers};

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
    },
    /// Validate a config as `serve` would, without serving. Exit code 1 on any problem.
    Check {
        #[arg(long, short, default_value = "pipeline.toml", env = "HOOKLINE_CONFIG")]
        config: PathBuf,
    },
    /// Sign and send LeadShark sample events, as LeadShark does; also a load generator.
    Send(crate::send::SendArgs),
    /// Inspect, replay and purge dead letters (works whether or not `serve` is running).
    Dlq(crate::dlq::DlqArgs),
    /// WASM plugin projects: `hookline plugin new NAME --kind transform`.
    Plugin(crate::scaffold::PluginArgs),
}

pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("bad --log-level `{level}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

/// Load and build a config with the built-in plugins.
pub fn load(
    path: &Path,
    registry: &Registry,
) -> Result<(ConfigFile, Runtime, Vec<String>), Diagnostics> {
    let file = ConfigFile::read(path)?;
    let (runtime, warnings) = {
        let config = file.parse()?;
        let runtime = Runtime::build(&config, registry)?;
        let warnings = config
            .insecure_defaults()
            .iter()
            .map(|d| {
                format!(
                    "`{}` uses the default written in {} because ${} is not set: anyone who can read that file can forge webhooks. Set {} before exposing this service.",
                    d.key,
                    file.path.display(),
                    d.var,
                    d.var
                )
            })
            .collect();
        (runtime, warnings)
    };
    Ok((file, runtime, warnings))
}

pub async fn serve(config: &Path, registry: &Registry) -> anyhow::Result<()> {
    let (_, runtime, warnings) = load(config, registry).map_err(|d| anyhow::anyhow!("{d}"))?;
    for w in &warnings {
        eprintln!("\n!!! WARNING: {w}\n");
        tracing::warn!("{w}");
    }
    let db = runtime.storage_path.clone();
    let _lock = lock_journal(&db)?;
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&db)?);
    let depths = journal.depths().await?;
    tracing::info!(path = %db.display(), pending = depths.pending, dead_letters = depths.dead, "journal open");

    let listen = runtime.server.listen.clone();
    let admin_listen = runtime.admin.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let admin_listener = tokio::net::TcpListener::bind(&admin_listen)
        .await
        .with_context(|| format!("cannot listen on {admin_listen} (admin)"))?;
    let (addr, admin_addr) = (listener.local_addr()?, admin_listener.local_addr()?);
    for source in runtime.sources.values() {
        tracing::info!(source = %source.name, path = %source.path, pipelines = source.pipelines.len(), "serving source");
    }
    let (concurrency, retain, token) = (
        runtime.storage.concurrency,
        runtime.storage.retain,
        runtime.admin.token.clone(),
    );
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    let workers = Workers::new(journal.clone(), runtime.clone(), concurrency);
    workers.start(retain);
    let state = Arc::new(AppState {
        runtime,
        journal: journal.clone(),
        workers: workers.clone(),
    });
    let stop = CancellationToken::new();
    let admin = tokio::spawn(crate::server::serve_admin(
        admin_listener,
        AdminState {
            journal,
            workers,
            token,
        },
        stop.clone(),
    ));
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        signal_stop.cancel();
    });
    // Machine-readable: tests and scripts wait for these lines.
    println!("hookline admin on http://{admin_addr}");
    println!("hookline listening on http://{addr}");
    tracing::info!(%addr, %admin_addr, "listening");
    crate::server::serve(listener, state, stop.clone()).await?;
    stop.cancel();
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}

/// One serving process per journal: a second would run the same deliveries twice.
fn lock_journal(db: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut lock_path = db.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the journal lock {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "the journal {} is in use by another hookline process (lock: {})",
            db.display(),
            lock_path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}

/// `hookline check`: print what would run, with secrets masked.
pub fn check(config: &Path, registry: &Registry) -> anyhow::Result<()> {
    let (file, runtime, warnings) = match load(config, registry) {
        Ok(loaded) => loaded,
        Err(d) => {
            eprintln!("{d}");
            bail!("{} problem(s) in {}", d.0.len(), config.display());
        }
    };
    let parsed = file.parse().map_err(|d| anyhow::anyhow!("{d}"))?;
    println!("{}: OK", file.path.display());
    println!(
        "listen {}  max_body {}",
        runtime.server.listen, runtime.server.max_body
    );
    println!(
        "journal {}  retain {}  admin {}{}",
        runtime.storage_path.display(),
        humantime::format_duration(runtime.storage.retain),
        runtime.admin.listen,
        if runtime.admin.token.is_some() {
            " (token ***)"
        } else {
            ""
        }
    );
    println!(
        "plugins {}  compiled cache {}",
        runtime.plugins_dir.display(),
        parsed.plugin_cache_dir().display()
    );
    for s in &parsed.sources {
        println!("source {}  POST {}  verify {:?}", s.name, s.path, s.verify);
    }
    for p in &parsed.pipelines {
        println!(
            "pipeline {}  source {}  events {}",
            p.name,
            p.source,
            p.events.join(", ")
        );
        for s in &p.stages {
            let wasm = match s.plugin.strip_prefix(crate::wasm::PREFIX) {
                Some(stem) => format!(
                    "  [{}: loaded and instantiated]",
                    runtime.plugins_dir.join(format!("{stem}.wasm")).display()
                ),
                None => String::new(),
            };
            println!("  {}. {} {} ({}){wasm}", s.index, s.kind, s.plugin, s.name);
        }
    }
    for w in warnings {
        println!("warning: {w}");
    }
    Ok(())
}
