//! Storage: one redb file, one writer thread that group-commits, MVCC readers on the blocking
//! pool. Only this module knows redb's tables.
//!
//! Write path: a request becomes a job that first does every check with reads inside the
//! shared write transaction and only then writes. A job that fails a check writes nothing and
//! gets its own error, so it cannot spoil the other jobs of its batch. The batch commits once
//! with `Durability::Immediate`, and nobody is answered before that commit returns.

mod alike;
mod backend;
mod backup;
mod budget;
mod departed;
mod error;
mod events;
mod fresh;
mod layout;
mod list;
mod overlay;
pub mod plan;
mod plan_list;
mod purge;
mod query;
mod ranks;
mod read;
mod record;
mod refold;
mod scans;
mod scrub;
mod seats;
mod select;
mod skim;
pub mod tables;
mod verify;
mod warm;
mod write;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};

pub(crate) use backend::sync_parent_or_say;
pub use backend::{Fault, Faults};
pub use backup::{
    AtomicFile, NotRestored, Restored, UNKNOWN_GAP, compact_copy, is_staged_backup, open_staged,
    owner_only_file, remove_import_spools, remove_restore_aliases, remove_staged_backups,
    rename_over, restore,
};
pub use error::Error;
pub use events::{Actor, Event, Retention};
pub use plan_list::{PlanCursor, PlanEntry, PlanFrom, PlanPage, PlanSummary};
pub use query::{ListPage, ListQuery, PAGE_REFS, STORED_PAGE_REFS, SortMark, SortSpec, StoredPage};
pub use read::{Conditions, Feed, MemberBatch, Snapshot};
pub use record::unique_values;
pub use verify::{check_file, unless_damaged};
pub use warm::spawn as warm_page_cache;
pub use write::{Given, PlanApplied};
use writer::writer_thread;

/// A storage result holding the request's answer: the outer error is storage failing, the
/// inner one the request being refused.
type R<T> = Result<Result<T, Error>, redb::Error>;

/// Queued jobs before senders wait: back-pressure instead of unbounded memory.
const QUEUE: usize = 1024;

/// How many writes one tenant may have queued or running at once: another tenant's writes
/// always find room in the queue (one tenant's flood would otherwise fill it, and every
/// other tenant's write would wait behind it). The writer takes every queued write into its
/// turns at once, so this, times the tenants, bounds what waits.
const TENANT_WRITES: usize = QUEUE / 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database {path} is open in another process: another `scimd serve` on this \
         storage.dir, or a console command still running; stop it first"
    )]
    InUse { path: String },
    #[error("cannot open the database {path}: permission denied; {fix}")]
    Denied { path: String, fix: String },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::Error,
    },
    #[error(
        "the database {path} has layout version {found}, newer than this scimd understands \
         ({supported}): a newer scimd wrote it. Install that version again; or, to go back to \
         this one, restore a backup made before the upgrade with this version's `scimd \
         restore`"
    )]
    TooNew {
        path: String,
        found: u64,
        supported: u64,
    },
    #[error(
        "the database {path} has layout version {found}, older than this scimd's \
         ({supported}); a console command does not convert it, since an older scimd cannot \
         read the result: copy the file while scimd is stopped (or back it up with the \
         older scimd) to keep a way back, then start the daemon once (systemctl start \
         scimd), which converts it"
    )]
    TooOld {
        path: String,
        found: u64,
        supported: u64,
    },
    #[error(
        "the database {path} exists but holds nothing (0 bytes, or only zero bytes): it was \
         cut off (a failed copy, a restore gone wrong) or its very first start was killed or \
         ran out of disk space (a version before December 2026, or a file system without \
         hard links); scimd will not read it as \
         an empty directory, which would tell every IdP its users are gone. Restore a backup \
         (`scimd restore`), or, if this directory never held data and no other scimd is \
         starting on it, delete the file"
    )]
    Empty { path: String },
    /// redb found a page damaged as it opened the file, or panicked reading one.
    #[error(
        "cannot open the database {path}: it is damaged ({what}){}",
        verify::NEXT
    )]
    Damaged { path: String, what: String },
    /// A copy met damage: redb panicked or found a page corrupted, or a record or event
    /// does not parse.
    #[error(
        "the database is damaged (or scimd hit a bug reading it); nothing was copied{} (the \
         reader said: {what})",
        verify::NEXT
    )]
    CopyDamaged { what: String },
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Responder = Box<dyn FnOnce(Result<(), Error>) + Send>;
type Job = Box<dyn FnOnce(&mut write::W<'_>) -> Result<Responder, redb::Error> + Send>;

/// A job and the tenant it writes for (empty for the store's own: checkpoints, nudges): the
/// writer takes jobs in turn by tenant.
struct Queued {
    tenant: Arc<str>,
    job: Job,
}

/// The open database, or none while it is being reopened after a storage failure.
struct Shared {
    /// The snapshot reads share until the next commit (declared first: dropped before the
    /// database).
    snapshot: Mutex<SnapshotSlot>,
    db: RwLock<Option<Arc<Db>>>,
    /// Given to each file opened: `Store::close` waits until every one is closed.
    files: std::sync::mpsc::Sender<()>,
    path: PathBuf,
    cache_bytes: usize,
    faults: Faults,
    /// Set by a job of the running batch: commit this batch with the allocator record.
    record_allocator: std::sync::atomic::AtomicBool,
    /// Each tenant's share of the read threads (see `TENANT_READS`) and of the write queue
    /// (`TENANT_WRITES`).
    shares: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// The bytes free when a write last failed for want of disk space, until a commit
    /// succeeds. Writes are refused while no more is free: each one let through would fail
    /// again, and close the database to reads until it is reopened.
    no_room: Mutex<Option<u64>>,
    /// What the scrub found damaged, once it has: writes are refused from then on.
    damaged: Mutex<Option<String>>,
    /// The device and inode of the file first opened at `path` (`backend::identity`).
    identity: std::sync::OnceLock<(u64, u64)>,
    /// What became of that file, while `path` no longer leads to it (`look_at_file`):
    /// writes are refused meanwhile.
    gone: Mutex<Option<String>>,
    /// The header of the file the open database writes (`backend::Head`).
    head: Mutex<Option<Arc<backend::Head>>>,
    /// A pass started because a read panicked is running (`suspect_damage`).
    suspected: std::sync::atomic::AtomicBool,
    /// When the last such pass found no damage (`scrub::SUSPECT_AGAIN_AFTER`).
    cleared: Mutex<Option<std::time::Instant>>,
    /// False from the daemon's start until its first scrub has read the file through:
    /// writes wait for it, so that none is acknowledged on a file found damaged just after.
    scrubbed: tokio::sync::watch::Sender<bool>,
    /// The file's version floor (`layout::VERSION_FLOOR`), read at open: only a restore,
    /// which runs with no server, sets it.
    version_floor: std::sync::atomic::AtomicU64,
    /// Shared with each `Db`, whose close writes the file.
    file_writes: Arc<scrub::FileWrites>,
    /// The plan rules writes follow, as last applied (`plan::InForce`).
    plans_in_force: plan::InForce,
}

/// Free space on the database's disk and the file's size, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub free: u64,
    pub file: u64,
    /// Less than this free is little enough to warn of.
    little: u64,
}

