//! The scrub: in the background, every entry of every table is read again, so that a page
//! damaged from outside (a failing disk, bit rot, a stray `dd`) is found while scimd serves.
//!
//! redb checks its page checksums only when it repairs a file after a crash. Damage found
//! then makes it refuse the whole file, and every write acknowledged since the damage is
//! lost with it. An ordinary read of a damaged page panics, errs, or returns bytes that do
//! not parse; the scrub reads every page that way and, on damage, refuses writes and turns
//! `/healthz` to 503, so that IdPs stop being told writes succeeded and the admin hears of
//! it while the last backup is still recent. Bytes changed inside a value that still reads
//! (a letter of a name) only the checksums tell: the first pass checks them too
//! (`checksums`), while writes wait for it; after later passes they are checked in a quiet
//! moment, as a commit during such a check makes it say nothing.
//!
//! A pass is a walk in key order through short read transactions, resting between them: a
//! long snapshot would keep the writer from reusing the pages later commits free (the file
//! would grow with every write during the pass), and a pass at full speed would take a core
//! from the IdPs' requests. Only the daemon's first pass, which writes wait for, and those
//! asked for (`scimd verify`, a read that panicked) run at full speed.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redb::{
    Database, Key, MultimapTableDefinition, MultimapTableHandle, ReadableDatabase, TableDefinition,
    TableError, TableHandle, Value,
};

use super::tables::*;
use super::verify::{NEXT, unless_damaged};
use super::{Shared, Store};

/// Entries read per read transaction.
const CHUNK: usize = 1024;

/// Rest after each chunk, as a multiple of the time it took: a pass takes at most a quarter
/// of one core.
const REST: u32 = 3;

/// A pass stopped for want of the database is tried again after this (or sooner, with a
/// shorter `every`).
const RETRY: Duration = Duration::from_secs(60);

/// After a pass a failed read started found no damage, failed reads start none for this
/// long.
const SUSPECT_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// How long the scrub sleeps at a time: it ends this soon after the store, and after later
/// passes checks the pages' checksums only after a nap that saw no write.
const NAP: Duration = Duration::from_secs(5);

/// Checks of the pages' checksums after one pass, each cut short by a write, before the
/// next pass is waited for: each reads the whole file (about 2 s a GiB cached).
const CHECK_TRIES: u32 = 48;

/// How long `scimd verify` tries to check the pages' checksums while writes overtake it.
const VERIFY_TRIES_FOR: Duration = Duration::from_secs(20);

/// The longest writes wait for the first pass. It takes about 4 s at a million users with
/// the file cached (1.7 s of it the checksums); from a cold, slow disk (random reads, a file
/// too large to read ahead) it could take many minutes, and the IdPs' writes are not held
/// that long.
const HOLD_WRITES_AT_MOST: Duration = Duration::from_secs(10);

