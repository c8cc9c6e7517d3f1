//! A new database file is made whole or not at all.
//!
//! redb makes a new file in steps (its size, its header, its first commit): a start killed
//! between them left, under the database's name, a file that was not yet a database, and
//! every later start refused it as damaged, pointing at a backup a new install never has.
//! So a new database is made under a name of this process's own, given its tables and
//! closed, and only then linked to the database's name, which so never names half a file.
//! A link, not a rename: it fails when the name exists, so of two starts on an empty
//! directory the second finds the first's database, whose lock refuses it as usual.

use std::path::{Path, PathBuf};

use redb::Database;

use super::backend::{self, Backend, Faults};
use super::{guarded, layout};

/// Where this process makes a new database for `path`: `<name>.<pid>.new` beside it.
fn staging(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{pid}.new"));
    path.with_file_name(name)
}

/// Whether `name` is a database left in the making beside `path` (`staging`'s names).
fn is_staging(path: &Path, name: &str) -> bool {
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".new"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Make a new database at `path`, which does not exist yet. Ok too when another start
/// made it first.
pub(super) fn make(path: &Path, faults: &Faults) -> Result<(), redb::Error> {
    let io = |e: std::io::Error| redb::Error::from(redb::StorageError::from(e));
    let new = staging(path, std::process::id());
    // Left by an earlier process of this number (pids are reused): nobody's now.
    let _ = std::fs::remove_file(&new);
    let made = (|| {
        // Owner-only, and owned by the directory's owner: `Backend::open`.
        let backend = Backend::open(&new, faults.clone()).map_err(io)?;
        let db = guarded(|| Ok(Database::builder().create_with_backend(backend)?))?;
        guarded(|| layout::init_schema(&db))?;
        drop(db);
        std::fs::File::open(&new)
            .and_then(|f| f.sync_all())
            .map_err(io)
    })();
    let linked = made.and_then(|()| match std::fs::hard_link(&new, path) {
        Ok(()) => Ok(()),
        // Another start linked its own first, and may have cleared this one's away.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::AlreadyExists) => Ok(()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound) && path.exists() => Ok(()),
        Err(e) => Err(io(e)),
    });
    let _ = std::fs::remove_file(&new);
    linked?;
    // The name, durable before anything is acknowledged into the file it names.
    backend::sync_parent(path).map_err(io)
}

/// Remove databases left in the making beside `path` (a start killed part-way), once this
/// process holds the database at `path`: any other start finds it there, so no staging
/// file is still wanted.
pub(super) fn clear_leftovers(path: &Path) {
    let Ok(entries) = std::fs::read_dir(backend::parent_dir(path)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(|n| is_staging(path, n))
            && std::fs::remove_file(e.path()).is_ok()
        {
            tracing::info!(file = %e.path().display(), "removed a database left unfinished by a start that was stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_told_apart_from_everything_else() {
        let path = Path::new("/d/scimd.redb");
        assert_eq!(staging(path, 42), Path::new("/d/scimd.redb.42.new"));
        assert!(is_staging(path, "scimd.redb.42.new"));
        for other in [
            "scimd.redb",
            "scimd.redb.new",
            "scimd.redb.4x2.new",
            "scimd.redb.42.partial",
            "backup-1.redb",
            "other.redb.42.new",
        ] {
            assert!(!is_staging(path, other), "{other}");
        }
    }

    #[test]
    fn a_start_killed_while_making_the_file_leaves_no_half_database_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scimd.redb");
        // What a kill mid-way leaves: a staging file that is no database, of a dead start.
        let left = staging(&path, 999_999_999);
        std::fs::write(&left, vec![7u8; 73_728]).unwrap();
        make(&path, &Faults::default()).unwrap();
        // The database is whole, and the staging file of this process gone.
        let db = Database::open(&path).unwrap();
        assert_eq!(
            layout::stored_version(&db).unwrap(),
            Some(super::super::tables::SCHEMA_VERSION)
        );
        drop(db);
        assert!(!staging(&path, std::process::id()).exists());
        clear_leftovers(&path);
        assert!(!left.exists(), "the dead start's file is cleared");
        // A second start that finds the name taken leaves the first's database alone.
        let before = std::fs::read(&path).unwrap();
        make(&path, &Faults::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