impl Room {
    fn new(free: u64, file: u64) -> Room {
        Room {
            free,
            file,
            little: LOW_ROOM.max(file / 10),
        }
    }

    pub fn low(&self) -> bool {
        self.free < self.little
    }

    /// Enough more than little that a warning given is taken back: free space hovering at
    /// the line must not warn and take it back every few seconds.
    pub fn ample(&self) -> bool {
        self.free >= self.little + self.little / 4
    }
}

/// Why writes are refused before they reach the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The scrub found the file damaged; what it found (for the log and the console).
    Damaged(String),
    /// The database's name no longer leads to the file scimd has open: what became of it.
    FileGone(String),
    /// A write failed for want of disk space and not enough is free since: the bytes free,
    /// and how many must be free for writes to be tried again.
    DiskFull { free: u64, needed: u64 },
}

/// `m` locked, poisoned or not: the store's locks guard plain values that a panic elsewhere
/// leaves whole.
pub(super) fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How much more than at the failed write must be free before writes are tried again.
const ROOM: u64 = 4 << 20;

/// A full disk's free space and the mark writes wait for, in MiB to a tenth, the one rounded
/// down and the other up: rounded alike, "(7.0 MiB free) … until 7.0 MiB are free" could be
/// said of 6.96 against 7.0.
pub fn disk_full_mib(free: u64, needed: u64) -> (f64, f64) {
    let tenths = |b: u64| b as f64 / 1048576.0 * 10.0;
    (tenths(free).floor() / 10.0, tenths(needed).ceil() / 10.0)
}

/// Below this much free space on the database's disk the admin is warned (and below a tenth
/// of the file, for a large one): a burst of creates, an import or a backup beside the file
/// can take that much before writes are refused for a full disk.
pub const LOW_ROOM: u64 = 256 << 20;

/// Threads the daemon gives reads that may take long (scans, pages, member streams).
pub const READ_THREADS: usize = 8;

/// How many of them one tenant may hold at once: another tenant's reads always find a
/// thread, whatever the first one asks (eight slow scans or stalled member streams of one
/// tenant would otherwise hold them all).
const TENANT_READS: usize = READ_THREADS / 2;

/// How many of a tenant's turns reads that may scan (or sort) every record may hold: the
/// rest stay for its index-served reads (`userName sw`, an incremental import's
/// `meta.lastModified gt`, the change feed), which would otherwise queue behind a few
/// scans of a million users.
const TENANT_SCANS: usize = TENANT_READS / 2;

/// How a read takes its turn on the read threads.
#[derive(Clone, Copy)]
pub(super) struct Turns {
    /// It may scan (see `TENANT_SCANS`).
    pub scan: bool,
    /// At most this long waited for, or the read is answered `Busy`: a request queued
    /// behind its tenant's scans gets an answer, not a wait as long as the queue.
    pub wait: Option<std::time::Duration>,
}

impl Turns {
    pub fn plain() -> Turns {
        Turns {
            scan: false,
            wait: None,
        }
    }
}