impl Store {
    /// Scrub the database in the background now and then every `every`. Writes wait for
    /// the first pass, made at full speed: a file damaged while scimd was stopped is found
    /// before any write on it is acknowledged, at every start. Holds no part of the store
    /// while it rests, so that it never keeps the database open past shutdown.
    pub fn spawn_scrub(&self, every: Duration) {
        self.shared.scrubbed.send_replace(false);
        let shared = Arc::downgrade(&self.shared);
        let started = std::thread::Builder::new()
            .name("scimd-scrub".into())
            .spawn(move || run(&shared, every));
        if let Err(e) = started {
            self.shared.scrubbed.send_replace(true);
            tracing::warn!(error = %e, "cannot start the thread that scrubs the database; damage is found only by `scimd verify`");
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        let released = std::thread::Builder::new()
            .name("scimd-scrub-hold".into())
            .spawn(move || {
                std::thread::sleep(HOLD_WRITES_AT_MOST);
                if let Some(s) = shared.upgrade()
                    && !s.scrubbed.send_replace(true)
                {
                    tracing::warn!(secs = HOLD_WRITES_AT_MOST.as_secs(), "the scrub at start is still reading the database: writes are no longer held for it (damage it finds later still stops them)");
                }
            });
        if released.is_err() {
            self.shared.scrubbed.send_replace(true);
        }
    }

    /// One pass now, at full speed (`scimd verify` asks for it): damage found is recorded as
    /// the background pass records it, and is the error.
    pub async fn scrub(&self) -> Result<u64, String> {
        let shared = Arc::downgrade(&self.shared);
        let pass = tokio::task::spawn_blocking(move || match pass(&shared, 0) {
            Err(Stop::Damaged(what)) => {
                found(&shared, &what);
                Err(what)
            }
            Err(Stop::Later(why)) => Err(format!("the database is unavailable: {why}")),
            Ok(entries) => {
                tracing::info!(
                    entries,
                    "scrub (asked for by scimd verify): every entry of the database read back; no damage found"
                );
                Ok(entries)
            }
        });
        pass.await.map_err(|e| e.to_string())?
    }

    /// redb's check of every page's checksum now, beside the writes (`scimd verify` asks),
    /// tried again while writes overtake it, for `VERIFY_TRIES_FOR` at most: `None` once
    /// done, or why it could not be. Damage found is recorded as the scrub records it, and
    /// is the error.
    pub async fn check_pages(&self) -> Result<Option<String>, String> {
        let shared = Arc::downgrade(&self.shared);
        let checked = tokio::task::spawn_blocking(move || {
            let until = Instant::now() + VERIFY_TRIES_FOR;
            loop {
                match checksums(&shared) {
                    Ok(()) => return Ok(None),
                    Err(Stop::Damaged(what)) => {
                        found(&shared, &what);
                        return Err(what);
                    }
                    Err(Stop::Later(why)) if Instant::now() >= until => return Ok(Some(why)),
                    Err(Stop::Later(_)) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        checked.await.map_err(|e| e.to_string())?
    }

    /// `suspect`, for this store.
    pub(super) fn suspect_damage(&self) {
        suspect(&self.shared);
    }
}

/// A read panicked, as redb does on some damaged pages (or a bug did), or met a record that
/// does not parse: a pass now, in the background and at full speed, settles which it was,
/// and refuses writes if the file is damaged. One at a time, however many reads fail so.
pub(super) fn suspect(store: &Arc<Shared>) {
    use std::sync::atomic::Ordering;
    // Nothing more to learn once damage is found, or soon after a pass found none: the same
    // read failing on every request (a bug, or a record only a full decode refuses) would
    // otherwise have the whole file read at full speed over and over.
    if super::locked(&store.damaged).is_some()
        || super::locked(&store.cleared).is_some_and(|t| t.elapsed() < SUSPECT_AGAIN_AFTER)
    {
        return;
    }
    if store.suspected.swap(true, Ordering::SeqCst) {
        return;
    }
    let shared = Arc::downgrade(store);
    let started = std::thread::Builder::new()
        .name("scimd-scrub-now".into())
        .spawn(move || {
            tracing::warn!("a read or write of the database panicked or met a record that does not parse: reading every entry back to see whether the file is damaged");
            match pass(&shared, 0) {
                Err(Stop::Damaged(what)) => found(&shared, &what),
                Err(Stop::Later(_)) => {}
                Ok(entries) => {
                    tracing::info!(entries, "scrub: no damage found; the failed read above was not caused by the file");
                    if let Some(s) = shared.upgrade() {
                        *super::locked(&s.cleared) = Some(Instant::now());
                    }
                }
            }
            if let Some(s) = shared.upgrade() {
                s.suspected.store(false, Ordering::SeqCst);
            }
        });
    if started.is_err() {
        store.suspected.store(false, Ordering::SeqCst);
    }
}

/// Record damage: writes are refused from now on.
fn found(shared: &Weak<Shared>, what: &str) {
    let Some(s) = shared.upgrade() else { return };
    let first = super::locked(&s.damaged)
        .replace(what.to_string())
        .is_none();
    if first {
        tracing::error!(
            "{what}. Writes are refused from now on (503), so that no IdP is told a change was saved that the next crash would take with the file; reads go on"
        );
    }
}

fn run(shared: &Weak<Shared>, every: Duration) {
    let mut first = true;
    loop {
        let t0 = Instant::now();
        // The first pass checks redb's checksums too, while writes wait for it; later ones
        // leave them to a quiet moment before the next (`wait`).
        let mut unchecked = !first;
        let outcome = if first {
            match checksums(shared) {
                Err(Stop::Later(why)) => {
                    tracing::warn!(reason = %why, "scrub: the check of the pages' checksums did not finish; the entries are still read back, and the checksums checked again once no write has come for a while");
                    unchecked = true;
                    pass(shared, 0)
                }
                checked => checked.and_then(|()| pass(shared, 0)),
            }
        } else {
            pass(shared, REST)
        };
        // Damage is recorded before the writes waiting on the first pass are let go.
        if let Err(Stop::Damaged(what)) = &outcome {
            found(shared, what);
        }
        if first {
            if let Some(s) = shared.upgrade() {
                s.scrubbed.send_replace(true);
            }
            first = false;
        }
        let next = match outcome {
            Ok(entries) => {
                let secs = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
                tracing::info!(
                    entries,
                    secs,
                    "scrub: every entry of the database read back; no damage found"
                );
                every
            }
            Err(Stop::Damaged(_)) => return,
            Err(Stop::Later(why)) => {
                if shared.strong_count() == 0 {
                    return;
                }
                tracing::warn!(reason = %why, "scrub: pass cut short; tried again later");
                every.min(RETRY)
            }
        };
        if !wait(shared, next, unchecked) {
            return;
        }
    }
}

/// Wait `long` in short naps, so that the thread ends soon after the store; false once it
/// has, or once damage is found. Meanwhile, if `unchecked`, the pages' checksums are checked
/// after a nap that saw no write (IdPs write in bursts). A check that a write overtakes says
/// nothing and is tried again after the next quiet nap, at most `CHECK_TRIES` times.
fn wait(shared: &Weak<Shared>, long: Duration, mut unchecked: bool) -> bool {
    let until = Instant::now() + long;
    let nap = NAP.min(long / 4).max(Duration::from_millis(10));
    let (mut tries, mut last) = (0, None);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Some(now) = shared.upgrade().map(|s| s.file_writes.quiet()) else {
            return false;
        };
        if unchecked && now.is_some() && now == last {
            tries += 1;
            match checksums(shared) {
                Ok(()) => unchecked = false,
                Err(Stop::Damaged(what)) => {
                    found(shared, &what);
                    return false;
                }
                Err(Stop::Later(why)) if tries >= CHECK_TRIES => {
                    tracing::warn!(tries, last_reason = %why, "scrub: the pages' checksums could not be checked in as many tries; tried again after the next pass");
                    unchecked = false;
                }
                Err(Stop::Later(why)) => {
                    tracing::debug!(reason = %why, "scrub: the check of the pages' checksums is tried again after the next quiet moment")
                }
            }
        }
        last = now;
        std::thread::sleep(left.min(nap));
    }
    true
}

/// redb's check of every page's checksum, through a second handle on the file whose writes
/// stay in memory (`overlay`): reading entries finds damage that breaks a page or a record,
/// not bytes changed inside a value that still reads (a letter of a name), which only the
/// checksums tell, and which redb would find at its next repair, after a crash, refusing the
/// whole file and every write acknowledged since. The check reads the trees of the commit
/// the file's header names as it opens; the live handle rewrites none of their pages before
/// a later commit frees them, so a check that no write of the live handle overlapped holds,
/// and one that any did says nothing (run beside commits, such checks often call a sound
/// file damaged). It stops reading as soon as a write begins or the store closes.
pub(super) fn checksums(shared: &Weak<Shared>) -> Result<(), Stop> {
    let closed = || Stop::Later("the store is closed".into());
    let overtaken =
        || Stop::Later("a write changed the file during the check of its checksums".into());
    let (path, writes, mark) = {
        let s = shared.upgrade().ok_or_else(closed)?;
        let mark = s.file_writes.quiet().ok_or_else(overtaken)?;
        (s.path.clone(), s.file_writes.clone(), mark)
    };
    let t0 = Instant::now();
    let (store, still) = (shared.clone(), writes.clone());
    let checked = redb_verdict(&path, move || store.strong_count() > 0 && still.still(mark));
    if shared.strong_count() == 0 {
        return Err(closed());
    }
    if !writes.still(mark) {
        return Err(overtaken());
    }
    match checked? {
        Ok(()) => {
            let secs = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            tracing::info!(
                secs,
                "scrub: the checksum of every page checked; no damage found"
            );
            Ok(())
        }
        Err(e @ redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))) => {
            Err(Stop::Damaged(format!(
                "the database file is damaged (found checking the checksums of its pages): \
                 {e}{NEXT}"
            )))
        }
        Err(e) => Err(Stop::Later(format!(
            "the check of the file's checksums could not run: {e}"
        ))),
    }
}

/// redb's check of the file at `path` as it is now: redb's verdict, or why there is none.
/// Reading stops, the check failing, once `go_on` says so.
pub(super) fn redb_verdict(
    path: &Path,
    go_on: impl Fn() -> bool + Send + Sync + 'static,
) -> Result<Result<(), redb::DatabaseError>, Stop> {
    let backend = std::fs::File::open(path)
        .and_then(|file| super::overlay::Overlay::new(file, go_on))
        .map_err(|e| Stop::Later(format!("cannot read {}: {e}", path.display())))?;
    unless_damaged(|| {
        // Not redb's own cache's worth: every page is read once.
        redb::Database::builder()
            .set_cache_size(4 << 20)
            .set_check_integrity_on_open(true)
            .create_with_backend(backend)
            .map(drop)
    })
    // redb reports damage found so as `Corrupted`: a panic on this path, which no request
    // shares, says more of redb than of the file, whose entries are read next.
    .map_err(|what| {
        Stop::Later(format!(
            "the check of the file's checksums panicked: {what}"
        ))
    })
}

/// The live handle's writes to the file: commits, the repair of a reopen, the close of a
/// retired handle. Counted as they begin and end so that the check of the checksums, which
/// reads the file beside that handle, knows whether one overlapped it: a write can reuse a
/// page the check reads or rewrite the header as the check reads it. (The commit counter
/// that reads go by is bumped after a commit returns, and not by a close at all.)
#[derive(Default)]
pub(super) struct FileWrites {
    begun: AtomicU64,
    ended: AtomicU64,
}

impl FileWrites {
    /// Held while the live handle writes the file.
    pub(super) fn writing(&self) -> Writing<'_> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        Writing(self)
    }

    /// A mark to compare with after reading the file, or none while a write is under way.
    fn quiet(&self) -> Option<u64> {
        let begun = self.begun.load(Ordering::SeqCst);
        (self.ended.load(Ordering::SeqCst) == begun).then_some(begun)
    }

    /// No write has begun since `mark` was taken.
    fn still(&self, mark: u64) -> bool {
        self.begun.load(Ordering::SeqCst) == mark
    }
}

pub(super) struct Writing<'a>(&'a FileWrites);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::SeqCst);
    }
}

