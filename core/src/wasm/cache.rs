//! Compile once: compiled components are cached on disk, keyed by the SHA-256 of the
//! `.wasm` file, whether it was compiled with fuel metering, and the engine's compatibility
//! hash (wasmtime version and every setting that changes generated code), so a restart or reload loads native code in a fraction of a
//! millisecond instead of compiling for tens of milliseconds.
//!
//! Only files this module wrote are ever deserialized: the name is derived from the hash of
//! the `.wasm` being loaded, in the cache folder, never from the plugins folder (a `.cwasm`
//! dropped there is ignored). The cache folder must be writable by this service only: what
//! it holds is native code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::component::Component;

use super::engine::{Metering, engine};

static COMPILES: AtomicU64 = AtomicU64::new(0);

/// How many components this process compiled (cache misses). Tests use it to prove a
/// second load came from the cache.
#[cfg(test)]
pub(crate) fn compiles() -> u64 {
    COMPILES.load(Ordering::Relaxed)
}

/// The cache file for these bytes compiled for `metering`. The engine hash already differs
/// between the two engines; the suffix makes the flavour plain to whoever lists the folder.
pub(crate) fn cache_path(cache_dir: &Path, bytes: &[u8], metering: Metering) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine(metering)
        .precompile_compatibility_hash()
        .hash(&mut h);
    let digest = hex::encode(Sha256::digest(bytes));
    let flavour = match metering {
        Metering::Off => "",
        Metering::Fuel => "-fuel",
    };
    cache_dir.join(format!("{digest}-{:016x}{flavour}.cwasm", h.finish()))
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Compiled,
    Cached,
}

/// The component for `bytes` and `metering`: from the cache when it holds it, else compiled
/// (and cached).
pub(crate) fn load(
    cache_dir: &Path,
    bytes: &[u8],
    metering: Metering,
) -> Result<(Component, Origin), String> {
    let path = cache_path(cache_dir, bytes, metering);
    if path.is_file() {
        match deserialize(&path, metering) {
            Ok(component) => {
                debug!(path = %path.display(), "compiled plugin loaded from the cache");
                return Ok((component, Origin::Cached));
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "unusable cache entry; compiling again")
            }
        }
    }
    COMPILES.fetch_add(1, Ordering::Relaxed);
    let component = Component::new(engine(metering), bytes).map_err(|e| format!("{e:#}"))?;
    if let Err(e) = store(&path, &component) {
        warn!(path = %path.display(), error = %e, "could not cache the compiled plugin");
    }
    Ok((component, Origin::Compiled))
}

fn store(path: &Path, component: &Component) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| e.to_string())?;
    let dir = path.parent().ok_or("cache path has no folder")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

// Deserializing runs native code that wasmtime compiled; it is only given files this module
// wrote under a name derived from the source's hash (see the module docs).
#[allow(unsafe_code)]
fn deserialize(path: &Path, metering: Metering) -> Result<Component, String> {
    // SAFETY: `path` is a cache entry written by `store` from `Component::serialize` of this
    // engine's compilation; wasmtime checks the header and the compatibility hash (which
    // covers fuel metering) and refuses anything else.
    unsafe { Component::deserialize_file(engine(metering), path) }.map_err(|e| e.to_string())
}
