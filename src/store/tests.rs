//! Unit tests of the store (mod.rs's, the writer's idle checkpoint among them): layout versions,
//! shared snapshots, pages and sorts, plan cursors, verify, ids, the tenants' read threads.

use super::writer::CHECKPOINT_IDLE;
use super::*;
use crate::scim::schema::Kind;
use redb::{Database, TableDefinition};
use std::collections::HashMap;

mod agree;

#[test]
fn records_its_layout_version_and_refuses_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path, 1 << 20).unwrap();
    drop(store);
    let db = raw(&path);
    let meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
    {
        let r = db.begin_read().unwrap();
        let t = r.open_table(meta).unwrap();
        assert_eq!(
            t.get("schema_version").unwrap().unwrap().value(),
            tables::SCHEMA_VERSION
        );
    }
    // A newer layout is refused before this build writes anything: one that dropped a
    // table does not get it back, and one that retyped a table is called newer, not damaged.
    let refused = || match Store::open(&path, 1 << 20) {
        Err(StoreError::TooNew { found: 99, .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer layout must be refused"),
    };
    let w = db.begin_write().unwrap();
    set_layout(&w, 99);
    assert!(w.delete_table(tables::RANKS).unwrap());
    w.commit().unwrap();
    drop(db);
    refused();
    let db = raw(&path);
    {
        use redb::{ReadableDatabase, TableHandle};
        let r = db.begin_read().unwrap();
        assert!(
            r.list_tables()
                .unwrap()
                .all(|t| t.name() != tables::RANKS.name()),
            "a refused open created a table"
        );
    }
    let retyped: TableDefinition<&str, &str> = TableDefinition::new("tenant_kind_count");
    let w = db.begin_write().unwrap();
    assert!(w.delete_table(tables::COUNTS).unwrap());
    w.open_table(retyped).unwrap().insert("a", "b").unwrap();
    w.commit().unwrap();
    drop(db);
    refused();
    // Back to this layout's tables for what follows (the open below makes the others).
    let db = raw(&path);
    let w = db.begin_write().unwrap();
    assert!(w.delete_table(retyped).unwrap());
    w.commit().unwrap();
    drop(db);
    // An older layout: a console command's open refuses it and leaves it as it was; the
    // daemon's converts it.
    let version = |path: &Path| -> u64 {
        let db = raw(path);
        let r = db.begin_read().unwrap();
        let t = r.open_table(meta).unwrap();
        t.get("schema_version").unwrap().unwrap().value()
    };
    {
        let db = raw(&path);
        let w = db.begin_write().unwrap();
        set_layout(&w, 5);
        w.commit().unwrap();
    }
    match Store::open_unconverted(&path, 1 << 20) {
        Err(e @ StoreError::TooOld { found: 5, .. }) => {
            assert!(e.to_string().contains("start the daemon once"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an older layout must not be converted by a console command"),
    }
    assert_eq!(version(&path), 5);
    drop(Store::open(&path, 1 << 20).unwrap());
    assert_eq!(version(&path), tables::SCHEMA_VERSION);
    drop(Store::open_unconverted(&path, 1 << 20).unwrap());
}

/// A database a console command creates belongs to the state directory's owner, so
/// that the service user can open it afterwards. Needs root to give files away.
#[cfg(unix)]
#[test]
fn a_new_database_belongs_to_the_state_directorys_owner() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let me = std::fs::metadata(dir.path()).unwrap().uid();
    if me != 0 {
        eprintln!("SKIPPED: giving a file away needs root");
        return;
    }
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let path = state.join("scimd.redb");
    drop(Store::open(&path, 1 << 20).unwrap());
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65534, 65534, 0o600));
    // An existing file keeps its owner.
    drop(raw(&path));
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    drop(Store::open(&path, 1 << 20).unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), 0);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `k → k` into `table` through the store's writer, from a plain test.
fn putter<'s>(store: &'s Store, table: &'static str) -> impl Fn(u64) + 's {
    let rt = runtime();
    let table: TableDefinition<u64, u64> = TableDefinition::new(table);
    move |k| {
        rt.block_on(store.write("t".into(), move |w| {
            w.txn.open_table(table)?.insert(k, k)?;
            Ok(Ok(()))
        }))
        .unwrap()
    }
}

#[test]
fn reads_share_a_snapshot_until_a_commit_and_never_one_older_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
    let put = putter(&store, "snapshot_test");
    let table: TableDefinition<u64, u64> = TableDefinition::new("snapshot_test");
    let sees = |r: &read::ReadSide, k: u64| {
        r.txn()
            .open_table(table)
            .is_ok_and(|t| t.get(k).unwrap().is_some())
    };
    put(1);
    let shared = &store.shared;
    let db = shared.current().unwrap();
    let a = shared.snapshot(&db).unwrap();
    assert!(
        Arc::ptr_eq(&a, &shared.snapshot(&db).unwrap()),
        "shared until a commit"
    );
    put(2);
    let b = shared.snapshot(&db).unwrap();
    assert!(!Arc::ptr_eq(&a, &b), "a commit retires the shared snapshot");
    assert!(sees(&b, 2) && !sees(&a, 2));
    // A snapshot begun before a commit and offered after it is not shared.
    let before = shared.snapshot_slot().generation;
    let stale = Arc::new(read::ReadSide::new(db.begin_read().unwrap()));
    put(3);
    shared.share(&db, before, &stale);
    let c = shared.snapshot(&db).unwrap();
    assert!(!Arc::ptr_eq(&stale, &c));
    assert!(sees(&c, 3) && !sees(&stale, 3));
    // Nor is one of a retired handle: it would hold the file against its reopening.
    let generation = shared.snapshot_slot().generation;
    let old = Arc::new(read::ReadSide::new(db.begin_read().unwrap()));
    shared.retire();
    let now = shared.snapshot_slot().generation;
    shared.share(&db, now, &old);
    assert!(shared.snapshot_slot().shared.is_none());
    assert!(shared.snapshot_slot().generation > generation);
}

/// A copy of the file taken while the store runs is what a crash would leave; whether
/// opening it needs redb's full repair shows whether the allocator state was recorded.
fn copy_needs_full_repair(path: &Path, n: usize) -> bool {
    let copy = path.with_extension(format!("copy{n}"));
    std::fs::copy(path, &copy).unwrap();
    let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = repaired.clone();
    let db = Database::builder()
        .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .create(&copy)
        .unwrap();
    drop(db);
    repaired.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn an_idle_writer_records_the_allocator_state_so_a_crash_reopens_without_full_repair() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path, 1 << 20).unwrap();
    let put = putter(&store, "checkpoint_test");
    let table: TableDefinition<u64, u64> = TableDefinition::new("checkpoint_test");
    let rt = runtime();
    // Settle the start-up commits first.
    std::thread::sleep(CHECKPOINT_IDLE * 3);
    put(1);
    assert!(
        copy_needs_full_repair(&path, 1),
        "right after a batch, a crash needs the full repair"
    );
    // The checkpoint is an fsync'd commit: on a loaded disk it can take seconds.
    let t0 = std::time::Instant::now();
    // Copies from 100 on: the later checks below take 3 and up.
    let mut n = 100;
    while copy_needs_full_repair(&path, n) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "after an idle moment the allocator state is on disk"
        );
        std::thread::sleep(CHECKPOINT_IDLE);
        n += 1;
    }
    // And the checkpoint lost nothing: the write is in the copy.
    let copy = Database::create(path.with_extension(format!("copy{n}"))).unwrap();
    let r = copy.begin_read().unwrap();
    assert_eq!(
        r.open_table(table)
            .unwrap()
            .get(1)
            .unwrap()
            .unwrap()
            .value(),
        1
    );
    // At shutdown there is no idle moment to wait for: an explicit checkpoint.
    put(2);
    rt.block_on(store.checkpoint()).unwrap();
    assert!(
        !copy_needs_full_repair(&path, 3),
        "an explicit checkpoint records the allocator state at once"
    );
}

#[test]
fn a_start_with_no_write_after_it_records_the_allocator_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // An existing file, closed cleanly, as a restart finds it.
    let rt = runtime();
    let store = Store::open(&path, 1 << 20).unwrap();
    rt.block_on(store.checkpoint()).unwrap();
    drop(store);
    drop(raw(&path));
    let store = Store::open(&path, 1 << 20).unwrap();
    // Opened, and nothing written since: a crash now needs the full repair.
    std::thread::sleep(CHECKPOINT_IDLE * 3);
    assert!(
        copy_needs_full_repair(&path, 0),
        "opening marks the file unclean"
    );
    // As the daemon does: the checkpoint waits for the scrub's first pass, and is on disk
    // once it answers.
    store.spawn_scrub(std::time::Duration::from_secs(3600));
    rt.block_on(store.checkpoint_at_start()).unwrap();
    assert!(
        !copy_needs_full_repair(&path, 1),
        "the checkpoint at start records the allocator state"
    );
}

/// Make the file at `path` look as layout `version` left it: without `added`, the table
/// the next layout added.
fn rewind_layout<K: redb::Key + 'static, V: redb::Value + 'static>(
    path: &Path,
    version: u64,
    added: TableDefinition<K, V>,
) {
    let db = raw(path);
    let w = db.begin_write().unwrap();
    assert!(w.delete_table(added).unwrap());
    set_layout(&w, version);
    w.commit().unwrap();
}

/// The database file itself, once a dropped store's writer thread has let go of it (its
/// close syncs the file, which a loaded disk can take seconds over).
fn raw(path: &Path) -> Database {
    let t0 = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(10));
        match Database::create(path) {
            Ok(db) => return db,
            Err(e) if t0.elapsed() > std::time::Duration::from_secs(30) => {
                panic!("database not released: {e}")
            }
            Err(_) => {}
        }
    }
}

/// Record layout `version` in the file, as an older scimd would have.
fn set_layout(w: &redb::WriteTransaction, version: u64) {
    let mut meta = w.open_table(tables::META).unwrap();
    meta.insert("schema_version", version).unwrap();
}

fn assert_clean(store: &Store, rt: &tokio::runtime::Runtime) {
    assert_eq!(
        rt.block_on(store.verify(HashMap::new())).unwrap(),
        Vec::<String>::new()
    );
}

/// A store at `path` with a runtime to drive it, writing as tenant "t".
struct Fixture {
    store: Store,
    rt: tokio::runtime::Runtime,
    actor: Actor,
}

impl Fixture {
    /// A user with one email.
    fn user_with_email(&self, name: &str, email: &str) -> u128 {
        let body = serde_json::json!({"userName": name, "emails": [{"value": email}]});
        self.create(Kind::User, body, None)
    }

    /// Close the store, change the file at `path` in one raw transaction, open it again.
    fn reopen_after(self, path: &Path, edit: impl FnOnce(&redb::WriteTransaction)) -> Fixture {
        let Fixture { store, rt, actor } = self;
        drop(store);
        {
            let db = raw(path);
            let w = db.begin_write().unwrap();
            edit(&w);
            w.commit().unwrap();
        }
        Fixture {
            store: Store::open(path, 1 << 20).unwrap(),
            rt,
            actor,
        }
    }

    /// The ids of the resources a filter finds.
    fn find(&self, kind: Kind, text: &str) -> Vec<String> {
        let filter = crate::scim::filter::parse_for(kind, text).unwrap();
        let q = ListQuery {
            filter: Some(filter),
            count: 10,
            start_index: 1,
            ..ListQuery::default()
        };
        let page = (self.rt)
            .block_on(self.store.list("t".into(), kind.into(), q))
            .unwrap();
        page.items.into_iter().map(|r| r.id).collect()
    }

    fn open(path: &Path) -> Fixture {
        Fixture {
            store: Store::open(path, 1 << 20).unwrap(),
            rt: runtime(),
            actor: Actor {
                tenant: "t".into(),
                token: "test".into(),
                retention: Retention::default(),
                plan: None,
                create_only: Arc::new(Vec::new()),
            },
        }
    }

    /// Tenant t's events after `after`.
    fn events_after(&self, after: u64) -> Vec<crate::store::Event> {
        self.rt
            .block_on(
                self.store
                    .events("t".into(), after, 1000, Retention::default()),
            )
            .unwrap()
            .events
    }

    /// PUT group `id` with `body`.
    fn replace_group(&self, id: u128, body: serde_json::Value) {
        let input = crate::scim::resource::normalize(Kind::Group, &body).unwrap();
        self.rt
            .block_on(self.store.replace(
                self.actor.clone(),
                Kind::Group.into(),
                format_id(id),
                input,
                Conditions::default(),
            ))
            .unwrap();
    }

    /// PATCH user `id` with the operations `ops` (a JSON list).
    fn patch_user(&self, id: u128, ops: serde_json::Value) {
        self.patch(Kind::User, id, ops);
    }

    /// PATCH resource `id` of `kind` with the operations `ops` (a JSON list).
    fn patch(&self, kind: Kind, id: u128, ops: serde_json::Value) {
        self.try_patch(kind, id, ops).unwrap();
    }

    /// PATCH resource `id` of `kind` with the operations `ops` (a JSON list): the answer.
    fn try_patch(
        &self,
        kind: Kind,
        id: u128,
        ops: serde_json::Value,
    ) -> Result<
        (
            crate::scim::render::Resource,
            crate::scim::resource::Ignored,
        ),
        Error,
    > {
        let ops = crate::scim::patch::parse_request(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops}))
        .unwrap();
        self.rt.block_on(self.store.patch(
            self.actor.clone(),
            kind.into(),
            format_id(id),
            ops,
            Conditions::default(),
        ))
    }

    fn delete_user(&self, id: u128) {
        self.rt
            .block_on(self.store.delete(
                self.actor.clone(),
                Kind::User.into(),
                format_id(id),
                Conditions::default(),
            ))
            .unwrap();
    }

    /// Create a resource (with the given id when `id` is set); its id.
    /// Users `u0`, `u1`, …, in creation order.
    fn users(&self, n: usize) -> Vec<u128> {
        (0..n)
            .map(|i| {
                self.create(
                    Kind::User,
                    serde_json::json!({"userName": format!("u{i}")}),
                    None,
                )
            })
            .collect()
    }

    fn create(&self, kind: Kind, body: serde_json::Value, id: Option<u128>) -> u128 {
        let input = crate::scim::resource::normalize(kind, &body).unwrap();
        let actor = self.actor.clone();
        let r = self
            .rt
            .block_on(self.store.create_as(
                actor,
                kind.into(),
                input,
                id.map(|id| crate::store::Given {
                    id,
                    ..Default::default()
                }),
            ))
            .unwrap();
        parse_id(&r.id).unwrap()
    }
}

/// A page of users, as (total, ids, next cursor).
fn user_page(
    store: &Store,
    rt: &tokio::runtime::Runtime,
    q: ListQuery,
) -> (u64, Vec<u128>, Option<u128>) {
    let page = rt
        .block_on(store.list("t".into(), Kind::User.into(), q))
        .unwrap();
    let ids = page
        .items
        .iter()
        .map(|r| parse_id(&r.id).unwrap())
        .collect();
    (page.total, ids, page.next)
}

/// Every startIndex page, as (total, ids), for `n` users and one past the end.
fn every_page(store: &Store, rt: &tokio::runtime::Runtime, n: u64) -> Vec<(u64, Vec<u128>)> {
    (1..=n + 2)
        .map(|start| {
            let q = ListQuery {
                start_index: start,
                count: 3,
                ..ListQuery::default()
            };
            let (total, ids, _) = user_page(store, rt, q);
            (total, ids)
        })
        .collect()
}

#[test]
fn deep_start_index_pages_match_the_id_order_and_a_layout_1_file_is_counted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    // Imported ids (kept from another host) spread over every prefix level, and ids
    // made here, many in the same millisecond.
    let mut x: u128 = 0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15;
    let mut ids = Vec::new();
    for i in 0..40u128 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ms: u128 = 1_700_000_000_000 + (i % 4) * 3_600_000 + i % 3;
        ids.push(if i % 2 == 0 {
            x
        } else {
            (ms << 80) | (x >> 48)
        });
    }
    for (i, id) in ids.iter().enumerate() {
        f.create(
            Kind::User,
            serde_json::json!({"userName": format!("u{i}")}),
            Some(*id),
        );
    }
    for i in 0..20 {
        ids.push(f.create(
            Kind::User,
            serde_json::json!({"userName": format!("v{i}")}),
            None,
        ));
    }
    // Deletes take resources out of the counts.
    let Fixture { store, rt, actor } = f;
    for id in ids.iter().step_by(7) {
        rt.block_on(store.delete(
            actor.clone(),
            Kind::User.into(),
            format_id(*id),
            Conditions::default(),
        ))
        .unwrap();
    }
    let mut live: Vec<u128> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 0)
        .map(|(_, id)| *id)
        .collect();
    live.sort_unstable();
    let n = live.len() as u64;
    let want: Vec<(u64, Vec<u128>)> = (0..n as usize + 2)
        .map(|skip| (n, live.iter().skip(skip).take(3).copied().collect()))
        .collect();
    assert_eq!(every_page(&store, &rt, n), want);
    assert_clean(&store, &rt);
    // The same file as layout 1 left it: no position counts.
    drop(store);
    rewind_layout(&path, 1, tables::RANKS);
    let store = Store::open(&path, 1 << 20).unwrap();
    assert_eq!(every_page(&store, &rt, n), want);
    assert_clean(&store, &rt);
}