/// Why a pass stopped before the end.
#[derive(Debug, PartialEq)]
pub(super) enum Stop {
    /// The file is damaged; the text says where and what to do.
    Damaged(String),
    /// The database is closed or being reopened: the pass is tried again at the next turn.
    Later(String),
}

/// One pass over every table; the number of entries read.
pub(super) fn pass(shared: &Weak<Shared>, rest: u32) -> Result<u64, Stop> {
    let mut n = 0;
    let mut walker = Walker {
        shared,
        rest,
        read: &mut n,
    };
    walker.table(META, none)?;
    walker.table(RESOURCES, record)?;
    walker.table(COUNTS, none)?;
    walker.table(USERNAME_USERID, none)?;
    walker.multimap(EXTERNALID_ID)?;
    walker.multimap(EMAIL_USERID)?;
    walker.multimap(DISPLAYNAME_ID)?;
    walker.table(GROUPID_MEMBERID, none)?;
    walker.table(MEMBER_DISPLAY, none)?;
    walker.table(MEMBERID_GROUPID, none)?;
    walker.table(MODIFIED_ID, none)?;
    walker.table(RANKS, none)?;
    walker.table(EVENTS, event)?;
    walker.table(EVENT_SEQ, none)?;
    walker.table(OVERFLOW_USERID, none)?;
    walker.table(UNIQUE_ID, none)?;
    Ok(n)
}

