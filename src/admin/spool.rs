//! An import's lines, kept in a file beside the database while the import reads them.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The lines of an import's file, kept in a file of the state directory (owner-only;
/// removed when dropped, and by the next start if the process died first): the import reads
/// them four times, and the file given may be a pipe, or change meanwhile.
pub struct Spool {
    path: PathBuf,
    dir: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// Bytes written, and when room was last looked at.
    written: u64,
    checked: u64,
}

/// The room a spool leaves on the disk of the database: the IdPs' writes go on meanwhile.
const SPOOL_RESERVE: u64 = 64 << 20;

impl Spool {
    pub async fn create(dir: &Path) -> std::io::Result<Spool> {
        let path = dir.join(format!(
            "import-{}.spool",
            crate::store::format_id(uuid::Uuid::now_v7().as_u128())
        ));
        let mut o = tokio::fs::OpenOptions::new();
        o.write(true).create_new(true).mode(0o600);
        let file = o.open(&path).await?;
        let spool = Spool {
            path,
            dir: dir.to_path_buf(),
            file: tokio::io::BufWriter::with_capacity(256 << 10, file),
            written: 0,
            checked: 0,
        };
        spool.room()?;
        Ok(spool)
    }

    /// The lines of `from`, as they are read.
    pub async fn fill_from<R>(&mut self, from: R) -> std::io::Result<()>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        let mut lines = BufReader::with_capacity(256 << 10, from).lines();
        while let Some(l) = lines.next_line().await? {
            self.push(&l).await?;
        }
        self.finish().await
    }

    pub(super) async fn push(&mut self, line: &str) -> std::io::Result<()> {
        self.file.write_all(line.as_bytes()).await?;
        self.file.write_all(b"\n").await?;
        self.written += line.len() as u64 + 1;
        if self.written - self.checked >= 4 << 20 {
            self.checked = self.written;
            self.room()?;
        }
        Ok(())
    }

    /// Refuses to go on once less than `SPOOL_RESERVE` is free.
    fn room(&self) -> std::io::Result<()> {
        let st = rustix::fs::statvfs(&self.dir)?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < SPOOL_RESERVE {
            return Err(std::io::Error::other(format!(
                "{} MB are free in {}, and an import keeps a copy of its file there while \
                 leaving {} MB for the database; free some space",
                free >> 20,
                self.dir.display(),
                SPOOL_RESERVE >> 20
            )));
        }
        Ok(())
    }

    pub async fn finish(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