#[test]
fn scanned_filter_pages_reuse_their_count_only_within_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let mut odd = Vec::new();
    for i in 0..31 {
        let title = if i % 2 == 1 { "odd" } else { "even" };
        let id = f.create(
            Kind::User,
            serde_json::json!({"userName": format!("u{i}"), "title": title}),
            None,
        );
        if i % 2 == 1 {
            odd.push(id);
        }
    }
    let filter = crate::scim::filter::parse_for(Kind::User, "title eq \"odd\"").unwrap();
    let list = |start_index: u64, after: Option<u128>| {
        let q = ListQuery {
            filter: Some(filter.clone()),
            start_index,
            count: 3,
            after,
            ..ListQuery::default()
        };
        user_page(&f.store, &f.rt, q)
    };
    // Every startIndex page, twice: the first counts, the rest start at a bookmark
    // (at most 4 kept in unit tests, so their spacing grows), in any order of pages.
    let n = odd.len() as u64;
    for start in (1..=n + 2).chain((1..=n + 2).rev()) {
        let want: Vec<u128> = odd
            .iter()
            .skip(start as usize - 1)
            .take(3)
            .copied()
            .collect();
        assert_eq!(list(start, None), (n, want, None), "startIndex {start}");
    }
    // By cursor, with a write between two pages: the write ends the snapshot, so the
    // next page counts again and sees the new match.
    let (mut seen, mut after, mut pages) = (Vec::new(), 0u128, 0);
    loop {
        let (total, ids, next) = list(1, Some(after));
        assert_eq!(total, n + u64::from(pages >= 2), "page {pages}");
        seen.extend(ids);
        pages += 1;
        if pages == 2 {
            odd.push(f.create(
                Kind::User,
                serde_json::json!({"userName": "late", "title": "ODD"}),
                None,
            ));
        }
        match next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, odd);
}

#[test]
fn a_scan_past_its_limit_is_refused_and_leaves_no_count_behind() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(f.create(
            Kind::User,
            serde_json::json!({"userName": format!("u{i}"), "title": "t"}),
            None,
        ));
    }
    // No time to read at all: a scan stops at its first record.
    let past = Some(std::time::Duration::ZERO);
    let query = |filter: &str, sort: bool, scan_limit| ListQuery {
        filter: Some(crate::scim::filter::parse_for(Kind::User, filter).unwrap()),
        sort: sort.then(|| SortSpec::parse(Kind::User, "title", None).unwrap()),
        start_index: 1,
        count: 2,
        scan_limit,
        ..ListQuery::default()
    };
    let list = |q| {
        f.rt.block_on(f.store.list("t".into(), Kind::User.into(), q))
    };
    // A scan, a sort, and a conjunction whose plan's candidates are each read: all cut.
    for (filter, sort) in [
        ("title eq \"t\"", false),
        ("title eq \"t\"", true),
        ("userName sw \"u\" and title eq \"t\"", false),
    ] {
        match list(query(filter, sort, past)) {
            Err(e @ Error::ScanCut { kind: Kind::User }) => {
                let scim = crate::scim::error::ScimError::from(e);
                assert_eq!(scim.status, 400);
                assert_eq!(scim.scim_type, Some(crate::scim::error::ScimType::TooMany));
            }
            Err(e) => panic!("{filter} (sorted: {sort}): {e}"),
            Ok(p) => panic!("{filter} (sorted: {sort}): answered {} matches", p.total),
        }
    }
    let counted = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted(&f.store.metrics.scans_past_deadline), 3);
    assert_eq!(counted(&f.store.metrics.scans_for_no_one), 0);
    // The cut scan remembered nothing in this snapshot: the same filter counts again.
    let page = list(query("title eq \"t\"", false, None)).unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.items.len(), 2);
    // Index-served reads are not scans: a limit does not stop them.
    let page = list(query("userName eq \"u3\"", false, past)).unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(parse_id(&page.items[0].id), Some(ids[3]));
}

#[test]
fn deep_sorted_pages_are_slices_of_the_sorted_list() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    // Family names with ties, case differences and gaps (missing sorts last).
    let mut want = Vec::new();
    for i in 0..45u32 {
        let family = match i % 9 {
            0 => None,
            n => Some(format!(
                "{}{}",
                if n % 2 == 0 { "Ab" } else { "aB" },
                (i * 7) % 5
            )),
        };
        let mut body = serde_json::json!({"userName": format!("u{i}")});
        if let Some(fam) = &family {
            body["name"] = serde_json::json!({"familyName": fam});
        }
        let id = f.create(Kind::User, body, None);
        want.push((family.map(|x| x.to_lowercase()), id));
    }
    for descending in [false, true] {
        let mut sorted = want.clone();
        sorted.sort_by(|(a, x), (b, y)| {
            // No value sorts after every value: last ascending, first descending.
            let by_key = match (a, b) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            let by_key = if descending { by_key.reverse() } else { by_key };
            by_key.then(x.cmp(y))
        });
        let order = if descending {
            "descending"
        } else {
            "ascending"
        };
        let sort = SortSpec::parse(Kind::User, "name.familyName", Some(order)).unwrap();
        let ids: Vec<u128> = sorted.iter().map(|(_, id)| *id).collect();
        assert_sorted_pages(&f, &sort, &ids, &[1, 4, 30]);
        // A cursor walk resumes after the last resource's key and id: the same order.
        for count in [1u64, 4, 30] {
            assert_eq!(
                mark_walk(&f, &sort, count, 45),
                ids,
                "{order} count {count}"
            );
        }
        // By userName, the walk goes down the userName index instead.
        let by_name = SortSpec::parse(Kind::User, "userName", Some(order)).unwrap();
        let mut names: Vec<(String, u128)> =
            (0..45).map(|i| (format!("u{i}"), want[i].1)).collect();
        names.sort();
        if descending {
            names.reverse();
        }
        let ids: Vec<u128> = names.iter().map(|(_, id)| *id).collect();
        assert_eq!(mark_walk(&f, &by_name, 7, 45), ids, "userName {order}");
    }
}

#[test]
fn last_modified_filters_read_their_index_which_a_layout_2_file_gets_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let ids: Vec<u128> = f.users(8);
    let stamp = |id: u128| {
        let r =
            f.rt.block_on(f.store.get("t".into(), Kind::User, format_id(id), false));
        r.unwrap().modified
    };
    let mid = stamp(ids[3]);
    // Two of the earlier ones change after `mid`, one later one goes.
    for id in [ids[0], ids[2]] {
        f.patch_user(
            id,
            serde_json::json!([{"op": "replace", "path": "title", "value": "changed"}]),
        );
    }
    f.delete_user(ids[6]);
    let matches = |f: &Fixture, op: &str, count: u64| {
        let text = format!(r#"meta.lastModified {op} "{mid}""#);
        let filter = crate::scim::filter::parse_for(Kind::User, &text).unwrap();
        let q = ListQuery {
            filter: Some(filter),
            count,
            start_index: 1,
            ..ListQuery::default()
        };
        let (total, got, _) = user_page(&f.store, &f.rt, q);
        (total, got)
    };
    let after = vec![ids[0], ids[2], ids[4], ids[5], ids[7]];
    let want = [
        ("gt", after.clone()),
        ("ge", vec![ids[0], ids[2], ids[3], ids[4], ids[5], ids[7]]),
        ("lt", vec![ids[1]]),
        ("le", vec![ids[1], ids[3]]),
        ("eq", vec![ids[3]]),
    ];
    for (op, ids) in &want {
        assert_eq!(
            matches(&f, op, 100),
            (ids.len() as u64, ids.clone()),
            "{op}"
        );
    }
    // A page of the range: the smallest ids, and every match counted.
    assert_eq!(matches(&f, "gt", 2), (5, after[..2].to_vec()));
    assert_clean(&f.store, &f.rt);
    // The same file as layout 2 left it: no lastModified index.
    let Fixture { store, rt, actor } = f;
    drop(store);
    rewind_layout(&path, 2, tables::MODIFIED_ID);
    let store = Store::open(&path, 1 << 20).unwrap();
    let f = Fixture { store, rt, actor };
    for (op, ids) in &want {
        assert_eq!(
            matches(&f, op, 100),
            (ids.len() as u64, ids.clone()),
            "{op}"
        );
    }
    assert_clean(&f.store, &f.rt);
}

/// Files from before the plan counters, or from a build that indexed groups'
/// lastModified, passed as layout 3: opening one recounts and cleans it (layout 4), and
/// a backup of an older layout restores, migrated, instead of failing its check.
#[test]
fn layout_3_files_get_true_plan_counters_and_older_backups_restore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    for (i, active) in [true, true, false, true].iter().enumerate() {
        f.create(
            Kind::User,
            serde_json::json!({"userName": format!("u{i}"), "active": active}),
            None,
        );
    }
    let g = f.create(Kind::Group, serde_json::json!({"displayName": "G"}), None);
    let Fixture { store, rt, .. } = f;
    drop(store);
    {
        let db = raw(&path);
        let w = db.begin_write().unwrap();
        w.open_table(tables::COUNTS)
            .unwrap()
            .insert(("t", plan::ACTIVE), 0)
            .unwrap();
        w.open_table(tables::MODIFIED_ID)
            .unwrap()
            .insert(("t", Kind::Group.code(), 1, g), ())
            .unwrap();
        set_layout(&w, 3);
        w.commit().unwrap();
    }
    let copy = dir.path().join("layout3.redb");
    std::fs::copy(&path, &copy).unwrap();
    let active = |store: &Store| {
        store
            .read_now(|r| Ok(Ok(plan::active(r.counts()?, "t")?)))
            .unwrap()
    };
    let store = Store::open(&path, 1 << 20).unwrap();
    assert_eq!(active(&store), 3);
    assert_clean(&store, &rt);
    store.close();
    // The layout-3 copy as a backup, restored over the migrated file.
    let restored = super::restore(&copy, &path, &HashMap::new()).unwrap();
    assert_eq!(restored.warnings, Vec::<String>::new());
    assert_eq!(restored.converted_from, Some(3));
    let store = Store::open(&path, 1 << 20).unwrap();
    assert_eq!(active(&store), 3);
    assert_clean(&store, &rt);
}

/// A layout-4 file as layout 4 wrote it: names lowercased, not folded, and two users and two
/// groups that layout 4 told apart and that fold alike (a final sigma). Opened, so converted.
struct Layout4 {
    /// Bound by name where the struct is taken apart: `..` would drop it, and remove the
    /// database file from under `f` (whose writes are then refused).
    _dir: tempfile::TempDir,
    f: Fixture,
    greek: u128,
    cafe: u128,
    /// The user holding the key both its name and `greek`'s fold to, made after `greek`.
    clash: u128,
    g: u128,
    g2: u128,
}

fn layout_4_with_names_that_fold_alike() -> Layout4 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let user = |name: &str, email: &str| f.user_with_email(name, email);
    // Lowercasing makes a final sigma ς, and leaves a decomposed é decomposed.
    let greek = user("ΟΔΥΣΣΕΑΣ@x", "ΟΔΟΣ@x");
    let cafe = user("cafe\u{301}@x", "c@x");
    let clash = user("placeholder@x", "p@x");
    let group = |name: &str| f.create(Kind::Group, serde_json::json!({"displayName": name}), None);
    let (g, g2) = (group("ΝΑΟΣ"), group("placeholder"));
    // `clash` becomes a user that layout 4 accepted beside `ΟΔΥΣΣΕΑΣ@x`, holding the key
    // both now fold to; `g2` a group named `ναοσ` beside `ΝΑΟΣ`.
    let f = f.reopen_after(&path, |w| {
        use redb::ReadableTable;
        {
            let mut names = w.open_table(tables::USERNAME_USERID).unwrap();
            for (folded, lowered, id) in [
                ("οδυσσεασ@x", "οδυσσεας@x", greek),
                ("caf\u{e9}@x", "cafe\u{301}@x", cafe),
            ] {
                assert_eq!(names.remove(("t", folded)).unwrap().unwrap().value(), id);
                names.insert(("t", lowered), id).unwrap();
            }
            names.remove(("t", "placeholder@x")).unwrap().unwrap();
            names.insert(("t", "οδυσσεασ@x"), clash).unwrap();
            let mut res = w.open_table(tables::RESOURCES).unwrap();
            for (kind, id, attr, name) in [
                (Kind::User, clash, "userName", "ΟΔΥΣΣΕΑσ@x"),
                (Kind::Group, g2, "displayName", "ναοσ"),
            ] {
                let key = ("t", kind.code(), id);
                let mut rec: serde_json::Value =
                    serde_json::from_slice(res.get(key).unwrap().unwrap().value()).unwrap();
                rec["body"][attr] = name.into();
                res.insert(key, serde_json::to_vec(&rec).unwrap().as_slice())
                    .unwrap();
            }
            let mut emails = w.open_multimap_table(tables::EMAIL_USERID).unwrap();
            assert!(emails.remove(("t", "οδοσ@x"), greek).unwrap());
            emails.insert(("t", "οδος@x"), greek).unwrap();
            let mut display = w.open_multimap_table(tables::DISPLAYNAME_ID).unwrap();
            let code = Kind::Group.code();
            assert!(display.remove(("t", code, "ναοσ"), g).unwrap());
            display.insert(("t", code, "ναος"), g).unwrap();
            assert!(display.remove(("t", code, "placeholder"), g2).unwrap());
            display.insert(("t", code, "ναοσ"), g2).unwrap();
        }
        set_layout(w, 4);
    });
    Layout4 {
        _dir: dir,
        f,
        greek,
        cafe,
        clash,
        g,
        g2,
    }
}

/// The ids of the users `filter` (or none) finds, sorted by userName, every page of 1.
fn by_user_name(f: &Fixture, filter: Option<&str>, descending: bool) -> Vec<u128> {
    walk_by_user_name(f, filter, descending, |_| {})
}

/// `by_user_name`, calling `between` with the ids so far after each page.
fn walk_by_user_name(
    f: &Fixture,
    filter: Option<&str>,
    descending: bool,
    mut between: impl FnMut(&[u128]),
) -> Vec<u128> {
    let order = if descending {
        "descending"
    } else {
        "ascending"
    };
    let sort = SortSpec::parse(Kind::User, "userName", Some(order)).unwrap();
    let (mut ids, mut resume) = (Vec::new(), None);
    loop {
        let q = ListQuery {
            filter: filter.map(|x| crate::scim::filter::parse_for(Kind::User, x).unwrap()),
            sort: Some(sort.clone()),
            count: 1,
            resume: resume.take(),
            ..ListQuery::default()
        };
        let page =
            f.rt.block_on(f.store.list("t".into(), Kind::User.into(), q))
                .unwrap();
        ids.extend(page.items.iter().map(|r| parse_id(&r.id).unwrap()));
        between(&ids);
        assert!(ids.len() <= 10, "the walk ends");
        match page.next_mark {
            Some(m) => resume = Some(m),
            None => return ids,
        }
    }
}

/// Layout 4 lowercased names, layout 6 folds them (`scim::fold`). Opening a layout-4 file
/// re-keys the names outside ASCII. Of two users that layout 4 told apart and the fold makes
/// one name, the holder of the folded key keeps it and a lookup finds it; the other is
/// indexed beside it, so walks in name order list both, is written under its name and
/// deleted without touching the holder's entry; `verify` names both pairs, users and groups.
#[test]
fn layout_4_files_get_folded_names_and_a_clash_stays_listed_and_writable() {
    let Layout4 {
        _dir,
        f,
        greek,
        cafe,
        clash,
        g,
        g2,
        ..
    } = layout_4_with_names_that_fold_alike();
    let find = |kind: Kind, text: &str| f.find(kind, text);
    let ids = |ids: &[u128]| ids.iter().map(|&i| format_id(i)).collect::<Vec<_>>();
    assert_eq!(find(Kind::User, "userName eq \"CAFÉ@X\""), ids(&[cafe]));
    assert_eq!(
        find(Kind::User, "emails.value eq \"οδος@x\""),
        ids(&[greek])
    );
    assert_eq!(
        find(Kind::User, "userName eq \"ΟΔΥΣΣΕΑΣ@X\""),
        ids(&[clash])
    );
    assert_eq!(find(Kind::Group, "displayName eq \"ναος\""), ids(&[g, g2]));
    // In name order, as `totalResults` counts them: the holder, then the other.
    assert_eq!(by_user_name(&f, None, false), [cafe, clash, greek]);
    assert_eq!(by_user_name(&f, None, true), [greek, clash, cafe]);
    let sw = Some("userName sw \"οδυσ\"");
    assert_eq!(by_user_name(&f, sw, false), [clash, greek]);
    assert_eq!(
        find(Kind::User, "userName sw \"ΟΔΥΣ\""),
        ids(&[greek, clash])
    );
    assert_eq!(
        find(Kind::User, "userName ge \"οδυσσεασ@x\""),
        ids(&[greek, clash])
    );
    assert_eq!(
        find(Kind::User, "userName le \"οδυσσεασ@x\""),
        ids(&[greek, cafe, clash])
    );
    assert_eq!(find(Kind::User, "userName gt \"οδυσσεασ@x\""), ids(&[]));
    assert_eq!(find(Kind::User, "userName lt \"οδυσσεασ@x\""), ids(&[cafe]));
    let problems = f.rt.block_on(f.store.verify(HashMap::new())).unwrap();
    let names_both = |p: &String, a: u128, b: u128| {
        p.contains(&format_id(a)) && p.contains(&format_id(b)) && p.contains("rename one")
    };
    // Each by its id and its name as stored.
    let quoted = |p: &String, a: &str, b: &str| {
        p.contains(&format!("{a:?}")) && p.contains(&format!("{b:?}"))
    };
    assert!(
        problems.len() == 2
            && problems
                .iter()
                .any(|p| names_both(p, clash, greek) && quoted(p, "ΟΔΥΣΣΕΑσ@x", "ΟΔΥΣΣΕΑΣ@x"))
            && problems
                .iter()
                .any(|p| names_both(p, g, g2) && quoted(p, "ΝΑΟΣ", "ναοσ")),
        "{problems:?}"
    );
    // The user beside the holder is still written under its own name.
    f.patch_user(
        greek,
        serde_json::json!([{"op": "replace", "path": "active", "value": false}]),
    );
    // Deleting it leaves the holder's entry.
    f.delete_user(greek);
    assert_eq!(
        find(Kind::User, "userName eq \"οδυσσεασ@x\""),
        ids(&[clash])
    );
    assert_eq!(by_user_name(&f, None, false), [cafe, clash]);
    // Renaming a group makes the index whole again.
    f.replace_group(g2, serde_json::json!({"displayName": "Other"}));
    assert_clean(&f.store, &f.rt);
}

