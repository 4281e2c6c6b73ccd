//! What ships beside the binary: the license files agree with the crates'
//! `license`, no placeholder metadata, the systemd unit passes
//! `systemd-analyze verify` without a single warning (skipped visibly where
//! systemd is absent), and the container image definition and its
//! configuration hold together. The image itself is built by
//! `tools/test.sh` where docker works.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn license_files_agree_with_the_crates_license() {
    let ws: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let pkg = ws["workspace"]["package"].as_table().unwrap();
    let license = pkg["license"].as_str().unwrap();
    // Each license of the expression has its full text at the root.
    for id in license.split(" OR ") {
        let (file, marks): (&str, &[&str]) = match id {
            "Apache-2.0" => (
                "LICENSE",
                &[
                    "Apache License",
                    "Version 2.0, January 2004",
                    "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
                    "9. Accepting Warranty or Additional Liability.",
                    "END OF TERMS AND CONDITIONS",
                ],
            ),
            "MIT" => (
                "LICENSE-MIT",
                &[
                    "Permission is hereby granted, free of charge",
                    "THE SOFTWARE IS PROVIDED \"AS IS\"",
                ],
            ),
            other => panic!("license {other} in Cargo.toml has no file here"),
        };
        let text = read(file);
        for m in marks {
            assert!(text.contains(m), "{file} lacks {m:?}");
        }
    }
    assert!(
        read("LICENSE").len() > 11_000,
        "LICENSE is not the full text"
    );
    // Every crate takes the workspace's license; no placeholder metadata.
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        let manifest = e.unwrap().path().join("Cargo.toml");
        let m: toml::Table = toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let p = m["package"].as_table().unwrap();
        let workspace = p
            .get("license")
            .and_then(|l| l.as_table())
            .and_then(|t| t.get("workspace"))
            .and_then(toml::Value::as_bool);
        assert_eq!(workspace, Some(true), "{}", manifest.display());
        assert!(!p.contains_key("repository"), "{}", manifest.display());
    }
    assert!(!pkg.contains_key("repository"));
    assert!(!read("Cargo.toml").contains("example.invalid"));
}

/// `systemd-analyze verify UNIT`: exit status and everything it printed.
fn verify(unit: &Path) -> (bool, String) {
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), said)
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = read("packaging/aorta-server.service");
    let exec = "ExecStart=/usr/local/bin/aorta server --config /etc/aorta/server.toml";
    assert!(unit.lines().any(|l| l == exec), "{unit}");
    for d in [
        "DynamicUser=yes",
        "StateDirectory=aorta",
        "ReadWritePaths=/var/lib/aorta",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|l| l == d), "the unit lacks {d}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP systemd unit check: no systemd-analyze on this machine");
        return;
    }
    // verify needs the ExecStart binary: the one under test stands in.
    let t = tempfile::tempdir().unwrap();
    let copy = t.path().join("aorta-server.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/aorta", common::AORTA)).unwrap();
    let (ok, said) = verify(&copy);
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    // The check can fail: a directive systemd does not take is reported.
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/aorta", common::AORTA)
            .replace("ProtectSystem=strict", "ProtectSystem=stricter"),
    )
    .unwrap();
    let (_, said) = verify(&copy);
    assert!(
        said.contains("ProtectSystem") || said.contains("protect system"),
        "{said}"
    );
}

#[test]
fn container_image_definition_holds_together() {
    let d = read("Dockerfile");
    let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    assert!(froms[0].ends_with(" AS build"));
    let user = d
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("no USER");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "{user}"
    );
    assert!(d.contains("VOLUME [\"/var/lib/aorta\"]"));
    assert!(d.contains("CMD [\"server\", \"--config\", \"/etc/aorta/server.toml\"]"));
    assert!(d.contains("cargo build --release --locked -p aorta-cli --bin aorta"));
    // Every file the image copies from the context exists, and the context
    // (.dockerignore) keeps them.
    let ignored = read(".dockerignore");
    for l in d
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = l.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(root().join(src).exists(), "{src} (in {l}) is missing");
            assert!(
                !ignored.lines().any(|i| i.trim() == *src),
                "{src} is excluded by .dockerignore"
            );
        }
    }
    // Its configuration is one the server accepts, with data in the volume.
    let cfg = aorta_server::http::ServerConfig::from_file(
        &root().join("packaging/container-server.toml"),
    )
    .unwrap();
    assert_eq!(cfg.data_dir, Path::new("/var/lib/aorta"));
    assert_eq!(cfg.listen.port(), 7443);
    assert_eq!(cfg.metrics_listen.map(|a| a.port()), Some(9464));
    assert!(d.contains("EXPOSE 7443 9464"));
}
