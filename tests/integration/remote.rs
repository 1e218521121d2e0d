//! The `remote` backend against a fake OpenAI-compatible endpoint on a loopback port, over TLS with
//! a certificate from a test CA (rcgen) that the backend is given: what leaves is redacted and
//! what comes back is restored, retries and their limits, timeouts, and the tenant admin's page.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rapport::analysis::worker::BackendCache;
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::inference::remote::{
    RemoteBackend, RemoteError, RemoteInput, RemoteSettings, REMOTE_PROMPT_VERSION,
};
use rapport::inference::settings::{self, AnalysisChoice};
use rapport::inference::store::AnalysisSettingsStore;
use rapport::inference::{
    open_tenant_backend, Backend, BackendKind, InferenceError, LabelSet, TaskKind,
};
use rapport::ingest::{self, ImportFormat, ImportRequest, ImportState};
use rapport::pii::{Detector, DetectorOptions};
use rapport::users::Role;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{location, TestApp};

const API_KEY: &str = "sk-test-0123456789abcdef";

/// A test CA and a server certificate it signed for 127.0.0.1.
struct TestPki {
    ca_pem: String,
    server_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    server_key: rustls_pki_types::PrivateKeyDer<'static>,
}

fn test_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Rapport test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server_chain: vec![server.der().clone()],
        server_key: rustls_pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    }
}

/// What the fake endpoint answers to one request.
#[derive(Clone)]
enum Answer {
    /// The status and body, after a pause, with extra headers.
    Fixed {
        status: u16,
        body: String,
        delay: Duration,
        headers: Vec<(&'static str, String)>,
    },
    /// 200 with a chat completion whose content is `Echo: ` and the last user message.
    Echo,
}

fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43}
    })
    .to_string()
}

fn ok(content: &str) -> Answer {
    status(200, &completion(content))
}

fn status(code: u16, body: &str) -> Answer {
    Answer::Fixed {
        status: code,
        body: body.to_owned(),
        delay: Duration::ZERO,
        headers: Vec::new(),
    }
}

/// One request as the fake endpoint read it.
#[derive(Clone, Debug)]
struct Received {
    request_line: String,
    authorization: Option<String>,
    body: String,
}

/// An OpenAI-compatible endpoint on a loopback port over TLS. It answers the script in order and
/// repeats its last answer; each connection is closed after one exchange.
struct FakeEndpoint {
    base_url: String,
    ca_pem: String,
    received: Arc<Mutex<Vec<Received>>>,
    /// TCP connections accepted, counted before the TLS handshake.
    connections: Arc<AtomicUsize>,
}

impl FakeEndpoint {
    fn start(script: Vec<Answer>) -> Self {
        let pki = test_pki();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain, pki.server_key)
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let next = Arc::new(AtomicUsize::new(0));
        let log = received.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (config, log, script, next) =
                    (config.clone(), log.clone(), script.clone(), next.clone());
                std::thread::spawn(move || serve_one(stream, &config, &log, &script, &next));
            }
        });
        Self {
            base_url: format!("https://127.0.0.1:{port}"),
            ca_pem: pki.ca_pem,
            received,
            connections,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn settings(&self, retries: u32, request_timeout_secs: u32) -> RemoteSettings {
        RemoteSettings::from_input(
            &RemoteInput {
                base_url: self.base_url.clone(),
                model: "test-model".to_owned(),
                api_key: Some(SecretString::from(API_KEY.to_owned())),
                clear_key: false,
                connect_timeout_secs: "2".to_owned(),
                request_timeout_secs: request_timeout_secs.to_string(),
                retries: retries.to_string(),
                ca_certificate_pem: self.ca_pem.clone(),
            },
            None,
        )
        .unwrap()
    }

    /// Makes this endpoint `tenant`'s analysis backend, as a tenant admin's form would, with
    /// `retries` retries.
    fn choose_for(&self, app: &TestApp, tenant: &rapport::tenants::Tenant, retries: u32) {
        settings::choose_backend(
            &app.context,
            Actor::cli(),
            None,
            tenant,
            &AnalysisChoice {
                backend: "remote".to_owned(),
                model_sha256: String::new(),
                remote: RemoteInput {
                    base_url: self.base_url.clone(),
                    model: "test-model".to_owned(),
                    api_key: Some(SecretString::from(API_KEY.to_owned())),
                    ca_certificate_pem: self.ca_pem.clone(),
                    retries: retries.to_string(),
                    ..RemoteInput::default()
                },
            },
        )
        .unwrap();
    }

    fn backend(&self, retries: u32, request_timeout_secs: u32) -> RemoteBackend {
        RemoteBackend::new(
            &self.settings(retries, request_timeout_secs),
            Detector::default(),
        )
        .unwrap()
    }
}