/// User `id`, made as `made_as`, named `name` in its record alone and without an index
/// entry: as an older build's conversion left out one of two names it joined.
fn leave_out(w: &redb::WriteTransaction, id: u128, made_as: &str, name: &str) {
    use redb::ReadableTable;
    let mut names = w.open_table(tables::USERNAME_USERID).unwrap();
    assert_eq!(names.remove(("t", made_as)).unwrap().unwrap().value(), id);
    let mut res = w.open_table(tables::RESOURCES).unwrap();
    let key = ("t", Kind::User.code(), id);
    let mut rec: serde_json::Value =
        serde_json::from_slice(res.get(key).unwrap().unwrap().value()).unwrap();
    rec["body"]["userName"] = name.into();
    res.insert(key, serde_json::to_vec(&rec).unwrap().as_slice())
        .unwrap();
}

/// A POST of a user named `name`: the error when it is refused.
fn create_refused(f: &Fixture, name: &str) -> Option<Error> {
    let input =
        crate::scim::resource::normalize(Kind::User, &serde_json::json!({"userName": name}));
    f.rt.block_on(
        f.store
            .create_as(f.actor.clone(), Kind::User.into(), input.unwrap(), None),
    )
    .err()
}

/// Layout 5 left one of two users whose names it folded alike out of the userName index,
/// and its step to layout 6 re-keyed only names whose key changed. Opening such a file
/// indexes the one left out (layout 7): beside the holder when the names still fold alike
/// (a composed and a decomposed `é`), as the holder when its key was freed (`ſtrasse`, left
/// out for `straße`, which now folds apart). Before, walks in name order missed it and a
/// new user could take its name.
#[test]
fn users_earlier_upgrades_left_out_of_the_name_index_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let composed = f.user_with_email("café@x", "a@x");
    let decomposed = f.user_with_email("zzz@x", "b@x");
    let sharp = f.user_with_email("straße@x", "c@x");
    let long_s = f.user_with_email("ſtrasse@x", "d@x");
    let f = f.reopen_after(&path, |w| {
        // As layout 5 left them: `decomposed` renamed to fold as `composed` and out of the
        // index; `straße` holding the key `strasse` and `ſtrasse` out of the index.
        leave_out(w, decomposed, "zzz@x", "CAFE\u{301}@x");
        let mut names = w.open_table(tables::USERNAME_USERID).unwrap();
        assert_eq!(
            names.remove(("t", "straße@x")).unwrap().unwrap().value(),
            sharp
        );
        assert_eq!(
            names.remove(("t", "strasse@x")).unwrap().unwrap().value(),
            long_s
        );
        names.insert(("t", "strasse@x"), sharp).unwrap();
        drop(names);
        set_layout(w, 5);
    });
    let find = |text: &str| f.find(Kind::User, text);
    let ids = |ids: &[u128]| ids.iter().map(|&i| format_id(i)).collect::<Vec<_>>();
    // Both é users are listed, the holder first, and counted as they are listed.
    assert_eq!(find("userName eq \"CAFÉ@X\""), ids(&[composed]));
    assert_eq!(
        by_user_name(&f, Some("userName sw \"caf\""), false),
        [composed, decomposed]
    );
    let all = by_user_name(&f, None, false);
    assert_eq!(all.len(), 4, "{all:?}");
    // `ſtrasse` has its name again: found, and not to be taken.
    assert_eq!(find("userName eq \"STRASSE@x\""), ids(&[long_s]));
    assert_eq!(find("userName eq \"STRAẞE@X\""), ids(&[sharp]));
    assert!(
        matches!(create_refused(&f, "STRASSE@x"), Some(Error::UserNameTaken { holder }) if holder == long_s)
    );
    // What is left is the pair to rename, not a user missing from the index.
    let problems = f.rt.block_on(f.store.verify(HashMap::new())).unwrap();
    assert!(
        problems.len() == 1
            && problems[0].contains(&format_id(composed))
            && problems[0].contains(&format_id(decomposed))
            && problems[0].contains("rename one"),
        "{problems:?}"
    );
}

/// A layout-6 file where the holder of a name has gone, so a lookup finds the user beside
/// it, and a third user of that name was left out: the conversion puts the third beside
/// them, and the lookup still finds the same user, whether the third is younger or older.
#[test]
fn a_user_indexed_by_layout_7_does_not_take_the_lookup_from_the_one_it_found() {
    for third_first in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let f = Fixture::open(&path);
        let (found, third) = if third_first {
            let third = f.user_with_email("zzz@x", "c@x");
            (f.user_with_email("Strasse@x", "b@x"), third)
        } else {
            let found = f.user_with_email("Strasse@x", "b@x");
            (found, f.user_with_email("zzz@x", "c@x"))
        };
        assert_eq!(third < found, third_first);
        let f = f.reopen_after(&path, |w| {
            leave_out(w, third, "zzz@x", "ſtrasse@x");
            let mut names = w.open_table(tables::USERNAME_USERID).unwrap();
            let plain = names.remove(("t", "strasse@x")).unwrap().unwrap();
            assert_eq!(plain.value(), found);
            drop(plain);
            names
                .insert(("t", alike::key("strasse@x", found).as_str()), found)
                .unwrap();
            assert_eq!(
                alike::holder(&names, "t", "strasse@x").unwrap(),
                Some(found)
            );
            drop(names);
            set_layout(w, 6);
        });
        let walked = by_user_name(&f, None, false);
        assert_eq!(walked.len(), 2, "{walked:?}");
        assert_eq!(
            f.find(Kind::User, "userName eq \"STRASSE@x\""),
            [format_id(found)],
            "the third made first: {third_first}"
        );
        assert!(
            matches!(create_refused(&f, "strasse@X"), Some(Error::UserNameTaken { holder }) if holder == found)
        );
        let problems = f.rt.block_on(f.store.verify(HashMap::new())).unwrap();
        assert!(
            problems.len() == 1 && problems[0].contains(&format_id(third)),
            "{problems:?}"
        );
    }
}

/// A layout-6 file made by a build before `alike` lacks the entry beside the holder for the
/// other user of a pair; opening it (layout 7) adds it, and leaves alone the users already
/// indexed.
#[test]
fn a_layout_6_file_gets_the_entry_its_build_left_out_beside_a_holder() {
    let Layout4 {
        _dir,
        f,
        greek,
        clash,
        cafe,
        ..
    } = layout_4_with_names_that_fold_alike();
    let path = _dir.path().join("s.redb");
    let f = f.reopen_after(&path, |w| {
        let mut names = w.open_table(tables::USERNAME_USERID).unwrap();
        let beside = alike::key("οδυσσεασ@x", greek);
        assert_eq!(
            names
                .remove(("t", beside.as_str()))
                .unwrap()
                .unwrap()
                .value(),
            greek
        );
        drop(names);
        set_layout(w, 6);
    });
    assert_eq!(by_user_name(&f, None, false), [cafe, clash, greek]);
    assert_eq!(
        f.find(Kind::User, "userName eq \"ΟΔΥΣΣΕΑΣ@X\""),
        [format_id(clash)]
    );
}

/// When the holder of a name two users share after an upgrade lets it go, the other takes
/// it: a lookup finds it, and a new user cannot take the name from under it. Nothing moves
/// in the index for it, so a cursor walk by userName begun before lists every user once.
#[test]
fn the_user_beside_a_holder_takes_the_name_when_the_holder_goes() {
    let Layout4 {
        _dir,
        f,
        greek,
        clash,
        cafe,
        ..
    } = layout_4_with_names_that_fold_alike();
    let find = |text: &str| f.find(Kind::User, text);
    // A walk one user a page, the holder deleted once its page is out.
    let walked = walk_by_user_name(&f, None, false, |ids| {
        if ids.last() == Some(&clash) {
            f.delete_user(clash);
        }
    });
    assert_eq!(walked, [cafe, clash, greek]);
    assert_eq!(find("userName eq \"ΟΔΥΣΣΕΑΣ@X\""), [format_id(greek)]);
    let input = serde_json::json!({"userName": "οδυσσεασ@x"});
    let input = crate::scim::resource::normalize(Kind::User, &input).unwrap();
    let taken = (f.rt).block_on(
        f.store
            .create_as(f.actor.clone(), Kind::User.into(), input, None),
    );
    assert!(
        matches!(taken, Err(Error::UserNameTaken { holder }) if holder == greek),
        "{taken:?}"
    );
    let problems = f.rt.block_on(f.store.verify(HashMap::new())).unwrap();
    assert_eq!(problems.len(), 1, "the groups' pair only: {problems:?}");
    assert_eq!(by_user_name(&f, None, false).len(), 2);
}

/// Layout 5 folded `ß` to `ss`, ligatures to their letters and `ı` to `i`, joining names of
/// different people. Opening a layout-5 file re-keys those names from the records, and a
/// user that layout 5 left out of the userName index for another's name gets its key back.
#[test]
fn layout_5_files_part_names_a_longer_case_mapping_joined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let user = |name: &str, email: &str| f.user_with_email(name, email);
    let sharp = user("straße@x", "ﬁle@x");
    let ascii = user("STRASSE@x", "s@x");
    let dotless = user("ılker@corp", "i@x");
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "Straßenbau"}),
        None,
    );
    // As layout 5 left them: `straße` held the key `STRASSE` also folded to, and `STRASSE`
    // had none.
    let f = f.reopen_after(&path, |w| {
        {
            let mut names = w.open_table(tables::USERNAME_USERID).unwrap();
            for (now, id) in [
                ("straße@x", sharp),
                ("strasse@x", ascii),
                ("ılker@corp", dotless),
            ] {
                assert_eq!(names.remove(("t", now)).unwrap().unwrap().value(), id);
            }
            names.insert(("t", "strasse@x"), sharp).unwrap();
            names.insert(("t", "ilker@corp"), dotless).unwrap();
            let mut emails = w.open_multimap_table(tables::EMAIL_USERID).unwrap();
            assert!(emails.remove(("t", "ﬁle@x"), sharp).unwrap());
            emails.insert(("t", "file@x"), sharp).unwrap();
            let mut display = w.open_multimap_table(tables::DISPLAYNAME_ID).unwrap();
            let code = Kind::Group.code();
            assert!(display.remove(("t", code, "straßenbau"), g).unwrap());
            display.insert(("t", code, "strassenbau"), g).unwrap();
        }
        set_layout(w, 5);
    });
    let find = |kind: Kind, text: &str| f.find(kind, text);
    let one = |id: u128| vec![format_id(id)];
    assert_eq!(find(Kind::User, "userName eq \"STRAẞE@X\""), one(sharp));
    assert_eq!(find(Kind::User, "userName eq \"strasse@x\""), one(ascii));
    assert_eq!(find(Kind::User, "userName eq \"ıLKER@corp\""), one(dotless));
    assert_eq!(
        find(Kind::User, "userName eq \"ILKER@corp\""),
        Vec::<String>::new()
    );
    assert_eq!(find(Kind::User, "emails.value eq \"ﬁle@x\""), one(sharp));
    assert_eq!(
        find(Kind::User, "emails.value eq \"FILE@x\""),
        Vec::<String>::new()
    );
    assert_eq!(find(Kind::Group, "displayName eq \"STRAẞENBAU\""), one(g));
    assert_eq!(
        find(Kind::Group, "displayName eq \"Strassenbau\""),
        Vec::<String>::new()
    );
    assert_clean(&f.store, &f.rt);
}

/// A member's display lives and goes with its membership: a member that leaves (removed,
/// replaced away, or deleted) leaves no display behind, and `verify` would name one.
#[test]
fn a_members_display_goes_with_its_membership() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let u = f.users(3);
    let member =
        |i: usize| serde_json::json!({"value": format_id(u[i]), "display": format!("u{i}")});
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "G", "members": [member(0), member(1), member(2)]}),
        None,
    );
    let shown = || -> Vec<String> {
        let r =
            f.rt.block_on(f.store.get("t".into(), Kind::Group, format_id(g), true));
        (r.unwrap().refs.unwrap().iter())
            .map(|m| m["display"].as_str().unwrap_or("none").to_string())
            .collect()
    };
    assert_eq!(shown(), ["u0", "u1", "u2"]);
    f.delete_user(u[0]);
    let body = serde_json::json!({"displayName": "G", "members": [{"value": format_id(u[2])}]});
    f.replace_group(g, body);
    // Replaced as given: the member kept has no display now, and the feed says so.
    assert_eq!(shown(), ["none"]);
    let feed =
        f.rt.block_on(f.store.events("t".into(), 0, 1000, Retention::default()))
            .unwrap();
    assert!(
        feed.events
            .iter()
            .any(|e| e.kind == "group.updated" && e.attributes == ["members.display"]),
        "{:?}",
        feed.events
    );
    // Added again later in one request without a display, a member keeps the one the
    // request gave it first, as it keeps a stored one.
    f.patch(
        Kind::Group,
        g,
        serde_json::json!([
            {"op": "replace", "path": "members", "value": [member(2)]},
            {"op": "add", "path": "members", "value": [{"value": format_id(u[2])}]}]),
    );
    assert_eq!(shown(), ["u2"]);
    assert_clean(&f.store, &f.rt);
    // A display left without its membership is named.
    let f = f.reopen_after(&dir.path().join("s.redb"), |w| {
        let mut displays = w.open_table(tables::MEMBER_DISPLAY).unwrap();
        displays.insert(("t", g, u[1]), "stale").unwrap();
    });
    let problems = f.rt.block_on(f.store.verify(HashMap::new())).unwrap();
    assert!(
        problems.len() == 1 && problems[0].contains("a display kept for"),
        "{problems:?}"
    );
}

