//! Consistent copies of the database while it serves: every table is copied from one read
//! snapshot into a new file, which is checked and then renamed into place. And restores,
//! which check a backup before it replaces the database.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use redb::{
    Database, Key, MultimapTableDefinition, ReadTransaction, ReadableDatabase,
    ReadableMultimapTable, ReadableTable, TableDefinition, TableHandle, Value, WriteTransaction,
};

use super::backend::identity;
use super::tables::*;
use super::verify::{check, check_open_file, unless_damaged};
use super::{Store, StoreError};
use crate::scim::schema::Rt;

fn copy<K: Key + 'static, V: Value + 'static>(
    r: &ReadTransaction,
    w: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, redb::Error> {
    copy_checking(r, w, def, |_| Ok(()))
}

/// `copy`, each value read passed to `check` (the scrub's): a value that fails it is damage,
/// redb's error for it, and nothing is copied; a backup must not quietly take the place of
/// good ones with a record no read can decode.
fn copy_checking<K: Key + 'static, V: Value + 'static>(
    r: &ReadTransaction,
    w: &WriteTransaction,
    def: TableDefinition<K, V>,
    check: fn(&[u8]) -> Result<(), String>,
) -> Result<u64, redb::Error> {
    let src = r.open_table(def)?;
    let mut dst = w.open_table(def)?;
    let mut n = 0;
    for e in src.iter()? {
        let (k, v) = e?;
        let value = v.value();
        if let Err(what) = check(V::as_bytes(&value).as_ref()) {
            return Err(redb::Error::Corrupted(format!(
                "{what}, in table {}",
                def.name()
            )));
        }
        dst.insert(k.value(), value)?;
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

/// A new, empty file at `path`, readable and writable by its owner only from its first byte.
/// Whatever was there is removed first, a link included (never followed): a file kept and
/// truncated would keep its old mode until changed.
pub fn owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    new_owner_only_file(path)
}

/// Create `path`, which must not exist (nor be a link), owner-only from the first byte.
fn new_owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    // Read too: a restore checks the copy through this handle.
    o.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Copy everything `r` sees into a new database at `to`; returns the number of rows. The copy
/// is written as `to` with the extension `partial`, checked, and only then renamed to `to`;
/// on failure nothing is left (it holds the whole directory, in the server's state directory).
pub fn copy_all(r: &ReadTransaction, to: &Path) -> Result<u64, StoreError> {
    let tmp = to.with_extension("partial");
    // redb panics on some damaged pages: caught, so that the partial copy is still removed.
    let copied = super::verify::caught(|| copy_checked(r, &tmp))
        .unwrap_or_else(|what| Err(StoreError::CopyDamaged { what }));
    let made = copied.and_then(|(rows, written)| {
        let io = |e| StoreError::Io {
            path: to.display().to_string(),
            source: e,
        };
        // The name must still be the file written: in a directory another user may write,
        // it could have been swapped for a link since, which would then pass for the copy.
        if std::fs::symlink_metadata(&tmp).map(|m| identity(&m)).ok() != Some(written) {
            return Err(io(std::io::Error::other(format!(
                "{} was replaced while the copy was written into it; nothing was put at {}",
                tmp.display(),
                to.display()
            ))));
        }
        std::fs::rename(&tmp, to).map_err(io)?;
        // The name too must be on disk before the copy is called made.
        super::backend::sync_parent(to).map_err(io)?;
        Ok(rows)
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made
}

/// The copy's page cache while it is written and checked.
const COPY_CACHE_BYTES: usize = 8 << 20;

/// Compactions of a copy at most: one has done it in every case seen; each further one only
/// runs when the one before moved pages.
const COMPACTIONS: usize = 4;

/// A finished copy (`copy_all`) compacted and checked again, by the command that puts it in
/// place, not the daemon. Written in one transaction, its file grew by doubling (redb's growth
/// up to 4 GiB): compacted, it is no larger than the pages it holds, which a file in use never
/// holds fewer of (a million users: 1.11 GB to 711 MB in 1.6 s; the file was 870 MB). redb's
/// compaction holds memory in proportion to the file (25 MB for that one), which the daemon,
/// serving in a bounded footprint, does not spend. The copy was checked whole before: one
/// that cannot be compacted (a file system without locks, say) is kept as it is, and why is
/// the answer; only a copy that fails the check once compacted is an error.
pub fn compact_copy(path: &Path) -> Result<Option<String>, String> {
    // Never through a link: this runs as root, in a directory another user may write.
    let file = no_link(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    unless_damaged(|| {
        let opened = super::backend::Backend::from_file(file, Default::default())
            .map_err(|e| e.to_string())
            .and_then(|b| {
                Database::builder()
                    .set_cache_size(1 << 20)
                    .create_with_backend(b)
                    .map_err(|e| e.to_string())
            });
        let mut db = match opened {
            Ok(db) => db,
            Err(e) => return Ok(Some(e)),
        };
        let mut not_done = None;
        for _ in 0..COMPACTIONS {
            match db.compact() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    not_done = Some(e.to_string());
                    break;
                }
            }
        }
        // redb's compaction commits as it goes: one cut short leaves the last commit whole.
        match db.check_integrity() {
            Ok(true) => Ok(not_done),
            Ok(false) => Err("the copy failed redb's integrity check once compacted".into()),
            Err(e) => Err(format!("the copy could not be checked once compacted: {e}")),
        }
    })?
}

/// While a copy is written, redb grows its file by doubling it up to 4 GiB, and by one or
/// two 4 GiB regions past that: before it is compacted, it may take twice the live file, or
/// 8 GiB more.
fn copy_peak(live: u64) -> u64 {
    live.saturating_add(live.min(8 << 30))
}

/// `path` opened to read and write, refused if it is a symbolic link.
fn no_link(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The rows copied, and the copy's identity (`identity`).
fn copy_checked(r: &ReadTransaction, tmp: &Path) -> Result<(u64, (u64, u64)), StoreError> {
    let fail = |source: redb::Error| StoreError::Open {
        path: tmp.display().to_string(),
        source,
    };
    let io = |e| StoreError::Io {
        path: tmp.display().to_string(),
        source: e,
    };
    // Owner-only from its first byte: the copy holds the whole directory. Written through
    // this handle, never reopened by name: the name could be swapped for a link meanwhile
    // (a backup made by root into a directory another user may write), and the copy then
    // made wherever it points.
    let file = owner_only_file(tmp).map_err(io)?;
    let written = identity(&file.metadata().map_err(io)?);
    let backend = super::backend::Backend::from_file(file, Default::default()).map_err(io)?;
    // redb's default cache is a gigabyte: the copy's pages would stay in the daemon's
    // memory long after it is written (a 57 MB file added 55 MB of RSS).
    let mut db = Database::builder()
        .set_cache_size(COPY_CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(|e| fail(e.into()))?;
    let mut w = db.begin_write().map_err(|e| fail(e.into()))?;
    // Two-phase, as the live file: damage to the newest commit then reads as damage, where
    // redb would otherwise fall back to the commit before it, the empty file.
    w.set_two_phase_commit(true);
    let rows = (|| -> Result<u64, redb::Error> {
        let mut n = 0;
        n += copy(r, &w, META)?;
        n += copy_checking(r, &w, RESOURCES, super::scrub::record)?;
        n += copy(r, &w, COUNTS)?;
        n += copy(r, &w, USERNAME_USERID)?;
        n += copy_multi(r, &w, EXTERNALID_ID)?;
        n += copy_multi(r, &w, EMAIL_USERID)?;
        n += copy_multi(r, &w, DISPLAYNAME_ID)?;
        n += copy(r, &w, GROUPID_MEMBERID)?;
        n += copy(r, &w, MEMBERID_GROUPID)?;
        n += copy(r, &w, MEMBER_DISPLAY)?;
        n += copy_checking(r, &w, EVENTS, super::scrub::event)?;
        n += copy(r, &w, EVENT_SEQ)?;
        n += copy(r, &w, OVERFLOW_USERID)?;
        n += copy(r, &w, UNIQUE_ID)?;
        n += copy(r, &w, RANKS)?;
        n += copy(r, &w, MODIFIED_ID)?;
        Ok(n)
    })()
    .map_err(|e| match e {
        redb::Error::Corrupted(what) => StoreError::CopyDamaged { what },
        e => fail(e),
    })?;
    w.commit().map_err(|e| fail(e.into()))?;
    // A pass over pages just written (mostly still in memory): a copy that reads back
    // damaged is refused now rather than found at the restore that needs it.
    if !db.check_integrity().map_err(|e| fail(e.into()))? {
        return Err(fail(redb::Error::Corrupted(
            "the new copy failed redb's integrity check".into(),
        )));
    }
    Ok((rows, written))
}

impl Store {
    /// Write a consistent snapshot of the database to `to` while writes continue.
    pub async fn backup(&self, to: std::path::PathBuf) -> Result<u64, String> {
        // A copy of a file known damaged would take the place of a good backup.
        if let Some(what) = self.damage_found() {
            return Err(format!(
                "the database is damaged; nothing was copied: {what}"
            ));
        }
        self.room_for_copy(&to)?;
        let db = self.db().map_err(|e| e.to_string())?;
        let copied = tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(|e| e.to_string())?;
            Ok::<_, String>(copy_all(&r, &to))
        })
        .await
        .map_err(|e| e.to_string())??;
        if let Err(StoreError::CopyDamaged { .. }) = &copied {
            self.suspect_damage();
        }
        copied.map_err(|e| e.to_string())
    }

    /// Refuse, before writing anything, a copy onto the database's own file system that could
    /// fill it: a copy that ran out of room there would first have taken live writes down
    /// (each refused for a full disk while it grew). Sized by what the copy's file may reach
    /// before it is compacted (`copy_peak`).
    fn room_for_copy(&self, to: &Path) -> Result<(), String> {
        use super::backend::parent_dir;
        use std::os::unix::fs::MetadataExt;
        let live = &self.shared.path;
        let dev = |p: &Path| std::fs::metadata(parent_dir(p)).map(|m| m.dev()).ok();
        if dev(live).is_none_or(|d| dev(to) != Some(d)) {
            return Ok(());
        }
        let Some(free) = self.shared.faults.free_bytes(to) else {
            return Ok(());
        };
        let needed = copy_peak(self.file_size()).saturating_add(super::ROOM);
        if free >= needed {
            return Ok(());
        }
        let (free, needed) = super::disk_full_mib(free, needed);
        Err(format!(
            "not enough room for the copy: it is written in {}, on the database's own disk, \
             and may need {needed:.1} MiB there (twice the size of {} while it is written, \
             and the {} MiB kept free for live writes), but {free:.1} MiB are free; nothing \
             was written, and the \
             server's writes were not disturbed: free space there first",
            parent_dir(to).display(),
            live.display(),
            super::ROOM >> 20,
        ))
    }
}

/// Whether `name` is a copy `Store::backup` makes in the state directory, finished or not
/// (`backup-<digits>.redb` or `backup-<digits>.partial`), or the copy a killed `scimd restore`
/// left (`scimd.restoring`; a restore holds the database, so none runs beside a server).
pub fn is_staged_backup(name: &str) -> bool {
    if name == "scimd.restoring" {
        return true;
    }
    let Some(rest) = name.strip_prefix("backup-") else {
        return false;
    };
    let stamp = rest
        .strip_suffix(".redb")
        .or_else(|| rest.strip_suffix(".partial"));
    stamp.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// The daemon's finished copy named by `answer`, opened for reading, if it is one: a file
/// `backup-<digits>.redb` in the state directory `dir`, not a link, and owned by the
/// directory's owner. The answer comes over a socket in a directory the service user owns,
/// so a command run as root takes only a file name from it, and only that kind: any other
/// path would have root copy or delete any file. (The name is looked up in this command's
/// `dir`, which also spares a relative `storage.dir` read from another working directory.)
/// Returns the path (to remove once copied) and the open file.
pub fn open_staged(dir: &Path, answer: &str) -> Result<(PathBuf, std::fs::File), String> {
    let refuse = || format!("the server named {answer:?} as its copy; refusing to read it");
    let name = Path::new(answer)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(refuse)?;
    if !name.ends_with(".redb") || !is_staged_backup(name) {
        return Err(refuse());
    }
    let path = dir.join(name);
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW);
    }
    let file = o.open(&path).map_err(|e| format!("{}: {e}", refuse()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (m, d) = (
            file.metadata().map_err(|e| e.to_string())?,
            std::fs::metadata(dir).map_err(|e| e.to_string())?,
        );
        // A hard link to a file of root's would be a regular file too, but root's.
        if !m.is_file() || m.uid() != d.uid() {
            return Err(refuse());
        }
    }
    Ok((path, file))
}

/// Remove the backup copies left in the state directory `dir` by a `scimd backup` that was
/// killed, or whose server stopped, before it could move its copy away. Only for a server
/// that has just opened the database: no backup can be under way then. Returns how many.
pub fn remove_staged_backups(dir: &Path) -> usize {
    remove_in(dir, is_staged_backup)
}

/// Remove the copies of import files (`import-<id>.spool`) left in the state directory `dir`
/// by an import whose process died. As `remove_staged_backups`. Returns how many.
pub fn remove_import_spools(dir: &Path) -> usize {
    remove_in(dir, |n| n.starts_with("import-") && n.ends_with(".spool"))
}

fn remove_in(dir: &Path, named: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(&named))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// A file written under a temporary name beside its final one and renamed into place only
/// once complete and on disk: a failure or a kill part-way never leaves a truncated file
/// under the final name. Dropped before `finish`, it removes the temporary file.
pub struct AtomicFile {
    to: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    done: bool,
}

impl AtomicFile {
    /// Start writing `to` (as `to.<pid>.partial`), owner-only from the first byte. Fails, leaving
    /// nothing, when `to` is a directory or its directory is missing or not writable.
    pub fn create(to: &Path) -> Result<AtomicFile, String> {
        if to.is_dir() {
            return Err(format!("{} is a directory; name a file", to.display()));
        }
        // The rename replaces whatever is there: a link or a device would be swapped for a
        // plain file, not written through.
        if let Ok(m) = std::fs::symlink_metadata(to)
            && !m.is_file()
        {
            return Err(format!(
                "{} exists and is not a regular file (a link or a device); name a file",
                to.display()
            ));
        }
        let dir = super::backend::parent_dir(to);
        if !dir.is_dir() {
            return Err(format!(
                "{} does not exist or is not a directory",
                dir.display()
            ));
        }
        // One temporary file per writer, made afresh: two backups at once never share one,
        // and a link planted under its name is removed, never followed.
        let mut name = to.as_os_str().to_owned();
        name.push(format!(".{}.partial", std::process::id()));
        let tmp = PathBuf::from(name);
        let file =
            owner_only_file(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        Ok(AtomicFile {
            to: to.to_path_buf(),
            tmp,
            file,
            done: false,
        })
    }

    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// The temporary name it is written under until `finish`.
    pub fn partial_path(&self) -> &Path {
        &self.tmp
    }

    /// Flush the file to disk and rename it to its final name, flushing the directory too
    /// so that the rename survives a power loss. True when it replaced a file of that name.
    pub fn finish(mut self) -> Result<bool, String> {
        let to = self.to.display().to_string();
        self.file
            .sync_all()
            .map_err(|e| format!("cannot write {}: {e}", self.tmp.display()))?;
        let replaced =
            rename_over(&self.tmp, &self.to).map_err(|e| format!("cannot rename to {to}: {e}"))?;
        self.done = true;
        super::backend::sync_parent(&self.to)
            .map_err(|e| format!("{to} was written, but its directory cannot be synced: {e}"))?;
        Ok(replaced)
    }
}

/// Rename `from` to `to`, replacing what is there; true when it replaced something. Told
/// by the rename itself, not by a look before it: two backups to one name at once each say
/// truly whether theirs replaced the other's.
pub fn rename_over(from: &Path, to: &Path) -> std::io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::EXIST) => std::fs::rename(from, to).map(|()| true),
        // A file system without the flag (EINVAL): a look, then the rename.
        Err(_) => {
            let there = std::fs::symlink_metadata(to).is_ok();
            std::fs::rename(from, to).map(|()| there)
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Put the backup at `from` in place of the database at `db`. The backup is copied beside
/// the database first and checked there, so a backup that fails is never put in place and
/// the file given is never changed: redb's check of every page, a scimd layout this version
/// reads, and scimd's verify (`types` as for `Store::verify`). Returns where the old file was
/// kept.
pub fn restore(
    from: &Path,
    db: &Path,
    types: &HashMap<String, (Rt, Rt)>,
) -> Result<Restored, NotRestored> {
    // Fails while a server holds the database. Opened read-only, so a damaged database (the
    // usual reason to restore) is neither refused nor changed here; held until the new file
    // is in place, so a server starting meanwhile finds it in use instead of writing to the
    // file about to be set aside.
    let mut held = None;
    // Only a regular file is the database: a FIFO planted there would hang this command, a
    // link would have it read another file.
    if let Ok(m) = std::fs::symlink_metadata(db)
        && !m.is_file()
    {
        return Err(NotRestored::Failed(format!(
            "{} is not a regular file (a link, a pipe or a device); move it away first",
            db.display()
        )));
    }
    if db.exists() {
        match unless_damaged(|| redb::Builder::new().open_read_only(db)) {
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(NotRestored::InUse(format!(
                    "cannot take {}: it is in use (is scimd running?)",
                    db.display()
                )));
            }
            Ok(Ok(handle)) => held = Some(handle),
            _ => {}
        }
    }
    // The numbers each tenant's feed has given out, which its readers may hold.
    let given_out = held
        .as_ref()
        .and_then(|h| unless_damaged(|| feed_ends(h)).ok()?.ok());
    // And the floor its versions stood on, if it was restored itself.
    let floor = held
        .as_ref()
        .and_then(|h| {
            unless_damaged(|| super::layout::version_floor(h))
                .ok()?
                .ok()
        })
        .unwrap_or(0);
    let tmp = db.with_extension("restoring");
    let placed = check_copy(from, &tmp, types, given_out.as_ref(), floor).and_then(
        |(copy, warnings, converted_from, feeds)| {
            put_in_place(&tmp, &copy, db).map(|kept| Restored {
                kept,
                warnings,
                converted_from,
                feeds,
            })
        },
    );
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed.map_err(NotRestored::Failed)
}

/// Why a restore left the database as it was.
#[derive(Debug, PartialEq, Eq)]
pub enum NotRestored {
    /// Another process (a running scimd) holds the database: a refusal, nothing tried.
    InUse(String),
    /// The backup or the copy of it failed a check, or could not be put in place.
    Failed(String),
}

impl std::fmt::Display for NotRestored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRestored::InUse(s) | NotRestored::Failed(s) => f.write_str(s),
        }
    }
}

