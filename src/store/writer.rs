//! The writer thread: batches queued write jobs and commits each batch once (group commit),
//! taking jobs in turn by tenant, reopening the database after a storage failure and
//! recording the allocator state when idle.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::mpsc;

use super::{Error, Job, Queued, Responder, Shared, storage_failed, write};

/// Most jobs committed together; bounds the latency one commit adds to its first request.
const MAX_BATCH: usize = 256;

/// A batch holding (or with waiting) jobs of more than one tenant takes no more once it has
/// run this long: its answers wait for its commit, and a few slow jobs of one tenant (a
/// filter over a large group's members) would otherwise hold another tenant's cheap write
/// for as long as all of them take. One tenant alone fills batches up to `MAX_BATCH`.
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
/// they are served: each tenant in turn runs jobs for up to `TURN` of working time (at least
/// one), so a tenant sending many slow writes delays another's by about one of them, and a
/// tenant sending many cheap ones (an IdP creating users in parallel) gets them all in one
/// turn. The store's own jobs (tenant "": the checkpoint at shutdown, a nudge to reopen) run
/// once no tenant's writes wait, so the checkpoint at shutdown follows every write queued.
#[derive(Default)]
struct Waiting {
    /// The tenants with jobs waiting; the first is the one whose turn it is.
    turns: VecDeque<Arc<str>>,
    jobs: HashMap<Arc<str>, VecDeque<Job>>,
    own: VecDeque<Job>,
    /// Working time the first tenant has had in this turn.
    spent: Duration,
    /// The last job taken was its tenant's last: the next `spend` starts a new turn.
    turn_over: bool,
    len: usize,
}

/// Working time one tenant's turn may take while others wait.
const TURN: Duration = Duration::from_millis(5);

impl Waiting {
    fn push(&mut self, q: Queued) {
        self.len += 1;
        if q.tenant.is_empty() {
            self.own.push_back(q.job);
            return;
        }
        // A tenant's entry goes when its last job does: one there has jobs, and its turn.
        match self.jobs.get_mut(&q.tenant) {
            Some(jobs) => jobs.push_back(q.job),
            None => {
                self.jobs.insert(q.tenant.clone(), VecDeque::from([q.job]));
                self.turns.push_back(q.tenant);
            }
        }
    }

    /// The next job, and the tenant it writes for ("" for the store's own).
    fn next(&mut self) -> Option<(Arc<str>, Job)> {
        if self.spent >= TURN && self.turns.len() > 1 {
            self.turns.rotate_left(1);
            self.spent = Duration::ZERO;
        }
        let Some(tenant) = self.turns.front().cloned() else {
            // No tenant's turn runs: the next tenant to come starts one afresh.
            self.turn_over = true;
            let job = self.own.pop_front()?;
            self.len -= 1;
            return Some((Arc::from(""), job));
        };
        let jobs = self.jobs.entry(tenant.clone()).or_default();
        let job = jobs.pop_front();
        if jobs.is_empty() {
            self.jobs.remove(&tenant);
            self.turns.pop_front();
            self.turn_over = true;
        }
        match job {
            Some(job) => {
                self.len -= 1;
                Some((tenant, job))
            }
            // Not reached (a tenant in `turns` has jobs); were it, the next tenant's.
            None => self.next(),
        }
    }

    /// Working time the job last taken had.
    fn spend(&mut self, d: Duration) {
        if std::mem::take(&mut self.turn_over) {
            self.spent = Duration::ZERO;
        } else {
            self.spent += d;
        }
    }

    /// Whether another tenant's jobs wait. (The store's own do not count: they wait for
    /// the tenants' anyway, and cutting batches for them would only cost commits.)
    fn others_than(&self, tenant: &str) -> bool {
        self.turns.iter().any(|t| &**t != tenant)
    }

    /// Takes everything the queue holds: each tenant has at most `TENANT_WRITES` there or
    /// here, so this is bounded, and a tenant's write never waits in the queue behind
    /// other tenants' floods.
    fn fill(&mut self, rx: &mut mpsc::Receiver<Queued>) {
        while let Ok(q) = rx.try_recv() {
            self.push(q);
        }
    }

    fn is_empty(&self) -> bool {
        self.turns.is_empty() && self.own.is_empty()
    }

    /// Dropped, each caller answered 503.
    fn clear(&mut self) {
        *self = Waiting::default();
    }
}

