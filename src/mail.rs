//! The operator's SMTP relay (`[smtp]` in the configuration): the one place Rapport sends e-mail.
//!
//! Off unless the operator configured the table; then every message goes through lettre's
//! synchronous `SmtpTransport` (rustls with ring, the system's roots) to that one relay, which
//! delivers it. No connection is opened at start or by `rapport check`: only a send connects.
//! A failed send is described by its class (connection, TLS, sign-in, refused, timeout), never by
//! the relay's words or the message, which may echo addresses or content.

use std::path::Path;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport as _};
use zeroize::Zeroizing;

use crate::config::{SmtpConfig, SmtpTls};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("no SMTP relay is configured: the operator adds an [smtp] table to the configuration to allow sending")]
    NotConfigured,
    #[error("the SMTP configuration is not usable: {0}")]
    Invalid(String),
    #[error("SMTP password file {path}: {message}")]
    PasswordFile {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Why one message was not sent: the class only, safe for pages, logs and the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendFailure {
    /// The recipient address cannot be put in a message.
    InvalidAddress,
    /// The relay could not be reached (refused, unreachable, name not found).
    Connection,
    /// The TLS handshake or STARTTLS failed.
    Tls,
    /// The relay refused the sign-in.
    Authentication,
    /// The relay refused the message for now (4xx): sending again later may work.
    Transient,
    /// The relay refused the message (5xx), e.g. an unknown recipient.
    Permanent,
    /// The relay did not answer in time.
    Timeout,
    /// Anything else (the relay broke the protocol).
    Other,
}

impl SendFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidAddress => "invalid address",
            Self::Connection => "connection failed",
            Self::Tls => "TLS failed",
            Self::Authentication => "sign-in refused",
            Self::Transient => "refused for now (4xx)",
            Self::Permanent => "refused (5xx)",
            Self::Timeout => "timed out",
            Self::Other => "protocol error",
        }
    }
}

/// One message to send: plain text, one recipient.
#[derive(Clone, Debug)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// A relay ready to send (the password read from its file).
pub struct Relay {
    transport: SmtpTransport,
    from: Mailbox,
}

impl Relay {
    /// The relay the configuration names, or [`MailError::NotConfigured`].
    pub fn from_config(config: Option<&SmtpConfig>) -> Result<Self, MailError> {
        let config = config.ok_or(MailError::NotConfigured)?;
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(MailError::Invalid(problems.join("; ")));
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| MailError::Invalid("smtp.from is not an address".to_owned()))?;
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let parameters = TlsParameters::builder(config.host.clone())
                    .build_rustls()
                    .map_err(|_| MailError::Invalid("TLS parameters cannot be built".to_owned()))?;
                if config.tls == SmtpTls::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(config.host.clone())
            .port(config.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(config.timeout_seconds)));
        if let (Some(username), Some(path)) = (&config.username, &config.password_file) {
            let password = read_password(path)?;
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.as_str().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one message; on failure says only which class of failure it was.
    pub fn send(&self, mail: &OutgoingMail) -> Result<(), SendFailure> {
        let to: Mailbox = mail.to.parse().map_err(|_| SendFailure::InvalidAddress)?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(single_line(&mail.subject))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|_| SendFailure::InvalidAddress)?;
        self.transport
            .send(&message)
            .map(|_| ())
            .map_err(|error| classify(&error))
    }
}

/// A subject never spans lines (a value substituted into it might).
pub fn single_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn classify(error: &lettre::transport::smtp::Error) -> SendFailure {
    if error.is_timeout() {
        SendFailure::Timeout
    } else if error.is_tls() {
        SendFailure::Tls
    } else if error.is_permanent() {
        if error.status().is_some_and(|code| code.to_string() == "535") {
            SendFailure::Authentication
        } else {
            SendFailure::Permanent
        }
    } else if error.is_transient() {
        SendFailure::Transient
    } else if error.is_client() || error.is_response() {
        SendFailure::Other
    } else {
        SendFailure::Connection
    }
}

fn read_password(path: &Path) -> Result<Zeroizing<String>, MailError> {
    use std::os::unix::fs::PermissionsExt as _;
    let problem = |message: String| MailError::PasswordFile {
        path: path.to_path_buf(),
        message,
    };
    let metadata = std::fs::metadata(path).map_err(|error| problem(error.to_string()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(problem(format!(
            "mode {mode:o} lets every local user read it; use 0600 or 0640"
        )));
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|error| problem(error.to_string()))?);
    let password = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned());
    if password.is_empty() {
        return Err(problem("is empty".to_owned()));
    }
    Ok(password)
}

/// What `rapport check` says about the relay: a note, or a problem.
pub fn check(config: Option<&SmtpConfig>) -> Result<String, String> {
    let Some(smtp) = config else {
        return Ok("SMTP relay is off: feedback requests can be exported, not sent".to_owned());
    };
    match Relay::from_config(Some(smtp)) {
        Ok(_) => Ok(format!(
            "SMTP relay {}:{} ({}{}) is configured; no connection is made until a send",
            smtp.host,
            smtp.port,
            smtp.tls.as_str(),
            if smtp.username.is_some() {
                ", with sign-in"
            } else {
                ""
            }
        )),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(tls: SmtpTls) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port: 2525,
            tls,
            from: "Acme <fb@acme.example>".to_owned(),
            username: None,
            password_file: None,
            timeout_seconds: 5,
        }
    }

    #[test]
    fn the_relay_is_refused_when_absent_and_built_when_configured() {
        assert!(matches!(
            Relay::from_config(None),
            Err(MailError::NotConfigured)
        ));
        for tls in [SmtpTls::None, SmtpTls::Starttls, SmtpTls::Tls] {
            assert!(Relay::from_config(Some(&smtp(tls))).is_ok());
        }
        assert!(check(None).unwrap().contains("off"));
        assert!(check(Some(&smtp(SmtpTls::None)))
            .unwrap()
            .contains("127.0.0.1:2525"));
    }

    #[test]
    fn an_open_password_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp-password");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut config = smtp(SmtpTls::Starttls);
        config.username = Some("rapport".to_owned());
        config.password_file = Some(path.clone());
        let error = check(Some(&config)).unwrap_err();
        assert!(error.contains("0600"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check(Some(&config)).unwrap().contains("with sign-in"));
    }

    #[test]
    fn subjects_are_one_line() {
        assert_eq!(single_line(" Hi\r\nBcc: x@y.z\n"), "Hi Bcc: x@y.z");
    }

    #[test]
    fn an_unreachable_relay_is_a_connection_failure() {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = smtp(SmtpTls::None);
        config.port = port;
        let relay = Relay::from_config(Some(&config)).unwrap();
        let outcome = relay.send(&OutgoingMail {
            to: "jo@example.org".to_owned(),
            subject: "s".to_owned(),
            body: "b".to_owned(),
        });
        assert_eq!(outcome, Err(SendFailure::Connection));
        let outcome = relay.send(&OutgoingMail {
            to: "not an address".to_owned(),
            subject: "s".to_owned(),
            body: "b".to_owned(),
        });
        assert_eq!(outcome, Err(SendFailure::InvalidAddress));
    }
}
