//! Backups and restores on a failing disk: damaged files refused with a message, and no copy
//! of the database left behind where the admin does not expect one.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::process::{Proc, kill, okta_config, scimd_cmd};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The backup copies in the state directory (`backup-*`).
fn staged(state: &Path) -> Vec<String> {
    std::fs::read_dir(state)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("backup-"))
        .collect()
}

/// A stopped server with ten users, and a backup of them made by `scimd backup`.
async fn stopped_with_backup(dir: &Path) -> (PathBuf, PathBuf) {
    let cfg = okta_config(dir);
    let mut p = Proc::start(&cfg);
    for i in 0..10 {
        let body = format!("{{\"userName\":\"user{i}@example.com\"}}");
        assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
    }
    let backup = dir.join("backup.redb");
    // A backup over an earlier one under the same name says it replaced it, from the
    // running server and from a stopped one.
    let said = |replaced: bool| {
        let out = scimd_cmd(&cfg, &["backup", "--to", backup.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(said.contains("backup written to"), "{said}");
        assert_eq!(
            said.contains("it replaced the file that was there"),
            replaced,
            "{said}"
        );
    };
    said(false);
    said(true);
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    said(true);
    (cfg, backup)
}

/// `file` with the 4 KiB page that holds `needle` passed to `damage`.
fn damaged(file: &Path, needle: &str, damage: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the value is in the file");
    let page = at / 4096 * 4096;
    damage(&mut bytes[page..page + 4096]);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_is_refused_and_a_damaged_database_fails_verify_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, backup) = stopped_with_backup(dir.path()).await;
    let state = dir.path().join("state");
    let db = state.join("scimd.redb");
    let before = std::fs::read(&db).unwrap();
    // A zeroed page, and a page with a few bytes overwritten: what a failing disk leaves.
    let zeroed = damaged(&backup, "user3@example.com", |p| p.fill(0));
    let scribbled = damaged(&backup, "user7@example.com", |p| {
        p[1000..1064].fill(0xa5);
    });
    for (what, bytes) in [("zeroed page", zeroed), ("overwritten bytes", scribbled)] {
        let bad = dir.path().join("bad.redb");
        std::fs::write(&bad, &bytes).unwrap();
        let out = scimd_cmd(&cfg, &["restore", "--from", bad.to_str().unwrap()]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: restored: {err}");
        assert!(
            err.contains("cannot be restored (the database was left as it was)")
                && err.contains("the backup file is damaged")
                && err.contains("restore another backup")
                && !err.contains("over a damaged database")
                && !err.contains("panicked"),
            "{what}: {err}"
        );
        assert!(
            std::fs::read(&db).unwrap() == before,
            "{what}: database changed"
        );
        assert!(!state.join("scimd.restoring").exists(), "{what}");
        assert!(!state.join("scimd.before-restore").exists(), "{what}");
        assert_eq!(
            std::fs::read(&bad).unwrap(),
            bytes,
            "{what}: backup changed"
        );
        // The same damage in the database itself: verify says so, without a backtrace.
        std::fs::write(&db, &bytes).unwrap();
        let out = scimd_cmd(&cfg, &["verify"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("the database file is damaged")
                && !err.contains("panicked")
                && !err.contains("RUST_BACKTRACE"),
            "{what}: {err}"
        );
        std::fs::write(&db, &before).unwrap();
    }
    // A directory given for the file, or a file not there, is named as such.
    for (from, why) in [
        (dir.path().to_path_buf(), "it is a directory"),
        (
            dir.path().join("nosuch.redb"),
            "cannot read it: No such file",
        ),
    ] {
        let out = scimd_cmd(&cfg, &["restore", "--from", from.to_str().unwrap()]);
        let err = stderr(&out);
        assert!(
            out.status.code() == Some(1)
                && err.contains("cannot be restored (the database was left as it was)")
                && err.contains(why),
            "{err}"
        );
        assert!(std::fs::read(&db).unwrap() == before);
        assert!(!state.join("scimd.restoring").exists());
    }
    // The intact backup still restores, and over a damaged database too.
    std::fs::write(&db, damaged(&db, "user3@example.com", |p| p.fill(0))).unwrap();
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Bytes changed inside a stored user's name while scimd was stopped (no longer UTF-8, yet
/// still JSON to a reader that steps over strings): the scrub at start finds them (by the
/// page's checksum; writes refused, `/healthz` 503), a read that meets the record is a 500 rather than a user gone,
/// a backup refuses to copy it (daemon running or not), and a backup holding it is not
/// restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_decode_is_damage_to_reads_the_scrub_backups_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, backup) = stopped_with_backup(dir.path()).await;
    let db = dir.path().join("state/scimd.redb");
    let bytes = change_user5(&db, |name| {
        name[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef])
    });

    let mut p = Proc::start(&cfg);
    assert!(p.until("/healthz", "tok", 503).await, "{}", p.log());
    let filter = "/scim/v2/Users?filter=userName%20eq%20%22user5@example.com%22";
    assert_eq!(p.status(filter, "tok").await, 500);
    assert_eq!(p.status("/scim/v2/Users?count=10", "tok").await, 500);
    assert_eq!(p.status("/scim/v2/Users?count=3", "tok").await, 200);
    let body = "{\"userName\":\"late@example.com\"}".to_string();
    assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 503);
    let log = p.log();
    assert!(
        log.contains("the database file is damaged (found checking the checksums of its pages")
            && log.contains("a read met damage: a stored record does not parse"),
        "{log}"
    );
    let copy = dir.path().join("copy.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", copy.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was copied"),
        "{}",
        stderr(&out)
    );
    assert!(!copy.exists());
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());

    // With scimd stopped, the copy meets the record itself.
    let out = scimd_cmd(&cfg, &["backup", "--to", copy.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("nothing was copied") && err.contains("a stored record does not parse"),
        "{err}"
    );
    assert!(!copy.exists());
    let left = std::fs::read(&db).unwrap();
    // Such a file as a backup is refused (here for its page checksums; a copy with sound
    // ones: the store's tests), and the good one restores.
    let bad = dir.path().join("bad.redb");
    std::fs::write(&bad, &bytes).unwrap();
    let out = scimd_cmd(&cfg, &["restore", "--from", bad.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the backup file is damaged"), "{err}");
    assert!(std::fs::read(&db).unwrap() == left, "database changed");
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Its first bytes overwritten, the file is damaged to verify too, as to a start.
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..8].fill(0x55);
    std::fs::write(&db, &bytes).unwrap();
    let out = scimd_cmd(&cfg, &["verify"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the database file is damaged") && err.contains("scimd restore --from"),
        "{err}"
    );
}

/// A letter of a stored name changed while scimd was stopped: still UTF-8 and JSON, so only
/// the page's checksum tells. Found at start before any write is taken: the next crash
/// would have redb refuse the whole file, with every write acknowledged since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_changed_inside_a_name_is_found_at_start_by_the_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _backup) = stopped_with_backup(dir.path()).await;
    let db = dir.path().join("state/scimd.redb");
    change_user5(&db, |name| name[1] = b'X'); // "uXer5@example.com"
    let p = Proc::start(&cfg);
    assert!(p.until("/healthz", "tok", 503).await, "{}", p.log());
    let body = "{\"userName\":\"late@example.com\"}".to_string();
    assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 503);
    let log = p.log();
    assert!(
        log.contains("the database file is damaged (found checking the checksums of its pages"),
        "{log}"
    );
}

/// The same, done to the file while scimd runs: `scimd verify` has the daemon check the
/// pages' checksums (its entries still read back as sound), says what it found, and writes
/// are refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_changed_while_scimd_runs_is_found_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _backup) = stopped_with_backup(dir.path()).await;
    let p = Proc::start(&cfg);
    assert!(p.until("/healthz", "tok", 200).await, "{}", p.log());
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the checksum of every page of the file on disk included"),
        "{}",
        stderr(&out)
    );
    change_user5(&dir.path().join("state/scimd.redb"), |name| name[1] = b'X');
    let out = scimd_cmd(&cfg, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("the database file is damaged (found checking the checksums of its pages"),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.status("/healthz", "tok").await, 503);
    let body = "{\"userName\":\"late@example.com\"}".to_string();
    assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 503);
}