/// A turn on the read threads (`Shared::read_turn`), held until dropped.
pub(super) struct Turn {
    _scan: Option<tokio::sync::OwnedSemaphorePermit>,
    _read: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Shared {
    /// A turn on the read threads for `tenant`, waiting while it holds its share; for a
    /// read that may scan (`scan`), also while its scans hold theirs.
    async fn read_turn(&self, tenant: &str, scan: bool) -> Turn {
        let scans = match scan {
            // A tenant's name has no NUL: no tenant's share is named so.
            true => self
                .turns(&format!("{tenant}\0scans"), TENANT_SCANS)
                .acquire_owned()
                .await
                .ok(),
            false => None,
        };
        Turn {
            _scan: scans,
            _read: self.turns(tenant, TENANT_READS).acquire_owned().await.ok(),
        }
    }

    /// The turns named `key` (a tenant's reads, scans or writes), `permits` of them.
    fn turns(&self, key: &str, permits: usize) -> Arc<tokio::sync::Semaphore> {
        let mut shares = locked(&self.shares);
        match shares.get(key) {
            Some(s) => s.clone(),
            None => shares
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(permits)))
                .clone(),
        }
    }
}

/// Beginning a read transaction and opening its tables costs as much as a point lookup, so
/// reads share the latest snapshot. Every commit bumps `generation` and drops the shared
/// one; a snapshot begun under an older generation may predate that commit and is never
/// shared, so a read that starts after a write was answered always sees it.
#[derive(Default)]
struct SnapshotSlot {
    generation: u64,
    shared: Option<Arc<read::ReadSide>>,
}

