//! Search: ranked, highlighted, updated by re-imports, and never across tenants.

use std::path::Path;

use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::ingest::{self, ImportFormat, ImportRequest, ImportState};
use rapport::search;
use rapport::tenants::Tenant;
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::TestApp;

fn import(app: &TestApp, tenant: &Tenant, path: &Path) {
    let request = ImportRequest {
        actor: &Actor::cli(),
        tenant,
        format: ImportFormat::Jsonl,
        path,
        skip_invalid: false,
    };
    let run = ingest::import_file(&app.context, &request, &mut |_| {}).unwrap();
    assert_eq!(run.state, ImportState::Committed);
}

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interactions.jsonl")
}

fn subjects(app: &TestApp, tenant: &Tenant, query: &str) -> Vec<String> {
    search::find(&app.context, tenant.id, query, 10)
        .unwrap()
        .items
        .into_iter()
        .map(|item| item.subject.iter().map(|s| s.text.as_str()).collect())
        .collect()
}

#[tokio::test]
async fn words_names_and_addresses_find_the_right_interactions_ranked() {
    let app = TestApp::spawn();
    let acme = app.create_tenant("acme");
    import(&app, &acme, &fixture());

    assert_eq!(
        subjects(&app, &acme, "declined card")[0],
        "Card payment declined at checkout"
    );
    // A whole address is its own term: its two interactions rank above ones that share only
    // parts of it (every address here ends in "example").
    let mut contoso = subjects(&app, &acme, "tom@contoso.example");
    contoso.truncate(2);
    contoso.sort();
    assert_eq!(
        contoso,
        ["Export to CSV is empty", "Re: Contract renewal terms"]
    );
    assert!(subjects(&app, &acme, "Ines Duarte")
        .contains(&"Login problems after password reset".to_owned()));
    assert!(subjects(&app, &acme, "zebra").is_empty());
    // The invoice ticket mentions "invoice" twice and is about nothing else: it ranks first.
    assert_eq!(subjects(&app, &acme, "invoice")[0], "Wrong invoice address");
}

#[tokio::test]
async fn a_reimport_replaces_what_search_finds() {
    let app = TestApp::spawn();
    let acme = app.create_tenant("acme");
    import(&app, &acme, &fixture());
    let changed = std::fs::read_to_string(fixture())
        .unwrap()
        .replace("Wrong invoice address", "Wrong shipping label");
    let path = app.data_dir.join("changed.jsonl");
    std::fs::write(&path, changed).unwrap();
    import(&app, &acme, &path);
    assert!(subjects(&app, &acme, "shipping label").contains(&"Wrong shipping label".to_owned()));
    let invoice = subjects(&app, &acme, "invoice");
    assert_eq!(
        invoice
            .iter()
            .filter(|s| s.as_str() == "Wrong shipping label")
            .count(),
        1,
        "duplicates: {invoice:?}"
    );
    assert!(
        !invoice.contains(&"Wrong invoice address".to_owned()),
        "the old version is still found"
    );
}

#[tokio::test]
async fn the_page_highlights_escapes_audits_and_never_crosses_tenants() {
    let app = TestApp::spawn();
    let acme = app.create_tenant("acme");
    let other = app.create_tenant("other");
    import(&app, &acme, &fixture());
    let hostile = app.data_dir.join("hostile.jsonl");
    std::fs::write(
        &hostile,
        r#"{"source_system":"desk","source_id":"X-1","channel":"chat","subject":"<script>alert(1)</script> declined","messages":[{"role":"customer","sent_at":"2026-10-01T08:00:00Z","text":"declined <img src=x onerror=alert(1)>"}]}"#,
    )
    .unwrap();
    import(&app, &other, &hostile);
    app.create_user("analyst@acme.example", Role::Analyst, Some(&acme));
    app.create_user("analyst@other.example", Role::Analyst, Some(&other));

    let acme_analyst = app.signed_in_client("analyst@acme.example").await;
    let page = app.get(&acme_analyst, "/t/acme/search?q=declined").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Card payment <mark>declined</mark> at checkout"),
        "{html}"
    );
    assert!(
        !html.contains("alert(1)"),
        "another tenant's interaction was shown"
    );
    let audited = app
        .context
        .audit_log
        .entries(AuditView::Tenant(acme.id), None, 1)
        .unwrap();
    assert_eq!(audited[0].event.action, AuditAction::PersonalDataRead);
    assert!(
        !audited[0].event.target.contains("declined"),
        "the query was written to the audit log"
    );

    let other_analyst = app.signed_in_client("analyst@other.example").await;
    let html = app
        .get(&other_analyst, "/t/other/search?q=declined")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("&#60;script&#62;alert(1)"), "{html}");
    assert!(
        !html.contains("<script>alert"),
        "untrusted text was not escaped"
    );
    assert!(
        !html.contains("Card payment"),
        "acme's interaction leaked into other's results"
    );
    assert_eq!(
        app.get(&other_analyst, "/t/acme/search?q=declined")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let query = app
        .get(&other_analyst, "/t/other/search?q=%3Cb%3Ebold")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        query.contains("value=\"&#60;b&#62;bold\""),
        "the query was not escaped in the form"
    );
}