/// A restore refused into a storage.dir that did not exist leaves none behind (an empty
/// root-owned one would have to be removed or given away by hand).
#[test]
fn a_refused_restore_makes_no_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    // storage.dir two levels below anything that exists.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let state = dir.path().join("state").display().to_string();
    std::fs::write(&cfg, text.replace(&state, &format!("{state}/a/b"))).unwrap();
    let bad = dir.path().join("bad.redb");
    std::fs::write(&bad, vec![7u8; 8192]).unwrap();
    let out = scimd_cmd(&cfg, &["restore", "--from", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("owned by root"), "{}", stderr(&out));
    assert!(!dir.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_cannot_be_written_is_refused_before_any_copy_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    let state = dir.path().join("state");
    let missing = dir.path().join("no-such-dir/b.redb");
    let a_dir = dir.path().join("a-dir");
    std::fs::create_dir(&a_dir).unwrap();
    for (to, says) in [
        (&missing, "does not exist or is not a directory"),
        (&a_dir, "is a directory"),
    ] {
        let out = scimd_cmd(&cfg, &["backup", "--to", to.to_str().unwrap()]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(says), "{err}");
        assert_eq!(staged(&state), Vec::<String>::new());
    }
    assert_eq!(std::fs::read_dir(&a_dir).unwrap().count(), 0);
    assert!(!p.log().contains("backup"), "the server made a copy");
    // A backup that works leaves nothing behind either: not in the state directory, not
    // beside the backup.
    let to = dir.path().join("b.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", to.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(to.exists());
    assert_eq!(partials(dir.path()), Vec::<String>::new());
    assert_eq!(staged(&state), Vec::<String>::new());
}

#[test]
fn the_server_removes_backup_copies_left_in_its_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let left = ["backup-1796133072760728469.redb", "backup-17961330.partial"];
    for name in left {
        std::fs::write(state.join(name), b"everyone's personal data").unwrap();
    }
    // Not a name the server gives its copies: the admin's own file stays.
    std::fs::write(state.join("backup-mine.redb"), b"kept").unwrap();
    let p = Proc::start(&cfg);
    assert_eq!(staged(&state), vec!["backup-mine.redb".to_string()]);
    let log = p.log();
    assert!(
        log.contains("removed backup copies left in the state directory")
            && log.contains("count=2"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_nobody_waits_for_any_more_is_removed_by_the_server() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    let state = dir.path().join("state");
    // A `scimd backup` killed while the server makes its copy: the request, then nothing.
    let mut s = std::os::unix::net::UnixStream::connect(state.join("admin.sock")).unwrap();
    s.write_all(b"{\"cmd\":\"backup\"}\n").unwrap();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("backup copy removed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(p.log().contains("backup copy removed"), "{}", p.log());
    assert_eq!(staged(&state), Vec::<String>::new());
}

/// A `scimd backup` killed while it copies the server's copy to `--to` (here by the file
/// size limit, as a cron job's timeout would) leaves no copy of everything in the state
/// directory while the server goes on running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_while_it_copies_leaves_nothing_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let p = Proc::start(&cfg);
    for i in 0..50 {
        let body = format!("{{\"userName\":\"user{i}@example.com\"}}");
        assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
    }
    let to = dir.path().join("b.redb");
    let out = crate::process::runner_env_removed(&mut std::process::Command::new("bash"))
        .arg("-c")
        .arg(format!(
            "ulimit -f 1; exec {} backup --to {} --config {}",
            env!("CARGO_BIN_EXE_scimd"),
            to.display(),
            cfg.display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(!to.exists());
    assert_eq!(staged(&dir.path().join("state")), Vec::<String>::new());
    assert_eq!(p.status("/scim/v2/Users?count=0", "tok").await, 200);
}

#[test]
fn backup_says_so_when_the_server_stops_before_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // A server that takes the request and dies before it answers.
    let listener = std::os::unix::net::UnixListener::bind(state.join("admin.sock")).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::BufRead;
        let (s, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        line
    });
    let to = dir.path().join("b.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", to.to_str().unwrap()]);
    assert!(server.join().unwrap().contains("\"backup\""));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("scimd stopped before it finished"), "{err}");
    assert!(!to.exists());
    assert_eq!(partials(dir.path()), Vec::<String>::new());
}

/// Temporary backup files left in `dir`.
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_changed_since_the_backup_warns_but_does_not_block_the_restore() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = okta_config(dir.path());
    let ext = "urn:ietf:params:scim:schemas:extension:acme:2.0:User";
    let with = |unique: &str| {
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text
            .split("[[tenants.acme.extensions]]")
            .next()
            .unwrap()
            .to_string();
        std::fs::write(
            &cfg,
            format!(
                "{text}[[tenants.acme.extensions]]\nurn = \"{ext}\"\nname = \"AcmeUser\"\n\
                 resource = \"User\"\n[[tenants.acme.extensions.attributes]]\n\
                 name = \"badge\"\ntype = \"string\"\nuniqueness = \"{unique}\"\n"
            ),
        )
        .unwrap();
    };
    with("none");
    let mut p = Proc::start(&cfg);
    for user in ["u@x", "v@x"] {
        let body = format!("{{\"userName\":\"{user}\",\"{ext}\":{{\"badge\":\"b1\"}}}}");
        assert_eq!(p.post("/scim/v2/Users", "tok", body).await, 201);
    }
    let backup = dir.path().join("b.redb");
    // The database itself is no place for its backup.
    let db = dir.path().join("state/scimd.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", db.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("is the database itself"),
        "{}",
        stderr(&out)
    );
    let out = scimd_cmd(&cfg, &["backup", "--to", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    // Unique since: the backup's two users share a badge its index never held.
    with("server");
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: under the current configuration"),
        "{err}"
    );
}

/// A restore restarts each tenant's change feed past every number given out, by the backup
/// or by the database it replaces: a reader is sent to read the directory again (410, with
/// where to continue) instead of being served numbers that now mean other changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_sends_every_feed_reader_to_read_the_directory_again() {
    let dir = tempfile::tempdir().unwrap();
    // Events 1 to 10 are in the backup; 11, made after it, is undone by the restore.
    let (cfg, backup) = stopped_with_backup(dir.path()).await;
    let mut p = Proc::start(&cfg);
    let later = "{\"userName\":\"later@example.com\"}".to_string();
    assert_eq!(p.post("/scim/v2/Users", "tok", later).await, 201);
    let feed = p.get_json("/tenants/acme/events?after=0", "tok").await;
    assert_eq!(feed["last_seq"], 11, "{feed}");
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        said.contains("go on past every number given out (acme 12)"),
        "{said} {}",
        stderr(&out)
    );
    let mut p = Proc::start(&cfg);
    // Whether it had read everything, part, or nothing: 410, continue from 12.
    for after in [11, 4, 0] {
        let r = p
            .client
            .get(format!(
                "https://localhost:{}/tenants/acme/events?after={after}",
                p.port
            ))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410, "after={after}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["next_after"], 12, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("restored"),
            "{body}"
        );
    }
    let again = "{\"userName\":\"again@example.com\"}".to_string();
    assert_eq!(p.post("/scim/v2/Users", "tok", again).await, 201);
    let feed = p.get_json("/tenants/acme/events?after=12", "tok").await;
    assert_eq!(feed["events"][0]["seq"], 13, "{feed}");
    assert_eq!(feed["events"][0]["type"], "user.created", "{feed}");
    assert_eq!(p.status("/tenants/acme/events?after=11", "tok").await, 410);
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    // Without the database it replaces, the numbers given out since the backup are unknown:
    // the feed moves on past any a reader could hold.
    let state = dir.path().join("state");
    std::fs::remove_file(state.join("scimd.redb")).unwrap();
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && said.contains("unknown"), "{said}");
    let p = Proc::start(&cfg);
    let feed = p.get_json("/tenants/acme/events", "tok").await;
    assert_eq!(feed["last_seq"], 1_000_000_011u64, "{feed}");
    assert_eq!(p.status("/tenants/acme/events?after=13", "tok").await, 410);
}

