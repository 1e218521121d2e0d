//! Retention and legal holds: the sweep deletes exactly the expired set with everything derived
//! from it (list, API, search, analyses, job, lead state), its preview counts what the run then
//! deletes, its report counts match, the audit log's floor of 365 days holds, each kind of legal
//! hold keeps what it covers, and the privacy officer's pages (policies, preview, Run now, holds)
//! with their refusals.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rapport::api::keys::{self, ApiScope};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::ids::TenantId;
use rapport::interactions::InteractionRecord;
use rapport::leads::store::LeadStore;
use rapport::records::SourceRecord;
use rapport::retention::holds::{self, NewHold};
use rapport::retention::{self, Category, Keep, Policies, RetentionError, Trigger};
use rapport::search::SearchIndex;
use rapport::signals::SignalRecord;
use rapport::users::Role;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::helpers::{location, run_queue, use_off_backend, write_interaction, TestApp};

const DAY: i64 = 24 * 60;

fn minutes_ago(now: DateTime<Utc>, minutes: i64) -> String {
    (now - chrono::Duration::minutes(minutes)).to_rfc3339()
}

/// A chat whose latest message was sent at `last`; `word` makes it findable on its own.
fn chat(
    source_id: &str,
    word: &str,
    last: &str,
    email: &str,
    account: &str,
    tags: &[&str],
) -> InteractionRecord {
    serde_json::from_value(json!({
        "source_system": "desk", "source_id": source_id, "channel": "chat",
        "subject": format!("Question {word}"),
        "account": account,
        "tags": tags,
        "messages": [
            {"role": "customer", "author_email": email, "sent_at": "2020-01-01T10:00:00Z",
             "text": format!("My {word} parcel never arrived and I am upset.")},
            {"role": "agent", "sent_at": last, "text": "Sorry, we will resend it."}
        ]
    }))
    .unwrap()
}

fn survey(source_id: &str, occurred_at: &str, contact: &str) -> SignalRecord {
    serde_json::from_value(json!({
        "source_system": "survey", "source_id": source_id, "contact": contact,
        "occurred_at": occurred_at,
        "signal": {"kind": "survey", "survey": "nps", "score": 3}
    }))
    .unwrap()
}

fn set_policy(app: &TestApp, tenant: TenantId, periods: &[(Category, Keep)]) {
    let mut policies = Policies::default();
    for (category, keep) in periods {
        policies.set(*category, *keep);
    }
    retention::save_policies(&app.context, &Actor::cli(), None, tenant, &policies).unwrap();
}

fn search_hits(app: &TestApp, tenant: TenantId, word: &str) -> usize {
    SearchIndex::new(app.context.store.clone())
        .search(tenant, word, 10)
        .unwrap()
        .0
        .len()
}

