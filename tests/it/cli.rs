//! The command line an admin uses: check-config, token, tenant add and the help texts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::process::{Proc, kill};

fn scimd() -> Command {
    crate::process::scimd_bin()
}

/// `scimd ARGS --config FILE`, which must succeed; its standard output.
fn run_ok(args: &[&str], config: &Path) -> String {
    let out = run(args, config);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn run(args: &[&str], config: &Path) -> Output {
    scimd()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// `dir/scimd.toml` with no tenant yet, its state under `dir/state`.
fn tenantless_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("scimd.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n[storage]\ndir = \"state\"\n",
    )
    .unwrap();
    path
}

/// The value printed after `prefix` on one of the lines of `text`.
fn after(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        .to_string()
}

#[test]
fn the_version_names_the_commit_and_the_database_layout_it_reads() {
    let out = scimd().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let want = format!("scimd {} (commit ", env!("CARGO_PKG_VERSION"));
    let layout = format!(
        ", database layout {})",
        scimd::store::tables::SCHEMA_VERSION
    );
    assert!(
        text.starts_with(&want) && text.trim_end().ends_with(&layout),
        "{text}"
    );
}

#[test]
fn output_that_cannot_be_written_ends_the_command_without_a_panic() {
    // A full disk: a message and status 1.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = scimd().arg("token").stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write the output") && !err.contains("panicked"),
        "{err}"
    );
    // A reader that went away (`| head`): quietly, with the shell's closed-pipe status.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = scimd().arg("token").stdout(writer).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(err.is_empty(), "{err}");
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
    // `status` without its file cannot tell: LSB's 4, for monitors, not 2.
    let out = scimd()
        .args(["status", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("(no file there: give the configuration file with --config FILE"));
    assert!(
        err.contains("cannot tell whether scimd runs (exit 4"),
        "{err}"
    );
    // So do the commands that check or edit the file.
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["check-config", "--config", missing],
        vec!["tenant", "add", "acme", "--config", missing],
        vec!["tenant", "remove", "acme", "--config", missing],
        vec![
            "token", "--tenant", "acme", "--name", "x", "--config", missing,
        ],
        vec![
            "token", "remove", "--tenant", "acme", "--name", "x", "--config", missing,
        ],
        // The first command a build from source runs.
        vec!["serve", "--config", missing],
    ] {
        let out = scimd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("(no file there: give the configuration file with --config FILE"),
            "{args:?}: {err}"
        );
    }
}

/// `dir/scimd.toml`: the example configuration, serving `cert` and `key`.
fn example_serving(dir: &Path, cert: &Path, key: &Path) -> std::path::PathBuf {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let text = std::fs::read_to_string(example).unwrap().replace(
        "self_signed = true",
        &format!("cert = {:?}\nkey = {:?}", cert.display(), key.display()),
    );
    let path = dir.join("scimd.toml");
    std::fs::write(&path, &text).unwrap();
    path
}

/// A certificate and a key that are not a pair pass every file check, but `serve` refuses
/// them: check-config, which the unit runs before a reload, must say so first.
#[test]
fn check_config_refuses_a_key_that_is_not_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("fullchain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, one.cert.pem()).unwrap();
    scimd::tls::write_private(&key, other.signing_key.serialize_pem().as_bytes()).unwrap();
    let path = example_serving(dir.path(), &cert, &key);
    let check = || check_config(&path);
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not match the certificate"), "{err}");
    // What to check, in the admin's words rather than the library's.
    assert!(err.contains("must be the one issued for this key"), "{err}");
    assert!(!err.contains("KeyMismatch"), "{err}");
    // The pair's own key passes.
    scimd::tls::write_private(&key, one.signing_key.serialize_pem().as_bytes()).unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_config(path: &std::path::Path) -> std::process::Output {
    scimd()
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

/// An expired certificate loads, and IdPs refuse it: check-config says so and when, without
/// refusing the file (the service still serves `/healthz` and the application).
#[test]
fn check_config_warns_of_an_expired_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::process::dated_cert(dir.path(), -400, -30);
    let path = example_serving(dir.path(), &cert, &key);
    let out = check_config(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: tls.cert {}: the certificate expired on ",
            cert.display()
        )) && err.contains("IdPs refuse to connect until it is renewed"),
        "{err}"
    );
}

