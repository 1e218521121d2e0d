//! Sealed byte streams: the `chacha20poly1305` crate's STREAM construction (XChaCha20-Poly1305,
//! `EncryptorBE32`: a 19-byte nonce prefix, a 32-bit chunk counter and a last-chunk flag inside
//! the nonce), in chunks of 64 KiB, with the same associated data bound to every chunk. Truncation,
//! reordering, a dropped chunk and an altered byte are all detected. Nothing here is new
//! cryptography: it frames the crate's primitive for files and sockets.
//!
//! On the wire each chunk is `length (u32, big-endian, of what follows) || last (one byte, 0 or 1)
//! || ciphertext and tag`. The flag only tells the reader which of STREAM's two opening calls to
//! make; STREAM itself authenticates it, so a flipped flag does not open. After the last chunk the
//! reader stops, so a stream can be followed by other bytes (a backup's trailer).
//!
//! Used by the upload spool (`ingest::spool`) and by backups (`backup`).

use std::io::{Read, Write};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;

use super::SecretKey;

/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// The Poly1305 tag after each chunk's ciphertext.
pub const TAG: usize = 16;
/// Bytes in front of each chunk: its length and its last flag.
pub const FRAME: usize = 5;
/// STREAM's nonce prefix for `XChaCha20` (24 bytes less the 4-byte counter and 1-byte last flag).
pub const NONCE_PREFIX: usize = 19;

fn cipher(key: &SecretKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.expose_bytes().into())
}

fn broken(_: chacha20poly1305::aead::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "a sealed chunk does not open (altered, reordered or cut short)",
    )
}

fn finished() -> std::io::Error {
    std::io::Error::other("the sealed stream is already finished")
}

/// Seals what is written to it into `inner`, chunk by chunk. Call [`SealingWriter::finish`]:
/// without it the stream has no last chunk and no reader accepts it.
pub struct SealingWriter<W: Write> {
    inner: W,
    encryptor: Option<EncryptorBE32<XChaCha20Poly1305>>,
    associated_data: Vec<u8>,
    /// Plaintext not sealed yet: up to one chunk is held back, since only the end tells which
    /// chunk is the last.
    pending: Vec<u8>,
    plaintext_bytes: u64,
    sealed_bytes: u64,
}

impl<W: Write> SealingWriter<W> {
    pub fn new(
        inner: W,
        key: &SecretKey,
        nonce: &[u8; NONCE_PREFIX],
        associated_data: &[u8],
    ) -> Self {
        Self {
            inner,
            encryptor: Some(EncryptorBE32::from_aead(cipher(key), nonce.into())),
            associated_data: associated_data.to_vec(),
            pending: Vec::with_capacity(2 * CHUNK),
            plaintext_bytes: 0,
            sealed_bytes: 0,
        }
    }

    /// How many plaintext bytes were written so far.
    pub fn plaintext_bytes(&self) -> u64 {
        self.plaintext_bytes
    }

    /// How many bytes went to the inner writer so far.
    pub fn sealed_bytes(&self) -> u64 {
        self.sealed_bytes
    }

    fn emit(&mut self, last: bool, sealed: &[u8]) -> std::io::Result<()> {
        let length = u32::try_from(sealed.len() + 1).map_err(std::io::Error::other)?;
        self.inner.write_all(&length.to_be_bytes())?;
        self.inner.write_all(&[u8::from(last)])?;
        self.inner.write_all(sealed)?;
        self.sealed_bytes += (FRAME + sealed.len()) as u64;
        Ok(())
    }

    /// Seals the last chunk, flushes, and gives the inner writer back.
    pub fn finish(mut self) -> std::io::Result<W> {
        let encryptor = self.encryptor.take().ok_or_else(finished)?;
        let last = encryptor
            .encrypt_last(Payload {
                msg: &self.pending,
                aad: &self.associated_data,
            })
            .map_err(broken)?;
        self.emit(true, &last)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        self.plaintext_bytes += bytes.len() as u64;
        let mut start = 0;
        while self.pending.len() - start > CHUNK {
            let encryptor = self.encryptor.as_mut().ok_or_else(finished)?;
            let sealed = encryptor
                .encrypt_next(Payload {
                    msg: &self.pending[start..start + CHUNK],
                    aad: &self.associated_data,
                })
                .map_err(broken)?;
            self.emit(false, &sealed)?;
            start += CHUNK;
        }
        self.pending.drain(..start);
        Ok(bytes.len())
    }