/// Operations apply in order (RFC 7644 §3.5.2): a member filter removes members an earlier
/// operation of the request added, not those it removed, and judges a re-added member by
/// the display the request gave it.
#[test]
fn member_filters_see_what_earlier_operations_of_the_request_did() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let u = f.users(3);
    let id = |i: usize| format_id(u[i]);
    let member = |i: usize, d: &str| serde_json::json!({"value": id(i), "display": d});
    let run = |stored: Vec<serde_json::Value>, ops: serde_json::Value| -> Vec<String> {
        let g = f.create(
            Kind::Group,
            serde_json::json!({"displayName": format!("G{}", uuid::Uuid::now_v7()),
                "members": stored}),
            None,
        );
        f.patch(Kind::Group, g, ops);
        let r =
            f.rt.block_on(f.store.get("t".into(), Kind::Group, format_id(g), true));
        (r.unwrap().refs.unwrap().iter())
            .map(|m| {
                let shown = m["display"].as_str().unwrap_or("-");
                let i = (0..3).find(|&i| m["value"] == id(i)).unwrap();
                format!("{i}:{shown}")
            })
            .collect()
    };
    let add = |list: Vec<serde_json::Value>| serde_json::json!({"op": "add", "path": "members", "value": list});
    let remove =
        |filter: String| serde_json::json!({"op": "remove", "path": format!("members[{filter}]")});
    assert_eq!(
        run(
            vec![],
            serde_json::json!([
                add(vec![member(0, "alice"), member(1, "bob")]),
                remove("display co \"ali\"".into())
            ])
        ),
        ["1:bob"]
    );
    let prefix = &id(0)[..30];
    assert_eq!(
        run(
            vec![],
            serde_json::json!([
                add(vec![member(0, "a")]),
                remove(format!("value sw \"{prefix}\""))
            ])
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        run(
            vec![member(0, "a")],
            serde_json::json!([
                add(vec![member(1, "b")]),
                remove(format!("value ne \"{}\"", id(0)))
            ])
        ),
        ["0:a"]
    );
    assert_eq!(
        run(
            vec![member(0, "a")],
            serde_json::json!([{"op": "remove", "path": "members"},
            add(vec![member(2, "c")]), remove("type eq \"User\"".into())])
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        run(
            vec![member(1, "alice")],
            serde_json::json!([
                remove(format!("value eq \"{}\"", id(1))),
                add(vec![member(1, "alice2")]),
                remove("display eq \"alice\"".into())
            ])
        ),
        ["1:alice2"]
    );
    // A stored member re-added without a display keeps its own, and the filter sees it.
    assert_eq!(
        run(
            vec![member(0, "keep"), member(1, "go")],
            serde_json::json!([
                add(vec![serde_json::json!({"value": id(0)})]),
                remove("display eq \"keep\"".into())
            ])
        ),
        ["1:go"]
    );
    assert_clean(&f.store, &f.rt);
}

/// Member filters other than `value eq` read every member, on the writer all tenants share:
/// one request's may read at most `MEMBER_FILTER_READS` members in all, and a request past
/// that is refused whole (400 tooMany) without a change.
#[test]
fn member_filters_that_read_every_member_are_bounded_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let users = f.users(101);
    let members: Vec<serde_json::Value> = users
        .iter()
        .map(|id| serde_json::json!({"value": format_id(*id), "display": "Pat"}))
        .collect();
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "G", "members": members}),
        None,
    );
    let patch = |n: usize| {
        let ops: Vec<serde_json::Value> = (0..n)
            .map(|_| serde_json::json!({"op": "remove", "path": "members[display co \"zz\"]"}))
            .collect();
        f.try_patch(Kind::Group, g, serde_json::Value::Array(ops))
    };
    // 990 filters × 101 members: within the bound; they match no one.
    assert!(patch(990).is_ok());
    // 1,000 × 101 is past it.
    let e = crate::scim::error::ScimError::from(patch(1000).unwrap_err());
    assert_eq!(e.status, 400);
    assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::TooMany));
    assert!(e.detail.contains("members[value eq"), "{}", e.detail);
    // Members the request itself added count as read too: an empty group given 101
    // members and then 999 filters is past the bound (100,899 reads), whole.
    let empty = f.create(Kind::Group, serde_json::json!({"displayName": "E"}), None);
    let mut ops = vec![serde_json::json!({"op": "add", "path": "members", "value": members})];
    ops.extend(
        (0..999).map(|_| serde_json::json!({"op": "remove", "path": "members[display co \"zz\"]"})),
    );
    let r = f.try_patch(Kind::Group, empty, serde_json::Value::Array(ops));
    let e = crate::scim::error::ScimError::from(r.unwrap_err());
    assert_eq!(e.scim_type, Some(crate::scim::error::ScimType::TooMany));
    let kept =
        f.rt.block_on(f.store.get("t".into(), Kind::Group, format_id(empty), true));
    assert_eq!(kept.unwrap().refs.map(|r| r.len()), Some(0));
    // And a filter that matches removes, as before.
    f.patch(
        Kind::Group,
        g,
        serde_json::json!([{"op": "remove", "path": "members[display co \"pa\"]"}]),
    );
    let left =
        f.rt.block_on(f.store.get("t".into(), Kind::Group, format_id(g), true))
            .unwrap();
    assert_eq!(left.refs.map(|r| r.len()), Some(0));
}

/// A member's display that a request changes is in the feed, once per request and beside
/// the group's other changes, however the request changes it (an add with a new display, a
/// remove and re-add, a PUT), and only for members there before and after.
#[test]
fn a_changed_member_display_is_one_update_event_of_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let u = f.users(2);
    let id = |i: usize| format_id(u[i]);
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "G", "members": [{"value": id(0), "display": "D1"}]}),
        None,
    );
    let last = || {
        f.rt.block_on(f.store.events("t".into(), 0, 1000, Retention::default()))
            .unwrap()
            .last
    };
    let since = |after: u64| -> Vec<(String, Vec<String>, Option<String>)> {
        (f.events_after(after).into_iter())
            .map(|e| (e.kind, e.attributes, e.member_id))
            .collect()
    };
    let relabeled = |attrs: &[&str]| {
        vec![(
            "group.updated".to_string(),
            attrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            None,
        )]
    };
    // Removed and added back with another display, by filter or by Entra's value list.
    for (ops, shown) in [
        (
            serde_json::json!([
                {"op": "remove", "path": format!("members[value eq \"{}\"]", id(0))},
                {"op": "add", "path": "members", "value": [{"value": id(0), "display": "D2"}]}]),
            Some("D2"),
        ),
        (
            serde_json::json!([
                {"op": "Remove", "path": "members", "value": [{"value": id(0)}]},
                {"op": "Add", "path": "members", "value": [{"value": id(0)}]}]),
            None,
        ),
    ] {
        let at = last();
        f.patch(Kind::Group, g, ops);
        assert_eq!(since(at), relabeled(&["members.display"]));
        let r =
            f.rt.block_on(f.store.get("t".into(), Kind::Group, format_id(g), true));
        let refs = r.unwrap().refs.unwrap();
        assert_eq!(refs[0].get("display").and_then(|d| d.as_str()), shown);
    }
    // A newcomer named twice with two displays joined: no update of anyone's display.
    let at = last();
    f.patch(
        Kind::Group,
        g,
        serde_json::json!([{"op": "add", "path": "members", "value": [
            {"value": id(1), "display": "A"}, {"value": id(1), "display": "B"}]}]),
    );
    let joined = vec![("group.member_added".to_string(), vec![], Some(id(1)))];
    assert_eq!(since(at), joined);
    // A PUT that renames the group and a member: one event names both.
    let at = last();
    let body = serde_json::json!({"displayName": "G2", "members": [
        {"value": id(0), "display": "D3"}, {"value": id(1), "display": "B"}]});
    f.replace_group(g, body);
    assert_eq!(since(at), relabeled(&["displayName", "members.display"]));
    assert_clean(&f.store, &f.rt);
}

#[test]
fn replacing_a_member_list_walks_it_in_batches_and_reports_only_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let users: Vec<u128> = f.users(13);
    let (old, new) = users.split_at(11);
    let member = |ids: &[u128]| -> Vec<serde_json::Value> {
        ids.iter()
            .map(|id| serde_json::json!({"value": format_id(*id)}))
            .collect()
    };
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "Big", "members": member(old)}),
        None,
    );
    let seq = || {
        let feed =
            f.rt.block_on(f.store.events("t".into(), 0, 1000, Retention::default()))
                .unwrap();
        assert_eq!(feed.events.last().map(|e| e.seq), Some(feed.last));
        feed.last
    };
    let since = |after: u64| -> Vec<(String, u128)> {
        (f.events_after(after).into_iter())
            .filter_map(|e| Some((e.kind, parse_id(&e.member_id?)?)))
            .collect()
    };
    let members = || -> Vec<u128> {
        let r =
            f.rt.block_on(f.store.get("t".into(), Kind::Group, format_id(g), true));
        let mut ids: Vec<u128> = (r.unwrap().refs.unwrap().iter())
            .map(|m| parse_id(m["value"].as_str().unwrap()).unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    let put = |list: Vec<serde_json::Value>| {
        let body = serde_json::json!({"displayName": "Big", "members": list});
        let input = crate::scim::resource::normalize(Kind::Group, &body).unwrap();
        let rt = Kind::Group.into();
        f.rt.block_on(f.store.replace(
            f.actor.clone(),
            rt,
            format_id(g),
            input,
            Conditions::default(),
        ))
        .unwrap();
    };
    // Three stay (across the walk's batches of four), eight go, two join.
    let keep = [old[0], old[4], old[10]];
    let before = seq();
    put(member(&[&keep[..], new].concat()));
    let mut want: Vec<(String, u128)> = (old.iter())
        .filter(|m| !keep.contains(m))
        .map(|m| ("group.member_removed".to_string(), *m))
        .collect();
    want.extend(new.iter().map(|m| ("group.member_added".to_string(), *m)));
    assert_eq!(since(before), want);
    let mut now: Vec<u128> = [&keep[..], new].concat();
    now.sort_unstable();
    assert_eq!(members(), now);
    // The same list again changes nothing; an empty one removes everyone.
    let before = seq();
    put(member(&now));
    assert_eq!(since(before), vec![]);
    put(Vec::new());
    let removed: Vec<(String, u128)> = (now.iter())
        .map(|m| ("group.member_removed".to_string(), *m))
        .collect();
    assert_eq!(since(before), removed);
    assert_eq!(members(), Vec::<u128>::new());
    assert_clean(&f.store, &f.rt);
}

#[test]
fn a_sort_by_last_modified_walks_its_index_in_the_order_a_full_sort_gives() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let ids = f.users(9);
    // Three change after all were created: time order is no longer creation order.
    for i in [4, 1, 7] {
        let ops = crate::scim::patch::parse_request(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "moved"}]}))
        .unwrap();
        let rt = Kind::User.into();
        f.rt.block_on(f.store.patch(
            f.actor.clone(),
            rt,
            format_id(ids[i]),
            ops,
            Conditions::default(),
        ))
        .unwrap();
    }
    let ascending: Vec<u128> = [0, 2, 3, 5, 6, 8, 4, 1, 7]
        .iter()
        .map(|&i| ids[i])
        .collect();
    for descending in [false, true] {
        let order = if descending {
            "descending"
        } else {
            "ascending"
        };
        let sort = SortSpec::parse(Kind::User, "meta.lastModified", Some(order)).unwrap();
        let mut want = ascending.clone();
        if descending {
            want.reverse();
        }
        assert_sorted_pages(&f, &sort, &want, &[1, 4]);
        assert_eq!(mark_walk(&f, &sort, 2, 9), want, "{order} by mark");
        // A filter every user meets makes it a sort of every match: the same order.
        let all = crate::scim::filter::parse_for(Kind::User, "userName pr").unwrap();
        let q = ListQuery {
            filter: Some(all),
            sort: Some(sort.clone()),
            start_index: 1,
            count: 100,
            ..ListQuery::default()
        };
        assert_eq!(
            user_page(&f.store, &f.rt, q).1,
            want,
            "{order} sorted in full"
        );
    }
}

/// Every `startIndex` page (one past the end too) of the users sorted by `sort`, for each
/// count, is its slice of `want` and counts every user.
fn assert_sorted_pages(f: &Fixture, sort: &SortSpec, want: &[u128], counts: &[u64]) {
    for start in 1..=want.len() as u64 + 2 {
        for &count in counts {
            let q = ListQuery {
                sort: Some(sort.clone()),
                start_index: start,
                count,
                ..ListQuery::default()
            };
            let (total, got, _) = user_page(&f.store, &f.rt, q);
            let slice: Vec<u128> = (want.iter().skip(start as usize - 1))
                .take(count as usize)
                .copied()
                .collect();
            assert_eq!(got, slice, "{sort:?} startIndex {start} count {count}");
            assert_eq!(total, want.len() as u64);
        }
    }
}

/// Every page of a sorted list by its marks; each page counts every match.
fn mark_walk(f: &Fixture, sort: &SortSpec, count: u64, total: u64) -> Vec<u128> {
    let mut ids = Vec::new();
    let mut resume = None;
    loop {
        let q = ListQuery {
            sort: Some(sort.clone()),
            count,
            resume: resume.take(),
            ..ListQuery::default()
        };
        let page =
            f.rt.block_on(f.store.list("t".into(), Kind::User.into(), q))
                .unwrap();
        assert_eq!(page.total, total);
        assert!(page.items.len() as u64 <= count);
        ids.extend(page.items.iter().map(|r| parse_id(&r.id).unwrap()));
        match page.next_mark {
            Some(m) => resume = Some(m),
            None => return ids,
        }
        assert!(ids.len() as u64 <= total, "the walk ends");
    }
}

#[test]
fn plan_cursor_pages_read_a_bounded_number_of_users_and_miss_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let mut inactive = Vec::new();
    for i in 0..12 {
        let body = serde_json::json!({"userName": format!("u{i}"), "active": i % 6 != 5});
        let id = f.create(Kind::User, body, None);
        if i % 6 == 5 {
            inactive.push(format_id(id));
        }
    }
    let Fixture { store, rt, .. } = f;
    let rules = Arc::new(plan::PlanRules {
        name: "p".into(),
        test_threshold: 0,
        seats: None,
        on_seat_limit: plan::SeatPolicy::Reject,
        existing_members: Vec::new(),
        existing_shown: Default::default(),
    });
    let mut cursor = PlanCursor::Start;
    let (mut seen, mut pages, mut empty) = (Vec::new(), 0, 0);
    loop {
        let page = rt
            .block_on(store.plan_members(
                "t".into(),
                rules.clone(),
                Some(plan::Status::Deactivated),
                PlanFrom::After(cursor.clone()),
                10,
            ))
            .unwrap();
        assert_eq!(page.total, 2);
        pages += 1;
        empty += usize::from(page.entries.is_empty());
        seen.extend(page.entries.into_iter().map(|e| e.id.unwrap()));
        match page.next {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(seen, inactive);
    // 12 users read 4 at a time: three pages, one of them without a match.
    assert_eq!((pages, empty), (3, 1));
}

/// A create-only value put back is what the plan counts: the counters follow what is
/// stored, not what the IdP asked for (the configuration refuses `active` as
/// create-only, but the store must not depend on that).
#[test]
fn the_plan_counts_the_body_with_create_only_values_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&dir.path().join("s.redb"));
    f.actor.create_only = Arc::new(vec!["active".into()]);
    let ids = f.users(2);
    let ops = crate::scim::patch::parse_request(&serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]}))
    .unwrap();
    let (r, _) =
        f.rt.block_on(f.store.patch(
            f.actor.clone(),
            Kind::User.into(),
            format_id(ids[0]),
            ops,
            Conditions::default(),
        ))
        .unwrap();
    assert_ne!(r.body.get("active"), Some(&serde_json::Value::Bool(false)));
    assert_clean(&f.store, &f.rt);
}

#[test]
fn verify_names_each_kind_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let make = |kind: Kind, body: serde_json::Value| f.create(kind, body, None);
    let ann = make(
        Kind::User,
        serde_json::json!({"userName": "Ann@x", "externalId": "e1",
            "emails": [{"value": "ann@x"}]}),
    );
    let bob = make(Kind::User, serde_json::json!({"userName": "bob@x"}));
    let g = make(
        Kind::Group,
        serde_json::json!({"displayName": "Ops", "members": [{"value": format_id(ann)}]}),
    );
    let Fixture { store, rt, .. } = f;
    assert_clean(&store, &rt);
    drop(store);
    let db = raw(&path);
    let (user, group) = (Kind::User.code(), Kind::Group.code());
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(tables::USERNAME_USERID).unwrap();
        t.remove(("t", "ann@x")).unwrap();
        t.insert(("t", "ghost"), 42).unwrap();
        let mut t = w.open_multimap_table(tables::EMAIL_USERID).unwrap();
        t.insert(("t", "zed@x"), bob).unwrap();
        let mut t = w.open_multimap_table(tables::EXTERNALID_ID).unwrap();
        t.remove(("t", user, "e1"), ann).unwrap();
        let mut t = w.open_multimap_table(tables::DISPLAYNAME_ID).unwrap();
        t.insert(("t", group, "ghosts"), 7).unwrap();
        let mut t = w.open_table(tables::MEMBERID_GROUPID).unwrap();
        t.remove(("t", ann, g)).unwrap();
        t.insert(("t", bob, g), ()).unwrap();
        let mut t = w.open_table(tables::RANKS).unwrap();
        t.insert(("t", user, 0, 5), 3).unwrap();
        let (lo, _) = ranks::id_range(3, (bob >> 80) as u64);
        assert_eq!(lo >> 80, bob >> 80);
        t.insert(("t", user, 3, (bob >> 80) as u64), 9).unwrap();
        let mut t = w.open_table(tables::COUNTS).unwrap();
        t.insert(("t", user), 99).unwrap();
        let mut t = w.open_table(tables::MODIFIED_ID).unwrap();
        let stamp = redb::ReadableTable::iter(&t)
            .unwrap()
            .find_map(|e| {
                let (_, _, stamp, id) = e.unwrap().0.value();
                (id == bob).then_some(stamp)
            })
            .unwrap();
        t.remove(("t", user, stamp, bob)).unwrap();
        t.insert(("t", group, 5, 7), ()).unwrap();
    }
    w.commit().unwrap();
    drop(db);
    let store = Store::open(&path, 1 << 20).unwrap();
    let found = rt.block_on(store.verify(HashMap::new())).unwrap();
    let text = found.join("\n");
    for want in [
        "userName index: missing (\"t\", \"ann@x\"".to_string(),
        "userName index: stale (\"t\", \"ghost\", 42)".to_string(),
        format!("email index: stale (\"t\", \"zed@x\", {bob})"),
        format!("externalId index: missing (\"t\", {user}, \"e1\", {ann})"),
        format!("displayName index: stale (\"t\", {group}, \"ghosts\", 7)"),
        format!("membership (group → member vs member → group): missing (\"t\", {g}, {ann})"),
        format!("membership (group → member vs member → group): stale (\"t\", {g}, {bob})"),
        format!("position counts: stale (\"t\", {user}, 0, 5) (3)"),
        "holds Some(9), not 1".to_string(),
        format!("t: counter {user} is 99 but there are 2"),
        format!("lastModified index: missing (\"t\", {user}, "),
        format!("lastModified index: stale (\"t\", {group}, 5, 7)"),
    ] {
        assert!(text.contains(&want), "{want} not in:\n{text}");
    }
    assert_eq!(found.len(), 12, "{text}");
}

