//! The sealed upload spool: an uploaded file waits for its import under `<data_dir>/spool/`, but
//! never in plaintext (PRODUCT.md, promise 1). Each upload is sealed as it arrives with a fresh
//! random key that exists only in this process's memory, using the `chacha20poly1305` crate's
//! STREAM construction (XChaCha20-Poly1305, `EncryptorBE32`, 64 KiB chunks, the last chunk marked
//! as last, so truncation and reordering are detected). Nothing here is new cryptography: it only
//! composes the crate's primitives.
//!
//! The import reads the spool back (twice) through [`SpoolReader`]. The file is removed when the
//! [`SealedSpool`] is dropped, and a half-written one when its [`SpoolWriter`] is dropped. Files
//! left by a crash cannot be opened by anyone (their key died with the process); the next start
//! removes them ([`purge`]).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;

use crate::crypto::{random_bytes, SecretKey};
use crate::ingest::ImportSource;

/// Plaintext bytes per sealed chunk.
const CHUNK: usize = 64 * 1024;
/// The Poly1305 tag after each chunk's ciphertext.
const TAG: usize = 16;
/// STREAM's nonce prefix for `XChaCha20` (24 bytes less the 4-byte counter and 1-byte last flag).
const NONCE_PREFIX: usize = 19;

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

fn cipher(key: &SecretKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.expose_bytes().into())
}

fn sealing_error(_: chacha20poly1305::aead::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the upload spool does not open (altered or cut short)",
    )
}

/// Seals an upload into a new spool file as its bytes arrive.
pub struct SpoolWriter {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    key: SecretKey,
    nonce: [u8; NONCE_PREFIX],
    encryptor: Option<EncryptorBE32<XChaCha20Poly1305>>,
    /// Plaintext not sealed yet: up to one chunk is held back, since only the end of the upload
    /// tells which chunk is the last.
    pending: Vec<u8>,
    plaintext_bytes: u64,
    sealed_bytes: u64,
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
        let encryptor = EncryptorBE32::from_aead(cipher(&key), (&nonce).into());
        Ok(Self {
            path,
            file: Some(BufWriter::with_capacity(CHUNK + TAG, file)),
            key,
            nonce,
            encryptor: Some(encryptor),
            pending: Vec::with_capacity(2 * CHUNK),
            plaintext_bytes: 0,
            sealed_bytes: 0,
        })
    }

    fn emit(&mut self, sealed: &[u8]) -> std::io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the spool is already finished"))?;
        file.write_all(sealed)?;
        self.sealed_bytes += sealed.len() as u64;
        Ok(())
    }

    /// Seals and writes `bytes`, keeping back the tail that may be the last chunk.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(bytes);
        self.plaintext_bytes += bytes.len() as u64;
        let mut start = 0;
        while self.pending.len() - start > CHUNK {
            let encryptor = self
                .encryptor
                .as_mut()
                .ok_or_else(|| std::io::Error::other("the spool is already finished"))?;
            let sealed = encryptor
                .encrypt_next(&self.pending[start..start + CHUNK])
                .map_err(sealing_error)?;
            self.emit(&sealed)?;
            start += CHUNK;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// How many plaintext bytes were written so far.
    pub fn plaintext_bytes(&self) -> u64 {
        self.plaintext_bytes
    }

    /// Seals the last chunk and hands the spool over for reading.
    pub fn finish(mut self) -> std::io::Result<SealedSpool> {
        let encryptor = self
            .encryptor
            .take()
            .ok_or_else(|| std::io::Error::other("the spool is already finished"))?;
        let last = encryptor
            .encrypt_last(self.pending.as_slice())
            .map_err(sealing_error)?;
        self.emit(&last)?;
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        // The spool now belongs to the SealedSpool, which removes it when dropped.
        let path = std::mem::take(&mut self.path);
        Ok(SealedSpool {
            path,
            key: SecretKey::from_slice(self.key.expose_bytes())
                .map_err(|_| std::io::Error::other("spool key"))?,
            nonce: self.nonce,
            plaintext_bytes: self.plaintext_bytes,
            sealed_bytes: self.sealed_bytes,
        })
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // An upload cut off or refused: its partial spool goes (finish() left no path behind).
        if !self.path.as_os_str().is_empty() {
            self.file.take();
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
            return Err(sealing_error(chacha20poly1305::aead::Error));
        }
        Ok(SpoolReader {
            file: BufReader::with_capacity(CHUNK + TAG, file),
            decryptor: Some(DecryptorBE32::from_aead(
                cipher(&self.key),
                (&self.nonce).into(),
            )),
            remaining: self.sealed_bytes,
            plain: Vec::new(),
            position: 0,
        })
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
pub struct SpoolReader {
    file: BufReader<File>,
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    /// Sealed bytes not read yet; the chunk that reaches zero is the last one.
    remaining: u64,
    plain: Vec<u8>,
    position: usize,
}

impl SpoolReader {
    fn next_chunk(&mut self) -> std::io::Result<()> {
        let size = usize::try_from(self.remaining.min((CHUNK + TAG) as u64))
            .map_err(std::io::Error::other)?;
        let mut sealed = vec![0u8; size];
        self.file.read_exact(&mut sealed)?;
        self.remaining -= size as u64;
        self.plain = if self.remaining == 0 {
            let decryptor = self
                .decryptor
                .take()
                .ok_or_else(|| sealing_error(chacha20poly1305::aead::Error))?;
            decryptor.decrypt_last(sealed.as_slice())
        } else {
            let decryptor = self
                .decryptor
                .as_mut()
                .ok_or_else(|| sealing_error(chacha20poly1305::aead::Error))?;
            decryptor.decrypt_next(sealed.as_slice())
        }
        .map_err(sealing_error)?;
        self.position = 0;
        Ok(())
    }
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.position >= self.plain.len() {
            if self.decryptor.is_none() {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let available = &self.plain[self.position..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.position += count;
        Ok(count)
    }
}

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
        assert_eq!(on_disk.len(), size.div_ceil(CHUNK).max(1) * TAG + size);
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
        bytes.truncate(CHUNK + TAG);
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