    /// Flushes the inner writer; the held-back chunk waits for more bytes or for `finish`.
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a stream written by [`SealingWriter`]; a chunk that does not authenticate, or a stream
/// that ends before its last chunk, is a read error. Reads nothing past the last chunk.
pub struct OpeningReader<R: Read> {
    inner: R,
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    associated_data: Vec<u8>,
    plain: Vec<u8>,
    position: usize,
}

impl<R: Read> OpeningReader<R> {
    pub fn new(
        inner: R,
        key: &SecretKey,
        nonce: &[u8; NONCE_PREFIX],
        associated_data: &[u8],
    ) -> Self {
        Self {
            inner,
            decryptor: Some(DecryptorBE32::from_aead(cipher(key), nonce.into())),
            associated_data: associated_data.to_vec(),
            plain: Vec::new(),
            position: 0,
        }
    }

    /// The inner reader, positioned just after the last chunk once everything was read.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn next_chunk(&mut self) -> std::io::Result<()> {
        let cut_short = |error: std::io::Error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the sealed stream ends before its last chunk (cut short)",
                )
            } else {
                error
            }
        };
        let mut frame = [0u8; FRAME];
        self.inner.read_exact(&mut frame).map_err(cut_short)?;
        let length = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        if !(1 + TAG..=1 + CHUNK + TAG).contains(&length) {
            return Err(broken(chacha20poly1305::aead::Error));
        }
        let mut sealed = vec![0u8; length - 1];
        self.inner.read_exact(&mut sealed).map_err(cut_short)?;
        let payload = Payload {
            msg: &sealed,
            aad: &self.associated_data,
        };
        self.plain = match frame[4] {
            0 => self
                .decryptor
                .as_mut()
                .ok_or_else(finished)?
                .decrypt_next(payload),
            1 => self
                .decryptor
                .take()
                .ok_or_else(finished)?
                .decrypt_last(payload),
            _ => return Err(broken(chacha20poly1305::aead::Error)),
        }
        .map_err(broken)?;
        self.position = 0;
        Ok(())
    }
}

impl<R: Read> Read for OpeningReader<R> {
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
    use crate::crypto::random_bytes;

    fn seal(key: &SecretKey, nonce: &[u8; NONCE_PREFIX], data: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut writer = SealingWriter::new(Vec::new(), key, nonce, aad);
        for piece in data.chunks(10_000) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    fn open(
        key: &SecretKey,
        nonce: &[u8; NONCE_PREFIX],
        sealed: &[u8],
        aad: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut back = Vec::new();
        OpeningReader::new(sealed, key, nonce, aad).read_to_end(&mut back)?;
        Ok(back)
    }

    #[test]
    fn streams_round_trip_at_every_chunk_boundary_and_stop_after_the_last_chunk() {
        let key = SecretKey::generate();
        let nonce = random_bytes::<NONCE_PREFIX>();
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let mut sealed = seal(&key, &nonce, &data, b"aad");
            assert_eq!(
                sealed.len(),
                size.div_ceil(CHUNK).max(1) * (TAG + FRAME) + size
            );
            if size > 64 {
                assert!(!sealed.windows(64).any(|w| w == &data[..64]));
            }
            sealed.extend_from_slice(b"trailer");
            let mut reader = OpeningReader::new(sealed.as_slice(), &key, &nonce, b"aad");
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "size {size}");
            assert_eq!(reader.into_inner(), b"trailer");
        }
    }

    #[test]
    fn an_altered_cut_or_rebound_stream_does_not_open() {
        let key = SecretKey::generate();
        let nonce = random_bytes::<NONCE_PREFIX>();
        let data = vec![7u8; 2 * CHUNK + 5];
        let sealed = seal(&key, &nonce, &data, b"aad");
        let mut altered = sealed.clone();
        altered[FRAME + 10] ^= 1;
        assert!(open(&key, &nonce, &altered, b"aad").is_err());
        // The first chunk passed off as the last.
        let mut flagged = sealed.clone();
        flagged[4] = 1;
        assert!(open(&key, &nonce, &flagged, b"aad").is_err());
        // Cut after the first chunk, and cut inside the last.
        let first = FRAME + CHUNK + TAG;
        let error = open(&key, &nonce, &sealed[..first], b"aad").unwrap_err();
        assert!(error.to_string().contains("cut short"), "{error}");
        assert!(open(&key, &nonce, &sealed[..sealed.len() - 1], b"aad").is_err());
        // Other associated data, another key.
        assert!(open(&key, &nonce, &sealed, b"other").is_err());
        assert!(open(&SecretKey::generate(), &nonce, &sealed, b"aad").is_err());
        assert_eq!(open(&key, &nonce, &sealed, b"aad").unwrap(), data);
    }
}