/// What a restore did: where the replaced database was kept, and what scimd's verify found
/// in the backup under the current configuration (a setting changed since the backup, such
/// as an attribute no longer unique, shows here; it is no reason to refuse).
#[derive(Debug)]
pub struct Restored {
    pub kept: Option<PathBuf>,
    pub warnings: Vec<String>,
    /// The backup's layout version when it was older and the restored file was converted
    /// (which older scimd versions then cannot read).
    pub converted_from: Option<u64>,
    pub feeds: FeedRestart,
}

/// How a restore restarts the change feeds: the events in the backup describe a past its
/// readers may have read beyond, and numbers given out since the backup would be given
/// again to other changes. So every tenant's feed goes on past the highest number either
/// database gave out, with no event kept before it: each reader gets 410 once and reads the
/// users and groups again (see the feed's reader in `http::app_side`).
#[derive(Debug, Default)]
pub struct FeedRestart {
    /// Each tenant's new last number (its next event is one more).
    pub last: BTreeMap<String, u64>,
    /// Whether the replaced database could be read for the numbers it gave out. When it
    /// could not (damaged, or none), the backup's numbers move on by `UNKNOWN_GAP`.
    pub known: bool,
}

/// How far a feed moves on when the numbers given out since the backup are unknown: past
/// any a reader could hold, short of writing a billion events since the backup.
pub const UNKNOWN_GAP: u64 = 1_000_000_000;