impl Shared {
    fn current(&self) -> Option<Arc<Db>> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn snapshot_slot(&self) -> std::sync::MutexGuard<'_, SnapshotSlot> {
        locked(&self.snapshot)
    }

    /// The latest committed snapshot.
    fn snapshot(&self, db: &Database) -> Result<Arc<read::ReadSide>, redb::Error> {
        let generation = {
            let slot = self.snapshot_slot();
            if let Some(s) = &slot.shared {
                return Ok(s.clone());
            }
            slot.generation
        };
        let fresh = Arc::new(read::ReadSide::new(db.begin_read()?));
        self.share(db, generation, &fresh);
        Ok(fresh)
    }

    /// Offer a snapshot of `db` begun under `generation` for sharing: refused if a commit
    /// came since, or if `db` was retired (a shared snapshot would keep the old handle open
    /// and the file locked against its reopening).
    fn share(&self, db: &Database, generation: u64, fresh: &Arc<read::ReadSide>) {
        let mut slot = self.snapshot_slot();
        let current = self.current().is_some_and(|d| std::ptr::eq(&**d, db));
        if current && slot.generation == generation && slot.shared.is_none() {
            slot.shared = Some(fresh.clone());
        }
    }

    /// Called after every commit, before anyone is told of it.
    fn committed(&self) {
        let old = {
            let mut slot = self.snapshot_slot();
            slot.generation += 1;
            slot.shared.take()
        };
        drop(old); // outside the lock: ending a read transaction takes redb's own lock
    }

    /// Note a storage failure: one for want of disk space closes the gate of `short_of_room`.
    fn failed(&self, e: &redb::Error) {
        if backend::no_space(e) {
            let free = self.faults.free_bytes(&self.path).unwrap_or(0);
            let was = locked(&self.no_room).replace(free);
            if was.is_none() {
                tracing::error!(path = %self.path.display(), free_bytes = free, needed_bytes = free.saturating_add(ROOM), "the disk holding the database is full: writes are refused until 4 MiB more than now are free on it; reads go on");
            }
        }
    }

    /// Whether the scrub has found the file damaged.
    fn is_damaged(&self) -> bool {
        locked(&self.damaged).is_some()
    }

    /// Whether `path` still leads to the file scimd opened, noting (and logging) what became
    /// of it when it does not. A file removed or replaced while scimd runs keeps serving from
    /// the handle, but a write committed to it is lost at the next start, which opens what
    /// the name leads to then: so no write is acknowledged meanwhile. Looked at before and
    /// after each commit (a `stat`, beside its fsyncs) and by the daemon every few seconds.
    fn look_at_file(&self) -> bool {
        let Some(opened) = self.identity.get() else {
            return true;
        };
        // Looked at under the lock, so that an older look cannot undo a newer one.
        let mut gone = locked(&self.gone);
        let now = match self.identity_now() {
            Ok(now) => now,
            // Cannot tell (an I/O error, a directory made unreadable): not called gone.
            Err(_) => Some(*opened),
        };
        // The same file, with other contents: another copied over it in place.
        let overwritten = now == Some(*opened)
            && locked(&self.head)
                .as_ref()
                .is_some_and(|head| !head.intact());
        if now == Some(*opened) && !overwritten {
            if gone.take().is_some() {
                tracing::info!(path = %self.path.display(), "the database file is back at its name: writes go through again");
            }
            return true;
        }
        let what = format!(
            "the database file {} was {} while scimd ran",
            self.path.display(),
            match now {
                None => "removed (or its directory)",
                Some(_) if overwritten =>
                    "overwritten in place by another file (a copy put over it)",
                Some(_) => "replaced by another file",
            }
        );
        if overwritten && gone.as_ref() != Some(&what) {
            tracing::error!(
                "{what}: writes are refused (503). What scimd wrote there is gone from the disk, \
                 and the file now holds another's header: a commit would mix the two. Stop \
                 scimd and put a backup back with `scimd restore --from FILE` (writes since \
                 that backup are lost); next time, restore with scimd stopped, never by \
                 copying over the live file"
            );
            *gone = Some(what);
            return false;
        }
        if gone.as_ref() != Some(&what) {
            tracing::error!(
                "{what}: writes are refused (503), since the next start would open what is \
                 there now and lose every write made since; reads go on from the file scimd \
                 holds open. A file renamed within its file system can be renamed back; a copy, \
                 or a file moved to another file system and back, is another file: save what \
                 scimd holds with `scimd backup --to FILE` (if storage.dir went too, and its \
                 admin.sock with it, copy the file scimd holds: `ls -l /proc/PID/fd` lists it \
                 as deleted, `cp /proc/PID/fd/N FILE`) and, with scimd stopped, put it back with \
                 `scimd restore --from FILE`"
            );
            *gone = Some(what);
        }
        false
    }

    /// The device and inode `path` leads to now; `None` when nothing is there.
    fn identity_now(&self) -> std::io::Result<Option<(u64, u64)>> {
        use std::io::ErrorKind;
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) => Ok(Some(backend::identity(&m))),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A commit went through: there was room after all.
    fn room_again(&self) {
        let mut slot = locked(&self.no_room);
        if slot.take().is_some() {
            tracing::info!(path = %self.path.display(), "writes go through again: space was freed on the database's disk");
        }
    }

    /// Writes refused for a full disk are let through once enough space is free: said as
    /// soon as that is seen (by `Store::look_for_room`), not at the next write, which may
    /// be minutes away.
    fn room_freed(&self) {
        let was = *locked(&self.no_room);
        if was.is_some() && self.short_of_room().is_none() {
            self.room_again();
        }
    }

    /// What the callers of a failed or abandoned batch are told: that the disk is full, when
    /// that was why.
    fn told_after_failure(&self) -> Error {
        self.short_of_room()
            .map_or(Error::Unavailable, |(free, needed)| Error::DiskFull {
                free,
                needed,
            })
    }

    /// The bytes free while a write failed for want of space and not `ROOM` more are free
    /// since, and how many must be: writes are refused meanwhile. `None` otherwise, and when
    /// the free space cannot be read (the write is let through to find out).
    fn short_of_room(&self) -> Option<(u64, u64)> {
        let at = (*locked(&self.no_room))?;
        let free = self.faults.free_bytes(&self.path)?;
        let needed = at.saturating_add(ROOM);
        (free < needed).then_some((free, needed))
    }

    /// After an I/O error redb refuses all further work (`PreviousIo`) until the file is
    /// opened again, which repairs it to its last commit.
    fn retire(&self) {
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
        // Then drop the shared snapshot: `share` refuses one of a retired handle, so none
        // can be installed after this.
        self.committed();
    }

    fn open_db(&self) -> Result<Database, redb::Error> {
        let io = |e| redb::Error::from(redb::StorageError::from(e));
        // The name's identity, as every later look reads it (`look_at_file`): a handle's
        // fstat and a path's stat need not agree on every file system (overlayfs has
        // differed), so the two are never compared. A reopen is refused before anything
        // touches another file at the name (its mode, redb's lock on it).
        let replaced = |now: Option<(u64, u64)>| match (now, self.identity.get()) {
            (Some(now), Some(first)) => now != *first,
            (Some(now), None) => {
                let _ = self.identity.set(now);
                false
            }
            // Nothing there (or no telling): the open itself says so.
            (None, _) => false,
        };
        let refused = || {
            self.look_at_file();
            io(std::io::Error::other(format!(
                "{} is not the file scimd opened at start: it was replaced while scimd ran",
                self.path.display()
            )))
        };
        if self.identity.get().is_some() && replaced(self.identity_now().ok().flatten()) {
            return Err(refused());
        }
        // Not created: the first open finds the file `fresh::make` made, and a reopen must
        // not start an empty database where the file was removed.
        let backend = backend::Backend::open(&self.path, self.faults.clone(), false)
            .map_err(io)?
            .signalling(self.files.clone());
        if replaced(self.identity_now().ok().flatten()) {
            return Err(refused());
        }
        *locked(&self.head) = Some(backend.head());
        // A full repair walks the whole file: say so, or a slow start looks like a hang.
        let path = self.path.display().to_string();
        let last_tenth = std::sync::atomic::AtomicU32::new(u32::MAX);
        let _writing = self.file_writes.writing();
        guarded(move || {
            Ok(Database::builder()
                .set_cache_size(self.cache_bytes)
                .set_repair_callback(move |session| {
                    let tenth = (session.progress() * 10.0) as u32;
                    if last_tenth.swap(tenth, std::sync::atomic::Ordering::Relaxed) != tenth {
                        tracing::warn!(
                            path = %path,
                            progress = %format!("{}%", tenth * 10),
                            "the database was not closed cleanly (a crash, a power loss or a \
                             storage failure mid-write): checking every page and rebuilding its \
                             free-space map"
                        );
                    }
                })
                .create_with_backend(backend)?)
        })
    }

    /// The database, reopening it if it was retired. Fails while the fault persists or a
    /// reader still holds the old handle; the next write or read retries.
    fn reopen(&self) -> Result<Arc<Db>, redb::Error> {
        if let Some(db) = self.current() {
            return Ok(db);
        }
        // Opened outside the lock: the repair can take a second a GiB, and meanwhile reads
        // (`/healthz` among them) must be told at once that there is no database, not wait.
        // Only the writer reopens, so no other open can race this one.
        let opened = self.open_db().inspect_err(|_| {
            // A file removed meanwhile is said as such (`/healthz`), not only as failing.
            self.look_at_file();
        })?;
        let db = Arc::new(Db(Some(opened), self.file_writes.clone()));
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = slot.as_ref() {
            return Ok(other.clone());
        }
        tracing::warn!(path = %self.path.display(), "database reopened after a storage failure");
        *slot = Some(db.clone());
        Ok(db)
    }
}

