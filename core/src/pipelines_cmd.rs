//! `hookline pipelines`: list the paused pipelines, pause and resume one — straight on the
//! journal, like `hookline dlq`. A running service reads the change within a second: a
//! paused pipeline keeps accepting and journaling its events and delivers none until it is
//! resumed; the state survives restarts.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::config::ConfigFile;

#[derive(Debug, Args)]
pub struct PipelinesArgs {
    /// Config whose `[storage]` names the journal and whose `[[pipelines]]` are checked
    /// against the name.
    #[arg(
        long,
        short,
        default_value = "pipeline.toml",
        env = "HOOKLINE_CONFIG",
        global = true
    )]
    pub(crate) config: PathBuf,
    #[command(subcommand)]
    pub(crate) command: PipelinesCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PipelinesCommand {
    /// The config's pipelines and whether each is paused.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Hold a pipeline's deliveries: events are still accepted and journaled.
    Pause { name: String },
    /// Deliver a paused pipeline's events again, oldest first.
    Resume { name: String },
}

/// The pipeline names the config declares.
fn pipeline_names(config: &std::path::Path) -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Names {
        #[serde(default)]
        pipelines: Vec<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let file = ConfigFile::read(config).map_err(|d| anyhow::anyhow!("{d}"))?;
    let names: Names = toml::from_str(&file.text)
        .with_context(|| format!("cannot read the pipelines of {}", config.display()))?;
    Ok(names.pipelines.into_iter().map(|p| p.name).collect())
}

pub async fn run(args: PipelinesArgs) -> anyhow::Result<()> {
    let names = pipeline_names(&args.config)?;
    let journal = crate::dlq::open_journal(&args.config, None).await?;
    let paused = journal.paused().await?;
    match args.command {
        PipelinesCommand::List { json } => {
            if json {
                let items: Vec<serde_json::Value> = names
                    .iter()
                    .map(|n| serde_json::json!({ "name": n, "paused": paused.contains(n) }))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                for n in &names {
                    outln!(
                        "{n}  {}",
                        if paused.contains(n) {
                            "paused"
                        } else {
                            "running"
                        }
                    );
                }
            }
        }
        PipelinesCommand::Pause { name } | PipelinesCommand::Resume { name }
            if !names.contains(&name) =>
        {
            bail!(
                "no pipeline `{name}` in {} (pipelines: {})",
                args.config.display(),
                names.join(", ")
            );
        }
        PipelinesCommand::Pause { name } => {
            let changed = journal.set_paused(name.clone(), true).await?;
            outln!(
                "{}",
                if changed {
                    format!(
                        "paused `{name}`: its events are journaled and wait; `hookline pipelines resume {name}` delivers them"
                    )
                } else {
                    format!("`{name}` was already paused")
                }
            );
        }
        PipelinesCommand::Resume { name } => {
            let changed = journal.set_paused(name.clone(), false).await?;
            outln!(
                "{}",
                if changed {
                    format!("resumed `{name}`: its waiting events are delivered now")
                } else {
                    format!("`{name}` was not paused")
                }
            );
        }
    }
    Ok(())
}
