//! Live reload: on SIGHUP, when `pipeline.toml` changes, or on `POST /api/v1/reload`, the
//! whole config is loaded and built again — every verifier, plugin, expression and
//! template — and only then swapped in, atomically. A config that fails keeps the running
//! one, logs every problem, and counts a failed reload. Requests and pipeline runs in flight
//! finish on the runtime they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hookline_plugin_api::Registry;
use notify::Watcher;
use tracing::{error, info, warn};

use crate::config::Diagnostics;
use crate::metrics;
use crate::runtime::Runtime;

#[derive(Debug)]
pub(crate) struct Reloader {
    config: PathBuf,
    registry: Registry,
    runtime: Arc<ArcSwap<Runtime>>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        config: &Path,
        registry: Registry,
        runtime: Arc<ArcSwap<Runtime>>,
    ) -> Arc<Self> {
        Arc::new(Reloader {
            config: config.to_path_buf(),
            registry,
            runtime,
            busy: tokio::sync::Mutex::new(()),
        })
    }

    /// Load, build and swap. `trigger` says why, for the log.
    pub(crate) async fn reload(&self, trigger: &str) -> Result<(), Diagnostics> {
        let _one = self.busy.lock().await;
        let (path, registry) = (self.config.clone(), self.registry.clone());
        let loaded =
            tokio::task::spawn_blocking(move || crate::runtime::load::load(&path, &registry))
                .await
                .unwrap_or_else(|e| {
                    Err(Diagnostics::single(
                        &self.config,
                        format!("reload task failed: {e}"),
                    ))
                });
        match loaded {
            Ok(loaded) => {
                for w in loaded.warnings.iter().chain(&loaded.advice) {
                    warn!("{w}");
                }
                let new = loaded.runtime;
                let old = self.runtime.load();
                // The admin socket stays where it was bound; a token can only go if that
                // is loopback, or the API would be open to the network.
                if new.admin.token.is_none()
                    && let Ok(bound) = old.admin.listen.parse::<std::net::SocketAddr>()
                    && !bound.ip().is_loopback()
                {
                    metrics::config_reload(false);
                    let d = Diagnostics::single(
                        &self.config,
                        format!(
                            "[admin] token: the admin API is bound to {bound}, which is not loopback, and stays there until a restart; it cannot run without a token. Keep the token, or restart with `[admin] listen` on 127.0.0.1"
                        ),
                    );
                    error!(
                        trigger,
                        "reload refused; the running configuration stays:\n{d}"
                    );
                    return Err(d);
                }
                for key in restart_only_changes(&old, &new) {
                    warn!(
                        key,
                        "this setting changed but takes effect only after a restart"
                    );
                }
                let (sources, pipelines) = (new.sources.len(), new.pipelines.len());
                self.runtime.store(Arc::new(new));
                metrics::config_reload(true);
                info!(trigger, sources, pipelines, "configuration reloaded");
                Ok(())
            }
            Err(d) => {
                metrics::config_reload(false);
                error!(
                    trigger,
                    problems = d.0.len(),
                    "reload failed; the running configuration stays:\n{d}"
                );
                Err(d)
            }
        }
    }

    /// Reload on SIGHUP until the process ends.
    pub(crate) fn on_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            let this = self.clone();
            tokio::spawn(async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    warn!("cannot listen for SIGHUP; reload with POST /api/v1/reload instead");
                    return;
                };
                while hup.recv().await.is_some() {
                    let _ = this.reload("SIGHUP").await;
                }
            });
        }
    }

    /// Reload when the config file changes (editors that write a new file and rename it
    /// over the old one included: the directory is watched), or when a `.wasm` file in the
    /// plugins folder appears, changes or goes. Returns the watcher, which must be kept
    /// alive.
    pub(crate) fn watch(self: &Arc<Self>) -> Option<notify::RecommendedWatcher> {
        let file_name = self.config.file_name()?.to_os_string();
        let dir = match self.config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let plugins_dir = self.runtime.load().plugins_dir.clone();
        let plugins = plugins_dir
            .canonicalize()
            .unwrap_or_else(|_| plugins_dir.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                let ours = event.paths.iter().any(|p| {
                    p.file_name() == Some(file_name.as_os_str())
                        || (p.extension().is_some_and(|e| e == "wasm")
                            && p.parent().is_some_and(|d| d == plugins || d == plugins_dir))
                });
                if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|e| warn!(error = %e, "cannot watch the config file; reload with SIGHUP instead"))
        .ok()?;
        if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; reload with SIGHUP instead");
            return None;
        }
        let plugins_dir = self.runtime.load().plugins_dir.clone();
        if plugins_dir.is_dir()
            && let Err(e) = watcher.watch(&plugins_dir, notify::RecursiveMode::NonRecursive)
        {
            warn!(error = %e, dir = %plugins_dir.display(), "cannot watch the plugins folder; reload with SIGHUP instead");
        }
        let this = self.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a burst of writes (a plugin being copied in) settle into one reload.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while rx.try_recv().is_ok() {}
                let _ = this.reload("file change").await;
            }
        });
        Some(watcher)
    }
}

/// Settings read once at start-up.
fn restart_only_changes(old: &Runtime, new: &Runtime) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.server.listen != new.server.listen {
        changed.push("server.listen");
    }
    let (o, n) = (&old.server, &new.server);
    if (
        o.header_timeout,
        o.idle_timeout,
        o.max_connections,
        o.max_buffered,
        o.http2,
    ) != (
        n.header_timeout,
        n.idle_timeout,
        n.max_connections,
        n.max_buffered,
        n.http2,
    ) {
        changed.push("server (header_timeout, idle_timeout, max_connections, max_buffered, http2)");
    }
    if old.admin.listen != new.admin.listen {
        changed.push("admin.listen");
    }
    if old.storage_path != new.storage_path {
        changed.push("storage.path");
    }
    if old.storage.backend != new.storage.backend || old.storage.nats != new.storage.nats {
        changed.push("storage.nats");
    }
    if old.storage.concurrency != new.storage.concurrency {
        changed.push("storage.concurrency");
    }
    changed
}