/// Stores `record` in `tenant` through the API's write path (which queues it for analysis).
fn write_interaction(
    app: &TestApp,
    tenant: &rapport::tenants::Tenant,
    record: rapport::interactions::InteractionRecord,
) -> rapport::records::Stored<rapport::interactions::InteractionRecord> {
    rapport::api::resources::write_record(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "api",
        record,
    )
    .unwrap()
    .0
}

fn serve_one(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    log: &Mutex<Vec<Received>>,
    script: &[Answer],
    next: &AtomicUsize,
) {
    let connection = rustls::ServerConnection::new(config.clone()).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut reader = BufReader::new(&mut tls);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return; // a handshake the client refused, or a closed connection
    }
    let mut content_length = 0;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap(),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    log.lock().unwrap().push(Received {
        request_line: request_line.trim_end().to_owned(),
        authorization,
        body: body.clone(),
    });
    let index = next.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
    let (status, body, headers) = match &script[index] {
        Answer::Fixed {
            status,
            body,
            delay,
            headers,
        } => {
            std::thread::sleep(*delay);
            (*status, body.clone(), headers.clone())
        }
        Answer::Echo => {
            let request: Value = serde_json::from_str(&body).unwrap();
            let user = request["messages"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .find(|message| message["role"] == "user")
                .unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned();
            (200, completion(&format!("Echo: {user}")), Vec::new())
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        write!(response, "{name}: {value}\r\n").unwrap();
    }
    response.push_str("\r\n");
    response.push_str(&body);
    // The client may have given up (the timeout test); a failed write is its business.
    let _ = tls.write_all(response.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn remote_error(error: InferenceError) -> RemoteError {
    match error {
        InferenceError::Remote(remote) => remote,
        other => panic!("not a remote error: {other}"),
    }
}

const PERSONAL: &str = "Hi, this is Maria Lopez. Mail me at maria.lopez@northwind.example or call +44 20 7946 0958; my card 4242 4242 4242 4242 was charged twice.";

#[tokio::test]
async fn text_leaves_redacted_with_the_tenants_contacts_and_the_reply_is_restored() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let contacts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contacts.csv");
    let run = ingest::import_file(
        &app.context,
        &ImportRequest {
            actor: &Actor::cli(),
            tenant: &tenant,
            format: ImportFormat::Contacts,
            path: std::path::Path::new(contacts),
            skip_invalid: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(run.state, ImportState::Committed);

    let endpoint = FakeEndpoint::start(vec![Answer::Echo]);
    endpoint.choose_for(&app, &tenant, 3);

    let context = app.context.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let backend = open_tenant_backend(&context, &Actor::cli(), &tenant).unwrap();
        assert_eq!(backend.kind(), BackendKind::Remote);
        assert!(
            backend.describe().contains("127.0.0.1"),
            "{}",
            backend.describe()
        );
        backend.generate(PERSONAL, 200).unwrap()
    })
    .await
    .unwrap();

    let received = endpoint.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(
        sent.authorization.as_deref(),
        Some(&*format!("Bearer {API_KEY}"))
    );
    for personal in ["Maria", "Lopez", "maria.lopez", "northwind", "7946", "4242"] {
        assert!(
            !sent.body.contains(personal),
            "{personal} was sent: {}",
            sent.body
        );
    }
    let request: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(request["model"], "test-model");
    assert_eq!(request["temperature"], 0.0);
    assert_eq!(request["max_tokens"], 200);
    let user = request["messages"][0]["content"].as_str().unwrap();
    assert_eq!(
        user,
        "Hi, this is [PERSON_1]. Mail me at [EMAIL_1] or call [PHONE_1]; my card [CARD_1] was charged twice."
    );
    assert_eq!(reply, format!("Echo: {PERSONAL}"));
}

#[tokio::test]
async fn the_worker_never_shares_one_tenants_remote_backend_with_another() {
    let app = TestApp::spawn();
    let acme = app.create_tenant("acme");
    let globex = app.create_tenant("globex");
    let endpoint = FakeEndpoint::start(vec![Answer::Echo]);
    // The same endpoint, model and key for both: only the tenant differs, and with it the
    // contacts that its PII detector must know.
    for tenant in [&acme, &globex] {
        endpoint.choose_for(&app, tenant, 3);
    }
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || {
        let mut cache = BackendCache::default();
        let for_globex = cache.backend_for(&context, globex.id).unwrap();
        let for_acme = cache.backend_for(&context, acme.id).unwrap();
        assert!(!Arc::ptr_eq(&for_globex, &for_acme));
        assert_eq!(cache.loaded(), 2);
        // Within the refresh time a tenant's own backend is reused.
        let again = cache.backend_for(&context, acme.id).unwrap();
        assert!(Arc::ptr_eq(&for_acme, &again));
        assert_eq!(cache.loaded(), 2);
    })
    .await
    .unwrap();
    assert!(endpoint.received().is_empty());
}

#[tokio::test]
async fn the_worker_records_each_interaction_it_sends_out_and_sends_it_redacted() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let endpoint = FakeEndpoint::start(vec![Answer::Echo]);
    endpoint.choose_for(&app, &tenant, 0);
    let record: rapport::interactions::InteractionRecord = serde_json::from_value(json!({
        "source_system": "livechat", "source_id": "R-1", "channel": "chat",
        "messages": [{"role": "customer", "sent_at": "2026-10-06T10:00:00Z",
                      "text": "Please write to jo.kim@example.org about my refund."}]
    }))
    .unwrap();
    let stored = write_interaction(&app, &tenant, record);
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || {
        let mut cache = BackendCache::default();
        rapport::analysis::worker::process_batch(&context, &mut cache, tenant.id, &|| false)
            .unwrap()
    })
    .await
    .unwrap();
    let received = endpoint.received();
    assert!(!received.is_empty());
    assert!(
        received.iter().all(|sent| !sent.body.contains("jo.kim")),
        "{received:?}"
    );
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let sent: Vec<_> = entries
        .iter()
        .filter(|entry| entry.event.action == AuditAction::AnalysisSentRemote)
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]
            .event
            .target
            .starts_with(&format!("interaction {} to remote: 127.0.0.1:", stored.id)),
        "{}",
        sent[0].event.target
    );
    assert!(!sent[0].event.target.contains("jo.kim"));
}

