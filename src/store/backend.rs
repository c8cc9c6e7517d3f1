//! The file under redb, with a fault switch. In production the switch stays off and costs one
//! atomic load per I/O; tests turn it on to prove that a failing disk gets 503s, a `/healthz`
//! that says so, no lost acknowledged write, and recovery once the disk is back.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// What the disk does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every write fails with EIO.
    WriteFails,
    /// Every fsync fails with EIO.
    SyncFails,
    /// Writes and growing the file fail with ENOSPC.
    DiskFull,
    /// Growing the file fails with ENOSPC; its pages can still be rewritten (as on a full
    /// disk, where redb's repair at reopen fits in the file it has).
    NoRoomToGrow,
    /// Every read returns the bytes on disk changed, as from a damaged page.
    Garbled,
    /// Not the disk: the store's read and write entry points panic, as a bug in a request's
    /// code would (proves a panic costs one request a 500 and nothing else).
    Panics,
}

/// A shared switch: every backend opened with it fails the same way while a fault is set.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<AtomicU8>);

impl Faults {
    pub fn set(&self, fault: Option<Fault>) {
        let code = match fault {
            None => 0,
            Some(Fault::WriteFails) => 1,
            Some(Fault::SyncFails) => 2,
            Some(Fault::DiskFull) => 3,
            Some(Fault::Panics) => 4,
            Some(Fault::NoRoomToGrow) => 5,
            Some(Fault::Garbled) => 6,
        };
        self.0.store(code, Ordering::SeqCst);
    }

    fn get(&self) -> Option<Fault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(Fault::WriteFails),
            2 => Some(Fault::SyncFails),
            3 => Some(Fault::DiskFull),
            4 => Some(Fault::Panics),
            5 => Some(Fault::NoRoomToGrow),
            6 => Some(Fault::Garbled),
            _ => None,
        }
    }

    /// Bytes free to this process on the disk holding `path` (none while the switch plays
    /// a full disk); `None` when the system cannot tell.
    pub(crate) fn free_bytes(&self, path: &Path) -> Option<u64> {
        if matches!(self.get(), Some(Fault::DiskFull | Fault::NoRoomToGrow)) {
            return Some(0);
        }
        free_bytes(parent_dir(path))
    }

    /// Panic here when the switch says so.
    pub(crate) fn panic_if_set(&self, at: &str) {
        if self.get() == Some(Fault::Panics) {
            panic!("injected panic in {at} (fault switch)");
        }
    }
}

fn eio() -> io::Error {
    io::Error::other("injected I/O error")
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC: "No space left on device"
}

#[derive(Debug)]
pub struct Backend {
    inner: FileBackend,
    faults: Faults,
    /// Held while the file is open (see `signalling`).
    _open: Option<std::sync::mpsc::Sender<()>>,
    head: Arc<Head>,
}

/// Bytes at the start of the file that redb's header holds: the commit slots naming the
/// root of everything, rewritten by every commit.
const HEAD_LEN: usize = 320;

/// The file's header as this process last wrote it. Another file copied over the open one
/// (`cp` rewrites the same inode, so its identity does not change) puts other bytes there:
/// a commit into it would mix this database's pages into another's.
#[derive(Debug)]
pub(crate) struct Head {
    /// The open file (a second descriptor), read past redb's cache and the fault switch.
    file: File,
    /// `None` until this process writes the header (redb does so as it opens the file).
    written: std::sync::Mutex<Option<[u8; HEAD_LEN]>>,
}

impl Head {
    fn written(&self) -> std::sync::MutexGuard<'_, Option<[u8; HEAD_LEN]>> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn on_disk(&self) -> io::Result<[u8; HEAD_LEN]> {
        use std::os::unix::fs::FileExt;
        let mut now = [0; HEAD_LEN];
        self.file.read_exact_at(&mut now, 0)?;
        Ok(now)
    }

    /// False when the header is not what this process last wrote there. A read that fails
    /// tells nothing, and is not called a change.
    pub(crate) fn intact(&self) -> bool {
        let written = self.written();
        match (*written, self.on_disk()) {
            (Some(w), Ok(now)) => w == now,
            _ => true,
        }
    }
}

