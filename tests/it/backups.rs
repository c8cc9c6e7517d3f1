//! Backups and restores on a failing disk: damaged files refused with a message.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::process::{Proc, kill, okta_config, scimd_cmd};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
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
    let out = scimd_cmd(&cfg, &["backup", "--to", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
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
                && err.contains("damaged")
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
            err.contains("the database file is damaged: ")
                && !err.contains("panicked")
                && !err.contains("RUST_BACKTRACE"),
            "{what}: {err}"
        );
        std::fs::write(&db, &before).unwrap();
    }
    // The intact backup still restores, and over a damaged database too.
    std::fs::write(&db, damaged(&db, "user3@example.com", |p| p.fill(0))).unwrap();
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
