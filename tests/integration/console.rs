//! The console's data pages: the interactions list with its filters and pages, one thread (roles,
//! escaping, quoted text), an account's timeline, contacts and signals, each view audited; and
//! the upload: streamed into a sealed spool, imported in the background, reported on its page,
//! with no plaintext left under the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use rapport::accounts::{AccountRecord, ContactRecord};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::ids::RecordId;
use rapport::ingest::{self, ImportFormat, ImportRequest, ImportState};
use rapport::interactions::query::{list_interactions, InteractionFilter};
use rapport::signals::{Signal, SignalRecord, SurveyKind};
use rapport::tenants::Tenant;
use rapport::users::Role;
use reqwest::{Client, Response, StatusCode};

use crate::helpers::{csrf_in, escaped, files_under, location, TestApp};

const SCRIPT_TEXT: &str = "Hi <script>alert(1)</script> there";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn import(app: &TestApp, tenant: &Tenant, path: &Path) {
    let run = ingest::import_file(
        &app.context,
        &ImportRequest {
            actor: &Actor::cli(),
            tenant,
            format: ImportFormat::Jsonl,
            path,
            skip_invalid: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(run.state, ImportState::Committed, "{run:?}");
}

/// The fixture plus one chat whose text tries to inject a script.
fn seeded(app: &TestApp) -> (Tenant, tempfile::TempDir) {
    let tenant = app.create_tenant("acme");
    import(app, &tenant, &fixture("interactions.jsonl"));
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.jsonl");
    let line = serde_json::json!({
        "source_system": "livechat", "source_id": "X-1", "channel": "chat",
        "subject": "Hostile <b>subject</b>", "account": "evil.example",
        "messages": [{"role": "customer", "author_name": "Eve", "sent_at": "2026-10-06T10:00:00Z",
                      "text": SCRIPT_TEXT}]
    });
    std::fs::write(&hostile, format!("{line}\n")).unwrap();
    import(app, &tenant, &hostile);
    (tenant, dir)
}

async fn page(app: &TestApp, client: &Client, path: &str) -> String {
    let response = app.get(client, path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.text().await.unwrap()
}

fn interaction_links(page: &str) -> usize {
    page.matches("href=\"/t/acme/interactions/").count()
}

fn personal_reads(app: &TestApp, tenant: &Tenant) -> Vec<String> {
    app.context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == AuditAction::PersonalDataRead)
        .map(|entry| entry.event.target)
        .collect()
}

#[tokio::test]
async fn interactions_list_filters_pages_and_shows_threads_escaped() {
    let app = TestApp::spawn();
    let (tenant, _dir) = seeded(&app);
    app.create_user("ana@acme.example", Role::Analyst, Some(&tenant));
    let client = app.signed_in_client("ana@acme.example").await;

    let list = page(&app, &client, "/t/acme/interactions").await;
    for subject in [
        "Card payment declined at checkout",
        "Export to CSV is empty",
        "Re: Contract renewal terms",
        "Login problems after password reset",
        "Pricing for 200 seats",
        "Wrong invoice address",
    ] {
        assert!(list.contains(subject), "{subject} missing");
    }
    assert_eq!(interaction_links(&list), 7);
    assert!(list.contains(&escaped("Hostile <b>subject</b>")));
    assert!(!list.contains("<b>subject"));

    let email = page(&app, &client, "/t/acme/interactions?channel=email").await;
    assert_eq!(interaction_links(&email), 1);
    assert!(email.contains("Re: Contract renewal terms"));
    let billing = page(
        &app,
        &client,
        "/t/acme/interactions?tag=billing&status=solved&account=northwind.example",
    )
    .await;
    assert_eq!(interaction_links(&billing), 2);
    let dated = page(
        &app,
        &client,
        "/t/acme/interactions?from=2026-10-02&to=2026-10-03&channel=",
    )
    .await;
    assert_eq!(interaction_links(&dated), 2, "{dated}");
    let bad = app
        .get(&client, "/t/acme/interactions?from=yesterday")
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Pages of two walk every interaction once, newest first, and stop with a short page.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let found = list_interactions(
            &app.context.interactions,
            tenant.id,
            &InteractionFilter::default(),
            cursor,
            2,
        )
        .unwrap();
        seen.extend(found.items.iter().map(|item| item.id));
        match found.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    let cursor = seen[1];
    let older = page(
        &app,
        &client,
        &format!("/t/acme/interactions?cursor={cursor}"),
    )
    .await;
    assert_eq!(interaction_links(&older), 5);
    assert!(older.contains(">Newest</a>"));

    // The thread: messages in order, with readable roles, quoted text folded away.
    let ticket = app
        .context
        .interactions
        .find_by_source(tenant.id, "helpdesk\u{0}T-1001")
        .unwrap()
        .unwrap();
    let thread = page(
        &app,
        &client,
        &format!("/t/acme/interactions/{}", ticket.id),
    )
    .await;
    let positions: Vec<usize> = [
        "Hi, our company card was declined",
        "Hello Maria, thanks for reaching out",
        "AVS mismatch",
        "We moved offices last month",
        "Perfect, the renewal went through",
    ]
    .iter()
    .map(|text| {
        thread
            .find(text)
            .unwrap_or_else(|| panic!("{text} missing"))
    })
    .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    for label in ["Customer", "Agent", "Internal note"] {
        assert!(thread.contains(&format!("<span class=\"role-label\">{label}</span>")));
    }
    assert!(thread.contains("Analysis"));
    let mail = app
        .context
        .interactions
        .find_by_source(tenant.id, "mail\u{0}<CAF1x9@mail.contoso.example>")
        .unwrap()
        .unwrap();
    let mail_page = page(&app, &client, &format!("/t/acme/interactions/{}", mail.id)).await;
    let details = mail_page.find("<details class=\"quoted\">").unwrap();
    let quoted = mail_page
        .find(&escaped("> please find the renewal terms"))
        .unwrap();
    assert!(
        details < quoted && quoted < mail_page[details..].find("</details>").unwrap() + details
    );
    assert!(mail_page.contains("renewal-2027.pdf"));
    assert!(mail_page
        .contains("<div class=\"signature message-text\">Priya Nair\nAccount Manager</div>"));

    let hostile = app
        .context
        .interactions
        .find_by_source(tenant.id, "livechat\u{0}X-1")
        .unwrap()
        .unwrap();
    let hostile_page = page(
        &app,
        &client,
        &format!("/t/acme/interactions/{}", hostile.id),
    )
    .await;
    assert!(hostile_page.contains(&escaped(SCRIPT_TEXT)));
    assert!(!hostile_page.contains("<script>alert(1)"));

    let missing = app
        .get(
            &client,
            &format!("/t/acme/interactions/{}", RecordId::new()),
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let reads = personal_reads(&app, &tenant);
    assert_eq!(
        reads.iter().filter(|t| *t == "interactions list").count(),
        5,
        "{reads:?}"
    );
    for id in [ticket.id, mail.id, hostile.id] {
        assert_eq!(
            reads
                .iter()
                .filter(|t| **t == format!("interaction {id}"))
                .count(),
            1
        );
    }
}

#[tokio::test]
async fn account_page_merges_interactions_and_signals_and_lists_are_audited() {
    let app = TestApp::spawn();
    let (tenant, _dir) = seeded(&app);
    let (account, _) = app
        .context
        .accounts
        .upsert(
            tenant.id,
            AccountRecord {
                source_system: "crm".to_owned(),
                source_id: "ACC-7".to_owned(),
                name: "Contoso Ltd".to_owned(),
                domain: Some("contoso.example".to_owned()),
                plan: Some("Enterprise".to_owned()),
                arr: Some(120_000.0),
                renewal_date: NaiveDate::from_ymd_opt(2027, 1, 31),
                owner: Some("csm@vendor.example".to_owned()),
            },
        )
        .unwrap();
    app.context
        .contacts
        .upsert(
            tenant.id,
            ContactRecord {
                source_system: "crm".to_owned(),
                source_id: "P-1".to_owned(),
                name: "Tom Becker".to_owned(),
                email: Some("tom@contoso.example".to_owned()),
                phone: Some("+49 30 1234567".to_owned()),
                date_of_birth: None,
                job_title: Some("Head of Ops".to_owned()),
                account: Some("ACC-7".to_owned()),
            },
        )
        .unwrap();
    for (id, signal) in [
        (
            "N-1",
            Signal::Survey {
                survey: SurveyKind::Nps,
                score: 9,
                comment: Some("Great support team".to_owned()),
            },
        ),
        (
            "R-1",
            Signal::Review {
                platform: "google".to_owned(),
                rating: 2,
                text: Some("Slow answers".to_owned()),
                reviewer: None,
                location: None,
                reply: None,
            },
        ),
    ] {
        app.context
            .signals
            .upsert(
                tenant.id,
                SignalRecord {
                    source_system: "survey-tool".to_owned(),
                    source_id: id.to_owned(),
                    account: Some("contoso.example".to_owned()),
                    contact: None,
                    occurred_at: Utc.with_ymd_and_hms(2026, 10, 7, 9, 0, 0).unwrap(),
                    signal,
                },
            )
            .unwrap();
    }
    app.create_user("csm@acme.example", Role::QaLead, Some(&tenant));
    let client = app.signed_in_client("csm@acme.example").await;

    let accounts = page(&app, &client, "/t/acme/accounts").await;
    assert!(accounts.contains("Contoso Ltd") && accounts.contains("120000.00"));
    let account_page = page(&app, &client, &format!("/t/acme/accounts/{}", account.id)).await;
    assert!(account_page.contains("Tom Becker") && account_page.contains("Head of Ops"));
    let timeline = &account_page[account_page.find("Timeline").unwrap()..];
    let review = timeline.find("★★☆☆☆ (2/5) google — Slow answers").unwrap();
    let chat = timeline.find("Export to CSV is empty").unwrap();
    let mail = timeline.find("Re: Contract renewal terms").unwrap();
    assert!(review < mail && mail < chat, "newest first");
    assert!(timeline.contains("NPS 9 — Great support team"));
    assert!(!timeline.contains("Card payment declined"));
    let chat_id = app
        .context
        .interactions
        .find_by_source(tenant.id, "livechat\u{0}C-88231")
        .unwrap()
        .unwrap()
        .id;
    assert!(timeline.contains(&format!("href=\"/t/acme/interactions/{chat_id}\"")));

    let contacts = page(&app, &client, "/t/acme/contacts").await;
    assert!(contacts.contains("tom@contoso.example") && contacts.contains("+49 30 1234567"));
    let surveys = page(&app, &client, "/t/acme/signals?kind=survey").await;
    assert!(surveys.contains("NPS 9") && !surveys.contains("Slow answers"));
    let all = page(&app, &client, "/t/acme/signals").await;
    assert!(all.contains("NPS 9") && all.contains("Slow answers"));
    assert_eq!(
        app.get(&client, "/t/acme/signals?kind=weather")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    let reads = personal_reads(&app, &tenant);
    for target in [
        "accounts list".to_owned(),
        format!("account {}", account.id),
        "contacts list".to_owned(),
    ] {
        assert_eq!(
            reads.iter().filter(|t| **t == target).count(),
            1,
            "{target}"
        );
    }
    assert_eq!(reads.iter().filter(|t| *t == "signals list").count(), 2);
}

#[tokio::test]
async fn a_sparse_filter_stops_at_the_scan_limit_but_the_account_page_finds_its_oldest_record() {
    use rapport::records::MAX_SCANNED_PER_PAGE;

    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("ana@acme.example", Role::Analyst, Some(&tenant));
    // The oldest interaction is the only call, and the only one of account big.example; more
    // than a scan's worth of chats of another account were imported after it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.jsonl");
    let line = |id: usize, channel: &str, account: &str| {
        serde_json::json!({
            "source_system": "desk", "source_id": format!("S-{id}"), "channel": channel,
            "subject": format!("Subject {id}"), "account": account,
            "messages": [{"role": "customer", "sent_at": "2026-10-06T10:00:00Z", "text": "Hello"}]
        })
        .to_string()
    };
    let mut file = line(0, "call", "big.example") + "\n";
    for id in 1..=MAX_SCANNED_PER_PAGE + 10 {
        file.push_str(&line(id, "chat", "other.example"));
        file.push('\n');
    }
    std::fs::write(&path, file).unwrap();
    import(&app, &tenant, &path);
    // Signed in after the import, so that no pooled connection sits idle through it.
    let client = app.signed_in_client("ana@acme.example").await;

    // The filtered page stops after examining the limit: no match yet, a notice, and an Older
    // link that carries the filter on.
    let first = page(&app, &client, "/t/acme/interactions?channel=call").await;
    assert_eq!(interaction_links(&first), 0);
    assert!(
        first.contains("looked through 5000 interactions"),
        "{first}"
    );
    let marker = "href=\"/t/acme/interactions?channel=call&#38;cursor=";
    let start = first.find(marker).expect("an Older link") + "href=\"".len();
    let older = &first[start..];
    let older = older[..older.find('"').unwrap()].replace("&#38;", "&");
    let second = page(&app, &client, &older).await;
    assert_eq!(interaction_links(&second), 1, "{second}");
    assert!(second.contains("Subject 0"));
    assert!(!second.contains("looked through"));

    // The account page finds the account's one interaction through the reference index, however
    // many newer interactions of other accounts there are, and opens only what it shows.
    let (account, _) = app
        .context
        .accounts
        .upsert(
            tenant.id,
            AccountRecord {
                source_system: "crm".to_owned(),
                source_id: "ACC-BIG".to_owned(),
                name: "Big Ltd".to_owned(),
                domain: Some("big.example".to_owned()),
                plan: None,
                arr: None,
                renewal_date: None,
                owner: None,
            },
        )
        .unwrap();
    let account_page = page(&app, &client, &format!("/t/acme/accounts/{}", account.id)).await;
    assert!(account_page.contains("Subject 0"), "{account_page}");
    assert!(!account_page.contains("Subject 1<"));
    assert!(!account_page.contains("most recently imported"));
}

const BOUNDARY: &str = "rapport-test-boundary-81d3";

/// A multipart/form-data body as a browser sends it.
fn multipart_body(format: &str, skip_invalid: bool, file_name: &str, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut text_part = |name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    text_part("format", format);
    if skip_invalid {
        text_part("skip_invalid", "1");
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The CSRF field as the first part of a multipart body, where the upload form puts it.
fn csrf_part(token: &str) -> Vec<u8> {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n")
        .into_bytes()
}

/// Posts an upload; with `csrf`, the token goes first in the body, as the no-script form sends it.
async fn upload(app: &TestApp, client: &Client, csrf: Option<&str>, body: Vec<u8>) -> Response {
    let body = match csrf {
        Some(token) => [csrf_part(token), body].concat(),
        None => body,
    };
    post_multipart(app, client, "/t/acme/imports", body).await
}

async fn post_multipart(app: &TestApp, client: &Client, path: &str, body: Vec<u8>) -> Response {
    client
        .post(app.url(path))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Follows the import page until it stops refreshing; returns the final page.
async fn finished_import_page(app: &TestApp, client: &Client, path: &str) -> String {
    for _ in 0..200 {
        let body = page(app, client, path).await;
        if !body.contains("http-equiv=\"refresh\"") {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("import at {path} did not finish");
}

#[tokio::test]
async fn uploads_are_spooled_sealed_imported_and_reported() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("ana@acme.example", Role::Analyst, Some(&tenant));
    let admin = app.signed_in_client("admin@acme.example").await;

    let imports = page(&app, &admin, "/t/acme/imports").await;
    assert!(imports.contains("enctype=\"multipart/form-data\""));
    assert!(imports.contains("<option value=\"jsonl\">"));
    assert!(imports.contains("upload.js"));
    let token = csrf_in(&imports);

    // The fixture plus a line whose text is a sentinel that must never reach the disk in clear.
    let sentinel = "SENTINEL-UPLOAD-PLAINTEXT-5c1e";
    let mut file = std::fs::read(fixture("interactions.jsonl")).unwrap();
    let extra = serde_json::json!({
        "source_system": "upload", "source_id": "U-1", "channel": "chat", "subject": "Spool check",
        "messages": [{"role": "customer", "sent_at": "2026-10-08T08:00:00Z", "text": sentinel}]
    });
    file.extend_from_slice(format!("{extra}\n").as_bytes());

    // Without the token nothing is accepted.
    let refused = upload(
        &app,
        &admin,
        None,
        multipart_body("jsonl", false, "a.jsonl", &file),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let response = upload(
        &app,
        &admin,
        Some(&token),
        multipart_body("jsonl", false, "northwind.jsonl", &file),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let report_path = location(&response);
    assert!(report_path.starts_with("/t/acme/imports/"), "{report_path}");
    let report = finished_import_page(&app, &admin, &report_path).await;
    assert!(
        report.contains("<dd class=\"state\">committed</dd>"),
        "{report}"
    );
    assert!(report.contains("<dd class=\"imported\">7</dd>"));
    assert!(report.contains("<dd class=\"rejected\">0</dd>"));
    assert!(report.contains("northwind.jsonl"));
    assert_eq!(app.context.interactions.count(tenant.id).unwrap(), 7);
    let history = page(&app, &admin, "/t/acme/imports").await;
    assert!(history.contains(&report_path) && history.contains("committed"));

    // The spool is gone, and no file under the data directory holds the upload in clear.
    let spool = app.data_dir.join("spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    app.context.store.flush().unwrap();
    for path in files_under(&app.data_dir) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(sentinel.len())
                .any(|window| window == sentinel.as_bytes()),
            "plaintext found in {}",
            path.display()
        );
    }

    // A malformed file is refused whole, and its report names line and field.
    let bad = std::fs::read(fixture("interactions-with-errors.jsonl")).unwrap();
    let response = upload(
        &app,
        &admin,
        Some(&token),
        multipart_body("jsonl", false, "broken.jsonl", &bad),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let report = finished_import_page(&app, &admin, &location(&response)).await;
    assert!(
        report.contains("<dd class=\"state\">refused</dd>"),
        "{report}"
    );
    assert!(
        report.contains("<td>4</td><td>messages[1].sent_at</td>"),
        "{report}"
    );
    assert!(report.contains("<td>6</td><td>channel</td>"));
    assert_eq!(app.context.interactions.count(tenant.id).unwrap(), 7);

    // Bad forms get clear answers.
    let response = upload(
        &app,
        &admin,
        Some(&token),
        multipart_body("fax", false, "a.jsonl", &file),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("Choose the file"));
    let response = upload(
        &app,
        &admin,
        Some(&token),
        multipart_body("jsonl", false, "", b""),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // An analyst may read data but not import it.
    let analyst = app.signed_in_client("ana@acme.example").await;
    let analyst_token = app.csrf(&analyst).await;
    let response = upload(
        &app,
        &analyst,
        Some(&analyst_token),
        multipart_body("jsonl", false, "a.jsonl", &file),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&analyst, &report_path).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
}

#[tokio::test]
async fn the_upload_token_travels_first_in_the_form_or_in_the_header_never_in_the_url() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let admin = app.signed_in_client("admin@acme.example").await;
    let imports = page(&app, &admin, "/t/acme/imports").await;
    let token = csrf_in(&imports);
    // The form posts to a URL without the token, and its hidden token field comes first.
    assert!(imports.contains("action=\"/t/acme/imports\""), "{imports}");
    let form = &imports[imports.find("id=\"upload-form\"").unwrap()..];
    assert!(
        form.find("name=\"csrf\"").unwrap() < form.find("name=\"format\"").unwrap(),
        "{form}"
    );
    let file = std::fs::read(fixture("interactions.jsonl")).unwrap();

    // A token in the query string no longer counts.
    let in_url = post_multipart(
        &app,
        &admin,
        &format!("/t/acme/imports?csrf={token}"),
        multipart_body("jsonl", false, "a.jsonl", &file),
    )
    .await;
    assert_eq!(in_url.status(), StatusCode::FORBIDDEN);

    // The field is only looked for first: after the format it is refused.
    let mut late = multipart_body("jsonl", false, "a.jsonl", &file);
    let format_part_end = late
        .windows(7)
        .position(|window| window == b"jsonl\r\n")
        .unwrap()
        + 7;
    late.splice(format_part_end..format_part_end, csrf_part(&token));
    let refused = post_multipart(&app, &admin, "/t/acme/imports", late).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.context.interactions.count(tenant.id).unwrap(), 0);

    // The script's header is accepted without a field in the body.
    let by_header = admin
        .post(app.url("/t/acme/imports"))
        .header("x-csrf-token", &token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart_body("jsonl", false, "a.jsonl", &file))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), StatusCode::SEE_OTHER);
    let report = finished_import_page(&app, &admin, &location(&by_header)).await;
    assert!(
        report.contains("<dd class=\"state\">committed</dd>"),
        "{report}"
    );

    // The field first is accepted, and the handler still reads the whole form after it.
    let by_field = upload(
        &app,
        &admin,
        Some(&token),
        multipart_body("jsonl", true, "b.jsonl", &file),
    )
    .await;
    assert_eq!(by_field.status(), StatusCode::SEE_OTHER);
    let report = finished_import_page(&app, &admin, &location(&by_field)).await;
    assert!(report.contains("b.jsonl"), "{report}");
    assert!(
        report.contains("<dd class=\"state\">committed</dd>"),
        "{report}"
    );
}

#[tokio::test]
async fn an_upload_declared_over_the_limit_is_refused_with_413_before_it_is_read() {
    use reqwest::cookie::CookieStore as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // Plain HTTP, so the request can be written by hand with a Content-Length no test could send.
    let app = TestApp::spawn_plain();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = app
        .login(&client, "admin@acme.example", crate::helpers::PASSWORD)
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let token = app.csrf(&client).await;
    let url: reqwest::Url = app.url("/").parse().unwrap();
    let cookies = jar.cookies(&url).unwrap();

    let mut stream = tokio::net::TcpStream::connect(url.socket_addrs(|| None).unwrap()[0])
        .await
        .unwrap();
    let head = format!(
        "POST /t/acme/imports HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n{}--{BOUNDARY}\r\n",
        cookies.to_str().unwrap(),
        2 * rapport::ingest::routes::MAX_UPLOAD_BYTES,
        String::from_utf8(csrf_part(&token)).unwrap(),
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("</html>") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("upload limit of 1024 MiB"), "{answer}");
    assert_eq!(app.context.interactions.count(tenant.id).unwrap(), 0);
}