/// The open database, closed when its last holder lets go. redb's close records the
/// free-space map, reading the file: on a damaged page it may panic there, on whichever
/// thread held the last handle (a read, the writer, a console command closing). Caught: the
/// file is damaged, and the next open or the scrub says so.
struct Db(Option<Database>, Arc<scrub::FileWrites>);

impl std::ops::Deref for Db {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.0.as_ref().expect("taken only when dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _writing = self.1.writing();
        if let Some(db) = self.0.take()
            && let Err(what) = verify::caught(move || drop(db))
        {
            tracing::error!(%what, "the database could not be closed cleanly: a page read at the close is damaged");
        }
    }
}

#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Queued>,
    pub metrics: Arc<crate::metrics::StoreMetrics>,
    /// Disconnected once the writer has stopped and let go of the database (`close`).
    writer_done: Arc<Mutex<Option<std::sync::mpsc::Receiver<()>>>>,
}

/// Log `what` under a fresh error id and answer 500 naming only that id.
pub(super) fn internal(what: &str) -> Error {
    let error_id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(%error_id, "{what}");
    Error::Internal { error_id }
}

/// Run `f`, which reads the file, with a panic on a page that does not parse turned into
/// redb's own error for damage (redb panics on some damage rather than failing).
fn guarded<T>(f: impl FnOnce() -> Result<T, redb::Error>) -> Result<T, redb::Error> {
    verify::caught(f).unwrap_or_else(|what| Err(redb::Error::Corrupted(what)))
}

fn storage_failed(e: &redb::Error) -> Error {
    tracing::error!(error = %e, "storage operation failed");
    Error::Unavailable
}

/// What to do about a database file the service may not open: its mode, when its owner
/// lacks read or write (a `chmod` or a copy made read-only), else its owner.
fn denied_fix(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.is_file()
            && m.permissions().mode() & 0o600 != 0o600
        {
            return format!(
                "its mode is {:04o}, which does not let its owner read and write it: \
                 `chmod 0600 {}` (and make sure the user running scimd owns it)",
                m.permissions().mode() & 0o7777,
                path.display()
            );
        }
    }
    // This process's ids: right whoever runs it (a start by hand as another user), where the
    // package's `scimd` is right only for the package's unit.
    let dir = backend::parent_dir(path);
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    format!(
        "the user running scimd must own the state directory and its files: for this one \
         (uid {uid}), `chown -R {uid}:{gid} {dir}`; the package runs scimd as scimd: `chown -R \
         scimd:scimd {dir}`",
        dir = dir.display()
    )
}

/// Whether the file at `path` holds only zero bytes (as a first start on a full disk left
/// it before databases were made whole, `fresh`, and still can where they cannot be: its
/// size set, nothing written). Only a file of up to 64 MiB is read for it.
pub(super) fn only_zeros(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if f.metadata().map_or(true, |m| m.len() > 64 << 20) {
        return false;
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
            _ => return false,
        }
    }
}