#[test]
fn ids_round_trip_and_anything_else_is_not_an_id() {
    let id = new_id();
    assert_eq!(parse_id(&format_id(id)), Some(id));
    assert!(new_id() > id, "ids are ordered by creation");
    assert_eq!(parse_id("010101001010101011001010101011"), None);
    assert_eq!(parse_id("../etc/passwd"), None);
}

/// A page of groups keeps the snapshot it was read in, and their members streamed from it
/// are those of the versions listed, whatever was committed between.
#[test]
fn members_streamed_for_a_list_page_are_those_of_the_listed_version() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let users = f.users(2);
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "g", "members": [{"value": format_id(users[0])}]}),
        None,
    );
    let q = ListQuery {
        count: 10,
        start_index: 1,
        ..ListQuery::default()
    };
    let page = (f.rt)
        .block_on(f.store.list("t".into(), Kind::Group.into(), q))
        .unwrap();
    assert_eq!(page.items[0].version, 1);
    f.patch(
        Kind::Group,
        g,
        serde_json::json!([{"op": "add", "path": "members",
                            "value": [{"value": format_id(users[1])}]}]),
    );
    let stall = std::time::Duration::from_secs(5);
    let members = |snapshot| {
        f.rt.block_on(async {
            let mut rx = f.store.member_batches("t".into(), g, stall, snapshot);
            let mut ids = Vec::new();
            while let Some(MemberBatch::Members(b)) = rx.recv().await {
                ids.extend(b.into_iter().map(|(m, _, _)| m));
            }
            ids
        })
    };
    assert_eq!(members(page.snapshot), [users[0]], "the listed version's");
    assert_eq!(members(None), users, "the latest");
}

/// A member stream nobody reads holds no turn of its tenant's share of the read threads
/// while it waits (it takes one for each batch it reads): more stalled streams than the
/// share all start, and the tenant's next read is not kept waiting. Past the stall time
/// the stalled streams are cut short.
#[test]
fn stalled_member_streams_hold_no_share_of_the_read_threads() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let users = f.users(60);
    let members: Vec<_> = users
        .iter()
        .map(|u| serde_json::json!({"value": format_id(*u)}))
        .collect();
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "g", "members": members}),
        None,
    );
    // Longer than the waits below: with streams that held their turns while stalled, the
    // streams past the share would start, and the next one run, only once it had passed.
    // The margin between the two is for a loaded machine.
    let stall = std::time::Duration::from_secs(10);
    let ready = std::time::Duration::from_secs(7);
    f.rt.block_on(async {
        let mut streams: Vec<_> = (0..TENANT_READS * 2)
            .map(|_| f.store.member_batches("t".into(), g, stall, None))
            .collect();
        // Nobody reads: each producer fills its queue (4 batches of 4) and waits.
        let mut started = vec![false; streams.len()];
        let deadline = std::time::Instant::now() + ready;
        while started.iter().any(|s| !s) && std::time::Instant::now() < deadline {
            for (i, rx) in streams.iter_mut().enumerate() {
                started[i] |= !started[i] && rx.try_recv().is_ok();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            started.iter().all(|s| *s),
            "every stream started: {started:?}"
        );
        // The same tenant's next stream runs to its end meanwhile: within the same `ready`
        // of the stalled streams' start, so before any of them has stalled long enough to end.
        let mut next = f.store.member_batches("t".into(), g, stall, None);
        let mut n = 0;
        let whole = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), async {
            while let Some(m) = next.recv().await {
                match m {
                    MemberBatch::Members(b) => n += b.len(),
                    MemberBatch::End => return true,
                    MemberBatch::Head(_) | MemberBatch::Failed(_) => {
                        panic!("member_batches sends no head")
                    }
                }
            }
            false
        })
        .await;
        assert!(matches!(whole, Ok(true)) && n == 60, "{whole:?} {n}");
        // Past the stall time the stalled producers give up.
        tokio::time::sleep(stall + std::time::Duration::from_millis(500)).await;
        for rx in streams.iter_mut() {
            let mut n = 4; // the first batch, taken above
            let mut ended = false;
            while let Some(m) = rx.recv().await {
                match m {
                    MemberBatch::Members(b) => n += b.len(),
                    MemberBatch::End => ended = true,
                    MemberBatch::Head(_) | MemberBatch::Failed(_) => {
                        panic!("member_batches sends no head")
                    }
                }
            }
            assert!(!ended && n < 60, "a stalled stream is cut short: {n}");
        }
    });
}

/// The feed past retention is removed in batches, so most appends write nothing at its far
/// end; the table never holds more than a batch beyond retention, and reads show exactly
/// what retention keeps whatever is still stored.
#[test]
fn events_past_retention_are_trimmed_in_batches_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&dir.path().join("db.redb"));
    f.actor.retention = Retention {
        max_count: 10,
        max_age_secs: None,
    };
    let stored = |f: &Fixture| {
        f.store
            .read_now(|r| {
                let t = r.txn().open_table(tables::EVENTS)?;
                Ok(Ok(t.range(("t", 0u64)..=("t", u64::MAX))?.count()))
            })
            .unwrap()
    };
    let mut most = 0;
    for i in 0..200 {
        f.create(
            Kind::User,
            serde_json::json!({"userName": format!("e{i}")}),
            None,
        );
        let n = stored(&f);
        most = most.max(n);
        assert!(n <= 10 + 64, "after {} events: {n} stored", i + 1);
        let feed =
            f.rt.block_on(f.store.events("t".into(), 0, 1000, f.actor.retention))
                .unwrap();
        let want = (i + 1).min(10);
        assert_eq!(feed.events.len(), want, "after {} events", i + 1);
        assert_eq!(feed.events.last().map(|e| e.seq), Some(i as u64 + 1));
    }
    // Batches: more than retention was stored at times, so trims were not one per append.
    assert!(most > 10 + 1, "{most}");
}

/// Entries per tenant in every table (a multimap's values counted one by one).
fn entries_by_tenant(store: &Store) -> HashMap<(&'static str, String), usize> {
    use redb::{ReadableMultimapTable, ReadableTable};
    store
        .read_now(|r| {
            let txn = r.txn();
            let mut all = HashMap::new();
            macro_rules! tally {
                ($def:expr, $name:literal, |$k:ident| $tenant:expr) => {
                    for e in txn.open_table($def)?.iter()? {
                        let ($k, _) = e?;
                        let $k = $k.value();
                        *all.entry(($name, $tenant.to_string())).or_insert(0) += 1;
                    }
                };
            }
            macro_rules! tally_multi {
                ($def:expr, $name:literal) => {
                    for e in txn.open_multimap_table($def)?.iter()? {
                        let (k, values) = e?;
                        *all.entry(($name, k.value().0.to_string())).or_insert(0) += values.count();
                    }
                };
            }
            tally!(tables::RESOURCES, "resources", |k| k.0);
            tally!(tables::COUNTS, "counts", |k| k.0);
            tally!(tables::USERNAME_USERID, "usernames", |k| k.0);
            tally!(tables::GROUPID_MEMBERID, "members", |k| k.0);
            tally!(tables::MEMBERID_GROUPID, "member_of", |k| k.0);
            tally!(tables::MEMBER_DISPLAY, "member_displays", |k| k.0);
            tally!(tables::MODIFIED_ID, "modified", |k| k.0);
            tally!(tables::RANKS, "ranks", |k| k.0);
            tally!(tables::EVENTS, "events", |k| k.0);
            tally!(tables::EVENT_SEQ, "event_seq", |k| k);
            tally!(tables::OVERFLOW_USERID, "overflow", |k| k.0);
            tally!(tables::UNIQUE_ID, "unique", |k| k.0);
            tally_multi!(tables::EXTERNALID_ID, "external_ids");
            tally_multi!(tables::EMAIL_USERID, "emails");
            tally_multi!(tables::DISPLAYNAME_ID, "display_names");
            Ok(Ok(all))
        })
        .unwrap()
}

/// `scimd tenant purge`: every entry of one tenant goes, in as many commits as its size
/// needs, and nothing of the tenants whose names sort beside it.
#[test]
fn purging_a_tenant_takes_out_all_of_it_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&dir.path().join("s.redb"));
    for tenant in ["s", "t", "t-2", "tt"] {
        f.actor.tenant = tenant.into();
        let ids: Vec<u128> = (0..12)
            .map(|i| {
                let body = serde_json::json!({"userName": format!("u{i}"),
                    "externalId": format!("e{i}"), "active": i % 3 != 0,
                    "emails": [{"value": format!("u{i}@x"), "type": "work"}]});
                f.create(Kind::User, body, None)
            })
            .collect();
        let members: Vec<serde_json::Value> = ids[..5]
            .iter()
            .map(|id| serde_json::json!({"value": format_id(*id), "display": "a member"}))
            .collect();
        f.create(
            Kind::Group,
            serde_json::json!({"displayName": "G", "externalId": "g", "members": members}),
            None,
        );
        // The plan settings as applied, which a purge takes out with the rest.
        let mut with_plan = f.actor.clone();
        with_plan.plan = Some(Arc::new(plan::PlanRules {
            name: "p".into(),
            test_threshold: 3,
            seats: None,
            on_seat_limit: plan::SeatPolicy::Reject,
            existing_members: Vec::new(),
            existing_shown: Default::default(),
        }));
        f.rt.block_on(f.store.plan_applied(with_plan)).unwrap();
    }
    let recorded = |f: &Fixture, t: &str| {
        f.store
            .read_now(|r| {
                let meta = r.txn().open_table(tables::META)?;
                Ok(Ok(plan::Applied::read(&meta, t)?.is_some()))
            })
            .unwrap()
    };
    assert!(recorded(&f, "t") && recorded(&f, "tt"));
    let before = entries_by_tenant(&f.store);
    let of = |all: &HashMap<(&'static str, String), usize>, tenant: &str| -> usize {
        all.iter()
            .filter(|((table, t), _)| t == tenant && *table != "event_seq")
            .map(|(_, n)| n)
            .sum()
    };
    let t_entries = of(&before, "t");
    // Every kind of entry the writes made is there to be taken out.
    for table in [
        "resources",
        "counts",
        "usernames",
        "members",
        "member_of",
        "member_displays",
        "modified",
        "ranks",
        "events",
        "external_ids",
        "emails",
        "display_names",
    ] {
        assert!(before.contains_key(&(table, "t".to_string())), "{table}");
    }
    let feed = |f: &Fixture| {
        f.rt.block_on(f.store.events("t".into(), 0, 1, Retention::default()))
            .unwrap()
    };
    let read_to = feed(&f).last;
    let taken =
        f.rt.block_on(f.store.purge_tenant_in("t".into(), 7))
            .unwrap();
    assert_eq!(taken as usize, t_entries);
    // One number passed without an event: a reader that had read to the end now stands
    // before the oldest event kept, which the feed answers with 410.
    let purged = feed(&f);
    assert_eq!((purged.last, purged.oldest), (read_to + 1, read_to + 2));
    assert!(purged.events.is_empty());
    let after = entries_by_tenant(&f.store);
    for (key, n) in &before {
        match (key.1.as_str(), key.0) {
            // The last event number stays, so that a tenant added again continues past it.
            ("t", "event_seq") => assert_eq!(after.get(key), Some(n)),
            ("t", _) => assert_eq!(after.get(key), None, "{key:?}"),
            _ => assert_eq!(after.get(key), Some(n), "{key:?}"),
        }
    }
    assert_eq!(
        f.rt.block_on(f.store.stored_tenants()).unwrap(),
        ["s", "t-2", "tt"]
    );
    assert!(!recorded(&f, "t") && recorded(&f, "t-2") && recorded(&f, "tt"));
    assert_clean(&f.store, &f.rt);
    // Nothing left: a second purge takes nothing.
    assert_eq!(f.rt.block_on(f.store.purge_tenant("t".into())).unwrap(), 0);
}

#[test]
fn an_existing_empty_file_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scimd.redb");
    std::fs::File::create(&path).unwrap();
    for open in [Store::open, Store::open_unconverted] {
        match open(&path, 1 << 20) {
            Err(StoreError::Empty { path: p }) => assert!(p.ends_with("scimd.redb")),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("an empty file must not open as a new database"),
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
    // Nor a file of zero bytes only (a first start that ran out of disk space sets the
    // size and writes nothing); one byte that is not zero makes it a damaged database.
    std::fs::write(&path, vec![0u8; 73_728]).unwrap();
    match Store::open(&path, 1 << 20) {
        Err(StoreError::Empty { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("zeros must not open as a database"),
    }
    let mut bytes = vec![0u8; 73_728];
    bytes[70_000] = 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        Store::open(&path, 1 << 20),
        Err(StoreError::Damaged { .. })
    ));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 73_728);
    // A missing file is still a new database.
    std::fs::remove_file(&path).unwrap();
    Store::open(&path, 1 << 20).unwrap().close();
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
}

#[test]
fn a_first_start_on_a_full_disk_leaves_no_file_and_never_removes_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scimd.redb");
    let full = backend::Faults::default();
    full.set(Some(backend::Fault::DiskFull));
    match Store::open_faulted(&path, full.clone()) {
        Err(StoreError::Open { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a new database cannot be made on a full disk"),
    }
    // Left, the file would be refused by every later start as damaged or empty.
    assert!(!path.exists(), "the file this start made is removed");
    // The next start, with room again, makes the database.
    let f = Fixture::open(&path);
    let id = f.create(Kind::User, serde_json::json!({"userName": "kept"}), None);
    f.store.close();
    // A start that fails on a file it did not make leaves it alone.
    let size = std::fs::metadata(&path).unwrap().len();
    for fault in [backend::Fault::DiskFull, backend::Fault::WriteFails] {
        full.set(Some(fault));
        match Store::open_faulted(&path, full.clone()) {
            Err(StoreError::Open { .. }) => {}
            Err(e) => panic!("{fault:?}: wrong error: {e}"),
            Ok(_) => panic!("{fault:?}: opened"),
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "{fault:?}");
    }
    let f = Fixture::open(&path);
    assert_eq!(f.find(Kind::User, "userName eq \"kept\""), [format_id(id)]);
    f.store.close();
}

#[test]
fn a_backup_without_room_beside_the_database_is_refused_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("scimd.redb"), 1 << 20).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let to = dir.path().join("backup-1.redb");
    // The switch reports no free bytes on the database's disk.
    store.faults().set(Some(backend::Fault::NoRoomToGrow));
    let e = rt.block_on(store.backup(to.clone())).unwrap_err();
    assert!(e.contains("not enough room for the copy"), "{e}");
    assert!(e.contains("twice the size of"), "{e}");
    assert!(e.contains("0.0 MiB are free"), "{e}");
    assert!(!to.exists() && !to.with_extension("partial").exists());
    store.faults().set(None);
    assert!(rt.block_on(store.backup(to.clone())).unwrap() > 0);
    assert!(to.exists());
    store.close();
}

/// Overwrite page `page` (4 KiB) of the file at `path` with bytes from `seed`.
fn spoil_page(path: &Path, page: u64, seed: u64) {
    use std::io::{Seek, Write};
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            // xorshift: any bytes will do, the same each run.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(std::io::SeekFrom::Start(page * 4096)).unwrap();
    f.write_all(&bytes).unwrap();
}

/// Every page of a file of 300 users and a group holding them all, overwritten one at a
/// time: redb's own check says which ones matter (the rest are free). Damaged under the
/// running store, the scrub finds most of them; each it misses (pages redb read at open and
/// keeps in memory) is found by the next start, which refuses the file saying why.
/// A closed file at `path` of 300 users with an email each and a group holding them all.
fn three_hundred_users(path: &Path) {
    let f = Fixture::open(path);
    let ids: Vec<u128> = (0..300)
        .map(|i| f.user_with_email(&format!("user{i}@x"), &format!("u{i}@mail.x")))
        .collect();
    let members: Vec<_> = ids
        .iter()
        .map(|id| serde_json::json!({"value": format_id(*id)}))
        .collect();
    f.create(
        Kind::Group,
        serde_json::json!({"displayName": "All", "members": members}),
        None,
    );
    let Fixture { store, .. } = f;
    // 300 records, 300 in each user index, 300 memberships both ways, events...
    match scrub::pass(&Arc::downgrade(&store.shared), 0) {
        Ok(n) => assert!(n > 2000, "{n} entries"),
        Err(e) => panic!("a sound file: {e:?}"),
    }
    store.close();
}

/// Every copy of `user7@x` (`three_hundred_users`) in a file's `bytes` changed to
/// `usez7@x`: still UTF-8 and JSON, found only by the pages' checksums.
fn a_letter_changed(bytes: &mut [u8]) {
    let at: Vec<usize> = (0..bytes.len() - 7)
        .filter(|&i| &bytes[i..i + 7] == b"user7@x")
        .collect();
    assert!(!at.is_empty());
    at.iter().for_each(|&i| bytes[i + 3] = b'z');
}