/// Each tenant's last feed number in `db`.
fn feed_ends(db: &impl ReadableDatabase) -> Result<BTreeMap<String, u64>, redb::Error> {
    let r = db.begin_read()?;
    let mut out = BTreeMap::new();
    for e in r.open_table(EVENT_SEQ)?.iter()? {
        let (k, v) = e?;
        out.insert(k.value().to_string(), v.value());
    }
    Ok(out)
}

/// Restart the feeds of the database about to be restored (see `FeedRestart`).
fn restart_feeds(
    db: &Database,
    given_out: Option<&BTreeMap<String, u64>>,
) -> Result<FeedRestart, redb::Error> {
    let mut ends = feed_ends(db)?;
    match given_out {
        Some(g) => {
            for (t, n) in g {
                let e = ends.entry(t.clone()).or_default();
                *e = (*e).max(*n);
            }
        }
        None => ends.values_mut().for_each(|e| *e += UNKNOWN_GAP),
    }
    let w = db.begin_write()?;
    {
        let mut seqs = w.open_table(EVENT_SEQ)?;
        for (t, n) in ends.iter_mut() {
            // One past every number given out: no reader can stand at it.
            seqs.insert(t.as_str(), *n)?;
            *n = super::events::skip_one(&mut seqs, t)?;
        }
        w.open_table(EVENTS)?.retain(|_, _| false)?;
    }
    w.commit()?;
    Ok(FeedRestart {
        last: ends,
        known: given_out.is_some(),
    })
}