impl Store {
    /// Open (or create) the database file, run migrations, and start the writer thread.
    /// Its storage backend has a fault switch (`faults()`), off unless a test flips it.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        Store::open_with(path, cache_bytes, true, Faults::default())
    }

    /// `open`, with a fault already set when the file is opened.
    #[cfg(test)]
    fn open_faulted(path: &Path, faults: Faults) -> Result<Store, StoreError> {
        Store::open_with(path, 1 << 20, true, faults)
    }

    /// As `open`, but a file of an older layout is refused (`TooOld`) instead of converted:
    /// for console commands, which an admin may run between installing a new version and
    /// keeping a copy of the old file.
    pub fn open_unconverted(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        Store::open_with(path, cache_bytes, false, Faults::default())
    }

    fn open_with(
        path: &Path,
        cache_bytes: usize,
        convert: bool,
        faults: Faults,
    ) -> Result<Store, StoreError> {
        let open_err = |source: redb::Error| {
            let path = path.display().to_string();
            match &source {
                redb::Error::DatabaseAlreadyOpen => StoreError::InUse { path },
                redb::Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    let fix = denied_fix(Path::new(&path));
                    StoreError::Denied { path, fix }
                }
                redb::Error::Corrupted(what) => StoreError::Damaged {
                    path,
                    what: what.clone(),
                },
                // redb's word for a header that is not its own (its first page overwritten,
                // or another file put in its place).
                redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    if only_zeros(Path::new(&path)) {
                        StoreError::Empty { path }
                    } else {
                        StoreError::Damaged {
                            path,
                            what: e.to_string(),
                        }
                    }
                }
                _ => StoreError::Open { path, source },
            }
        };
        // redb would format a 0-byte file as a new database: an existing file that lost
        // its contents must not pass for an empty directory.
        if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Err(StoreError::Empty {
                path: path.display().to_string(),
            });
        }
        // Disconnects once the writer is done and every file this store opened is closed.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let shared = Shared {
            snapshot: Mutex::default(),
            db: RwLock::new(None),
            files: done_tx.clone(),
            path: path.to_path_buf(),
            cache_bytes,
            faults,
            record_allocator: Default::default(),
            shares: Mutex::default(),
            no_room: Mutex::default(),
            damaged: Mutex::default(),
            identity: Default::default(),
            gone: Mutex::default(),
            head: Mutex::default(),
            suspected: Default::default(),
            cleared: Mutex::new(None),
            scrubbed: tokio::sync::watch::Sender::new(true),
            version_floor: Default::default(),
            file_writes: Default::default(),
            plans_in_force: Default::default(),
        };
        // Made whole under another name, or not at all (`fresh`): nothing here ever removes
        // the file at `path`, which may be another start's, made meanwhile and serving.
        if std::fs::symlink_metadata(path).is_err() {
            fresh::make(path, &shared.faults).map_err(open_err)?;
        }
        let db = shared.open_db().map_err(open_err)?;
        // Held now: no other start is making a database beside it.
        fresh::clear_leftovers(path);
        // Both refusals before anything is written: a newer layout may have dropped or
        // retyped tables this build would otherwise create or trip over.
        let supported = tables::SCHEMA_VERSION;
        match guarded(|| layout::stored_version(&db)).map_err(open_err)? {
            Some(found) if found > supported => {
                let path = path.display().to_string();
                return Err(StoreError::TooNew {
                    path,
                    found,
                    supported,
                });
            }
            Some(found) if !convert && found < supported => {
                let path = path.display().to_string();
                return Err(StoreError::TooOld {
                    path,
                    found,
                    supported,
                });
            }
            _ => {}
        }
        guarded(|| layout::init_schema(&db)).map_err(open_err)?;
        let floor = guarded(|| layout::version_floor(&db)).map_err(open_err)?;
        // Times handed out go on past the stored ones after a restart too: lastModified
        // must not go back for clients that sync by it.
        let newest = guarded(|| layout::newest_change(&db)).map_err(open_err)?;
        record::hold_clock_past(newest.div_euclid(1000));
        shared
            .version_floor
            .store(floor, std::sync::atomic::Ordering::Relaxed);
        *shared.db.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(Db(Some(db), shared.file_writes.clone())));
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::channel(QUEUE);
        let ws = shared.clone();
        let metrics = Arc::new(crate::metrics::StoreMetrics::default());
        let wm = metrics.clone();
        std::thread::Builder::new()
            .name("scimd-writer".into())
            .spawn(move || {
                writer_thread(ws, rx, wm);
                drop(done_tx); // after the writer's hold on the database is gone
            })
            .map_err(StoreError::Thread)?;
        Ok(Store {
            shared,
            jobs: tx,
            metrics,
            writer_done: Arc::new(Mutex::new(Some(done_rx))),
        })
    }

    /// Close the database cleanly and wait until it is (for a console command about to exit:
    /// a process that ends while the writer still holds the file leaves it to be repaired at
    /// the next open). Other clones of this store keep it open; this one waits at most 10 s.
    pub fn close(self) {
        let Store {
            shared,
            jobs,
            writer_done,
            ..
        } = self;
        drop(jobs);
        drop(shared);
        let done = locked(&writer_done).take();
        if let Some(done) = done {
            let _ = done.recv_timeout(std::time::Duration::from_secs(10));
        }
    }

    /// What disconnects once the writer has let go of the database and the file is closed
    /// (a scrub or a read on another thread may drop the last handle, and closing takes a
    /// sync), for a process that drops every clone of this store itself and then waits for
    /// the file to be closed cleanly (taken once; `close` then no longer waits).
    pub fn closed_signal(&self) -> Option<std::sync::mpsc::Receiver<()>> {
        locked(&self.writer_done).take()
    }

    /// The fault switch of this store's backend.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// The open database for a read; when it is down, ask the writer to reopen it (so reads
    /// alone bring it back) and answer 503.
    fn db(&self) -> Result<Arc<Db>, Error> {
        self.shared.current().ok_or_else(|| {
            self.nudge();
            Error::Unavailable
        })
    }

    /// An empty job: the writer reopens the database before running any batch.
    fn nudge(&self) {
        let job: Job = Box::new(|_| Ok(Box::new(|_| {})));
        let _ = self.jobs.try_send(Queued {
            tenant: "".into(),
            job,
        });
    }

    /// Run `f`, a write for `tenant`, in the shared write transaction and answer once its
    /// batch is durable.
    async fn write<T, F>(&self, tenant: String, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut write::W<'_>) -> R<T> + Send + 'static,
    {
        if !*self.shared.scrubbed.borrow() {
            // Milliseconds for most files, about three seconds at a million users.
            let mut first_pass = self.shared.scrubbed.subscribe();
            let _ = first_pass.wait_for(|done| *done).await;
        }
        if self.shared.is_damaged() {
            return Err(Error::Damaged);
        }
        // Looked at again only while refused: the file may have been put back.
        if locked(&self.shared.gone).is_some() && !self.shared.look_at_file() {
            return Err(Error::FileGone);
        }
        // Held until answered: see `TENANT_WRITES`.
        let _turn = self
            .shared
            .turns(&format!("{tenant}\0writes"), TENANT_WRITES)
            .acquire_owned()
            .await
            .ok();
        self.enqueue(tenant.into(), f).await
    }

    /// `write`, even on a file the scrub found damaged: for the checkpoint, which carries
    /// nothing of an IdP's.
    async fn enqueue<T, F>(&self, tenant: Arc<str>, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut write::W<'_>) -> R<T> + Send + 'static,
    {
        if let Some((free, needed)) = self.shared.short_of_room() {
            return Err(Error::DiskFull { free, needed });
        }
        let (tx, rx) = oneshot::channel();
        let shared = self.shared.clone();
        let job: Job = Box::new(move |w| {
            let answer = PanicAnswer(Some(tx));
            shared.faults.panic_if_set("a write");
            let result = match f(w) {
                Ok(r) => r,
                // Told here, before the writer handles the failure: its caller would
                // otherwise find the answer dropped before the writer had noted why.
                Err(e) => {
                    shared.failed(&e);
                    answer.send(Err(shared.told_after_failure()));
                    return Err(e);
                }
            };
            Ok(Box::new(move |committed: Result<(), Error>| {
                answer.send(committed.and(result))
            }))
        });
        let queued = Queued { tenant, job };
        self.jobs
            .send(queued)
            .await
            .map_err(|_| Error::Unavailable)?;
        // A dropped responder means the batch was abandoned: nothing of it was committed.
        rx.await
            .unwrap_or_else(|_| Err(self.shared.told_after_failure()))
    }

    /// Commit with the allocator state recorded, so that the next start, even after a
    /// crash, needs no full repair (called at shutdown; the idle checkpoint does the same).
    pub async fn checkpoint(&self) -> Result<(), Error> {
        let shared = self.shared.clone();
        self.enqueue("".into(), move |_| {
            shared
                .record_allocator
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(Ok(()))
        })
        .await
    }

    /// The daemon's checkpoint at start: opening the file marks it unclean until a commit
    /// records the allocator state, and the idle checkpoint follows only a write, so a crash
    /// in a quiet spell after a start would cost the next start a check of every page. Made
    /// once the first scrub pass lets writes through, as they wait for it, and not on damage
    /// it found: a commit during the pass would cut short its check of the pages' checksums.
    /// Holds the store only weakly while it waits: a stop meanwhile is not held up by it.
    pub fn checkpoint_at_start(
        &self,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
        let mut first_pass = self.shared.scrubbed.subscribe();
        let (shared, jobs) = (Arc::downgrade(&self.shared), self.jobs.downgrade());
        let (metrics, writer_done) = (self.metrics.clone(), self.writer_done.clone());
        async move {
            let _ = first_pass.wait_for(|done| *done).await;
            let (Some(shared), Some(jobs)) = (shared.upgrade(), jobs.upgrade()) else {
                return Err(Error::Unavailable);
            };
            if shared.is_damaged() {
                return Err(Error::Damaged);
            }
            let store = Store {
                shared,
                jobs,
                metrics,
                writer_done,
            };
            store.checkpoint().await
        }
    }

    /// Run `f` in a read snapshot on the blocking pool, within `tenant`'s share of it: for
    /// reads that may visit many records (scans, pages, member lists).
    async fn read<T, F>(&self, tenant: &str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&read::ReadSide) -> R<T> + Send + 'static,
    {
        self.read_in(tenant, |r: &Arc<read::ReadSide>| f(r)).await
    }

    /// `read`, given the snapshot itself, for an answer that goes on reading it after.
    async fn read_in<T, F>(&self, tenant: &str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<read::ReadSide>) -> R<T> + Send + 'static,
    {
        self.read_in_as(tenant, Turns::plain(), f).await
    }

    /// `read_in`, taking its turn as `turns` says.
    async fn read_in_as<T, F>(&self, tenant: &str, turns: Turns, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Arc<read::ReadSide>) -> R<T> + Send + 'static,
    {
        let db = self.db()?;
        self.pooled_as(tenant, turns, move |shared| f(&shared.snapshot(&db)?))
            .await
    }

    /// Run `f` on the blocking pool within `tenant`'s share of it; `f` picks its snapshot.
    async fn pooled<T, F>(&self, tenant: &str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> R<T> + Send + 'static,
    {
        self.pooled_as(tenant, Turns::plain(), f).await
    }

    /// `pooled`, taking its turn as `turns` says.
    async fn pooled_as<T, F>(&self, tenant: &str, turns: Turns, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> R<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        let turn = shared.read_turn(tenant, turns.scan);
        let turn = match turns.wait {
            Some(wait) => tokio::time::timeout(wait, turn)
                .await
                .map_err(|_| Error::Busy)?,
            None => turn.await,
        };
        // Dropped with this future when the client goes away: the read's scans then stop
        // at their next look at the clock instead of reading on for no one.
        let watch = Arc::new(budget::Watch::default());
        let _hangup = budget::Hangup(watch.clone());
        let metrics = self.metrics.clone();
        let tenant = tenant.to_string();
        // A panic is caught on its thread, so that what it said goes in the log under the
        // error id the client is given.
        let res = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let res = watch.run(|| {
                verify::caught(|| {
                    shared.faults.panic_if_set("a read");
                    f(&shared)
                })
            });
            // Counted here, not where the answer is made: a request that is gone has no
            // answer made for it.
            match watch.stopped() {
                Some(budget::Stop::Deadline) => {
                    metrics
                        .scans_past_deadline
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Some(budget::Stop::Gone) => {
                    metrics
                        .scans_for_no_one
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(%tenant, "a scan stopped: no one waits for its answer (the client went away, or the server closed its connection)");
                }
                None => {}
            }
            res
        })
        .await;
        match res {
            Ok(Ok(r)) => self.settle(r),
            Ok(Err(said)) => Err(self.read_panicked(&said)),
            Err(_) => Err(self.read_panicked("(no message)")),
        }
    }

    /// Run `f` in a read snapshot on the calling thread: for point reads (an index key or
    /// two and the records they name). These take microseconds from redb's cache or the
    /// OS page cache, less than the hand-off to a pool thread and back, and keeping them on
    /// the runtime's few threads keeps the allocator uncontended.
    fn read_now<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&read::ReadSide) -> R<T>,
    {
        self.read_now_in(|r: &Arc<read::ReadSide>| f(r))
    }

    /// `read_now`, given the snapshot itself.
    fn read_now_in<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&Arc<read::ReadSide>) -> R<T>,
    {
        let db = self.db()?;
        self.shared.faults.panic_if_set("a read");
        // As in `pooled`: a panic (redb on a damaged page) is this read's 500, logged with
        // what it said, and the file is checked at once; `/healthz` and `/metrics`, which
        // read too, still answer.
        match verify::caught(|| self.shared.snapshot(&db).and_then(|r| f(&r))) {
            Ok(r) => self.settle(r),
            Err(said) => Err(self.read_panicked(&said)),
        }
    }

    /// A read panicked, saying `said`: its 500, and a check of the file at once (redb
    /// panics on some damaged pages).
    fn read_panicked(&self, said: &str) -> Error {
        self.suspect_damage();
        internal(&format!("a read panicked: {said}"))
    }

    fn settle<T>(&self, r: R<T>) -> Result<T, Error> {
        r.unwrap_or_else(|e| match e {
            // A record that does not decode, or a page redb finds corrupted: as a read that
            // panicked on a damaged page, this read's 500 and a check of the file at once.
            redb::Error::Corrupted(what) => {
                self.suspect_damage();
                Err(internal(&format!("a read met damage: {what}")))
            }
            e => {
                if matches!(e, redb::Error::PreviousIo) {
                    self.nudge();
                }
                Err(storage_failed(&e))
            }
        })
    }
}

