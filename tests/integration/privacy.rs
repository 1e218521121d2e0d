//! Restriction of processing and objection: recorded by a privacy officer on the Restrictions
//! page, audited without the address, and honoured by analysis, which skips the subject's
//! interactions until the restriction is lifted.

use rapport::analysis::jobs::{JobErrorKind, JobState};
use rapport::analysis::worker::{self, BackendCache};
use rapport::audit::{AuditAction, AuditView};
use rapport::ids::TenantId;
use rapport::inference::store::{AnalysisSettings, AnalysisSettingsStore};
use rapport::inference::BackendKind;
use rapport::interactions::InteractionRecord;
use rapport::privacy::Restrictions;
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{location, write_interaction, TestApp};

fn chat(source_id: &str, email: &str) -> InteractionRecord {
    serde_json::from_value(serde_json::json!({
        "source_system": "desk", "source_id": source_id, "channel": "chat",
        "messages": [
            {"role": "customer", "author_email": email, "sent_at": "2026-10-06T10:00:00Z",
             "text": "My parcel never arrived and I am upset."},
            {"role": "agent", "sent_at": "2026-10-06T10:05:00Z", "text": "Sorry, we will resend it."}
        ]
    }))
    .unwrap()
}

async fn run_queue(app: &TestApp, tenant: TenantId) {
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || {
        let mut cache = BackendCache::default();
        worker::run_until_idle(&context, &mut cache, tenant, &mut |_, _| {}).unwrap()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_restricted_subject_is_not_analysed_until_the_restriction_is_lifted() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("privacy@acme.example", Role::PrivacyOfficer, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    AnalysisSettingsStore::new(app.context.store.clone())
        .save(
            tenant.id,
            &AnalysisSettings {
                backend: BackendKind::Off,
                model_sha256: None,
                remote: None,
            },
        )
        .unwrap();
    let path = "/t/acme/privacy/restrictions";
    let officer = app.signed_in_client("privacy@acme.example").await;

    // Refused: a value that is not an address (named), no CSRF token, another role.
    let response = app
        .post_form(
            &officer,
            path,
            &[
                ("email", "jo.kim"),
                ("kind", "restriction"),
                ("reason", "DSR-7"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("E-mail address: give the subject"));
    let response = officer
        .post(app.url(path))
        .form(&[
            ("email", "jo.kim@example.org"),
            ("kind", "restriction"),
            ("reason", "DSR-7"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let response = app
        .post_form(
            &analyst,
            path,
            &[
                ("email", "jo.kim@example.org"),
                ("kind", "restriction"),
                ("reason", "DSR-7"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(Restrictions::new(app.context.store.clone())
        .list(tenant.id)
        .unwrap()
        .is_empty());

    let response = app
        .post_form(
            &officer,
            path,
            &[
                ("email", " Jo.Kim@Example.org "),
                ("kind", "restriction"),
                ("reason", "DSR-7 <b>"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), path);
    let page = app.get(&officer, path).await.text().await.unwrap();
    assert!(
        page.contains("<td>jo.kim@example.org</td><td>restriction</td>"),
        "{page}"
    );
    assert!(page.contains("DSR-7 &#60;b&#62;"), "{page}");

    // The subject's interaction is skipped; someone else's is analysed.
    let restricted = write_interaction(&app.context, tenant.id, chat("R-1", "JO.KIM@example.org"));
    let other = write_interaction(&app.context, tenant.id, chat("R-2", "ana@example.org"));
    run_queue(&app, tenant.id).await;
    let job = app
        .context
        .analysis
        .job(tenant.id, restricted.id)
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error, Some(JobErrorKind::SubjectRestricted));
    assert!(app
        .context
        .analysis
        .analyses(tenant.id, restricted.id)
        .unwrap()
        .is_empty());
    let other_job = app
        .context
        .analysis
        .job(tenant.id, other.id)
        .unwrap()
        .unwrap();
    assert_eq!(other_job.state, JobState::Done);
    assert_eq!(
        app.context
            .analysis
            .analyses(tenant.id, other.id)
            .unwrap()
            .len(),
        4,
        "summary, sentiment, topics and QA"
    );

    // Audited: the change names the subject by token only; the page's read is recorded.
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let recorded = entries
        .iter()
        .find(|entry| entry.event.action == AuditAction::PrivacyRestricted)
        .expect("privacy.restricted");
    assert!(
        recorded.event.target.starts_with("subject "),
        "{}",
        recorded.event.target
    );
    assert!(recorded.event.target.ends_with("(restriction)"));
    assert!(!recorded.event.target.contains("jo.kim"));
    assert_eq!(recorded.event.actor.label, "privacy@acme.example");
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::PersonalDataRead
            && entry.event.target == "privacy restrictions (1 shown)"));

    // Lifted: the next request analyses it.
    let lift = page
        .split("action=\"")
        .find_map(|rest| rest.split('"').next().filter(|url| url.ends_with("/lift")))
        .unwrap()
        .to_owned();
    let response = app.post_form(&analyst, &lift, &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app.post_form(&officer, &lift, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(Restrictions::new(app.context.store.clone())
        .of(tenant.id, "jo.kim@example.org")
        .unwrap()
        .is_none());
    let response = app
        .post_form(
            &analyst,
            &format!("/t/acme/interactions/{}/reanalyse", restricted.id),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    run_queue(&app, tenant.id).await;
    assert_eq!(
        app.context
            .analysis
            .job(tenant.id, restricted.id)
            .unwrap()
            .unwrap()
            .state,
        JobState::Done
    );
    assert_eq!(
        app.context
            .analysis
            .analyses(tenant.id, restricted.id)
            .unwrap()
            .len(),
        4,
        "summary, sentiment, topics and QA"
    );
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::PrivacyRestrictionLifted));
}
