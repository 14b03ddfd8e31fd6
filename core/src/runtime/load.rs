//! Reading `pipeline.toml` and building it: what `serve`, `check`, `test` and a reload share.

use std::path::Path;

use hookline_plugin_api::Registry;

use super::{BuildOptions, Runtime};
use crate::config::{ConfigFile, Diagnostics};

/// A built config.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) file: ConfigFile,
    pub(crate) runtime: Runtime,
    /// Secrets that come from defaults written in the file.
    pub(crate) warnings: Vec<String>,
    /// What works but is risky to change: stages named by their order
    /// ([`Config::unnamed_repeats`](crate::config::Config::unnamed_repeats)).
    pub(crate) advice: Vec<String>,
    /// A dry run's temporary WASM cache; removed when this is dropped.
    _scratch: Option<tempfile::TempDir>,
}

/// Load and build a config with the built-in plugins, as `serve` does.
pub(crate) fn load(path: &Path, registry: &Registry) -> Result<Loaded, Diagnostics> {
    load_with(path, registry, Mode::Serve)
}

/// What a config is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `serve`: build for real.
    Serve,
    /// `check`: a dry run, no side effects — sinks create no files and WASM plugins are
    /// compiled into a temporary cache.
    Check,
    /// `test`: a dry run that needs no production secret (see
    /// [`ConfigFile::parse_for_tests`]).
    Test,
}

/// Load and build a config.
pub(crate) fn load_with(
    path: &Path,
    registry: &Registry,
    mode: Mode,
) -> Result<Loaded, Diagnostics> {
    let file = ConfigFile::read(path)?;
    let dry_run = mode != Mode::Serve;
    let scratch = match dry_run {
        true => Some(tempfile::tempdir().map_err(|e| {
            Diagnostics::single(path, format!("cannot create a temporary folder: {e}"))
        })?),
        false => None,
    };
    let options = BuildOptions {
        dry_run,
        cache_dir: scratch.as_ref().map(|d| d.path().to_path_buf()),
    };
    let (runtime, warnings, advice) = {
        let config = match mode {
            Mode::Test => file.parse_for_tests()?,
            Mode::Serve | Mode::Check => file.parse()?,
        };
        let runtime = Runtime::build_with(&config, registry, &options)?;
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
        (runtime, warnings, config.unnamed_repeats())
    };
    Ok(Loaded {
        file,
        runtime,
        warnings,
        advice,
        _scratch: scratch,
    })
}
