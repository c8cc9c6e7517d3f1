//! The writer thread: batches queued write jobs and commits each batch once (group commit),
//! taking jobs in turn by tenant, reopening the database after a storage failure and
//! recording the allocator state when idle.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::mpsc;

use super::{Job, QUEUE, Queued, Responder, Shared, storage_failed, write};

/// Most jobs committed together; bounds the latency one commit adds to its first request.
const MAX_BATCH: usize = 256;

/// A batch takes no more jobs once it has run this long: its answers wait for its commit,
/// and a few slow jobs of one tenant (a filter over a large group's members) would
/// otherwise hold another tenant's cheap write for as long as all of them take.
const BATCH_TIME: Duration = Duration::from_millis(20);

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
    mut rx: mpsc::Receiver<Queued>,
    metrics: Arc<crate::metrics::StoreMetrics>,
) {
    let mut waiting = Waiting::default();
    while catch_unwind(AssertUnwindSafe(|| {
        writer(&shared, &mut rx, &mut waiting, &metrics)
    }))
    .is_err()
    {
        // The jobs taken but not run are dropped: each caller gets 503.
        waiting = Waiting::default();
        tracing::error!("the writer panicked; it starts again");
    }
}

/// The jobs taken from the queue and not run yet, by tenant, with the tenants in the order
/// they are served: one job of each in turn, so that a tenant sending many slow writes
/// delays another's by one job, not by all of its own.
#[derive(Default)]
struct Waiting {
    /// The tenants with jobs waiting, the next to be served first.
    turns: VecDeque<Box<str>>,
    jobs: HashMap<Box<str>, VecDeque<Job>>,
    len: usize,
}

impl Waiting {
    fn push(&mut self, q: Queued) {
        // A tenant's entry goes when its last job does: one there has jobs, and its turn.
        match self.jobs.get_mut(&q.tenant) {
            Some(jobs) => jobs.push_back(q.job),
            None => {
                self.jobs.insert(q.tenant.clone(), VecDeque::from([q.job]));
                self.turns.push_back(q.tenant);
            }
        }
        self.len += 1;
    }

    /// The next tenant's next job.
    fn next(&mut self) -> Option<Job> {
        let tenant = self.turns.pop_front()?;
        let jobs = self.jobs.get_mut(&tenant)?;
        let job = jobs.pop_front();
        if jobs.is_empty() {
            self.jobs.remove(&tenant);
        } else {
            self.turns.push_back(tenant);
        }
        self.len -= usize::from(job.is_some());
        job
    }

    /// Takes what the queue holds, up to `QUEUE` waiting: the queue stays the bound on
    /// memory, and senders wait when both are full.
    fn fill(&mut self, rx: &mut mpsc::Receiver<Queued>) {
        while self.len < QUEUE {
            match rx.try_recv() {
                Ok(q) => self.push(q),
                Err(_) => break,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Dropped, each caller answered 503.
    fn clear(&mut self) {
        *self = Waiting::default();
    }
}

fn writer(
    shared: &Shared,
    rx: &mut mpsc::Receiver<Queued>,
    waiting: &mut Waiting,
    metrics: &crate::metrics::StoreMetrics,
) {
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
        waiting.fill(rx);
        let next = match &idle {
            // Jobs already waiting: none to wait for.
            _ if !waiting.is_empty() => None,
            // Down after a storage failure: opened again as soon as it can be, not only
            // when a request comes, so that the first read after a quiet spell (a
            // monitor's probe) is not the one that finds it closed.
            Some(rt) if shared.current().is_none() => {
                match rt
                    .block_on(async { tokio::time::timeout(reopening.unasked, rx.recv()).await })
                {
                    Ok(Some(q)) => Some(q),
                    Ok(None) => break,
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
                    Ok(Some(q)) => Some(q),
                    Ok(None) => break,
                    Err(_) => {
                        checkpoint_due = false;
                        // An empty batch committed with the record. Not while writes wait
                        // for room: one that fitted in the file's free pages would reopen
                        // the gate, the next write needing the file to grow would fail, and
                        // each such round closed the database to reads for its repair.
                        if shared.short_of_room().is_none()
                            && let Some(db) = shared.current()
                            && !run_batch(shared, &db, rx, waiting, metrics, true)
                        {
                            shared.retire();
                        }
                        continue;
                    }
                }
            }
            _ => match rx.blocking_recv() {
                Some(q) => Some(q),
                None => break,
            },
        };
        if let Some(q) = next {
            waiting.push(q);
            waiting.fill(rx);
        }
        let db = match shared.current() {
            Some(db) => db,
            None if !reopening.due() => {
                waiting.clear(); // each caller gets 503
                continue;
            }
            None => match reopening.try_now(shared) {
                Some(db) => db,
                None => {
                    waiting.clear();
                    continue;
                }
            },
        };
        // Open again, for reads. While the disk still has no room, nothing is committed, not
        // even an empty batch: a commit that found none would close the database to reads
        // again. The batch's callers (writes queued before the gate closed, reads' nudges)
        // are told the disk is full.
        if shared.short_of_room().is_some() {
            waiting.clear();
            continue;
        }
        let storage_ok = run_batch(shared, &db, rx, waiting, metrics, idle.is_none());
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

/// Runs one batch of the waiting jobs, in turn by tenant, taking more from the queue as it
/// goes, up to `MAX_BATCH` jobs or `BATCH_TIME`; false when storage failed (the database
/// must be reopened). With none waiting, an empty batch commits.
fn run_batch(
    shared: &Shared,
    db: &Database,
    rx: &mut mpsc::Receiver<Queued>,
    waiting: &mut Waiting,
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
            waiting.clear(); // dropping the jobs drops their senders: each caller gets 503
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
            waiting.clear();
            return false;
        }
    };
    let mut responders: Vec<Responder> = Vec::new();
    let mut storage_ok = true;
    let mut failed = false;
    let started = Instant::now();
    while responders.len() < MAX_BATCH && (responders.is_empty() || started.elapsed() < BATCH_TIME)
    {
        // Writes that came meanwhile take their turn in this batch.
        waiting.fill(rx);
        let Some(job) = waiting.next() else { break };
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
        if failed {
            // The jobs still waiting run in a batch of their own, or are answered 503 if
            // the database cannot be opened again.
            break;
        }
    }
    metrics.batch_size.observe(responders.len() as f64);
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
