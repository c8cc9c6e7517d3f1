//! Storage: one redb file, one writer thread that group-commits, MVCC readers on the blocking
//! pool. Only this module knows redb's tables.
//!
//! Write path: a request becomes a job that first does every check with reads inside the
//! shared write transaction and only then writes. A job that fails a check writes nothing and
//! gets its own error, so it cannot spoil the other jobs of its batch. The batch commits once
//! with `Durability::Immediate`, and nobody is answered before that commit returns.

mod backup;
mod events;
mod ops;
pub mod plan;
pub mod tables;
mod verify;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::scim::error::{ScimError, ScimResult};

pub use backup::restore;
pub use events::{Actor, Event, Retention};
pub use ops::{ListPage, ListQuery, PlanEntry, PlanSummary, SortSpec};

/// Most jobs committed together; bounds the latency one commit adds to its first request.
const MAX_BATCH: usize = 256;
/// Queued jobs before senders wait: back-pressure instead of unbounded memory.
const QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::Error,
    },
    #[error(
        "the database {path} has layout version {found}, newer than this scimd understands \
         ({supported}); upgrade scimd"
    )]
    TooNew {
        path: String,
        found: u64,
        supported: u64,
    },
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Responder = Box<dyn FnOnce(Result<(), ScimError>) + Send>;
type Job = Box<dyn FnOnce(&WriteTransaction) -> Result<Responder, redb::Error> + Send>;

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    pub metrics: Arc<crate::metrics::StoreMetrics>,
    path: std::path::PathBuf,
}

fn unavailable() -> ScimError {
    ScimError::new(
        503,
        None,
        "the database is unavailable; the request was not applied, retry later",
    )
}

fn storage_failed(e: &redb::Error) -> ScimError {
    tracing::error!(error = %e, "storage operation failed");
    unavailable()
}

impl Store {
    /// Open (or create) the database file, run migrations, and start the writer thread.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        let open_err = |source: redb::Error| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| open_err(e.into()))?;
        // Owner-only, whatever the umask: the file holds the whole directory.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let found = ops::init_schema(&db).map_err(open_err)?;
        if found > tables::SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found,
                supported: tables::SCHEMA_VERSION,
            });
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(QUEUE);
        let wdb = db.clone();
        let metrics = Arc::new(crate::metrics::StoreMetrics::default());
        let wm = metrics.clone();
        std::thread::Builder::new()
            .name("scimd-writer".into())
            .spawn(move || writer(wdb, rx, wm))
            .map_err(StoreError::Thread)?;
        Ok(Store {
            db,
            jobs: tx,
            metrics,
            path: path.to_path_buf(),
        })
    }

    /// Run `f` in the shared write transaction and answer once its batch is durable.
    pub async fn write<T, F>(&self, f: F) -> ScimResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<ScimResult<T>, redb::Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let result = f(txn)?;
            Ok(Box::new(move |committed: Result<(), ScimError>| {
                let _ = tx.send(committed.and(result));
            }))
        });
        self.jobs.send(job).await.map_err(|_| unavailable())?;
        // A dropped responder means the batch was abandoned: nothing of it was committed.
        rx.await.unwrap_or_else(|_| Err(unavailable()))
    }

    /// Run `f` in a read snapshot on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> ScimResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<ScimResult<T>, redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        let res = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(redb::Error::from)?;
            f(&txn)
        })
        .await;
        match res {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(storage_failed(&e)),
            Err(join) => {
                tracing::error!(error = %join, "read task failed");
                Err(ScimError::new(500, None, "internal error while reading"))
            }
        }
    }
}

fn writer(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Job>,
    metrics: Arc<crate::metrics::StoreMetrics>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        metrics.batch_size.observe(batch.len() as f64);
        run_batch(&db, &mut batch, &metrics);
    }
    tracing::debug!("writer stopped: all senders gone");
}

fn run_batch(db: &Database, batch: &mut Vec<Job>, metrics: &crate::metrics::StoreMetrics) {
    let mut txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            storage_failed(&e.into());
            batch.clear(); // dropping the jobs drops their senders: each caller gets 503
            return;
        }
    };
    // Quick repair keeps recovery after a crash fast at a million users; group commit pays
    // for its extra fsync.
    txn.set_quick_repair(true);
    let mut responders: Vec<Responder> = Vec::with_capacity(batch.len());
    let mut failed = false;
    for job in batch.drain(..) {
        if failed {
            continue; // dropped: its caller gets 503
        }
        match catch_unwind(AssertUnwindSafe(|| job(&txn))) {
            Ok(Ok(r)) => responders.push(r),
            Ok(Err(e)) => {
                storage_failed(&e);
                failed = true;
            }
            Err(_) => {
                tracing::error!("a write job panicked; its batch is rolled back");
                failed = true;
            }
        }
    }
    if failed {
        if let Err(e) = txn.abort() {
            storage_failed(&e.into());
        }
        for r in responders {
            r(Err(unavailable()));
        }
        return;
    }
    let started = std::time::Instant::now();
    let committed = txn.commit();
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    match committed {
        Ok(()) => responders.into_iter().for_each(|r| r(Ok(()))),
        Err(e) => {
            metrics
                .commit_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            storage_failed(&e.into());
            responders.into_iter().for_each(|r| r(Err(unavailable())));
        }
    }
}

impl Store {
    /// Size of the database file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// A cheap read of the layout version: proves the database answers.
    pub async fn check(&self) -> ScimResult<u64> {
        self.read(|txn| {
            let t = txn.open_table(tables::META)?;
            let v = t.get("schema_version")?.map(|g| g.value()).unwrap_or(0);
            Ok(Ok(v))
        })
        .await
    }
}

/// The UUIDv7 of a new resource: ordered by creation, so listing by key is stable.
pub fn new_id() -> u128 {
    uuid::Uuid::now_v7().as_u128()
}

pub fn format_id(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

/// Any string a client sends as an id; anything that is not one of ours is simply not found.
pub fn parse_id(s: &str) -> Option<u128> {
    uuid::Uuid::try_parse(s).ok().map(|u| u.as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, TableDefinition};

    #[test]
    fn records_its_layout_version_and_refuses_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, 1 << 20).unwrap();
        drop(store);
        // The writer thread exits once its channel closes; wait for it to release the file.
        let db = (0..100)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                Database::create(&path).ok()
            })
            .expect("database released");
        let meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
        {
            let r = db.begin_read().unwrap();
            let t = r.open_table(meta).unwrap();
            assert_eq!(
                t.get("schema_version").unwrap().unwrap().value(),
                tables::SCHEMA_VERSION
            );
        }
        let w = db.begin_write().unwrap();
        w.open_table(meta)
            .unwrap()
            .insert("schema_version", 99)
            .unwrap();
        w.commit().unwrap();
        drop(db);
        match Store::open(&path, 1 << 20) {
            Err(StoreError::TooNew { found: 99, .. }) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a newer layout must be refused"),
        }
    }

    #[test]
    fn ids_round_trip_and_anything_else_is_not_an_id() {
        let id = new_id();
        assert_eq!(parse_id(&format_id(id)), Some(id));
        assert!(new_id() > id, "ids are ordered by creation");
        assert_eq!(parse_id("010101001010101011001010101011"), None);
        assert_eq!(parse_id("../etc/passwd"), None);
    }
}