/// A record that does not decode, written through redb (its page checksums sound): what
/// a backup made before the copy checked records holds. The scrub calls it damage, a copy
/// refuses it, and a restore refuses a backup holding it.
/// What the store records as damage, waited for (up to 10 s) while the pass a read or
/// write started runs; fails the test if nothing is recorded.
fn damage_recorded(store: &Store) -> String {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store.writes_refused() {
            Some(Refused::Damaged(what)) => return what,
            other if std::time::Instant::now() >= until => panic!("no damage recorded: {other:?}"),
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// `f` reopened with the stored record of `id` spoiled where `text` first appears in it:
/// three bytes that are no longer UTF-8, inside a string, the JSON around them intact.
fn spoil_record(f: Fixture, path: &Path, kind: Kind, id: u128, text: &str) -> Fixture {
    f.reopen_after(path, |w| {
        let mut res = w.open_table(tables::RESOURCES).unwrap();
        let key = ("t", kind.code(), id);
        let mut rec = redb::ReadableTable::get(&res, key)
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let at = rec
            .windows(text.len())
            .position(|w| w == text.as_bytes())
            .unwrap();
        rec[at..at + 3].copy_from_slice(&[0xde, 0xad, 0xbe]);
        res.insert(key, rec.as_slice()).unwrap();
    })
}

/// A tenant "t" whose users have a unique extension attribute `code`, and a create of a
/// user with one (its id).
const UNIQUE_EXT: &str = "urn:ietf:params:scim:schemas:extension:t:2.0:User";

fn unique_code_users() -> crate::scim::schema::Rt {
    let mut cfg = crate::config::Config::default();
    let tenant = crate::config::TenantConfig {
        extensions: vec![
            serde_json::from_value(serde_json::json!({"urn": UNIQUE_EXT, "name": "T",
                "attributes": [{"name": "code", "uniqueness": "server"}]}))
            .unwrap(),
        ],
        ..Default::default()
    };
    cfg.tenants.insert("t".into(), tenant);
    crate::http::Runtime::new(cfg).rt(Some("t"), Kind::User)
}

fn create_coded(
    f: &Fixture,
    urt: crate::scim::schema::Rt,
    name: &str,
    code: &str,
) -> Result<u128, Error> {
    let body = serde_json::json!({"userName": name, UNIQUE_EXT: {"code": code}});
    let input = crate::scim::resource::normalize(urt, &body).unwrap();
    f.rt.block_on(f.store.create_as(f.actor.clone(), urt, input, None))
        .map(|r| parse_id(&r.id).unwrap())
}

#[test]
fn a_record_that_does_not_decode_is_damage_to_the_scrub_a_copy_and_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let ann = f.create(Kind::User, serde_json::json!({"userName": "ann@x"}), None);
    let f = spoil_record(f, &path, Kind::User, ann, "ann");
    // A read that meets it is an error, not a user gone, and has the file checked at once:
    // writes are refused as soon as that pass has found it.
    let got =
        f.rt.block_on(f.store.get("t".into(), Kind::User, format_id(ann), false));
    assert!(matches!(got, Err(Error::Internal { .. })), "{got:?}");
    let what = damage_recorded(&f.store);
    assert!(what.contains("does not parse"), "{what}");
    match scrub::pass(&Arc::downgrade(&f.store.shared), 0) {
        Err(scrub::Stop::Damaged(what)) => {
            assert!(what.contains("a stored record does not parse"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    let out = dir.path().join("out.redb");
    let db = f.store.shared.current().unwrap();
    match backup::copy_all(&db.begin_read().unwrap(), &out) {
        Err(e @ StoreError::CopyDamaged { .. }) => {
            let e = e.to_string();
            assert!(
                e.contains("nothing was copied") && e.contains("does not parse"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.exists() && !out.with_extension("partial").exists());
    drop(db);
    let Fixture { store, .. } = f;
    store.close();
    let target = dir.path().join("target.redb");
    let types = std::collections::HashMap::new();
    match backup::restore(&path, &target, &types) {
        Err(backup::NotRestored::Failed(e)) => assert!(
            e.contains("the backup file is damaged: a stored record does not parse"),
            "{e}"
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("restored"),
    }
    assert!(!target.exists());
}

#[test]
fn a_write_to_a_record_that_does_not_decode_is_an_error_and_has_the_file_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let ann = f.create(Kind::User, serde_json::json!({"userName": "ann@x"}), None);
    let f = spoil_record(f, &path, Kind::User, ann, "ann");
    // Not 404: an IdP told the user is gone would create it again, and its POST would meet
    // the name still held.
    let got = f.try_patch(
        Kind::User,
        ann,
        serde_json::json!([{"op": "replace", "path": "title", "value": "x"}]),
    );
    assert!(matches!(got, Err(Error::Internal { .. })), "{got:?}");
    let what = damage_recorded(&f.store);
    assert!(what.contains("does not parse"), "{what}");
    let got = f.rt.block_on(f.store.delete(
        f.actor.clone(),
        Kind::User.into(),
        format_id(ann),
        Conditions::default(),
    ));
    assert!(matches!(got, Err(Error::Damaged)), "{got:?}");
    // Nor does a scan that reads the damaged value pass over it as a user the filter does
    // not match: a scan of every record, and one of an index's candidates.
    for text in ["userName co \"x\"", "userName sw \"a\" and title pr"] {
        let q = ListQuery {
            filter: Some(crate::scim::filter::parse_for(Kind::User, text).unwrap()),
            count: 10,
            start_index: 1,
            ..ListQuery::default()
        };
        let got =
            f.rt.block_on(f.store.list("t".into(), Kind::User.into(), q));
        assert!(
            matches!(got, Err(Error::Internal { .. })),
            "{text}: {:?}",
            got.map(|p| p.items.len())
        );
    }
}

#[test]
fn a_group_whose_record_does_not_decode_is_a_500_with_or_without_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let ann = f.create(Kind::User, serde_json::json!({"userName": "ann@x"}), None);
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "Sales", "members": [{"value": format_id(ann)}]}),
        None,
    );
    let f = spoil_record(f, &path, Kind::Group, g, "Sales");
    let stall = std::time::Duration::from_secs(5);
    let streamed = f.rt.block_on(f.store.group_with_member_batches(
        "t".into(),
        &format_id(g),
        stall,
    ));
    assert!(
        matches!(streamed, Err(Error::Internal { .. })),
        "{:?}",
        streamed.map(|(r, _)| r.id)
    );
    let head =
        f.rt.block_on(f.store.get("t".into(), Kind::Group, format_id(g), false));
    assert!(matches!(head, Err(Error::Internal { .. })), "{head:?}");
    // So is a read of a member, whose groups name it: not the user with a group unnamed.
    let member =
        f.rt.block_on(f.store.get("t".into(), Kind::User, format_id(ann), true));
    assert!(matches!(member, Err(Error::Internal { .. })), "{member:?}");
    // Every time: a name that could not be read is not remembered as none.
    let again =
        f.rt.block_on(f.store.get("t".into(), Kind::User, format_id(ann), true));
    assert!(matches!(again, Err(Error::Internal { .. })), "{again:?}");
}

/// A user's groups are named as the latest commit left them, though reads between commits
/// remember the names they read.
#[test]
fn a_users_groups_are_named_as_the_latest_commit_left_them() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let ann = f.create(Kind::User, serde_json::json!({"userName": "ann@x"}), None);
    let bob = f.create(Kind::User, serde_json::json!({"userName": "bob@x"}), None);
    let members = serde_json::json!([{"value": format_id(ann)}, {"value": format_id(bob)}]);
    let sales = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "Sales", "members": members}),
        None,
    );
    let ops = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "Ops", "members": [{"value": format_id(ann)}]}),
        None,
    );
    let names = |id: u128| {
        let r =
            f.rt.block_on(f.store.get("t".into(), Kind::User, format_id(id), true));
        let mut names: Vec<String> = r
            .unwrap()
            .refs
            .unwrap()
            .iter()
            .map(|g| g["display"].as_str().unwrap_or("unnamed").to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(ann), ["Ops", "Sales"]);
    assert_eq!(names(bob), ["Sales"]);
    assert_eq!(names(ann), ["Ops", "Sales"]);
    f.replace_group(
        sales,
        serde_json::json!({"displayName": "Marketing", "members": members}),
    );
    assert_eq!(names(bob), ["Marketing"]);
    assert_eq!(names(ann), ["Marketing", "Ops"]);
    f.replace_group(
        ops,
        serde_json::json!({"displayName": "Ops", "members": []}),
    );
    assert_eq!(names(ann), ["Marketing"]);
}

/// A failed read has the file read back at once, but not again and again: not for a while
/// after such a pass found nothing, nor once damage is found.
#[test]
fn failed_reads_do_not_have_the_file_read_back_over_and_over() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    three_hundred_users(&path);
    let store = Store::open(&path, 0).unwrap();
    store.suspect_damage();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.shared.cleared.lock().unwrap().is_none() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        store.shared.cleared.lock().unwrap().is_some(),
        "the first pass ran"
    );
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.shared.suspected.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    store.suspect_damage();
    assert!(
        !store.shared.suspected.load(Ordering::SeqCst),
        "none again so soon"
    );
    // Nor once damage is found, however long ago a pass found none.
    *store.shared.cleared.lock().unwrap() = None;
    *store.shared.damaged.lock().unwrap() = Some("found".into());
    store.suspect_damage();
    assert!(!store.shared.suspected.load(Ordering::SeqCst));
    store.close();
}

#[test]
fn damage_is_found_by_the_scrub_or_else_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    three_hundred_users(&path);
    let pages = std::fs::metadata(&path).unwrap().len() / 4096;
    let (mut live, mut scrubbed, mut at_start) = (0, 0, 0);
    let copy = dir.path().join("copy.redb");
    for page in 1..pages {
        std::fs::copy(&path, &copy).unwrap();
        spoil_page(&copy, page, page);
        if check_file(&copy).is_ok() {
            continue;
        }
        live += 1;
        // Damaged under the open store (whose open, in a debug build, reads every page),
        // with no cache of redb's own to answer from the page as it was.
        std::fs::copy(&path, &copy).unwrap();
        let store = Store::open(&copy, 0).unwrap();
        spoil_page(&copy, page, page);
        let found = scrub::pass(&Arc::downgrade(&store.shared), 0);
        store.close();
        if let Err(scrub::Stop::Damaged(what)) = &found {
            assert!(
                what.contains("restore the most recent good backup"),
                "{what}"
            );
            scrubbed += 1;
            continue;
        }
        assert!(found.is_ok(), "page {page}: {found:?}");
        // Closing may have rewritten the page (redb's own records): damage it again.
        std::fs::copy(&path, &copy).unwrap();
        spoil_page(&copy, page, page);
        match Store::open(&copy, 0) {
            Err(e @ StoreError::Damaged { .. }) => {
                assert!(e.to_string().contains("scimd restore --from FILE"), "{e}");
                at_start += 1;
            }
            Err(e) => panic!("page {page}: {e}"),
            Ok(store) => {
                let found = scrub::pass(&Arc::downgrade(&store.shared), 0);
                assert!(
                    matches!(found, Err(scrub::Stop::Damaged(_))),
                    "page {page} damaged and never found: {found:?}"
                );
                store.close();
                at_start += 1;
            }
        }
    }
    assert!(live > 50, "{live} pages in use");
    assert!(
        scrubbed * 10 >= live * 9,
        "{scrubbed} of {live} found while open"
    );
    assert_eq!(scrubbed + at_start, live);
}

/// A backup that meets a damaged page (redb panics on some) says the database is damaged and
/// leaves no partial copy behind.
#[test]
fn a_copy_that_meets_a_damaged_page_says_so_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    three_hundred_users(&path);
    let pages = std::fs::metadata(&path).unwrap().len() / 4096;
    let (copy, out) = (dir.path().join("copy.redb"), dir.path().join("out.redb"));
    let mut damaged = 0;
    for page in 1..pages {
        std::fs::copy(&path, &copy).unwrap();
        let store = Store::open(&copy, 0).unwrap();
        spoil_page(&copy, page, page);
        let db = store.shared.current().unwrap();
        let made = backup::copy_all(&db.begin_read().unwrap(), &out);
        drop(db);
        store.close();
        match made {
            Err(e @ StoreError::CopyDamaged { .. }) => {
                assert!(e.to_string().contains("nothing was copied"), "{e}");
                assert!(!out.exists(), "page {page}");
                damaged += 1;
            }
            Err(e) => panic!("page {page}: {e}"),
            Ok(_) => std::fs::remove_file(&out).unwrap(),
        }
        assert!(!out.with_extension("partial").exists(), "page {page}");
    }
    assert!(
        damaged > 10,
        "{damaged} of {pages} pages made the copy fail"
    );
}

/// At the daemon's start, writes wait for the first scrub: on a file damaged while scimd was
/// stopped, not one is acknowledged before the damage is found, however soon it comes.
#[test]
fn writes_wait_for_the_first_scrub_and_none_is_taken_on_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    three_hundred_users(&path);
    let copy = dir.path().join("copy.redb");
    // The fixture's runtime and actor, for stores opened with no cache of redb's own.
    let Fixture { rt, actor, .. } = Fixture::open(&dir.path().join("other.redb"));
    let write = |store: &Store, name: &str| {
        let body = serde_json::json!({"userName": name});
        let input = crate::scim::resource::normalize(Kind::User, &body).unwrap();
        rt.block_on(store.create_as(actor.clone(), Kind::User.into(), input, None))
            .map(|_| ())
    };
    // A sound file: the write goes through once the pass is done.
    let store = Store::open(&path, 0).unwrap();
    store.spawn_scrub(std::time::Duration::from_secs(3600));
    assert_eq!(write(&store, "sound@x"), Ok(()));
    store.close();
    // Damaged files, each written at once after the start: refused, every time the scrub
    // can see the page (the others are checked by the next start, as above).
    let mut refused = 0;
    let pages = std::fs::metadata(&path).unwrap().len() / 4096;
    for page in (1..pages).step_by(3) {
        std::fs::copy(&path, &copy).unwrap();
        let store = Store::open(&copy, 0).unwrap();
        spoil_page(&copy, page, page);
        store.spawn_scrub(std::time::Duration::from_secs(3600));
        let answer = write(&store, "late@x");
        let found = matches!(store.writes_refused(), Some(Refused::Damaged(_)));
        store.close();
        if found {
            assert_eq!(answer, Err(Error::Damaged), "page {page}");
            refused += 1;
        }
    }
    assert!(refused > 10, "{refused} damaged files refused");
    // Bytes changed inside a value, still UTF-8 and JSON (a letter of a name), read as sound
    // entries: only the pages' checksums tell, which the first pass checks too (redb would
    // find them at its next repair, after a crash, and refuse the file with every write
    // acknowledged since). Every copy of the name is changed, the live one among them.
    let mut bytes = std::fs::read(&path).unwrap();
    a_letter_changed(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open(&path, 0).unwrap();
    assert!(
        scrub::pass(&Arc::downgrade(&store.shared), 0).is_ok(),
        "reading the entries finds nothing"
    );
    store.spawn_scrub(std::time::Duration::from_secs(3600));
    assert_eq!(write(&store, "late@x"), Err(Error::Damaged));
    match store.writes_refused() {
        Some(Refused::Damaged(what)) => assert!(
            what.contains("checking the checksums of its pages")
                && what.contains("scimd restore --from FILE"),
            "{what}"
        ),
        other => panic!("{other:?}"),
    }
    store.close();
}

