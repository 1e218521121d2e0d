//! The alerts inbox and the negative-review rule: a review at or below the threshold, created by
//! a real file import or through the API, raises exactly one alert to the chosen users; updates
//! and re-imports do not alert again; the inbox's actions move the state, are kept in the alert's
//! history and audited; and only the roles that work the inbox, in their own tenant, see it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use rapport::alerts::{Alert, AlertState, AlertStore, Change};
use rapport::api::keys::{self, ApiScope};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::ids::RecordId;
use rapport::ingest::{self, ImportFormat, ImportRequest, ImportState};
use rapport::signals::SignalStore;
use rapport::tenants::Tenant;
use rapport::users::{Role, User};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::{location, TestApp};

const HEADER: &str = "review_id,platform,location,rating,text,reviewer,reply,reviewed_at,account";

/// A reviews CSV with one row per `(review id, rating, text)`.
fn reviews_csv(dir: &Path, name: &str, rows: &[(&str, u8, &str)]) -> PathBuf {
    let mut body = format!("{HEADER}\n");
    for (id, rating, text) in rows {
        writeln!(
            body,
            "{id},google,Berlin Mitte,{rating},\"{text}\",Jonas K.,,2026-10-11T17:45:00Z,"
        )
        .unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// A real import through the engine, as `rapport import` and the console's upload run it.
fn import(app: &TestApp, tenant: &Tenant, path: &Path) -> ingest::ImportRun {
    let run = ingest::import_file(
        &app.context,
        &ImportRequest {
            actor: &Actor::cli(),
            tenant,
            format: ImportFormat::Reviews,
            path,
            skip_invalid: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(run.state, ImportState::Committed, "{run:?}");
    run
}

/// Every alert of the tenant, newest first.
fn alerts_of(app: &TestApp, tenant: &Tenant) -> Vec<Alert> {
    let mut alerts = Vec::new();
    AlertStore::new(app.context.store.clone())
        .for_each_newest_first(tenant.id, |alert| alerts.push(alert))
        .unwrap();
    alerts
}

fn signal_id(app: &TestApp, tenant: &Tenant, source_id: &str) -> RecordId {
    let mut found = None;
    SignalStore::new(app.context.store.clone())
        .for_each(tenant.id, |stored| {
            if stored.record.source_id == source_id {
                found = Some(stored.id);
            }
            Ok(())
        })
        .unwrap();
    found.unwrap_or_else(|| panic!("no signal {source_id}"))
}

fn audited(app: &TestApp, tenant: &Tenant, action: AuditAction) -> Vec<String> {
    app.context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == action)
        .map(|entry| entry.event.target)
        .collect()
}

fn api_key(app: &TestApp, tenant: &Tenant) -> String {
    keys::create_key(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "reviews",
        [ApiScope::Write].into_iter().collect(),
    )
    .unwrap()
    .secret
    .expose_secret()
    .to_owned()
}

async fn post_review(app: &TestApp, key: &str, source_id: &str, rating: u8) -> StatusCode {
    app.client
        .post(app.url("/api/v1/signals"))
        .bearer_auth(key)
        .json(&json!({
            "source_system": "widget", "source_id": source_id,
            "occurred_at": "2026-10-12T09:00:00Z",
            "signal": {"kind": "review", "platform": "trustpilot", "rating": rating,
                       "text": "Private words from a customer", "reviewer": "Amira H."}
        }))
        .send()
        .await
        .unwrap()
        .status()
}

struct Team {
    tenant: Tenant,
    admin: User,
    csm: User,
    colleague: User,
}

fn team(app: &TestApp) -> Team {
    let tenant = app.create_tenant("acme");
    Team {
        admin: app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant)),
        csm: app.create_user("csm@acme.example", Role::Analyst, Some(&tenant)),
        colleague: app.create_user("colleague@acme.example", Role::Analyst, Some(&tenant)),
        tenant,
    }
}

/// Saves the rule through the settings page as the tenant admin.
async fn set_rule(app: &TestApp, enabled: bool, max_rating: &str, recipients: &[&User]) {
    let admin = app.signed_in_client("admin@acme.example").await;
    let ids: Vec<String> = recipients.iter().map(|user| user.id.to_string()).collect();
    let mut fields = vec![("max_rating", max_rating)];
    if enabled {
        fields.push(("enabled", "on"));
    }
    for id in &ids {
        fields.push(("recipient", id.as_str()));
    }
    let response = app
        .post_form(&admin, "/t/acme/settings/alerts", &fields)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_one_star_review_alerts_the_chosen_recipient_once_by_import_and_by_api() {
    let app = TestApp::spawn();
    let Team {
        tenant,
        csm,
        colleague,
        ..
    } = team(&app);
    set_rule(&app, true, "2", &[&csm]).await;
    let dir = tempfile::tempdir().unwrap();

    // A file import: the 1-star review alerts, the 4-star one does not.
    let file = reviews_csv(
        dir.path(),
        "reviews.csv",
        &[("r1", 1, "Rude staff, never again"), ("r2", 4, "Nice")],
    );
    let run = import(&app, &tenant, &file);
    assert_eq!(run.imported, 2);
    let alerts = alerts_of(&app, &tenant);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let review = signal_id(&app, &tenant, "r1");
    assert_eq!(alerts[0].subject, review);
    assert_eq!(alerts[0].recipients, vec![csm.id]);
    assert_eq!(alerts[0].link, format!("/t/acme/reviews/{review}"));
    assert_eq!(alerts[0].title, "1-star review on google (Berlin Mitte)");
    assert_eq!(alerts[0].state, AlertState::Open);

    // Re-importing the same file, and an update of the review's text, do not alert again.
    import(&app, &tenant, &file);
    let edited = reviews_csv(
        dir.path(),
        "edited.csv",
        &[
            ("r1", 1, "Rude staff, edited"),
            ("r2", 1, "Changed my mind"),
        ],
    );
    let rerun = import(&app, &tenant, &edited);
    assert_eq!((rerun.imported, rerun.updated), (0, 2));
    assert_eq!(alerts_of(&app, &tenant).len(), 1);

    // Through the API: a new 1-star review alerts, a 4-star one and a repeat do not.
    let key = api_key(&app, &tenant);
    assert_eq!(post_review(&app, &key, "w-1", 1).await, StatusCode::CREATED);
    assert_eq!(post_review(&app, &key, "w-2", 4).await, StatusCode::CREATED);
    assert_eq!(post_review(&app, &key, "w-1", 1).await, StatusCode::OK);
    let alerts = alerts_of(&app, &tenant);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0].subject, signal_id(&app, &tenant, "w-1"));
    assert_eq!(alerts[0].title, "1-star review on trustpilot");
    assert_eq!(audited(&app, &tenant, AuditAction::AlertRaised).len(), 2);

    // The recipient's inbox lists both, and the navigation counts them; a colleague's is empty.
    let client = app.signed_in_client("csm@acme.example").await;
    let page = app
        .get(&client, "/t/acme/alerts")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("1-star review on trustpilot"), "{page}");
    assert!(page.contains("1-star review on google (Berlin Mitte)"));
    assert!(page.contains(&format!("href=\"/t/acme/reviews/{review}\"")));
    assert!(page.contains("Alerts <span class=\"badge\">2<"), "{page}");
    // The inbox shows no review text or reviewer (the title holds none).
    assert!(!page.contains("Rude staff") && !page.contains("Jonas"));
    let other = app.signed_in_client("colleague@acme.example").await;
    let page = app
        .get(&other, "/t/acme/alerts")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("No alerts in this state."), "{page}");
    assert!(!page.contains("class=\"badge\""));
    let alert_page = format!("/t/acme/alerts/{}", alerts[0].id);
    assert_eq!(
        app.get(&other, &alert_page).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(!alerts[0].concerns(colleague.id));
    // Reading the inbox is audited.
    assert!(audited(&app, &tenant, AuditAction::PersonalDataRead)
        .iter()
        .any(|target| target == "alerts inbox (2 shown)"));
}

