//! Feedback requests: a batch is personalised per contact from the tenant's template, skips
//! (and counts) contacts without an address, under restriction or objection, or asked recently,
//! exports as CSV, and is sent through a real SMTP listener on loopback when the operator
//! configured a relay, and refused with a clear message when not.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rapport::accounts::{AccountRecord, ContactRecord};
use rapport::audit::{Actor, AuditAction, AuditView, Outcome};
use rapport::config::{SmtpConfig, SmtpTls};
use rapport::feedback::FeedbackStore;
use rapport::ids::{RecordId, TenantId};
use rapport::interactions::InteractionRecord;
use rapport::privacy::{restrict, RestrictionKind};
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{location, write_interaction, TestApp};

/// One message the test relay accepted.
#[derive(Clone, Debug)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server on loopback that records what it accepts and refuses (550) any
/// recipient whose address starts with `bounce`.
struct SmtpSink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpSink {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let store = store.clone();
                std::thread::spawn(move || serve(stream, &store));
            }
        });
        Self { port, received }
    }

    fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(stream: std::net::TcpStream, store: &Mutex<Vec<Received>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| {
        let _ = writer.write_all(format!("{text}\r\n").as_bytes());
    };
    reply("220 sink.test ESMTP");
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            reply("250-sink.test\r\n250 8BITMIME");
        } else if upper.starts_with("MAIL FROM:") {
            command[10..].trim().clone_into(&mut from);
            to.clear();
            reply("250 OK");
        } else if upper.starts_with("RCPT TO:") {
            let address = command[8..].trim().to_owned();
            if address.trim_start_matches('<').starts_with("bounce") {
                reply("550 5.1.1 no such user");
            } else {
                to.push(address);
                reply("250 OK");
            }
        } else if upper == "DATA" {
            reply("354 go ahead");
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            store.lock().unwrap().push(Received {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            reply("250 OK queued");
        } else if upper == "RSET" || upper == "NOOP" {
            reply("250 OK");
        } else if upper == "QUIT" {
            reply("221 bye");
            return;
        } else {
            reply("502 not implemented");
        }
    }
}

fn add_contact(
    app: &TestApp,
    tenant: TenantId,
    id: &str,
    name: &str,
    email: Option<&str>,
) -> RecordId {
    let record: ContactRecord = serde_json::from_value(serde_json::json!({
        "source_system": "crm", "source_id": id, "name": name, "email": email, "account": "A-1"
    }))
    .unwrap();
    rapport::api::resources::write_record(&app.context, &Actor::cli(), None, tenant, "api", record)
        .unwrap()
        .0
        .id
}

fn resolved_chat(id: &str, email: &str, status: &str, subject: &str) -> InteractionRecord {
    let sent = chrono::Utc::now() - chrono::Duration::days(1);
    serde_json::from_value(serde_json::json!({
        "source_system": "desk", "source_id": id, "channel": "chat", "status": status,
        "subject": subject,
        "messages": [
            {"role": "customer", "author_email": email, "sent_at": sent, "text": "It broke."},
            {"role": "agent", "sent_at": sent, "text": "Fixed now."}
        ]
    }))
    .unwrap()
}

/// A tenant with an account, five contacts (two restricted), resolved and open interactions.
fn seed(app: &TestApp, tenant: TenantId) -> Vec<RecordId> {
    let account: AccountRecord = serde_json::from_value(serde_json::json!({
        "source_system": "crm", "source_id": "A-1", "name": "Globex"
    }))
    .unwrap();
    rapport::api::resources::write_record(
        &app.context,
        &Actor::cli(),
        None,
        tenant,
        "api",
        account,
    )
    .unwrap();
    let ids = vec![
        add_contact(app, tenant, "c-jo", "Jo Kim", Some("jo@example.org")),
        add_contact(
            app,
            tenant,
            "c-ana",
            "Ana Restricted",
            Some("ana@example.org"),
        ),
        add_contact(
            app,
            tenant,
            "c-obi",
            "Obi Objecting",
            Some("Obi@Example.org"),
        ),
        add_contact(app, tenant, "c-none", "Nomail Person", None),
        add_contact(app, tenant, "c-lee", "Lee Park", Some("lee@example.org")),
        add_contact(
            app,
            tenant,
            "c-bounce",
            "Bo Unce",
            Some("bounce@example.org"),
        ),
    ];
    for (id, email, status) in [
        ("t-1", "jo@example.org", "Solved"),
        ("t-2", "ana@example.org", "closed"),
        ("t-3", "obi@example.org", "resolved"),
        ("t-4", "lee@example.org", "open"),
        ("t-5", "stranger@example.org", "resolved"),
    ] {
        write_interaction(
            &app.context,
            tenant,
            resolved_chat(id, email, status, "Refund for order 7"),
        );
    }
    for (email, kind) in [
        ("ana@example.org", RestrictionKind::Restriction),
        ("obi@example.org", RestrictionKind::Objection),
    ] {
        restrict(
            &app.context,
            &Actor::cli(),
            None,
            tenant,
            email,
            kind,
            "DSR-1",
        )
        .unwrap();
    }
    ids
}

