//! The writer thread: batches queued write jobs and commits each batch once (group commit),
//! reopening the database after a storage failure and recording the allocator state when idle.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use redb::Database;
use tokio::sync::mpsc;

use super::{Job, Responder, Shared, storage_failed, write};

/// Most jobs committed together; bounds the latency one commit adds to its first request.
const MAX_BATCH: usize = 256;

/// Least time between two attempts to reopen a failed database.
const REOPEN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Longest wait between two reopenings tried while no request comes.
const REOPEN_UNASKED_MAX: std::time::Duration = std::time::Duration::from_secs(8);

/// How long the writer waits for more work before it records the allocator state.
pub(super) const CHECKPOINT_IDLE: std::time::Duration = std::time::Duration::from_millis(200);

/// The writer loop, restarted if it ever panics: a dead writer would leave the server up
/// but refusing every write. The batch in hand is dropped (its transaction aborts, its
/// callers get 503).
pub(super) fn writer_thread(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Job>,
    metrics: Arc<crate::metrics::StoreMetrics>,
) {
    while catch_unwind(AssertUnwindSafe(|| writer(&shared, &mut rx, &metrics))).is_err() {
        tracing::error!("the writer panicked; it starts again");
    }
}

fn writer(shared: &Shared, rx: &mut mpsc::Receiver<Job>, metrics: &crate::metrics::StoreMetrics) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // redb's quick-repair record (the allocator state, saved so that a crash reopens without
    // walking the whole file) is rewritten whole by every commit that keeps it, a cost that
    // grows with the file: at a million users it is a quarter of a one-member PATCH. So
    // batches commit without it, and once the writer has been idle for a moment an empty
    // commit records it: a crash after that reopens at once; a crash in the middle of a
    // burst costs a full repair at the next start (about a second per GiB), never data.
    let idle = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            tracing::warn!(error = %e, "no idle timer: every commit records the allocator state");
            None
        }
    };
    let mut checkpoint_due = false;
    let mut reopening = Reopening::default();
    loop {
        let next = match &idle {
            // Down after a storage failure: opened again as soon as it can be, not only
            // when a request comes, so that the first read after a quiet spell (a
            // monitor's probe) is not the one that finds it closed.
            Some(rt) if shared.current().is_none() => {
                match rt
                    .block_on(async { tokio::time::timeout(reopening.unasked, rx.recv()).await })
                {
                    Ok(j) => j,
                    Err(_) => {
                        if reopening.due() {
                            reopening.try_now(shared);
                        }
                        continue;
                    }
                }
            }
            Some(rt) if checkpoint_due => {
                // The timer must be made inside the runtime.
                match rt.block_on(async { tokio::time::timeout(CHECKPOINT_IDLE, rx.recv()).await })
                {
                    Ok(j) => j,
                    Err(_) => {
                        checkpoint_due = false;
                        // An empty batch committed with the record. Not while writes wait
                        // for room: one that fitted in the file's free pages would reopen
                        // the gate, the next write needing the file to grow would fail, and
                        // each such round closed the database to reads for its repair.
                        if shared.short_of_room().is_none()
                            && let Some(db) = shared.current()
                            && !run_batch(shared, &db, &mut batch, metrics, true)
                        {
                            shared.retire();
                        }
                        continue;
                    }
                }
            }
            _ => rx.blocking_recv(),
        };
        let Some(first) = next else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let db = match shared.current() {
            Some(db) => db,
            None if !reopening.due() => {
                batch.clear(); // each caller gets 503
                continue;
            }
            None => match reopening.try_now(shared) {
                Some(db) => db,
                None => {
                    batch.clear();
                    continue;
                }
            },
        };
        // Open again, for reads. While the disk still has no room, nothing is committed, not
        // even an empty batch: a commit that found none would close the database to reads
        // again. The batch's callers (writes queued before the gate closed, reads' nudges)
        // are told the disk is full.
        if shared.short_of_room().is_some() {
            batch.clear();
            continue;
        }
        metrics.batch_size.observe(batch.len() as f64);
        let storage_ok = run_batch(shared, &db, &mut batch, metrics, idle.is_none());
        drop(db);
        if storage_ok {
            checkpoint_due = true;
        } else {
            shared.retire();
        }
    }
    tracing::debug!("writer stopped: all senders gone");
}

