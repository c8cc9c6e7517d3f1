//! The real binary as a process: reload on SIGHUP, health, request logs, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, pem::PemObject};
use scimd::auth::{digest, hex};

/// `scimd serve` as a process until dropped, with its standard error collected.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: Arc<Mutex<String>>,
    pub(crate) client: reqwest::Client,
}

fn config_text(dir: &std::path::Path, tokens: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n[storage]\ndir = \"{}\"\n[log]\nlevel = \"info\"\n[tenants.acme]\ntokens = [{tokens}]\n",
        dir.join("state").display()
    )
}

/// `dir/scimd.toml`: state under `dir`, tenant acme with the token `tok` (named okta).
pub(crate) fn okta_config(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("scimd.toml");
    std::fs::write(&cfg, config_text(dir, &token_line("okta", "tok"))).unwrap();
    cfg
}

/// `dir/scimd.toml` as `okta_config` writes it, with the token `token`, JSON logs, and
/// `tenant_extra` appended to tenant acme's table.
fn json_logs_config(dir: &std::path::Path, token: &str, tenant_extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("scimd.toml");
    let text = config_text(dir, &token_line("okta", token))
        .replace("level = \"info\"", "level = \"info\"\nformat = \"json\"")
        + tenant_extra;
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn token_line(name: &str, token: &str) -> String {
    format!(
        "{{ name = \"{name}\", sha256 = \"{}\" }}",
        hex(&digest(token))
    )
}

/// A tenant's table taken out and put back while scimd is stopped: the start between notes
/// the tenant gone, and the start after warns that its kept data is served again (it may
/// be another customer's name); a start with nothing changed says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_put_back_while_stopped_is_warned_of_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let without = std::fs::read_to_string(&cfg).unwrap();
    let beta = "tok-beta-0123456789";
    let with = format!(
        "{without}\n[tenants.beta]\ntokens = [{}]\n",
        token_line("b", beta)
    );
    let back = "tenant beta is back in the configuration since scimd last ran, and served \
                the 1 user and 0 groups";
    let run_once = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let p = Proc::start(&cfg);
        (p.log(), p)
    };
    let (_, mut p) = run_once(&with);
    let body = r#"{"userName":"kept@x"}"#.to_string();
    assert_eq!(p.post("/tenants/beta/scim/v2/Users", beta, body).await, 201);
    for (text, warned) in [(&without, false), (&with, true), (&with, false)] {
        kill(p.child.id(), "-TERM");
        assert!(p.child.wait().unwrap().success());
        let (log, next) = run_once(text);
        assert_eq!(log.contains(back), warned, "{log}");
        p = next;
    }
}

/// `tenant remove` offers to keep or purge a tenant's data only where the database holds
/// some: the commands it prints name this file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_remove_speaks_of_data_only_where_there_is_some() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let beta = "tok-beta-0123456789";
    let more = format!(
        "\n[tenants.beta]\ntokens = [{}]\n\n[tenants.gamma]\ntokens = [{}]\n",
        token_line("b", beta),
        token_line("g", "tok-gamma-0123456789")
    );
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap() + &more).unwrap();
    let mut p = Proc::start(&cfg);
    let body = "{\"userName\":\"b@x\"}".to_string();
    assert_eq!(p.post("/scim/v2/Users", beta, body).await, 201);
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    let said = |name: &str| {
        let out = scimd_cmd(&cfg, &["tenant", "remove", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let c = format!(" --config {}", cfg.display());
    let kept = said("beta");
    assert!(
        kept.contains("Its users and groups stay in the database")
            && kept.contains(&format!("`scimd tenant purge beta --yes{c}`"))
            && kept.contains(&format!("`scimd tenant add beta --keep-data{c}`")),
        "{kept}"
    );
    let none = said("gamma");
    assert!(
        none.contains("The database holds no users or groups under gamma.")
            && !none.contains("purge"),
        "{none}"
    );
}

/// The scimd binary as a command, without what the test runner's environment might hand
/// it: `RUST_LOG` overrides `log.level` (the tests read info lines), and a `SCIMD_` variable
/// or systemd's sockets would change what it does.
pub(crate) fn scimd_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scimd"));
    runner_env_removed(&mut c);
    c
}

/// `c` (scimd, or a wrapper that runs it) without those variables.
pub(crate) fn runner_env_removed(c: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("SCIMD_")
            || ["RUST_LOG", "NOTIFY_SOCKET", "JOURNAL_STREAM", "LISTEN_FDS"].contains(&&*k)
        {
            c.env_remove(&*k);
        }
    }
    c
}

/// Gives `path` to uid and gid 65534 (nobody), the stand-in for a service user of its own.
pub(crate) fn give_to_nobody(path: &std::path::Path) {
    assert!(
        Command::new("chown")
            .arg("65534:65534")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
}

/// Whether uid 65534 may run the binary from `dir`: not when the build or the temporary
/// directory is under a home of mode 0700 (`/root`), as a CI runner's may be. Tests that
/// run scimd as that user skip then, saying so.
pub(crate) fn nobody_reaches(dir: &std::path::Path) -> bool {
    use std::os::unix::process::CommandExt;
    let ok = scimd_bin()
        .arg("--version")
        .current_dir(dir)
        .uid(65534)
        .gid(65534)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: uid 65534 cannot run {} from {}",
            env!("CARGO_BIN_EXE_scimd"),
            dir.display()
        );
    }
    ok
}

/// Whether the tests run as root: only root can give a directory to another user.
pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