/// Set the version floor of the database about to be restored (`layout::VERSION_FLOOR`)
/// past every version the replaced one can have given out: the backup's resources have
/// versions the replaced database may since have given to other states of them, and an
/// ETag a client holds (a cached `W/"7"`) must not match another state after the restore.
/// The replaced database's versions are small counts, or above its own floor by at most
/// its writes since its restore; the clock in microseconds is past both (as no resource is
/// written a million times a second), and past the floor of either file.
fn raise_version_floor(db: &Database, replaced_floor: u64) -> Result<(), redb::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0));
    let floor = now
        .max(super::layout::version_floor(db)? + 1)
        .max(replaced_floor + 1);
    let w = db.begin_write()?;
    w.open_table(META)?
        .insert(super::layout::VERSION_FLOOR, floor)?;
    w.commit()?;
    Ok(())
}

/// Why `file` is no database at all, for a file that does not begin as every redb file
/// does (the wrong file given, most likely an export): told as such instead of as a damaged
/// backup. A file that begins so, or with zeros (a page a failing disk wiped), is judged by
/// redb's checks.
fn not_a_database(file: &std::fs::File) -> Option<&'static str> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 4];
    // Unread, it is left to redb's checks, whose error says more than a guess would.
    let read = file.read_at(&mut head, 0).ok()?;
    match &head[..read] {
        b"redb" | [0, 0, 0, 0] => None,
        [] => Some("the file is empty"),
        [b'{', ..] => Some(
            "it is JSON: a file written by `scimd export` is loaded with `scimd import`, a \
             backup is written by `scimd backup`",
        ),
        _ => Some("it is not a database file (a backup is written by `scimd backup`)"),
    }
}