/// With no server running, `scimd backup` makes the copy itself, also as root over a state
/// directory that belongs to the service user (a packaged install, stopped for an upgrade);
/// and a destination named like the server's own copies in the state directory, which a
/// start removes as leftovers, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_stopped_server_is_made_by_the_command_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = stopped_with_backup(dir.path()).await;
    let state = dir.path().join("state");
    if crate::process::running_as_root() {
        // Another owner for the state directory, as the service user would be.
        let ok = std::process::Command::new("chown")
            .args(["-R", "65534"])
            .arg(&state)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let to = dir.path().join("stopped.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", to.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("backup written"),
        "{out:?}"
    );
    assert_eq!(staged(&state), Vec::<String>::new());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
    // The copy restores, with the ten users.
    let out = scimd_cmd(&cfg, &["restore", "--from", to.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = scimd_cmd(&cfg, &["users", "list", "--tenant", "acme"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.matches("@example.com").count(), 10, "{listed}");
    let named = state.join("backup-20261203.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", named.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("removes as leftovers"));
    assert!(!named.exists());
}

/// An ETag a client holds from before a restore never names another state of the resource
/// after it: the versions given out since the backup are given again only above a floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etag_from_before_a_restore_never_matches_a_later_state() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, backup) = stopped_with_backup(dir.path()).await;
    let patch = |p: &Proc, id: &str, title: &str, if_match: Option<&str>| {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": title}],
        });
        let mut req = p
            .client
            .patch(format!("https://localhost:{}/scim/v2/Users/{id}", p.port))
            .bearer_auth("tok")
            .json(&body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        req.send()
    };
    let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_string();
    let p = Proc::start(&cfg);
    let list = p
        .get_json(
            "/scim/v2/Users?filter=userName%20eq%20%22user3@example.com%22",
            "tok",
        )
        .await;
    let id = list["Resources"][0]["id"].as_str().unwrap().to_string();
    let before = patch(&p, &id, "before the restore", None).await.unwrap();
    assert_eq!(before.status(), 200);
    let held = etag(&before);
    assert_eq!(held, "W/\"2\"");
    let mut p = p;
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = Proc::start(&cfg);
    // The same number of changes since the backup, to another state.
    let after = patch(&p, &id, "after the restore", None).await.unwrap();
    assert_eq!(after.status(), 200);
    assert_ne!(etag(&after), held);
    let r = p
        .client
        .get(format!("https://localhost:{}/scim/v2/Users/{id}", p.port))
        .bearer_auth("tok")
        .header("If-None-Match", &held)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the held ETag names the state before the restore"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["title"], "after the restore");
    let stale = patch(&p, &id, "lost update", Some(&held)).await.unwrap();
    assert_eq!(stale.status(), 412);
    // Later changes go on from the new version as before.
    let next = patch(&p, &id, "again", Some(&etag(&after))).await.unwrap();
    assert_eq!(next.status(), 200);
}

/// Change the name in user5's stored record (`user5@example.com`, given to `change`) in the
/// stopped server's file `db`, in the record rather than an index entry (only the record holds
/// the attribute's name), and in every copy of its page (those of earlier commits are left in
/// free space). The file's bytes as written.
fn change_user5(db: &std::path::Path, change: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    let needle = br#""userName":"user5@example.com""#;
    let found: Vec<usize> = (0..bytes.len() - needle.len())
        .filter(|&i| &bytes[i..i + needle.len()] == needle)
        .collect();
    assert!(!found.is_empty(), "the record is in the file");
    for at in found {
        change(&mut bytes[at + 12..at + needle.len() - 1]);
    }
    // In place, not truncated and written again: a running scimd may be reading the file.
    std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .unwrap();
    bytes
}