#[tokio::test]
async fn retention_deletes_exactly_the_expired_set_and_everything_derived_from_it() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    let now = Utc::now();
    // 30 days: a minute past the limit goes, a minute inside it stays; the age counts from the
    // latest message, so an old first message does not make a thread expire.
    let records = [
        ("old-1", "zebra", minutes_ago(now, 30 * DAY + 1)),
        ("old-2", "walrus", minutes_ago(now, 90 * DAY)),
        ("inside", "gazelle", minutes_ago(now, 30 * DAY - 1)),
        ("recent", "octopus", minutes_ago(now, 60)),
    ];
    let mut ids = Vec::new();
    for (source, word, last) in &records {
        let written = write_interaction(
            &app.context,
            tenant.id,
            chat(source, word, last, "jo@example.org", "acme.example", &[]),
        );
        ids.push(written.id);
    }
    run_queue(&app.context, tenant.id);
    assert!(!app
        .context
        .analysis
        .analyses(tenant.id, ids[0])
        .unwrap()
        .is_empty());
    rapport::leads::mark(&app.context, &Actor::cli(), None, tenant.id, ids[0]).unwrap();
    let key = keys::create_key(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "test",
        [ApiScope::Read].into_iter().collect::<BTreeSet<_>>(),
    )
    .unwrap()
    .secret
    .expose_secret()
    .to_owned();
    let response = app
        .client
        .get(app.url(&format!("/api/v1/interactions/{}", ids[0])))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Defaults keep everything.
    let report = retention::preview(&app.context, &Actor::cli(), tenant.id, Utc::now()).unwrap();
    assert_eq!(report.total_deleted(), 0);

    set_policy(&app, tenant.id, &[(Category::Interactions, Keep::Days(30))]);
    let preview = retention::preview(&app.context, &Actor::cli(), tenant.id, now).unwrap();
    assert_eq!(preview.count(Category::Interactions).unwrap().deleted, 2);
    assert_eq!(preview.count(Category::Interactions).unwrap().held, 0);
    // The preview deleted nothing.
    assert_eq!(app.context.interactions.count(tenant.id).unwrap(), 4);

    let mut progress = Vec::new();
    let report = retention::run(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        Trigger::CommandLine,
        now,
        &mut |step| progress.push(step.examined),
    )
    .unwrap();
    assert_eq!(
        report.counts, preview.counts,
        "the preview is what the run did"
    );
    assert_eq!(report.total_deleted(), 2);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(progress.last(), Some(&4));

    // Exactly the expired set is gone, with everything derived from it.
    for (index, expect_kept) in [(0, false), (1, false), (2, true), (3, true)] {
        let id = ids[index];
        let word = records[index].1;
        let kept = app
            .context
            .interactions
            .get(tenant.id, id)
            .unwrap()
            .is_some();
        assert_eq!(kept, expect_kept, "{}", records[index].0);
        assert_eq!(search_hits(&app, tenant.id, word), usize::from(expect_kept));
        assert_eq!(
            app.context
                .analysis
                .analyses(tenant.id, id)
                .unwrap()
                .is_empty(),
            !expect_kept
        );
        assert_eq!(
            app.context.analysis.job(tenant.id, id).unwrap().is_some(),
            expect_kept
        );
    }
    assert!(
        !LeadStore::new(app.context.store.clone())
            .state(tenant.id, ids[0])
            .unwrap()
            .marked
    );
    // The source claim is released: the same source id makes a new record.
    let source_key =
        chat("old-1", "zebra", "2020-01-01T10:00:00Z", "a@b.cd", "x", &[]).source_key();
    assert!(app
        .context
        .interactions
        .find_by_source(tenant.id, &source_key)
        .unwrap()
        .is_none());
    // The job counts no longer count the deleted jobs.
    let counts = app.context.analysis.counts(tenant.id).unwrap();
    assert_eq!(counts.total(), 2);

    // Gone from the API and the console's list too.
    let response = app
        .client
        .get(app.url(&format!("/api/v1/interactions/{}", ids[0])))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let list = app
        .get(&analyst, "/t/acme/interactions")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("Question gazelle") && list.contains("Question octopus"));
    assert!(!list.contains("Question zebra") && !list.contains("Question walrus"));

    // The report is stored and audited with its counts.
    let stored = retention::reports(&app.context, tenant.id, 5).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0], report);
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let run = entries
        .iter()
        .find(|entry| entry.event.action == AuditAction::RetentionRun)
        .expect("retention.run audited");
    assert!(
        run.event.target.contains("interactions 2 deleted 0 held"),
        "{}",
        run.event.target
    );
    assert!(entries.iter().any(
        |entry| entry.event.action == AuditAction::RetentionPolicyChanged
            && entry.event.target.contains("interactions=30")
    ));

    // A second run finds nothing more.
    let again = retention::run(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        Trigger::CommandLine,
        now,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(again.total_deleted(), 0);
}

#[tokio::test]
async fn the_audit_log_is_never_kept_under_365_days() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let mut policies = Policies::default();
    assert_eq!(policies.get(Category::AuditLog), Keep::Days(365));
    policies.set(Category::AuditLog, Keep::Days(364));
    let error = retention::save_policies(&app.context, &Actor::cli(), None, tenant.id, &policies)
        .unwrap_err();
    assert!(
        matches!(&error, RetentionError::Invalid { message, .. } if message.contains("at least 365 days")),
        "{error}"
    );
    assert_eq!(
        retention::policies(&app.context, tenant.id)
            .unwrap()
            .get(Category::AuditLog),
        Keep::Days(365)
    );
    policies.set(Category::AuditLog, Keep::Days(400));
    retention::save_policies(&app.context, &Actor::cli(), None, tenant.id, &policies).unwrap();
    assert_eq!(
        retention::policies(&app.context, tenant.id)
            .unwrap()
            .get(Category::AuditLog),
        Keep::Days(400)
    );
    // The sweep never touches the audit log: every entry is still there and the chain verifies.
    let report = retention::run(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        Trigger::CommandLine,
        Utc::now(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.count(Category::AuditLog).unwrap().deleted, 0);
    assert!(app.context.audit_log.verify().unwrap().entries > 0);
}