/// A CA's certificate without its intermediate is what IdPs refuse most (`UnknownCA`), and a
/// browser does not show it: check-config says so, and not of the full chain. A self-signed
/// certificate of the admin's own is refused by cloud IdPs too: said, and of it alone.
#[test]
fn check_config_warns_of_a_certificate_without_its_intermediate_or_self_signed() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Corp Issuing CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let own = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    for (name, pem, alone, self_signed) in [
        ("leaf.pem", leaf.pem(), true, false),
        ("fullchain.pem", leaf.pem() + &ca_cert.pem(), false, false),
        ("own.pem", own.pem(), false, true),
    ] {
        let cert = dir.path().join(name);
        std::fs::write(&cert, pem).unwrap();
        let out = check_config(&example_serving(dir.path(), &cert, &key_path));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let warned =
            |what: &str| err.contains(&format!("warning: tls.cert {}: {what}", cert.display()));
        assert_eq!(
            warned("the certificate file holds the server's certificate alone"),
            alone,
            "{name}: {err}"
        );
        assert_eq!(
            warned("the certificate is self-signed"),
            self_signed,
            "{name}: {err}"
        );
    }
}

/// `scimd token --hash-stdin` given `input` on standard input.
fn hash_stdin(input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = scimd()
        .args(["token", "--hash-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
#[test]
fn token_prints_a_token_and_the_matching_config_line() {
    let out = scimd().args(["token", "--name", "okta"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let token = format!("scimd_{}", after(&text, "scimd_"));
    let hash = scimd::auth::hex(&scimd::auth::digest(&token));
    // Both places a hash goes: a tenant's tokens list, or /metrics under [server].
    assert!(
        text.contains(&format!(
            "tokens list:\n  {{ name = \"okta\", sha256 = \"{hash}\" }},\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "under [server] instead:\n  metrics_token_sha256 = \"{hash}\"\n"
        )),
        "{text}"
    );
    let out = scimd()
        .args(["token", "--name", "app", "--scope", "read"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("{ name = \"app\", sha256 = \"") && text.contains("\", scope = \"read\" },"),
        "{text}"
    );
    let out = hash_stdin(&token);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash);
    // Nothing to hash is refused, not the hash of an empty token.
    let out = scimd()
        .args(["token", "--hash-stdin"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token on standard input"));
    // Nor is a token short enough to guess, and with --tenant the flag would be ignored.
    let out = hash_stdin("abc\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16 characters"));
    // Nor one no header can carry, nor a long run of one character.
    for (own, said) in [
        (
            "t\u{f6}k\u{e9}n-\u{fc}n\u{ef}c\u{f6}d\u{e9}-long-enough\n",
            "outside ASCII",
        ),
        ("has space inside the token\n", "spaces"),
        ("aaaaaaaaaaaaaaaaaaaaaaaa\n", "only 1 different character,"),
        // The example's own, which anyone who has read it can send.
        (
            "demo-token-change-me\n",
            "the demo token config.example.toml publishes",
        ),
    ] {
        let out = hash_stdin(own);
        assert_eq!(out.status.code(), Some(2), "{own}");
        assert!(out.stdout.is_empty(), "{own}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{own}: {err}");
    }
    let out = scimd()
        .args(["token", "--hash-stdin", "--tenant", "acme"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_add_prints_values_that_work_against_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scimd.toml");
    // A mistyped --config is said as such, not as a database that cannot be asked.
    let out = scimd()
        .args(["tenant", "add", "acme", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read") && !err.contains("--keep-data"),
        "{err}"
    );
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
    assert!(
        text.contains("Note: 127.0.0.1 is reachable only from this machine; set server.public_url"),
        "{text}"
    );
    let token = after(&text, "Bearer token: ");
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
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Added token \"app\" (scope read)"), "{text}");
    let reader = format!("scimd_{}", after(&text, "scimd_"));

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

/// A copy of a shipped config in a temp dir; the packaged one evaluates with a self-signed
/// certificate (so `check-config` can pass without certificate files) and keeps its
/// database there too: on a machine where the package is installed, the commands under
/// test must not open (nor write a certificate into) the installed `/var/lib/scimd`.
fn shipped(example: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scimd.toml");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(example))
        .unwrap()
        .replace(
            "cert = \"/etc/scimd/tls/fullchain.pem\"\nkey = \"/etc/scimd/tls/key.pem\"",
            "self_signed = true",
        )
        .replace(
            "dir = \"/var/lib/scimd\"",
            &format!("dir = \"{}/state\"", dir.path().display()),
        );
    assert!(
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("\"/etc/") && !l.contains("\"/var/")),
        "{example} names another absolute path"
    );
    std::fs::write(&path, &text).unwrap();
    (dir, path, text)
}

#[test]
fn tenant_add_appends_the_tenant_below_all_comments_of_both_shipped_configs() {
    for example in ["config.example.toml", "packaging/scimd.toml"] {
        let (_dir, path, original) = shipped(example);
        let out = run_ok(&["tenant", "add", "acme", "--token-name", "okta"], &path);
        let hash = scimd::auth::hex(&scimd::auth::digest(&after(&out, "Bearer token: ")));
        // The comments that ended the file (the demo tenant's commented-out options in the
        // example, "One table per tenant..." in the packaged one) stay above the new table.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "{}\n\n[tenants.acme]\ntokens = [\n  {{ name = \"okta\", sha256 = \"{hash}\" }},\n]\n",
                original.trim_end()
            ),
            "{example}"
        );
        let ok = run_ok(&["check-config"], &path);
        assert!(
            ok.contains(": OK (") && ok.contains(", database "),
            "{example}: {ok}"
        );
        // The example's demo tenant goes once acme is there; the packaged file's only
        // tenant stays.
        let remove = |name: &str| {
            scimd()
                .args(["tenant", "remove", name, "--config"])
                .arg(&path)
                .output()
                .unwrap()
        };
        if original.contains("[tenants.demo]") {
            let out = remove("demo");
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(said.contains("Removed tenant demo from"), "{said}");
            // A file never run holds no data under it: nothing to keep or purge is offered
            // (process.rs has a tenant that leaves some behind).
            assert!(
                said.contains("The database holds no users or groups under demo.")
                    && !said.contains("purge"),
                "{said}"
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("[tenants.demo]") && text.contains("[tenants.acme]"));
            assert!(run_ok(&["check-config"], &path).contains("OK (1 tenant,"));
            // The notes on what a tenant may hold stay, above acme, and name no demo: the
            // demo's own comment went with its table.
            let notes = text
                .find("# One table per tenant.")
                .expect("the notes stay");
            let acme = text.find("[tenants.acme]").unwrap();
            assert!(notes < acme && text[..acme].ends_with("\n\n"), "{text}");
            assert!(
                text[notes..acme].contains("# [tenants.NAME.plan]"),
                "{text}"
            );
            assert!(!text[notes..].contains("demo"), "{text}");
        }
        let out = remove("acme");
        assert_eq!(out.status.code(), Some(2), "{example}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is the only tenant"));
    }
}

#[test]
fn tenant_add_base_url_uses_public_url_or_the_host_name_never_0_0_0_0() {
    let (_dir, path, _) = shipped("packaging/scimd.toml");
    let out = run_ok(&["tenant", "add", "acme"], &path);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    assert!(
        out.contains(&format!(
            "Base URL:     https://{host}:8443/tenants/acme/scim/v2\n"
        )),
        "{out}"
    );
    assert!(!out.contains("0.0.0.0:8443/"), "{out}");
    assert!(
        out.contains("Note: server.listen is 0.0.0.0:8443, so this Base URL uses the machine's host name")
            && out.contains("set server.public_url in the config file to the https address your IdP reaches (e.g. https://scim.corp.example:8443)."),
        "{out}"
    );

    let text = std::fs::read_to_string(&path).unwrap().replace(
        "# public_url = \"https://scim.corp.example:8443\"",
        "public_url = \"https://scim.example.net/\"",
    );
    std::fs::write(&path, text).unwrap();
    let out = run_ok(&["tenant", "add", "beta"], &path);
    assert!(
        out.contains("Base URL:     https://scim.example.net/tenants/beta/scim/v2\n"),
        "{out}"
    );
    assert!(!out.contains("Note:"), "{out}");
    assert!(!out.contains("underscore"), "{out}");
    // Okta refuses its own Base URL: it is pointed to the one where the token selects.
    let out = run_ok(&["tenant", "add", "beta_eu"], &path);
    assert!(
        out.contains("Base URL:     https://scim.example.net/tenants/beta_eu/scim/v2\n")
            && out.contains(
                "Okta refuses a Base URL with an underscore: give Okta https://scim.example.net/scim/v2 instead"
            ),
        "{out}"
    );
    // With an underscore in the host, /scim/v2 is no way out: the host must change.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "public_url = \"https://scim.example.net/\"",
        "public_url = \"https://scim_host.example.net/\"",
    );
    std::fs::write(&path, text).unwrap();
    for tenant in ["gamma_eu", "delta"] {
        let out = run_ok(&["tenant", "add", tenant], &path);
        assert!(
            out.contains("as server.public_url has: change it (a host name with hyphens)")
                && !out.contains("give Okta"),
            "{out}"
        );
    }
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "public_url = \"https://scim_host.example.net/\"",
        "public_url = \"https://scim.example.net/\"",
    );
    std::fs::write(&path, text).unwrap();
    // What check-config would refuse is listed, here a public_url without its scheme.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "public_url = \"https://scim.example.net/\"",
        "public_url = \"scim.example.net:8443\"",
    );
    std::fs::write(&path, text).unwrap();
    let out = run_ok(&["tenant", "add", "gamma"], &path);
    let tail = out
        .split("fix what `scimd check-config` reports:\n")
        .nth(1)
        .unwrap_or_default();
    assert!(
        tail.starts_with(
            "  - server.public_url: \"scim.example.net:8443\" must start with https://"
        ),
        "{out}"
    );
    // A mistake elsewhere in [server] does not lose the address the Base URL is built on.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "public_url = \"scim.example.net:8443\"",
        "public_url = \"https://scim.example.net\"\nmax_result = 10",
    );
    std::fs::write(&path, text).unwrap();
    let out = run_ok(&["tenant", "add", "epsilon"], &path);
    assert!(
        out.contains("Base URL:     https://scim.example.net/tenants/epsilon/scim/v2\n")
            && out.contains("max_result"),
        "{out}"
    );
}

