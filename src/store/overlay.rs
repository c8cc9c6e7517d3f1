//! The database file as a second redb handle sees it for the scrub's check of the pages'
//! checksums: read from the file, written to memory only, never locked.
//!
//! redb verifies its page checksums only when it opens a file with an integrity check (or
//! repairs one after a crash), and that open writes (a repair, a commit of the allocator
//! state) and needs the file to itself. The live store holds the file, and a check of the
//! file in place would block the start for as long as reading all of it takes. Opened
//! through this backend instead, a second handle runs redb's own check beside the live one,
//! and what the check writes never reaches the disk. Whether the live handle wrote the file
//! meanwhile is the caller's to tell (`scrub::FileWrites`); told to stop, reads fail at once.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use redb::StorageBackend;

/// The unit the written bytes are kept in.
const BLOCK: u64 = 4096;

pub(super) struct Overlay {
    file: File,
    state: Mutex<State>,
    /// Asked before each read: false once the check can say nothing any more (a write
    /// overtook it, the store closed), so that it stops reading the file at once.
    go_on: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("file", &self.file).finish()
    }
}

#[derive(Debug)]
struct State {
    /// The length redb has set (the file's own at first).
    len: u64,
    /// Below this the file's own bytes show where nothing was written; at and past it,
    /// zeros (the file's length, or less once redb shrank the storage).
    file_bytes: u64,
    /// Blocks written, whole, by their offset / `BLOCK`.
    written: HashMap<u64, Box<[u8]>>,
}

impl State {
    /// Bytes at `at` as they read where nothing was written.
    fn unwritten(&self, file: &File, out: &mut [u8], at: u64) -> io::Result<()> {
        let from_file = self.file_bytes.saturating_sub(at).min(out.len() as u64) as usize;
        file.read_exact_at(&mut out[..from_file], at)?;
        out[from_file..].fill(0);
        Ok(())
    }

    /// Block `b` as it reads now.
    fn block(&self, file: &File, b: u64) -> io::Result<Box<[u8]>> {
        if let Some(w) = self.written.get(&b) {
            return Ok(w.clone());
        }
        let mut out = vec![0u8; BLOCK as usize].into_boxed_slice();
        self.unwritten(file, &mut out, b * BLOCK)?;
        Ok(out)
    }
}

impl Overlay {
    pub(super) fn new(
        file: File,
        go_on: impl Fn() -> bool + Send + Sync + 'static,
    ) -> io::Result<Overlay> {
        let len = file.metadata()?.len();
        Ok(Overlay {
            file,
            state: Mutex::new(State {
                len,
                file_bytes: len,
                written: HashMap::new(),
            }),
            go_on: Box::new(go_on),
        })
    }
}

impl StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        Ok(super::locked(&self.state).len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        if !(self.go_on)() {
            return Err(io::Error::other("the check was called off"));
        }
        let s = super::locked(&self.state);
        if offset + out.len() as u64 > s.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the database file",
            ));
        }
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let (b, within) = (at / BLOCK, (at % BLOCK) as usize);
            let take = (BLOCK as usize - within).min(out.len() - done);
            if let Some(w) = s.written.get(&b) {
                out[done..done + take].copy_from_slice(&w[within..within + take]);
            } else {
                s.unwritten(&self.file, &mut out[done..done + take], at)?;
            }
            done += take;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = super::locked(&self.state);
        if len < s.len {
            // Grown again later, the bytes past the cut must read as zeros.
            let first_gone = len.div_ceil(BLOCK);
            s.written.retain(|b, _| *b < first_gone);
            if !len.is_multiple_of(BLOCK)
                && let Some(block) = s.written.get_mut(&(len / BLOCK))
            {
                block[(len % BLOCK) as usize..].fill(0);
            }
            s.file_bytes = s.file_bytes.min(len);
        }
        s.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = super::locked(&self.state);
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (b, within) = (at / BLOCK, (at % BLOCK) as usize);
            let take = (BLOCK as usize - within).min(data.len() - done);
            let mut block = s.block(&self.file, b)?;
            block[within..within + take].copy_from_slice(&data[done..done + take]);
            s.written.insert(b, block);
            done += take;
        }
        s.len = s.len.max(offset + data.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_in_memory_and_read_back_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let go_on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let told = go_on.clone();
        let o = Overlay::new(File::open(&path).unwrap(), move || {
            told.load(std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap();
        o.write(4090, &[7u8; 20]).unwrap();
        let mut out = vec![0u8; 40];
        o.read(4080, &mut out).unwrap();
        assert_eq!(&out[..10], &original[4080..4090]);
        assert_eq!(&out[10..30], &[7u8; 20]);
        assert_eq!(&out[30..], &original[4110..4120]);
        // Grown by a write past the end; shrunk and grown again reads zeros.
        o.write(12_000, &[1, 2, 3]).unwrap();
        assert_eq!(o.len().unwrap(), 12_003);
        o.set_len(5000).unwrap();
        o.set_len(9000).unwrap();
        let mut tail = vec![9u8; 4000];
        o.read(5000, &mut tail).unwrap();
        assert!(tail.iter().all(|b| *b == 0));
        assert!(o.read(8990, &mut [0u8; 20]).is_err(), "past the end");
        // Called off: no read goes on.
        go_on.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(o.read(0, &mut [0u8; 20]).is_err(), "called off");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            original,
            "the file is untouched"
        );
    }
}
