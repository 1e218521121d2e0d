//! The systemd unit (`systemd-analyze verify` and `security`) and the readiness notification that
//! its `Type=notify` relies on. The packages themselves are linted and install-tested by
//! `make test` (scripts/package.sh --test-build, lintian, rpmlint, packaging/install-test.sh).

use std::io::Read as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::helpers::{cli_instance, free_port};

/// The exposure `systemd-analyze security` may give the unit at most (0 is best, 10 worst).
const MAX_EXPOSURE: f64 = 2.0;

fn unit_source() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/rapport.service"
    ))
    .unwrap()
}

/// A copy of the unit whose `ExecStart` names the binary this build made, since `verify` checks that
/// the command exists and the package's /usr/bin/rapport is not installed here.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let source = unit_source();
    let packaged = "ExecStart=/usr/bin/rapport serve";
    assert_eq!(
        source.matches(packaged).count(),
        1,
        "the unit has no single `{packaged}` line"
    );
    let unit = dir.join("rapport.service");
    std::fs::write(
        &unit,
        source.replace(
            packaged,
            &format!("ExecStart={} serve", env!("CARGO_BIN_EXE_rapport")),
        ),
    )
    .unwrap();
    unit
}

fn systemd_analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run systemd-analyze ({error}); it checks the unit file: install it with \
                 scripts/install-deps.sh --test (Debian package `systemd`)"
            )
        })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let output = systemd_analyze(&["verify", unit.to_str().unwrap()]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        !printed.contains("rapport.service"),
        "systemd-analyze verify complains about the unit:\n{printed}"
    );
}

#[test]
fn the_unit_is_notify_hardened_and_rated_at_most_2_by_systemd_analyze_security() {
    let source = unit_source();
    for line in [
        "Type=notify",
        "WatchdogSec=2min",
        "LoadCredential=master-key:/etc/rapport/master.key",
        "StateDirectory=rapport",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(source.lines().any(|l| l == line), "the unit lacks `{line}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let output = systemd_analyze(&["security", "--offline=true", unit.to_str().unwrap()]);
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    let marker = "Overall exposure level for rapport.service: ";
    let exposure: f64 = printed
        .lines()
        .find_map(|line| line.split_once(marker).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{printed}"));
    assert!(
        exposure <= MAX_EXPOSURE,
        "systemd-analyze security rates the unit {exposure}, more than {MAX_EXPOSURE}:\n{printed}"
    );
}

/// Waits for one datagram on `socket`, failing after `limit`.
fn receive(socket: &UnixDatagram, limit: Duration) -> String {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buffer = [0_u8; 4096];
    let length = socket
        .recv(&mut buffer)
        .unwrap_or_else(|error| panic!("no notification within {limit:?}: {error}"));
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

/// `rapport serve` on a fresh instance on a free port, with `NOTIFY_SOCKET` bound here and `env`
/// added; returns the server, the notify socket, the port and the instance's directory.
fn serve_notifying(env: &[(&str, &str)]) -> (Child, UnixDatagram, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = cli_instance(dir.path(), port);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .envs(env.iter().copied())
        .env_remove("WATCHDOG_PID")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RAPPORT_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (server, socket, port, dir)
}

/// Sends SIGTERM to `server`; `wait` runs while it stops. Returns its status and its log.
fn stop_server<T>(mut server: Child, wait: impl FnOnce() -> T) -> (T, ExitStatus, String) {
    let stop = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let waited = wait();
    let status = server.wait().unwrap();
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    (waited, status, log)
}

#[test]
fn serve_tells_systemd_it_is_ready_once_it_answers_and_when_it_stops() {
    let (server, socket, port, _dir) = serve_notifying(&[]);
    let ready = receive(&socket, Duration::from_secs(60));
    // READY=1 comes after the port is bound and the database open: a connection succeeds now. It
    // is closed at once, or the graceful shutdown below would wait for it.
    let connected = std::net::TcpStream::connect(("127.0.0.1", port)).map(drop);
    let (stopping, status, log) = stop_server(server, || receive(&socket, Duration::from_secs(30)));

    assert!(
        ready.lines().any(|line| line == "READY=1"),
        "{ready:?}\n{log}"
    );
    assert!(
        connected.is_ok(),
        "READY=1 came before the port answered: {connected:?}\n{log}"
    );
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping:?}\n{log}"
    );
    assert!(status.success(), "serve exited with {status}:\n{log}");
}

#[test]
fn serve_pings_the_systemd_watchdog_when_asked() {
    // A period of 0.4 s: a heartbeat and a ping every 0.2 s.
    let (server, socket, _port, _dir) = serve_notifying(&[("WATCHDOG_USEC", "400000")]);
    let ready = receive(&socket, Duration::from_secs(60));
    let pings = (0..4)
        .map(|_| receive(&socket, Duration::from_secs(10)))
        .filter(|message| message.lines().any(|line| line == "WATCHDOG=1"))
        .count();
    let ((), status, log) = stop_server(server, || ());

    assert!(
        ready.lines().any(|line| line == "READY=1"),
        "{ready:?}\n{log}"
    );
    assert_eq!(pings, 4, "four WATCHDOG=1 after READY=1:\n{log}");
    assert!(status.success(), "serve exited with {status}:\n{log}");
}
