//! The command line an admin uses: check-config and token.

use std::process::Command;

fn scimd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scimd"))
}

#[test]
fn check_config_accepts_the_example_and_names_the_bad_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let out = scimd()
        .args(["check-config", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 tenant"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let original = std::fs::read_to_string(example).unwrap();
    for (from, to, needle) in [
        (
            "max_results = 1000",
            "max_results = \"lots\"",
            "server.max_results",
        ),
        (
            "max_results = 1000",
            "max_results = 1000\ncolour = 1",
            "colour",
        ),
        (
            "{ name = \"demo\", sha256 = \"",
            "{ name = \"demo\", sha256 = \"00",
            "tenants.demo.tokens[0].sha256",
        ),
        (
            "self_signed = true",
            "cert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"",
            "tls.cert: cannot read /nonexistent/cert.pem",
        ),
    ] {
        std::fs::write(&bad, original.replace(from, to)).unwrap();
        let out = scimd()
            .args(["check-config", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{needle}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle} not in {err}");
    }

    let out = scimd()
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn token_prints_a_token_and_the_matching_config_line() {
    let out = scimd().args(["token", "--name", "okta"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let token = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("scimd_")
                .map(|t| format!("scimd_{t}"))
        })
        .unwrap();
    let hash = scimd::auth::hex(&scimd::auth::digest(&token));
    assert!(
        text.contains(&format!("{{ name = \"okta\", sha256 = \"{hash}\" }}")),
        "{text}"
    );
    let mut child = scimd()
        .args(["token", "--hash-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_add_prints_values_that_work_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scimd.toml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"),
        &path,
    )
    .unwrap();
    let out = scimd()
        .args(["tenant", "add", "acme", "--token-name", "okta", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("Base URL:     https://127.0.0.1:8443/tenants/acme/scim/v2"),
        "{text}"
    );
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Bearer token: "))
        .unwrap()
        .to_string();
    // A second token with read scope for the application.
    let out = scimd()
        .args([
            "token", "--tenant", "acme", "--name", "app", "--scope", "read", "--config",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("scimd_")
                .map(|t| format!("scimd_{t}"))
        })
        .unwrap();

    let mut cfg = scimd::config::Config::load(&path).unwrap();
    cfg.server.listen = "127.0.0.1:0".into();
    let s = crate::harness::Srv::start_config(dir, cfg).await;
    let r = s
        .call(
            reqwest::Method::GET,
            "/tenants/acme/scim/v2/Users",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .call(
            reqwest::Method::POST,
            "/tenants/acme/scim/v2/Users",
            Some(&reader),
            Some(serde_json::json!({"userName": "x"})),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .call(
            reqwest::Method::GET,
            "/tenants/acme/scim/v2/Users",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}
