//! Consistent copies of the database while it serves: every table is copied from one read
//! snapshot into a new file, which is checked and then renamed into place. Also the
//! integrity check behind `scimd verify`.

use std::path::Path;

use redb::{
    Database, Key, MultimapTableDefinition, ReadTransaction, ReadableDatabase,
    ReadableMultimapTable, ReadableTable, TableDefinition, Value, WriteTransaction,
};

use super::tables::*;
use super::{Store, StoreError};

fn copy<K: Key + 'static, V: Value + 'static>(
    r: &ReadTransaction,
    w: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, redb::Error> {
    let src = r.open_table(def)?;
    let mut dst = w.open_table(def)?;
    let mut n = 0;
    for e in src.iter()? {
        let (k, v) = e?;
        dst.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}

fn copy_multi<K: Key + 'static, V: Key + 'static>(
    r: &ReadTransaction,
    w: &WriteTransaction,
    def: MultimapTableDefinition<K, V>,
) -> Result<u64, redb::Error> {
    let src = r.open_multimap_table(def)?;
    let mut dst = w.open_multimap_table(def)?;
    let mut n = 0;
    for e in src.iter()? {
        let (k, vals) = e?;
        for v in vals {
            dst.insert(k.value(), v?.value())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Open `path` for writing, readable and writable by its owner only, before anything is
/// written to it (a file that was there is emptied and made owner-only first).
pub fn owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let f = o.open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    o.open(path)
}

/// Copy everything `r` sees into a new database at `to`; returns the number of rows.
pub fn copy_all(r: &ReadTransaction, to: &Path) -> Result<u64, StoreError> {
    let fail = |source: redb::Error| StoreError::Open {
        path: to.display().to_string(),
        source,
    };
    let tmp = to.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    // Owner-only from its first byte: the copy holds the whole directory.
    owner_only_file(&tmp).map_err(|e| StoreError::Io {
        path: tmp.display().to_string(),
        source: e,
    })?;
    let db = Database::create(&tmp).map_err(|e| fail(e.into()))?;
    let w = db.begin_write().map_err(|e| fail(e.into()))?;
    let rows = (|| -> Result<u64, redb::Error> {
        let mut n = 0;
        n += copy(r, &w, META)?;
        n += copy(r, &w, RESOURCES)?;
        n += copy(r, &w, COUNTS)?;
        n += copy(r, &w, USERNAME_USERID)?;
        n += copy_multi(r, &w, EXTERNALID_ID)?;
        n += copy_multi(r, &w, EMAIL_USERID)?;
        n += copy_multi(r, &w, DISPLAYNAME_ID)?;
        n += copy(r, &w, GROUPID_MEMBERID)?;
        n += copy(r, &w, MEMBERID_GROUPID)?;
        n += copy(r, &w, EVENTS)?;
        n += copy(r, &w, EVENT_SEQ)?;
        n += copy(r, &w, OVERFLOW_USERID)?;
        n += copy(r, &w, UNIQUE_ID)?;
        n += copy(r, &w, RANKS)?;
        n += copy(r, &w, MODIFIED_ID)?;
        Ok(n)
    })()
    .map_err(fail)?;
    w.commit().map_err(|e| fail(e.into()))?;
    drop(db);
    std::fs::rename(&tmp, to).map_err(|e| StoreError::Io {
        path: to.display().to_string(),
        source: e,
    })?;
    Ok(rows)
}

impl Store {
    /// Write a consistent snapshot of the database to `to` while writes continue.
    pub async fn backup(&self, to: std::path::PathBuf) -> Result<u64, String> {
        let db = self.db().map_err(|e| e.detail)?;
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(|e| e.to_string())?;
            copy_all(&r, &to).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Put the backup at `from` in place of the database at `db`. The backup must open as a
/// scimd database of a layout this version reads. Returns where the old file was kept.
pub fn restore(from: &Path, db: &Path) -> Result<Option<std::path::PathBuf>, String> {
    {
        let check = Database::open(from)
            .map_err(|e| format!("{} is not a usable database: {e}", from.display()))?;
        let r = check.begin_read().map_err(|e| e.to_string())?;
        let meta = r
            .open_table(META)
            .map_err(|e| format!("{} is not a scimd backup: {e}", from.display()))?;
        let v = meta
            .get("schema_version")
            .map_err(|e| e.to_string())?
            .map(|g| g.value());
        match v {
            Some(v) if v <= SCHEMA_VERSION => {}
            Some(v) => {
                return Err(format!(
                    "{} has layout version {v}; this scimd reads up to {SCHEMA_VERSION}",
                    from.display()
                ));
            }
            None => {
                return Err(format!(
                    "{} is not a scimd backup (no layout version)",
                    from.display()
                ));
            }
        }
    }
    // Fails while a server holds the database.
    if db.exists() {
        drop(
            Database::open(db)
                .map_err(|e| format!("cannot take {}: {e} (is scimd running?)", db.display()))?,
        );
    }
    let tmp = db.with_extension("restoring");
    std::fs::copy(from, &tmp).map_err(|e| format!("cannot copy to {}: {e}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())?;
    // The restored file belongs to whoever owned the database it replaces (the service user),
    // owner-only, whoever runs the command.
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if let Ok(m) = std::fs::metadata(db) {
            let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
        }
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
    }
    let kept = if db.exists() {
        // A second restore must not overwrite what the first one kept.
        let old = (0..)
            .map(|n| match n {
                0 => db.with_extension("before-restore"),
                n => db.with_extension(format!("before-restore.{n}")),
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| db.with_extension("before-restore"));
        std::fs::rename(db, &old).map_err(|e| e.to_string())?;
        Some(old)
    } else {
        None
    };
    std::fs::rename(&tmp, db).map_err(|e| e.to_string())?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn an_owner_only_file_is_emptied_and_made_owner_only_before_it_is_written() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.redb");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = super::owner_only_file(&p).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!((m.permissions().mode() & 0o777, m.len()), (0o600, 0));
        let fresh = dir.path().join("new.redb");
        super::owner_only_file(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