/// `listen` on port 0 is any free port, another at each start: check-config says so.
#[test]
fn check_config_says_what_port_0_means() {
    let dir = tempfile::tempdir().unwrap();
    let path = tenantless_config(dir.path());
    run_ok(&["tenant", "add", "acme"], &path);
    let ok = run_ok(&["check-config"], &path);
    assert!(
        ok.contains("listening on 127.0.0.1:0: port 0, any free port, another at each start"),
        "{ok}"
    );
}

/// A Base URL pasted as `public_url` is read as its address: the Base URL printed is not
/// doubled, and check-config says what it did.
#[test]
fn a_base_url_pasted_as_public_url_is_not_doubled() {
    let (_dir, path, _) = shipped("packaging/scimd.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "# public_url = \"https://scim.corp.example:8443\"",
        "public_url = \"https://scim.example.net:8443/scim/v2/\"",
    );
    std::fs::write(&path, text).unwrap();
    let out = run_ok(&["tenant", "add", "acme"], &path);
    assert!(
        out.contains("Base URL:     https://scim.example.net:8443/tenants/acme/scim/v2\n"),
        "{out}"
    );
    let out = run(&["check-config"], &path);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains(": OK (") && !stdout.contains("port 0"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("warning: server.public_url: \"https://scim.example.net:8443/scim/v2/\" ends in the SCIM path /scim/v2/, which scimd adds itself; it uses \"https://scim.example.net:8443\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_remove_takes_a_token_out_and_a_reload_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = tenantless_config(dir.path());
    let out = run_ok(&["tenant", "add", "acme", "--token-name", "old"], &path);
    let old = after(&out, "Bearer token: ");
    let out = run_ok(&["token", "--tenant", "acme", "--name", "new"], &path);
    let new = format!("scimd_{}", after(&out, "scimd_"));

    let s = Proc::start(&path);
    // The banner's Base URL follows the same rule as `tenant add`.
    let base = format!("SCIM Base URL: https://127.0.0.1:{}/scim/v2", s.port);
    let note = "Note: 127.0.0.1 is reachable only from this machine; set server.public_url";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log.lock().unwrap().contains(note) {
        assert!(Instant::now() < deadline, "{}", s.log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.log.lock().unwrap().contains(&base));
    let users = "/scim/v2/Users";
    assert_eq!(s.status(users, &old).await, 200);

    let out = run_ok(
        &["token", "remove", "--tenant", "acme", "--name", "old"],
        &path,
    );
    assert_eq!(
        out,
        format!(
            "Removed token \"old\" from tenant acme in {}.\nscimd accepts it until it reloads: run `systemctl reload scimd` (or send SIGHUP).\n",
            path.display()
        )
    );
    kill(s.child.id(), "-HUP");
    assert!(
        s.until(users, &old, 401).await,
        "the removed token still works"
    );
    assert_eq!(s.status(users, &new).await, 200);

    // Nothing to remove, or the tenant's last token: refused, with the reason.
    for (args, want) in [
        (
            ["token", "remove", "--tenant", "acme", "--name", "old"],
            "tenant \"acme\" has no token \"old\"",
        ),
        (
            ["token", "remove", "--tenant", "nosuch", "--name", "new"],
            "no tenant \"nosuch\"",
        ),
        (
            ["token", "remove", "--tenant", "acme", "--name", "new"],
            "\"new\" is the last token of tenant \"acme\"",
        ),
    ] {
        let out = run(&args, &path);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
}

/// Several `token` and `tenant add` commands at once (scripts, two admins): each exit status
/// says whether its change is in the file, and a removal that succeeded is not undone.
#[test]
fn concurrent_edits_exit_zero_exactly_when_their_change_is_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = tenantless_config(dir.path());
    run_ok(&["tenant", "add", "acme", "--token-name", "keep"], &path);
    for name in ["old0", "old1"] {
        run_ok(&["token", "--tenant", "acme", "--name", name], &path);
    }
    let add = |name: &'static str| vec!["token", "--tenant", "acme", "--name", name];
    let remove = |name: &'static str| vec!["token", "remove", "--tenant", "acme", "--name", name];
    let jobs = [
        add("new0"),
        remove("old0"),
        add("new1"),
        remove("old0"),
        add("flip"),
        remove("flip"),
        remove("old1"),
        add("new2"),
        vec!["tenant", "add", "beta", "--token-name", "okta"],
        remove("old1"),
        add("new3"),
    ];
    // All started before any is waited for, so they overlap as far as the machine lets them;
    // what is checked holds whichever order they ran in.
    let running: Vec<_> = jobs
        .iter()
        .map(|args| {
            scimd()
                .args(args)
                .arg("--config")
                .arg(&path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = running
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();

    let cfg = scimd::config::Config::load(&path).unwrap();
    let hash_of = |name: &str| {
        cfg.tenants["acme"]
            .tokens
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.sha256.clone())
    };
    let printed = |out: &Output| {
        let text = String::from_utf8_lossy(&out.stdout);
        let tok = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Bearer token: "))
            .map_or_else(
                || format!("scimd_{}", after(&text, "scimd_")),
                str::to_string,
            );
        Some(scimd::auth::hex(&scimd::auth::digest(&tok)))
    };
    let mut removed = std::collections::BTreeMap::<&str, Vec<bool>>::new();
    for (args, out) in jobs.iter().zip(&outs) {
        let err = String::from_utf8_lossy(&out.stderr);
        match args[..] {
            ["token", "remove", .., name] => {
                // Only "it was already gone" may fail a removal here.
                assert!(
                    out.status.success() || err.contains("has no token"),
                    "{args:?}: {err}"
                );
                removed.entry(name).or_default().push(out.status.success());
            }
            ["token", .., name] => {
                assert!(out.status.success(), "{args:?}: {err}");
                if name != "flip" {
                    assert_eq!(hash_of(name), printed(out), "{args:?}");
                }
            }
            _ => {
                assert!(out.status.success(), "{args:?}: {err}");
                assert_eq!(
                    Some(cfg.tenants["beta"].tokens[0].sha256.clone()),
                    printed(out)
                );
            }
        }
    }
    // Each old token was removed once, and stays removed.
    for name in ["old0", "old1"] {
        let mut ok = removed[name].clone();
        ok.sort();
        assert_eq!(ok, [false, true], "{name}");
        assert_eq!(hash_of(name), None, "{name}");
    }
    // flip is there exactly when its removal came first and found nothing.
    let flip_add = jobs.iter().position(|a| a[..] == add("flip")[..]).unwrap();
    let want = (!removed["flip"][0]).then(|| printed(&outs[flip_add]).unwrap());
    assert_eq!(hash_of("flip"), want);
    let mut names: Vec<_> = cfg.tenants["acme"]
        .tokens
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    names.sort();
    let mut want = vec!["keep", "new0", "new1", "new2", "new3"];
    if hash_of("flip").is_some() {
        want.insert(0, "flip");
    }
    assert_eq!(names, want);
    // Nothing but the config and the (empty) edit lock beside it.
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, [".scimd.toml.lock", "scimd.toml"]);
}

/// `scimd PATH... -h` and, below it, every subcommand's (`-h`: one line per option).
fn help_pages(path: Vec<String>, pages: &mut Vec<(Vec<String>, String)>) {
    let out = scimd().args(&path).arg("-h").output().unwrap();
    assert!(out.status.success(), "{path:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let subcommands: Vec<String> = text
        .split("Commands:\n")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|c| *c != "help")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    pages.push((path.clone(), text));
    for c in subcommands {
        let mut sub = path.clone();
        sub.push(c);
        help_pages(sub, pages);
    }
}

#[test]
fn every_option_and_argument_is_described() {
    let mut pages = Vec::new();
    help_pages(Vec::new(), &mut pages);
    assert!(pages.len() > 15, "{}", pages.len());
    for (path, text) in &pages {
        // An option or argument line: its name, two spaces or more, then its description
        // (an undescribed one shows nothing there, or only its "[default: ...]").
        for l in text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(['-', '<']))
        {
            let help = l.split_once("  ").map_or("", |(_, h)| h.trim());
            assert!(
                !help.is_empty() && !help.starts_with('['),
                "scimd {}: {l:?} has no description",
                path.join(" ")
            );
        }
    }
    let groups = &pages
        .iter()
        .find(|(p, _)| p == &["groups", "list"])
        .unwrap()
        .1;
    assert!(
        groups.contains("group's id and displayName")
            && groups.contains("'displayName sw \"Eng\"'")
            && !groups.contains("userName"),
        "{groups}"
    );
}

/// The example opened to others: its public demo token is refused, and the edits that
/// replace it go through, each saying what still stops a reload until the last is done.
#[test]
fn the_demo_token_is_replaced_with_the_commands_its_refusal_names() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let exposed = text.replace("listen = \"127.0.0.1:8443\"", "listen = \"0.0.0.0:8443\"");
    assert_ne!(exposed, text);
    let path = dir.path().join("scimd.toml");
    std::fs::write(&path, exposed).unwrap();
    let out = run(&["check-config"], &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && err.contains("this is the demo token"),
        "{err}"
    );
    let added = run_ok(&["token", "--tenant", "demo", "--name", "okta"], &path);
    assert!(
        added.contains("Before scimd can load this file") && added.contains("the demo token"),
        "{added}"
    );
    let removed = run_ok(
        &["token", "remove", "--tenant", "demo", "--name", "demo"],
        &path,
    );
    assert!(!removed.contains("Before scimd can load"), "{removed}");
    assert!(run(&["check-config"], &path).status.success());
}

/// The manual pages: one per command, and the top page says what --help cannot (files,
/// environment, exit codes), the same on standard output and in the package's directory.
#[test]
fn the_manual_names_files_environment_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = scimd()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = std::fs::read_to_string(dir.path().join("scimd.1")).unwrap();
    for section in [
        ".SH FILES",
        ".SH ENVIRONMENT",
        ".SH EXIT STATUS",
        ".SH SYNOPSIS",
    ] {
        assert!(top.contains(section), "{section} missing");
    }
    assert!(top.contains("SCIMD_SERVER__LISTEN") && top.contains("admin.sock"));
    assert!(dir.path().join("scimd-status.1").exists());
    let printed = scimd().arg("man").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout), top);
}

