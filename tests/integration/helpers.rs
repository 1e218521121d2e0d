//! `TestApp`: the real server on a loopback port with a temporary data directory, plus helpers
//! that act like a browser (cookies kept, redirects not followed) and like the command line.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use actix_web::web::Data;
use rapport::audit::Actor;
use rapport::config::Config;
use rapport::context::AppContext;
use rapport::init::{self, InitOptions};
use rapport::store::OpenMode;
use rapport::tenants::{self, Tenant};
use rapport::users::{self, Email, NewUser, Role, User};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use secrecy::SecretString;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub context: Data<AppContext>,
    pub data_dir: PathBuf,
    certificate: Option<reqwest::Certificate>,
    /// Removed (with the database) when the app is dropped.
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// The server over TLS, as deployed. Call it inside a Tokio runtime (`#[tokio::test]`).
    pub fn spawn() -> Self {
        Self::spawn_with(true)
    }

    /// The server over plain HTTP (a `--no-tls` set-up).
    pub fn spawn_plain() -> Self {
        Self::spawn_with(false)
    }

    /// The server over TLS, with `configure` applied to its configuration first (it gets the
    /// configuration and the temporary directory, for files the configuration names).
    pub fn spawn_configured(configure: impl FnOnce(&mut Config, &Path)) -> Self {
        Self::spawn_inner(true, configure)
    }

    fn spawn_with(tls: bool) -> Self {
        Self::spawn_inner(tls, |_, _| {})
    }

    fn spawn_inner(tls: bool, configure: impl FnOnce(&mut Config, &Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("etc").join("rapport.toml");
        let data_dir = dir.path().join("data");
        init::run(&InitOptions {
            config_path: config_path.clone(),
            data_dir: data_dir.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls,
        })
        .unwrap();
        let mut config = Config::load(&config_path).unwrap();
        // A low reserve so a nearly full build machine does not refuse the tests' writes.
        config.storage.min_free_disk_mib = 1;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        config.server.listen = listener.local_addr().unwrap();
        config.server.workers = 2;
        configure(&mut config, dir.path());
        let certificate =
            config.server.tls.as_ref().map(|tls| {
                reqwest::Certificate::from_pem(&std::fs::read(&tls.cert).unwrap()).unwrap()
            });
        let context = Data::new(AppContext::open(config, OpenMode::ExistingOnly).unwrap());
        let server = rapport::web::serve(context.clone(), listener).unwrap();
        tokio::spawn(server);
        let scheme = if tls { "https" } else { "http" };
        let mut app = Self {
            address: format!("{scheme}://127.0.0.1:{port}"),
            client: Client::new(),
            context,
            data_dir,
            certificate,
            _dir: dir,
        };
        app.client = app.new_client();
        app
    }

    /// A fresh browser: its own cookie jar, no redirect following, trusting the test certificate.
    pub fn new_client(&self) -> Client {
        let mut builder = Client::builder()
            .cookie_store(true)
            .redirect(Policy::none());
        if let Some(certificate) = &self.certificate {
            builder = builder
                .add_root_certificate(certificate.clone())
                .https_only(true);
        }
        builder.build().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn create_tenant(&self, slug: &str) -> Tenant {
        tenants::create_tenant(
            &self.context,
            Actor::cli(),
            None,
            slug,
            &format!("Tenant {slug}"),
        )
        .unwrap()
    }

    pub fn create_user(&self, email: &str, role: Role, tenant: Option<&Tenant>) -> User {
        self.create_user_with(email, role, tenant, false)
    }

    pub fn create_user_with(
        &self,
        email: &str,
        role: Role,
        tenant: Option<&Tenant>,
        temporary: bool,
    ) -> User {
        users::create_user(
            &self.context,
            Actor::cli(),
            None,
            NewUser {
                email: Email::parse(email).unwrap(),
                role,
                tenant: tenant.map(|t| t.id),
                password: SecretString::from(PASSWORD.to_owned()),
                must_change_password: temporary,
            },
        )
        .unwrap()
    }

    pub async fn get(&self, client: &Client, path: &str) -> Response {
        client.get(self.url(path)).send().await.unwrap()
    }

    /// Signs in through the form, as a browser does (CSRF token from the page).
    pub async fn login(&self, client: &Client, email: &str, password: &str) -> Response {
        let page = self.get(client, "/login").await.text().await.unwrap();
        let token = csrf_in(&page);
        client
            .post(self.url("/login"))
            .form(&[
                ("csrf", token.as_str()),
                ("email", email),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Signs in and checks that the password was accepted.
    pub async fn signed_in_client(&self, email: &str) -> Client {
        let client = self.new_client();
        let response = self.login(&client, email, PASSWORD).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "sign-in of {email} failed"
        );
        client
    }

    /// The session's CSRF token, read from a page that every signed-in session can open.
    pub async fn csrf(&self, client: &Client) -> String {
        let page = self
            .get(client, "/account/password")
            .await
            .text()
            .await
            .unwrap();
        csrf_in(&page)
    }

    /// Posts a form with the session's CSRF token added.
    pub async fn post_form(
        &self,
        client: &Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let token = self.csrf(client).await;
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        client.post(self.url(path)).form(&all).send().await.unwrap()
    }
}

/// The value of the first `name="csrf"` hidden field in a page.
pub fn csrf_in(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field in page:\n{page}"))
        + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

pub fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Runs the real `rapport` binary.
pub fn rapport(args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rapport"));
    command
        .args(args)
        .env_remove("RAPPORT_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write as _;
        // A command that refuses its arguments exits before reading; its pipe is then closed.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `rapport serve --config CONFIG` as a child process, its output discarded.
pub fn serve(config: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "--config", config])
        .env_remove("RAPPORT_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A data directory initialised by `rapport init` (plain HTTP, given port).
pub fn cli_instance(dir: &Path, port: u16) -> PathBuf {
    let config = dir.join("rapport.toml");
    let output = rapport(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.join("data").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-tls",
        ],
        None,
    );
    assert!(output.status.success(), "init failed: {}", stderr(&output));
    config
}

/// The instance of `config_path` opened in this process (its server must not be running).
pub fn open_context(config_path: &Path) -> AppContext {
    let mut config = rapport::config::Config::load(config_path).unwrap();
    config.storage.min_free_disk_mib = 1;
    AppContext::open(config, rapport::store::OpenMode::ExistingOnly).unwrap()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// A loopback port that is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Chooses the `off` backend (deterministic analyzers) for `tenant`: fast analysis tests.
pub fn use_off_backend(context: &AppContext, tenant: rapport::ids::TenantId) {
    rapport::inference::store::AnalysisSettingsStore::new(context.store.clone())
        .save(
            tenant,
            &rapport::inference::store::AnalysisSettings {
                backend: rapport::inference::BackendKind::Off,
                model_sha256: None,
                remote: None,
            },
        )
        .unwrap();
}

/// Writes `record` as the API does (create or update by source id, audited, queued).
pub fn write_interaction(
    context: &AppContext,
    tenant: rapport::ids::TenantId,
    record: rapport::interactions::InteractionRecord,
) -> rapport::interactions::Interaction {
    rapport::api::resources::write_record(context, &Actor::cli(), None, tenant, "api", record)
        .unwrap()
        .0
}

/// Runs the tenant's analysis queue in the foreground until nothing is queued.
pub fn run_queue(
    context: &AppContext,
    tenant: rapport::ids::TenantId,
) -> rapport::analysis::worker::Totals {
    let mut cache = rapport::analysis::worker::BackendCache::default();
    rapport::analysis::worker::run_until_idle(context, &mut cache, tenant, &mut |_, _| {}).unwrap()
}

/// Text as the templates escape it (askama writes numeric character references).
pub fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Imports `path` through the real import engine, asserts the run committed, and queues its
/// interactions for analysis, as `rapport import` and the console's upload do.
pub fn import_committed(
    context: &AppContext,
    tenant: &Tenant,
    format: rapport::ingest::ImportFormat,
    path: &Path,
) {
    let run = rapport::ingest::import_file(
        context,
        &rapport::ingest::ImportRequest {
            actor: &Actor::cli(),
            tenant,
            format,
            path,
            skip_invalid: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        run.state,
        rapport::ingest::ImportState::Committed,
        "{run:?}"
    );
    rapport::analysis::enqueue_after_import(context, tenant.id, &run);
}

/// Writes `body` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// A file that has one record fewer when it is read the second time: the import's pass 2 writes
/// its records, sees the difference and rolls the run back.
pub struct ShrinkingSource {
    pub whole: PathBuf,
    pub short: PathBuf,
    pub opened: std::cell::Cell<u32>,
}

impl rapport::ingest::ImportSource for ShrinkingSource {
    fn open(&self) -> std::io::Result<(Box<dyn std::io::Read>, u64)> {
        let count = self.opened.get();
        self.opened.set(count + 1);
        let file = std::fs::File::open(if count == 0 { &self.whole } else { &self.short })?;
        let length = file.metadata()?.len();
        Ok((Box::new(file), length))
    }
}