/// Copy `from` to `tmp` and check the copy; the error says what is wrong with `from`.
fn check_copy(
    from: &Path,
    tmp: &Path,
    types: &HashMap<String, (Rt, Rt)>,
    given_out: Option<&BTreeMap<String, u64>>,
    replaced_floor: u64,
) -> Result<(std::fs::File, Vec<String>, Option<u64>, FeedRestart), String> {
    let unread = |why: String| {
        format!(
            "{} cannot be restored (the database was left as it was): {why}",
            from.display()
        )
    };
    let refuse = |why: String| {
        // What is damaged here is the backup, not the database: the advice for a damaged
        // database (restore a backup over it) would mislead.
        unread(
            why.replace("the database file is damaged", "the backup file is damaged")
                .replace(super::verify::NEXT, "; restore another backup"),
        )
    };
    // Made afresh: a link left under this name (the state directory belongs to the service
    // user, and this may run as root) is removed, never followed.
    let copied = std::fs::File::open(from)
        .map_err(|e| unread(format!("cannot read it: {e}")))
        .and_then(|src| match src.metadata() {
            // Opened, a directory fails only at its first read, which would be told as the
            // copy's failure.
            Ok(m) if m.is_dir() => Err(unread(
                "it is a directory; give the file `scimd backup` wrote".into(),
            )),
            _ => Ok(src),
        })
        .and_then(|mut src| {
            let mut dst = owner_only_file(tmp)
                .map_err(|e| format!("cannot copy to {}: {e}", tmp.display()))?;
            std::io::copy(&mut src, &mut dst)
                .map_err(|e| format!("cannot copy to {}: {e}", tmp.display()))?;
            Ok(dst)
        });
    let copy = copied?;
    // Both checks read the copy through its handle: by name, the service user, who owns the
    // directory, could swap in a link to another file for root to open read and write.
    let handle = || copy.try_clone().map_err(|e| e.to_string());
    if let Some(why) = not_a_database(&copy) {
        return Err(unread(format!("not a scimd backup: {why}")));
    }
    check_open_file(tmp, handle()?).map_err(refuse)?;
    let mut converted_from = None;
    let mut feeds = FeedRestart::default();
    let problems = unless_damaged(|| -> Result<Vec<String>, String> {
        let backend = super::backend::Backend::from_file(handle()?, Default::default())
            .map_err(|e| e.to_string())?;
        let candidate = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| e.to_string())?;
        let r = candidate.begin_read().map_err(|e| e.to_string())?;
        let meta = r
            .open_table(META)
            .map_err(|e| format!("not a scimd backup: {e}"))?;
        let v = meta
            .get("schema_version")
            .map_err(|e| e.to_string())?
            .map(|g| g.value());
        drop(meta);
        drop(r);
        match v {
            // A backup of an older layout is brought to this one in the copy (the migration
            // the next start would run), so that it is checked as it will be served.
            Some(v) if v < SCHEMA_VERSION => {
                super::layout::init_schema(&candidate).map_err(|e| e.to_string())?;
                converted_from = Some(v);
            }
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(format!(
                    "it has layout version {v}; this scimd reads up to {SCHEMA_VERSION}"
                ));
            }
            None => return Err("not a scimd backup (no layout version)".into()),
        }
        feeds = restart_feeds(&candidate, given_out).map_err(|e| e.to_string())?;
        raise_version_floor(&candidate, replaced_floor).map_err(|e| e.to_string())?;
        let r = candidate.begin_read().map_err(|e| e.to_string())?;
        // (Its events are gone already: a restore starts the feeds again.)
        values_parse(&r, RESOURCES, super::scrub::record)?;
        drop(r);
        check(&candidate, types).map_err(|e| e.to_string())
    })
    .and_then(|r| r)
    .map_err(refuse)?;
    Ok((copy, problems, converted_from, feeds))
}

