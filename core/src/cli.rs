//! The `hookline` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand, ValueEnum};
use hookline_plugin_api::Registry;

use crate::config::{ConfigFile, Diagnostics};
use crate::ingest::AppState;
use crate::runtime::{Dispatcher, Runtime};

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
    let listen = runtime.server.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    for source in runtime.sources.values() {
        tracing::info!(source = %source.name, path = %source.path, pipelines = source.pipelines.len(), "serving source");
    }
    let state = Arc::new(AppState {
        runtime: ArcSwap::from_pointee(runtime),
        dispatcher: Dispatcher::new(10_000),
    });
    // Machine-readable: tests and scripts wait for this line.
    println!("hookline listening on http://{addr}");
    tracing::info!(%addr, "listening");
    crate::server::serve(listener, state, crate::server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
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
            println!("  {}. {} {} ({})", s.index, s.kind, s.plugin, s.name);
        }
    }
    for w in warnings {
        println!("warning: {w}");
    }
    Ok(())
}