/// An edit run without sudo, on a file or directory only root may read or write, says to
/// use sudo; it does not send the admin to --keep-data, which cannot help.
#[test]
fn an_edit_run_without_sudo_says_to_use_it() {
    if !crate::process::running_as_root() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let path = tenantless_config(dir.path());
    run_ok(&["tenant", "add", "acme"], &path);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if !crate::process::nobody_reaches(dir.path()) {
        return;
    }
    let as_nobody = |args: &[&str]| {
        let out = scimd()
            .args(args)
            .arg("--config")
            .arg(&path)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The file root's alone.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for args in [
        &["tenant", "add", "zed"][..],
        &["tenant", "add", "zed", "--keep-data"],
    ] {
        let (code, err) = as_nobody(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("run the command as root, with sudo") && !err.contains("--keep-data"),
            "{args:?}: {err}"
        );
    }
    // The file readable, its directory root's: the lock beside it cannot be made.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = as_nobody(&["token", "--tenant", "acme"]);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("cannot lock") && err.contains("run the command as root, with sudo"),
        "{err}"
    );
}

/// Run as root, check-config reads the files as whoever owns storage.dir would: a database
/// a root command left there with mode 0600 passes root's own reading, and would stop the
/// service's start. Whatever that user's name is (here `nobody`, not the package's `scimd`).
#[test]
fn check_config_as_root_reads_as_the_owner_of_the_state_directory() {
    if !crate::process::running_as_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = tenantless_config(dir.path());
    run_ok(&["tenant", "add", "acme"], &path);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::process::give_to_nobody(&state);
    assert!(run_ok(&["check-config"], &path).contains(": OK ("));
    // Left by root, owner-only.
    let db = state.join("scimd.redb");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&["check-config"], &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("for the service user nobody:"), "{err}");
    assert!(err.contains(&db.display().to_string()), "{err}");
    // Given to that user, it passes again.
    crate::process::give_to_nobody(&db);
    assert!(run_ok(&["check-config"], &path).contains(": OK ("));
}