pub(crate) fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub(crate) fn start(config: &std::path::Path) -> Proc {
        Proc::start_with_env(config, &[])
    }

    pub(crate) fn start_with_env(config: &std::path::Path, env: &[(&str, &str)]) -> Proc {
        let mut scimd = scimd_bin();
        scimd.envs(env.iter().copied());
        Proc::start_as(scimd, config)
    }

    /// `scimd serve` run by `command` (the binary itself, or a wrapper naming it).
    fn start_as(command: Command, config: &std::path::Path) -> Proc {
        Proc::start_reading(command, config, true)
    }

    /// `start_as`, whose standard error is read on (`keep_reading`) or, once the address is
    /// known, closed: a log pipe whose reader went away.
    fn start_reading(mut command: Command, config: &std::path::Path, keep_reading: bool) -> Proc {
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .strip_prefix("scimd ")
                    .and_then(|l| l.split(" listening on ").nth(1))
                {
                    let _ = tx.send(addr.trim().to_string());
                    if !keep_reading {
                        return;
                    }
                }
                // With `log.format = "json"` the address is a field of the start event.
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.ends_with(" listening"))
                    && let Some(addr) = v["fields"]["addr"].as_str()
                {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("scimd reports its address");
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let pem = std::fs::read(config.parent().unwrap().join("state/tls/cert.pem")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .no_proxy()
            .build()
            .unwrap();
        Proc {
            child,
            port,
            log,
            client,
        }
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("https://localhost:{}{path}", self.port))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn status(&self, path: &str, token: &str) -> u16 {
        self.get(path, token).await.status().as_u16()
    }

    /// The JSON body `path` answers for `token`.
    pub(crate) async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        self.get(path, token).await.json().await.unwrap()
    }

    /// POSTs a SCIM body to `path`; the status.
    pub(crate) async fn post(&self, path: &str, token: &str, body: String) -> u16 {
        self.client
            .post(format!("https://localhost:{}{path}", self.port))
            .bearer_auth(token)
            .header("Content-Type", "application/scim+json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Wait (bounded) until `path` answers `want` for `token`.
    pub(crate) async fn until(&self, path: &str, token: &str, want: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.status(path, token).await == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it holds `line` (read by another thread, so a line logged just before
    /// an answer may not be in yet), or as it is after 30 s.
    pub(crate) async fn log_with(&self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains(line) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.log()
    }

    /// SIGHUP, and wait (bounded) until the daemon logs one more finished reload.
    pub(crate) async fn reload(&self) {
        let done = || self.log().matches("configuration reloaded").count();
        let before = done();
        kill(self.child.id(), "-HUP");
        let deadline = Instant::now() + Duration::from_secs(15);
        while done() == before {
            assert!(Instant::now() < deadline, "no reload in:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The reader of the log going away (a log pipe restarted) must not stop the server: the
/// next log line, which any client's request makes, once aborted the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reader_going_away_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let scimd = scimd_bin();
    let mut p = Proc::start_reading(scimd, &okta_config(dir.path()), false);
    for _ in 0..20 {
        assert_eq!(p.status("/scim/v2/Users", "wrong-token").await, 401);
        assert_eq!(p.post("/scim/v2/Users", "tok", "{".into()).await, 400);
    }
    assert_eq!(p.status("/healthz", "tok").await, 200);
    assert!(p.child.try_wait().unwrap().is_none(), "scimd exited");
}

/// Root starting scimd on a state directory the service user owns (a packaged install
/// started by hand) is refused before it makes anything there the service could not use.
#[test]
fn root_does_not_serve_a_state_directory_another_user_owns() {
    if !running_as_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    give_to_nobody(&state);
    let out = scimd_bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // The command to paste names the owner and its group as the system knows them, as
    // the README writes it (`--reuid=scimd --regid=scimd`).
    let name = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find(|l| l.split(':').nth(2) == Some("65534"))
            .map_or("65534".to_string(), |l| {
                l.split(':').next().unwrap().to_string()
            })
    };
    let (user, group) = (name("/etc/passwd"), name("/etc/group"));
    assert!(
        err.contains("not serving as root")
            && err.contains(&format!(
                "setpriv --reuid={user} --regid={group} --init-groups"
            )),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "made files");
}

/// An empty database file, or one that is not a database at all, is refused with exit 2:
/// systemd starting it again (as on exit 1) would only refuse it again.
#[test]
fn an_empty_or_damaged_database_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    for (content, says) in [
        (&b""[..], "exists but holds nothing"),
        (&[0x5a; 64 * 1024][..], "cannot open the database"),
    ] {
        std::fs::write(state.join("scimd.redb"), content).unwrap();
        let out = scimd_cmd(&cfg, &["serve"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(2) && err.contains(says),
            "{says}: {:?} {err}",
            out.status
        );
    }
}

/// A database or self-signed certificate directory the service user may not open (root
/// made it, owner-only) exits 2 with the command that gives it back: starting again, as
/// systemd would on exit 1, cannot help.
#[test]
fn what_the_service_user_may_not_open_exits_2_with_the_fix() {
    if !running_as_root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = okta_config(dir.path());
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let db = state.join("scimd.redb");
    std::fs::write(&db, b"root's").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    give_to_nobody(&state);
    if !nobody_reaches(&state) {
        return;
    }
    let serve_as_nobody = || {
        let out = scimd_bin()
            .args(["serve", "--config"])
            .arg(&cfg)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        err
    };
    let err = serve_as_nobody();
    assert!(err.contains("chown -R"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), b"root's");
    // So does a self-signed certificate's directory root made owner-only.
    std::fs::remove_file(&db).unwrap();
    let tls = state.join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = serve_as_nobody();
    assert!(
        err.contains("cannot look for the certificate") && err.contains("chown -R"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_directory_changes_nothing_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    let cert = dir.path().join("state/tls/cert.pem");
    let before = std::fs::read(&cert).unwrap();
    // Another host name would remake the self-signed certificate, were it not refused first.
    let second = dir.path().join("second.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[server]\n",
        "[server]\npublic_url = \"https://other.example:8443\"\n",
    );
    std::fs::write(&second, text).unwrap();
    let out = scimd_cmd(&second, &["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("open in another process"), "{err}");
    assert_eq!(std::fs::read(&cert).unwrap(), before);
    assert_eq!(p.status("/scim/v2/Users", "tok").await, 200);
}

/// A start refused for its certificate leaves no new database, and exits 1 for systemd to
/// try again; the next start, with the certificate fixed, still warns that it made an empty
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_for_its_certificate_or_a_refused_import_leaves_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, one.cert.pem()).unwrap();
    scimd::tls::write_private(&key, other.signing_key.serialize_pem().as_bytes()).unwrap();
    let cfg = okta_config(dir.path());
    let good = std::fs::read_to_string(&cfg).unwrap();
    let text = good.replace(
        "self_signed = true",
        &format!("cert = {:?}\nkey = {:?}", cert.display(), key.display()),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = scimd_cmd(&cfg, &["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Exit 1, not 2: the unit tries again 5 s later (a renewal may be half-way).
    assert!(
        out.status.code() == Some(1) && err.contains("does not match"),
        "{err}"
    );
    assert!(!dir.path().join("state/scimd.redb").exists(), "{err}");
    // A certificate file not there at all (a renewal that deletes, then writes) is tried
    // again too; with another problem in the file as well, it is not.
    std::fs::rename(&cert, dir.path().join("away.pem")).unwrap();
    let out = scimd_cmd(&cfg, &["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("tls.cert: cannot read"),
        "{err}"
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    // Another problem beside it, or the key not given at all, is for the admin to fix.
    let key_line = format!("key = {:?}\n", key.display());
    for (broken, other) in [
        (
            text.replace("[log]", "[log]\nformat = \"xml\""),
            "log.format",
        ),
        (text.replace(&key_line, ""), "tls.key: missing"),
    ] {
        std::fs::write(&cfg, broken).unwrap();
        let out = scimd_cmd(&cfg, &["serve"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && err.contains(other), "{err}");
    }
    std::fs::write(&cfg, text).unwrap();
    assert!(!dir.path().join("state/scimd.redb").exists(), "{err}");
    // Fixed (here: the self-signed certificate the client trusts).
    std::fs::write(&cfg, good).unwrap();
    // A refused import leaves no database behind either, nor the directory it made for it.
    let state = dir.path().join("state");
    let had_state = state.exists();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{garbage\n").unwrap();
    let out = scimd_cmd(
        &cfg,
        &[
            "import",
            "--tenant",
            "acme",
            "--from",
            bad.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("line 1: not JSON"),
        "{err}"
    );
    assert!(!state.join("scimd.redb").exists(), "{err}");
    assert_eq!(state.exists(), had_state, "{err}");
    let p = Proc::start(&cfg);
    assert_eq!(p.status("/scim/v2/Users", "tok").await, 200);
    let log = p.log_with("new, empty database").await;
    assert!(log.contains("new, empty database"), "{log}");
}

/// A start that fails says why once: as a log line when standard error is a pipe or a file
/// (the journal, a redirect), plainly on a terminal (here `script`'s pseudo-terminal).
#[test]
fn a_start_that_fails_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = okta_config(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{}\"", holder.local_addr().unwrap()),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = scimd_cmd(&cfg, &["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("cannot start").count(), 1, "{err}");
    assert!(
        err.contains("ERROR") && err.contains("another process holds the port"),
        "{err}"
    );
    // `script` (util-linux) runs it on a terminal and copies what it wrote to standard output.
    let line = format!(
        "{} serve --config {}",
        env!("CARGO_BIN_EXE_scimd"),
        cfg.display()
    );
    let out = runner_env_removed(&mut Command::new("script"))
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert_eq!(shown.matches("cannot start").count(), 1, "{shown}");
    assert!(
        shown.contains("scimd: cannot start: server.listen") && !shown.contains("ERROR"),
        "{shown}"
    );
}

/// A client that hangs up as soon as its write is sent (an IdP's timeout) gets no answer,
/// but every change that was made is in the log, under its request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_client_hangs_up_at_once_is_still_logged() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    let cert = dir.path().join("state/tls/cert.pem");
    // A request whose client is gone before the server reads it is never processed (on a
    // busy machine, all ten of a round may be, and all fifty of five rounds were once, with
    // a second test suite running beside): rounds go on until some got through.
    let mut made = 0;
    for round in 0..20 {
        let names: Vec<usize> = (round * 10..round * 10 + 10).collect();
        for &i in &names {
            let mut conn = crate::harness::wire::connect_to(p.port, &cert).await;
            let body = format!("{{\"userName\":\"gone{i}@x\"}}");
            let req = format!(
                "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tok\r\n\
                 Content-Type: application/scim+json\r\nX-Request-Id: hangup-{i}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(req.as_bytes()).await.unwrap();
            conn.flush().await.unwrap();
            drop(conn);
        }
        // Each user that exists was made by its request; its line may come a moment after.
        for i in names {
            let filter = format!("/scim/v2/Users?filter=userName%20eq%20%22gone{i}@x%22");
            let found: serde_json::Value = p.get(&filter, "tok").await.json().await.unwrap();
            if found["totalResults"] == 0 {
                continue;
            }
            made += 1;
            let line = format!("request_id=\"hangup-{i}\"");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !p.log().contains(&line) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(p.log().contains(&line), "{line} not in {}", p.log());
        }
        if made > 0 {
            break;
        }
    }
    assert!(made > 0, "no request got through before its client left");
}

/// Unknown attribute and schema names are the client's text: in the log they are escaped
/// (a line break would forge a line) and, however many different ones a client sends, said
/// at WARN at most twenty times an hour for a tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_names_cannot_forge_or_flood_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    let forged = "2026-12-03T00:00:00Z ERROR forged";
    let typo = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumbr";
    let body = serde_json::json!({
        "userName": "u0@x",
        format!("evil\n{forged}\u{1b}[31m"): 1,
        typo: "42",
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", format!("urn:x\n{forged}")],
    });
    assert_eq!(p.post("/scim/v2/Users", "tok", body.to_string()).await, 201);
    for i in 1..30 {
        let body = format!("{{\"userName\":\"u{i}@x\",\"made_up_{i}\":1}}");
        assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
    }
    let warned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("ignored unknown attributes"))
            .count()
    };
    // The login redirect's tenant comes from the URL, before any token: escaped too.
    let sso = format!(
        "https://localhost:{}/tenants/x%0A{}%1b%5b31m/sso/login_redirect",
        p.port,
        forged.replace(' ', "%20")
    );
    assert_eq!(p.client.get(&sso).send().await.unwrap().status(), 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (warned(&p.log()) < 20 || !p.log().contains("/sso/login_redirect"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = p.log();
    assert!(!log.lines().any(|l| l.starts_with(forged)), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    assert!(log.contains("evil\\n2026-12-03"), "{log}");
    // A misspelt extension attribute is named to its last letter, not cut after the URN.
    assert!(log.contains(typo), "{log}");
    assert_eq!(warned(&log), 20, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_log_that_is_no_level_is_passed_over_and_refusals_say_why() {
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start_with_env(&cfg, &[("RUST_LOG", "verbose")]);
    assert_eq!(p.status("/scim/v2/Users", "wrong").await, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("status=401") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = p.log();
    assert!(
        log.contains("RUST_LOG: \"verbose\" is not a level"),
        "{log}"
    );
    assert!(
        log.contains("status=401"),
        "the configured level logs: {log}"
    );
    assert!(
        log.contains("authentication refused: the token matches no configured token"),
        "{log}"
    );
    // Refused on a tenant's URL, the one line names the tenant (IdPs share cloud
    // addresses), the client and the request; a name the configuration does not have is not
    // taken into a field.
    for (tenant, named) in [("acme", "acme"), ("nosuch", "-")] {
        let url = format!(
            "https://localhost:{}/tenants/{tenant}/scim/v2/Users",
            p.port
        );
        let sent = p.client.get(&url).bearer_auth("old-token");
        let sent = sent.header("User-Agent", "Okta SCIM Client 1.0.0");
        assert_eq!(sent.send().await.unwrap().status(), 401);
        let refused = format!("tenant=\"{named}\"");
        let deadline = Instant::now() + Duration::from_secs(10);
        let lines = || -> Vec<String> {
            let log = p.log();
            let mine = log
                .lines()
                .filter(|l| l.contains(&refused) && l.contains("Okta"));
            mine.map(str::to_string).collect()
        };
        while lines().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lines = lines();
        assert_eq!(lines.len(), 1, "{tenant}: {}", p.log());
        for part in [
            "authentication refused",
            "user_agent=\"Okta SCIM Client 1.0.0\"",
            "status=401",
            "path=\"/Users\"",
            "request_id=",
        ] {
            assert!(lines[0].contains(part), "{tenant}: {part}: {}", p.log());
        }
        if named == "-" {
            assert!(!p.log().contains("tenant=\"nosuch\""), "{}", p.log());
        }
    }
    // A raw `"` in a URL: hyper answers a bare 400 itself, and the log says so once a
    // minute per address (no handler saw the request to log it).
    let cert = cfg.parent().unwrap().join("state/tls/cert.pem");
    let raw =
        b"GET /scim/v2/Users?filter=userName%20eq%20\"a@b\" HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for _ in 0..3 {
        let conn = crate::harness::wire::connect_to(p.port, &cert).await;
        assert_eq!(crate::harness::wire::send_on(conn, raw).await.status, 400);
    }
    let unreadable = |log: &str| log.matches("is not valid HTTP/1.1").count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while unreadable(&p.log()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(unreadable(&p.log()), 1, "{}", p.log());
    // Each refused header's reason is logged; a request without one only has its line.
    let url = format!("https://localhost:{}/scim/v2/Users", p.port);
    for (header, why) in [
        (
            Some("Basic YWNtZTpva3Rh"),
            "only bearer tokens are accepted",
        ),
        (Some("Bearer "), "the Authorization header holds no token"),
        (None, "missing Authorization header"),
    ] {
        let mut req = p.client.get(&url);
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let lines_before = p.log().matches("status=401").count();
        assert_eq!(req.send().await.unwrap().status(), 401);
        let deadline = Instant::now() + Duration::from_secs(10);
        let said = |log: &str| log.contains(&format!("authentication refused: {why}"));
        // Each of these logs its request line (the one without a header as the first from
        // its address this minute): waited for, so that the count below starts after it.
        let logged = |log: &str| log.matches("status=401").count() > lines_before;
        while (header.is_some() && !said(&p.log()) || !logged(&p.log()))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(said(&p.log()), header.is_some(), "{why}: {}", p.log());
        // Without one, the request's line says what was missing.
        if header.is_none() {
            assert!(p.log().contains(&format!("detail=\"{why}")), "{}", p.log());
        }
    }
    // Requests without a token (scanners, probes) get a request line once a minute per
    // address: the one above had it, these 20 do not. A write's line marks the end.
    // Nor a scanner's tries of paths that are not there.
    let lines = |log: &str| log.matches("status=401").count() + log.matches("status=404").count();
    let before = lines(&p.log());
    for i in 0..20 {
        assert_eq!(p.client.get(&url).send().await.unwrap().status(), 401);
        let probe = format!("https://localhost:{}/wp-login{i}.php", p.port);
        assert_eq!(p.client.get(&probe).send().await.unwrap().status(), 404);
    }
    assert_eq!(
        p.post("/scim/v2/Users", "tok", r#"{"userName":"mark@x"}"#.into())
            .await,
        201
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("status=201") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines(&p.log()), before, "{}", p.log());
    // A flood of wrong tokens: past the throttle, 429s, said once, not once a request.
    // 100 at once, then one a second: how many get through depends on how long the flood
    // took, which a loaded machine stretches.
    let (mut throttled, flood) = (0, Instant::now());
    for _ in 0..150 {
        throttled += usize::from(p.status("/scim/v2/Users", "wrong").await == 429);
    }
    let refilled = flood.elapsed().as_secs() as usize + 2;
    assert!(
        throttled > 0 && 150 - throttled <= 100 + refilled,
        "{throttled} of 150 throttled in {:?}",
        flood.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let warned = |log: &str| log.matches("answering 429 to this address").count();
    while warned(&p.log()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = p.log();
    assert_eq!(warned(&log), 1, "{log}");
    assert!(!log.contains("status=429"), "{log}");
    // Nor does the one refusal a second the throttle lets through give a line each: ten a
    // minute from an address at info, and the refill since the test began.
    let refusals = log.matches("authentication refused").count();
    let refill = began.elapsed().as_secs() as usize / 6 + 1;
    assert!(refusals <= 10 + refill, "{refusals} lines: {log}");
    // /metrics asked without a token (here off: 404) has its line too, once a minute.
    for _ in 0..3 {
        let url = format!("https://localhost:{}/metrics", p.port);
        assert_eq!(p.client.get(&url).send().await.unwrap().status(), 404);
    }
    let line = "path=\"/metrics\" status=404";
    let log = p.log_with(line).await;
    assert_eq!(log.matches(line).count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_json_from_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = json_logs_config(dir.path(), "tok", "");
    let mut p = Proc::start(&cfg);
    assert_eq!(p.status("/scim/v2/Users", "wrong").await, 401);
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    let log = p.log();
    let mut base_url = false;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{log}"));
        base_url |= v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("SCIM Base URL: https://"));
    }
    assert!(base_url, "{log}");
}

/// A panic is a JSON log line like any other (the default report is bare text), and a read
/// that panics on a damaged page makes the daemon read every entry back at once: it finds
/// the damage and refuses writes. Pages of the file are overwritten under the running
/// daemon, whose cache is smaller than the file, so that reads come from the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_reading_a_damaged_page_is_logged_as_json_and_stops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = json_logs_config(dir.path(), "tok", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("[storage]\n", "[storage]\ncache_mb = 1\n"),
    )
    .unwrap();
    let p = Proc::start(&cfg);
    let mut ids = Vec::new();
    // Long titles: a file several times the cache in few requests.
    let title = "t".repeat(2000);
    for i in 0..1500 {
        let body = format!("{{\"userName\":\"u{i}@x.example\",\"title\":\"{title}\"}}");
        let r = p
            .client
            .post(format!("https://localhost:{}/scim/v2/Users", p.port))
            .bearer_auth("tok")
            .header("Content-Type", "application/scim+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // Past the writer's idle checkpoint (200 ms idle, then an fsync'd commit: seconds on a
    // loaded disk), then every page but the header's turned to noise.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let file = dir.path().join("state/scimd.redb");
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len > 2 << 20, "{len} bytes: more than the cache holds");
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.seek(std::io::SeekFrom::Start(4096)).unwrap();
        f.write_all(&vec![0xa5; len as usize - 4096]).unwrap();
    }
    let mut failed = 0;
    for id in &ids {
        if p.status(&format!("/scim/v2/Users/{id}"), "tok").await == 500 {
            failed += 1;
        }
    }
    assert!(failed > 0, "no read failed");
    let damaged = || {
        p.log()
            .contains("the database file is damaged (found reading table")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !damaged() {
        assert!(Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = p.post("/scim/v2/Users", "tok", "{\"userName\":\"late@x\"}".into());
    assert_eq!(refused.await, 503);
    let log = p.log();
    let mut panics = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("panicked: ") || message.starts_with("a read panicked: ") {
            panics += 1;
        }
    }
    assert!(panics > 0, "{log}");
}

/// The start names the database it serves, and says when it made a new, empty one: after a
/// typo in storage.dir an IdP would otherwise re-create every user in an empty directory.
#[test]
fn the_start_names_its_database_and_warns_when_it_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let db = dir.path().join("state/scimd.redb");
    let run = || {
        let mut p = Proc::start(&cfg);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.log().contains("  Database: ") {
            assert!(Instant::now() < deadline, "{}", p.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(p.child.id(), "-TERM");
        assert!(p.child.wait().unwrap().success());
        p.log()
    };
    let first = run();
    assert!(
        first.contains(&format!(
            "  Database: {}  (new and empty: made by this start)",
            db.display()
        )) && first.contains("WARN")
            && first.contains("storage.dir names the wrong directory"),
        "{first}"
    );
    let again = run();
    assert!(
        again.contains(&format!("  Database: {}\n", db.display()))
            && !again.contains("new and empty")
            && !again.contains("wrong directory"),
        "{again}"
    );
}

/// Under systemd standard error is the journal's stream, named by JOURNAL_STREAM: each line
/// then starts with its syslog priority, which journald reads (else every line is stored as
/// info, and `journalctl -p warning` shows nothing), and carries no timestamp of its own.
/// A variable naming another stream (inherited by a child) changes nothing.
#[test]
fn lines_to_the_journal_carry_their_priority() {
    use std::os::unix::fs::MetadataExt;
    let serve = |cfg: &std::path::Path, journal: bool, until: &str| {
        let log = cfg.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let m = file.metadata().unwrap();
        let stream = match journal {
            true => format!("{}:{}", m.dev(), m.ino()),
            false => format!("{}:{}", m.dev(), m.ino() + 1),
        };
        let mut child = scimd_bin()
            .args(["serve", "--config"])
            .arg(cfg)
            .env("JOURNAL_STREAM", stream)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = || std::fs::read_to_string(&log).unwrap();
        // One that exited by itself has been reaped by `try_wait`: no pid to signal.
        let mut exited = false;
        while !text().contains(until) {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            assert!(Instant::now() < deadline, "{}", text());
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            kill(child.id(), "-TERM");
        }
        child.wait().unwrap();
        text()
    };
    let dir = tempfile::tempdir().unwrap();
    let on = serve(&okta_config(dir.path()), true, "  Database: ");
    let warned = on
        .lines()
        .find(|l| l.contains("storage.dir names the wrong directory"));
    assert!(warned.is_some_and(|l| l.starts_with("<4> WARN ")), "{on}");
    // No timestamp of its own: the level comes first.
    assert!(on.lines().any(|l| l.starts_with("<6> INFO ")), "{on}");
    let other = tempfile::tempdir().unwrap();
    let off = serve(&okta_config(other.path()), false, "  Database: ");
    assert!(off.lines().all(|l| !l.starts_with('<')), "{off}");
    assert!(
        off.lines()
            .any(|l| l.contains(" WARN ") && l.starts_with("20")),
        "{off}"
    );
    // A file that does not load stops the start: each line of why is an error.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[server\nlisten = 1\n").unwrap();
    let failed = serve(&broken, true, "\n");
    assert!(
        !failed.is_empty() && failed.lines().all(|l| l.starts_with("<3>")),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_tokens_keeps_connections_and_refuses_broken_configs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scimd.toml");
    // Successful reads log at debug: this filter turns their lines on (as documented). The
    // connection kept across reloads is not closed as idle between requests on a slow
    // machine (15 s by default).
    let verbose = |text: String| {
        text.replace("level = \"info\"", "level = \"info,scimd::request=debug\"")
            .replace("[server]\n", "[server]\nheader_timeout_secs = 120\n")
    };
    std::fs::write(
        &cfg,
        verbose(config_text(dir.path(), &token_line("old", "old-token"))),
    )
    .unwrap();
    let mut p = Proc::start(&cfg);
    assert_eq!(p.status("/scim/v2/Users", "old-token").await, 200);
    let health = p
        .client
        .get(format!("https://localhost:{}/healthz", p.port))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let h: serde_json::Value = health.json().await.unwrap();
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));

    // New token list: the new token works, the old one is refused, on the same connection pool.
    // With something check-config warns about, which the reload log says at WARN, as a
    // start does.
    std::fs::write(
        &cfg,
        verbose(config_text(dir.path(), &token_line("new", "new-token"))) + "rate_burst = 5\n",
    )
    .unwrap();
    kill(p.child.id(), "-HUP");
    assert!(
        p.until("/scim/v2/Users", "new-token", 200).await,
        "new token accepted after SIGHUP"
    );
    assert_eq!(p.status("/scim/v2/Users", "old-token").await, 401);
    // The rotation is in the log, by name (the new token may answer before the reload's
    // lines reach the log reader).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("configuration reloaded") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = p.log();
    assert!(
        log.contains("token new added") && log.contains("token old removed"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("reload: tenants.acme.rate_burst")),
        "{log}"
    );

    // A broken file is refused and the previous configuration stays.
    std::fs::write(&cfg, "[server\nlisten = ").unwrap();
    kill(p.child.id(), "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("reload refused") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // On the ERROR line itself, so that grep for it shows why.
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ERROR") && line.contains("line 1"), "{line}");
    assert_eq!(p.status("/scim/v2/Users", "new-token").await, 200);

    // A new secret under the same name is logged as replaced, not as added and removed.
    std::fs::write(
        &cfg,
        verbose(config_text(dir.path(), &token_line("new", "newer-token"))),
    )
    .unwrap();
    kill(p.child.id(), "-HUP");
    assert!(p.until("/scim/v2/Users", "newer-token", 200).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("token new replaced") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = p.log();
    assert!(
        log.contains("token new replaced") && !log.contains("token new removed"),
        "{log}"
    );
    // The same secret made read-only: said too.
    let read_only = token_line("new", "newer-token").replace(" }", ", scope = \"read\" }");
    std::fs::write(&cfg, verbose(config_text(dir.path(), &read_only))).unwrap();
    kill(p.child.id(), "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("token new now has scope read") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        p.log().contains("token new now has scope read"),
        "{}",
        p.log()
    );

    // One log line per request, with the token's name and never the token.
    let log = p.log();
    assert!(
        log.contains("path=\"/Users\"") || log.contains("path=/Users"),
        "{log}"
    );
    assert!(log.contains("token_name=\"new\""), "{log}");
    // Every request, before and after both reloads, went over the one keep-alive connection.
    let peers: std::collections::HashSet<&str> = log
        .lines()
        .filter(|l| l.contains("scimd::request"))
        .filter_map(|l| l.split("peer=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
    for secret in ["new-token", "old-token", "newer-token"] {
        assert!(!log.contains(secret), "the log holds a token");
    }

    // SIGTERM: exit 0.
    kill(p.child.id(), "-TERM");
    let status = p.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_status_at_the_console_while_running_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scimd.toml");
    let text = config_text(dir.path(), &token_line("okta", "tok"))
        + "[tenants.acme.plan]\nname = \"Business\"\ntest_threshold = 1\nexisting_members = [\"old@x\"]\n";
    std::fs::write(&cfg, text).unwrap();
    let mut p = Proc::start(&cfg);
    for u in ["a@x", "b@x"] {
        let body = format!("{{\"userName\":\"{u}\"}}");
        assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
    }
    let run_with = |args: &[&str], code: i32| {
        let out = scimd_bin()
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let run = |args: &[&str]| run_with(args, 0);
    let plan = run(&["plan", "acme"]);
    assert!(
        plan.contains("mode:        enforced")
            && plan.contains("paid:        2")
            && plan.contains("free:        1")
            && plan.contains("active provisioned users: 2")
            && plan.contains("seats:       unlimited\n"),
        "{plan}"
    );
    // The tenant may be named as the other commands name it, too.
    assert_eq!(run(&["plan", "--tenant", "acme"]), plan);
    let status = run(&["status"]);
    // A mistyped tenant is named as such, with the names there are.
    for args in [
        &["plan", "acmee"][..],
        &["users", "list", "--tenant", "acmee"],
    ] {
        let out = scimd_cmd(&cfg, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1)
                && err.contains("no tenant acmee in the configuration (configured: acme)"),
            "{args:?}: {err}"
        );
    }
    let users = run(&[
        "users",
        "list",
        "--tenant",
        "acme",
        "--filter",
        "userName eq \"b@x\"",
    ]);
    assert_eq!(users.lines().count(), 1, "{users}");
    assert!(users.contains("b@x  active"), "{users}");
    let groups = run(&["groups", "list", "--tenant", "acme"]);
    assert_eq!(groups, "");
    // Token names and scopes, never their digests; and where the data lives.
    assert!(
        status.contains("tenant acme: 2 users, 0 groups; tokens: okta (provision)\n"),
        "{status}"
    );
    assert!(!status.contains(&hex(&digest("tok"))), "{status}");
    let db = dir.path().join("state").join("scimd.redb");
    assert!(
        status.contains(&format!("  database: {} (", db.display()))
            && status.contains(" free on its disk)\n"),
        "{status}"
    );
    assert!(
        status.contains(": running, listening on 127.0.0.1:"),
        "{status}"
    );
    assert!(
        status.contains(&format!("(pid {})", p.child.id())),
        "{status}"
    );
    assert!(!status.contains("has changed"), "{status}");
    // A token added to the file without a reload: status says the daemon runs another.
    let edited = std::fs::read_to_string(&cfg).unwrap().replace(
        &token_line("okta", "tok"),
        &format!(
            "{}, {}",
            token_line("okta", "tok"),
            token_line("entra", "tok2")
        ),
    );
    std::fs::write(&cfg, edited).unwrap();
    let stale = run(&["status"]);
    assert!(
        stale.contains("has changed since the daemon read it")
            && stale.contains(&format!("kill -HUP {}", p.child.id())),
        "{stale}"
    );
    // Edited into a file that does not load: status says a reload would be refused.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("[log]", "[log]\ncolour = 1")).unwrap();
    let out = scimd_cmd(&cfg, &["status"]);
    let broken = String::from_utf8_lossy(&out.stdout);
    assert!(
        broken.contains("does not load") && !broken.contains("kill -HUP"),
        "{broken}"
    );
    std::fs::write(&cfg, good).unwrap();
    p.reload().await;
    let fresh = run(&["status"]);
    assert!(!fresh.contains("has changed"), "{fresh}");
    // Another file (a copy): the daemon does not read it, so a reload would not apply it.
    let copy = dir.path().join("copy.toml");
    std::fs::copy(&cfg, &copy).unwrap();
    let out = scimd_cmd(&copy, &["status"]);
    let other = String::from_utf8_lossy(&out.stdout);
    let theirs = cfg.canonicalize().unwrap();
    assert!(
        other.contains(&format!("the daemon reads {}, not", theirs.display()))
            && !other.contains("has changed"),
        "{other}"
    );
    assert!(!fresh.contains("server.listen"), "{fresh}");
    // A new address, reloaded: the daemon keeps listening where it was until a restart.
    let moved = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:9\"");
    std::fs::write(&cfg, moved).unwrap();
    p.reload().await;
    let moved = run(&["status"]);
    assert!(
        moved.contains("note: server.listen is 127.0.0.1:9 in")
            && moved.contains(&format!("but the daemon listens on 127.0.0.1:{}", p.port)),
        "{moved}"
    );
    // Set by this command's environment, the address is not said to be the file's.
    let out = scimd_bin()
        .args(["status", "--config"])
        .arg(&cfg)
        .env("SCIMD_SERVER__LISTEN", "127.0.0.1:7")
        .output()
        .unwrap();
    let env_set = String::from_utf8_lossy(&out.stdout);
    assert!(
        env_set.contains(
            "note: server.listen is 127.0.0.1:7 in SCIMD_SERVER__LISTEN in this command's \
             environment, but the daemon listens on"
        ),
        "{env_set}"
    );
    // A half-edited file (a stray line, a certificate not yet in place) stops neither
    // monitoring nor a backup: they find the database and warn of the problems.
    let good = std::fs::read_to_string(&cfg).unwrap();
    for broken in [
        format!("{good}\nthis is not toml\n"),
        good.replace("[server]", "[server]\nmax_results = \"lots\""),
        good.replace(
            "self_signed = true",
            "cert = \"missing.pem\"\nkey = \"missing.pem\"",
        ),
    ] {
        assert_ne!(broken, good);
        std::fs::write(&cfg, &broken).unwrap();
        let backup = dir.path().join("half-edited.redb");
        for args in [
            &["status"][..],
            &["backup", "--to", backup.to_str().unwrap()],
        ] {
            let out = scimd_cmd(&cfg, args);
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(
                out.status.success() && stderr.contains("warning: invalid configuration"),
                "{args:?} {broken}: {stdout} {stderr}"
            );
            if args[0] == "status" {
                assert!(stdout.contains(": running, listening on"), "{stdout}");
                // Read around its broken lines, the file's listen may be the default: not
                // compared with where the daemon listens (a restart would fail anyway).
                assert!(!stdout.contains("note: server.listen is"), "{stdout}");
            }
        }
        assert!(backup.exists());
        std::fs::remove_file(&backup).unwrap();
        // A command that writes still refuses the file (read around its broken lines, it
        // could lack the tenant a purge names).
        let out = scimd_cmd(&cfg, &["import", "--tenant", "acme", "--from", "/dev/null"]);
        assert_eq!(out.status.code(), Some(2), "{broken}");
        let out = scimd_cmd(&cfg, &["tenant", "purge", "nosuch", "--yes"]);
        assert_eq!(out.status.code(), Some(2), "{broken}");
    }
    // A tenant with a plan added to the file but not yet loaded: the refusal says to reload.
    let added = format!(
        "{good}\n[tenants.beta]\ntokens = [{}]\n[tenants.beta.plan]\nname = \"Team\"\n",
        token_line("okta", "tok3")
    );
    std::fs::write(&cfg, added).unwrap();
    let out = scimd_cmd(&cfg, &["plan", "beta"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && err.contains("the running daemon loaded the file before it was added"),
        "{err}"
    );
    std::fs::write(&cfg, &good).unwrap();
    // Any other refusal is not about reloading.
    let out = scimd_cmd(
        &cfg,
        &[
            "users",
            "list",
            "--tenant",
            "acme",
            "--filter",
            "active eq flase",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && err.contains("true or false")
            && !err.contains("loaded the file"),
        "{err}"
    );
    // Taken out of the file but not yet reloaded: the daemon still serves the tenant, and
    // refuses to purge it.
    std::fs::write(&cfg, good.replace("[tenants.acme", "[tenants.other")).unwrap();
    let out = scimd_cmd(&cfg, &["tenant", "purge", "acme", "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && err.contains("still serves tenant acme: reload it first"),
        "{err}"
    );
    // Asked without --yes, it says the same, not to run it again with --yes.
    let out = scimd_cmd(&cfg, &["tenant", "purge", "acme"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && err.contains("still serves") && !err.contains("--yes"),
        "{err}"
    );
    // Reloaded without it and then with it again: the daemon serves the kept data, and
    // warns that it does (another customer given the name would be served it too).
    p.reload().await;
    std::fs::write(&cfg, &good).unwrap();
    p.reload().await;
    let log = p.log();
    assert!(
        log.contains("tenant acme added, and served the 2 users and 0 groups"),
        "{log}"
    );
    let body = "{\"displayName\":\"Eng\"}".to_string();
    assert_eq!(p.post("/scim/v2/Groups", "tok", body).await, 201);
    let groups = run(&["groups", "list", "--tenant", "acme"]);
    assert!(
        groups.trim_end().ends_with("  Eng"),
        "a group has no active state: {groups}"
    );
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    // With the daemon stopped, the same command reads the database itself.
    let plan = run(&["plan", "acme"]);
    assert!(
        plan.contains("paid:        2")
            && plan.contains("active provisioned users: 2")
            && !plan.contains("note:"),
        "{plan}"
    );
    // Settings edited while it is stopped: the command says they wait for the next start.
    let edited = good.replace("test_threshold = 1\n", "test_threshold = 5\nseats = 1\n");
    assert_ne!(edited, good);
    std::fs::write(&cfg, &edited).unwrap();
    let plan = run(&["plan", "acme"]);
    assert!(
        plan.contains("mode:        testing")
            && plan.contains(
                "the file's plan settings differ from those it last applied \
                 (test_threshold, seats)"
            )
            && plan.contains("the next start applies"),
        "{plan}"
    );
    std::fs::write(&cfg, &good).unwrap();
    // Exit 3, as an init script's `status` says "not running".
    assert!(run_with(&["status"], 3).contains(": not running"));
    // Adding the tenant that is still configured says so, not that its data is left over.
    let out = scimd_cmd(&cfg, &["tenant", "add", "acme"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2)
            && err.contains("tenant \"acme\" already exists")
            && !err.contains("earlier tenant"),
        "{err}"
    );
    // A tenant taken out of the file is still listed, with what it keeps.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("[tenants.acme", "[tenants.other")).unwrap();
    let status = run_with(&["status"], 3);
    assert!(
        status.contains("tenant acme (not in the config file")
            && status.contains("2 users, 1 group"),
        "{status}"
    );
    // A new tenant under its name would be served its data: refused, with both ways on.
    let out = scimd_cmd(&cfg, &["tenant", "add", "acme"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2)
            && err.contains("still holds 2 users and 1 group under the name acme")
            && err.contains("--keep-data")
            // The commands it suggests name this file, as they would be run.
            && err.contains(&format!("`scimd tenant purge acme --yes --config {}`", cfg.display()))
            && err.contains(&format!(
                "`scimd export --tenant acme --config {} --out acme.jsonl`",
                cfg.display()
            )),
        "{err}"
    );
    assert!(
        !std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("[tenants.acme]")
    );
    // Its data can still be read, and taken away, before it is purged.
    let users = run(&["users", "list", "--tenant", "acme"]);
    assert!(users.contains("a@x") && users.contains("b@x"), "{users}");
    let export = run(&["export", "--tenant", "acme"]);
    assert_eq!(export.lines().count(), 3, "two users and a group: {export}");
    // Purged: it asks first, refuses a configured tenant, and then the data is gone.
    for (args, code, says) in [
        (
            &["tenant", "purge", "acme"][..],
            2,
            "acme (2 users and 1 group) out of the database",
        ),
        (
            &["tenant", "purge", "other", "--yes"],
            2,
            "take it out (`scimd tenant remove other`)",
        ),
    ] {
        let out = scimd_cmd(&cfg, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(code) && err.contains(says),
            "{args:?}: {err}"
        );
    }
    assert!(run(&["tenant", "purge", "acme", "--yes"]).starts_with("purged tenant acme: "));
    let status = run_with(&["status"], 3);
    assert!(!status.contains("tenant acme"), "{status}");
    run(&["verify"]);
    // Again, or a name never used (a typo): nothing to purge, which is not a purge done.
    // Asked first, it says there are no users or groups.
    let out = scimd_cmd(&cfg, &["tenant", "purge", "acmee"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2)
            && err.contains("(no users or groups; perhaps its change feed)"),
        "{err}"
    );
    for name in ["acme", "acmee"] {
        let out = scimd_cmd(&cfg, &["tenant", "purge", name, "--yes"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1)
                && err.contains(&format!("nothing is stored under tenant {name}")),
            "{err}"
        );
    }
    // Nothing was written under the typo: a restore names every feed the database numbers.
    let backup = dir.path().join("after-typo.redb");
    run(&["backup", "--to", backup.to_str().unwrap()]);
    let restored = run(&["restore", "--from", backup.to_str().unwrap()]);
    assert!(
        restored.contains("(acme ") && !restored.contains("acmee"),
        "{restored}"
    );
    // Now the name is free for a new customer.
    assert!(run(&["tenant", "add", "acme"]).starts_with("Added tenant acme"));
}

pub(crate) fn scimd_cmd(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    scimd_bin()
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_writes_restore_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let mut p = Proc::start(&cfg);
    let url = format!("https://localhost:{}/scim/v2/Users", p.port);
    let create = |client: reqwest::Client, url: String, name: String| async move {
        let r = client
            .post(url)
            .bearer_auth("tok")
            .header("Content-Type", "application/scim+json")
            .body(format!("{{\"userName\":\"{name}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let mut before = Vec::new();
    for i in 0..50 {
        before.push(create(p.client.clone(), url.clone(), format!("pre{i}@x")).await);
    }
    let body = serde_json::json!({"displayName": "G", "members": [{"value": before[0]}]});
    assert_eq!(
        p.post("/scim/v2/Groups", "tok", body.to_string()).await,
        201
    );
    // Writes keep going while the backup is taken.
    let writer = {
        let (client, url) = (p.client.clone(), url.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                create(client.clone(), url.clone(), format!("during{i}@x")).await;
            }
        })
    };
    let backup = dir.path().join("backup.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup holds the whole directory");
    }
    // The daemon's journal keeps a line of it, for an audit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("backup made for `scimd backup`") {
        assert!(Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.await.unwrap();
    let out = scimd_cmd(&cfg, &["verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "live verify: {err}");
    // The pages' checksums too, the writes being over.
    assert!(
        err.contains("the checksum of every page of the file on disk included"),
        "{err}"
    );
    // Restore refuses while the daemon runs.
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a refusal");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    // With its socket gone (deleted by hand), the daemon's hold on the file still refuses
    // both, each saying so in its own words.
    let sock = cfg.parent().unwrap().join("state/admin.sock");
    let moved = sock.with_extension("moved");
    std::fs::rename(&sock, &moved).unwrap();
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "a refusal: {err}");
    assert!(err.contains("in use (is scimd running?)"), "{err}");
    let out = scimd_cmd(&cfg, &["verify"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains("is open in another process") && !err.contains("Cannot acquire lock"),
        "{err}"
    );
    std::fs::rename(&moved, &sock).unwrap();
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    // Restored twice: each restore keeps the database it replaced, under its own name.
    let state = cfg.parent().unwrap().join("state");
    for kept in ["scimd.before-restore", "scimd.before-restore.1"] {
        let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(kept),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(state.join(kept).exists(), "{kept}");
    }
    let out = scimd_cmd(&cfg, &["verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify after restore: {err}");
    assert!(!err.contains("checked by the running daemon"), "{err}");
    let p = Proc::start(&cfg);
    for id in &before {
        assert_eq!(
            p.status(&format!("/scim/v2/Users/{id}"), "tok").await,
            200,
            "acknowledged before the backup"
        );
    }
    let g = p
        .get_json("/scim/v2/Groups?filter=displayName%20eq%20%22G%22", "tok")
        .await;
    assert_eq!(g["Resources"][0]["members"][0]["value"], before[0].as_str());
    drop(p);
    // A new machine, never started: reading commands find no database and say so (an
    // empty one would pass verify); restore makes the state directory, and status and
    // verify read the restored file.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_cfg = okta_config(fresh.path());
    // Status exits 3 (not running) as for a stopped daemon, so that monitoring reads a
    // service not yet started as stopped rather than broken.
    for (args, code) in [(["verify"], 1), (["status"], 3)] {
        let out = scimd_cmd(&fresh_cfg, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(code) && err.contains("no database at"),
            "{args:?}: {err}"
        );
    }
    assert!(!fresh.path().join("state").exists());
    // An empty file where the database should be: verify explains it as a start does.
    std::fs::create_dir(fresh.path().join("state")).unwrap();
    std::fs::File::create(fresh.path().join("state/scimd.redb")).unwrap();
    let out = scimd_cmd(&fresh_cfg, &["verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains("exists but holds nothing"),
        "{err}"
    );
    std::fs::remove_dir_all(fresh.path().join("state")).unwrap();
    // A file whose errors may hide where the database is (a table header half-typed, so
    // storage.dir reads as the default): status cannot tell, and says so with LSB's 4
    // rather than "not running", on which a monitor would restart a running service.
    // (On a machine with the package installed, the default storage.dir holds its database,
    // which status then reads.)
    let good = std::fs::read_to_string(&fresh_cfg).unwrap();
    if std::path::Path::new("/var/lib/scimd/scimd.redb").exists() {
        eprintln!("SKIPPED: a half-typed header with a database at the default storage.dir");
    } else {
        std::fs::write(&fresh_cfg, good.replace("[storage]", "[storage")).unwrap();
        let out = scimd_cmd(&fresh_cfg, &["status"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(4) && err.contains("cannot tell whether scimd runs"),
            "{err}"
        );
        std::fs::write(&fresh_cfg, &good).unwrap();
    }
    for (args, code) in [
        (vec!["restore", "--from", backup.to_str().unwrap()], 0),
        (vec!["verify"], 0),
        // Read from the restored file; 3: the daemon is not running.
        (vec!["status"], 3),
    ] {
        let out = scimd_cmd(&fresh_cfg, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?} on a fresh host: {err}"
        );
        // Root made the directory and the database in it: both are to be given away.
        if args[0] == "restore" && running_as_root() {
            let state = fresh.path().join("state");
            let chown = format!("`chown -R scimd:scimd {}`", state.display());
            assert!(err.contains(&chown), "{err}");
        }
    }
    assert!(fresh.path().join("state/scimd.redb").exists());
}

/// An import whose console is killed stops (it does not go on unseen while the admin runs it
/// again), and a second import into the same tenant while one runs is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_stops_when_its_console_goes_away_and_runs_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    const N: u64 = 30_000;
    let file = dir.path().join("many.jsonl");
    let lines: String = (0..N)
        .map(|i| {
            serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": uuid::Uuid::now_v7().to_string(), "userName": format!("u{i}@x")})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let import = || {
        scimd_bin()
            .args(["import", "--tenant", "acme", "--from"])
            .arg(&file)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let count = || async {
        p.get_json("/scim/v2/Users?count=0", "tok").await["totalResults"]
            .as_u64()
            .unwrap()
    };
    let mut first = import();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count().await == 0 {
        assert!(Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = import().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains("an import into tenant acme is already running"),
        "{err}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.log().contains("import stopped: its console went away") {
        assert!(Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Creates already handed to the writer finish (on a loaded machine that took more
    // than 300 ms); then nothing more is written. An import that went on would reach N.
    // Stopped: the same count four times a second apart (a commit can take a while).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut stopped, mut same) = (count().await, 0);
    while same < 4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = count().await;
        same = if now == stopped { same + 1 } else { 0 };
        assert!(Instant::now() < deadline, "still writing: {now}");
        stopped = now;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count().await, stopped);
    assert!(stopped < N, "{stopped}");
    // Run again, it finishes the job.
    let again = import().wait_with_output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(count().await, N);
}

/// The database at `path`, opened once a dropped store's writer thread has let go of it
/// (it does once its queue closes).
fn released(path: &std::path::Path) -> redb::Database {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match redb::Database::create(path) {
            Ok(db) => return db,
            Err(_) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("database not released: {e}"),
        }
    }
}

#[test]
fn verify_reports_a_broken_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    // A database with one userName index entry pointing at no user.
    {
        let store =
            scimd::store::Store::open(&dir.path().join("state/scimd.redb"), 1 << 20).unwrap();
        drop(store);
    }
    let db = released(&dir.path().join("state/scimd.redb"));
    let w = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<(&str, &str), u128> =
            redb::TableDefinition::new("tenant_username_userid");
        w.open_table(def)
            .unwrap()
            .insert(("acme", "ghost@x"), 42u128)
            .unwrap();
    }
    w.commit().unwrap();
    drop(db);
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("userName index: stale") && err.contains("ghost@x"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_an_empty_host_gives_the_same_resources() {
    let a_dir = tempfile::tempdir().unwrap();
    let a_cfg = okta_config(a_dir.path());
    let p = Proc::start(&a_cfg);
    let post = |path: &str, body: serde_json::Value| {
        let (client, url) = (
            p.client.clone(),
            format!("https://localhost:{}/scim/v2{path}", p.port),
        );
        async move {
            let r = client
                .post(url)
                .bearer_auth("tok")
                .header("Content-Type", "application/scim+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let u1 = post("/Users", serde_json::json!({"userName": "ann@x", "name": {"givenName": "Ann"}, "emails": [{"value": "ann@x", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}})).await;
    let u2 = post(
        "/Users",
        serde_json::json!({"userName": "bob@x", "active": false}),
    )
    .await;
    // A version past the first, which the import must keep.
    let r = p
        .client
        .patch(format!("https://localhost:{}/scim/v2/Users/{u2}", p.port))
        .bearer_auth("tok")
        .header("Content-Type", "application/scim+json")
        .body(r#"{"Operations":[{"op":"replace","path":"title","value":"Ops"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let inner = post(
        "/Groups",
        serde_json::json!({"displayName": "Inner", "members": [{"value": u2}]}),
    )
    .await;
    post(
        "/Groups",
        serde_json::json!({"displayName": "Outer", "members": [{"value": u1}, {"value": inner}]}),
    )
    .await;
    let snapshot = |p: &Proc| {
        let (client, port) = (p.client.clone(), p.port);
        async move {
            let mut all = Vec::new();
            for kind in ["Users", "Groups"] {
                let v: serde_json::Value = client
                    .get(format!("https://localhost:{port}/scim/v2/{kind}?sortBy=id"))
                    .bearer_auth("tok")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for mut r in v["Resources"].as_array().unwrap().clone() {
                    // An import keeps the meta it is given. A group's members are added
                    // after it, which moves its version and lastModified on.
                    let meta = r.as_object_mut().unwrap().remove("meta").unwrap();
                    r["meta"] = match kind {
                        "Users" => meta,
                        _ => serde_json::json!({"created": meta["created"]}),
                    };
                    if let Some(m) = r.get_mut("members").and_then(|m| m.as_array_mut()) {
                        m.sort_by(|a, b| a["value"].as_str().cmp(&b["value"].as_str()));
                    }
                    all.push(r);
                }
            }
            // `$ref`s carry the host's address; the rest must be identical.
            serde_json::Value::Array(all)
                .to_string()
                .replace(&format!("localhost:{port}"), "HOST")
        }
    };
    let before = snapshot(&p).await;
    let out = scimd_cmd(&a_cfg, &["export", "--tenant", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(lines.lines().count(), 4);
    drop(p);

    let b_dir = tempfile::tempdir().unwrap();
    let b_cfg = okta_config(b_dir.path());
    let import = |lines: &str, name: &str| {
        let file = b_dir.path().join(name);
        std::fs::write(&file, lines).unwrap();
        let out = scimd_cmd(
            &b_cfg,
            &[
                "import",
                "--tenant",
                "acme",
                "--from",
                file.to_str().unwrap(),
            ],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // An import that stopped after the two users (a kill, a full disk) is finished by
    // running the whole file again: what is there is skipped.
    let users: String = lines.lines().take(2).map(|l| format!("{l}\n")).collect();
    let (ok, text) = import(&users, "users.jsonl");
    assert!(ok && text.contains("imported 2 "), "{text}");
    let (ok, text) = import(&lines, "acme.jsonl");
    assert!(ok, "{text}");
    assert!(
        text.contains("imported 2 ") && text.contains("2 were there already"),
        "{text}"
    );
    let mut q = Proc::start(&b_cfg);
    assert_eq!(snapshot(&q).await, before);
    // The import closed the file before it printed and exited.
    assert!(!q.log().contains("not closed cleanly"), "{}", q.log());
    // Through the daemon: the same file again writes nothing and says so.
    let (ok, text) = import(&lines, "acme.jsonl");
    assert!(
        ok && text.contains("imported 0 ") && text.contains("4 were there"),
        "{text}"
    );
    // Refused before anything is written: a name another id holds in the tenant, a name
    // twice in the file, a member that points nowhere.
    let fresh = |name: &str| {
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": uuid::Uuid::now_v7().to_string(), "userName": name})
        .to_string()
    };
    let ghost = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": uuid::Uuid::now_v7().to_string(), "displayName": "Ghosts",
        "members": [{"value": uuid::Uuid::now_v7().to_string()}]})
    .to_string();
    for (file, want) in [
        (
            format!("{}\n{}\n", fresh("new@x"), fresh("ANN@x")),
            "is taken in tenant acme by",
        ),
        (
            format!("{}\n{}\n", fresh("new@x"), fresh("NEW@x")),
            "is also on line 1",
        ),
        (
            format!("{}\n{ghost}\n", fresh("new@x")),
            "neither in the file nor in tenant",
        ),
    ] {
        let (ok, text) = import(&file, "bad.jsonl");
        assert!(!ok && text.contains(want), "{want}: {text}");
        assert_eq!(snapshot(&q).await, before, "{want}: nothing written");
    }
    // Each problem on a line of its own.
    let file = format!(
        "{}\n{}\n{}\n",
        fresh("new@x"),
        fresh("NEW@x"),
        fresh("New@x")
    );
    let (ok, text) = import(&file, "bad.jsonl");
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("is also on line"))
        .collect();
    assert!(!ok && said.len() == 2 && !text.contains("\\n"), "{text}");
    // A member that is no member (a third chunk's, past 2,000 of them) refuses the file,
    // naming its line, before anything is written.
    let many: Vec<String> = (0..2500).map(|i| fresh(&format!("member{i}@x"))).collect();
    let ids: Vec<serde_json::Value> = many
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].clone())
        .collect();
    let group = |members: serde_json::Value| {
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": uuid::Uuid::now_v7().to_string(), "displayName": "Everyone",
            "members": members})
        .to_string()
    };
    let mut members: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"value": id, "display": "a, [b] \"c\""}))
        .collect();
    members[2200] = serde_json::json!({"value": ids[2200], "type": "Robot"});
    let file = format!("{}\n{}\n", many.join("\n"), group(members.clone().into()));
    let (ok, text) = import(&file, "bad.jsonl");
    assert!(
        !ok && text.contains("line 2501: member type must be"),
        "{text}"
    );
    assert_eq!(snapshot(&q).await, before, "nothing written");
    // Fixed, the group gets every member, a thousand to a write (its members are read from
    // its line a chunk at a time).
    members[2200] = serde_json::json!({"value": ids[2200]});
    let file = format!("{}\n{}\n", many.join("\n"), group(members.into()));
    let (ok, text) = import(&file, "many.jsonl");
    assert!(ok && text.contains("imported 2501 "), "{text}");
    let got: serde_json::Value = q
        .get(
            "/scim/v2/Groups?filter=displayName%20eq%20%22Everyone%22",
            "tok",
        )
        .await
        .json()
        .await
        .unwrap();
    let g = &got["Resources"][0];
    let held = g["members"].as_array().unwrap();
    assert_eq!(held.len(), 2500);
    assert!(
        held.iter()
            .any(|m| m["value"] == ids[2499] && m["display"] == "a, [b] \"c\""),
        "{g}"
    );
    kill(q.child.id(), "-TERM");
    assert!(q.child.wait().unwrap().success());
    // An export whose reader went away (`| head`) ends at its first line, and leaves the
    // file closed: the next start needs no repair.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = scimd_bin()
        .args(["export", "--tenant", "acme", "--config"])
        .arg(&b_cfg)
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(141),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(q);
    let r = Proc::start(&b_cfg);
    assert!(!r.log().contains("not closed cleanly"), "{}", r.log());
    drop(r);
}

fn write_cert(dir: &std::path::Path) -> Vec<u8> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    // Key first, then the certificate: the watcher sees both files change.
    scimd::tls::write_private(
        &dir.join("key.pem"),
        ck.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    ck.cert.der().to_vec()
}

async fn served_cert(port: u16, trust: &[Vec<u8>]) -> Vec<u8> {
    let certs: Vec<reqwest::Certificate> = trust
        .iter()
        .map(|d| reqwest::Certificate::from_der(d).unwrap())
        .collect();
    let c = reqwest::Client::builder()
        .tls_certs_only(certs)
        .tls_info(true)
        .no_proxy()
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

/// A certificate and key in `dir`, valid from `from` to `to` days from now.
pub(crate) fn dated_cert(
    dir: &std::path::Path,
    from: i64,
    to: i64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = dated_pem(from, to);
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    scimd::tls::write_private(&k, key.as_bytes()).unwrap();
    std::fs::write(&c, cert).unwrap();
    (c, k)
}

/// A self-signed certificate for localhost valid from `from` to `to` days from now, and
/// its key, as PEM.
pub(crate) fn dated_pem(from: i64, to: i64) -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.not_before = now + time::Duration::days(from);
    p.not_after = now + time::Duration::days(to);
    let key = rcgen::KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// IdPs refuse an expired certificate with nothing in scimd's log to say why: the daemon
/// warns at start, and of a certificate a reload brings that ends within two weeks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_or_past_its_end_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(dir.path().join("state/tls")).unwrap();
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key) = dated_cert(&tls, -400, -30);
    std::fs::copy(&cert, dir.path().join("state/tls/cert.pem")).unwrap();
    let cfg = dir.path().join("scimd.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), &token_line("okta", "tok")).replace(
            "self_signed = true",
            &format!("cert = {:?}\nkey = {:?}", cert.display(), key.display()),
        ),
    )
    .unwrap();
    let p = Proc::start(&cfg);
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !p.log().contains(what) {
            assert!(Instant::now() < deadline, "no {what:?} in:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("tls: the certificate expired on ");
    // No IdP can connect: an error, and `scimd status` says so too.
    let expired = p.log();
    let line = expired
        .lines()
        .find(|l| l.contains("tls: the certificate expired on "));
    assert!(line.is_some_and(|l| l.contains("ERROR")), "{expired}");
    let status = |want: &str| {
        let out = scimd_cmd(&cfg, &["status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains(want), "no {want:?} in:\n{text}");
        assert!(out.status.success(), "{text}");
    };
    status("  CERTIFICATE: the certificate expired on ");
    // Renewed, but by something that issued it for five days only.
    dated_cert(&tls, -1, 5);
    kill(p.child.id(), "-HUP");
    wait_for("configuration reloaded");
    let renewed = p.log();
    let line = renewed
        .lines()
        .find(|l| l.contains("reload: tls: the certificate expires on "));
    assert!(
        line.is_some_and(|l| l.contains(" WARN ") && l.contains(", in 4 days: renew it")),
        "{renewed}"
    );
    status("  CERTIFICATE: the certificate expires on ");
    // Files that no longer load: the daemon serves what it has, a restart would fail.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    status("  CERTIFICATE FILES DO NOT LOAD: tls.cert: ");
    // A year's certificate: its end, without alarm.
    dated_cert(&tls, -1, 365);
    status(", valid until ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_files_are_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let first = write_cert(&tls);
    let cfg = dir.path().join("scimd.toml");
    // Started without watching (0); a reload turns it on.
    let text = |watch: u32| {
        config_text(dir.path(), &token_line("okta", "tok")).replace(
            "self_signed = true",
            &format!(
                "cert = \"{}\"\nkey = \"{}\"\nwatch_secs = {watch}",
                tls.join("cert.pem").display(),
                tls.join("key.pem").display()
            ),
        )
    };
    std::fs::write(&cfg, text(0)).unwrap();
    // Proc::start trusts state/tls/cert.pem: put the served certificate there too.
    std::fs::create_dir_all(dir.path().join("state/tls")).unwrap();
    std::fs::copy(tls.join("cert.pem"), dir.path().join("state/tls/cert.pem")).unwrap();
    let p = Proc::start(&cfg);
    assert_eq!(
        served_cert(p.port, std::slice::from_ref(&first)).await,
        first
    );
    std::fs::write(&cfg, text(1)).unwrap();
    p.reload().await;
    std::thread::sleep(Duration::from_millis(1100)); // a newer modification time than the first files
    let second = write_cert(&tls);
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_cert(p.port, &[first.clone(), second.clone()]).await != second {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken renewal is refused; the last good certificate stays. It is tried twice
    // first: a renewal writes the certificate and the key one after the other.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(tls.join("cert.pem"), "not a certificate").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !p
        .log()
        .contains("cannot be used; keeping the old certificate")
    {
        assert!(Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = p.log();
    let (retry, refused) = (
        log.find("do not load yet (a renewal still writing them?); trying again in 1 s"),
        log.find("cannot be used; keeping the old certificate"),
    );
    assert!(retry.is_some() && retry < refused, "{log}");
    assert_eq!(served_cert(p.port, &[first, second.clone()]).await, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_writes_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let mut p = Proc::start(&cfg);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, url, acked) = (
            p.client.clone(),
            format!("https://localhost:{}/scim/v2/Users", p.port),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000 {
                // Bounded: once, in CI, a client waited on forever after the server had
                // exited, with no connection left (the server's part is what is tested).
                let r = client
                    .post(&url)
                    .bearer_auth("tok")
                    .header("Content-Type", "application/scim+json")
                    .body(format!("{{\"userName\":\"w{w}-{i}@x\"}}"))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        let v: serde_json::Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => break,
                        };
                        acked
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_string());
                    }
                    _ => break,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill(p.child.id(), "-TERM");
    for t in tasks {
        t.await.unwrap();
    }
    let status = p.child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", p.log());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);
    let q = Proc::start(&cfg);
    for id in &acked {
        assert_eq!(
            q.status(&format!("/scim/v2/Users/{id}"), "tok").await,
            200,
            "acknowledged write {id} lost"
        );
    }
    // A clean stop records the allocator state: the next start opens without a repair.
    assert!(
        !q.log().contains("not closed cleanly"),
        "a stop by SIGTERM left a file that needed repair: {}",
        q.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_through_the_daemon_draws_a_progress_bar_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    // 600 lines: three windows of creates, so three progress updates.
    let lines: String = (0..600)
        .map(|i| {
            let id = uuid::Uuid::now_v7();
            format!(
                "{}\n",
                serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "id": id.to_string(), "userName": format!("u{i}@x")})
            )
        })
        .collect();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, lines).unwrap();
    // `script` gives the command a terminal, as an admin at the console has.
    let cmd = format!(
        "{} import --tenant acme --from {} --config {}",
        env!("CARGO_BIN_EXE_scimd"),
        file.display(),
        cfg.display()
    );
    let out = runner_env_removed(&mut Command::new("script"))
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for step in ["256/600", "512/600", "600/600"] {
        assert!(text.contains(step), "no {step} in {text:?}");
    }
    assert!(text.contains(&format!("[{}]", "#".repeat(30))), "{text:?}");
    assert!(text.contains("imported 600 resources"), "{text:?}");
    // It went through the running daemon (the file is locked by it), and all 600 are there.
    let total = p.get_json("/scim/v2/Users?count=0", "tok").await;
    assert_eq!(total["totalResults"], 600);
    // The journal has it too, with counts and no values.
    let log = p.log_with("import finished").await;
    assert!(
        log.contains("import finished") && log.contains("written=600"),
        "{log}"
    );
    // Without a terminal there is no bar, only the result.
    let out = scimd_cmd(&cfg, &["export", "--tenant", "acme"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_one_object_per_request_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = json_logs_config(dir.path(), "sekrit-json-token", "");
    let p = Proc::start(&cfg);
    assert_eq!(p.status("/scim/v2/Users", "sekrit-json-token").await, 200);
    assert_eq!(p.status("/scim/v2/Users", "wrong-token").await, 401);
    let body = r#"{"userName": "ann@example.com"}"#.to_string();
    assert_eq!(
        p.post("/scim/v2/Users", "sekrit-json-token", body).await,
        201
    );
    // The request line is logged after the answer is sent; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    let requests = loop {
        let log = p.log();
        let found: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .filter(|v: &serde_json::Value| {
                let message = v["fields"]["message"].as_str().unwrap_or_default();
                message == "request" || message.starts_with("authentication refused: ")
            })
            .collect();
        if found.len() >= 2 || Instant::now() > deadline {
            assert!(
                !log.contains("sekrit-json-token"),
                "token in the log: {log}"
            );
            assert!(!log.contains("\u{1b}["), "colour codes in the log");
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(requests.len() >= 2, "{requests:?}");
    // At info: the change and the refusal, not the successful read.
    assert!(
        !requests.iter().any(|v| v["fields"]["status"] == 200),
        "{requests:?}"
    );
    let ok = requests
        .iter()
        .find(|v| v["fields"]["status"] == 201)
        .expect("a 201 line");
    assert_eq!(ok["level"], "INFO");
    assert_eq!(ok["fields"]["method"], "POST");
    assert_eq!(ok["fields"]["path"], "/Users", "the path template");
    assert_eq!(ok["fields"]["tenant"], "acme");
    assert_eq!(ok["fields"]["token_name"], "okta");
    // A write names what it changed: here the id the create made, as the user has it.
    let made = ok["fields"]["resource_id"]
        .as_str()
        .expect("the created id");
    let found = p.get(
        "/scim/v2/Users?filter=userName%20eq%20%22ann@example.com%22",
        "sekrit-json-token",
    );
    let found: serde_json::Value = found.await.json().await.unwrap();
    assert_eq!(found["Resources"][0]["id"], made, "{ok}");
    // And a change names the id from its URL.
    let url = format!("https://localhost:{}/scim/v2/Users/{made}", p.port);
    let off = r#"{"Operations":[{"op":"replace","path":"active","value":false}]}"#;
    let sent = p.client.patch(&url).bearer_auth("sekrit-json-token");
    let sent = sent
        .header("Content-Type", "application/scim+json")
        .body(off);
    assert_eq!(sent.send().await.unwrap().status(), 200);
    let log = p.log_with("\"method\":\"PATCH\"").await;
    let line = log.lines().find(|l| l.contains("\"method\":\"PATCH\""));
    let named = format!("\"resource_id\":\"{made}\"");
    assert!(line.is_some_and(|l| l.contains(&named)), "{log}");
    assert!(ok["fields"]["latency_ms"].as_f64().is_some(), "{ok}");
    // Microsecond resolution, not float noise like 1.5380770000000001.
    let latency = ok["fields"]["latency_ms"].to_string();
    assert!(
        latency.split('.').nth(1).is_none_or(|d| d.len() <= 3),
        "{latency}"
    );
    assert!(ok["timestamp"].is_string(), "{ok}");
    // The refusal's one line says why, with the request's fields.
    let refused = requests
        .iter()
        .find(|v| v["fields"]["status"] == 401)
        .expect("a 401 line");
    assert_eq!(
        refused["fields"]["message"],
        "authentication refused: the token matches no configured token (a new one not yet reloaded, or a removed or mistyped one)"
    );
    assert_eq!(refused["fields"]["path"], "/Users", "{refused}");

    // An IdP's own URN in `schemas` with nothing under it drops nothing: not warned of.
    let body = r#"{"userName": "a@example.com", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"]}"#;
    assert_eq!(
        p.post("/scim/v2/Users", "sekrit-json-token", body.into())
            .await,
        201
    );
    // Attributes the server does not have: their names, as a string `jq` can split, at WARN
    // once an hour for the same names, as a full sync sends them with every user.
    for (user, extra) in [("b", "shoeSize"), ("c", "shoeSize"), ("d", "hatSize")] {
        let body = format!(r#"{{"userName": "{user}@example.com", "{extra}": 42}}"#);
        assert_eq!(
            p.post("/scim/v2/Users", "sekrit-json-token", body).await,
            201
        );
    }
    // An extension nobody declared, in `schemas` and as its object's key: named once.
    let body = r#"{"userName": "e@example.com", "schemas": ["urn:x:acme:2.0:User"],
        "urn:x:acme:2.0:User": {"costCenter": "1"}}"#;
    assert_eq!(
        p.post("/scim/v2/Users", "sekrit-json-token", body.into())
            .await,
        201
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let said = |log: String| -> Vec<serde_json::Value> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("ignored unknown attributes"))
            })
            .collect()
    };
    while said(p.log()).len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let said = said(p.log());
    let names: Vec<&str> = said
        .iter()
        .map(|v| v["fields"]["attributes"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shoeSize", "hatSize", ""], "{said:?}");
    assert_eq!(
        said[2]["fields"]["schemas"], "urn:x:acme:2.0:User",
        "{said:?}"
    );
    assert!(said.iter().all(|v| v["level"] == "WARN"), "{said:?}");
    // Named by the fields the request lines use.
    assert!(
        said.iter()
            .all(|v| v["fields"]["token_name"] == "okta" && v["fields"]["tenant"] == "acme"),
        "{said:?}"
    );

    // A refusal's line names its scimType, and a path no endpoint has is shown as sent.
    let body = r#"{"userName": "b@example.com"}"#.to_string();
    assert_eq!(
        p.post("/scim/v2/Users", "sekrit-json-token", body).await,
        409
    );
    assert_eq!(p.status("/scim/v2/Nope", "sekrit-json-token").await, 404);
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines: Vec<serde_json::Value> = p
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["status"] == 409 || v["fields"]["status"] == 404)
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let conflict = lines.iter().find(|v| v["fields"]["status"] == 409);
    assert_eq!(
        conflict.map(|v| &v["fields"]["scim_type"]),
        Some(&serde_json::json!("uniqueness")),
        "{lines:?}"
    );
    // The detail the IdP was given, so that the log alone says what to fix.
    let detail = conflict
        .and_then(|v| v["fields"]["detail"].as_str())
        .unwrap_or_default();
    assert!(detail.starts_with("userName is already taken"), "{lines:?}");
    let missing = lines.iter().find(|v| v["fields"]["status"] == 404);
    assert_eq!(
        missing.map(|v| &v["fields"]["unknown_path"]),
        Some(&serde_json::json!("/scim/v2/Nope")),
        "{lines:?}"
    );
    // A token pasted into the path by mistake is withheld from the line that shows it.
    assert_eq!(
        p.status("/scim/v2/sekrit-json-token/Users", "sekrit-json-token")
            .await,
        404
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.log().contains("/scim/v2/(a token, withheld)/Users") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nor where the tenant's name belongs.
    assert_eq!(
        p.status(
            "/tenants/sekrit-json-token/scim/v2/Users",
            "sekrit-json-token"
        )
        .await,
        401
    );
    // (JSON lines: the quotes around the name are escaped.)
    let named = r#"names tenant \"(a token, withheld)\""#;
    while !p.log().contains(named) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nor from an error's detail that quotes the path, or an id taken from it (a token
    // shaped as `generate_token` makes them, whose text names no secret).
    let shaped = "scimd_Q2xpcHBlZFRva2VuRm9yVGhlTG9nVGVzdA";
    assert_eq!(
        p.status(&format!("/x/{shaped}/Users"), "sekrit-json-token")
            .await,
        404
    );
    assert_eq!(
        p.status(&format!("/scim/v2/Users/{shaped}"), "sekrit-json-token")
            .await,
        404
    );
    let quoted = "no such endpoint: /x/(a token, withheld)/Users";
    while !p.log().contains(quoted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log();
    assert!(log.contains("/scim/v2/(a token, withheld)/Users"), "{log}");
    assert!(log.contains(named), "{log}");
    assert!(log.contains(quoted), "{log}");
    assert!(!log.contains("sekrit-json-token"), "{log}");
    assert!(!log.contains(shaped), "{log}");
    // A line names its request as the answer did (`X-Request-Id`).
    let r = p.get("/scim/v2/Users/nope", "sekrit-json-token").await;
    assert_eq!(r.status(), 404);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let found = p
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["request_id"] == rid.as_str());
        match found {
            Some(v) => break v,
            None if Instant::now() > deadline => panic!("no line for {rid}: {}", p.log()),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(line["fields"]["status"], 404, "{line}");
}

/// Under systemd (`Type=notify`) scimd says READY only once it serves, and STOPPING when it
/// is told to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_bodies_logs_what_the_idp_sends_without_its_passwords() {
    let dir = tempfile::tempdir().unwrap();
    // A tenant's own attributes that are never shown (a writeOnly `ssn`, a `pin` returned
    // never) are withheld as passwords are, though their names sound like no secret.
    let extension = r#"log_bodies = true
[[tenants.acme.extensions]]
urn = "urn:example:hr:2.0:User"
name = "HrUser"
resource = "User"
[[tenants.acme.extensions.attributes]]
name = "ssn"
type = "string"
mutability = "writeOnly"
returned = "never"
[[tenants.acme.extensions.attributes]]
name = "pin"
type = "string"
returned = "never"
"#;
    let cfg = json_logs_config(dir.path(), "tok", extension);
    let p = Proc::start(&cfg);
    let body = r#"{"userName": "ann@example.com", "password": "hunter2-post",
        "urn:example:hr:2.0:User": {"ssn": "hunter2-ssn", "pin": "hunter2-pin"}}"#;
    assert_eq!(p.post("/scim/v2/Users", "tok", body.to_string()).await, 201);
    // A filter naming one is refused (never shown, so never matched); its query is withheld.
    assert_eq!(
        p.status(
            "/scim/v2/Users?filter=userName%20pr%20and%20pin%20eq%20%22hunter2-q%22",
            "tok"
        )
        .await,
        400
    );
    let id = p
        .get_json(
            "/scim/v2/Users?filter=userName%20eq%20%22ann%40example.com%22",
            "tok",
        )
        .await["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let patch = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "password", "value": "hunter2-patch"},
                       {"op": "Replace", "path": "active", "value": "sometimes"}]}"#;
    let r = p
        .client
        .patch(format!("https://localhost:{}/scim/v2/Users/{id}", p.port))
        .bearer_auth("tok")
        .header("Content-Type", "application/scim+json")
        .header("User-Agent", "Okta SCIM Client 1.0.0")
        .body(patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Two bodies refused before they could be read as JSON: the wrong type, and broken
    // JSON (with a password in it, which must not be logged either).
    for (content_type, sent, status) in [
        ("text/plain", r#"{"userName": "bo@example.com"}"#, 415),
        (
            "application/scim+json",
            r#"{"userName": "cy@example.com", "password": "hunter2-broken""#,
            400,
        ),
    ] {
        let r = p
            .client
            .post(format!("https://localhost:{}/scim/v2/Users", p.port))
            .bearer_auth("tok")
            .header("Content-Type", content_type)
            .body(sent)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    let captured = |log: &str| -> Vec<serde_json::Value> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "scimd::capture")
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while captured(&p.log()).len() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log();
    assert!(!log.contains("hunter2"), "a password in the log: {log}");
    let mut lines = captured(&log);
    assert_eq!(lines.len(), 6, "{lines:?}");
    let query = lines.remove(1);
    assert!(
        query["fields"]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("(query withheld)")),
        "{query}"
    );
    let f = |i: usize, k: &str| lines[i]["fields"][k].clone();
    assert_eq!(f(0, "method"), "POST");
    assert_eq!(f(0, "status"), 201);
    let posted: serde_json::Value = serde_json::from_str(f(0, "body").as_str().unwrap()).unwrap();
    assert_eq!(posted["userName"], "ann@example.com");
    assert_eq!(posted["password"], "(withheld)");
    assert_eq!(posted["urn:example:hr:2.0:User"]["ssn"], "(withheld)");
    assert_eq!(posted["urn:example:hr:2.0:User"]["pin"], "(withheld)");
    // A read has its query and no body.
    assert_eq!(f(1, "method"), "GET");
    assert!(
        f(1, "uri").as_str().unwrap().contains("filter=userName"),
        "{:?}",
        lines[1]
    );
    assert!(f(1, "body").is_null());
    // A refused write shows what was refused, and which client sent it.
    assert_eq!(f(2, "status"), 400);
    assert_eq!(f(2, "user_agent"), "Okta SCIM Client 1.0.0");
    assert!(f(2, "body").as_str().unwrap().contains("sometimes"));
    // The refused bodies are captured with their type and status, the body left out as it
    // could not be read as JSON (so not redacted either).
    assert_eq!(f(3, "status"), 415);
    assert_eq!(f(3, "content_type"), "text/plain");
    assert!(f(3, "body").is_null(), "{:?}", lines[3]);
    assert_eq!(f(4, "status"), 400);
    assert!(f(4, "body").is_null(), "{:?}", lines[4]);
    // Each names its request, as the request line and the answer's X-Request-Id do.
    let ids: std::collections::HashSet<String> = (0..3)
        .map(|i| f(i, "request_id").as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        ids.len() == 3 && ids.iter().all(|i| i.len() == 16),
        "{lines:?}"
    );
    // The start said, at WARN, that this tenant's bodies are logged, and so does `status`.
    assert!(
        log.lines()
            .any(|l| l.contains("tenants.acme.log_bodies") && l.contains("WARN")),
        "{log}"
    );
    let out = scimd_bin()
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("tenant acme: 1 user, 0 groups; tokens: okta (provision); each request is logged with its body"),
        "{status}"
    );
}

#[test]
fn tells_the_service_manager_when_it_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scimd.toml");
    std::fs::write(&cfg, config_text(dir.path(), &token_line("t", "t-token"))).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = scimd_bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut wait_for = |what: &str| {
        let mut buf = [0u8; 4096];
        while !seen.lines().any(|l| l == what) {
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("{what}: {e}; got {seen:?}"));
            seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            seen.push('\n');
        }
    };
    wait_for("READY=1");
    // Ready comes after the database is open and the certificate made.
    assert!(dir.path().join("state/scimd.redb").is_file());
    let pem = std::fs::read(dir.path().join("state/tls/cert.pem")).unwrap();
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    kill(child.id(), "-TERM");
    wait_for("STOPPING=1");
    assert!(child.wait().unwrap().success());
    assert!(seen.contains("STATUS=serving"), "{seen}");
}

/// While writes are refused for a full disk, the STATUS systemd shows says so, and says
/// "serving" again once space is freed. A real full disk: a small tmpfs (root only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_status_says_while_writes_are_refused_for_a_full_disk() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = running_as_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(&small)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let cfg = small.join("scimd.toml");
    let text = config_text(&small, &token_line("okta", "tok"));
    std::fs::write(&cfg, text).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut scimd = scimd_bin();
    scimd.env("NOTIFY_SOCKET", &socket_path);
    let p = Proc::start_as(scimd, &cfg);
    let mut seen = String::new();
    // Fill the disk, then write until a write is refused for it.
    let filler = small.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let body = |i: usize| {
        format!(
            "{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"u{i}@x\",\"title\":\"{}\"}}",
            "t".repeat(4000)
        )
    };
    // 16 MiB is little room: said in the log and by `scimd status` before writes fail.
    let warned = "the disk holding the database has ";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.log().contains(warned) {
        assert!(
            Instant::now() < deadline,
            "no warning of little room: {}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = scimd_cmd(&cfg, &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("  LOW ON DISK SPACE: "), "{status}");
    let mut refused = false;
    for i in 0..5000 {
        if p.post("/scim/v2/Users", "tok", body(i)).await == 503 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the disk never filled");
    let now = status_until(
        &socket,
        &mut seen,
        "serving reads; writes refused: the disk holding the database is full",
    )
    .await;
    assert_eq!(now.first().map(String::as_str), Some("serving"));
    std::fs::remove_file(&filler).unwrap();
    // Said once the room is seen, before any write comes to find out.
    let freed = "writes go through again";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.log().contains(freed) {
        assert!(Instant::now() < deadline, "no {freed:?}: {}", p.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = status_until(&socket, &mut seen, "serving").await;
    assert_eq!(now.last().map(String::as_str), Some("serving"));
    assert_eq!(p.post("/scim/v2/Users", "tok", body(9999)).await, 201);
}

/// The STATUS lines sent to `socket` so far (collected in `seen`), once the last is `want`.
async fn status_until(
    socket: &std::os::unix::net::UnixDatagram,
    seen: &mut String,
    want: &str,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            seen.push('\n');
        }
        let now: Vec<String> = seen
            .lines()
            .filter_map(|l| l.strip_prefix("STATUS="))
            .map(str::to_string)
            .collect();
        if now.last().is_some_and(|s| s == want) {
            return now;
        }
        assert!(Instant::now() < deadline, "no STATUS {want}: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_public_url_host_gets_a_new_self_signed_certificate_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let cert = dir.path().join("state/tls/cert.pem");
    drop(Proc::start(&cfg));
    let first = std::fs::read(&cert).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[server]\n",
        "[server]\npublic_url = \"https://scim.corp.example:8443\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let p = Proc::start(&cfg);
    let second = std::fs::read(&cert).unwrap();
    assert_ne!(first, second, "the old certificate lacks the new host");
    assert!(
        p.log()
            .contains("does not name the host of server.public_url")
            && p.log().contains("must be given the new one"),
        "{}",
        p.log()
    );
    assert_eq!(p.status("/healthz", "tok").await, 200);
    drop(p);
    // Once it names the host, it is kept: no new certificate on every start.
    let p = Proc::start(&cfg);
    assert_eq!(std::fs::read(&cert).unwrap(), second);
    assert!(!p.log().contains("making a new one"), "{}", p.log());
    // A reload with another host makes one too, and serves it at once.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("scim.corp.example", "scim2.corp.example");
    std::fs::write(&cfg, text).unwrap();
    p.reload().await;
    assert!(p.log().contains("making a new one"), "{}", p.log());
    let third = CertificateDer::from_pem_file(&cert).unwrap().to_vec();
    assert_ne!(std::fs::read(&cert).unwrap(), second);
    assert_eq!(
        served_cert(p.port, std::slice::from_ref(&third)).await,
        third
    );
}

/// The reasons an IdP cannot connect are in the log, once an hour per address, so a full
/// sync's retries do not flood it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_and_plain_http_are_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(&okta_config(dir.path()));
    for _ in 0..3 {
        crate::tls::distrusting_handshake(p.port).await;
    }
    crate::tls::exchange_on(p.port, b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // The log is read by another thread: wait for its lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(p.log().contains("refused the server's certificate")
        && p.log().contains("likely plain HTTP"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused the server's certificate"))
        .collect();
    assert_eq!(refused.len(), 1, "once, not per handshake:\n{log}");
    assert!(refused[0].contains("WARN"), "{}", refused[0]);
    assert!(refused[0].contains("UnknownCA"), "{}", refused[0]);
    assert!(refused[0].contains("127.0.0.1"), "{}", refused[0]);
    let plain: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("likely plain HTTP"))
        .collect();
    assert_eq!(plain.len(), 1, "{log}");
    assert!(plain[0].contains("https://"), "{}", plain[0]);
    // Java's HttpClient refuses a certificate by closing, without an alert.
    crate::tls::silently_refusing_handshake(p.port).await;
    let silent = "without saying why: Java's HttpClient";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.log().contains(silent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log();
    let line = log.lines().find(|l| l.contains(silent)).expect(&log);
    assert!(
        line.contains("INFO") && line.contains("127.0.0.1"),
        "{line}"
    );
    // A reload is the admin trying a fix: the next refusal is said again.
    p.reload().await;
    crate::tls::distrusting_handshake(p.port).await;
    let refused = || p.log().matches("refused the server's certificate").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused(), 2, "{}", p.log());
}

/// An open-file limit below `max_connections` is raised to its hard limit and said at start;
/// connections past it fail to be accepted, which is said once a minute, not every 50 ms,
/// and the server serves again once they go.
#[tokio::test]
async fn a_low_open_file_limit_is_raised_and_said_and_its_refusals_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut limited = Command::new("prlimit");
    runner_env_removed(&mut limited).args(["--nofile=60:100", "--", env!("CARGO_BIN_EXE_scimd")]);
    // Held connections never time out here (the header timeout is 15 s by default), so a
    // newcomer served below was served by closing one of them, however slow the machine.
    let cfg = okta_config(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let held = text.replace("[server]\n", "[server]\nheader_timeout_secs = 600\n");
    assert_ne!(held, text);
    std::fs::write(&cfg, held).unwrap();
    let p = Proc::start_as(limited, &cfg);
    let said = p.log();
    let warned: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("open-file limit"))
        .collect();
    assert!(
        warned.len() == 1 && warned[0].contains("open_files=100"),
        "raised to the hard limit, and said:\n{said}"
    );
    // More connections than descriptors: those past the limit wait in the backlog while
    // every accept fails.
    let mut held = Vec::new();
    for _ in 0..130 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", p.port))
                .await
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("accept failed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let failed = p.log().matches("accept failed").count();
    assert_eq!(failed, 1, "said once, not every 50 ms:\n{}", p.log());
    // Out of descriptors, connections that have shown no token are closed for a newcomer,
    // as when every slot is taken: it is served now, not once they time out.
    let served = tokio::time::timeout(Duration::from_secs(60), p.status("/healthz", "tok")).await;
    assert_eq!(served.ok(), Some(200), "{}", p.log());
    drop(held);
    assert!(p.until("/healthz", "tok", 200).await, "serves again");
}

/// At start the database file is read once in the background (so that after a reboot the
/// kernel caches it before the IdPs' reads wait for the disk), unless the admin says not to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_is_read_into_the_page_cache_at_start_unless_turned_off() {
    let said = "read the database file into the kernel's page cache";
    for warm in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("scimd.toml");
        let text = config_text(dir.path(), &token_line("okta", "tok"))
            .replace(
                "level = \"info\"",
                "level = \"info,scimd::store::warm=debug\"",
            )
            .replace(
                "[storage]\n",
                &format!("[storage]\nwarm_page_cache = {warm}\n"),
            );
        std::fs::write(&cfg, text).unwrap();
        let p = Proc::start(&cfg);
        assert_eq!(p.status("/scim/v2/Users", "tok").await, 200);
        let deadline = Instant::now() + Duration::from_secs(10);
        while warm && !p.log().contains(said) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            p.log().contains(said),
            warm,
            "warm_page_cache = {warm}: {}",
            p.log()
        );
    }
}

/// A certificate that lacks the Base URL's host name: said by check-config and at start for
/// `public_url`, and when a client asks for such a host (which curl refuses without an alert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_certificate_does_not_name_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(dir.path().join("state/tls")).unwrap();
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key) = dated_cert(&tls, -1, 300);
    // The harness trusts state/tls/cert.pem.
    std::fs::copy(&cert, dir.path().join("state/tls/cert.pem")).unwrap();
    let cfg = dir.path().join("scimd.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), &token_line("okta", "tok"))
            .replace(
                "self_signed = true",
                &format!("cert = {:?}\nkey = {:?}", cert.display(), key.display()),
            )
            .replace(
                "[server]\n",
                "[server]\npublic_url = \"https://scim.corp.example:8443\"\n",
            ),
    )
    .unwrap();
    let out = scimd_cmd(&cfg, &["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "the certificate does not name scim.corp.example, the host of server.public_url"
        ),
        "{err}"
    );
    let p = Proc::start(&cfg);
    // A client that checks names and asks for that host.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    let e = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::try_from("scim.corp.example").unwrap(),
            tcp,
        )
        .await
        .expect_err("the certificate names localhost only");
    assert!(e.to_string().contains("not valid for name"), "{e}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = "a client asked for a host name the certificate does not name";
    while !p.log().contains(said) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log();
    assert!(
        log.contains("WARN")
            && log.contains("tls: the certificate does not name scim.corp.example"),
        "at start: {log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains(said))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("scim.corp.example"), "{line}");
    assert!(
        line.contains("peer=127.0.0.1:"),
        "the client's address: {line}"
    );
    // The name it has is not warned of.
    assert_eq!(p.status("/healthz", "").await, 200);
    assert_eq!(p.log().matches(said).count(), 1, "{}", p.log());
}

/// An Okta tenant's configuration with its state directory made, and no daemon: the
/// directory (kept while it is held), the configuration and `storage.dir`.
fn stopped() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    (dir, cfg, state)
}

/// A stopped server's configuration whose database records layout `version`.
fn stopped_at_layout(version: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, cfg, state) = stopped();
    let db = made_and_released(&state.join("scimd.redb"));
    let w = db.begin_write().unwrap();
    w.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .unwrap()
        .insert("schema_version", version)
        .unwrap();
    w.commit().unwrap();
    (dir, cfg)
}

/// A database scimd made at `path`, opened with redb once scimd has let go of it.
fn made_and_released(path: &std::path::Path) -> redb::Database {
    drop(scimd::store::Store::open(path, 1 << 20).unwrap());
    released(path)
}

/// A console command that is first to open a database the daemon left by crashing repairs
/// it, and says so: the daemon's next start finds nothing to repair and logs nothing, so
/// the admin would otherwise never learn of the crash.
#[test]
fn a_console_command_says_it_repaired_a_crashed_database() {
    let (dir, cfg, state) = stopped();
    let path = state.join("scimd.redb");
    let db = made_and_released(&path);
    // A commit, and the file as it is while still open: what a kill leaves.
    let w = db.begin_write().unwrap();
    w.open_table(redb::TableDefinition::<u64, u64>::new("crash_probe"))
        .unwrap()
        .insert(1, 1)
        .unwrap();
    w.commit().unwrap();
    let crashed = dir.path().join("crashed.redb");
    std::fs::copy(&path, &crashed).unwrap();
    drop(db);
    // `verify` too, which checks every page before it opens the file as the others do.
    for first in ["status", "verify"] {
        std::fs::copy(&crashed, &path).unwrap();
        let out = scimd_cmd(&cfg, &[first]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not closed cleanly"), "{first}: {err}");
        // Repaired once: the next command has nothing to say.
        let again = scimd_cmd(&cfg, &["status"]);
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(!err.contains("not closed cleanly"), "{err}");
        // Both read the file (exit 3: no daemon runs; verify: no mismatches).
        let code = if first == "status" { 3 } else { 0 };
        assert_eq!(
            (out.status.code(), again.status.code()),
            (Some(code), Some(3))
        );
    }
}

/// `storage.dir` edited while a daemon runs: no database in the new directory, but the
/// address is held, so `status` cannot tell (4) rather than "not running" (3), which a
/// monitor would act on.
#[test]
fn status_with_no_database_but_the_address_held_cannot_tell() {
    let (dir, cfg, _state) = stopped();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:0", &addr.to_string())
        .replace(
            &dir.path().join("state").display().to_string(),
            &dir.path().join("moved").display().to_string(),
        );
    std::fs::write(&cfg, text).unwrap();
    let out = scimd_cmd(&cfg, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("no database at") && err.contains(&format!("connections on {addr}")),
        "{err}"
    );
    // Nothing there: not running.
    drop(holder);
    let out = scimd_cmd(&cfg, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
}

/// A daemon killed in a quiet spell after its start, before any request: the file it leaves
/// opens without redb's check of every page (the start records the allocator state once the
/// scrub's first pass is done). A copy of the file taken while it runs is what a kill leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_no_request_leaves_a_file_a_crash_needs_no_repair_of() {
    let (_dir, cfg, state) = stopped();
    let path = state.join("scimd.redb");
    // A first start notes the tenants it serves (a write); stopped cleanly, the next start
    // has nothing to write.
    let mut p = Proc::start(&cfg);
    assert_eq!(p.status("/healthz", "").await, 200);
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    let p = Proc::start(&cfg);
    assert_eq!(p.status("/healthz", "").await, 200);
    let needs_repair = |n: u32| {
        let copy = state.join(format!("copy{n}.redb"));
        std::fs::copy(&path, &copy).unwrap();
        let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = repaired.clone();
        drop(
            redb::Database::builder()
                .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst))
                .create(&copy)
                .unwrap(),
        );
        std::fs::remove_file(&copy).unwrap();
        repaired.load(std::sync::atomic::Ordering::SeqCst)
    };
    // The checkpoint is an fsync'd commit: seconds on a loaded disk; the wait is a bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while needs_repair(n) {
        assert!(
            Instant::now() < deadline,
            "the file still needs a full repair: {}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        n += 1;
    }
    drop(p);
}

/// After an upgrade whose restart did not happen (or was refused), `status` finds the file
/// in an older layout: no daemon holds it, so it is not running (3), not "cannot tell" (4).
#[test]
fn status_on_a_file_of_an_older_layout_says_not_running() {
    let (_dir, cfg) = stopped_at_layout(3);
    let out = scimd_cmd(&cfg, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("layout version 3, older"), "{err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
}

/// A file a newer scimd wrote (after a downgrade): the daemon refuses it with exit 2, so that
/// systemd does not start it again and again (`RestartPreventExitStatus=2`), and says how
/// to go back.
#[test]
fn serve_on_a_file_of_a_newer_layout_exits_2_and_says_how_to_go_back() {
    let (_dir, cfg) = stopped_at_layout(99);
    let mut serve = scimd_bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a serve that took the file would listen until killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = serve.kill();
            panic!("serve started on a file of a newer layout");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = serve.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("layout version 99, newer") && err.contains("restore a backup"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
}

/// The start that converts an older layout says when it is done, how long it took, and that
/// there is no way back but the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_says_it_finished_and_what_it_means_for_going_back() {
    let (_dir, cfg) = stopped_at_layout(6);
    let p = Proc::start(&cfg);
    let log = p.log_with("converted the database layout").await;
    let line = log
        .lines()
        .find(|l| l.contains("converted the database layout"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("from=6")
            && line.contains(&format!("to={}", scimd::store::tables::SCHEMA_VERSION))
            && line.contains("secs=")
            && line.contains("an older scimd can no longer open this file"),
        "{line}"
    );
    // Said once: the next start has nothing to convert.
    drop(p);
    let p = Proc::start(&cfg);
    assert_eq!(p.status("/healthz", "").await, 200);
    assert!(
        !p.log().contains("converted the database layout"),
        "{}",
        p.log()
    );
}

/// `scimd import` of `file` into acme, which must succeed.
fn imported(cfg: &std::path::Path, file: &std::path::Path) {
    let out = scimd_cmd(
        cfg,
        &[
            "import",
            "--tenant",
            "acme",
            "--from",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Changes stored with times ahead of the clock (made while it ran ahead, since set back):
/// after a restart, new changes' times and ids still come after them, so that lastModified
/// never goes back for clients syncing by it and lists stay in creation order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_and_ids_go_on_past_changes_stored_ahead_of_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    // A user changed a day ahead of now, with an id of that time too.
    let ahead = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let stamp = ahead
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let millis = (ahead.unix_timestamp_nanos() / 1_000_000) as u64;
    let id = format!(
        "{:08x}-{:04x}-7000-8000-000000000001",
        millis >> 16,
        millis & 0xffff
    );
    let line = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id, "userName": "early@x", "meta": {"created": stamp, "lastModified": stamp}});
    let file = dir.path().join("ahead.jsonl");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    imported(&cfg, &file);
    let p = Proc::start(&cfg);
    assert_eq!(
        p.post("/scim/v2/Users", "tok", r#"{"userName":"late@x"}"#.into())
            .await,
        201
    );
    let list = p.get_json("/scim/v2/Users", "tok").await;
    let users = list["Resources"].as_array().unwrap();
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["early@x", "late@x"], "creation order");
    let when = |i: usize| {
        users[i]["meta"]["lastModified"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(when(1) > when(0), "{} after {}", when(1), when(0));
    let log = p
        .log_with("the clock is behind times already given to changes")
        .await;
    assert!(
        log.contains("the clock is behind times already given to changes"),
        "{log}"
    );
}

/// A daemon that takes `status`'s request and never answers (stopped with SIGSTOP, or out
/// of descriptors) makes it say it cannot tell (4) after a while, not hang a monitor.
#[test]
fn status_gives_up_on_a_daemon_that_does_not_answer() {
    let (_dir, cfg, state) = stopped();
    // Bound and never accepted: the kernel queues the connection, as for a stopped daemon.
    let _silent = std::os::unix::net::UnixListener::bind(state.join("admin.sock")).unwrap();
    let started = Instant::now();
    let out = scimd_cmd(&cfg, &["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("did not answer within 15 s"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
}

/// Between a package upgrade and the restart, the old daemon answers the new `status`: what
/// it does not report is said to be not reported, not shown as empty or changed.
#[test]
fn status_answered_by_an_older_daemon_says_what_it_did_not_report() {
    use std::io::{BufRead, Write};
    let (_dir, cfg, state) = stopped();
    let listener = std::os::unix::net::UnixListener::bind(state.join("admin.sock")).unwrap();
    let old = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut asked = String::new();
        std::io::BufReader::new(&s).read_line(&mut asked).unwrap();
        // As the oldest daemons answer: no pid, nor tokens, nor the configuration's digest.
        let answer = serde_json::json!({"ok": true, "version": "0.0.9", "commit": "0ld0ld0",
            "listen": "127.0.0.1:1", "tenants": {"acme": {"users": 2, "groups": 1}}});
        (&s).write_all(format!("{answer}\n").as_bytes()).unwrap();
        asked
    });
    let out = scimd_cmd(&cfg, &["status"]);
    assert!(old.join().unwrap().contains("status"));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("commit 0ld0ld0"), "{said}");
    assert!(said.contains("another build than the daemon's"), "{said}");
    assert!(said.contains("tokens: (not reported)"), "{said}");
    assert!(
        said.contains("listening on 127.0.0.1:1\n") && !said.contains("null"),
        "{said}"
    );
    assert!(
        !said.contains("has changed since the daemon read it"),
        "{said}"
    );
}

/// `users list` reads page by page past the store's page of 1,000, in id order, to its
/// `--limit`, and refuses a limit past 10,000 (the whole tenant is `export`'s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_list_pages_to_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    let p = Arc::new(p);
    let mut writers = Vec::new();
    for w in 0..8 {
        let p = p.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..1050).step_by(8) {
                let body = format!("{{\"userName\":\"u{i:04}\"}}");
                assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let list = |args: &[&str]| {
        let mut all = vec!["users", "list", "--tenant", "acme"];
        all.extend_from_slice(args);
        let out = scimd_cmd(&cfg, &all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = list(&["--limit", "1030"]);
    assert_eq!(code, Some(0), "{err}");
    let ids: Vec<&str> = out.lines().map(|l| l.split("  ").next().unwrap()).collect();
    assert_eq!(ids.len(), 1030);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in id order, none twice"
    );
    assert!(err.contains("1030 of 1050 shown"), "{err}");
    let (code, out, err) = list(&["--limit", "10000", "--filter", "userName sw \"u10\""]);
    assert_eq!(code, Some(0), "{err}");
    let mut names: Vec<&str> = out.lines().map(|l| l.split("  ").nth(1).unwrap()).collect();
    names.sort_unstable();
    let want: Vec<String> = (1000..1050).map(|i| format!("u{i}")).collect();
    assert_eq!(names, want);
    let (code, _, err) = list(&["--limit", "10001"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("10001 is not in 1..=10000"), "{err}");
}

/// `export --out FILE` writes what standard output would get into a file that is
/// owner-only and under its name only once whole, through the daemon or without it; a
/// failed export leaves nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_a_file_is_owner_only_and_whole_or_absent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let mut p = Proc::start(&cfg);
    for name in ["a@x", "b@x"] {
        let body = format!("{{\"userName\":\"{name}\"}}");
        assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
    }
    let body = "{\"displayName\":\"g\"}".to_string();
    assert_eq!(p.post("/scim/v2/Groups", "tok", body).await, 201);
    let piped = scimd_cmd(&cfg, &["export", "--tenant", "acme"]);
    assert!(piped.status.success());
    let file = dir.path().join("acme.jsonl");
    let check = |what: &str| {
        let out = scimd_cmd(
            &cfg,
            &[
                "export",
                "--tenant",
                "acme",
                "--out",
                file.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {err}");
        assert!(out.stdout.is_empty(), "{what}");
        assert!(err.contains("exported 3 resources"), "{what}: {err}");
        assert_eq!(std::fs::read(&file).unwrap(), piped.stdout, "{what}");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{what}");
        std::fs::remove_file(&file).unwrap();
    };
    check("through the daemon");
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    check("without it");
    let out = scimd_cmd(
        &cfg,
        &[
            "export",
            "--tenant",
            "nope",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was written to"));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("acme.jsonl"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

/// An exported group is the group as GET reads it (members with their displays, an empty
/// group with `"members":[]`, members before `meta` as a group read whole has them), less
/// `$ref`s and `meta.location`; a user is the user less its `groups`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_line_is_the_resource_as_read_less_its_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    let mut users = Vec::new();
    for name in ["a@x", "b@x"] {
        let body = format!("{{\"userName\":\"{name}\"}}");
        assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
        let found = p
            .get_json(
                &format!("/scim/v2/Users?filter=userName%20eq%20%22{name}%22"),
                "tok",
            )
            .await;
        users.push(found["Resources"][0]["id"].as_str().unwrap().to_string());
    }
    let body = serde_json::json!({"displayName": "g", "members": [
        {"value": users[0], "display": "Ann"}, {"value": users[1]}]});
    assert_eq!(
        p.post("/scim/v2/Groups", "tok", body.to_string()).await,
        201
    );
    let empty = "{\"displayName\":\"empty\"}".to_string();
    assert_eq!(p.post("/scim/v2/Groups", "tok", empty).await, 201);
    let out = scimd_cmd(&cfg, &["export", "--tenant", "acme"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = if v["members"].is_array() {
            "Groups"
        } else {
            "Users"
        };
        let mut read = p
            .get_json(
                &format!("/scim/v2/{kind}/{}", v["id"].as_str().unwrap()),
                "tok",
            )
            .await;
        let o = read.as_object_mut().unwrap();
        o.shift_remove("groups");
        let meta = o["meta"].as_object_mut().unwrap();
        meta.shift_remove("location");
        // A user's ETag covers its groups (`W/"1.xxxxxxxx"`); the file keeps the version.
        let version = meta["version"].as_str().unwrap().to_string();
        if let Some((n, _)) = version.split_once('.') {
            meta["version"] = format!("{n}\"").into();
        }
        if let Some(serde_json::Value::Array(members)) = o.get_mut("members") {
            for m in members {
                m.as_object_mut().unwrap().shift_remove("$ref");
            }
        }
        assert_eq!(v, read, "{line}");
        // Members before meta, as the group read whole (`into_json`) has them.
        if kind == "Groups" {
            assert!(
                line.find("\"members\":[") < line.find("\"meta\":"),
                "{line}"
            );
        }
    }
    assert!(text.contains("\"members\":[]"), "{text}");
    assert!(
        text.contains("\"display\":\"Ann\",\"type\":\"User\""),
        "{text}"
    );
}

/// `import` reads its file once, so a pipe works as a file does, through the daemon and
/// without it; the copy it keeps in the state directory is gone afterwards; a line is named
/// by its number in the file, blank lines counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reads_a_pipe_and_leaves_no_copy() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let user = |name: &str| {
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": uuid::Uuid::now_v7().to_string(), "userName": name})
        .to_string()
    };
    let piped = |text: String| {
        let mut child = scimd_bin()
            .args([
                "import",
                "--tenant",
                "acme",
                "--from",
                "/dev/stdin",
                "--config",
            ])
            .arg(&cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let spools = || {
        std::fs::read_dir(dir.path().join("state"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".spool"))
                    .count()
            })
            .unwrap_or(0)
    };
    // Without a daemon (the state directory exists already once a server ran).
    let p = Proc::start(&cfg);
    drop(p);
    let out = piped(format!("{}\n\n{}\n", user("a@x"), user("b@x")));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("imported 2 resources"), "{said}");
    assert_eq!(spools(), 0);
    // Through the daemon; a bad line is named by its line in the file.
    let p = Proc::start(&cfg);
    let out = piped(format!("{}\n\n{}\n", user("c@x"), user("d@x")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every bad line is named in one run, not one a run.
    let out = piped(format!(
        "{}\n\n\nnot json\n{{\"userName\": \"f@x\"}}\n",
        user("e@x")
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("line 4: not JSON")
            && err.contains("line 5: no \"id\" as scimd gives them"),
        "{err}"
    );
    assert_eq!(spools(), 0);
    let users = p.get_json("/scim/v2/Users?count=0", "tok").await;
    assert_eq!(
        users["totalResults"], 4,
        "nothing of the refused file: {users}"
    );
}

/// An export whose reader goes away in the middle of a group's line (the members are read
/// by a task of their own) still leaves the database closed cleanly, at once.
#[test]
fn an_export_cut_inside_a_groups_members_closes_the_database_cleanly() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    drop(Proc::start(&cfg));
    // More members than the output's buffers and the member queue hold together: the
    // reader is still at work when the writes start failing.
    let ids: Vec<String> = (0..20_000)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut file = std::fs::File::create(dir.path().join("many.jsonl")).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let u = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id, "userName": format!("u{i}@x")});
        writeln!(file, "{u}").unwrap();
    }
    let members: Vec<_> = ids
        .iter()
        .map(|i| serde_json::json!({"value": i}))
        .collect();
    let g = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": uuid::Uuid::now_v7().to_string(), "displayName": "all", "members": members});
    writeln!(file, "{g}").unwrap();
    drop(file);
    let path = dir.path().join("many.jsonl");
    imported(&cfg, &path);
    let mut child = scimd_bin()
        .args(["export", "--tenant", "acme", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (mut seen, mut buf) = (Vec::new(), [0u8; 8192]);
    // Read into the group's members, then stop reading.
    while !String::from_utf8_lossy(&seen).contains("\"members\":[{") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the export ended before the group's members");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stdout);
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141));
    // Its close syncs the file: seconds on a loaded disk, not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let p = Proc::start(&cfg);
    assert!(!p.log().contains("not closed cleanly"), "{}", p.log());
}
