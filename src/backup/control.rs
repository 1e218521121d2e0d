//! The control socket: how `rapport backup` reaches a running server. sled lets one process
//! open the database, so while `rapport serve` runs, the command asks the server to write the
//! backup and receives it over `<data_dir>/control.sock`.
//!
//! Who may connect: the socket is created with mode 0600 inside the data directory (0700), so
//! only the service user and root reach it — the same people who can read the database files.
//! Nothing else is offered on it.
//!
//! Protocol: the client sends one line, `backup`; the server answers one line, `ok` or
//! `error: <message>`, and after `ok` the backup's bytes until it closes the connection. A server
//! that fails part-way closes the connection early; the client then has no trailer and says so.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::audit::Actor;
use crate::context::AppContext;

const SOCKET: &str = "control.sock";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that stops reading for this long loses its backup: the snapshot it holds open makes
/// every write save pre-images, and offboarding's purge waits for it.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the control socket of a data directory is.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// The control socket's accepting thread.
pub struct ControlHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    path: PathBuf,
}

impl std::fmt::Debug for ControlHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHandle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlHandle {
    /// Stops accepting and removes the socket (a backup in progress finishes first).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            tracing::error!("the control socket thread ended with a panic");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `<data_dir>/control.sock` (replacing a stale one: this process holds the database, so
/// no other server can be behind it) and serves it on a thread of its own.
pub fn spawn(context: Arc<AppContext>) -> std::io::Result<ControlHandle> {
    let path = socket_path(&context.config.storage.data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("control".to_owned())
        .spawn(move || {
            while !thread_stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(error) = serve_one(&context, &stream) {
                            tracing::warn!(%error, "a control socket request failed");
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the control socket could not accept");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        })?;
    Ok(ControlHandle { stop, thread, path })
}

fn serve_one(context: &AppContext, stream: &UnixStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(STALL_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(stream.take(64)).read_line(&mut line)?;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stream);
    if line.trim() != "backup" {
        writeln!(
            out,
            "error: unknown request (this server understands `backup`)"
        )?;
        return out.flush();
    }
    out.write_all(b"ok\n")?;
    tracing::info!("online backup requested through the control socket");
    match super::write(context, out, Actor::cli(), &mut |_| {}) {
        Ok((mut out, written)) => {
            out.flush()?;
            context.backups.record_success(written.created);
            tracing::info!(
                records = written.totals.records,
                bytes = written.bytes,
                "online backup sent"
            );
            Ok(())
        }
        Err(error) => {
            // The client sees the stream end without a trailer; the reason stays in this log
            // (error messages name paths and counts, never tenant content).
            tracing::error!(%error, "online backup failed");
            Ok(())
        }
    }
}

/// Asks the server running on `data_dir` for a backup and copies it to `out`. `Ok(false)`: no
/// server is listening there (no socket, or nobody behind it).
pub fn request_backup(data_dir: &Path, out: &mut impl Write) -> Result<bool, String> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false)
        }
        Err(error) => {
            return Err(format!(
                "cannot reach the running server at {}: {error}",
                path.display()
            ))
        }
    };
    (&stream)
        .write_all(b"backup\n")
        .map_err(|error| format!("cannot ask the running server for a backup: {error}"))?;
    let mut reader = BufReader::with_capacity(1024 * 1024, &stream);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .map_err(|error| format!("the running server did not answer: {error}"))?;
    match status.trim_end() {
        "ok" => {}
        other => {
            return Err(format!(
                "the running server refused the backup: {}",
                other.strip_prefix("error: ").unwrap_or(other)
            ))
        }
    }
    std::io::copy(&mut reader, out)
        .map_err(|error| format!("the backup stream broke off: {error}"))?;
    Ok(true)
}