/// `emails.value sw` and `externalId sw` are planned from their index's range, each user
/// once, within the tenant; past the plan's bound they scan, with the same answers.
#[test]
fn email_and_external_id_prefixes_read_their_index_with_a_scans_answers() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    // Two emails each (one shared prefix twice over), externalIds in two cases, and another
    // tenant's users under the same values.
    let mut users = Vec::new();
    for i in 0..90usize {
        let body = serde_json::json!({
            "userName": format!("u{i}"),
            "externalId": format!("{}{i:02}", if i % 2 == 0 { "Ext" } else { "ext" }),
            "emails": [{"value": format!("Team{}.{i}@x", i % 3)}, {"value": format!("team{}.b{i}@y", i % 3)}],
        });
        users.push(f.create(Kind::User, body.clone(), None));
    }
    let other = Actor {
        tenant: "t2".into(),
        ..f.actor.clone()
    };
    for i in 0..5 {
        let input = crate::scim::resource::normalize(
            Kind::User,
            // Values the queries below would match in this tenant, and that sort just
            // after the matches in "t" (a walk that ran on would reach them).
            &serde_json::json!({"userName": format!("o{i}"), "externalId": format!("ext9o{i}"),
                "emails": [{"value": format!("team2.bo{i}@y")}]}),
        )
        .unwrap();
        f.rt.block_on(f.store.create(other.clone(), Kind::User.into(), input))
            .unwrap();
    }
    let planned = |text: &str| {
        let filter = crate::scim::filter::parse_for(Kind::User, text).unwrap();
        f.store
            .read_now(|r| Ok(Ok(super::query::plan(r, "t", Kind::User, &filter)?)))
            .unwrap()
    };
    let want = |pick: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..90)
            .filter(|&i| pick(i))
            .map(|i| format_id(users[i]))
            .collect()
    };
    for (text, pick, in_plan) in [
        // 30 users, each with two matching emails: counted once each.
        (
            r#"emails.value sw "TEAM1""#,
            &(|i: usize| i % 3 == 1) as &dyn Fn(usize) -> bool,
            Some(30),
        ),
        (r#"emails sw "team2.b""#, &|i: usize| i % 3 == 2, Some(30)),
        // The element filter's prefix names the candidates; the rest of it picks.
        (
            r#"emails[value sw "TEAM1"]"#,
            &|i: usize| i % 3 == 1,
            Some(30),
        ),
        (
            r#"emails[value sw "team1" and value ew "@y"]"#,
            &|i: usize| i % 3 == 1,
            Some(30),
        ),
        (
            r#"emails[value sw "team1.1" and value ew "@x"]"#,
            &|i: usize| i % 3 == 1 && (i == 1 || (10..20).contains(&i)),
            Some(5),
        ),
        // externalId is caseExact.
        (
            r#"externalId sw "Ext1""#,
            &|i: usize| i.is_multiple_of(2) && (10..20).contains(&i),
            Some(5),
        ),
        (r#"externalId sw "ext""#, &|i: usize| i % 2 == 1, Some(45)),
        // Past the plan's bound (64 in tests): scanned, with the same answers.
        (r#"emails.value sw "team""#, &|_: usize| true, None),
        (r#"externalId sw "e""#, &|i: usize| i % 2 == 1, Some(45)),
    ] {
        assert_eq!(planned(text).map(|ids| ids.len()), in_plan, "{text}");
        let mut found = f.find(Kind::User, text);
        let mut all = Vec::new();
        // `find` reads 10 a page: take every page.
        let mut start = 1;
        loop {
            let q = ListQuery {
                filter: Some(crate::scim::filter::parse_for(Kind::User, text).unwrap()),
                count: 100,
                start_index: start,
                ..ListQuery::default()
            };
            let page =
                f.rt.block_on(f.store.list("t".into(), Kind::User.into(), q))
                    .unwrap();
            all.extend(page.items.iter().map(|r| r.id.clone()));
            if page.items.is_empty() || all.len() as u64 >= page.total {
                assert_eq!(page.total as usize, all.len(), "{text}");
                break;
            }
            start += 100;
        }
        all.sort();
        found.sort();
        let mut want = want(pick);
        want.sort();
        assert_eq!(all, want, "{text}");
        assert!(found.iter().all(|id| want.contains(id)), "{text}");
    }
}

/// Past `PLANNED_MAX` (64 in unit tests) an index's ids are not collected: a conjunction
/// with a group's members walks the member index, others scan, and a lone exact condition
/// under a sort is evaluated, not taken as the whole tenant. The answers are the same.
#[test]
fn conditions_matching_more_than_a_plan_holds_are_walked_or_scanned_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    let users: Vec<u128> = (0..150)
        .map(|i| {
            let body = serde_json::json!({
                "userName": format!("{}{i:03}", if i < 140 { "a" } else { "b" }),
                "active": i % 3 != 0,
            });
            f.create(Kind::User, body, None)
        })
        .collect();
    let members: Vec<_> = users[..120]
        .iter()
        .map(|u| serde_json::json!({"value": format_id(*u)}))
        .collect();
    let g = f.create(
        Kind::Group,
        serde_json::json!({"displayName": "Many", "members": members}),
        None,
    );
    let list = |filter: &str, sort: bool| {
        let q = ListQuery {
            filter: Some(crate::scim::filter::parse_for(Kind::User, filter).unwrap()),
            sort: sort
                .then(|| crate::scim::sort::SortSpec::parse(Kind::User, "title", None).unwrap()),
            count: 1000,
            start_index: 1,
            ..ListQuery::default()
        };
        let page = (f.rt)
            .block_on(f.store.list("t".into(), Kind::User.into(), q))
            .unwrap();
        let mut ids: Vec<u128> = page
            .items
            .iter()
            .map(|r| parse_id(&r.id).unwrap())
            .collect();
        ids.sort_unstable();
        (page.total, ids)
    };
    let want = |pick: &dyn Fn(usize) -> bool| {
        let ids: Vec<u128> = (0..150).filter(|&i| pick(i)).map(|i| users[i]).collect();
        (ids.len() as u64, ids)
    };
    let gid = format_id(g);
    // Two groups within the bound whose union is not.
    let group_of = |name: &str, range: std::ops::Range<usize>| {
        let members: Vec<_> = users[range]
            .iter()
            .map(|u| serde_json::json!({"value": format_id(*u)}))
            .collect();
        let body = serde_json::json!({"displayName": name, "members": members});
        format_id(f.create(Kind::Group, body, None))
    };
    let (g2, g3) = (group_of("Low", 0..40), group_of("High", 100..140));
    let either = format!("groups.value eq \"{g2}\" or groups.value eq \"{g3}\"");
    let in_either = want(&|i| i < 40 || (100..140).contains(&i));
    assert_eq!(list(&either, false), in_either);
    let in_group_active = want(&|i| i < 120 && i % 3 != 0);
    for sort in [false, true] {
        let f1 = format!("groups.value eq \"{gid}\" and active eq true");
        assert_eq!(list(&f1, sort), in_group_active, "{f1} sorted {sort}");
        let f2 = format!("active eq true and groups[value eq \"{gid}\"]");
        assert_eq!(list(&f2, sort), in_group_active, "{f2} sorted {sort}");
        let f3 = "groups.display eq \"Many\" and active eq false";
        assert_eq!(list(f3, sort), want(&|i| i < 120 && i % 3 == 0), "{f3}");
        let f4 = "userName sw \"a\" and active eq true";
        assert_eq!(list(f4, sort), want(&|i| i < 140 && i % 3 != 0), "{f4}");
        // Alone and sorted: exact by the index only when the index was read.
        assert_eq!(list("userName sw \"a\"", sort), want(&|i| i < 140), "sw");
    }
}

/// Reads that may scan hold at most `TENANT_SCANS` of a tenant's turns: with that many
/// under way, a further scan waits while an index-served read of the tenant goes ahead.
#[test]
fn scans_leave_turns_for_the_tenants_index_served_reads() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    f.rt.block_on(async {
        let shared = &f.store.shared;
        let mut held = Vec::new();
        for _ in 0..TENANT_SCANS {
            held.push(shared.read_turn("t", true).await);
        }
        // Long enough to be sure of a wait, and of its absence on a loaded machine.
        let (wait, ready) = (
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(5),
        );
        let scan = tokio::time::timeout(wait, shared.read_turn("t", true)).await;
        assert!(scan.is_err(), "a scan past the tenant's scan turns waits");
        let read = tokio::time::timeout(ready, shared.read_turn("t", false)).await;
        assert!(read.is_ok(), "an index-served read does not");
        drop(held.pop());
        let scan = tokio::time::timeout(ready, shared.read_turn("t", true)).await;
        assert!(scan.is_ok(), "a scan's turn given back is taken");
    });
}

/// A list that waits for one of its tenant's turns as long as it may read is answered
/// `Busy` (503), not left queued behind the scans holding them; one that gets a turn in
/// time is answered.
#[test]
fn a_list_queued_behind_its_tenants_scans_past_its_time_is_answered_busy() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(&dir.path().join("s.redb"));
    f.create(
        Kind::User,
        serde_json::json!({"userName": "u", "title": "t"}),
        None,
    );
    // More than a plan holds in tests (64).
    for i in 0..70 {
        f.create(
            Kind::User,
            serde_json::json!({"userName": format!("x{i}"), "externalId": format!("e{i:02}")}),
            None,
        );
    }
    let query = || ListQuery {
        filter: Some(crate::scim::filter::parse_for(Kind::User, "title eq \"t\"").unwrap()),
        start_index: 1,
        count: 10,
        scan_limit: Some(std::time::Duration::from_millis(200)),
        ..ListQuery::default()
    };
    f.rt.block_on(async {
        let shared = &f.store.shared;
        let mut held = Vec::new();
        for _ in 0..TENANT_SCANS {
            held.push(shared.read_turn("t", true).await);
        }
        match f.store.list("t".into(), Kind::User.into(), query()).await {
            Err(e @ Error::Busy) => {
                let scim = crate::scim::error::ScimError::from(e);
                assert_eq!(scim.status, 503);
            }
            Err(e) => panic!("{e}"),
            Ok(p) => panic!(
                "answered {} matches while every scan turn was held",
                p.total
            ),
        }
        // A prefix its index serves goes ahead of the scans; one too broad to plan scans,
        // and waits for a scan turn as scans do.
        let prefix = |p: &str| ListQuery {
            filter: Some(
                crate::scim::filter::parse_for(Kind::User, &format!("externalId sw \"{p}\""))
                    .unwrap(),
            ),
            ..query()
        };
        let page = f
            .store
            .list("t".into(), Kind::User.into(), prefix("e7"))
            .await;
        assert_eq!(page.map(|p| p.total), Ok(0));
        let page = f
            .store
            .list("t".into(), Kind::User.into(), prefix("e6"))
            .await;
        assert_eq!(page.map(|p| p.total), Ok(10));
        let broad = f
            .store
            .list("t".into(), Kind::User.into(), prefix("e"))
            .await;
        assert!(
            matches!(broad, Err(Error::Busy)),
            "{:?}",
            broad.map(|p| p.total)
        );
        drop(held.pop());
        let page = f.store.list("t".into(), Kind::User.into(), query()).await;
        assert_eq!(page.map(|p| p.total), Ok(1));
        let broad = f
            .store
            .list("t".into(), Kind::User.into(), prefix("e"))
            .await;
        assert_eq!(broad.map(|p| p.total), Ok(70));
    });
}

/// `userName gt/ge/lt/le` read the userName index: the same users a comparison of folded
/// names picks (case and Unicode form aside), never another tenant's, every one counted.
#[test]
fn user_name_comparisons_are_index_ranges_with_the_filters_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&dir.path().join("s.redb"));
    let names = [
        "Alice",
        "bob",
        "BOBBY",
        "carol",
        "Émile",
        "e\u{301}va",
        "zed",
        "b",
    ];
    let ids: Vec<u128> = names
        .iter()
        .map(|n| f.create(Kind::User, serde_json::json!({"userName": n}), None))
        .collect();
    // Another tenant's users sort among these and must not be counted.
    f.actor.tenant = "u".into();
    for n in ["aaa", "bz", "zzz"] {
        f.create(Kind::User, serde_json::json!({"userName": n}), None);
    }
    f.actor.tenant = "t".into();
    for (op, v) in [
        ("gt", "b"),
        ("ge", "B"),
        ("lt", "CAROL"),
        ("le", "carol"),
        ("gt", "e"),
        ("lt", "a"),
        ("ge", "Émile"),
    ] {
        let filter = format!("userName {op} \"{v}\"");
        let fv = crate::scim::fold::fold(v);
        let mut want: Vec<String> = names
            .iter()
            .zip(&ids)
            .filter(|(n, _)| {
                let o = crate::scim::fold::fold(n).as_str().cmp(fv.as_str());
                match op {
                    "gt" => o.is_gt(),
                    "ge" => o.is_ge(),
                    "lt" => o.is_lt(),
                    _ => o.is_le(),
                }
            })
            .map(|(_, id)| format_id(*id))
            .collect();
        want.sort();
        let q = ListQuery {
            filter: Some(crate::scim::filter::parse_for(Kind::User, &filter).unwrap()),
            count: 100,
            start_index: 1,
            ..ListQuery::default()
        };
        assert!(crate::store::query::index_range(Kind::User, q.filter.as_ref()).is_some());
        let page = (f.rt)
            .block_on(f.store.list("t".into(), Kind::User.into(), q))
            .unwrap();
        let mut got: Vec<String> = page.items.into_iter().map(|r| r.id).collect();
        got.sort();
        assert_eq!(got, want, "{filter}");
        assert_eq!(page.total, want.len() as u64, "{filter}");
    }
}

/// A database file its owner may not write (`chmod 0400`, a copy made read-only) is
/// refused with the `chmod` that fixes it, not a `chown` its owner already did.
#[test]
fn a_read_only_database_file_is_told_to_be_given_its_mode_back() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scimd.redb");
    std::fs::write(&path, b"x").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let fix = super::denied_fix(&path);
    assert!(
        fix.contains("mode is 0400") && fix.contains(&format!("chmod 0600 {}", path.display())),
        "{fix}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fix = super::denied_fix(&path);
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    assert!(fix.contains(&format!("`chown -R {uid}:{gid} ")), "{fix}");
    assert!(fix.contains("`chown -R scimd:scimd "), "{fix}");
}

/// An entry an earlier build left in the unique-value index (the value went while its
/// extension was out of the configuration, or with a deleted user) refuses nothing: the
/// write it would have refused, with a 409 naming a user that no longer held the value or
/// no longer existed, takes it over. One its holder still has refuses as before.
#[test]
fn a_unique_entry_whose_resource_no_longer_holds_the_value_refuses_nothing() {
    const EXT: &str = UNIQUE_EXT;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let urt = unique_code_users();
    let create = |f: &Fixture, name: &str, code: &str| create_coded(f, urt, name, code);
    let kept = create(&f, "kept@x", "K1").unwrap();
    let dropped = create(&f, "dropped@x", "D1").unwrap();
    let f = f.reopen_after(&path, |w| {
        // As an earlier build left them: `dropped` rewritten without its value (a PUT while
        // the extension was out) and a user deleted with its entry kept.
        let mut res = w.open_table(tables::RESOURCES).unwrap();
        let key = ("t", Kind::User.code(), dropped);
        let mut rec: serde_json::Value = serde_json::from_slice(
            redb::ReadableTable::get(&res, key)
                .unwrap()
                .unwrap()
                .value(),
        )
        .unwrap();
        rec["body"].as_object_mut().unwrap().remove(EXT);
        res.insert(key, serde_json::to_vec(&rec).unwrap().as_slice())
            .unwrap();
        let mut unique = w.open_table(tables::UNIQUE_ID).unwrap();
        let attr = format!("{EXT}:code");
        unique
            .insert(("t", Kind::User.code(), attr.as_str(), "g1"), new_id())
            .unwrap();
    });
    let taken = |r: Result<u128, Error>| match r {
        Err(Error::ValueTaken { holder, .. }) => Some(holder),
        _ => None,
    };
    assert_eq!(taken(create(&f, "again@x", "k1")), Some(kept));
    let d = create(&f, "d@x", "D1").expect("a value its holder dropped is free");
    let g = create(&f, "g@x", "G1").expect("a value of a deleted user is free");
    // Taken over: the index names the new holders.
    assert_eq!(taken(create(&f, "d2@x", "d1")), Some(d));
    assert_eq!(taken(create(&f, "g2@x", "g1")), Some(g));
}

/// A holder whose record does not decode keeps its unique value: the value is not handed to
/// another resource for damage the scrub (started by that write) reports.
#[test]
fn a_unique_value_whose_holder_does_not_decode_stays_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let f = Fixture::open(&path);
    let urt = unique_code_users();
    let create = |f: &Fixture, name: &str, code: &str| create_coded(f, urt, name, code);
    let broken = create(&f, "broken@x", "B1").unwrap();
    let f = spoil_record(f, &path, Kind::User, broken, "broken");
    match create(&f, "other@x", "B1") {
        Err(Error::ValueTaken { holder, .. }) => assert_eq!(holder, broken),
        other => panic!("{other:?}"),
    }
    damage_recorded(&f.store);
}

#[test]
fn little_room_is_warned_of_and_taken_back_only_with_a_margin() {
    let mib = 1 << 20;
    // A small file: little is LOW_ROOM.
    assert!(Room::new(LOW_ROOM - 1, 10 * mib).low());
    assert!(!Room::new(LOW_ROOM, 10 * mib).low());
    // Hovering just above the line is neither low nor ample: no warning taken back yet.
    assert!(!Room::new(LOW_ROOM + mib, 10 * mib).ample());
    assert!(Room::new(LOW_ROOM + LOW_ROOM / 4, 10 * mib).ample());
    // A large file: a tenth of it.
    let file = 10 * LOW_ROOM;
    assert!(Room::new(file / 10 - 1, file).low());
    assert!(!Room::new(file / 10, file).low());
    // The store's own: what the system says, and 0 for a full disk.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
    let room = store.room().unwrap();
    assert!(room.free > 0 && room.file > 0, "{room:?}");
    store.shared.faults.set(Some(Fault::DiskFull));
    assert_eq!(store.low_on_room(), Some(0));
}

