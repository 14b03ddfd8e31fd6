//! `hookline plugin new NAME --kind filter|transform|sink`: a plugin project that builds as
//! it stands (`cargo build --release` produces `target/wasm32-wasip2/release/<name>.wasm`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub(crate) command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a plugin project in `<dir>/<name>`.
    New {
        /// Plugin name: lower-case letters, digits and `-` (the `.wasm` is `<name>.wasm`).
        name: String,
        #[arg(long, value_enum)]
        kind: Kind,
        /// Folder to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path to the `hookline-plugin-sdk` crate (default: the SDK of the source tree this
        /// binary was built from, when it is there; else the published crate).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    Filter,
    Transform,
    Sink,
}

pub fn run(args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk,
        } => {
            let root = new(&name, kind, &dir, sdk.as_deref())?;
            outln!("created {} ({kind:?} plugin)", root.display());
            outln!("build:   cd {} && cargo build --release", root.display());
            outln!(
                "install: cp target/wasm32-wasip2/release/{}.wasm <plugins dir>/{name}.wasm",
                name.replace('-', "_")
            );
            Ok(())
        }
    }
}

/// Write the project; returns its folder.
pub(crate) fn new(
    name: &str,
    kind: Kind,
    dir: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "`{name}` is not a plugin name: use lower-case letters, digits and `-`, starting with a letter"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let sdk_dep = match sdk.map(Path::to_path_buf).or_else(source_tree_sdk) {
        Some(path) => {
            let path = std::path::absolute(&path)
                .with_context(|| format!("bad SDK path {}", path.display()))?;
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    };
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::create_dir_all(root.join(".cargo"))?;
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk_dep)),
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        ("src/lib.rs", lib_rs(kind)),
        (".gitignore", "/target\n".to_string()),
        ("README.md", readme(name, kind)),
    ];
    for (file, text) in files {
        let path = root.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(root)
}

/// `plugins/sdk` of the source tree this binary was built from, if it is still there.
fn source_tree_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

const CARGO_CONFIG: &str = "[build]\ntarget = \"wasm32-wasip2\"\n";

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
hookline-plugin-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
strip = "debuginfo"

# A stand-alone project, not part of an enclosing workspace.
[workspace]
"#
    )
}

fn lib_rs(kind: Kind) -> String {
    let (imports, body) = match kind {
        Kind::Filter => (
            "Config, Error, Event, Filter",
            r#"impl Filter for Plugin {
    fn new(config: Config) -> Result<Self, String> {
        Ok(Plugin(config.parse()?))
    }

    /// Keep events of the configured type.
    fn keep(&mut self, event: &Event) -> Result<bool, Error> {
        Ok(event.event_type == self.0.event_type)
    }
}

hookline_plugin_sdk::filter!(Plugin);"#,
        ),
        Kind::Transform => (
            "Config, Error, Event, Transform",
            r#"impl Transform for Plugin {
    fn new(config: Config) -> Result<Self, String> {
        Ok(Plugin(config.parse()?))
    }

    /// Mark the payload: `data.<field> = true`.
    fn apply(&mut self, mut event: Event) -> Result<Vec<Event>, Error> {
        let mut payload = event.json()?;
        if let Some(data) = payload.get_mut("data").and_then(|d| d.as_object_mut()) {
            data.insert(self.0.field.clone(), true.into());
        }
        event.set_json(&payload);
        Ok(vec![event])
    }
}

hookline_plugin_sdk::transform!(Plugin);"#,
        ),
        Kind::Sink => (
            "Config, Error, Event, Sink, http",
            r#"impl Sink for Plugin {
    fn new(config: Config) -> Result<Self, String> {
        Ok(Plugin(config.parse()?))
    }

    /// POST the payload to `url` (its host must be in the stage's `allowed_hosts`).
    fn deliver(&mut self, event: &Event) -> Result<(), Error> {
        let request = http::Request::post_json(&self.0.url, &event.json()?);
        http::send(&request)?.into_result()?;
        hookline_plugin_sdk::increment("delivered", 1);
        Ok(())
    }
}

hookline_plugin_sdk::sink!(Plugin);"#,
        ),
    };
    let settings = match kind {
        Kind::Filter => "    /// The event type to keep.\n    event_type: String,",
        Kind::Transform => "    /// Key under `data` set to `true`.\n    field: String,",
        Kind::Sink => "    /// Where to POST each payload.\n    url: String,",
    };
    format!(
        r#"//! A Hookline {kind} plugin. Build with `cargo build --release`.

use hookline_plugin_sdk::{{{imports}}};

/// The stage's table in `pipeline.toml` (unknown keys are refused at start-up).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {{
{settings}
}}

struct Plugin(Settings);

{body}
"#,
        kind = format!("{kind:?}").to_lowercase(),
    )
}

fn readme(name: &str, kind: Kind) -> String {
    let kind = format!("{kind:?}").to_lowercase();
    let key = match kind.as_str() {
        "filter" => "event_type = \"email.captured\"",
        "transform" => "field = \"seen\"",
        _ => "url = \"https://example.com/hook\", allowed_hosts = [\"example.com\"]",
    };
    format!(
        r#"# {name}

A Hookline {kind} plugin (WebAssembly component, `wasm32-wasip2`).

```sh
rustup target add wasm32-wasip2
cargo build --release
cp target/wasm32-wasip2/release/{file}.wasm /path/to/hookline/plugins/{name}.wasm
```

Then, in `pipeline.toml`:

```toml
{{ {kind} = "wasm:{name}", {key} }}
```

See Hookline's `docs/plugins.md` for the SDK, the sandbox limits and the host imports.
"#,
        file = name.replace('-', "_"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_project_and_refuses_bad_names_and_existing_folders() {
        let dir = tempfile::tempdir().expect("dir");
        let root = new("my-filter", Kind::Filter, dir.path(), Some(dir.path())).expect("created");
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("hookline_plugin_sdk::filter!(Plugin);"));
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("name = \"my-filter\""));
        assert!(manifest.contains("hookline-plugin-sdk = { path = "));
        assert!(
            new("my-filter", Kind::Filter, dir.path(), None).is_err(),
            "exists"
        );
        assert!(new("Bad_Name", Kind::Sink, dir.path(), None).is_err());
    }
}