#[tokio::test]
async fn each_kind_of_legal_hold_keeps_what_it_covers() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let now = Utc::now();
    let old = minutes_ago(now, 100 * DAY);
    let old_day = (now - chrono::Duration::days(100)).date_naive();
    let older = minutes_ago(now, 200 * DAY);
    let plain = "jo@example.org";
    let cases = [
        (
            "by-account",
            chat("a", "alpha", &older, plain, "Held.Example", &[]),
        ),
        (
            "by-subject",
            chat("s", "sierra", &older, "Held@Example.org", "x.example", &[]),
        ),
        (
            "by-tag",
            chat("t", "tango", &older, plain, "x.example", &["Litigation"]),
        ),
        ("by-date", chat("d", "delta", &old, plain, "x.example", &[])),
        (
            "unheld",
            chat("u", "uniform", &older, plain, "x.example", &[]),
        ),
    ];
    let mut ids = Vec::new();
    for (_, record) in &cases {
        ids.push(write_interaction(&app.context, tenant.id, record.clone()).id);
    }
    let signal_ids: Vec<_> = [
        survey("held", &older, "held@example.org"),
        survey("free", &older, plain),
    ]
    .into_iter()
    .map(|record| {
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
        .id
    })
    .collect();
    set_policy(
        &app,
        tenant.id,
        &[
            (Category::Interactions, Keep::Days(30)),
            (Category::SurveySignals, Keep::Days(30)),
        ],
    );
    let place = |kind: &str, value: &str, from: &str, to: &str| {
        holds::create(
            &app.context,
            &Actor::cli(),
            None,
            tenant.id,
            &NewHold {
                kind: kind.to_owned(),
                value: value.to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
                reason: "Matter 2026-17".to_owned(),
                owner: "Legal".to_owned(),
                ends: String::new(),
            },
        )
        .unwrap()
    };
    let day = old_day.to_string();
    let placed = [
        place("account", "held.example", "", ""),
        place("subject", "held@example.org", "", ""),
        place("tag", "litigation", "", ""),
        place("date_range", "", &day, &day),
    ];
    // A hold that ended yesterday keeps nothing; one with a bad range is refused.
    let error = holds::create(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        &NewHold {
            kind: "date_range".to_owned(),
            from: "2026-05-02".to_owned(),
            to: "2026-05-01".to_owned(),
            reason: "r".to_owned(),
            owner: "o".to_owned(),
            ..NewHold::default()
        },
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("To: must not be before From"),
        "{error}"
    );

    let preview = retention::preview(&app.context, &Actor::cli(), tenant.id, now).unwrap();
    let interactions = preview.count(Category::Interactions).unwrap();
    assert_eq!((interactions.deleted, interactions.held), (1, 4));
    let surveys = preview.count(Category::SurveySignals).unwrap();
    assert_eq!((surveys.deleted, surveys.held), (1, 1));

    let report = retention::run(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        Trigger::CommandLine,
        now,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.counts, preview.counts);
    for (index, (name, _)) in cases.iter().enumerate() {
        let kept = app
            .context
            .interactions
            .get(tenant.id, ids[index])
            .unwrap()
            .is_some();
        assert_eq!(kept, *name != "unheld", "{name}");
    }
    assert!(app
        .context
        .signals
        .get(tenant.id, signal_ids[0])
        .unwrap()
        .is_some());
    assert!(app
        .context
        .signals
        .get(tenant.id, signal_ids[1])
        .unwrap()
        .is_none());
    let held = app
        .context
        .interactions
        .get(tenant.id, ids[0])
        .unwrap()
        .unwrap();
    assert!(holds::interaction_is_held(&app.context, tenant.id, &held).unwrap());

    // A tenant hold keeps everything, whatever else is released.
    for hold in &placed {
        holds::release(&app.context, &Actor::cli(), None, tenant.id, hold.id).unwrap();
    }
    let everything = place("tenant", "", "", "");
    let report = retention::run(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        Trigger::CommandLine,
        now,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.total_deleted(), 0);
    assert_eq!(report.count(Category::Interactions).unwrap().held, 4);
    assert_eq!(report.count(Category::SurveySignals).unwrap().held, 1);

    // Released, the next run deletes what the holds kept.
    holds::release(&app.context, &Actor::cli(), None, tenant.id, everything.id).unwrap();
    assert!(!holds::interaction_is_held(&app.context, tenant.id, &held).unwrap());
    let report = retention::run(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        Trigger::CommandLine,
        now,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.count(Category::Interactions).unwrap().deleted, 4);
    assert_eq!(report.count(Category::SurveySignals).unwrap().deleted, 1);
    assert_eq!(app.context.interactions.count(tenant.id).unwrap(), 0);

    // Holds are audited by id and kind, never by their subject's address.
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let created: Vec<_> = entries
        .iter()
        .filter(|entry| entry.event.action == AuditAction::LegalHoldCreated)
        .collect();
    assert_eq!(created.len(), 5);
    assert!(entries
        .iter()
        .all(|entry| !entry.event.target.contains("held@example.org")));
    assert_eq!(
        entries
            .iter()
            .filter(|entry| entry.event.action == AuditAction::LegalHoldReleased)
            .count(),
        5
    );
}