async fn save_template(app: &TestApp, admin: &reqwest::Client, sending: bool) {
    save_settings(
        app,
        admin,
        "Thanks {first_name} from {company}",
        "Dear {name} of {account},\nabout {interaction_subject}:\n{review_link}\n",
        sending,
    )
    .await;
}

async fn save_settings(
    app: &TestApp,
    admin: &reqwest::Client,
    subject: &str,
    body: &str,
    sending: bool,
) {
    let mut fields = vec![
        ("subject", subject),
        ("body", body),
        ("review_link", "https://reviews.example/acme"),
        ("cooldown_days", "30"),
    ];
    if sending {
        fields.push(("sending_enabled", "on"));
    }
    let response = app
        .post_form(admin, "/t/acme/settings/feedback", &fields)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn requests_are_personalised_skip_restricted_contacts_and_export_as_csv() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    app.create_user("qa@acme.example", Role::QaLead, Some(&tenant));
    let ids = seed(&app, tenant.id);
    let admin = app.signed_in_client("admin@acme.example").await;
    let analyst = app.signed_in_client("analyst@acme.example").await;

    // The template is the tenant admin's; an unknown placeholder is named, an analyst refused.
    let response = app
        .post_form(
            &admin,
            "/t/acme/settings/feedback",
            &[
                ("subject", "Hi {firstname}"),
                ("body", "x"),
                ("review_link", ""),
                ("cooldown_days", "30"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("{firstname} is not a placeholder"));
    let response = app
        .post_form(
            &analyst,
            "/t/acme/settings/feedback",
            &[("subject", "x"), ("body", "x"), ("cooldown_days", "1")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The review link must be https, as the form asks.
    let response = app
        .post_form(
            &admin,
            "/t/acme/settings/feedback",
            &[
                ("subject", "Hi"),
                ("body", "x"),
                ("review_link", "http://reviews.example/acme"),
                ("cooldown_days", "30"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Review link: give the address of your review page, starting with https://"));
    save_template(&app, &admin, false).await;

    // Another role may not prepare requests.
    let qa = app.signed_in_client("qa@acme.example").await;
    let response = app
        .post_form(
            &qa,
            "/t/acme/feedback/batches",
            &[("mode", "resolved"), ("days", "7")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Contacts of interactions resolved in the last 7 days: Jo only.
    let response = app
        .post_form(
            &analyst,
            "/t/acme/feedback/batches",
            &[("mode", "resolved"), ("days", "7")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let batch_url = location(&response);
    assert!(
        batch_url.starts_with("/t/acme/feedback/batches/"),
        "{batch_url}"
    );
    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    assert!(page.contains("jo@example.org"), "{page}");
    assert!(page.contains("Thanks Jo from Tenant acme"), "{page}");
    assert!(page.contains(
        "Dear Jo Kim of Globex,\nabout Refund for order 7:\nhttps://reviews.example/acme"
    ));
    for hidden in [
        "ana@example.org",
        "Obi@Example.org",
        "Ana Restricted",
        "Obi Objecting",
        "lee@example.org",
        "stranger",
    ] {
        assert!(!page.contains(hidden), "{hidden} shown");
    }
    assert!(page.contains("2 under restriction or objection"), "{page}");
    assert!(page.contains("1 customers of resolved interactions without a contact record"));
    assert!(page.contains("1 requests: 0 sent"), "{page}");
    // No relay: the send button is absent, the page says why, and a send is refused.
    assert!(page.contains("id=\"no-smtp\""));
    assert!(!page.contains("/send\""));
    let response = app
        .post_form(&analyst, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("no SMTP relay is configured"));

    // Export: the CSV a mail system can use, and Jo now counts as asked.
    let response = app
        .post_form(&analyst, &format!("{batch_url}/export"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap(), vec!["to", "subject", "body"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], "jo@example.org");
    assert_eq!(&rows[0][1], "Thanks Jo from Tenant acme");
    assert!(rows[0][2].starts_with("Dear Jo Kim of Globex,\n"));
    let feedback = FeedbackStore::new(app.context.store.clone());
    assert!(feedback
        .last_requested_at(tenant.id, ids[0])
        .unwrap()
        .is_some());

    // Chosen contacts: Jo was asked just now, one has no address, Lee gets a request about his
    // resolved interaction, and Bo, who has none (requests go after a resolved interaction), is
    // left out and counted.
    write_interaction(
        &app.context,
        tenant.id,
        resolved_chat("t-6", "lee@example.org", "resolved", "Lost parcel"),
    );
    let (jo, none, lee, bo) = (
        ids[0].to_string(),
        ids[3].to_string(),
        ids[4].to_string(),
        ids[5].to_string(),
    );
    let response = app
        .post_form(
            &analyst,
            "/t/acme/feedback/batches",
            &[
                ("mode", "contacts"),
                ("contact", &jo),
                ("contact", &none),
                ("contact", &lee),
                ("contact", &bo),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = app
        .get(&analyst, &location(&response))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Thanks Lee from Tenant acme"));
    assert!(page.contains("Dear Lee Park of Globex,\nabout Lost parcel:"));
    assert!(!page.contains("jo@example.org"));
    assert!(!page.contains("bounce@example.org"), "{page}");
    assert!(page.contains("1 without an e-mail address"));
    assert!(page.contains("1 asked in the last 30 days"));
    assert!(
        page.contains("1 chosen by account or by hand with no resolved interaction"),
        "{page}"
    );
    assert!(page.contains("1 requests: 0 sent"), "{page}");
    assert!(!page.contains("id=\"scan-limit\""));
    // Nothing chosen is named as such.
    let response = app
        .post_form(
            &analyst,
            "/t/acme/feedback/batches",
            &[("mode", "contacts")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("choose at least one contact"));

    // The audit log names contacts by record id, never by address.
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let created: Vec<&str> = entries
        .iter()
        .filter(|entry| entry.event.action == AuditAction::FeedbackBatchCreated)
        .map(|entry| entry.event.target.as_str())
        .collect();
    assert_eq!(created.len(), 2);
    // Newest first: the resolved-interactions batch is the older one.
    assert!(created[1].contains(&jo) && created[1].contains("2 restricted or objecting"));
    assert!(created[0].contains(&lee) && !created[0].contains(&jo) && !created[0].contains(&bo));
    assert!(created[0].contains("1 without a resolved interaction"));
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::FeedbackExported
            && entry.event.target.contains(&jo)));
    assert!(entries
        .iter()
        .filter(|entry| entry.event.action.as_str().starts_with("feedback."))
        .all(|entry| !entry.event.target.contains('@')));
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::FeedbackSettingsChanged));
}

#[tokio::test]
async fn sending_through_a_loopback_relay_delivers_exactly_the_prepared_messages() {
    let sink = SmtpSink::start();
    let port = sink.port;
    let app = TestApp::spawn_configured(move |config, _| {
        config.smtp = Some(SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            from: "Acme care <care@acme.example>".to_owned(),
            username: None,
            password_file: None,
            timeout_seconds: 10,
        });
    });
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let ids = seed(&app, tenant.id);
    for (id, email) in [("t-6", "lee@example.org"), ("t-7", "bounce@example.org")] {
        write_interaction(
            &app.context,
            tenant.id,
            resolved_chat(id, email, "resolved", "Refund for order 7"),
        );
    }
    let admin = app.signed_in_client("admin@acme.example").await;
    save_template(&app, &admin, false).await;
    let analyst = app.signed_in_client("analyst@acme.example").await;

    // The relay alone does not let anything out: the tenant admin has not turned sending on.
    let response = app
        .post_form(
            &analyst,
            "/t/acme/feedback/batches",
            &[("mode", "contacts"), ("contact", &ids[0].to_string())],
        )
        .await;
    let first_url = location(&response);
    let page = app.get(&analyst, &first_url).await.text().await.unwrap();
    assert!(page.contains("id=\"sending-off\""), "{page}");
    assert!(!page.contains("id=\"no-smtp\""), "{page}");
    assert!(!page.contains(&format!("{first_url}/send\"")), "{page}");
    let response = app
        .post_form(&analyst, &format!("{first_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("sending by e-mail is off for this tenant"));
    assert!(sink.messages().is_empty());
    save_template(&app, &admin, true).await;
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries.iter().any(
        |entry| entry.event.action == AuditAction::FeedbackSettingsChanged
            && entry.event.target.contains("sending by e-mail on")
    ));

    // Jo, Lee and a refused address; Ana is restricted and never reaches the relay.
    let chosen: Vec<String> = [0, 1, 4, 5].iter().map(|i| ids[*i].to_string()).collect();
    let mut fields = vec![("mode", "contacts")];
    fields.extend(chosen.iter().map(|id| ("contact", id.as_str())));
    let response = app
        .post_form(&analyst, "/t/acme/feedback/batches", &fields)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let batch_url = location(&response);
    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    assert!(page.contains(&format!("{batch_url}/send")), "{page}");
    assert!(page.contains("1 under restriction or objection"));
    assert!(sink.messages().is_empty(), "preparing sent something");

    let response = app
        .post_form(&analyst, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let batch_id = batch_url.rsplit('/').next().unwrap().parse().unwrap();
    let feedback = FeedbackStore::new(app.context.store.clone());
    let mut progress = None;
    for _ in 0..100 {
        let batch = feedback.batch(tenant.id, batch_id).unwrap().unwrap();
        if !rapport::feedback::is_sending(batch_id) && batch.progress().pending == 0 {
            progress = Some(batch.progress());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let progress = progress.expect("the send did not finish");
    assert_eq!(
        (progress.sent, progress.failed, progress.pending),
        (2, 1, 0)
    );

    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let mut recipients: Vec<String> = messages.iter().map(|m| m.to.join(",")).collect();
    recipients.sort();
    assert_eq!(recipients, ["<jo@example.org>", "<lee@example.org>"]);
    for message in &messages {
        assert_eq!(message.from, "<care@acme.example>");
    }
    let jo = messages
        .iter()
        .find(|m| m.to[0] == "<jo@example.org>")
        .unwrap();
    assert!(
        jo.data.contains("Subject: Thanks Jo from Tenant acme"),
        "{}",
        jo.data
    );
    assert!(
        jo.data
            .contains("Dear Jo Kim of Globex,\r\nabout Refund for order 7:"),
        "{}",
        jo.data
    );
    let lee = messages
        .iter()
        .find(|m| m.to[0] == "<lee@example.org>")
        .unwrap();
    assert!(lee.data.contains("Subject: Thanks Lee from Tenant acme"));

    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    assert!(
        page.contains("3 requests: 2 sent, 1 failed, 0 not sent"),
        "{page}"
    );
    assert!(page.contains("refused (5xx)"));
    assert!(
        !page.contains("no such user"),
        "the relay's words are not shown"
    );

    // Sending again tries the failed one only; nothing is sent twice.
    let response = app
        .post_form(&analyst, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    for _ in 0..100 {
        if !rapport::feedback::is_sending(batch_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sink.messages().len(), 2);

    // Each send audited by contact record id, with its outcome; never an address.
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let sends: Vec<_> = entries
        .iter()
        .filter(|entry| entry.event.action == AuditAction::FeedbackSent)
        .collect();
    assert_eq!(sends.len(), 4, "2 sent + the refused one twice");
    assert_eq!(
        sends
            .iter()
            .filter(|e| e.event.outcome == Outcome::Success)
            .count(),
        2
    );
    assert!(sends
        .iter()
        .any(|e| e.event.target.contains(&ids[0].to_string())));
    assert!(sends.iter().all(|e| !e.event.target.contains('@')));
}

#[tokio::test]
async fn an_export_rechecks_restrictions_defuses_formulas_and_is_never_sent_again() {
    let sink = SmtpSink::start();
    let port = sink.port;
    let app = TestApp::spawn_configured(move |config, _| {
        config.smtp = Some(SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            from: "Acme care <care@acme.example>".to_owned(),
            username: None,
            password_file: None,
            timeout_seconds: 10,
        });
    });
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let formula_name = "=HYPERLINK(\"https://evil.example\",\"x\")";
    let ids = [
        add_contact(&app, tenant.id, "c-f", formula_name, Some("f@example.org")),
        add_contact(&app, tenant.id, "c-jo", "Jo Kim", Some("jo@example.org")),
        add_contact(
            &app,
            tenant.id,
            "c-kay",
            "Kay Later",
            Some("kay@example.org"),
        ),
    ];
    for (id, email) in [
        ("t-1", "f@example.org"),
        ("t-2", "jo@example.org"),
        ("t-3", "kay@example.org"),
    ] {
        write_interaction(
            &app.context,
            tenant.id,
            resolved_chat(id, email, "resolved", "Refund"),
        );
    }
    let admin = app.signed_in_client("admin@acme.example").await;
    save_settings(
        &app,
        &admin,
        "{first_name}, how did we do?",
        "{name}\nabout {interaction_subject}\n",
        true,
    )
    .await;
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let chosen: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut fields = vec![("mode", "contacts")];
    fields.extend(chosen.iter().map(|id| ("contact", id.as_str())));
    let response = app
        .post_form(&analyst, "/t/acme/feedback/batches", &fields)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let batch_url = location(&response);
    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    assert!(page.contains("3 requests: 0 sent"), "{page}");

    // Kay objects after the batch was prepared: the export leaves her out and counts her.
    restrict(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "Kay@Example.org",
        RestrictionKind::Objection,
        "DSR-2",
    )
    .unwrap();
    let response = app
        .post_form(&analyst, &format!("{batch_url}/export"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let csv = response.text().await.unwrap();
    assert!(!csv.contains("kay@example.org"), "{csv}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    // A cell that would start a formula is text: the spreadsheet shows it, never evaluates it.
    let formula = rows.iter().find(|row| &row[0] == "f@example.org").unwrap();
    assert_eq!(&formula[1], format!("'{formula_name}, how did we do?"));
    assert!(formula[2].starts_with(&format!("'{formula_name}\n")));
    for row in &rows {
        for cell in row {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell}");
        }
    }
    let feedback = FeedbackStore::new(app.context.store.clone());
    assert!(feedback
        .last_requested_at(tenant.id, ids[2])
        .unwrap()
        .is_none());
    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    assert!(
        page.contains("3 requests: 0 sent, 0 failed, 0 not sent, 2 exported, 1 withheld"),
        "{page}"
    );
    assert!(page.contains("id=\"withheld-at-export\""), "{page}");
    assert!(page.contains("1 left out of the CSV export"), "{page}");
    assert!(page.contains("id=\"exported-note\""), "{page}");
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let exported = entries
        .iter()
        .find(|entry| entry.event.action == AuditAction::FeedbackExported)
        .unwrap();
    assert!(exported.event.target.contains("2 requests exported"));
    assert!(exported.event.target.contains("1 withheld"));
    assert!(!exported.event.target.contains(&ids[2].to_string()));
    assert!(!exported.event.target.contains('@'));

    // Sending after the export mails nobody a second time: everything was exported or withheld.
    let response = app
        .post_form(&analyst, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("exported as CSV or withheld"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
    // Exporting again gives the same requests (a lost file can be fetched again), Kay still out.
    let response = app
        .post_form(&analyst, &format!("{batch_url}/export"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let again = response.text().await.unwrap();
    assert_eq!(
        csv::Reader::from_reader(again.as_bytes()).records().count(),
        2
    );
    assert!(!again.contains("kay@example.org"));
}

#[tokio::test]
async fn preparing_examines_at_most_the_newest_scan_limit_and_says_so() {
    use rapport::ingest::{self, ImportFormat, ImportRequest, ImportState};
    use rapport::records::MAX_SCANNED_PER_PAGE;

    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let old = add_contact(
        &app,
        tenant.id,
        "c-old",
        "Olga Old",
        Some("old@example.org"),
    );
    let new = add_contact(&app, tenant.id, "c-new", "Nia New", Some("new@example.org"));
    // Olga's resolved interaction is the oldest; more than a scan's worth came after it, the
    // newest of them Nia's.
    let sent = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let line = |id: usize, email: &str| {
        serde_json::json!({
            "source_system": "desk", "source_id": format!("S-{id}"), "channel": "chat",
            "status": "resolved", "subject": format!("Subject {id}"),
            "messages": [{"role": "customer", "author_email": email, "sent_at": sent, "text": "Hi"}]
        })
        .to_string()
    };
    let mut file = line(0, "old@example.org") + "\n";
    for id in 1..=MAX_SCANNED_PER_PAGE + 10 {
        file.push_str(&line(id, &format!("someone{id}@example.org")));
        file.push('\n');
    }
    file.push_str(&line(MAX_SCANNED_PER_PAGE + 11, "new@example.org"));
    file.push('\n');
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.jsonl");
    std::fs::write(&path, file).unwrap();
    let run = ingest::import_file(
        &app.context,
        &ImportRequest {
            actor: &Actor::cli(),
            tenant: &tenant,
            format: ImportFormat::Jsonl,
            path: &path,
            skip_invalid: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(run.state, ImportState::Committed, "{run:?}");
    let analyst = app.signed_in_client("analyst@acme.example").await;

    let (old, new) = (old.to_string(), new.to_string());
    let response = app
        .post_form(
            &analyst,
            "/t/acme/feedback/batches",
            &[("mode", "contacts"), ("contact", &old), ("contact", &new)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = app
        .get(&analyst, &location(&response))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("new@example.org"), "{page}");
    assert!(!page.contains("old@example.org"), "{page}");
    assert!(page.contains("1 chosen by account or by hand with no resolved interaction"));
    assert!(page.contains("id=\"scan-limit\""), "{page}");
    assert!(page.contains("the newest 5000 interactions"), "{page}");
}

#[tokio::test]
async fn an_export_is_refused_while_the_batch_is_being_sent() {
    // A relay that accepts the connection and never answers: the send waits for its timeout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let app = TestApp::spawn_configured(move |config, _| {
        config.smtp = Some(SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            from: "Acme care <care@acme.example>".to_owned(),
            username: None,
            password_file: None,
            timeout_seconds: 2,
        });
    });
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let jo = add_contact(&app, tenant.id, "c-jo", "Jo Kim", Some("jo@example.org"));
    write_interaction(
        &app.context,
        tenant.id,
        resolved_chat("t-1", "jo@example.org", "resolved", "Refund"),
    );
    let admin = app.signed_in_client("admin@acme.example").await;
    save_template(&app, &admin, true).await;
    let response = app
        .post_form(
            &admin,
            "/t/acme/feedback/batches",
            &[("mode", "contacts"), ("contact", &jo.to_string())],
        )
        .await;
    let batch_url = location(&response);
    let batch_id = batch_url.rsplit('/').next().unwrap().parse().unwrap();
    let response = app
        .post_form(&admin, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(rapport::feedback::is_sending(batch_id));
    let response = app
        .post_form(&admin, &format!("{batch_url}/export"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response.text().await.unwrap().contains("being sent"));
    for _ in 0..100 {
        if !rapport::feedback::is_sending(batch_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!rapport::feedback::is_sending(batch_id));
    let page = app.get(&admin, &batch_url).await.text().await.unwrap();
    assert!(page.contains("1 requests: 0 sent, 1 failed"), "{page}");
    // Once the send is over, the failed request can be exported, and is then not sent again.
    let response = app
        .post_form(&admin, &format!("{batch_url}/export"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("jo@example.org"));
    let response = app
        .post_form(&admin, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

/// A tenant with sending on and Jo, Kay and Lee each with a resolved interaction; a batch for all
/// three prepared. Returns the app, tenant, the analyst's client, contact ids and batch URL.
async fn three_contact_batch(
    smtp_port: Option<u16>,
) -> (TestApp, TenantId, reqwest::Client, [RecordId; 3], String) {
    let app = TestApp::spawn_configured(move |config, _| {
        config.smtp = smtp_port.map(|port| SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            from: "Acme care <care@acme.example>".to_owned(),
            username: None,
            password_file: None,
            timeout_seconds: 10,
        });
    });
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let ids = [
        add_contact(&app, tenant.id, "c-jo", "Jo Kim", Some("jo@example.org")),
        add_contact(
            &app,
            tenant.id,
            "c-kay",
            "Kayleigh Gone",
            Some("kayleigh@example.org"),
        ),
        add_contact(
            &app,
            tenant.id,
            "c-lee",
            "Leopold Deleted",
            Some("leopold@example.org"),
        ),
    ];
    for (id, email) in [
        ("t-1", "jo@example.org"),
        ("t-2", "kayleigh@example.org"),
        ("t-3", "leopold@example.org"),
    ] {
        write_interaction(
            &app.context,
            tenant.id,
            resolved_chat(id, email, "resolved", "Refund"),
        );
    }
    let admin = app.signed_in_client("admin@acme.example").await;
    save_template(&app, &admin, true).await;
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let chosen: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut fields = vec![("mode", "contacts")];
    fields.extend(chosen.iter().map(|id| ("contact", id.as_str())));
    let response = app
        .post_form(&analyst, "/t/acme/feedback/batches", &fields)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let batch_url = location(&response);
    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    assert!(page.contains("3 requests: 0 sent"), "{page}");
    assert!(page.contains("kayleigh@example.org"), "{page}");
    assert!(page.contains("leopold@example.org"), "{page}");
    (app, tenant.id, analyst, ids, batch_url)
}

/// Kay is erased (the erasure path) and Lee deleted (the plain deletion path) after the batch
/// was prepared.
fn erase_kay_and_delete_lee(app: &TestApp, tenant: TenantId, ids: &[RecordId; 3]) {
    let report = rapport::privacy::erasure::erase_subject(
        &app.context,
        &Actor::cli(),
        tenant,
        &rapport::privacy::erasure::SubjectRef::Contact(ids[1]),
        Some("DSR-9"),
    )
    .unwrap();
    assert_eq!(report.contacts, 1);
    let targets =
        rapport::records::delete::targets::<ContactRecord>(&app.context, tenant, &ids[2..])
            .unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(
        rapport::records::delete::delete::<ContactRecord>(&app.context, tenant, &targets).unwrap(),
        vec![ids[2]]
    );
    assert!(app.context.contacts.get(tenant, ids[1]).unwrap().is_none());
    assert!(app.context.contacts.get(tenant, ids[2]).unwrap().is_none());
}

fn assert_emptied(message: &rapport::feedback::BatchMessage) {
    assert!(message.to.is_empty(), "{message:?}");
    assert!(message.subject.is_empty(), "{message:?}");
    assert!(message.body.is_empty(), "{message:?}");
    assert!(
        matches!(
            message.status,
            rapport::feedback::MessageStatus::Withheld {
                reason: rapport::feedback::WithheldReason::ContactGone,
                ..
            }
        ),
        "{message:?}"
    );
}

#[tokio::test]
async fn a_batch_never_mails_or_shows_contacts_deleted_or_erased_since_it_was_prepared() {
    let sink = SmtpSink::start();
    let (app, tenant, analyst, ids, batch_url) = three_contact_batch(Some(sink.port)).await;
    erase_kay_and_delete_lee(&app, tenant, &ids);

    // The page no longer shows their addresses or their names, and says why.
    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    for gone in ["kayleigh", "Kayleigh", "leopold", "Leopold"] {
        assert!(!page.contains(gone), "{gone} shown: {page}");
    }
    assert!(page.contains("jo@example.org"), "{page}");
    assert_eq!(
        page.matches("withheld (contact no longer exists)").count(),
        2,
        "{page}"
    );

    let response = app
        .post_form(&analyst, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let batch_id = batch_url.rsplit('/').next().unwrap().parse().unwrap();
    let feedback = FeedbackStore::new(app.context.store.clone());
    let mut batch = None;
    for _ in 0..100 {
        let current = feedback.batch(tenant, batch_id).unwrap().unwrap();
        if !rapport::feedback::is_sending(batch_id) && current.progress().pending == 0 {
            batch = Some(current);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let batch = batch.expect("the send did not finish");

    // Only Jo was mailed; nothing of Kay or Lee reached the relay.
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].to, ["<jo@example.org>"]);
    assert!(
        messages[0].data.contains("Dear Jo Kim"),
        "{}",
        messages[0].data
    );
    for message in &messages {
        assert!(!message.data.contains("Kayleigh") && !message.data.contains("Leopold"));
    }
    let progress = batch.progress();
    assert_eq!(
        (progress.sent, progress.withheld, progress.pending),
        (1, 2, 0)
    );
    // The stored batch keeps neither their addresses nor their texts.
    for message in &batch.messages {
        if message.contact == ids[0] {
            assert_eq!(message.to, "jo@example.org");
        } else {
            assert_emptied(message);
        }
    }
    // Sending again has nothing left to send.
    let response = app
        .post_form(&analyst, &format!("{batch_url}/send"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn an_export_leaves_out_contacts_deleted_or_erased_since_the_batch_was_prepared() {
    let (app, tenant, analyst, ids, batch_url) = three_contact_batch(None).await;
    erase_kay_and_delete_lee(&app, tenant, &ids);

    let response = app
        .post_form(&analyst, &format!("{batch_url}/export"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let csv = response.text().await.unwrap();
    for gone in ["kayleigh", "Kayleigh", "leopold", "Leopold"] {
        assert!(!csv.contains(gone), "{gone} exported: {csv}");
    }
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert_eq!(&rows[0][0], "jo@example.org");

    let feedback = FeedbackStore::new(app.context.store.clone());
    let batch_id = batch_url.rsplit('/').next().unwrap().parse().unwrap();
    let batch = feedback.batch(tenant, batch_id).unwrap().unwrap();
    assert_eq!(
        (batch.progress().exported, batch.progress().withheld),
        (1, 2)
    );
    for message in batch.messages.iter().filter(|m| m.contact != ids[0]) {
        assert_emptied(message);
        assert!(feedback
            .last_requested_at(tenant, message.contact)
            .unwrap()
            .is_none());
    }
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant), None, 10_000)
        .unwrap();
    let exported = entries
        .iter()
        .find(|entry| entry.event.action == AuditAction::FeedbackExported)
        .unwrap();
    // Kay's message was emptied by the erasure itself (`feedback::forget_contacts`); Lee's,
    // deleted by hand, by the export.
    assert!(
        exported
            .event
            .target
            .contains("1 withheld, contact no longer exists"),
        "{}",
        exported.event.target
    );
    assert!(!exported.event.target.contains('@'));
}

#[tokio::test]
async fn forgetting_contacts_empties_their_messages_in_every_stored_batch() {
    let (app, tenant, analyst, ids, batch_url) = three_contact_batch(None).await;
    // Exported first: every contact counts as asked, and an export could be fetched again.
    let response = app
        .post_form(&analyst, &format!("{batch_url}/export"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let feedback = FeedbackStore::new(app.context.store.clone());
    assert!(feedback
        .last_requested_at(tenant, ids[1])
        .unwrap()
        .is_some());

    let forgotten =
        rapport::feedback::forget_contacts(&app.context, tenant, &[ids[1], ids[2]]).unwrap();
    assert_eq!(forgotten, 2);
    assert_eq!(
        rapport::feedback::forget_contacts(&app.context, tenant, &[ids[1]]).unwrap(),
        0,
        "already emptied"
    );
    let batch_id = batch_url.rsplit('/').next().unwrap().parse().unwrap();
    let batch = feedback.batch(tenant, batch_id).unwrap().unwrap();
    for message in &batch.messages {
        if message.contact == ids[0] {
            assert_eq!(message.to, "jo@example.org");
            assert!(message.body.contains("Dear Jo Kim"));
            assert!(matches!(
                message.status,
                rapport::feedback::MessageStatus::Exported { .. }
            ));
        } else {
            assert_emptied(message);
        }
    }
    assert!(feedback
        .last_requested_at(tenant, ids[0])
        .unwrap()
        .is_some());
    assert!(feedback
        .last_requested_at(tenant, ids[1])
        .unwrap()
        .is_none());
    assert!(feedback
        .last_requested_at(tenant, ids[2])
        .unwrap()
        .is_none());

    // Exported again, only Jo's request is in the file; the page shows neither of the others.
    let response = app
        .post_form(&analyst, &format!("{batch_url}/export"), &[])
        .await;
    let csv = response.text().await.unwrap();
    assert_eq!(
        csv::Reader::from_reader(csv.as_bytes()).records().count(),
        1,
        "{csv}"
    );
    assert!(
        !csv.contains("kayleigh") && !csv.contains("leopold"),
        "{csv}"
    );
    let page = app.get(&analyst, &batch_url).await.text().await.unwrap();
    assert!(
        !page.contains("Kayleigh") && !page.contains("leopold"),
        "{page}"
    );
}
