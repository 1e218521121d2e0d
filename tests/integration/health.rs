//! Account health end to end: an account with interactions and survey answers imported through
//! the real import path, analysed with the off backend, recomputed by the hooks; the account page
//! shows the hand-computed score, band, measures and the explanation naming the measure that moved
//! it; the score-drop rule raises exactly one alert, to the account's owner; only tenant admins
//! configure health.

use std::path::Path;

use chrono::{Duration, Utc};
use rapport::alerts::{Alert, AlertKind, AlertStore};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::health::{
    self, ChurnRule, HealthConfig, HealthStore, Measure, MeasureValue, Snapshot,
};
use rapport::ids::RecordId;
use rapport::ingest::ImportFormat;
use rapport::tenants::Tenant;
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{
    cli_instance, free_port, rapport, run_queue, stderr, stdout, use_off_backend, TestApp,
};

fn import(app: &TestApp, tenant: &Tenant, format: ImportFormat, path: &Path) {
    import_committed(&app.context, tenant, format, path);
}

use crate::helpers::{import_committed, write_file as write};

/// One chat of account A-1 that began `days_ago` days ago; the customer's words are neutral for
/// the lexicon (sentiment value 0).
fn chat(id: i64, days_ago: i64) -> String {
    let at = (Utc::now() - Duration::days(days_ago)).to_rfc3339();
    serde_json::json!({
        "source_system": "desk", "source_id": format!("T-{id}"), "channel": "chat",
        "account": "A-1",
        "messages": [
            {"role": "customer", "sent_at": at, "text": "What time do you open on Saturday?"},
            {"role": "agent", "sent_at": at, "text": "We open at nine."}
        ]
    })
    .to_string()
}

fn alerts_of(app: &TestApp, tenant: &Tenant) -> Vec<Alert> {
    let mut alerts = Vec::new();
    AlertStore::new(app.context.store.clone())
        .for_each_newest_first(tenant.id, |alert| alerts.push(alert))
        .unwrap();
    alerts
}

fn account_id(app: &TestApp, tenant: &Tenant) -> RecordId {
    app.context
        .accounts
        .newest_page(tenant.id, None)
        .unwrap()
        .items
        .iter()
        .find(|account| account.record.source_id == "A-1")
        .unwrap()
        .id
}