/// Values with no encoding of scimd's own: redb's reading them is the check.
fn none(_: &[u8]) -> Result<(), String> {
    Ok(())
}

/// A record is checked as reads decode it: stepping over its JSON would pass damaged bytes
/// inside a string (no longer UTF-8), which every read of it then fails on.
pub(super) fn record(bytes: &[u8]) -> Result<(), String> {
    super::record::undecodable(bytes).map_or(Ok(()), Err)
}

/// An event is JSON, UTF-8 throughout (stepping over a string does not check that). Not
/// decoded as the feed decodes it: events written by earlier builds may lack a field it
/// reads, and the feed passes over those.
pub(super) fn event(bytes: &[u8]) -> Result<(), String> {
    std::str::from_utf8(bytes)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).map_err(|e| e.to_string()))
        .map(|_| ())
        .map_err(|e| format!("a stored event does not parse ({e})"))
}

/// A table not made yet (no resource of its kind so far) reads as empty.
fn opened<T>(t: Result<T, TableError>) -> Result<Option<T>, redb::Error> {
    match t {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

struct Walker<'a> {
    shared: &'a Weak<Shared>,
    rest: u32,
    read: &'a mut u64,
}

/// What one chunk read: its entries, and the key to go on after (none at the table's end);
/// or, inside, a value that does not parse.
type Chunk = Result<(usize, Option<Vec<u8>>), String>;

impl Walker<'_> {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<'static, K, V>,
        check: fn(&[u8]) -> Result<(), String>,
    ) -> Result<(), Stop> {
        self.chunks(def.name(), |db, after| {
            let r = db.begin_read()?;
            let Some(t) = opened(r.open_table(def))? else {
                return Ok(Ok((0, None)));
            };
            let range = t.range(past::<K>(after))?;
            let (mut n, mut last) = (0, None);
            for e in range.take(CHUNK) {
                let (k, v) = e?;
                let key = K::as_bytes(&k.value()).as_ref().to_vec();
                if let Err(what) = check(V::as_bytes(&v.value()).as_ref()) {
                    return Ok(Err(format!("{what}, at key {key:02x?}")));
                }
                last = Some(key);
                n += 1;
            }
            Ok(Ok((n, last.filter(|_| n == CHUNK))))
        })
    }

    fn multimap<K: Key + 'static, V: Key + 'static>(
        &mut self,
        def: MultimapTableDefinition<'static, K, V>,
    ) -> Result<(), Stop> {
        self.chunks(def.name(), |db, after| {
            let r = db.begin_read()?;
            let Some(t) = opened(r.open_multimap_table(def))? else {
                return Ok(Ok((0, None)));
            };
            let range = t.range(past::<K>(after))?;
            let (mut keys, mut n, mut last) = (0, 0, None);
            for e in range.take(CHUNK) {
                let (k, values) = e?;
                for v in values {
                    V::as_bytes(&v?.value());
                    n += 1;
                }
                last = Some(K::as_bytes(&k.value()).as_ref().to_vec());
                keys += 1;
            }
            Ok(Ok((n, last.filter(|_| keys == CHUNK))))
        })
    }

    /// Read `table` a chunk at a time with `chunk`, resting between chunks.
    fn chunks(
        &mut self,
        table: &str,
        chunk: impl Fn(&Database, Option<&[u8]>) -> Result<Chunk, redb::Error>,
    ) -> Result<(), Stop> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let t0 = Instant::now();
            let (n, next) = {
                // Held for one chunk only: a pass never keeps the store open at shutdown.
                let Some(shared) = self.shared.upgrade() else {
                    return Err(Stop::Later("the database is closed".into()));
                };
                let Some(db) = shared.current() else {
                    return Err(Stop::Later("the database is being reopened".into()));
                };
                read_chunk(table, || chunk(&db, after.as_deref()))?
            };
            *self.read += n as u64;
            match next {
                Some(k) => after = Some(k),
                None => return Ok(()),
            }
            std::thread::sleep(t0.elapsed() * self.rest);
        }
    }
}