/// Answers a write's caller 500 (with an id to find in the log) if its job panics; the
/// writer then rolls the batch back and the other callers in it get 503 and may retry.
struct PanicAnswer<T>(Option<oneshot::Sender<Result<T, Error>>>);

impl<T> PanicAnswer<T> {
    fn send(mut self, r: Result<T, Error>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(r);
        }
    }
}

impl<T> Drop for PanicAnswer<T> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(tx) = self.0.take()
        {
            let _ = tx.send(Err(internal("a write panicked; its batch is rolled back")));
        }
    }
}

impl Store {
    /// Size of the database file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Bytes free to scimd on the disk holding the database (0 while the fault switch plays
    /// a full disk); `None` when the system cannot tell.
    pub fn disk_free(&self) -> Option<u64> {
        self.shared.faults.free_bytes(&self.shared.path)
    }

    /// The room on the database's disk, against what is little (`LOW_ROOM`, or a tenth of
    /// the file if more); `None` when the system cannot tell.
    pub fn room(&self) -> Option<Room> {
        Some(Room::new(self.disk_free()?, self.file_size()))
    }

    /// The bytes free on the database's disk when they are few enough to warn of.
    pub fn low_on_room(&self) -> Option<u64> {
        self.room().filter(Room::low).map(|r| r.free)
    }