fn writer(
    shared: &Arc<Shared>,
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

/// Runs one batch of the jobs waiting when it starts, in turn by tenant, up to `MAX_BATCH`
/// jobs or `BATCH_TIME`; false when storage failed (the database must be reopened). With
/// none waiting, an empty batch commits.
fn run_batch(
    shared: &Arc<Shared>,
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
    // Two-phase: the pages are flushed before the header that names them is written, so a
    // crash never leaves a header naming pages not on disk. (A write answered 503 for a
    // failed fsync may still be found later: README, Durability.) Group commit shares both
    // fsyncs across the batch.
    txn.set_two_phase_commit(true);
    let floor = shared
        .version_floor
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut w = match write::W::open(&txn, floor, &shared.plans_in_force) {
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
    // The tenant of the batch's jobs while they are all one's.
    let mut alone: Option<Arc<str>> = None;
    let mut mixed = false;
    // As many jobs as wait now: as many writes as come while this batch runs wait for the
    // next (which ones, the turns decide), and are parsed and queued while this one commits
    // (taking them in too would leave the server idle during the commit: a fifth fewer
    // creates a second with 64 clients).
    waiting.fill(rx);
    let jobs = waiting.len.min(MAX_BATCH);
    while responders.len() < jobs {
        // Seen, so that a batch with other tenants' writes waiting ends on time.
        waiting.fill(rx);
        if let Some(t) = &alone
            && started.elapsed() >= BATCH_TIME
            && (mixed || waiting.others_than(t))
        {
            break;
        }
        let Some((tenant, job)) = waiting.next() else {
            break;
        };
        match &alone {
            None => alone = Some(tenant),
            Some(t) => mixed |= *t != tenant,
        }
        let ran = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| job(&mut w)));
        waiting.spend(ran.elapsed());
        match outcome {
            Ok(Ok(r)) => responders.push(r),
            Ok(Err(e)) => {
                // Noted by the job itself, before its answer (`Store::enqueue`). Noted again
                // here, after the answer, it would take the free space as the mark then:
                // room freed in between would refuse writes until 4 MiB more than that.
                storage_failed(&e);
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
    if w.met_damage.get() {
        super::scrub::suspect(shared);
    }
    // An idle checkpoint's empty batch is not a batch of writes.
    if !responders.is_empty() {
        metrics.batch_size.observe(responders.len() as f64);
    }
    // The tables close before the transaction ends.
    let plans_applied = std::mem::take(&mut w.plans_applied);
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
    // A commit to a file no name leads to any more would be lost at the next start.
    if !shared.look_at_file() {
        if let Err(e) = txn.abort() {
            storage_failed(&e.into());
            return false;
        }
        for r in responders {
            r(Err(Error::FileGone));
        }
        return true;
    }
    // Read after the jobs ran: a checkpoint job in this batch asks for the record.
    txn.set_quick_repair(
        quick_repair
            || shared
                .record_allocator
                .swap(false, std::sync::atomic::Ordering::Relaxed),
    );
    let started = std::time::Instant::now();
    let writing = shared.file_writes.writing();
    let committed = txn.commit();
    drop(writing);
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    match committed {
        // The name went during the commit's fsyncs: what it wrote is in a file the next
        // start will not open, so it is not acknowledged (as a failed fsync is not).
        Ok(()) if !shared.look_at_file() => {
            shared.committed();
            // Committed all the same, in the file scimd goes on with if its name comes back.
            shared.plans_in_force.commit(plans_applied);
            responders
                .into_iter()
                .for_each(|r| r(Err(Error::FileGoneAtCommit)));
            true
        }
        Ok(()) => {
            shared.committed();
            shared.room_again();
            // Before the answers: a write queued after a reload's answer follows its rules.
            shared.plans_in_force.commit(plans_applied);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(tenant: &str) -> Queued {
        Queued {
            tenant: tenant.into(),
            job: Box::new(|_| Ok(Box::new(|_| {}))),
        }
    }

    /// The tenants in the order `next` gives their jobs, each job taking `cost(tenant)`.
    fn order(w: &mut Waiting, cost: impl Fn(&str) -> Duration) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((t, _)) = w.next() {
            w.spend(cost(&t));
            out.push(t.to_string());
        }
        out
    }

    #[test]
    fn cheap_writes_share_a_turn_slow_ones_take_one_each_and_the_stores_own_go_last() {
        let mut w = Waiting::default();
        w.push(queued(""));
        for _ in 0..3 {
            w.push(queued("slow"));
        }
        for _ in 0..4 {
            w.push(queued("cheap"));
        }
        let cost = |t: &str| match t {
            "slow" => TURN * 2,
            _ => TURN / 10,
        };
        assert_eq!(
            order(&mut w, cost),
            [
                "slow", "cheap", "cheap", "cheap", "cheap", "slow", "slow", ""
            ]
        );
        assert!(w.is_empty());
        // Alone, a tenant keeps its turn whatever its jobs cost.
        for _ in 0..3 {
            w.push(queued("slow"));
        }
        assert_eq!(order(&mut w, cost), ["slow", "slow", "slow"]);
        // A turn ends with its tenant's last job: the next tenant's starts afresh.
        w.push(queued("a"));
        w.push(queued("b"));
        w.push(queued("b"));
        w.push(queued("b"));
        let cost = |t: &str| if t == "a" { TURN * 3 } else { TURN / 2 };
        assert_eq!(order(&mut w, cost), ["a", "b", "b", "b"]);
        assert!(!w.others_than("x") && w.is_empty());
        w.push(queued("x"));
        assert!(!w.others_than("x") && w.others_than("y"));
        // The store's own job waits for the tenants' and cuts no batch of theirs.
        w.push(queued(""));
        assert!(!w.others_than("x"));
    }
}