/// A file's device and inode: which file a name leads to, whatever its contents.
pub(crate) fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Backend {
    /// The file at `path`, made (empty) if `create` and there is none. A reopen does not
    /// create: a file gone from under a running scimd must not come back empty.
    pub fn open(path: &Path, faults: Faults, create: bool) -> io::Result<Backend> {
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(create).truncate(false);
        // Console commands run as root open this file in a directory the service user owns:
        // a link planted as `scimd.redb` must not make root create or change another file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let file: File = o.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::other(format!(
                    "{} is a symbolic link; scimd opens only a regular file there",
                    path.display()
                ))
            } else {
                e
            }
        })?;
        // Best effort, as a user who may open the file need not own it.
        #[cfg(unix)]
        let _ = owner_only(&file, path);
        // A file just made has a name only once its directory is on disk: without this, a
        // power cut could take the new database, and every write acknowledged into it.
        if file.metadata()?.len() == 0 {
            sync_parent_or_say(path, "the new database");
        }
        Backend::from_file(file, faults)
    }

    /// A backend on a file already open (read and write), so that what is checked is that
    /// file, whatever its name points to by then.
    pub fn from_file(file: File, faults: Faults) -> io::Result<Backend> {
        let head = Arc::new(Head {
            file: file.try_clone()?,
            written: std::sync::Mutex::new(None),
        });
        let inner = FileBackend::new(file).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Backend {
            inner,
            faults,
            _open: None,
            head,
        })
    }

    /// What looks at the file's header (`Head::intact`) while redb has the backend.
    pub(crate) fn head(&self) -> Arc<Head> {
        self.head.clone()
    }

    /// This backend, holding `open` until it is dropped: a receiver of that channel
    /// disconnects once the file is closed (and its lock released), which is later than the
    /// last handle to the database going away when another thread drops it.
    pub fn signalling(mut self, open: std::sync::mpsc::Sender<()>) -> Backend {
        self._open = Some(open);
        self
    }
}

/// Flush `path`'s directory, so that a name just made, renamed or removed there survives a
/// power loss (a file's own fsync does not write its directory entry).
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

/// `sync_parent` for a name just made, said rather than failed: some file systems refuse
/// to sync a directory, and what was made is whole either way.
pub(crate) fn sync_parent_or_say(path: &Path, what: &str) {
    if let Err(e) = sync_parent(path) {
        tracing::warn!(path = %path.display(), error = %e, "the directory of {what} could not be synced: a power cut soon could take the file");
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether `e` is the disk being full.
pub(crate) fn no_space(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(io) if io.raw_os_error() == Some(libc::ENOSPC))
}

/// The directory `path` is in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Owner-only whatever the umask, through the open handle (never a path to re-resolve). A
/// file just made (empty) by a console command run as root goes to the owner of its
/// directory, the service user, or the service could never open it.
#[cfg(unix)]
fn owner_only(file: &File, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = file.metadata()?;
    // A second name for the file (a hard link made where links to others' files are
    // allowed) could be anyone's file: leave it as it is.
    if m.nlink() != 1 {
        return Ok(());
    }
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    if m.len() == 0
        && let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok())
        && (m.uid(), m.gid()) != (dir.uid(), dir.gid())
    {
        std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid()))?;
    }
    Ok(())
}

impl StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)?;
        if self.faults.get() == Some(Fault::Garbled) {
            out.iter_mut().for_each(|b| *b ^= 0x5a);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if matches!(
            self.faults.get(),
            Some(Fault::DiskFull | Fault::NoRoomToGrow)
        ) && len > self.inner.len()?
        {
            return Err(enospc());
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.get() == Some(Fault::SyncFails) {
            return Err(eio());
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        match self.faults.get() {
            Some(Fault::WriteFails) => Err(eio()),
            Some(Fault::DiskFull) => Err(enospc()),
            // The header, kept under the lock `Head::intact` takes (a look while it is being
            // written would see it half old): the bytes written when they cover it (redb
            // writes it whole), else read back.
            _ if offset < HEAD_LEN as u64 => {
                let mut written = self.head.written();
                self.inner.write(offset, data)?;
                *written = match data.get(..HEAD_LEN) {
                    Some(whole) if offset == 0 => whole.try_into().ok(),
                    _ => self.head.on_disk().ok(),
                };
                Ok(())
            }
            _ => self.inner.write(offset, data),
        }
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    // Locks pass straight through: a second scimd on the same file must still be refused.
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }

    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }

    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }

    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }

    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }

    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header is known from what this process wrote, whole or in part, and a file
    /// written over it in place (same inode, as `cp` does) is told apart.
    #[test]
    fn a_header_written_over_from_outside_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let b = Backend::open(&path, Faults::default(), true).unwrap();
        let head = b.head();
        assert!(head.intact(), "nothing written yet: nothing to compare");
        b.write(0, &[7; 4096]).unwrap();
        assert!(head.intact());
        // Written in part: read back, and the rest kept.
        b.write(100, &[9; 8]).unwrap();
        assert!(head.intact());
        assert_eq!(head.written().unwrap()[100..108], [9; 8]);
        assert_eq!(head.written().unwrap()[99], 7);
        // Past the header: not looked at.
        b.write(4096, &[1; 16]).unwrap();
        assert!(head.intact());
        std::fs::write(&path, [8u8; 4096]).unwrap();
        assert!(!head.intact(), "another file's bytes at the start");
        // Its own next header write is what it knows from then on.
        b.write(0, &[8; HEAD_LEN]).unwrap();
        assert!(head.intact());
    }
}