#[test]
fn classification_reads_the_label_and_logprobs_when_the_endpoint_sends_them() {
    let with_logprobs = json!({
        "choices": [{"message": {"role": "assistant", "content": "Negative"},
            "logprobs": {"content": [{"token": "Negative", "logprob": -0.2,
                "top_logprobs": [{"token": "Negative", "logprob": -0.2},
                                 {"token": "Neutral", "logprob": -2.0},
                                 {"token": "Positive", "logprob": -4.0}]}]}}],
        "usage": {"total_tokens": 51}
    })
    .to_string();
    let endpoint = FakeEndpoint::start(vec![
        ok(" **Negative.**"),
        status(200, &with_logprobs),
        ok("I would rather not say."),
    ]);
    let backend = RemoteBackend::new(
        &endpoint.settings(0, 10),
        Detector::new(&DetectorOptions {
            known_names: vec!["Maria Lopez".to_owned()],
            min_confidence: None,
        })
        .unwrap(),
    )
    .unwrap();
    let labels = LabelSet::sentiment();
    let texts = vec![
        "Maria Lopez here: you charged me twice, this is unacceptable.".to_owned(),
        "Still charged twice. maria.lopez@northwind.example".to_owned(),
    ];
    let classified = backend
        .classify(TaskKind::Sentiment, &labels, &texts)
        .unwrap();
    // Without logprobs the named label gets probability 1.
    assert_eq!(classified.results[0].label, "negative");
    assert_eq!(classified.results[0].probabilities, vec![0.0, 0.0, 1.0]);
    // With them, a softmax over the labels' first-token log-probabilities.
    let second = &classified.results[1];
    assert_eq!(second.label, "negative");
    assert!(
        second.confidence > 0.8 && second.confidence < 0.9,
        "{second:?}"
    );
    assert!((second.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert_eq!(classified.tokens_decoded, 43 + 51);

    let received = endpoint.received();
    assert_eq!(received.len(), 2);
    let request: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(request["logprobs"], true);
    let system = request["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.ends_with("Labels:\n- positive\n- neutral\n- negative"),
        "{system}"
    );
    assert_eq!(
        request["messages"][1]["content"],
        "[PERSON_1] here: you charged me twice, this is unacceptable."
    );
    assert!(!received[1].body.contains("maria.lopez"));

    // A reply naming no label is an error, and the error does not quote the reply.
    let error = remote_error(
        backend
            .classify(TaskKind::Sentiment, &labels, &texts[..1])
            .unwrap_err(),
    );
    assert!(
        matches!(error, RemoteError::UnparseableReply { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("rather"));
}

#[test]
fn server_errors_are_retried_until_the_endpoint_answers() {
    let endpoint = FakeEndpoint::start(vec![
        status(500, "{}"),
        status(503, "overloaded"),
        ok("Fine."),
    ]);
    let reply = endpoint.backend(3, 10).generate("Say fine.", 10).unwrap();
    assert_eq!(reply, "Fine.");
    assert_eq!(endpoint.received().len(), 3);
}

#[test]
fn persistent_server_errors_fail_after_the_configured_attempts() {
    let endpoint = FakeEndpoint::start(vec![status(500, "{\"error\":\"boom\"}")]);
    let backend = endpoint.backend(2, 10);
    let error = remote_error(backend.generate(PERSONAL, 10).unwrap_err());
    assert_eq!(endpoint.received().len(), 3, "one attempt and two retries");
    match &error {
        RemoteError::Status {
            host,
            status,
            attempts,
        } => {
            assert_eq!(*status, 500);
            assert_eq!(*attempts, 3);
            assert!(host.starts_with("127.0.0.1:"));
        }
        other => panic!("{other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("HTTP 500") && message.contains("3 attempt"),
        "{message}"
    );
    for secret in ["Maria", "4242", API_KEY, "boom"] {
        assert!(!message.contains(secret), "{message}");
    }
}

#[test]
fn an_unauthorised_request_is_not_retried_and_the_key_is_not_repeated() {
    let endpoint = FakeEndpoint::start(vec![status(401, "{\"error\":\"bad key\"}"), ok("never")]);
    let error = remote_error(endpoint.backend(3, 10).generate("hello", 10).unwrap_err());
    assert_eq!(endpoint.received().len(), 1);
    assert!(
        matches!(
            error,
            RemoteError::Status {
                status: 401,
                attempts: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains(API_KEY));
    assert!(!format!("{error:?}").contains(API_KEY));
}

#[test]
fn a_slow_endpoint_is_given_up_after_the_request_timeout() {
    let endpoint = FakeEndpoint::start(vec![Answer::Fixed {
        status: 200,
        body: completion("too late"),
        delay: Duration::from_secs(20),
        headers: Vec::new(),
    }]);
    let backend = endpoint.backend(1, 1);
    let started = Instant::now();
    let error = remote_error(backend.generate("hello", 10).unwrap_err());
    let elapsed = started.elapsed();
    assert!(
        matches!(error, RemoteError::Timeout { attempts: 2, .. }),
        "{error}"
    );
    // Two one-second attempts and a backoff under a second: far below the 20-second pause.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(endpoint.received().len(), 2, "a timeout is retried");
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let endpoint = FakeEndpoint::start(vec![
        Answer::Fixed {
            status: 429,
            body: "{}".to_owned(),
            delay: Duration::ZERO,
            headers: vec![("retry-after", "2".to_owned())],
        },
        ok("Now."),
    ]);
    let started = Instant::now();
    let reply = endpoint.backend(1, 10).generate("hello", 10).unwrap();
    assert_eq!(reply, "Now.");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(endpoint.received().len(), 2);
}

#[test]
fn a_certificate_from_another_ca_is_refused_without_retries() {
    let endpoint = FakeEndpoint::start(vec![ok("never")]);
    let mut settings = endpoint.settings(3, 10);
    settings.ca_certificate_pem = Some(test_pki().ca_pem);
    let backend = RemoteBackend::new(&settings, Detector::default()).unwrap();
    let error = remote_error(backend.generate("hello", 10).unwrap_err());
    assert!(matches!(error, RemoteError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    assert!(endpoint.received().is_empty());
    // One handshake only: a certificate does not get better by asking again. (The server saw the
    // connection before it sent the certificate the client refused.)
    assert_eq!(endpoint.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn provenance_names_the_endpoint_and_the_model_so_a_change_re_analyses() {
    let endpoint = FakeEndpoint::start(vec![ok("never")]);
    let settings = endpoint.settings(0, 10);
    let first = RemoteBackend::new(&settings, Detector::default()).unwrap();
    let mut other_model = settings.clone();
    other_model.model = "another-model".to_owned();
    let second = RemoteBackend::new(&other_model, Detector::default()).unwrap();
    assert!(
        first.model_id().starts_with("remote:127.0.0.1:"),
        "{}",
        first.model_id()
    );
    assert!(
        first.model_id().contains(&settings.model),
        "{}",
        first.model_id()
    );
    assert!(
        first.model_id().ends_with(REMOTE_PROMPT_VERSION),
        "{}",
        first.model_id()
    );
    assert_ne!(first.model_id(), second.model_id());
    assert!(endpoint.received().is_empty());
}

#[tokio::test]
async fn the_analysis_page_is_for_tenant_admins_and_never_shows_the_key() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("ana@acme.example", Role::Analyst, Some(&tenant));
    let admin = app.signed_in_client("admin@acme.example").await;
    let analyst = app.signed_in_client("ana@acme.example").await;
    let endpoint = FakeEndpoint::start(vec![ok("OK")]);
    let path = "/t/acme/settings/analysis";
    let valid = [
        ("backend", "remote"),
        ("base_url", endpoint.base_url.as_str()),
        ("remote_model", "llama3.1:8b"),
        ("api_key", API_KEY),
        ("connect_timeout_secs", "5"),
        ("request_timeout_secs", "30"),
        ("retries", "2"),
        ("ca_certificate", endpoint.ca_pem.as_str()),
    ];
    let stored = |app: &TestApp| {
        AnalysisSettingsStore::new(app.context.store.clone())
            .get(
                tenant.id,
                &rapport::inference::models::ModelDirectories::new(Vec::new()),
            )
            .unwrap()
    };

    // Analysts neither see nor change it.
    assert_eq!(
        app.get(&analyst, path).await.status(),
        StatusCode::FORBIDDEN
    );
    let refused = app.post_form(&analyst, path, &valid).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let test = app.post_form(&analyst, &format!("{path}/test"), &[]).await;
    assert_eq!(test.status(), StatusCode::FORBIDDEN);
    assert!(stored(&app).remote.is_none());

    // A form without the CSRF token changes nothing.
    let forged = admin.post(app.url(path)).form(&valid).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(stored(&app).remote.is_none());

    // Plain http to another host is refused, naming the field, and nothing is saved.
    let mut plain = valid.to_vec();
    plain[1] = ("base_url", "http://example.com");
    let refused = app.post_form(&admin, path, &plain).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Base URL: must start with https://"),
        "{page}"
    );
    assert!(!page.contains(API_KEY));
    assert!(stored(&app).remote.is_none());
    assert_ne!(stored(&app).backend, BackendKind::Remote);

    // Valid settings are saved, audited, and shown without the key.
    let saved = app.post_form(&admin, path, &valid).await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&saved), path);
    let settings = stored(&app);
    assert_eq!(settings.backend, BackendKind::Remote);
    let remote = settings.remote.unwrap();
    assert_eq!(remote.model, "llama3.1:8b");
    assert_eq!(remote.retries, 2);
    assert!(remote.api_key.is_some());
    let page = app.get(&admin, path).await.text().await.unwrap();
    assert!(
        page.contains(&endpoint.base_url["https://".len()..]),
        "{page}"
    );
    assert!(page.contains("llama3.1:8b"));
    assert!(page.contains("a key is set"));
    assert!(!page.contains(API_KEY));
    let audited: Vec<String> = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 1000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == AuditAction::AnalysisSettingsChanged)
        .map(|entry| entry.event.target)
        .collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0].contains("remote") && audited[0].contains("a key is set"));
    assert!(!audited[0].contains(API_KEY));

    // Saving again without typing a key keeps it; the connection test reaches the endpoint.
    let mut without_key = valid.to_vec();
    without_key[3] = ("api_key", "");
    let saved = app.post_form(&admin, path, &without_key).await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    assert!(stored(&app).remote.unwrap().api_key.is_some());
    let tested = app.post_form(&admin, &format!("{path}/test"), &[]).await;
    assert_eq!(tested.status(), StatusCode::OK);
    assert!(tested.text().await.unwrap().contains("answered in"));
    let received = endpoint.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(&*format!("Bearer {API_KEY}"))
    );
}

#[tokio::test]
async fn an_endpoint_that_is_down_leaves_the_jobs_queued_without_spending_attempts() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    // Down (503) for the first request, then answering.
    let endpoint = FakeEndpoint::start(vec![status(503, "restarting"), Answer::Echo]);
    endpoint.choose_for(&app, &tenant, 0);
    let record: rapport::interactions::InteractionRecord = serde_json::from_value(json!({
        "source_system": "livechat", "source_id": "R-2", "channel": "chat",
        "messages": [{"role": "customer", "sent_at": "2026-10-06T10:00:00Z",
                      "text": "My refund has not arrived."}]
    }))
    .unwrap();
    let stored = write_interaction(&app, &tenant, record);
    let context = app.context.clone();
    let (first, job_after_first, second, job_after_second) =
        tokio::task::spawn_blocking(move || {
            let mut cache = BackendCache::default();
            let mut batch = || {
                rapport::analysis::worker::process_batch(&context, &mut cache, tenant.id, &|| false)
            };
            let first = batch();
            let job_after_first = context.analysis.job(tenant.id, stored.id).unwrap();
            let second = batch();
            let job_after_second = context.analysis.job(tenant.id, stored.id).unwrap();
            (first, job_after_first, second, job_after_second)
        })
        .await
        .unwrap();

    let error = first.expect_err("a batch against a down endpoint reports the backend");
    assert!(error.to_string().contains("HTTP 503"), "{error}");
    let job = job_after_first.expect("the job stays");
    assert_eq!(job.state, rapport::analysis::jobs::JobState::Queued);
    assert_eq!(
        job.attempts, 0,
        "no attempt spent while the endpoint was down"
    );
    // Answering again (with replies the analyses cannot use), the endpoint gets the job, and
    // only now is an attempt counted.
    let report = second.unwrap();
    assert_eq!(report.claimed, 1);
    assert_eq!(job_after_second.expect("the job").attempts, 1);
}
