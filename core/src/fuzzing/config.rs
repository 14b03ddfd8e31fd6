//! `pipeline.toml` text through what `hookline check` does: parse, interpolate `${VAR}`
//! (with a fixed environment), check, and build every verifier and stage dry (CEL,
//! templates, globs, HTTP sinks). It never panics or hangs, and every problem comes back as
//! diagnostics that print one per line, without raw control characters.
//!
//! Nothing is started and nothing is written. The file sits in a scratch folder made once;
//! the plugins folder is moved into it (empty, so no WASM plugin is compiled); the `file`
//! and `sqlite` sinks are left out of the registry, because even dry they look at whatever
//! path the text names.

use std::path::PathBuf;
use std::sync::OnceLock;

use hookline_plugin_api::{Registry, StageKind};

use crate::config::{ConfigFile, Diagnostics, expand};
use crate::runtime::{BuildOptions, Runtime};

pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((expanded, _)) = expand(text, &env) {
        assert!(
            text.contains('$') || expanded == text,
            "expanded without a `$`"
        );
    }
    let file = ConfigFile {
        path: scratch().join("pipeline.toml"),
        text: text.to_string(),
    };
    let config = match file.parse_with_env(&env) {
        Ok(config) => config,
        Err(problems) => return check(&problems),
    };
    for source in &config.sources {
        let described = source.verify.describe();
        assert!(!described.contains("fuzz-secret-value"), "{described}");
    }
    let mut config = config;
    config.plugins.dir = scratch().join("plugins");
    let options = BuildOptions {
        dry_run: true,
        cache_dir: Some(scratch().join("cache")),
    };
    if let Err(problems) = Runtime::build_with(&config, &registry(), &options) {
        check(&problems);
    }
}

/// The environment `${VAR}` sees.
fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("fuzz-secret-value".into()),
        "WHSEC" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        "EMPTY" => Some(String::new()),
        "NEWLINE" => Some("a\nb".into()),
        "PORT" => Some("8080".into()),
        _ => None,
    }
}

fn check(problems: &Diagnostics) {
    assert!(!problems.0.is_empty(), "an error without a problem");
    for d in &problems.0 {
        assert!(d.line > 0 || d.column == 0, "column without a line: {d:?}");
        assert!(!d.message.is_empty(), "a problem without a message");
    }
    let text = problems.to_string();
    let lines = text.split('\n').count();
    assert_eq!(
        lines,
        problems.0.len(),
        "not one line per problem: {text:?}"
    );
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a raw control character in: {text:?}"
    );
}

/// A folder for the file's path (relative paths resolve into it), made once per process.
fn scratch() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("hookline-fuzz-")
            .tempdir()
            .expect("a temporary folder")
    })
    .path()
    .to_path_buf()
}

/// The built-in plugins without those that touch the file system.
fn registry() -> Registry {
    let all = hookline_builtin::registry();
    let mut sandbox = Registry::new();
    for name in all.names(StageKind::Filter) {
        let f = all.get_filter(name).expect("listed").clone();
        sandbox.filter(name, move |config, ctx| f(config, ctx));
    }
    for name in all.names(StageKind::Transform) {
        let f = all.get_transform(name).expect("listed").clone();
        sandbox.transform(name, move |config, ctx| f(config, ctx));
    }
    for name in all.names(StageKind::Sink) {
        if name == "file" || name == "sqlite" {
            continue;
        }
        let f = all.get_sink(name).expect("listed").clone();
        sandbox.sink(name, move |config, ctx| f(config, ctx));
    }
    sandbox
}
