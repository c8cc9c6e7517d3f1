//! The systemd unit and the Debian package. Tools that are missing on a machine make the
//! check say so and skip; CI installs them (see .ci/run).

use std::process::Command;

const UNIT: &str = include_str!("../../packaging/debian/scimd.service");

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn systemd_unit_verifies_and_is_rated_ok_or_better() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    for needed in [
        "Type=notify",
        // A reload of a file the daemon would refuse fails `systemctl reload`.
        "ExecReload=/usr/bin/scimd check-config --config /etc/scimd/scimd.toml\nExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "StartLimitBurst=5",
        "User=scimd",
        "StateDirectory=scimd",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=",
    ] {
        assert!(UNIT.contains(needed), "unit lacks {needed}");
    }
    // A failing ExecStartPre is not the main process's exit: RestartPreventExitStatus would
    // not hold, and a broken file would be retried every RestartSec.
    assert!(
        !UNIT.lines().any(|l| l.starts_with("ExecStartPre=")),
        "serve checks the file itself"
    );
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("scimd.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/bin/scimd", env!("CARGO_BIN_EXE_scimd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-analyze verify: {text}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}"));
    let score: f64 = line
        .split("scimd.service: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(score <= 4.0, "exposure {score} is worse than OK: {line}");
}

#[test]
fn debian_package_has_binary_unit_config_template_and_scripts() {
    let Ok(deb) = std::env::var("DEB_UNDER_TEST") else {
        eprintln!("SKIPPED: set DEB_UNDER_TEST to a package built by `cargo deb` (.ci/run does)");
        return;
    };
    let contents = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/scimd",
        "./usr/lib/systemd/system/scimd.service",
        "./usr/share/scimd/scimd.toml",
        "./usr/share/doc/scimd/README.md",
        // Laid out as in the repository, so README's links work where it is installed.
        "./usr/share/doc/scimd/docs/operations.md",
        "./usr/share/doc/scimd/docs/performance.md",
        "./usr/share/doc/scimd/docs/hardening.md",
        "./usr/share/doc/scimd/docs/idp/README.md",
        "./usr/share/doc/scimd/docs/idp/okta.md",
        "./usr/share/doc/scimd/docs/idp/entra.md",
        "./usr/share/man/man1/scimd.1",
        // The pages scimd(1) refers to.
        "./usr/share/man/man1/scimd-serve.1",
        "./usr/share/man/man1/scimd-token-remove.1",
        "./usr/share/bash-completion/completions/scimd",
        "./usr/share/zsh/vendor-completions/_scimd",
    ] {
        assert!(
            list.contains(path),
            "{path} missing from the package:\n{list}"
        );
    }
    let ctl = tempfile::tempdir().unwrap();
    assert!(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(ctl.path())
            .status()
            .unwrap()
            .success()
    );
    // No conffile: `scimd tenant add` edits the configuration, and dpkg would stop every
    // upgrade at a prompt over it. postinst makes it from the template once; purge removes it.
    assert!(!list.contains("./etc/scimd/scimd.toml"), "{list}");
    let conffiles = std::fs::read_to_string(ctl.path().join("conffiles")).unwrap_or_default();
    assert!(!conffiles.contains("/etc/scimd/scimd.toml"), "{conffiles}");
    let postinst = std::fs::read_to_string(ctl.path().join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("/var/lib/scimd"));
    assert!(
        postinst.contains("if [ ! -e /etc/scimd/scimd.toml ]")
            && postinst.contains("cp /usr/share/scimd/scimd.toml /etc/scimd/scimd.toml")
    );
    let postrm = std::fs::read_to_string(ctl.path().join("postrm")).unwrap();
    assert!(postrm.contains("\"purge\"") && postrm.contains("rm -f /etc/scimd/scimd.toml"));
    assert!(postinst.contains("Next steps") && postinst.contains("scimd tenant add"));
    let control = std::fs::read_to_string(ctl.path().join("control")).unwrap();
    assert!(control.contains("Package: scimd") && control.contains("adduser"));
    // The packaged config is the production one: real certificate paths, no demo tenant.
    let conf =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/scimd.toml"))
            .unwrap();
    assert!(
        conf.contains("cert = \"/etc/scimd/tls/fullchain.pem\"")
            && !conf.contains("[tenants.demo]")
    );
}
