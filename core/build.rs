//! Embeds the WASM plugin SDK in the binary, for `hookline plugin new` (core/src/scaffold.rs):
//! the sources of `plugins/api`, `plugins/leadshark`, `plugins/sdk` and `plugins/sdk/macros`, their manifests
//! made stand-alone (what they inherit from the workspace written out, paths between them
//! kept relative), and `plugins/wasm/Cargo.lock` as the new project's starting lock file
//! (versions known to build). A project scaffolded anywhere then builds with only this
//! binary and a Rust toolchain: no checkout, no crate published.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

/// The SDK's crates, by folder under `plugins/`.
const CRATES: &[&str] = &["api", "leadshark", "sdk", "sdk/macros"];
/// What is embedded of each crate besides its manifest (a nested crate is listed apart).
const PARTS: &[&str] = &["src", "wit", "README.md"];

fn main() {
    let core = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = core.join("..");
    let plugins = root.join("plugins");
    let workspace = read_table(&root.join("Cargo.toml"));
    println!("cargo:rerun-if-changed=../Cargo.toml");

    let mut out = String::from(
        "/// `(path under the SDK folder, contents)`.\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for krate in CRATES {
        let dir = plugins.join(krate);
        let manifest = dir.join("Cargo.toml");
        println!("cargo:rerun-if-changed={}", manifest.display());
        let text = standalone(
            &read_table(&manifest),
            &workspace,
            &format!("plugins/{krate}"),
        );
        writeln!(
            out,
            "    ({:?}, {:?}),",
            format!("{krate}/Cargo.toml"),
            text
        )
        .expect("write");
        for part in PARTS {
            let path = dir.join(part);
            println!("cargo:rerun-if-changed={}", path.display());
            for file in files_under(&path) {
                let rel = file.strip_prefix(&dir).expect("under the crate");
                let name = format!("{krate}/{}", rel.to_string_lossy().replace('\\', "/"));
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                writeln!(out, "    ({name:?}, {text:?}),").expect("write");
            }
        }
    }
    out.push_str("];\n");
    let lock = plugins.join("wasm/Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let lock = std::fs::read_to_string(&lock).unwrap_or_default();
    writeln!(out, "/// A lock file with versions the SDK is known to build with.\npub const LOCK: &str = {lock:?};").expect("write");

    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("sdk_files.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

fn read_table(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files under `path` (itself if a file), sorted; nothing if it does not exist. Symlinks
/// are followed: the file's contents are embedded.
fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .flat_map(|e| files_under(&e.path()))
        .collect();
    files.sort();
    files
}

/// A member's manifest with `x.workspace = true` replaced by the workspace's value, path
/// dependencies made relative to the member, and `[lints]` (the workspace's) dropped.
fn standalone(member: &toml::Table, workspace: &toml::Table, member_dir: &str) -> String {
    let ws = workspace
        .get("workspace")
        .and_then(|w| w.as_table())
        .cloned()
        .unwrap_or_default();
    let empty = toml::Table::new();
    let ws_package = ws
        .get("package")
        .and_then(|p| p.as_table())
        .unwrap_or(&empty);
    let ws_deps = ws
        .get("dependencies")
        .and_then(|p| p.as_table())
        .unwrap_or(&empty);
    let mut member = member.clone();
    member.remove("lints");
    if let Some(toml::Value::Table(package)) = member.get_mut("package") {
        for (key, value) in package.iter_mut() {
            if inherits(value)
                && let Some(v) = ws_package.get(key)
            {
                *value = v.clone();
            }
        }
    }
    for section in ["dependencies", "build-dependencies", "dev-dependencies"] {
        let Some(toml::Value::Table(deps)) = member.get_mut(section) else {
            continue;
        };
        for (name, value) in deps.iter_mut() {
            if !inherits(value) {
                continue;
            }
            let mut dep = match ws_deps.get(name) {
                Some(toml::Value::String(version)) => {
                    let mut t = toml::Table::new();
                    t.insert("version".into(), version.clone().into());
                    t
                }
                Some(toml::Value::Table(t)) => t.clone(),
                _ => panic!("{member_dir}: `{name}` is not in [workspace.dependencies]"),
            };
            if let Some(toml::Value::String(path)) = dep.get("path") {
                dep.insert("path".into(), relative(path, member_dir).into());
            }
            if let toml::Value::Table(own) = value {
                for (key, v) in own.iter() {
                    match (key.as_str(), dep.get_mut("features")) {
                        ("workspace", _) => {}
                        ("features", Some(toml::Value::Array(features))) => {
                            if let toml::Value::Array(more) = v {
                                features.extend(more.iter().cloned());
                            }
                        }
                        _ => {
                            dep.insert(key.clone(), v.clone());
                        }
                    }
                }
            }
            *value = toml::Value::Table(dep);
        }
    }
    format!(
        "# Written by `hookline plugin new` from the SDK embedded in hookline {}.\n{}",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        toml::to_string(&member).expect("a manifest serialises")
    )
}

fn inherits(value: &toml::Value) -> bool {
    value
        .as_table()
        .and_then(|t| t.get("workspace"))
        .and_then(|w| w.as_bool())
        == Some(true)
}

/// `to` (relative to the workspace root) as seen from `from` (also relative to it).
fn relative(to: &str, from: &str) -> String {
    let parts = |p: &str| -> Vec<String> {
        Path::new(p)
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    let (to, from) = (parts(to), parts(from));
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut rel: Vec<String> = vec!["..".to_string(); from.len() - common];
    rel.extend(to[common..].iter().cloned());
    rel.join("/")
}
