//! Data-subject requests end to end through the API (`/api/v1/privacy/requests`, the `privacy`
//! scope): access and portability packages that hold the subject's data and no one else's and
//! expire, rectification with its history, restriction and objection that stop analysis,
//! erasure (refused while a legal hold covers the subject), illegal transitions, due dates and the
//! scheduler's reminder; the console's pages and the audit log filtered by subject.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use rapport::analysis::jobs::{JobErrorKind, JobState};
use rapport::api::keys::{self, ApiScope};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::ids::RequestId;
use rapport::privacy::requests::{package, reminders, RequestError};
use rapport::privacy::{RestrictionKind, Restrictions};
use rapport::tenants::Tenant;
use rapport::users::Role;
use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};

use crate::helpers::{csrf_in, location, run_queue, use_off_backend, TestApp};

const JO: &str = "jo.kim@example.org";
const ANA: &str = "ana.berg@example.org";

fn key_for(app: &TestApp, tenant: &Tenant, scopes: &[ApiScope]) -> String {
    let scopes: BTreeSet<ApiScope> = scopes.iter().copied().collect();
    keys::create_key(&app.context, &Actor::cli(), None, tenant.id, "dsar", scopes)
        .unwrap()
        .secret
        .expose_secret()
        .to_owned()
}

async fn post(app: &TestApp, key: &str, path: &str, body: &Value) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, key: &str, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn json_of(response: Response, status: StatusCode) -> Value {
    let got = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

/// Writes a record through the API with a `write` key; returns its id.
async fn write(app: &TestApp, key: &str, resource: &str, body: Value) -> String {
    let created = json_of(
        post(app, key, &format!("/api/v1/{resource}"), &body).await,
        StatusCode::CREATED,
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

fn chat(source_id: &str, email: &str, name: &str, text: &str) -> Value {
    json!({
        "source_system": "desk", "source_id": source_id, "channel": "chat",
        "subject": format!("Chat {source_id}"), "account": "acme.example",
        "messages": [
            {"role": "customer", "author_email": email, "author_name": name,
             "sent_at": "2026-10-06T10:00:00Z", "text": text},
            {"role": "agent", "sent_at": "2026-10-06T10:05:00Z", "text": "Thank you, we are on it."}
        ]
    })
}

fn contact(source_id: &str, name: &str, email: &str, phone: &str) -> Value {
    json!({"source_system": "crm", "source_id": source_id, "name": name, "email": email,
           "phone": phone, "job_title": "Buyer", "account": "acme.example"})
}

fn survey(source_id: &str, email: &str, comment: &str) -> Value {
    json!({"source_system": "survey", "source_id": source_id, "account": "acme.example",
           "contact": email, "occurred_at": "2026-10-01T00:00:00Z",
           "signal": {"kind": "survey", "survey": "nps", "score": 4, "comment": comment}})
}

/// Creates a request through the API and returns it.
async fn create(app: &TestApp, key: &str, kind: &str, subject: (&str, &str)) -> Value {
    json_of(
        post(
            app,
            key,
            "/api/v1/privacy/requests",
            &json!({"kind": kind, "subject": {"kind": subject.0, "value": subject.1},
                    "note": "by e-mail"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await
}

async fn move_to(app: &TestApp, key: &str, id: &str, body: Value) -> Response {
    post(
        app,
        key,
        &format!("/api/v1/privacy/requests/{id}/transition"),
        &body,
    )
    .await
}

/// Verifies a request and puts it in progress.
async fn verify_and_start(app: &TestApp, key: &str, id: &str) {
    let verified = json_of(
        move_to(
            app,
            key,
            id,
            json!({"to": "verified", "verification": {"method": "known_contact_details", "note": "replied from the address on record"}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["state"], "verified");
    assert_eq!(verified["verification"]["method"], "known_contact_details");
    let started = json_of(
        move_to(app, key, id, json!({"to": "in_progress"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(started["state"], "in_progress");
}

struct Data {
    jo_contact: String,
    ana_contact: String,
    jo_chat: String,
    ana_mentions_jo: String,
    ana_chat: String,
    jo_survey: String,
    ana_survey: String,
}

/// Jo's and Ana's data: a contact each, a chat each, a chat of Ana's that mentions Jo's
/// address, and a survey each; analysed with the deterministic `off` backend.
async fn seed(app: &TestApp, tenant: &Tenant, writer: &str) -> Data {
    use_off_backend(&app.context, tenant.id);
    let data = Data {
        jo_contact: write(
            app,
            writer,
            "contacts",
            contact("c-jo", "Jo Kim", JO, "+44 20 7946 0958"),
        )
        .await,
        ana_contact: write(
            app,
            writer,
            "contacts",
            contact("c-ana", "Ana Berg", ANA, "+46 8 123 456"),
        )
        .await,
        jo_chat: write(
            app,
            writer,
            "interactions",
            chat(
                "i-jo",
                JO,
                "Jo Kim",
                "=SUM(1) My parcel <b>never</b> arrived.",
            ),
        )
        .await,
        ana_mentions_jo: write(
            app,
            writer,
            "interactions",
            chat(
                "i-ana-1",
                ANA,
                "Ana Berg",
                &format!("Please also copy my colleague {JO} on this."),
            ),
        )
        .await,
        ana_chat: write(
            app,
            writer,
            "interactions",
            chat("i-ana-2", ANA, "Ana Berg", "Invoice 77 is wrong."),
        )
        .await,
        jo_survey: write(
            app,
            writer,
            "signals",
            survey("s-jo", JO, "=cmd|' /C calc'!A0"),
        )
        .await,
        ana_survey: write(app, writer, "signals", survey("s-ana", ANA, "Fine")).await,
    };
    let context = app.context.clone();
    let tenant_id = tenant.id;
    tokio::task::spawn_blocking(move || run_queue(&context, tenant_id))
        .await
        .unwrap();
    data
}

/// Jo's contact, chat and survey are gone; Ana's chat and survey stay.
fn assert_only_jo_is_gone(app: &TestApp, tenant: &Tenant, data: &Data) {
    let context = &app.context;
    let id = |id: &str| -> rapport::ids::RecordId { id.parse().unwrap() };
    let interaction = |record: &str| context.interactions.get(tenant.id, id(record)).unwrap();
    let signal = |record: &str| context.signals.get(tenant.id, id(record)).unwrap();
    assert!(interaction(&data.jo_chat).is_none());
    assert!(interaction(&data.ana_chat).is_some());
    assert!(context
        .contacts
        .get(tenant.id, id(&data.jo_contact))
        .unwrap()
        .is_none());
    assert!(signal(&data.jo_survey).is_none());
    assert!(signal(&data.ana_survey).is_some());
}

struct Setup {
    app: TestApp,
    tenant: Tenant,
    key: String,
    writer: String,
}

fn setup() -> Setup {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let key = key_for(&app, &tenant, &[ApiScope::Privacy]);
    let writer = key_for(&app, &tenant, &[ApiScope::Read, ApiScope::Write]);
    Setup {
        app,
        tenant,
        key,
        writer,
    }
}

fn audit_entries(app: &TestApp, tenant: &Tenant) -> Vec<rapport::audit::AuditEntry> {
    app.context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 100_000)
        .unwrap()
}

#[tokio::test]
async fn an_access_request_packages_the_subject_s_data_and_no_one_else_s_and_expires() {
    let Setup {
        app,
        tenant,
        key,
        writer,
    } = setup();
    let data = seed(&app, &tenant, &writer).await;

    // Keys without the privacy scope are refused.
    let response = get(&app, &writer, "/api/v1/privacy/requests").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let request = create(&app, &key, "access", ("email", " Jo.Kim@Example.org ")).await;
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["state"], "received");
    assert_eq!(request["subject"], JO);
    assert_eq!(request["overdue"], false);

    // Completing straight from received is refused, naming what is allowed.
    let refused = json_of(
        move_to(&app, &key, &id, json!({"to": "completed"})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        refused["detail"],
        "a request that is received cannot become completed; allowed next: verified or rejected"
    );
    // Verifying needs the method and a note.
    let missing = json_of(
        move_to(&app, &key, &id, json!({"to": "verified"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(missing["errors"][0]["pointer"], "/verification/method");
    verify_and_start(&app, &key, &id).await;

    let done = json_of(
        move_to(&app, &key, &id, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["package"]["counts"]["contacts"], 1);
    assert_eq!(done["package"]["counts"]["interactions"], 1);
    assert_eq!(done["package"]["counts"]["interactions mentioning"], 1);
    assert_eq!(done["package"]["counts"]["signals"], 1);

    // The JSON holds Jo's records and none of Ana's own.
    let response = get(
        &app,
        &key,
        &format!("/api/v1/privacy/requests/{id}/package/package.json"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    let ids = |list: &str| -> Vec<String> {
        document[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("contacts"), vec![data.jo_contact.clone()]);
    assert_eq!(ids("interactions"), vec![data.jo_chat.clone()]);
    assert_eq!(
        ids("interactions_mentioning"),
        vec![data.ana_mentions_jo.clone()]
    );
    assert_eq!(ids("signals"), vec![data.jo_survey.clone()]);
    for other in [&data.ana_contact, &data.ana_chat, &data.ana_survey] {
        assert!(
            !text.contains(other.as_str()),
            "{other} leaked into the package"
        );
    }
    assert!(!text.contains("Invoice 77"));
    let analyses = document["analyses"].as_array().unwrap();
    assert!(!analyses.is_empty());
    assert!(analyses
        .iter()
        .all(|analysis| analysis["interaction"] == data.jo_chat.as_str()
            || analysis["interaction"] == data.ana_mentions_jo.as_str()));
    assert!(document["audit_entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["target"].as_str().unwrap().contains(&data.jo_chat)));

    // The CSVs: one per type, cells defused; the page escapes what it shows.
    let csv = get(
        &app,
        &key,
        &format!("/api/v1/privacy/requests/{id}/package/signals.csv"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(csv.contains("cmd|"), "{csv}");
    assert!(!csv.lines().any(|line| line.starts_with('=')), "{csv}");
    let csv = get(
        &app,
        &key,
        &format!("/api/v1/privacy/requests/{id}/package/interactions.csv"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(csv.starts_with("interaction,relation,"), "{csv}");
    assert!(
        csv.contains(",'=SUM(1) My parcel <b>never</b> arrived."),
        "{csv}"
    );
    assert!(!csv.contains("Invoice 77"));
    let html = get(
        &app,
        &key,
        &format!("/api/v1/privacy/requests/{id}/package/package.html"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(html.contains("&#60;b&#62;never&#60;/b&#62;"), "{html}");
    assert!(!html.contains("<b>never"));
    let response = get(
        &app,
        &key,
        &format!("/api/v1/privacy/requests/{id}/package/secrets.txt"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Downloads are audited; no dsar entry holds the address.
    let entries = audit_entries(&app, &tenant);
    assert!(entries.iter().any(
        |entry| entry.event.action == AuditAction::DsarPackageDownloaded
            && entry.event.target == format!("privacy request {id}: package.json")
    ));
    for entry in entries
        .iter()
        .filter(|entry| entry.event.action.as_str().starts_with("dsar."))
    {
        assert!(
            !entry.event.target.contains("jo.kim"),
            "{}",
            entry.event.target
        );
    }

    // Five days on, the package is refused, and the scheduler's run deletes it.
    let request_id: RequestId = id.parse().unwrap();
    let later = Utc::now() + Duration::days(5) + Duration::minutes(1);
    let error = package::load(&app.context, tenant.id, request_id, later).unwrap_err();
    assert!(matches!(error, RequestError::PackageExpired(_)), "{error}");
    assert!(error.to_string().starts_with("this package expired on "));
    let report = reminders::run_tenant(&app.context, tenant.id, later).unwrap();
    assert_eq!(report.packages_deleted, 1);
    let gone = json_of(
        get(
            &app,
            &key,
            &format!("/api/v1/privacy/requests/{id}/package/package.json"),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(gone["detail"].as_str().unwrap().contains("has no package"));
    assert!(audit_entries(&app, &tenant)
        .iter()
        .any(|entry| entry.event.action == AuditAction::DsarPackageExpired));
}

#[tokio::test]
async fn a_portability_request_by_contact_id_packages_that_contact_s_data() {
    let Setup {
        app,
        tenant,
        key,
        writer,
    } = setup();
    let data = seed(&app, &tenant, &writer).await;
    // The tenant keeps export packages for 2 days: the package expires then, not after 5.
    let mut policies = rapport::retention::policies(&app.context, tenant.id).unwrap();
    policies.set(
        rapport::retention::Category::ExportPackages,
        rapport::retention::Keep::Days(2),
    );
    rapport::retention::save_policies(&app.context, &Actor::cli(), None, tenant.id, &policies)
        .unwrap();
    let request = create(&app, &key, "portability", ("contact", &data.ana_contact)).await;
    let id = request["id"].as_str().unwrap().to_owned();
    verify_and_start(&app, &key, &id).await;
    let done = json_of(
        move_to(&app, &key, &id, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["package"]["counts"]["interactions"], 2);
    let created_at: chrono::DateTime<Utc> = done["package"]["created_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expires_at: chrono::DateTime<Utc> = done["package"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires_at - created_at, Duration::days(2));
    let text = get(
        &app,
        &key,
        &format!("/api/v1/privacy/requests/{id}/package/package.json"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains(&data.ana_chat) && text.contains(&data.ana_survey));
    assert!(!text.contains(&data.jo_chat) && !text.contains(&data.jo_survey));
    assert!(!text.contains(&data.jo_contact));
}

#[tokio::test]
async fn rectification_edits_the_contact_and_keeps_the_previous_values() {
    let Setup {
        app,
        tenant,
        key,
        writer,
    } = setup();
    let data = seed(&app, &tenant, &writer).await;
    let request = create(&app, &key, "rectification", ("phone", "+44 (20) 7946-0958")).await;
    let id = request["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/privacy/requests/{id}/rectifications");
    let body = json!({"contact": data.jo_contact, "email": "jo@kim.example", "job_title": "Head of buying"});

    // Not before the request is in progress; never someone else's contact.
    let early = json_of(post(&app, &key, &path, &body).await, StatusCode::CONFLICT).await;
    assert!(early["detail"]
        .as_str()
        .unwrap()
        .contains("only a rectification request in progress"));
    verify_and_start(&app, &key, &id).await;
    let other = json_of(
        post(
            &app,
            &key,
            &path,
            &json!({"contact": data.ana_contact, "name": "X"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(other["errors"][0]["pointer"], "/contact");

    let rectified = json_of(post(&app, &key, &path, &body).await, StatusCode::OK).await;
    let changes = &rectified["rectifications"][0]["changes"];
    assert_eq!(
        changes,
        &json!([
            {"field": "email", "before": JO, "after": "jo@kim.example"},
            {"field": "job_title", "before": "Buyer", "after": "Head of buying"}
        ])
    );
    let stored = app
        .context
        .contacts
        .get(tenant.id, data.jo_contact.parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.record.email.as_deref(), Some("jo@kim.example"));
    assert_eq!(stored.record.job_title.as_deref(), Some("Head of buying"));
    assert_eq!(stored.record.name, "Jo Kim");
    let entry = audit_entries(&app, &tenant)
        .into_iter()
        .find(|entry| entry.event.action == AuditAction::DsarRectified)
        .unwrap();
    assert!(entry
        .event
        .target
        .ends_with(&format!("contact {} (email, job_title)", data.jo_contact)));
    assert!(!entry.event.target.contains("kim.example"));

    let done = json_of(
        move_to(&app, &key, &id, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["rectifications"][0]["changes"][0]["before"], JO);
}

#[tokio::test]
async fn restriction_and_objection_stop_analysis_of_the_subject() {
    let Setup {
        app,
        tenant,
        key,
        writer,
    } = setup();
    let data = seed(&app, &tenant, &writer).await;
    let restriction = create(&app, &key, "restriction", ("contact", &data.jo_contact)).await;
    let id = restriction["id"].as_str().unwrap().to_owned();
    verify_and_start(&app, &key, &id).await;
    let done = json_of(
        move_to(&app, &key, &id, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await;
    assert!(done["history"][2]["note"]
        .as_str()
        .unwrap()
        .starts_with("restriction recorded for 1 address"));
    let restrictions = Restrictions::new(app.context.store.clone());
    let recorded = restrictions.of(tenant.id, JO).unwrap().unwrap();
    assert_eq!(recorded.kind, RestrictionKind::Restriction);
    assert_eq!(recorded.reason, format!("privacy request {id}"));

    let objection = create(&app, &key, "objection", ("email", ANA)).await;
    let objection_id = objection["id"].as_str().unwrap().to_owned();
    verify_and_start(&app, &key, &objection_id).await;
    json_of(
        move_to(&app, &key, &objection_id, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        restrictions.of(tenant.id, ANA).unwrap().unwrap().kind,
        RestrictionKind::Objection
    );

    // The worker skips both subjects' new interactions; a third subject is analysed.
    let jo_new = write(
        &app,
        &writer,
        "interactions",
        chat("i-jo-2", JO, "Jo Kim", "Still no parcel."),
    )
    .await;
    let ana_new = write(
        &app,
        &writer,
        "interactions",
        chat("i-ana-3", ANA, "Ana Berg", "Hello again."),
    )
    .await;
    let lee = write(
        &app,
        &writer,
        "interactions",
        chat("i-lee", "lee@example.org", "Lee", "Hi."),
    )
    .await;
    let context = app.context.clone();
    let tenant_id = tenant.id;
    tokio::task::spawn_blocking(move || run_queue(&context, tenant_id))
        .await
        .unwrap();
    for skipped in [&jo_new, &ana_new] {
        let job = app
            .context
            .analysis
            .job(tenant.id, skipped.parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(job.error, Some(JobErrorKind::SubjectRestricted));
    }
    let job = app
        .context
        .analysis
        .job(tenant.id, lee.parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Done);
}

#[tokio::test]
async fn an_erasure_request_erases_the_subject_unless_a_legal_hold_covers_them() {
    let Setup {
        app,
        tenant,
        key,
        writer,
    } = setup();
    let data = seed(&app, &tenant, &writer).await;
    let request = create(&app, &key, "erasure", ("email", JO)).await;
    let id = request["id"].as_str().unwrap().to_owned();
    verify_and_start(&app, &key, &id).await;

    // A legal hold on Jo refuses the erasure, names the hold, and erases nothing.
    let hold = rapport::retention::holds::create(
        &app.context,
        &rapport::audit::Actor::cli(),
        None,
        tenant.id,
        &rapport::retention::holds::NewHold {
            kind: "subject".to_owned(),
            value: JO.to_owned(),
            from: String::new(),
            to: String::new(),
            reason: "matter 12".to_owned(),
            owner: "legal".to_owned(),
            ends: String::new(),
        },
    )
    .unwrap();
    let refused = json_of(
        move_to(&app, &key, &id, json!({"to": "completed"})).await,
        StatusCode::CONFLICT,
    )
    .await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("legal hold"), "{detail}");
    assert!(!detail.contains(JO));
    let shown = json_of(
        get(&app, &key, &format!("/api/v1/privacy/requests/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["state"], "in_progress");
    let jo_chat: rapport::ids::RecordId = data.jo_chat.parse().unwrap();
    assert!(app
        .context
        .interactions
        .get(tenant.id, jo_chat)
        .unwrap()
        .is_some());

    // Released, the hold no longer stands in the way: completing erases Jo's records and
    // leaves Ana's.
    rapport::retention::holds::release(
        &app.context,
        &rapport::audit::Actor::cli(),
        None,
        tenant.id,
        hold.id,
    )
    .unwrap();
    let done = json_of(
        move_to(&app, &key, &id, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["state"], "completed");
    assert_only_jo_is_gone(&app, &tenant, &data);
    let erased = audit_entries(&app, &tenant)
        .into_iter()
        .find(|entry| entry.event.action == AuditAction::PrivacyErased)
        .expect("the erasure is audited");
    assert!(erased.event.target.contains(&id), "{}", erased.event.target);
    assert!(!format!("{:?}", erased.event).contains(JO));
}

#[tokio::test]
async fn a_rejected_request_needs_a_reason_and_is_final() {
    let Setup { app, key, .. } = setup();
    let request = create(&app, &key, "erasure", ("email", JO)).await;
    let id = request["id"].as_str().unwrap().to_owned();
    verify_and_start(&app, &key, &id).await;

    // Rejection needs a reason, and a rejected request is final.
    let missing = json_of(
        move_to(&app, &key, &id, json!({"to": "rejected"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(missing["errors"][0]["pointer"], "/reason");
    let rejected = json_of(
        move_to(
            &app,
            &key,
            &id,
            json!({"to": "rejected", "reason": "identity not confirmed"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rejected["rejection"], "identity not confirmed");
    let final_state = json_of(
        move_to(&app, &key, &id, json!({"to": "in_progress"})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(final_state["detail"]
        .as_str()
        .unwrap()
        .ends_with("allowed next: none: it is final"));
}

#[tokio::test]
async fn due_dates_flag_overdue_and_due_soon_requests_and_the_scheduler_reminds() {
    let Setup {
        app, tenant, key, ..
    } = setup();
    let day = |days: i64| {
        (Utc::now() - Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut ids = Vec::new();
    for (received, overdue, due_soon) in [
        (day(40), true, false),
        (day(25), false, true),
        (day(0), false, false),
    ] {
        let request = json_of(
            post(
                &app,
                &key,
                "/api/v1/privacy/requests",
                &json!({"kind": "access", "subject": {"kind": "name", "value": "Jo  Kim"}, "received": received}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(request["overdue"], overdue, "{request}");
        assert_eq!(request["due_soon"], due_soon, "{request}");
        assert_eq!(request["subject"], "jo kim");
        let received_at: chrono::DateTime<Utc> =
            request["received_at"].as_str().unwrap().parse().unwrap();
        let due_at: chrono::DateTime<Utc> = request["due_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(due_at - received_at, Duration::days(30));
        ids.push(request["id"].as_str().unwrap().to_owned());
    }
    let future = json_of(
        post(
            &app,
            &key,
            "/api/v1/privacy/requests",
            &json!({"kind": "access", "subject": {"kind": "email", "value": JO}, "received": "2999-01-01"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(future["errors"][0]["pointer"], "/received");

    let openapi = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for path in [
        "\"/api/v1/privacy/requests\"",
        "\"/api/v1/privacy/requests/{id}/transition\"",
        "\"/api/v1/privacy/requests/{id}/package/{part}\"",
    ] {
        assert!(
            openapi.contains(path),
            "{path} missing from the OpenAPI document"
        );
    }

    let report = reminders::run_tenant(&app.context, tenant.id, Utc::now()).unwrap();
    assert_eq!((report.overdue, report.due_soon), (1, 1));
    let reminder = audit_entries(&app, &tenant)
        .into_iter()
        .find(|entry| entry.event.action == AuditAction::DsarReminder)
        .unwrap();
    assert_eq!(
        reminder.event.target,
        format!(
            "privacy requests: 1 overdue [{}], 1 due within 7 days [{}]",
            ids[0], ids[1]
        )
    );

    // The officer's list shows the notice and marks the rows in words, not colour alone.
    app.create_user("privacy@acme.example", Role::PrivacyOfficer, Some(&tenant));
    let officer = app.signed_in_client("privacy@acme.example").await;
    let page = app
        .get(&officer, "/t/acme/privacy/requests")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("1 request(s) overdue, 1 due within 7 days"),
        "{page}"
    );
    assert!(page.contains("<tr class=\"urgency-overdue\">"));
    assert!(page.contains("<strong>overdue</strong>"));
    assert!(page.contains("<strong>due soon</strong>"));
}

#[tokio::test]
async fn the_console_records_and_moves_a_request_and_the_audit_log_filters_by_subject() {
    let Setup {
        app,
        tenant,
        writer,
        ..
    } = setup();
    let data = seed(&app, &tenant, &writer).await;
    app.create_user("privacy@acme.example", Role::PrivacyOfficer, Some(&tenant));
    app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    let officer = app.signed_in_client("privacy@acme.example").await;
    let base = "/t/acme/privacy/requests";

    // A bad identifier is named and the typed values come back.
    let response = app
        .post_form(
            &officer,
            base,
            &[
                ("kind", "access"),
                ("subject_kind", "phone"),
                ("subject", "call me <b>"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Subject: the subject&#39;s phone number must have 5 to 20 digits"),
        "{page}"
    );
    assert!(page.contains("call me &#60;b&#62;"));
    // Without a CSRF token, nothing is recorded.
    let response = officer
        .post(app.url(base))
        .form(&[
            ("kind", "access"),
            ("subject_kind", "email"),
            ("subject", JO),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = app
        .post_form(
            &officer,
            base,
            &[
                ("kind", "access"),
                ("subject_kind", "email"),
                ("subject", JO),
                ("note", "letter"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let url = location(&response);
    assert!(url.starts_with("/t/acme/privacy/requests/"));
    let page = app.get(&officer, &url).await.text().await.unwrap();
    assert!(page.contains("Mark verified") && page.contains("Mark rejected"));
    assert!(!page.contains("Mark completed"));
    let csrf = csrf_in(&page);
    assert!(!csrf.is_empty());

    // An illegal step comes back as a message on the page.
    let response = app
        .post_form(
            &officer,
            &format!("{url}/transition"),
            &[("to", "completed")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = app.get(&officer, &url).await.text().await.unwrap();
    assert!(
        page.contains("a request that is received cannot become completed"),
        "{page}"
    );
    for fields in [
        vec![
            ("to", "verified"),
            ("method", "identity_document"),
            ("verification_note", "passport seen"),
        ],
        vec![("to", "in_progress")],
        vec![("to", "completed")],
    ] {
        let response = app
            .post_form(&officer, &format!("{url}/transition"), &fields)
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let page = app.get(&officer, &url).await.text().await.unwrap();
    assert!(
        page.contains("identity document seen: passport seen"),
        "{page}"
    );
    assert!(page.contains(&format!("{url}/package/package.json")));
    let response = app
        .get(&officer, &format!("{url}/package/contacts.csv"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("Jo Kim"));

    // Another role gets nothing.
    let auditor = app.signed_in_client("auditor@acme.example").await;
    assert_eq!(
        app.get(&auditor, &url).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&auditor, &format!("{url}/package/contacts.csv"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );

    // The audit log by subject: entries about Jo's records and requests, none about Ana's own.
    let page = app
        .get(
            &auditor,
            &format!("/t/acme/audit?subject_kind=email&subject={JO}"),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&data.jo_chat), "{page}");
    assert!(page.contains("dsar.created"));
    assert!(!page.contains(&data.ana_chat));
    let filtered = audit_entries(&app, &tenant)
        .into_iter()
        .find(|entry| {
            entry
                .event
                .target
                .starts_with("audit log filtered by subject ")
        })
        .unwrap();
    assert!(!filtered.event.target.contains("jo.kim"));
}

#[test]
fn the_command_line_creates_lists_shows_and_completes_requests() {
    use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout, write_file};

    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config, "--tenant", "crm"]);
        rapport(&all, None)
    };
    let created = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "crm", "--name", "CRM",
        ],
        None,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let contacts = write_file(
        dir.path(),
        "contacts.csv",
        "contact_id,name,email,phone,date_of_birth,job_title,account_id\n\
         k1,Ana Souza,Ana@Example.com,+44 20 7946 0958,,Buyer,acme.example\n\
         k2,Bo Lee,bo@example.com,,,,globex.example\n",
    );
    let imported = rapport(
        &[
            "import",
            "--config",
            config,
            "--tenant",
            "crm",
            "--format",
            "contacts",
            contacts.to_str().unwrap(),
        ],
        None,
    );
    assert!(imported.status.success(), "{}", stderr(&imported));

    let refused = run(&[
        "dsar",
        "create",
        "--kind",
        "access",
        "--email",
        "not-an-address",
    ]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("Subject: the subject's e-mail address is not an address"));
    let created = run(&[
        "dsar",
        "create",
        "--kind",
        "access",
        "--phone",
        "+44 20 7946 0958",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_owned();
    assert_eq!(id.len(), 26, "{id}");
    let listed = stdout(&run(&["dsar", "list"]));
    assert!(
        listed.starts_with(&format!("{id}  access        received")),
        "{listed}"
    );
    assert!(
        !listed.contains("7946"),
        "the list shows no identifier: {listed}"
    );

    let no_out = run(&["dsar", "complete", &id]);
    assert!(
        stderr(&no_out).contains("give --out FILE"),
        "{}",
        stderr(&no_out)
    );
    let no_method = run(&["dsar", "complete", &id, "--out", "/dev/null"]);
    assert!(
        stderr(&no_method).contains("Verification method: choose how"),
        "{}",
        stderr(&no_method)
    );
    let out = dir.path().join("package.json");
    let completed = run(&[
        "dsar",
        "complete",
        &id,
        "--method",
        "call_back",
        "--verification-note",
        "called back",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(completed.status.success(), "{}", stderr(&completed));
    let package: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let names: Vec<&str> = package["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|contact| contact["record"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Ana Souza"]);
    let shown = stdout(&run(&["dsar", "show", &id]));
    assert!(shown.contains("subject: phone +442079460958"), "{shown}");
    assert!(
        shown.contains("in_progress -> completed  by command line: package built"),
        "{shown}"
    );

    let erasure = run(&[
        "dsar",
        "create",
        "--kind",
        "erasure",
        "--email",
        "bo@example.com",
    ]);
    let erasure_id = stdout(&erasure).trim().to_owned();
    let erased = run(&[
        "dsar",
        "complete",
        &erasure_id,
        "--method",
        "other",
        "--verification-note",
        "letter",
    ]);
    assert!(erased.status.success(), "{}", stderr(&erased));
    let shown = stdout(&run(&["dsar", "show", &erasure_id]));
    assert!(shown.contains("erased "), "{shown}");
}

/// Completes request `id` (verified and started first) and returns the answer's body.
async fn complete(app: &TestApp, key: &str, id: &str) -> Value {
    verify_and_start(app, key, id).await;
    json_of(
        move_to(app, key, id, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn an_erasure_deletes_the_packages_of_access_requests_about_the_subject() {
    let Setup {
        app,
        tenant,
        key,
        writer,
    } = setup();
    let data = seed(&app, &tenant, &writer).await;
    // Jo asked for a copy by e-mail, Ana by contact id; then Jo asks to be erased, by contact id.
    let jo_access = create(&app, &key, "access", ("email", JO)).await;
    let jo_access = jo_access["id"].as_str().unwrap().to_owned();
    complete(&app, &key, &jo_access).await;
    let ana_access = create(&app, &key, "access", ("contact", &data.ana_contact)).await;
    let ana_access = ana_access["id"].as_str().unwrap().to_owned();
    complete(&app, &key, &ana_access).await;
    let package_of = |id: &str| format!("/api/v1/privacy/requests/{id}/package/package.json");
    let before = get(&app, &key, &package_of(&jo_access)).await;
    assert_eq!(before.status(), StatusCode::OK);
    assert!(before.text().await.unwrap().contains(&data.jo_chat));

    let erasure = create(&app, &key, "erasure", ("contact", &data.jo_contact)).await;
    let erasure = erasure["id"].as_str().unwrap().to_owned();
    assert_eq!(complete(&app, &key, &erasure).await["state"], "completed");

    let gone = json_of(
        get(&app, &key, &package_of(&jo_access)).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(gone["detail"].as_str().unwrap().contains("has no package"));
    let kept = get(&app, &key, &package_of(&ana_access)).await;
    assert_eq!(kept.status(), StatusCode::OK, "Ana's package stays");
    let erased = audit_entries(&app, &tenant)
        .into_iter()
        .find(|entry| entry.event.action == AuditAction::PrivacyErased)
        .expect("the erasure is audited");
    assert!(
        erased.event.target.contains("1 packages deleted"),
        "{}",
        erased.event.target
    );
    // Erased by contact id, the subject is still found in the audit log by e-mail address.
    let (about_jo, _) = rapport::privacy::requests::find::audit_for_subject(
        &app.context,
        tenant.id,
        &rapport::privacy::erasure::SubjectRef::Email(JO.to_owned()),
        1_000,
    )
    .unwrap();
    assert!(
        about_jo
            .iter()
            .any(|entry| entry.event.action == AuditAction::PrivacyErased),
        "{about_jo:?}"
    );
    assert!(!erased.event.target.contains("jo.kim"));
}

#[tokio::test]
async fn an_erasure_by_contact_cut_off_after_deleting_the_contact_finishes_when_completed_again() {
    use rapport::accounts::ContactRecord;
    use rapport::privacy::ledger::{self, LedgerEntry};
    use rapport::privacy::subjects::Subject;
    use rapport::records::delete;
    use rapport::records::RecordKind;

    let Setup {
        app,
        tenant,
        key,
        writer,
    } = setup();
    let data = seed(&app, &tenant, &writer).await;
    let erasure = create(&app, &key, "erasure", ("contact", &data.jo_contact)).await;
    let erasure = erasure["id"].as_str().unwrap().to_owned();
    verify_and_start(&app, &key, &erasure).await;

    // A first run of this request wrote its ledger entry and deleted Jo's contact, then stopped
    // (a full disk, a crash) before Jo's chat, survey and keys.
    let store = &app.context.store;
    let tokens: Vec<[u8; 32]> = [
        Subject::email(JO).unwrap(),
        Subject::phone("+44 20 7946 0958").unwrap(),
    ]
    .iter()
    .map(|subject| store.subject_token(tenant.id, &subject.key_name()).unwrap())
    .collect();
    let keys: Vec<_> = tokens
        .iter()
        .filter_map(|token| store.subject_key_id(tenant.id, token).unwrap())
        .collect();
    assert!(
        !keys.is_empty(),
        "Jo's records are sealed under a subject key"
    );
    let jo_contact: rapport::ids::RecordId = data.jo_contact.parse().unwrap();
    ledger::append(
        &app.context,
        &LedgerEntry {
            tenant: tenant.id,
            subject_tokens: tokens.clone(),
            subject_keys: keys,
            records: vec![(RecordKind::Contact, jo_contact)],
            mentions: Vec::new(),
            packages: Vec::new(),
            time: Utc::now(),
            request: Some(erasure.clone()),
        },
    )
    .unwrap();
    let targets = delete::targets::<ContactRecord>(&app.context, tenant.id, &[jo_contact]).unwrap();
    assert_eq!(
        delete::delete::<ContactRecord>(&app.context, tenant.id, &targets)
            .unwrap()
            .len(),
        1
    );

    // Completing the request again finishes: the contact it names is gone, but the first run's
    // ledger entry says which keys and records are left.
    let done = json_of(
        move_to(&app, &key, &erasure, json!({"to": "completed"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["state"], "completed");
    assert_only_jo_is_gone(&app, &tenant, &data);
    for token in &tokens {
        assert_eq!(
            store.subject_key_id(tenant.id, token).unwrap(),
            None,
            "Jo's subject keys are destroyed"
        );
    }
}