    /// What the scrub found damaged, if it has.
    fn damage_found(&self) -> Option<String> {
        locked(&self.shared.damaged).clone()
    }

    /// Look whether space was freed on a full disk (the daemon does every few seconds).
    pub fn look_for_room(&self) {
        self.shared.room_freed();
    }

    /// Why the IdPs' writes are refused now, if they are: what `/healthz`, `/metrics` and
    /// `scimd status` say.
    pub fn writes_refused(&self) -> Option<Refused> {
        if let Some(what) = self.damage_found() {
            return Some(Refused::Damaged(what));
        }
        self.shared.look_at_file();
        match locked(&self.shared.gone).clone() {
            Some(what) => Some(Refused::FileGone(what)),
            None => self
                .shared
                .short_of_room()
                .map(|(free, needed)| Refused::DiskFull { free, needed }),
        }
    }

    /// A cheap read of the layout version: proves the database answers. On the calling
    /// thread, so that a health check never waits behind long reads.
    pub async fn check(&self) -> Result<u64, Error> {
        self.read_now(|r| {
            let t = r.txn().open_table(tables::META)?;
            let v = t.get("schema_version")?.map(|g| g.value()).unwrap_or(0);
            Ok(Ok(v))
        })
    }
}

/// The UUIDv7 of a new resource: ordered by creation, so listing by key is stable.
pub fn new_id() -> u128 {
    // From the clock ids are stamped with (see `record::id_micros`), with uuid's counter
    // keeping those made within a millisecond in order.
    static IDS: std::sync::Mutex<uuid::ContextV7> = std::sync::Mutex::new(uuid::ContextV7::new());
    let micros = u64::try_from(record::id_micros()).unwrap_or(0);
    let (secs, nanos) = (micros / 1_000_000, (micros % 1_000_000) as u32 * 1000);
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(&IDS, secs, nanos)).as_u128()
}

pub fn format_id(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

/// Any string a client sends as an id; anything that is not one of ours is simply not found.
pub fn parse_id(s: &str) -> Option<u128> {
    uuid::Uuid::try_parse(s).ok().map(|u| u.as_u128())
}

#[cfg(test)]
mod tests;