/// Reopening the database after a storage failure: at most every `REOPEN_EVERY` for
/// requests, and by itself while none come.
struct Reopening {
    last: Option<std::time::Instant>,
    failed: bool,
    /// Between two tries with no request asking: each checks the whole file (a second a
    /// GiB), so while they fail (a disk that stays broken) they come less often.
    unasked: std::time::Duration,
}

impl Default for Reopening {
    fn default() -> Self {
        Reopening {
            last: None,
            failed: false,
            unasked: REOPEN_EVERY,
        }
    }
}

impl Reopening {
    fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= REOPEN_EVERY)
    }

    fn try_now(&mut self, shared: &Shared) -> Option<Arc<super::Db>> {
        self.last = Some(std::time::Instant::now());
        match shared.reopen() {
            Ok(db) => {
                self.failed = false;
                self.unasked = REOPEN_EVERY;
                Some(db)
            }
            Err(e) => {
                self.unasked = (self.unasked * 2).min(REOPEN_UNASKED_MAX);
                // Said once a failure, not at every try while it lasts.
                if !self.failed {
                    self.failed = true;
                    tracing::error!(error = %e, "the database cannot be reopened yet; retried until it opens");
                }
                None
            }
        }
    }
}

/// Runs one batch; false when storage failed (the database must be reopened).
fn run_batch(
    shared: &Shared,
    db: &Database,
    batch: &mut Vec<Job>,
    metrics: &crate::metrics::StoreMetrics,
    quick_repair: bool,
) -> bool {
    let failure = || {
        metrics
            .commit_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    };
    // Logged, and noted when it is the disk being full (opening the tables or a job's
    // insert can need the file to grow, as much as the commit).
    let failed_for = |e: &redb::Error| {
        shared.failed(e);
        storage_failed(e);
    };
    let mut txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            failure();
            failed_for(&e.into());
            batch.clear(); // dropping the jobs drops their senders: each caller gets 503
            return false;
        }
    };
    // Two-phase: the pages are flushed before the header that names them is written, so when
    // that first fsync fails the previous commit stays in force and a write answered 503 is
    // never found later. Group commit shares both fsyncs across the batch.
    txn.set_two_phase_commit(true);
    let floor = shared
        .version_floor
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut w = match write::W::open(&txn, floor) {
        Ok(w) => w,
        Err(e) => {
            failure();
            failed_for(&e);
            batch.clear();
            return false;
        }
    };
    let mut responders: Vec<Responder> = Vec::with_capacity(batch.len());
    let mut storage_ok = true;
    let mut failed = false;
    for job in batch.drain(..) {
        if failed {
            continue; // dropped: its caller gets 503
        }
        match catch_unwind(AssertUnwindSafe(|| job(&mut w))) {
            Ok(Ok(r)) => responders.push(r),
            Ok(Err(e)) => {
                failed_for(&e);
                storage_ok = false;
                failed = true;
            }
            Err(_) => {
                tracing::error!("a write job panicked; its batch is rolled back");
                failed = true;
            }
        }
    }
    // The tables close before the transaction ends.
    drop(w);
    if failed {
        failure();
        if let Err(e) = txn.abort() {
            storage_failed(&e.into());
            storage_ok = false;
        }
        for r in responders {
            r(Err(shared.told_after_failure()));
        }
        return storage_ok;
    }
    // Read after the jobs ran: a checkpoint job in this batch asks for the record.
    txn.set_quick_repair(
        quick_repair
            || shared
                .record_allocator
                .swap(false, std::sync::atomic::Ordering::Relaxed),
    );
    let started = std::time::Instant::now();
    let committed = txn.commit();
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    match committed {
        Ok(()) => {
            shared.committed();
            shared.room_again();
            responders.into_iter().for_each(|r| r(Ok(())));
            true
        }
        Err(e) => {
            failure();
            failed_for(&e.into());
            responders
                .into_iter()
                .for_each(|r| r(Err(shared.told_after_failure())));
            false
        }
    }
}
