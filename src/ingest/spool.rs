//! The sealed upload spool: an uploaded file waits for its import under `<data_dir>/spool/`, but
//! never in plaintext (PRODUCT.md, promise 1). Each upload is sealed as it arrives with a fresh
//! random key that exists only in this process's memory, as a sealed stream
//! ([`crate::crypto::stream`]: XChaCha20-Poly1305 STREAM in 64 KiB chunks, the last chunk marked,
//! so truncation and reordering are detected).
//!
//! The import reads the spool back (twice) through [`SpoolReader`]. The file is removed when the
//! [`SealedSpool`] is dropped, and a half-written one when its [`SpoolWriter`] is dropped. Files
//! left by a crash cannot be opened by anyone (their key died with the process); the next start
//! removes them ([`purge`]).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::crypto::stream::{OpeningReader, SealingWriter, CHUNK, FRAME, NONCE_PREFIX, TAG};
use crate::crypto::{random_bytes, SecretKey};
use crate::ingest::ImportSource;

/// The spool folder under the data directory.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join("spool")
}

/// Removes every spool file. Only called when the database is opened, when no import runs (one
/// process opens the database), so every file there is a leftover nobody can read.
pub fn purge(data_dir: &Path) -> std::io::Result<usize> {
    let folder = directory(data_dir);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if path.is_file() {
            std::fs::remove_file(path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn finished() -> std::io::Error {
    std::io::Error::other("the spool is already finished")
}

/// Seals an upload into a new spool file as its bytes arrive.
pub struct SpoolWriter {
    path: PathBuf,
    key: SecretKey,
    nonce: [u8; NONCE_PREFIX],
    sealer: Option<SealingWriter<BufWriter<File>>>,
}

impl SpoolWriter {
    /// Creates a spool file (mode 0600, in a 0700 folder) under a random name.
    pub fn create(data_dir: &Path) -> std::io::Result<Self> {
        let folder = directory(data_dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)?;
        let path = folder.join(format!("{}.sealed", hex::encode(random_bytes::<16>())));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let key = SecretKey::generate();
        let nonce = random_bytes::<NONCE_PREFIX>();
        let sealer = SealingWriter::new(
            BufWriter::with_capacity(CHUNK + TAG + FRAME, file),
            &key,
            &nonce,
            b"",
        );
        Ok(Self {
            path,
            key,
            nonce,
            sealer: Some(sealer),
        })
    }

    /// Seals and writes `bytes`, keeping back the tail that may be the last chunk.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sealer.as_mut().ok_or_else(finished)?.write_all(bytes)
    }

    /// How many plaintext bytes were written so far.
    pub fn plaintext_bytes(&self) -> u64 {
        self.sealer
            .as_ref()
            .map_or(0, SealingWriter::plaintext_bytes)
    }

    /// Seals the last chunk and hands the spool over for reading.
    pub fn finish(mut self) -> std::io::Result<SealedSpool> {
        let sealer = self.sealer.take().ok_or_else(finished)?;
        let plaintext_bytes = sealer.plaintext_bytes();
        let mut file = sealer.finish()?;
        file.flush()?;
        let sealed_bytes = file.get_ref().metadata()?.len();
        drop(file);
        // The spool now belongs to the SealedSpool, which removes it when dropped.
        let path = std::mem::take(&mut self.path);
        Ok(SealedSpool {
            path,
            key: self.key.clone(),
            nonce: self.nonce,
            plaintext_bytes,
            sealed_bytes,
        })
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // An upload cut off or refused: its partial spool goes (finish() left no path behind).
        if !self.path.as_os_str().is_empty() {
            self.sealer.take();
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(%error, "partial upload spool not removed");
            }
        }
    }
}

/// A complete sealed upload, readable any number of times while this value lives.
pub struct SealedSpool {
    path: PathBuf,
    key: SecretKey,
    nonce: [u8; NONCE_PREFIX],
    plaintext_bytes: u64,
    sealed_bytes: u64,
}

impl SealedSpool {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn plaintext_bytes(&self) -> u64 {
        self.plaintext_bytes
    }

    /// A reader of the plaintext from the first byte.
    pub fn reader(&self) -> std::io::Result<SpoolReader> {
        let file = File::open(&self.path)?;
        if file.metadata()?.len() != self.sealed_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the upload spool changed size after it was sealed",
            ));
        }
        Ok(OpeningReader::new(
            BufReader::with_capacity(CHUNK + TAG + FRAME, file),
            &self.key,
            &self.nonce,
            b"",
        ))
    }
}

impl ImportSource for SealedSpool {
    fn open(&self) -> std::io::Result<(Box<dyn Read>, u64)> {
        Ok((Box::new(self.reader()?), self.plaintext_bytes))
    }
}

impl Drop for SealedSpool {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(%error, "upload spool not removed");
        }
    }
}

/// Decrypts a spool chunk by chunk; a chunk that does not authenticate is a read error.
pub type SpoolReader = OpeningReader<BufReader<File>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(size: usize) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let mut writer = SpoolWriter::create(dir.path()).unwrap();
        for piece in data.chunks(10_000) {
            writer.write(piece).unwrap();
        }
        let spool = writer.finish().unwrap();
        let on_disk = std::fs::read(spool.path()).unwrap();
        assert_eq!(
            on_disk.len(),
            size.div_ceil(CHUNK).max(1) * (TAG + FRAME) + size
        );
        if size > 64 {
            assert!(!on_disk.windows(64).any(|w| w == &data[..64]));
        }
        for _ in 0..2 {
            let mut back = Vec::new();
            spool.reader().unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "size {size}");
        }
        let path = spool.path().to_path_buf();
        drop(spool);
        assert!(!path.exists());
    }

    #[test]
    fn spools_round_trip_at_every_chunk_boundary() {
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7] {
            round_trip(size);
        }
    }

    #[test]
    fn a_truncated_or_altered_spool_does_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::create(dir.path()).unwrap();
        writer.write(&vec![7u8; 2 * CHUNK + 5]).unwrap();
        let spool = writer.finish().unwrap();
        let mut bytes = std::fs::read(spool.path()).unwrap();
        bytes[10] ^= 1;
        std::fs::write(spool.path(), &bytes).unwrap();
        let mut sink = Vec::new();
        assert!(spool.reader().unwrap().read_to_end(&mut sink).is_err());
        bytes[10] ^= 1;
        bytes.truncate(CHUNK + TAG + FRAME);
        std::fs::write(spool.path(), &bytes).unwrap();
        assert!(spool.reader().is_err());
    }

    #[test]
    fn a_dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::create(dir.path()).unwrap();
        writer.write(b"partial").unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(directory(dir.path())).unwrap().count(), 0);
    }
}