#[tokio::test]
async fn health_is_computed_explained_shown_and_alerts_the_owner() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let csm = app.create_user("csm@acme.example", Role::Analyst, Some(&tenant));
    app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    use_off_backend(&app.context, tenant.id);

    // QA is switched off (the off backend's QA scores are not hand-computable) and the score-drop
    // rule fires at 10 points; everything else is the default.
    let mut config = HealthConfig::default();
    for setting in &mut config.measures {
        if setting.measure == Measure::Qa {
            setting.enabled = false;
        }
    }
    config.rules.drop_points = 10;
    health::save_config(&app.context, &Actor::cli(), None, tenant.id, &config).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let renewal = (Utc::now() + Duration::days(45)).date_naive();
    import(
        &app,
        &tenant,
        ImportFormat::Accounts,
        &write(
            dir.path(),
            "accounts.csv",
            &format!(
                "account_id,name,domain,plan,arr,renewal_date,owner_email\n\
                 A-1,Northwind,northwind.example,Pro,1200,{renewal},csm@acme.example\n"
            ),
        ),
    );
    // 3 chats in the last 30 days against 10 in days 31–180 (a baseline of 2 per 30 days).
    let mut chats: Vec<String> = (0..3).map(|n| chat(n, 2 + n)).collect();
    chats.extend((3..13).map(|n| chat(n, 100 + n)));
    import(
        &app,
        &tenant,
        ImportFormat::Jsonl,
        &write(dir.path(), "chats.jsonl", &(chats.join("\n") + "\n")),
    );
    let answered = (Utc::now() - Duration::days(10)).to_rfc3339();
    import(
        &app,
        &tenant,
        ImportFormat::Surveys,
        &write(
            dir.path(),
            "surveys.csv",
            &format!(
                "response_id,survey,score,comment,answered_at,contact_email,account\n\
                 R-1,nps,8,,{answered},,A-1\n\
                 R-2,csat,3,,{answered},,A-1\n"
            ),
        ),
    );
    let account = account_id(&app, &tenant);
    let health_store = HealthStore::new(app.context.store.clone());
    // The import hooks computed today's snapshot without sentiment (nothing analysed yet):
    // (10·75 + 20·65 + 10·50) / 40 = 63.75.
    let imported = health_store.history(tenant.id, account, 10).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].score, Some(63.8));
    assert!(alerts_of(&app, &tenant).is_empty());

    // Yesterday's snapshot, with the surveys at 100 instead of 65:
    // (20·50 + 10·75 + 20·100 + 10·50) / 60 = 4250 / 60 = 70.8.
    let value = |measure, value: Option<f64>, weight| MeasureValue {
        measure,
        value,
        weight,
    };
    let yesterday = Snapshot {
        account,
        day: (Utc::now() - Duration::days(1)).date_naive(),
        computed: Utc::now() - Duration::days(1),
        score: Some(70.8),
        band: Some(health::Band::Green),
        values: vec![
            value(Measure::Sentiment, Some(50.0), 20),
            value(Measure::TicketVolume, Some(75.0), 10),
            value(Measure::Qa, None, 0),
            value(Measure::Surveys, Some(100.0), 20),
            value(Measure::Usage, None, 15),
            value(Measure::Renewal, Some(50.0), 10),
            value(Measure::OpenBugs, None, 10),
        ],
        explanation: health::Explanation::default(),
        facts: health::Facts::default(),
    };
    health_store.put(tenant.id, &yesterday).unwrap();

    // The analysis worker's hook recomputes after storing: sentiment 50·(1+0)+50·(0−0) = 50;
    // (20·50 + 10·75 + 20·65 + 10·50) / 60 = 3550 / 60 = 59.2, amber. The surveys' weighted
    // contribution fell 20·100/60 − 20·65/60 = 11.7 points: they moved it most.
    let totals = run_queue(&app.context, tenant.id);
    assert_eq!(totals.failed, 0);
    assert!(totals.done >= 13, "{totals:?}");
    let history = health_store.history(tenant.id, account, 10).unwrap();
    assert_eq!(history.len(), 2);
    let today = &history[1];
    assert_eq!(today.score, Some(59.2));
    assert_eq!(today.band, Some(health::Band::Amber));
    assert_eq!(today.explanation.mover, Some((Measure::Surveys, -11.7)));

    // The score fell 11.6 ≥ 10 points in 30 days: exactly one alert, to the owner only.
    let alerts = alerts_of(&app, &tenant);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::ChurnRisk(ChurnRule::ScoreDrop));
    assert_eq!(alerts[0].subject, account);
    assert_eq!(alerts[0].recipients, vec![csm.id]);
    assert_eq!(alerts[0].link, format!("/t/acme/accounts/{account}"));
    // Recomputing again does not raise a second one while it is unresolved.
    health::recompute(&app.context, tenant.id, account).unwrap();
    assert_eq!(alerts_of(&app, &tenant).len(), 1);

    // The account page shows it, and its read is audited as before.
    let owner = app.signed_in_client("csm@acme.example").await;
    let response = app
        .get(&owner, &format!("/t/acme/accounts/{account}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    for expected in [
        "<strong>59.2</strong>",
        "Amber (watch)",
        "NPS and CSAT moved it most (-11.7 points",
        "changed by -11.6 points",
        "No data for: Product-usage trend, Open bug records.",
        "<th scope=\"row\">Days to renewal</th><td>50.0</td><td>10</td>",
        "<td>70.8</td><td>Green (healthy)</td>",
    ] {
        assert!(
            page.contains(expected),
            "missing {expected:?} in the account page"
        );
    }
    // QA is shown (the off backend scored it) but switched off.
    let qa_row = page
        .split("<th scope=\"row\">QA score</th>")
        .nth(1)
        .unwrap();
    assert!(
        qa_row
            .split("</tr>")
            .next()
            .unwrap()
            .ends_with("<td>off</td>"),
        "{qa_row}"
    );
    // The owner's inbox has the alert.
    let inbox = app
        .get(&owner, "/t/acme/alerts")
        .await
        .text()
        .await
        .unwrap();
    assert!(inbox.contains("Health score dropped"), "{inbox}");

    // Only tenant admins configure health.
    for email in ["auditor@acme.example", "csm@acme.example"] {
        let client = if email == "csm@acme.example" {
            owner.clone()
        } else {
            app.signed_in_client(email).await
        };
        assert_eq!(
            app.get(&client, "/t/acme/settings/health").await.status(),
            StatusCode::FORBIDDEN,
            "{email}"
        );
        let posted = app
            .post_form(&client, "/t/acme/settings/health", &[("red_below", "30")])
            .await;
        assert_eq!(posted.status(), StatusCode::FORBIDDEN, "{email}");
    }
    let auditor = app.signed_in_client("auditor@acme.example").await;
    let home = app.get(&auditor, "/t/acme/").await.text().await.unwrap();
    assert!(!home.contains("/t/acme/settings/health"));

    let admin = app.signed_in_client("admin@acme.example").await;
    let settings = app.get(&admin, "/t/acme/settings/health").await;
    assert_eq!(settings.status(), StatusCode::OK);
    let mut form: Vec<(String, String)> = Measure::ALL
        .iter()
        .flat_map(|measure| {
            [
                (format!("{}_on", measure.as_str()), "on".to_owned()),
                (format!("{}_weight", measure.as_str()), "10".to_owned()),
            ]
        })
        .collect();
    for (name, value) in [
        ("red_below", "50"),
        ("amber_below", "40"),
        ("drop_points", "15"),
        ("drop_days", "30"),
        ("negative_days", "30"),
        ("renewal_days", "60"),
        ("usage_drop_percent", "30"),
    ] {
        form.push((name.to_owned(), value.to_owned()));
    }
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Red above amber is refused with a message, and nothing is stored.
    let refused = app
        .post_form(&admin, "/t/acme/settings/health", &fields)
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("red must start below amber"));
    let mut fields = fields;
    for field in &mut fields {
        if field.0 == "red_below" {
            field.1 = "30";
        }
    }
    let saved = app
        .post_form(&admin, "/t/acme/settings/health", &fields)
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let stored = health_store.config(tenant.id).unwrap();
    assert_eq!(stored.red_below, 30);
    assert!(stored
        .measures
        .iter()
        .all(|setting| setting.enabled && setting.weight == 10));
    assert!(!stored.rules.score_drop && !stored.rules.band_to_red);
    let changes: Vec<String> = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == AuditAction::HealthConfigChanged)
        .map(|entry| entry.event.target)
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].contains("red < 30") || changes[1].contains("red < 30"));

    // Another tenant's admin finds neither the settings nor the account.
    let beta = app.create_tenant("beta");
    app.create_user("admin@beta.example", Role::TenantAdmin, Some(&beta));
    let stranger = app.signed_in_client("admin@beta.example").await;
    for path in [
        "/t/acme/settings/health".to_owned(),
        format!("/t/acme/accounts/{account}"),
    ] {
        assert_eq!(
            app.get(&stranger, &path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        app.get(&stranger, &format!("/t/beta/accounts/{account}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// `rapport health recompute`: every account of the tenant with progress, or one; an unknown
/// account is an error naming it.
#[test]
fn the_recompute_command_scores_every_account_or_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config = config.to_str().unwrap();
    let output = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let renewal = (Utc::now() + Duration::days(45)).date_naive();
    let accounts = write(
        dir.path(),
        "accounts.csv",
        &format!(
            "account_id,name,domain,plan,arr,renewal_date,owner_email\n\
             A-1,Northwind,northwind.example,Pro,1200,{renewal},\n\
             A-2,Contoso,contoso.example,Pro,1200,,\n"
        ),
    );
    let output = rapport(
        &[
            "import",
            "--config",
            config,
            "--tenant",
            "acme",
            "--format",
            "accounts",
            accounts.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let output = rapport(
        &[
            "health",
            "recompute",
            "--config",
            config,
            "--tenant",
            "acme",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    // A-1 has a renewal date (50 after 45 days); A-2 has no data at all.
    assert!(
        printed.contains("recomputed 2 of 2 account(s)"),
        "{printed}"
    );
    assert!(
        printed.contains("1 of 2 account(s) have a score"),
        "{printed}"
    );

    let unknown = RecordId::new().to_string();
    let output = rapport(
        &[
            "health",
            "recompute",
            "--config",
            config,
            "--tenant",
            "acme",
            "--account",
            &unknown,
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains(&format!("there is no account {unknown}")));
}
