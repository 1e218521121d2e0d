//! Logging: structured lines on stdout (journald picks them up under systemd), text or JSON.
//! Log lines carry ids, routes, counts and durations — never tenant content.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The HTTP client of the remote inference backend dumps the bytes it sends and receives at trace
/// level (the `Authorization` header, the redacted text, the model's reply). Whatever level the
/// operator asks for, those crates log warnings only.
const QUIET_TARGETS: [&str; 2] = ["ureq", "ureq_proto"];

/// `level` as a filter, with [`QUIET_TARGETS`] capped at `warn`.
fn filter(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in QUIET_TARGETS {
        if let Ok(directive) = format!("{target}=warn").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber; a second call (tests start several servers) is ignored.
pub fn init(log: &LogConfig) {
    let filter = filter(&log.level);
    // Colour codes only for a person at a terminal; journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// For one-shot commands: warnings and errors only, on stderr, so stdout stays for output.
pub fn init_for_command() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_clients_byte_dumps_stay_off_at_any_level() {
        let shown = filter("trace,ureq_proto=trace").to_string();
        assert!(shown.contains("ureq_proto=warn"), "{shown}");
        assert!(!shown.contains("ureq_proto=trace"), "{shown}");
        assert!(shown.contains("ureq=warn"), "{shown}");
    }
}
