//! Store-level experiment behind the flatness figures in docs/performance.md: how much a
//! userName lookup in redb costs at 1k and at a million users, for three ways of laying the
//! tables out, without HTTP or TLS. It answers "which layout could make a lookup at a million
//! cost what it costs at 1k", not "how fast is scimd" (that is `benches/scale.rs`).
//!
//! - `four trees`: scimd's layout: the userName index gives the id, then the record, the
//!   user's memberships and each group's record (for `groups[].display`).
//! - `three trees`: the index, the record holding its group ids, and each group's record: what
//!   keeping a user's memberships inside its record would leave.
//! - `two trees`: the index and the record only (memberships kept inside the record, and no
//!   group name read).
//! - `one tree`: the record stored under its userName.
//!
//! ```sh
//! cargo bench --bench lookup_layouts -- --users 1000,1000000 --seconds 2 --threads 2 --cache-mb 16
//! ```
//!
//! The files are written once into `--data DIR` (default: a temporary directory) and reused.
//! Lookups pick userNames uniformly at random from one read snapshot, as scimd's reads do.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableDefinition};

const USERNAME: TableDefinition<(&str, &str), u128> = TableDefinition::new("username");
const RECORD: TableDefinition<(&str, u8, u128), &[u8]> = TableDefinition::new("record");
const MEMBER_OF: TableDefinition<(&str, u128, u128), ()> = TableDefinition::new("member_of");
const BY_NAME: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("record_by_username");

const TENANT: &str = "bench";
const GROUP: u128 = 0x01a2_30ee_e9a0_7042_947c_9aa5_3456_0868;

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    FourTrees,
    ThreeTrees,
    TwoTrees,
    OneTree,
}

impl Layout {
    const ALL: [Layout; 4] = [
        Layout::FourTrees,
        Layout::ThreeTrees,
        Layout::TwoTrees,
        Layout::OneTree,
    ];

    fn name(self) -> &'static str {
        match self {
            Layout::FourTrees => "four trees (scimd)",
            Layout::ThreeTrees => "three trees",
            Layout::TwoTrees => "two trees",
            Layout::OneTree => "one tree",
        }
    }
}

struct Args {
    sizes: Vec<u64>,
    seconds: u64,
    threads: u64,
    cache_mb: usize,
    data: Option<PathBuf>,
}

fn args() -> Args {
    let v: Vec<String> = std::env::args().collect();
    let mut a = Args {
        sizes: vec![1_000, 1_000_000],
        seconds: 2,
        threads: 2,
        cache_mb: 16,
        data: None,
    };
    let mut i = 1;
    while i < v.len() {
        let value = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--users" => a.sizes = value.split(',').filter_map(|s| s.parse().ok()).collect(),
            "--seconds" => a.seconds = value.parse().unwrap_or(a.seconds),
            "--threads" => a.threads = value.parse().unwrap_or(a.threads),
            "--cache-mb" => a.cache_mb = value.parse().unwrap_or(a.cache_mb),
            "--data" => a.data = Some(PathBuf::from(value)),
            _ => {
                i += 1; // `--bench`, passed by cargo
                continue;
            }
        }
        i += 2;
    }
    a
}

fn user_name(i: u64) -> String {
    format!("user{i}@bench.example")
}

fn user_id(i: u64) -> u128 {
    (0x01a2_30ee_u128 << 96) | (u128::from(i) << 20) | 0x7777
}

/// About the size of a record the HTTP benchmark stores.
fn user_record(i: u64) -> Vec<u8> {
    format!(
        concat!(
            r#"{{"body":{{"userName":"user{i}@bench.example","externalId":"ext-{i}","#,
            r#""name":{{"givenName":"Bench","familyName":"User{i}"}},"emails":[{{"value":"#,
            r#""user{i}@bench.example","type":"work","primary":true}}],"active":true}},"#,
            r#""created":"2026-12-01T09:27:27.865747852Z","modified":"#,
            r#""2026-12-01T09:27:27.865747852Z","version":1,"groups":["{g:032x}"]}}"#
        ),
        i = i,
        g = GROUP
    )
    .into_bytes()
}

/// Writes `n` users, each in one group, in every layout's tables.
fn load(path: &Path, n: u64, cache_mb: usize) -> Result<Database, redb::Error> {
    let db = Database::builder()
        .set_cache_size(cache_mb << 20)
        .create(path)?;
    let group = br#"{"body":{"displayName":"Big Group"},"created":"","modified":"","version":1}"#;
    let mut from = 0;
    while from < n {
        let w = db.begin_write()?;
        {
            let mut names = w.open_table(USERNAME)?;
            let mut records = w.open_table(RECORD)?;
            let mut member_of = w.open_table(MEMBER_OF)?;
            let mut by_name = w.open_table(BY_NAME)?;
            if from == 0 {
                records.insert((TENANT, 2u8, GROUP), group.as_slice())?;
            }
            for i in from..(from + 50_000).min(n) {
                let (name, rec) = (user_name(i), user_record(i));
                names.insert((TENANT, name.as_str()), user_id(i))?;
                records.insert((TENANT, 1u8, user_id(i)), rec.as_slice())?;
                member_of.insert((TENANT, user_id(i), GROUP), ())?;
                by_name.insert((TENANT, name.as_str()), rec.as_slice())?;
            }
        }
        w.commit()?;
        from += 50_000;
    }
    Ok(db)
}