#[tokio::test]
async fn the_threshold_the_switch_and_the_default_recipients_are_honoured() {
    let app = TestApp::spawn();
    let Team {
        tenant, admin, csm, ..
    } = team(&app);
    let dir = tempfile::tempdir().unwrap();

    // No rule saved: on, ratings 1 and 2, to every tenant admin.
    import(
        &app,
        &tenant,
        &reviews_csv(dir.path(), "a.csv", &[("a1", 2, "Meh")]),
    );
    let alerts = alerts_of(&app, &tenant);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].recipients, vec![admin.id]);

    // Threshold 1: a 2-star review no longer alerts, a 1-star one does.
    set_rule(&app, true, "1", &[&csm]).await;
    import(
        &app,
        &tenant,
        &reviews_csv(dir.path(), "b.csv", &[("b1", 2, "Meh"), ("b2", 1, "Bad")]),
    );
    let alerts = alerts_of(&app, &tenant);
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].subject, signal_id(&app, &tenant, "b2"));

    // Off: nothing; on again: the review imported meanwhile is not alerted afterwards.
    set_rule(&app, false, "2", &[&csm]).await;
    import(
        &app,
        &tenant,
        &reviews_csv(dir.path(), "c.csv", &[("c1", 1, "Awful")]),
    );
    assert_eq!(alerts_of(&app, &tenant).len(), 2);
    set_rule(&app, true, "2", &[&csm]).await;
    import(
        &app,
        &tenant,
        &reviews_csv(dir.path(), "c.csv", &[("c1", 1, "Awful")]),
    );
    assert_eq!(alerts_of(&app, &tenant).len(), 2);

    // A refused import (an invalid rating, no --skip-invalid) writes nothing and alerts nothing;
    // with --skip-invalid the valid 1-star review alerts.
    let mixed = reviews_csv(dir.path(), "d.csv", &[("d1", 1, "Bad"), ("d2", 9, "Odd")]);
    let mut request = ImportRequest {
        actor: &Actor::cli(),
        tenant: &tenant,
        format: ImportFormat::Reviews,
        path: &mixed,
        skip_invalid: false,
    };
    let refused = ingest::import_file(&app.context, &request, &mut |_| {}).unwrap();
    assert_eq!(refused.state, ImportState::Refused);
    assert_eq!(alerts_of(&app, &tenant).len(), 2);
    request.skip_invalid = true;
    let partial = ingest::import_file(&app.context, &request, &mut |_| {}).unwrap();
    assert_eq!(
        (partial.state, partial.imported),
        (ImportState::Committed, 1)
    );
    let alerts = alerts_of(&app, &tenant);
    assert_eq!(alerts.len(), 3);
    assert_eq!(alerts[0].subject, signal_id(&app, &tenant, "d1"));

    // The page refuses a threshold out of range and a recipient who may not work the inbox.
    let auditor = app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    let client = app.signed_in_client("admin@acme.example").await;
    let response = app
        .post_form(
            &client,
            "/t/acme/settings/alerts",
            &[("enabled", "on"), ("max_rating", "5")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Rating threshold: choose 1 to 4 stars."));
    let auditor_id = auditor.id.to_string();
    let response = app
        .post_form(
            &client,
            "/t/acme/settings/alerts",
            &[
                ("enabled", "on"),
                ("max_rating", "2"),
                ("recipient", auditor_id.as_str()),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Recipients: choose"));
    // Each saved change is audited; the refused ones are not.
    let changes = audited(&app, &tenant, AuditAction::AlertRuleChanged);
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(changes.contains(&"negative_review: off, rating <= 2, to 1 chosen users".to_owned()));
}

#[tokio::test]
async fn acknowledge_assign_snooze_and_resolve_move_the_state_and_are_audited() {
    let app = TestApp::spawn();
    let Team {
        tenant,
        csm,
        colleague,
        ..
    } = team(&app);
    set_rule(&app, true, "2", &[&csm]).await;
    let dir = tempfile::tempdir().unwrap();
    import(
        &app,
        &tenant,
        &reviews_csv(dir.path(), "r.csv", &[("r1", 1, "Bad")]),
    );
    let id = alerts_of(&app, &tenant)[0].id;
    let page = format!("/t/acme/alerts/{id}");
    let client = app.signed_in_client("csm@acme.example").await;
    let state = || {
        AlertStore::new(app.context.store.clone())
            .get(tenant.id, id)
            .unwrap()
            .unwrap()
    };

    // The navigation counts the open alert; the count is kept between pages, but an alert's
    // change shows at once.
    let badge = "<span class=\"badge\">1<span class=\"visually-hidden\"> open</span>";
    for _ in 0..2 {
        let shown = app.get(&client, &page).await.text().await.unwrap();
        assert!(shown.contains(badge), "{shown}");
    }

    // Without a CSRF token nothing changes.
    let response = client
        .post(app.url(&format!("{page}/acknowledge")))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(state().state, AlertState::Open);

    let acted = app
        .post_form(&client, &format!("{page}/acknowledge"), &[])
        .await;
    assert_eq!(acted.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&acted), page);
    assert_eq!(state().state, AlertState::Acknowledged);
    let shown = app.get(&client, &page).await.text().await.unwrap();
    assert!(!shown.contains("class=\"badge\""), "{shown}");

    // Assigned to a colleague, who now sees it.
    let colleague_id = colleague.id.to_string();
    let acted = app
        .post_form(
            &client,
            &format!("{page}/assign"),
            &[("assignee", colleague_id.as_str())],
        )
        .await;
    assert_eq!(acted.status(), StatusCode::SEE_OTHER);
    assert_eq!(state().assignee, Some(colleague.id));
    let other = app.signed_in_client("colleague@acme.example").await;
    assert_eq!(app.get(&other, &page).await.status(), StatusCode::OK);
    // An assignee who may not work the inbox is refused.
    let auditor = app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    let auditor_id = auditor.id.to_string();
    let refused = app
        .post_form(
            &client,
            &format!("{page}/assign"),
            &[("assignee", auditor_id.as_str())],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Snoozed for a day: out of the open list, counted as snoozed.
    let acted = app
        .post_form(&client, &format!("{page}/snooze"), &[("for", "day")])
        .await;
    assert_eq!(acted.status(), StatusCode::SEE_OTHER);
    let AlertState::Snoozed { until } = state().state else {
        panic!("not snoozed: {:?}", state().state);
    };
    assert!(until > Utc::now() + Duration::hours(23));
    let inbox = app
        .get(&client, "/t/acme/alerts")
        .await
        .text()
        .await
        .unwrap();
    assert!(inbox.contains("No alerts in this state."), "{inbox}");
    assert!(inbox.contains(">snoozed (1)</a>"), "{inbox}");
    // Once the snooze has ended it is open again, without anyone acting.
    let mut expired = state();
    expired.state = AlertState::Snoozed {
        until: Utc::now() - Duration::minutes(1),
    };
    AlertStore::new(app.context.store.clone())
        .save(tenant.id, &expired)
        .unwrap();
    let inbox = app
        .get(&client, "/t/acme/alerts")
        .await
        .text()
        .await
        .unwrap();
    assert!(inbox.contains("1-star review on google"), "{inbox}");
    assert!(inbox.contains(">open (1)</a>"), "{inbox}");

    // Resolving needs a note, and says so.
    let refused = app
        .post_form(&client, &format!("{page}/resolve"), &[("note", "   ")])
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("A resolution note is required"));
    assert!(!state().is_resolved());
    let acted = app
        .post_form(
            &client,
            &format!("{page}/resolve"),
            &[("note", "Called the customer; refund issued.")],
        )
        .await;
    assert_eq!(acted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        state().state,
        AlertState::Resolved {
            note: "Called the customer; refund issued.".to_owned()
        }
    );
    // A resolved alert only reopens.
    let refused = app
        .post_form(&client, &format!("{page}/acknowledge"), &[])
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("reopen it first"));
    let acted = app.post_form(&client, &format!("{page}/reopen"), &[]).await;
    assert_eq!(acted.status(), StatusCode::SEE_OTHER);
    assert_eq!(state().state, AlertState::Open);

    // The history names each change and who made it; the page shows it.
    let history: Vec<(String, Change)> = state()
        .history
        .into_iter()
        .map(|entry| (entry.actor.label, entry.change))
        .collect();
    let kinds: Vec<&str> = history
        .iter()
        .map(|(_, change)| match change {
            Change::Raised => "raised",
            Change::Acknowledged => "acknowledged",
            Change::Assigned { .. } => "assigned",
            Change::Snoozed { .. } => "snoozed",
            Change::Resolved { .. } => "resolved",
            Change::Reopened => "reopened",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "raised",
            "acknowledged",
            "assigned",
            "snoozed",
            "resolved",
            "reopened"
        ]
    );
    assert_eq!(history[0].0, "system");
    assert!(history[1..]
        .iter()
        .all(|(who, _)| who == "csm@acme.example"));
    let shown = app.get(&client, &page).await.text().await.unwrap();
    assert!(
        shown.contains("resolved: Called the customer; refund issued."),
        "{shown}"
    );
    assert!(shown.contains("assigned to colleague@acme.example"));

    // Every action is audited once, by id.
    for action in [
        AuditAction::AlertAcknowledged,
        AuditAction::AlertAssigned,
        AuditAction::AlertSnoozed,
        AuditAction::AlertResolved,
        AuditAction::AlertReopened,
    ] {
        let entries = audited(&app, &tenant, action);
        assert_eq!(entries.len(), 1, "{action}: {entries:?}");
        assert!(
            entries[0].starts_with(&format!("alert {id}")),
            "{entries:?}"
        );
        assert!(!entries[0].contains("refund"));
    }
    assert_eq!(
        audited(&app, &tenant, AuditAction::AlertAssigned)[0],
        format!("alert {id} to user {}", colleague.id)
    );
}

#[tokio::test]
async fn only_the_inbox_roles_of_the_same_tenant_see_an_alert() {
    let app = TestApp::spawn();
    let Team { tenant, .. } = team(&app);
    let dir = tempfile::tempdir().unwrap();
    import(
        &app,
        &tenant,
        &reviews_csv(dir.path(), "r.csv", &[("r1", 1, "Bad")]),
    );
    let id = alerts_of(&app, &tenant)[0].id;
    let page = format!("/t/acme/alerts/{id}");

    // The default recipient (the tenant admin) works it; every alert is on the "all" view.
    let admin = app.signed_in_client("admin@acme.example").await;
    assert_eq!(app.get(&admin, &page).await.status(), StatusCode::OK);
    let all = app
        .get(&admin, "/t/acme/alerts?state=all&scope=all")
        .await
        .text()
        .await
        .unwrap();
    assert!(all.contains(&page), "{all}");

    for (email, role) in [
        ("qa@acme.example", Role::QaLead),
        ("privacy@acme.example", Role::PrivacyOfficer),
        ("auditor@acme.example", Role::Auditor),
    ] {
        app.create_user(email, role, Some(&tenant));
        let client = app.signed_in_client(email).await;
        for path in ["/t/acme/alerts", page.as_str(), "/t/acme/settings/alerts"] {
            assert_eq!(
                app.get(&client, path).await.status(),
                StatusCode::FORBIDDEN,
                "{email} {path}"
            );
        }
        let acted = app
            .post_form(&client, &format!("{page}/acknowledge"), &[])
            .await;
        assert_eq!(acted.status(), StatusCode::FORBIDDEN, "{email}");
        // No Alerts link in their navigation.
        let home = app.get(&client, "/t/acme/").await.text().await.unwrap();
        assert!(!home.contains("/t/acme/alerts"), "{email}");
    }
    app.create_user("op@example.com", Role::Operator, None);
    let operator = app.signed_in_client("op@example.com").await;
    assert_eq!(
        app.get(&operator, &page).await.status(),
        StatusCode::FORBIDDEN
    );

    // Another tenant's admin: not found under either tenant's address.
    let beta = app.create_tenant("beta");
    app.create_user("admin@beta.example", Role::TenantAdmin, Some(&beta));
    let stranger = app.signed_in_client("admin@beta.example").await;
    assert_eq!(
        app.get(&stranger, &page).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&stranger, &format!("/t/beta/alerts/{id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let acted = app
        .post_form(&stranger, &format!("/t/beta/alerts/{id}/acknowledge"), &[])
        .await;
    assert_eq!(acted.status(), StatusCode::NOT_FOUND);
    let inbox = app
        .get(&stranger, "/t/beta/alerts?state=all&scope=all")
        .await
        .text()
        .await
        .unwrap();
    assert!(inbox.contains("No alerts in this state."), "{inbox}");
    assert_eq!(
        AlertStore::new(app.context.store.clone())
            .get(tenant.id, id)
            .unwrap()
            .unwrap()
            .state,
        AlertState::Open
    );
}