/// Run one chunk's read, telling damage (a panic, redb finding a page corrupted) from the
/// database being unavailable for now (an I/O failure the writer handles, a closing).
fn read_chunk(
    table: &str,
    read: impl FnOnce() -> Result<Chunk, redb::Error>,
) -> Result<(usize, Option<Vec<u8>>), Stop> {
    let damaged = |what: &dyn std::fmt::Display| {
        Stop::Damaged(format!(
            "the database file is damaged (found reading table {table}): {what}{NEXT}"
        ))
    };
    match unless_damaged(read) {
        // Already worded, advice included.
        Err(what) => Err(Stop::Damaged(what.replacen(
            "damaged",
            &format!("damaged (found reading table {table})"),
            1,
        ))),
        Ok(Err(e @ redb::Error::Corrupted(_))) => Err(damaged(&e)),
        Ok(Err(e)) => Err(Stop::Later(e.to_string())),
        Ok(Ok(Err(what))) => Err(damaged(&what)),
        Ok(Ok(Ok(c))) => Ok(c),
    }
}

/// The keys after `after` (the bytes of the last key read), or all of them.
fn past<K: Key>(after: Option<&[u8]>) -> (Bound<K::SelfType<'_>>, Bound<K::SelfType<'_>>) {
    let from = after.map_or(Bound::Unbounded, |b| Bound::Excluded(K::from_bytes(b)));
    (from, Bound::Unbounded)
}
