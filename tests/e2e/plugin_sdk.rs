//! The plugin SDK outside the source tree (issue 20): `hookline plugin new` in a folder with
//! no checkout around it writes a project that builds with only the binary and a Rust
//! toolchain, and the component it builds runs in `hookline serve`.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// The checkout these tests run from: nothing in the new project may point into it.
fn checkout() -> String {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = core.parent().unwrap_or(core);
    root.canonicalize()
        .unwrap_or_else(|_| root.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

fn text_files(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            text_files(&path, out);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.push((path.display().to_string(), text));
        }
    }
}

#[tokio::test]
async fn a_scaffolded_plugin_builds_away_from_the_checkout_and_runs() {
    let tmp = tempfile::Builder::new()
        .prefix("hookline-plugin-")
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir");
    let checkout = checkout();
    assert!(
        !tmp.path().starts_with(&checkout),
        "the project must be outside the checkout"
    );
    let dir = tmp.path().to_str().expect("utf-8").to_string();
    let out = run_cli(
        &[
            "plugin",
            "new",
            "stamp",
            "--kind",
            "transform",
            "--dir",
            &dir,
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let project = tmp.path().join("stamp");
    let mut files = Vec::new();
    text_files(&project, &mut files);
    assert!(files.len() > 10, "the SDK is written beside the project");
    for (path, text) in &files {
        assert!(!text.contains(&checkout), "{path} points into the checkout");
    }

    // Its own target dir inside the temp dir; the registry cache ($CARGO_HOME) as usual.
    let target = tmp.path().join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = tokio::task::spawn_blocking({
        let (project, target) = (project.clone(), target.clone());
        move || {
            Command::new(cargo)
                .args(["build", "--target", "wasm32-wasip2", "--release"])
                .current_dir(&project)
                .env("CARGO_TARGET_DIR", &target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_BUILD_TARGET_DIR")
                .output()
                .expect("run cargo")
        }
    })
    .await
    .expect("join");
    assert!(
        build.status.success(),
        "the project builds: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::copy(
        target.join("wasm32-wasip2/release/stamp.wasm"),
        plugins.join("stamp.wasm"),
    )
    .expect("the component was built");
    std::fs::remove_dir_all(&target).expect("remove the build");

    let config = format!(
        "[plugins]\ndir = {:?}\n{}\n[[pipelines]]\nname = \"all\"\nsource = \"leadshark\"\nstages = [{{ transform = \"wasm:stamp\", field = \"stamped\" }}, {{ sink = \"file\", path = \"out.jsonl\" }}]\n",
        plugins.to_str().expect("utf-8"),
        leadshark_source()
    );
    let h = Hookline::start(&config);
    let checked = h.cli(&["check"]);
    assert!(checked.status.success(), "{checked:?}");
    let reply = post_signed(&h.url("/webhooks/leadshark"), &sample("new.like", 1)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    let lines = wait_for_lines(&h.path("out.jsonl"), 1).await;
    assert_eq!(lines[0]["data"]["stamped"], true, "{}", lines[0]);
}