/// Tenants' many writes delay another's by about a turn each, not by all of them: the writer
/// takes jobs in turns by tenant (a tenant's cheap writes together, up to `TURN` of work),
/// ends a batch with several tenants' jobs after `BATCH_TIME`, and each tenant holds at most
/// `TENANT_WRITES` places in the queue, whatever the number of tenants flooding it.
#[test]
fn a_tenants_writes_wait_for_a_turn_not_for_other_tenants_queues() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Each job's place in the order the writer ran them (the order of the answers, which
    // go out batch by batch), taken on the writer's thread: the order the answered tasks
    // are next polled in is the runtime's, which a loaded machine reshuffles.
    let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let (holding, hold_started) = std::sync::mpsc::channel::<()>();
    let write = |tenant: String, i: u64, slow: bool| {
        let (store, ran, held, holding) =
            (store.clone(), ran.clone(), held.clone(), holding.clone());
        rt.spawn(async move {
            store
                .write(tenant.clone(), move |w| {
                    // The first holds the writer until every other write is queued.
                    if i == 0 && tenant == "flood0" {
                        let _ = holding.send(());
                        let _ = held.lock().unwrap().recv();
                    }
                    if slow {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    let t: TableDefinition<u64, u64> = TableDefinition::new("t");
                    w.txn.open_table(t)?.insert(i, i)?;
                    Ok(Ok(ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst)))
                })
                .await
                .unwrap()
        })
    };
    // The holding write runs before any other is queued. Spawned among the rest, it could
    // be polled after the queue had filled, and the writer, held by nothing, would run the
    // floods before the other tenant's writes came (CI saw that once).
    let mut flood = vec![write("flood0".into(), 0, true)];
    hold_started
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the holding write runs");
    // Six tenants flooding, more than the queue holds: past `TENANT_WRITES` each waits.
    flood.extend(
        (0..6)
            .flat_map(|f| (0..200).map(move |i| (f, i)))
            .filter(|&(f, i)| (f, i) != (0, 0))
            .map(|(f, i)| write(format!("flood{f}"), i, true)),
    );
    // Queued while the first is held (a real wait: nothing to observe the queue by; long
    // enough for a loaded machine).
    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_secs(2)).await });
    // Another tenant's IdP creating 20 users at once.
    let other: Vec<_> = (1000..1020)
        .map(|i| write("other".into(), i, false))
        .collect();
    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_secs(1)).await });
    release.send(()).unwrap();
    let places: Vec<usize> = other.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
    for f in flood {
        rt.block_on(f).unwrap();
    }
    // In first-come order they were answered after the floods' 1,200 (at least the 1,024
    // the queue holds); in turns, after a few dozen. The bound leaves room for a loaded
    // machine, where the writes waiting for room in the queue may be woken a batch or
    // more late, and stays far from first-come order.
    let last = places.iter().max().copied().unwrap_or_default();
    assert!(
        last < 300,
        "answered after {last} of the floods' writes: {places:?}"
    );
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1220);
}

/// redb's check of the checksums reads the file beside the live handle, whose commits
/// rewrite its header and reuse the pages of older commits: run beside a stream of writes
/// with pauses, the bare check calls a sound file damaged again and again, the scrub's never
/// (it drops a check any write overlapped), and still gets checks through between writes.
/// Among the writes, batches larger than the write buffer (written to the file, and the
/// file grown, before their commit), half of them rolled back by a job that panics: writes
/// to the file no commit counts, to pages free at the last commit, which no check reads.
#[test]
fn a_check_of_the_checksums_beside_commits_never_calls_a_sound_file_damaged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const BULK: TableDefinition<u64, &[u8]> = TableDefinition::new("bulk");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    three_hundred_users(&path);
    let f = Fixture::open(&path);
    let stop = AtomicBool::new(false);
    let (mut bare_damaged, mut sound, mut called_damaged) = (0, 0, None);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let id = f.user_with_email(&format!("w{i}"), &format!("w{i}@x"));
                if i % 3 == 0 {
                    f.delete_user(id);
                }
                if i % 4 == 0 {
                    // 1.5 to 3 MB, against the fixture's 1 MiB cache.
                    let rows = 1500 + i * 7919 % 1500;
                    let bulk = f.store.write("t".into(), move |w| {
                        let mut t = w.txn.open_table(BULK)?;
                        for k in 0..rows {
                            t.insert(k, [i as u8; 1000].as_slice())?;
                        }
                        drop(t);
                        if i % 8 == 0 {
                            panic!("rolled back on purpose");
                        }
                        w.txn.delete_table(BULK)?;
                        Ok(Ok(()))
                    });
                    let _ = f.rt.block_on(bulk);
                }
                // Pauses of 0 to 20 ms, so that some checks fall between writes.
                std::thread::sleep(std::time::Duration::from_micros(i * 7919 % 20000));
            }
        });
        // At least 4 s, and on until both kinds of moment were seen: on a loaded machine
        // (the whole suite beside it) 4 s may hold no bare check that overlapped a write.
        let t0 = std::time::Instant::now();
        let secs = |n| std::time::Duration::from_secs(n);
        while t0.elapsed() < secs(4)
            || ((bare_damaged == 0 || sound == 0) && t0.elapsed() < secs(60))
        {
            if let Ok(Err(_)) = scrub::redb_verdict(&path, || true) {
                bare_damaged += 1;
            }
            match scrub::checksums(&Arc::downgrade(&f.store.shared)) {
                Err(scrub::Stop::Damaged(what)) => {
                    called_damaged = Some(what);
                    break;
                }
                Ok(()) => sound += 1,
                Err(scrub::Stop::Later(_)) => {}
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(called_damaged, None, "a sound file called damaged");
    assert!(bare_damaged > 0, "no bare check overlapped a write");
    assert!(sound > 0, "no check fell between writes");
}

/// Bytes changed inside a value while scimd runs are found by a later pass's check of the
/// checksums, made in a quiet moment (the entries still read back as sound).
#[test]
fn damage_done_while_running_is_found_by_a_later_check_of_the_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    three_hundred_users(&path);
    let f = Fixture::open(&path);
    f.store.spawn_scrub(std::time::Duration::from_secs(1));
    // The first pass is through once a write is taken.
    f.user_with_email("sound", "sound@x");
    assert_eq!(f.store.writes_refused(), None);
    let mut bytes = std::fs::read(&path).unwrap();
    a_letter_changed(&mut bytes);
    // In place, as a failing disk would: the live handle keeps the file open.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
        .unwrap();
    let what = damage_recorded(&f.store);
    assert!(
        what.contains("checking the checksums of its pages"),
        "{what}"
    );
}

/// A backup is about the size of the file it copies or smaller, however tight that file
/// (a few pages more for a file just compacted): written in one
/// transaction, the copy's file grows by doubling (a million users' 711 MB of pages sat in
/// a 1.11 GB copy of an 870 MB file), and is compacted once written.
#[test]
fn a_backup_is_not_larger_than_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut db = Database::create(&path).unwrap();
    layout::init_schema(&db).unwrap();
    let stamp = "2025-12-04T14:55:41.000042Z";
    // Many small commits, as the writer makes them: 26,000 records of about 300 bytes.
    for batch in 0..130u128 {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(tables::RESOURCES).unwrap();
            for i in 0..200u128 {
                let id = batch * 200 + i;
                let record = format!(
                    r#"{{"body":{{"userName":"user{id}@example.com","displayName":"User {id} {}"}},"created":"{stamp}","modified":"{stamp}","version":1}}"#,
                    "x".repeat(200)
                );
                t.insert(("t", Kind::User.code(), id), record.as_bytes())
                    .unwrap();
            }
        }
        w.commit().unwrap();
    }
    // Tight, as a file long in use is (10.9 MB here; the copy took 17.2 MB uncompacted).
    while db.compact().unwrap() {}
    let out = dir.path().join("out.redb");
    let rows = backup::copy_all(&db.begin_read().unwrap(), &out).unwrap();
    assert_eq!(rows, 26_001, "the records and the layout's version");
    // One that cannot be opened to compact (here, held: elsewhere, a file system without
    // locks) is kept as written, and why is said.
    let held = Database::open(&out).unwrap();
    let uncompacted = std::fs::metadata(&out).unwrap().len();
    assert!(matches!(backup::compact_copy(&out), Ok(Some(_))));
    drop(held);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), uncompacted);
    // A link is never followed (root compacts in a directory another user may write):
    // refused, and the file it points to left as it was.
    let link = dir.path().join("link.redb");
    std::os::unix::fs::symlink(&out, &link).unwrap();
    let e = backup::compact_copy(&link).expect_err("a link");
    assert!(e.starts_with("cannot open"), "{e}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), uncompacted);
    assert_eq!(backup::compact_copy(&out), Ok(None));
    let (live, copy) = (
        std::fs::metadata(&path).unwrap().len(),
        std::fs::metadata(&out).unwrap().len(),
    );
    assert!(
        copy <= live + live / 100,
        "the copy {copy} bytes, the database {live}"
    );
}

/// The database file moved away, replaced by a copy or removed while the store runs: reads
/// go on from the open file; no write is acknowledged (one would be lost at the next start,
/// which opens what the name leads to); putting the file back lets writes through again;
/// and a reopen after a storage failure never makes a new, empty database at the name.
#[test]
fn a_database_file_taken_from_under_the_store_refuses_writes_and_is_never_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let aside = dir.path().join("aside.redb");
    let f = Fixture::open(&path);
    let kept = f.user_with_email("kept", "kept@x");
    let create = |name: &str| {
        let body = serde_json::json!({"userName": name});
        let input = crate::scim::resource::normalize(Kind::User, &body).unwrap();
        let made = f
            .store
            .create_as(f.actor.clone(), Kind::User.into(), input, None);
        f.rt.block_on(made).map(|r| r.id)
    };
    let found = |name: &str| f.find(Kind::User, &format!("userName eq \"{name}\""));
    let refused = || match f.store.writes_refused() {
        Some(Refused::FileGone(what)) => what,
        other => panic!("{other:?}"),
    };
    std::fs::rename(&path, &aside).unwrap();
    assert_eq!(create("lost"), Err(Error::FileGone));
    assert_eq!(create("lost"), Err(Error::FileGone), "refused again");
    assert!(refused().contains("was removed (or its directory) while scimd ran"));
    assert_eq!(found("kept"), [format_id(kept)], "reads go on");
    // Put back: the same file, so writes go through, and the refused one was not written.
    std::fs::rename(&aside, &path).unwrap();
    let back = create("back").unwrap();
    assert_eq!(f.store.writes_refused(), None);
    assert_eq!(found("back"), [back]);
    assert!(found("lost").is_empty());
    // A copy in its place is another file, which the open one's commits would miss.
    std::fs::copy(&path, &aside).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&aside, &path).unwrap();
    assert_eq!(create("copied"), Err(Error::FileGone));
    assert!(refused().contains("was replaced by another file"));
    // A storage failure then: the reopen refuses the copy before touching it (its mode).
    f.store.shared.retire();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(2) {
        assert!(
            f.rt.block_on(f.store.check()).is_err(),
            "reopened another file"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // A storage failure with the file removed: each reopen tried fails, and makes nothing.
    std::fs::remove_file(&path).unwrap();
    f.store.shared.retire();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(3) {
        assert!(f.rt.block_on(f.store.check()).is_err(), "reopened");
        assert!(!path.exists(), "a new database was made at the name");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(refused().contains("was removed"));
    assert_eq!(create("after"), Err(Error::FileGone));
}

/// A page of all users longer than is read on the runtime thread comes as stored text from
/// the pool: every record and its groups, as the decoded page has them, in the same order
/// and with the same next cursor. A filtered or sorted one is not read so.
#[test]
fn a_long_plain_page_is_read_as_stored_text_on_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    three_hundred_users(&path);
    let f = Fixture::open(&path);
    for (start_index, count, after) in [(1, 1000, None), (41, 250, None), (1, 250, Some(0))] {
        let q = ListQuery {
            start_index,
            count,
            after,
            with_refs: true,
            ..ListQuery::default()
        };
        assert!(count > super::query::INLINE_PAGE);
        assert!(f.store.list_stored("t", Kind::User, &q).is_none());
        let stored =
            f.rt.block_on(f.store.list_stored_pooled("t", Kind::User, &q))
                .expect("read as stored text")
                .unwrap();
        let decoded =
            f.rt.block_on(f.store.list("t".into(), Kind::User.into(), q.clone()))
                .unwrap();
        assert_eq!((stored.total, stored.next), (300, decoded.next), "{q:?}");
        assert_eq!(stored.items.len(), decoded.items.len());
        assert!(stored.items.len() >= 250, "{}", stored.items.len());
        for (s, d) in stored.items.iter().zip(&decoded.items) {
            assert_eq!(s.id, d.id);
            assert_eq!(s.refs, d.refs);
            let text: serde_json::Value = serde_json::from_slice(&s.record).unwrap();
            assert_eq!(text["body"]["userName"], d.body["userName"]);
        }
    }
    let sorted = ListQuery {
        count: 1000,
        sort: Some(crate::scim::sort::SortSpec::parse(Kind::User, "userName", None).unwrap()),
        ..ListQuery::default()
    };
    let filtered = ListQuery {
        count: 1000,
        filter: Some(crate::scim::filter::parse_for(Kind::User, "userName pr").unwrap()),
        ..ListQuery::default()
    };
    // A short page is read on the runtime thread only: one it gives up on is not read again.
    let short = ListQuery {
        count: super::query::INLINE_PAGE,
        ..ListQuery::default()
    };
    for q in [sorted, filtered, short] {
        assert!(
            f.rt.block_on(f.store.list_stored_pooled("t", Kind::User, &q))
                .is_none()
        );
    }
    // Each user in 35 groups: 250 of them (8,750 references) are still read as text, all
    // 300 (10,500, past `STORED_PAGE_REFS`) the ordinary way, which writes them as it goes.
    let members: Vec<_> = (f.rt)
        .block_on(f.store.list(
            "t".into(),
            Kind::User.into(),
            ListQuery {
                count: 1000,
                ..ListQuery::default()
            },
        ))
        .unwrap()
        .items
        .iter()
        .map(|u| serde_json::json!({"value": u.id}))
        .collect();
    for g in 0..34 {
        let body = serde_json::json!({"displayName": format!("G{g}"), "members": members});
        f.create(Kind::Group, body, None);
    }
    let page = |count| ListQuery {
        count,
        with_refs: true,
        ..ListQuery::default()
    };
    assert_eq!(super::query::STORED_PAGE_REFS, 10_000);
    let some =
        f.rt.block_on(f.store.list_stored_pooled("t", Kind::User, &page(250)));
    let refs: usize = some
        .unwrap()
        .unwrap()
        .items
        .iter()
        .map(|s| s.refs.as_ref().unwrap().len())
        .sum();
    assert_eq!(refs, 250 * 35);
    assert!(
        f.rt.block_on(f.store.list_stored_pooled("t", Kind::User, &page(1000)))
            .is_none()
    );
}

/// A write whose request began before a reload moved `test_threshold`, committed after the
/// reload's settings, follows the settings the reload applied: the feed's mode switches stay
/// one chain, each from the mode the one before left. (Its own rules, the old threshold,
/// would see no switch here, and the feed would stay "enforced" with 3 of 3 active.)
#[test]
fn a_write_begun_before_a_reload_follows_the_plan_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&dir.path().join("s.redb"));
    let rules = |test_threshold| {
        Some(Arc::new(plan::PlanRules {
            name: "p".into(),
            test_threshold,
            seats: None,
            on_seat_limit: plan::SeatPolicy::Reject,
            existing_members: Vec::new(),
            existing_shown: Default::default(),
        }))
    };
    f.actor.plan = rules(10);
    f.rt.block_on(f.store.plan_applied(f.actor.clone()))
        .unwrap();
    let ids = f.users(5);
    let mut reload = f.actor.clone();
    reload.plan = rules(3);
    reload.token = "(configuration reload)".into();
    let applied = f.rt.block_on(f.store.plan_applied(reload)).unwrap();
    assert_eq!(
        applied.modes,
        Some((plan::Mode::Testing, plan::Mode::Enforced))
    );
    // `f.actor` still carries threshold 10, as requests begun before the reload do.
    for id in &ids[..2] {
        f.patch(
            Kind::User,
            *id,
            serde_json::json!([{"op": "replace", "path": "active", "value": false}]),
        );
    }
    let feed =
        f.rt.block_on(f.store.events("t".into(), 0, 1000, Retention::default()))
            .unwrap();
    let switches: Vec<(String, String, String)> = feed
        .events
        .into_iter()
        .filter(|e| e.kind == "plan.changed")
        .map(|e| (e.token, e.from.unwrap(), e.to.unwrap()))
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        switches,
        [
            s("(configuration reload)", "testing", "enforced"),
            s(&f.actor.token, "enforced", "testing"),
        ]
    );
    // Settings found equal to those recorded at a start (no commit) are followed the same
    // way: a 4th active user is past threshold 3, though not past the request's 10.
    let path = dir.path().join("s.redb");
    f.store.close();
    let mut f = Fixture::open(&path);
    f.actor.plan = rules(10);
    let mut start = f.actor.clone();
    start.plan = rules(3);
    let applied = f.rt.block_on(f.store.plan_applied(start)).unwrap();
    assert!(applied.changed.is_empty(), "{:?}", applied.changed);
    f.patch(
        Kind::User,
        ids[0],
        serde_json::json!([{"op": "replace", "path": "active", "value": true}]),
    );
    let feed =
        f.rt.block_on(f.store.events("t".into(), 0, 1000, Retention::default()))
            .unwrap();
    let switches: Vec<(Option<String>, Option<String>)> = (feed.events.into_iter())
        .filter(|e| e.kind == "plan.changed")
        .map(|e| (e.from, e.to))
        .collect();
    assert_eq!(switches.len(), 3, "{switches:?}");
    assert_eq!(
        switches[2],
        (Some("testing".into()), Some("enforced".into()))
    );
}