/// One snapshot's tables, opened once per thread as scimd keeps them open per snapshot.
struct Tables {
    names: ReadOnlyTable<(&'static str, &'static str), u128>,
    records: ReadOnlyTable<(&'static str, u8, u128), &'static [u8]>,
    member_of: ReadOnlyTable<(&'static str, u128, u128), ()>,
    by_name: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
}

impl Tables {
    fn open(txn: &ReadTransaction) -> Result<Tables, redb::Error> {
        Ok(Tables {
            names: txn.open_table(USERNAME)?,
            records: txn.open_table(RECORD)?,
            member_of: txn.open_table(MEMBER_OF)?,
            by_name: txn.open_table(BY_NAME)?,
        })
    }

    /// One lookup of user `i`; the bytes read, so that nothing is optimised away.
    fn lookup(&self, layout: Layout, i: u64) -> Result<usize, redb::Error> {
        let name = user_name(i);
        let key = (TENANT, name.as_str());
        if layout == Layout::OneTree {
            return Ok(self.by_name.get(key)?.map_or(0, |r| r.value().len()));
        }
        let Some(id) = self.names.get(key)?.map(|g| g.value()) else {
            return Ok(0);
        };
        let mut bytes = self
            .records
            .get((TENANT, 1u8, id))?
            .map_or(0, |r| r.value().len());
        if layout == Layout::ThreeTrees {
            // The group ids come from the record itself; only each group's name is read.
            bytes += self
                .records
                .get((TENANT, 2u8, GROUP))?
                .map_or(0, |r| r.value().len());
        }
        if layout == Layout::FourTrees {
            for e in self
                .member_of
                .range((TENANT, id, 0u128)..=(TENANT, id, u128::MAX))?
            {
                let g = e?.0.value().2;
                bytes += self
                    .records
                    .get((TENANT, 2u8, g))?
                    .map_or(0, |r| r.value().len());
            }
        }
        Ok(bytes)
    }
}

/// Lookups a second over all threads.
fn measure(txn: &Arc<ReadTransaction>, layout: Layout, n: u64, a: &Args) -> f64 {
    let threads: Vec<_> = (0..a.threads)
        .map(|t| {
            let txn = txn.clone();
            let secs = a.seconds;
            std::thread::spawn(move || {
                let tables = Tables::open(&txn).expect("tables");
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ t;
                let (mut ops, mut bytes) = (0u64, 0usize);
                let end = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < end {
                    for _ in 0..256 {
                        x = x
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        bytes += tables.lookup(layout, (x >> 33) % n).expect("lookup");
                        ops += 1;
                    }
                }
                assert!(bytes > 0, "no lookup found its user");
                ops
            })
        })
        .collect();
    let ops: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    ops as f64 / a.seconds as f64
}

fn main() -> Result<(), redb::Error> {
    let a = args();
    let tmp = tempfile::tempdir().map_err(redb::StorageError::from)?;
    let dir = a.data.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(redb::StorageError::from)?;
    println!(
        "lookup_layouts: threads={} seconds={} cache={} MiB",
        a.threads, a.seconds, a.cache_mb
    );
    println!("| layout             | users     | lookups/s | µs a lookup, per thread |");
    println!("|--------------------|-----------|-----------|-------------------------|");
    for &n in &a.sizes {
        let path = dir.join(format!("layouts-{n}.redb"));
        // Measured on the file opened afresh, as scimd reads it: straight after the bulk load,
        // in the same Database, the four-tree lookups ran 2-3x slower (which scimd does not
        // see: its lookups cost the same after ten seconds of creates as after a restart).
        if !path.exists() {
            // Loaded under another name, so that an interrupted load is never reused.
            let part = path.with_extension("part");
            drop(load(&part, n, a.cache_mb)?);
            std::fs::rename(&part, &path).map_err(redb::StorageError::from)?;
        }
        let db = Database::builder()
            .set_cache_size(a.cache_mb << 20)
            .open(&path)?;
        let txn = Arc::new(db.begin_read()?);
        // Two rounds: the first layout measured would otherwise also pay for warming the
        // caches that the others then find warm.
        for layout in Layout::ALL.into_iter().chain(Layout::ALL) {
            let rate = measure(&txn, layout, n, &a);
            println!(
                "| {:<18} | {:>9} | {:>9.0} | {:>23.2} |",
                layout.name(),
                n,
                rate,
                a.threads as f64 * 1e6 / rate
            );
        }
    }
    Ok(())
}
