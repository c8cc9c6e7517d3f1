//! One pass over the database file at start, in the background, so that the kernel's page
//! cache holds it before the IdPs' reads need it.
//!
//! Point reads run on the runtime's few threads (`Store::read_now`) because they take
//! microseconds from a cached file. After a reboot nothing is cached: each read then waits
//! for the disk while it holds one of those threads, and everything else (handshakes, other
//! tenants) waits behind it. Measured at a million users with the cache dropped: 463 GETs by
//! id a second at a p50 of 116 ms, where a cached file serves over 20,000. Random reads fill
//! the cache a page at a time; reading the file in order fills it at the disk's full speed
//! (1.1 GiB in 1.5 s on the development machine). `posix_fadvise(WILLNEED)` would not do:
//! Linux reads only a few MiB of the range ahead for it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Below this the pass is logged at debug only: a small file is read in milliseconds, and
/// random reads would fill the cache with it as fast.
const WORTH_SAYING: u64 = 64 << 20;

/// A line at info for a file of at least `WORTH_SAYING` bytes, else at debug.
macro_rules! say {
    ($size:expr, $($line:tt)+) => {
        if $size >= WORTH_SAYING {
            tracing::info!($($line)+)
        } else {
            tracing::debug!($($line)+)
        }
    };
}

/// Whether to read a file of `size` bytes when `available` bytes of memory can hold cache
/// (`MemAvailable`, or less under a cgroup limit): only if it takes at most half, so that a
/// file too large to stay cached does not push everything else out for nothing. Unknown
/// memory: not read.
fn worth_reading(size: u64, available: Option<u64>) -> bool {
    available.is_some_and(|a| size <= a / 2)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

/// The memory the service's cgroup (v2) leaves under its `memory.high` and `memory.max`
/// (systemd's `MemoryHigh=`, `MemoryMax=`), which the page cache this pass fills is charged
/// to; `None` without such a limit.
fn cgroup_room() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let dir = Path::new("/sys/fs/cgroup").join(cgroup_v2_path(&own)?.trim_start_matches('/'));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    room(
        &read("memory.high"),
        &read("memory.max"),
        &read("memory.current"),
    )
}

/// The room under the lower of two cgroup limits (each a number or `max`), given its use.
fn room(high: &str, max: &str, current: &str) -> Option<u64> {
    let limit = [high, max]
        .into_iter()
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .min()?;
    let used = current.trim().parse::<u64>().unwrap_or(0);
    Some(limit.saturating_sub(used))
}

/// The cgroup v2 path in a `/proc/self/cgroup` text (its `0::` line).
fn cgroup_v2_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// Free memory by sysinfo(2): the packaged unit's `ProcSubset=pid` hides `/proc/meminfo`.
/// Less than `MemAvailable` (it leaves out the page cache the kernel could drop), which
/// errs towards not reading.
#[allow(clippy::useless_conversion)] // c_ulong is u32 on 32-bit targets
fn mem_free() -> Option<u64> {
    let i = rustix::system::sysinfo();
    let unit = u64::from(i.mem_unit.max(1));
    (u64::from(i.freeram) + u64::from(i.bufferram)).checked_mul(unit)
}

/// What the pass may fill: the least of `MemAvailable` (else free memory) and the cgroup's
/// room.
fn available() -> Option<u64> {
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_available(&m))
        .or_else(mem_free);
    match (system, cgroup_room()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads `path` to its end and returns how many bytes it read. The buffer is small: the
/// kernel's readahead makes larger reads no faster, and this one must not grow the RSS.
fn read_through(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Starts the pass over `path` on a thread of its own and logs what it did.
pub fn spawn(path: PathBuf) {
    let started = std::thread::Builder::new()
        .name("scimd-warm".into())
        .spawn(move || run(&path));
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the thread that reads the database file into the page cache");
    }
}

fn run(path: &Path) {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the database file into the page cache");
            return;
        }
    };
    let available = available();
    let mib = |b: u64| b >> 20;
    if !worth_reading(size, available) {
        say!(
            size,
            size_mib = mib(size),
            available_mib = available.map(mib),
            "the database file is larger than half the memory available for caching it: not read ahead at start; reads fill the cache as they come"
        );
        return;
    }
    let t0 = Instant::now();
    match read_through(path) {
        Ok(read) => say!(
            size,
            size_mib = mib(read),
            secs = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "read the database file into the kernel's page cache (storage.warm_page_cache)"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot read the database file into the page cache; reads fill it as they come"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_available_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24684544 kB\nMemFree:        24524536 kB\n\
                       MemAvailable:   24398336 kB\nBuffers:            2048 kB\n";
        assert_eq!(mem_available(meminfo), Some(24_398_336 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots\n"), None);
        // Where /proc/meminfo is hidden, sysinfo(2) says no more than it would.
        let free = mem_free().expect("sysinfo");
        let said = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total = said
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap();
        let total = total
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .unwrap()
            * 1024;
        assert!(free > 0 && free <= total, "{free} of {total}");
    }

    #[test]
    fn the_cgroup_is_the_unified_one() {
        let v2 = "0::/system.slice/scimd.service\n";
        assert_eq!(cgroup_v2_path(v2), Some("/system.slice/scimd.service"));
        let hybrid = "4:memory:/x\n1:cpu:/\n0::/\n";
        assert_eq!(cgroup_v2_path(hybrid), Some("/"));
        assert_eq!(cgroup_v2_path("4:memory:/x\n"), None);
        // MemoryHigh=1G, no MemoryMax, 100 MiB in use.
        let used = (100 << 20).to_string();
        assert_eq!(
            room("1073741824\n", "max\n", &used),
            Some((1 << 30) - (100 << 20))
        );
        assert_eq!(room("max\n", "max\n", &used), None, "no limit");
        assert_eq!(room("", "", ""), None, "no such files");
        assert_eq!(
            room("max", "1000", "2000"),
            Some(0),
            "over the limit already"
        );
    }

    #[test]
    fn a_file_is_read_only_when_half_the_memory_holds_it() {
        let gib = 1u64 << 30;
        assert!(worth_reading(gib, Some(4 * gib)));
        assert!(worth_reading(2 * gib, Some(4 * gib)));
        assert!(!worth_reading(2 * gib + 1, Some(4 * gib)));
        assert!(!worth_reading(gib, None), "memory unknown");
    }

    #[test]
    fn the_whole_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Not a multiple of the buffer, to see the last short read counted.
        std::fs::write(&path, vec![7u8; 600 * 1024 + 3]).unwrap();
        assert_eq!(read_through(&path).unwrap(), 600 * 1024 + 3);
        assert!(read_through(&dir.path().join("missing")).is_err());
    }
}
