//! A new database file is made whole or not at all.
//!
//! redb makes a new file in steps (its size, its header, its first commit): a start killed
//! between them left, under the database's name, a file that was not yet a database, and
//! every later start refused it as damaged, pointing at a backup a new install never has.
//! So a new database is made under a name of its own, given its tables and closed, and
//! only then linked to the database's name, which so never names half a file. A link, not
//! a rename: it fails when the name exists, so of two starts on an empty directory the
//! second finds the first's database, whose lock refuses it as usual; and nothing ever
//! removes the file at that name, which may be the other start's, serving. File systems
//! without hard links (vfat, SMB shares, some FUSE mounts) get a rename that refuses to
//! replace, which is as safe; one with neither gets the database made in place, as before.

use std::path::{Path, PathBuf};

use redb::Database;

use super::backend::{self, Backend, Faults};
use super::{guarded, layout};

/// Where this start makes a new database for `path`: `<name>.<random hex>.new` beside it.
/// Not named by the process id: two containers sharing a volume can both be pid 1.
fn staging(path: &Path, tag: u128) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{tag:032x}.new"));
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
        .is_some_and(|tag| tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Make a new database at `path`, which did not exist. Ok too when another start made it
/// meanwhile, however this one's attempt ended (that start clears staging files, this
/// one's included, once it holds the database): the open that follows is then refused by
/// that start's lock, or opens its database.
pub(super) fn make(path: &Path, faults: &Faults) -> Result<(), redb::Error> {
    make_with(path, faults, &Naming::SYSTEM)
}

fn make_with(path: &Path, faults: &Faults, naming: &Naming) -> Result<(), redb::Error> {
    let new = staging(path, uuid::Uuid::new_v4().as_u128());
    let made = (|| {
        create(&new, faults)?;
        std::fs::File::open(&new)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        naming.name(&new, path).map_err(io)
    })();
    let _ = std::fs::remove_file(&new);
    let made = match made {
        Ok(Named::Named) => {
            backend::sync_parent_or_say(path, "the new database");
            Ok(())
        }
        Ok(Named::CannotHere) => {
            tracing::warn!(path = %path.display(), "this file system has neither hard links nor a rename that refuses to replace: the new database is made in place, and a start stopped while making it leaves a file that is not one");
            create(path, faults)
        }
        Err(e) => Err(e),
    };
    match made {
        Ok(()) => Ok(()),
        Err(_) if path.exists() => Ok(()),
        Err(e) => Err(e),
    }
}

fn io(e: std::io::Error) -> redb::Error {
    redb::Error::from(redb::StorageError::from(e))
}

/// A database with its tables at `path`, closed.
fn create(path: &Path, faults: &Faults) -> Result<(), redb::Error> {
    // Owner-only, and owned by the directory's owner: `Backend::open`.
    let backend = Backend::open(path, faults.clone(), true).map_err(io)?;
    let db = guarded(|| Ok(Database::builder().create_with_backend(backend)?))?;
    guarded(|| layout::init_schema(&db))?;
    Ok(())
}

enum Named {
    Named,
    /// The file system can give a name only by replacing what it names.
    CannotHere,
}

type Link = fn(&Path, &Path) -> std::io::Result<()>;

/// How a staged file gets the database's name without replacing a file there: the two
/// calls, so that a test can play a file system that lacks them.
struct Naming {
    link: Link,
    rename_noreplace: Link,
}

impl Naming {
    const SYSTEM: Naming = Naming {
        link: |a, b| std::fs::hard_link(a, b),
        rename_noreplace: |a, b| {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            Ok(renameat_with(CWD, a, CWD, b, RenameFlags::NOREPLACE)?)
        },
    };

    /// Give `new` the name `path`; an error (AlreadyExists among them) when that name is
    /// taken, since the other start's database must stay.
    fn name(&self, new: &Path, path: &Path) -> std::io::Result<Named> {
        match (self.link)(new, path) {
            Ok(()) => return Ok(Named::Named),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
            // No hard links here (vfat says EPERM, others EOPNOTSUPP).
            Err(_) => {}
        }
        match (self.rename_noreplace)(new, path) {
            Ok(()) => Ok(Named::Named),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                Ok(Named::CannotHere)
            }
            Err(e) => Err(e),
        }
    }
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
    use crate::store::tables::META;

    #[test]
    fn staging_names_are_told_apart_from_everything_else() {
        let path = Path::new("/d/scimd.redb");
        let tag = "0000000000000000000000000000002a";
        assert_eq!(
            staging(path, 42),
            Path::new(&format!("/d/scimd.redb.{tag}.new"))
        );
        assert!(is_staging(path, &format!("scimd.redb.{tag}.new")));
        for other in [
            "scimd.redb",
            "scimd.redb.new",
            "scimd.redb.42.new",
            "scimd.redb.000000000000000000000000000000x2.new",
            &format!("scimd.redb.{tag}.partial"),
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
        let left = staging(&path, 7);
        std::fs::write(&left, vec![7u8; 73_728]).unwrap();
        make(&path, &Faults::default()).unwrap();
        // The database is whole, and this start's staging file gone.
        let db = Database::open(&path).unwrap();
        assert_eq!(
            layout::stored_version(&db).unwrap(),
            Some(super::super::tables::SCHEMA_VERSION)
        );
        drop(db);
        let staged = |p: &Path| {
            std::fs::read_dir(p)
                .unwrap()
                .filter(|e| is_staging(&path, e.as_ref().unwrap().file_name().to_str().unwrap()))
                .count()
        };
        assert_eq!(staged(dir.path()), 1, "only the dead start's");
        clear_leftovers(&path);
        assert!(!left.exists(), "the dead start's file is cleared");
        // A second start that finds the name taken leaves the first's database alone.
        let before = std::fs::read(&path).unwrap();
        make(&path, &Faults::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(staged(dir.path()), 0);
    }

    /// A file system without hard links gets the rename that refuses to replace, and one
    /// without that either a database made in place: each a whole database, and none
    /// replaces one already there.
    #[test]
    fn a_file_system_without_hard_links_still_gets_a_whole_database() {
        let no_links = Naming {
            link: |_, _| Err(std::io::Error::from_raw_os_error(libc::EPERM)),
            ..Naming::SYSTEM
        };
        let neither = Naming {
            link: |_, _| Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
            rename_noreplace: |_, _| Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        };
        for naming in [no_links, neither] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("scimd.redb");
            make_with(&path, &Faults::default(), &naming).unwrap();
            let db = Database::open(&path).unwrap();
            assert_eq!(
                layout::stored_version(&db).unwrap(),
                Some(super::super::tables::SCHEMA_VERSION)
            );
            // Something written, which a second start's attempt must leave.
            let w = db.begin_write().unwrap();
            w.open_table(META).unwrap().insert("written", 7).unwrap();
            w.commit().unwrap();
            drop(db);
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(names.len(), 1, "no staging file left");
            make_with(&path, &Faults::default(), &naming).unwrap();
            let db = Database::open(&path).unwrap();
            let r = redb::ReadableDatabase::begin_read(&db).unwrap();
            let kept = r.open_table(META).unwrap().get("written").unwrap();
            assert_eq!(kept.map(|g| g.value()), Some(7));
        }
    }
}