#[tokio::test]
async fn the_privacy_officer_sets_policies_previews_runs_and_places_holds_in_the_console() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("privacy@acme.example", Role::PrivacyOfficer, Some(&tenant));
    let now = Utc::now();
    let expired = write_interaction(
        &app.context,
        tenant.id,
        chat(
            "e",
            "quokka",
            &minutes_ago(now, 40 * DAY),
            "jo@example.org",
            "x.example",
            &[],
        ),
    )
    .id;
    let held = write_interaction(
        &app.context,
        tenant.id,
        chat(
            "h",
            "lemur",
            &minutes_ago(now, 40 * DAY),
            "kim@example.org",
            "x.example",
            &[],
        ),
    )
    .id;
    let officer = app.signed_in_client("privacy@acme.example").await;
    let path = "/t/acme/privacy/retention";
    let page = app.get(&officer, path).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("Audit log") && page.contains("No retention run yet."));

    // Refused: the audit log under 365 days (422, named), a word instead of days, no CSRF token.
    let response = app
        .post_form(
            &officer,
            path,
            &[("interactions", "30"), ("audit_log", "100")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("Audit log: the audit log must be kept at least 365 days"),
        "{body}"
    );
    let response = app
        .post_form(&officer, path, &[("interactions", "a month")])
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = officer
        .post(app.url(path))
        .form(&[("interactions", "30")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        retention::policies(&app.context, tenant.id)
            .unwrap()
            .get(Category::Interactions),
        Keep::Forever
    );

    let response = app
        .post_form(
            &officer,
            path,
            &[("interactions", "30"), ("audit_log", "365")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), path);

    // A subject hold through the holds page.
    let holds_path = "/t/acme/privacy/holds";
    let response = app
        .post_form(
            &officer,
            holds_path,
            &[
                ("kind", "subject"),
                ("value", "not an address"),
                ("reason", "M-1"),
                ("owner", "Legal"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Subject: give the subject"));
    let response = app
        .post_form(
            &officer,
            holds_path,
            &[
                ("kind", "subject"),
                ("value", "kim@example.org"),
                ("reason", "M-1"),
                ("owner", "Legal"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let holds_page = app.get(&officer, holds_path).await.text().await.unwrap();
    assert!(holds_page.contains("subject kim@example.org") && holds_page.contains("active"));

    // The interaction page marks the held interaction.
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let shown = app
        .get(&analyst, &format!("/t/acme/interactions/{held}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(shown.contains("On legal hold"));
    let shown = app
        .get(&analyst, &format!("/t/acme/interactions/{expired}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!shown.contains("On legal hold"));

    // Preview, then Run now; the report appears when the run ends.
    let response = app
        .post_form(&officer, &format!("{path}/preview"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let preview = response.text().await.unwrap();
    assert!(
        preview.contains("a run now would delete 1 and legal holds would keep 1"),
        "{preview}"
    );
    let response = app.post_form(&officer, &format!("{path}/run"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let mut reports = Vec::new();
    for _ in 0..100 {
        reports = retention::reports(&app.context, tenant.id, 5).unwrap();
        if !reports.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].trigger, Trigger::Console);
    assert_eq!(reports[0].total_deleted(), 1);
    assert_eq!(reports[0].total_held(), 1);
    assert!(app
        .context
        .interactions
        .get(tenant.id, expired)
        .unwrap()
        .is_none());
    assert!(app
        .context
        .interactions
        .get(tenant.id, held)
        .unwrap()
        .is_some());
    let page = app.get(&officer, path).await.text().await.unwrap();
    assert!(
        page.contains("(console, privacy@acme.example): 1 deleted, 1 held"),
        "{page}"
    );

    // Release through the page.
    let placed = holds::list(&app.context, tenant.id).unwrap().remove(0);
    let response = app
        .post_form(
            &officer,
            &format!("{holds_path}/{}/release", placed.id),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(holds::list(&app.context, tenant.id).unwrap()[0]
        .released
        .is_some());
}