/// Whether every value of `def` passes `check` (the scrub's): a backup holding a record no
/// read can decode is damaged, and is not put in place of the database.
fn values_parse<K: Key + 'static, V: Value + 'static>(
    r: &ReadTransaction,
    def: TableDefinition<K, V>,
    check: fn(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let t = match r.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    for e in t.iter().map_err(|e| e.to_string())? {
        let (_, v) = e.map_err(|e| e.to_string())?;
        check(V::as_bytes(&v.value()).as_ref()).map_err(|what| {
            format!(
                "the database file is damaged: {what}, in table {}",
                def.name()
            )
        })?;
    }
    Ok(())
}

/// Rename the checked copy `tmp` (open as `copy`) to `db`, keeping the database it replaces.
fn put_in_place(tmp: &Path, copy: &std::fs::File, db: &Path) -> Result<Option<PathBuf>, String> {
    copy.sync_all().map_err(|e| e.to_string())?;
    // The restored file belongs to whoever owned the database it replaces, or else the state
    // directory (the service user), owner-only, whoever runs the command. Set through the
    // handle: by path, a link swapped in meanwhile by the directory's owner would hand root's
    // change to another file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let owner = std::fs::symlink_metadata(db)
            .ok()
            .filter(|m| m.is_file())
            .or_else(|| std::fs::metadata(super::backend::parent_dir(db)).ok());
        if let Some(m) = owner {
            let _ = std::os::unix::fs::fchown(copy, Some(m.uid()), Some(m.gid()));
        }
        let _ = copy.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    let kept = set_aside(db)?;
    std::fs::rename(tmp, db).map_err(|e| e.to_string())?;
    // The next start removes a `scimd.restoring` it finds: a power cut that kept the copy
    // but lost the renames would take the restore, and every write acknowledged since.
    super::backend::sync_parent(db).map_err(|e| {
        format!(
            "{} was restored, but its directory cannot be synced: {e}",
            db.display()
        )
    })?;
    Ok(kept)
}

/// Remove each `scimd.before-restore*` beside `db` that is another name of `db` itself (the
/// same file): what a restore killed between `set_aside` and its rename leaves. Returns
/// the names removed.
pub fn remove_restore_aliases(db: &Path) -> Vec<PathBuf> {
    let Ok(live) = std::fs::metadata(db) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(super::backend::parent_dir(db)) else {
        return Vec::new();
    };
    let kept = db.with_extension("before-restore");
    let kept = kept.file_name().and_then(|n| n.to_str()).unwrap_or("-");
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(kept)))
        .filter(|e| {
            std::fs::symlink_metadata(e.path()).is_ok_and(|m| identity(&m) == identity(&live))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .map(|e| e.path())
        .collect()
}

/// Give the database at `db` a second name to be kept under (`scimd.before-restore`, or
/// `.1`, `.2`, ... beside an earlier one), if there is one. Returns that name.
fn set_aside(db: &Path) -> Result<Option<PathBuf>, String> {
    Ok(if db.exists() {
        // A second restore must not overwrite what the first one kept.
        let old = (0..)
            .map(|n| match n {
                0 => db.with_extension("before-restore"),
                n => db.with_extension(format!("before-restore.{n}")),
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| db.with_extension("before-restore"));
        // A second name first, then the copy renamed over the first: there is a database
        // under `db` at every instant, so a kill or a power cut between the two steps
        // never leaves a start to make a new, empty one. (A file system without hard
        // links gets the two renames.)
        if std::fs::hard_link(db, &old).is_err() {
            std::fs::rename(db, &old).map_err(|e| e.to_string())?;
        }
        Some(old)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::AtomicFile;
    use std::io::Write;

    #[test]
    fn an_atomic_file_unfinished_leaves_nothing_and_the_old_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("b.redb");
        let tmp = dir
            .path()
            .join(format!("b.redb.{}.partial", std::process::id()));
        std::fs::write(&to, b"last week's backup").unwrap();
        // Failing (or killed) part-way: the final name still holds the old file.
        let mut f = AtomicFile::create(&to).unwrap();
        f.file().write_all(b"half of a").unwrap();
        assert!(tmp.exists());
        assert_eq!(std::fs::read(&to).unwrap(), b"last week's backup");
        drop(f);
        assert_eq!(std::fs::read(&to).unwrap(), b"last week's backup");
        assert!(!tmp.exists());
        let mut f = AtomicFile::create(&to).unwrap();
        f.file().write_all(b"all of it").unwrap();
        assert!(f.finish().unwrap(), "last week's backup was replaced");
        assert_eq!(std::fs::read(&to).unwrap(), b"all of it");
        assert!(!tmp.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&to).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Whether a file was replaced is told by the rename: a file put there after a look, by
    /// another backup to the same name, is replaced and said so.
    #[test]
    fn a_rename_says_whether_it_replaced_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, to) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("to"),
        );
        std::fs::write(&a, b"first").unwrap();
        std::fs::write(&b, b"second").unwrap();
        assert!(!super::rename_over(&a, &to).unwrap());
        assert!(super::rename_over(&b, &to).unwrap());
        assert_eq!(std::fs::read(&to).unwrap(), b"second");
        assert!(!a.exists() && !b.exists());
    }

    #[cfg(unix)]
    #[test]
    fn only_a_staged_copy_in_the_state_directory_is_read_for_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"root's").unwrap();
        let good = state.join("backup-123.redb");
        std::fs::write(&good, b"copy").unwrap();
        std::os::unix::fs::symlink(&secret, state.join("backup-456.redb")).unwrap();
        std::fs::write(state.join("backup-mine.redb"), b"x").unwrap();
        let (path, _) = super::open_staged(&state, good.to_str().unwrap()).unwrap();
        assert_eq!(path, good);
        // Only the name counts, looked up in the state directory: a path elsewhere names
        // nothing there (or the same copy).
        let (path, _) = super::open_staged(&state, "/elsewhere/backup-123.redb").unwrap();
        assert_eq!(path, good);
        for bad in [
            secret.clone(),
            state.join("backup-456.redb"),
            state.join("backup-mine.redb"),
            state.join("backup-123.partial"),
            state.join(".."),
            dir.path().join("backup-789.redb"),
        ] {
            let e = super::open_staged(&state, bad.to_str().unwrap()).unwrap_err();
            assert!(e.contains("refusing"), "{}: {e}", bad.display());
        }
        assert_eq!(std::fs::read(&secret).unwrap(), b"root's");
    }

    #[test]
    fn the_database_set_aside_for_a_restore_keeps_its_name_until_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("scimd.redb");
        std::fs::write(&db, b"old").unwrap();
        std::fs::write(dir.path().join("scimd.before-restore"), b"earlier").unwrap();
        let kept = super::set_aside(&db).unwrap().unwrap();
        assert_eq!(kept, dir.path().join("scimd.before-restore.1"));
        // A kill here must not leave a start without its database.
        assert_eq!(std::fs::read(&db).unwrap(), b"old");
        assert_eq!(std::fs::read(&kept).unwrap(), b"old");
        let earlier = std::fs::read(dir.path().join("scimd.before-restore")).unwrap();
        assert_eq!(earlier, b"earlier");
        assert_eq!(super::set_aside(&dir.path().join("none.redb")), Ok(None));
        // Killed here, the next start takes the second name off the live file, and keeps
        // what an earlier restore kept.
        assert_eq!(super::remove_restore_aliases(&db), vec![kept.clone()]);
        assert!(!kept.exists() && db.exists());
        assert!(dir.path().join("scimd.before-restore").exists());
    }

    #[test]
    fn a_copy_is_checked_through_its_handle_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("scimd.restoring");
        drop(redb::Database::create(&copy).unwrap());
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&copy)
            .unwrap();
        // The name now holds something else: what is checked is still the file opened.
        let other = dir.path().join("other");
        std::fs::write(&other, b"not a database").unwrap();
        std::fs::rename(&other, &copy).unwrap();
        assert_eq!(super::check_open_file(&copy, handle), Ok(()));
        assert!(super::super::check_file(&copy).is_err());
        assert_eq!(std::fs::read(&copy).unwrap(), b"not a database");
    }

    #[cfg(unix)]
    #[test]
    fn restore_refuses_a_database_path_that_is_no_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("scimd.redb");
        // A pipe would hang the read-only probe forever.
        let made = std::process::Command::new("mkfifo")
            .arg(&db)
            .status()
            .unwrap();
        assert!(made.success());
        let from = dir.path().join("backup.redb");
        std::fs::write(&from, b"whatever").unwrap();
        let e = super::restore(&from, &db, &Default::default()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_file_that_is_no_database_is_not_called_a_damaged_backup() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("scimd.redb");
        let from = dir.path().join("given");
        let export = "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"]}\n";
        for (bytes, says) in [
            (
                export.as_bytes(),
                "it is JSON: a file written by `scimd export` is loaded with `scimd import`",
            ),
            (b"".as_slice(), "the file is empty"),
            (b"PK\x03\x04 a zip".as_slice(), "it is not a database file"),
        ] {
            std::fs::write(&from, bytes).unwrap();
            let e = super::restore(&from, &db, &Default::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(
                    "cannot be restored (the database was left as it was): not a scimd backup"
                ) && e.contains(says)
                    && !e.contains("damaged"),
                "{e}"
            );
            assert!(!db.exists() && !db.with_extension("restoring").exists());
        }
        // Wiped by a failing disk, it is a damaged backup still, as redb finds.
        std::fs::write(&from, [0u8; 8192]).unwrap();
        let e = super::restore(&from, &db, &Default::default()).unwrap_err();
        assert!(!e.to_string().contains("not a scimd backup"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn the_database_is_never_opened_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("ld.so.preload");
        let db = dir.path().join("scimd.redb");
        std::os::unix::fs::symlink(&elsewhere, &db).unwrap();
        let e = crate::store::Store::open(&db, 1 << 20).err().unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!elsewhere.exists(), "nothing made where the link points");
        let e = super::super::check_file(&db).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn an_atomic_file_never_replaces_a_link_or_follows_one_under_its_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"someone else's file").unwrap();
        let link = dir.path().join("link.redb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = AtomicFile::create(&link).err().unwrap();
        assert!(e.contains("not a regular file"), "{e}");
        // A link planted where the temporary file goes is removed, not written through.
        let to = dir.path().join("b.redb");
        let planted = dir
            .path()
            .join(format!("b.redb.{}.partial", std::process::id()));
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let mut f = AtomicFile::create(&to).unwrap();
        f.file().write_all(b"backup").unwrap();
        f.finish().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"someone else's file");
        assert_eq!(std::fs::read(&to).unwrap(), b"backup");
    }

    #[test]
    fn an_atomic_file_refuses_a_directory_or_a_missing_one_and_makes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = AtomicFile::create(dir.path()).err().unwrap();
        assert!(err.contains("is a directory"), "{err}");
        let err = AtomicFile::create(&dir.path().join("gone/b.redb"))
            .err()
            .unwrap();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn only_the_names_of_the_servers_own_copies_are_stale_backups() {
        for (name, ours) in [
            ("backup-1796133072760728469.redb", true),
            ("backup-1796133072760728469.partial", true),
            ("scimd.restoring", true),
            ("backup-.redb", false),
            ("backup-mine.redb", false),
            ("backup-12.redb.bak", false),
            ("scimd.redb", false),
            ("scimd.before-restore", false),
        ] {
            assert_eq!(super::is_staged_backup(name), ours, "{name}");
        }
    }

    #[test]
    fn a_start_removes_staged_copies_and_import_spools_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "backup-17.redb",
            "import-01a242f9-a396-75f0-ae69-8b9eba74ab8f.spool",
            "scimd.redb",
            "import-notes.txt",
            "my.spool",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        assert_eq!(super::remove_staged_backups(dir.path()), 1);
        assert_eq!(super::remove_import_spools(dir.path()), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["import-notes.txt", "my.spool", "scimd.redb"]);
    }

    #[test]
    fn a_panic_reading_a_damaged_file_becomes_an_error_naming_it() {
        let r: Result<(), String> = super::unless_damaged(|| panic!("Invalid page type byte 0"));
        let e = r.unwrap_err();
        assert!(
            e.starts_with(
                "the database file is damaged (or scimd hit a bug reading it); restore the most \
                 recent good backup"
            ) && e.ends_with("(the reader said: Invalid page type byte 0)"),
            "{e}"
        );
        assert_eq!(super::unless_damaged(|| 7), Ok(7));
    }

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
