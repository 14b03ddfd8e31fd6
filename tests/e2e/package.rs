//! The Debian package (issue 20), built by `cargo deb` from the debug binary these tests
//! already have (`--no-build`), then read with `dpkg-deb` like an installer would: the
//! binary, the hardened unit, the `hookline` user, the conffiles, /var/lib/hookline, and a
//! packaged config that the packaged binary's `check` accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed? .ci/run installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_debian_package_installs_a_hardened_service_and_a_config_that_checks() {
    // The binary the tests run: <target>/<profile dir>/hookline.
    let bin = Path::new(env!("CARGO_BIN_EXE_hookline"));
    let profile_dir = bin.parent().expect("profile dir");
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("unexpected binary path {}", bin.display()),
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let deb = tmp.path().join("hookline.deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args([
            "deb",
            "-p",
            "hookline",
            "--no-build",
            // A stripped copy (the binary itself is left alone): compressing the debug
            // binary's half a gigabyte takes minutes, a stripped one seconds.
            "--strip",
            "--fast",
        ])
        .args(["--profile", profile])
        // cargo-deb finds the binary where `cargo metadata` says the target dir is.
        .env("CARGO_TARGET_DIR", target_dir)
        .arg("--output")
        .arg(&deb)
        .current_dir(workspace()));

    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/hookline",
        "./etc/hookline/pipeline.toml",
        "./etc/hookline/env",
        "/systemd/system/hookline.service",
        "./usr/share/doc/hookline/operations.md",
    ] {
        assert!(contents.contains(path), "{path} in:\n{contents}");
    }
    assert!(
        contents
            .lines()
            .any(|l| l.contains("./etc/hookline/env") && l.starts_with("-rw-r-----")),
        "the secret's file is not world-readable:\n{contents}"
    );
    let fields = run(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(fields.contains("Package: hookline"), "{fields}");
    assert!(fields.contains("adduser"), "Depends on adduser: {fields}");

    let control = tmp.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    for file in ["/etc/hookline/pipeline.toml", "/etc/hookline/env"] {
        assert!(conffiles.lines().any(|l| l == file), "{file}: {conffiles}");
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(
        postinst.contains("install -d -o hookline -g hookline -m 0750 /var/lib/hookline"),
        "{postinst}"
    );
    assert!(!postinst.contains("#DEBHELPER#"), "filled in by cargo-deb");

    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let unit = ["lib", "usr/lib"]
        .iter()
        .map(|d| root.join(d).join("systemd/system/hookline.service"))
        .find(|p| p.exists())
        .expect("the unit is installed");
    let unit = std::fs::read_to_string(unit).expect("unit");
    for line in [
        "ExecStart=/usr/bin/hookline ",
        "User=hookline",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/hookline",
        "StateDirectory=hookline",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(line), "{line:?} in the unit");
    }
    let config = root.join("etc/hookline/pipeline.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("path = \"/var/lib/hookline/hookline.db\""));
    let out = Command::new(root.join("usr/bin/hookline"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .env("LEADSHARK_SECRET", "a-secret-for-the-check")
        .output()
        .expect("run the packaged binary");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the secret, the packaged config refuses to start rather than use a default.
    let out = Command::new(root.join("usr/bin/hookline"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .env_remove("LEADSHARK_SECRET")
        .output()
        .expect("run the packaged binary");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LEADSHARK_SECRET"));
}

/// The packaged unit is the documented example but for the binary's path.
#[test]
fn the_packaged_unit_is_the_example_unit() {
    let read = |p: &str| std::fs::read_to_string(workspace().join(p)).expect(p);
    let from_unit = |text: &str| -> String {
        let start = text.find("[Unit]").expect("[Unit]");
        text[start..].replace("/usr/local/bin/hookline", "/usr/bin/hookline")
    };
    assert_eq!(
        from_unit(&read("examples/systemd/hookline.service")),
        from_unit(&read("core/debian/hookline.service")),
        "keep core/debian/hookline.service in step with the example"
    );
}
