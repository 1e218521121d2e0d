//! Tenant offboarding end to end: the operator starts it in the console, which exports
//! everything (files 0600 whose digests match the manifest) and locks the tenant (pages 423 with
//! the purge date, API keys refused; the legal-hold page stays open); a cancel restores it; after
//! the wind-down the purge destroys the tenant's keys and trees, so a sealed value kept from
//! before no longer opens, while another tenant is untouched; a legal hold blocks start and
//! purge; the command line starts, shows and cancels; everything is audited with counts.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::{Duration, Utc};
use rapport::api::keys::{self, ApiScope};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::ingest::ImportFormat;
use rapport::offboarding::{self, OffboardingError, OffboardingState, StartRequest};
use rapport::retention::holds::{self, NewHold};
use rapport::store::{RecordKey, Scope, StoreError};
use rapport::users::Role;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::dashboard::set_up;
use crate::helpers::{
    cli_instance, escaped, import_committed, location, rapport, stderr, stdout, write_file,
    write_interaction, TestApp,
};

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn appliance_audit(app: &TestApp, action: AuditAction) -> Vec<String> {
    app.context
        .audit_log
        .entries(AuditView::Appliance, None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == action)
        .map(|entry| entry.event.target)
        .collect()
}

/// Tenant `acme` seeded as the dashboard test seeds it, plus contacts; tenant `other` with one
/// interaction; an operator, acme's admin and privacy officer, and other's analyst.
fn fixture(app: &TestApp) -> (rapport::tenants::Tenant, tempfile::TempDir) {
    let (acme, dir) = set_up(app);
    import_committed(
        &app.context,
        &acme,
        ImportFormat::Contacts,
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/contacts.csv"
        )),
    );
    let other = app.create_tenant("other");
    write_interaction(
        &app.context,
        other.id,
        serde_json::from_value(serde_json::json!({
            "source_system": "desk", "source_id": "O-1", "channel": "chat",
            "messages": [{"role": "customer", "author_name": "Zed", "sent_at": "2026-01-05T10:00:00Z",
                          "text": "Other tenant's question about invoices."}]
        }))
        .unwrap(),
    );
    app.create_user("op@example.com", Role::Operator, None);
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&acme));
    app.create_user("privacy@acme.example", Role::PrivacyOfficer, Some(&acme));
    app.create_user("analyst@other.example", Role::Analyst, Some(&other));
    (acme, dir)
}

fn api_key(app: &TestApp, tenant: rapport::ids::TenantId) -> String {
    use secrecy::ExposeSecret as _;
    keys::create_key(
        &app.context,
        &Actor::cli(),
        None,
        tenant,
        "ETL",
        BTreeSet::from([ApiScope::Read]),
    )
    .unwrap()
    .secret
    .expose_secret()
    .to_owned()
}

async fn api_status(app: &TestApp, key: &str) -> StatusCode {
    app.client
        .get(app.url("/api/v1/interactions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_console_exports_everything_locks_the_tenant_and_a_cancel_restores_it() {
    let app = TestApp::spawn();
    let (acme, _dir) = fixture(&app);
    let key = api_key(&app, acme.id);
    let operator = app.signed_in_client("op@example.com").await;
    let admin = app.signed_in_client("admin@acme.example").await;
    let privacy = app.signed_in_client("privacy@acme.example").await;
    let analyst = app.signed_in_client("analyst@other.example").await;
    assert_eq!(api_status(&app, &key).await, StatusCode::OK);
    assert_eq!(
        app.get(&admin, "/t/acme/dashboard").await.status(),
        StatusCode::OK
    );

    // A wind-down outside 1..=90 days, or not a number, is refused with the rule, and nothing
    // is written.
    for bad in ["0", "91", "-3", "soon"] {
        let response = app
            .post_form(
                &operator,
                "/admin/tenants/acme/offboarding",
                &[("wind_down_days", bad)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let page = response.text().await.unwrap();
        assert!(page.contains("1 to 90"), "{bad}: {page}");
    }
    assert!(offboarding::status(&app.context, "acme").unwrap().is_none());
    assert!(
        !app.data_dir.join("exports").exists() || {
            std::fs::read_dir(app.data_dir.join("exports"))
                .unwrap()
                .count()
                == 0
        }
    );

    let started = app
        .post_form(
            &operator,
            "/admin/tenants/acme/offboarding",
            &[("wind_down_days", "7")],
        )
        .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&started), "/admin/tenants/acme/offboarding");
    let record = offboarding::status(&app.context, "acme")
        .unwrap()
        .expect("an offboarding on record");
    assert_eq!(record.state, OffboardingState::WindingDown);
    assert_eq!(record.wind_down_days, 7);
    assert_eq!(record.purge_after - record.started, Duration::days(7));

    // The export: a new 0700 directory under the data directory, 0600 files whose digests are
    // the manifest's, holding the tenant's data.
    let export = &record.export.path;
    assert!(export.starts_with(app.data_dir.join("exports")));
    assert_eq!(mode_of(export), 0o700);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tenant_slug"], "acme");
    assert_eq!(
        sha256_of(&export.join("manifest.json")),
        record.export.manifest_sha256
    );
    let mut names = Vec::new();
    for file in manifest["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        names.push(name.to_owned());
        let path = export.join(name);
        assert_eq!(mode_of(&path), 0o600, "{name}");
        assert_eq!(sha256_of(&path), file["sha256"].as_str().unwrap(), "{name}");
    }
    assert_eq!(
        names,
        [
            "interactions.jsonl",
            "accounts.jsonl",
            "contacts.jsonl",
            "signals.jsonl",
            "analyses.jsonl",
            "accounts-health.csv"
        ]
    );
    let interactions = std::fs::read_to_string(export.join("interactions.jsonl")).unwrap();
    assert_eq!(interactions.lines().count(), 5);
    assert!(interactions.contains("Password reset does not work."));
    assert!(!interactions.contains("Other tenant's question"));
    let contacts = std::fs::read_to_string(export.join("contacts.jsonl")).unwrap();
    assert_eq!(contacts.lines().count(), 3);
    assert!(contacts.contains("maria.lopez@northwind.example"));
    let signals = std::fs::read_to_string(export.join("signals.jsonl")).unwrap();
    assert_eq!(signals.lines().count(), 4, "four reviews");
    assert!(std::fs::read_to_string(export.join("accounts.jsonl"))
        .unwrap()
        .contains("Northwind"));
    assert_eq!(
        std::fs::read_to_string(export.join("analyses.jsonl"))
            .unwrap()
            .lines()
            .count(),
        5,
        "every interaction was analysed"
    );
    let health = std::fs::read_to_string(export.join("accounts-health.csv")).unwrap();
    assert_eq!(
        health.lines().count(),
        3,
        "header and two accounts: {health}"
    );

    // Locked: the tenant's pages answer 423 with the purge date, its API key is refused; the
    // legal-hold page stays open to its privacy officer; the other tenant works.
    let purge_date = record.purge_after_text();
    let locked = app.get(&admin, "/t/acme/dashboard").await;
    assert_eq!(locked.status(), StatusCode::LOCKED);
    let page = locked.text().await.unwrap();
    assert!(page.contains(&escaped(&purge_date)), "{page}");
    assert_eq!(
        app.get(&admin, "/t/acme/").await.status(),
        StatusCode::LOCKED
    );
    assert_eq!(api_status(&app, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get(&privacy, "/t/acme/privacy/holds").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&analyst, "/t/other/dashboard").await.status(),
        StatusCode::OK
    );
    // The operator's pages show the purge date: the tenants list's banner and the page.
    let list = app
        .get(&operator, "/admin/tenants")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("is being offboarded"), "{list}");
    assert!(list.contains(&escaped(&purge_date)), "{list}");
    let shown = app
        .get(&operator, "/admin/tenants/acme/offboarding")
        .await
        .text()
        .await
        .unwrap();
    assert!(shown.contains(&record.export.manifest_sha256));
    assert!(shown.contains(&escaped(&purge_date)));
    // Starting twice is refused.
    let again = app
        .post_form(&operator, "/admin/tenants/acme/offboarding", &[])
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // Audited on the appliance log with counts, never content.
    let audited = appliance_audit(&app, AuditAction::TenantOffboardingStarted);
    assert_eq!(audited.len(), 1);
    assert!(
        audited[0].contains("5 interactions, 2 accounts, 3 contacts, 4 signals"),
        "{audited:?}"
    );
    assert!(audited[0].contains(&record.export.manifest_sha256));
    assert!(!audited[0].contains("Password") && !audited[0].contains("maria"));

    // Cancel: the tenant works as before, and the cancel is audited.
    let cancelled = app
        .post_form(&operator, "/admin/tenants/acme/offboarding/cancel", &[])
        .await;
    assert_eq!(cancelled.status(), StatusCode::SEE_OTHER);
    assert!(offboarding::status(&app.context, "acme").unwrap().is_none());
    assert_eq!(
        app.get(&admin, "/t/acme/dashboard").await.status(),
        StatusCode::OK
    );
    assert_eq!(api_status(&app, &key).await, StatusCode::OK);
    assert_eq!(
        appliance_audit(&app, AuditAction::TenantOffboardingCancelled).len(),
        1
    );
    // Cancelling what is not being offboarded says so.
    let nothing = app
        .post_form(&operator, "/admin/tenants/acme/offboarding/cancel", &[])
        .await;
    assert_eq!(nothing.status(), StatusCode::CONFLICT);
    assert!(nothing
        .text()
        .await
        .unwrap()
        .contains("is not being offboarded"));
}

#[tokio::test]
async fn the_purge_destroys_keys_and_data_after_the_wind_down_and_spares_the_other_tenant() {
    let app = TestApp::spawn();
    let (acme, dir) = fixture(&app);
    let key = api_key(&app, acme.id);
    let context = &app.context;
    let other = context.tenants.find_by_slug("other").unwrap().unwrap();
    let other_before = context.interactions.records(other.id).unwrap().len();

    // A sealed value as stored before the purge, and proof that it opens now.
    let records = context.interactions.records(acme.id).unwrap();
    let (id, _) = records.scan().next().unwrap().unwrap();
    let sealed = records.sealed_bytes(&id).unwrap().unwrap();
    drop(records);
    let opened = context
        .store
        .open_with_stored_keys(
            Scope::Tenant(acme.id),
            "interactions",
            &id.to_key_bytes(),
            &sealed,
        )
        .unwrap();
    assert!(!opened.is_empty());

    let now = Utc::now();
    let export_dir = dir.path().join("acme-export");
    let record = offboarding::start(
        context,
        &StartRequest {
            actor: &Actor::cli(),
            client: None,
            slug: "acme",
            wind_down_days: None,
            export_dir: &export_dir,
        },
        now,
    )
    .unwrap();
    assert_eq!(record.wind_down_days, 30, "the default wind-down");
    assert!(!record.export.inside_data_dir);

    // Not before the wind-down ends: neither by name nor by the scheduler's sweep.
    let early = offboarding::purge(context, &Actor::system(), acme.id, now + Duration::days(29));
    assert!(
        matches!(early, Err(OffboardingError::NotDue { .. })),
        "{early:?}"
    );
    assert!(offboarding::purge_due(context, now + Duration::days(29))
        .unwrap()
        .is_empty());
    assert!(context.tenants.find_by_slug("acme").unwrap().is_some());

    // After it: purged.
    let outcomes = offboarding::purge_due(context, now + Duration::days(30)).unwrap();
    assert_eq!(outcomes.len(), 1);
    let (purged_id, outcome) = &outcomes[0];
    assert_eq!(*purged_id, acme.id);
    let tombstone = outcome.as_ref().unwrap();
    let OffboardingState::Purged { destroyed, .. } = &tombstone.state else {
        panic!("{tombstone:?}");
    };
    assert_eq!(destroyed.keys, 2, "data and index key");
    assert!(destroyed.trees >= 5, "{destroyed:?}");
    assert!(destroyed.records >= 5 + 2 + 3 + 4, "{destroyed:?}");

    // The kept bytes no longer open: the keys are gone from the database.
    let reopened = context.store.open_with_stored_keys(
        Scope::Tenant(acme.id),
        "interactions",
        &id.to_key_bytes(),
        &sealed,
    );
    assert!(
        matches!(reopened, Err(StoreError::UnknownScope(Scope::Tenant(t))) if t == acme.id),
        "{reopened:?}"
    );
    // Nothing of the tenant can be opened or listed; its slug stays reserved.
    assert!(matches!(
        context.interactions.records(acme.id),
        Err(StoreError::UnknownScope(_))
    ));
    assert!(context.tenants.find_by_slug("acme").unwrap().is_none());
    assert!(context
        .tenants
        .list()
        .unwrap()
        .iter()
        .all(|tenant| tenant.id != acme.id));
    let reserved = rapport::tenants::create_tenant(context, Actor::cli(), None, "acme", "New")
        .unwrap_err()
        .to_string();
    assert!(reserved.contains("stays reserved"), "{reserved}");
    // Its users are gone (sign-in fails) and their addresses can be used again.
    let response = app
        .login(
            &app.new_client(),
            "admin@acme.example",
            crate::helpers::PASSWORD,
        )
        .await;
    assert_ne!(response.status(), StatusCode::SEE_OTHER);
    app.create_user("admin@acme.example", Role::Analyst, Some(&other));
    assert_eq!(api_status(&app, &key).await, StatusCode::UNAUTHORIZED);
    // The other tenant is untouched.
    assert_eq!(
        context.interactions.records(other.id).unwrap().len(),
        other_before
    );
    let analyst = app.signed_in_client("analyst@other.example").await;
    assert_eq!(
        app.get(&analyst, "/t/other/dashboard").await.status(),
        StatusCode::OK
    );
    // The export the command line wrote outside the data directory is the operator's: kept.
    assert!(export_dir.join("manifest.json").exists());

    // Audited with counts; the tombstone says purged; cancel and purge again are harmless.
    let purged = appliance_audit(&app, AuditAction::TenantPurged);
    assert_eq!(purged.len(), 1);
    assert!(purged[0].contains("2 key(s) destroyed"), "{purged:?}");
    let status = offboarding::status(context, "acme").unwrap().unwrap();
    assert_eq!(status.state_label(), "purged");
    assert!(matches!(
        offboarding::cancel(context, &Actor::cli(), None, "acme"),
        Err(OffboardingError::Purged(_))
    ));
    assert!(offboarding::purge_due(context, now + Duration::days(60))
        .unwrap()
        .is_empty());
    let operator = app.signed_in_client("op@example.com").await;
    let list = app
        .get(&operator, "/admin/tenants")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("Purged tenants"), "{list}");
}

fn hold(kind: &str, value: &str) -> NewHold {
    NewHold {
        kind: kind.to_owned(),
        value: value.to_owned(),
        reason: "Matter M-7".to_owned(),
        owner: "Legal".to_owned(),
        ..NewHold::default()
    }
}

#[tokio::test]
async fn a_legal_hold_blocks_both_start_and_purge() {
    let app = TestApp::spawn();
    let (acme, dir) = fixture(&app);
    let context = &app.context;
    let placed = holds::create(
        context,
        &Actor::cli(),
        None,
        acme.id,
        &hold("account", "A-1"),
    )
    .unwrap();
    let now = Utc::now();
    let start = |path: &str| {
        offboarding::start(
            context,
            &StartRequest {
                actor: &Actor::cli(),
                client: None,
                slug: "acme",
                wind_down_days: Some(10),
                export_dir: &dir.path().join(path),
            },
            now,
        )
    };
    let refused = start("first").unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, OffboardingError::Held { count: 1, .. }));
    assert!(
        message.contains("1 active legal hold") && message.contains("/t/acme/privacy/holds"),
        "{message}"
    );
    assert!(!dir.path().join("first").exists(), "nothing exported");
    // The console says the same.
    let operator = app.signed_in_client("op@example.com").await;
    let response = app
        .post_form(&operator, "/admin/tenants/acme/offboarding", &[])
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("1 active legal hold"));

    holds::release(context, &Actor::cli(), None, acme.id, placed.id).unwrap();
    start("second").unwrap();

    // During the wind-down the privacy officer places a hold in the console (its page is
    // open while the tenant is locked): the purge is refused and nothing is destroyed.
    let privacy = app.signed_in_client("privacy@acme.example").await;
    let response = app
        .post_form(
            &privacy,
            "/t/acme/privacy/holds",
            &[
                ("kind", "tag"),
                ("value", "litigation"),
                ("reason", "M-8"),
                ("owner", "Legal"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let later = now + Duration::days(11);
    let outcomes = offboarding::purge_due(context, later).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert!(
        matches!(outcomes[0].1, Err(OffboardingError::Held { count: 1, .. })),
        "{:?}",
        outcomes[0].1
    );
    assert!(context.tenants.find_by_slug("acme").unwrap().is_some());
    assert_eq!(context.interactions.records(acme.id).unwrap().len(), 5);
    assert!(appliance_audit(&app, AuditAction::TenantPurged).is_empty());

    // Released, the next sweep purges.
    let active = holds::list(context, acme.id).unwrap();
    for held in active.iter().filter(|held| held.released.is_none()) {
        holds::release(context, &Actor::cli(), None, acme.id, held.id).unwrap();
    }
    let outcomes = offboarding::purge_due(context, later).unwrap();
    assert!(outcomes[0].1.is_ok(), "{:?}", outcomes[0].1);
    assert!(context.tenants.find_by_slug("acme").unwrap().is_none());
}

#[test]
fn the_command_line_starts_shows_and_cancels_an_offboarding() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), crate::helpers::free_port());
    let config = config.to_str().unwrap();
    let created = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme",
        ],
        None,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let chats = write_file(
        dir.path(),
        "chats.jsonl",
        r#"{"source_system":"desk","source_id":"T-1","channel":"chat","messages":[{"role":"customer","author_name":"Ann","sent_at":"2026-01-05T10:00:00Z","text":"My parcel is late."}]}
"#,
    );
    let imported = rapport(
        &[
            "import",
            "--config",
            config,
            "--tenant",
            "acme",
            "--format",
            "jsonl",
            chats.to_str().unwrap(),
        ],
        None,
    );
    assert!(imported.status.success(), "{}", stderr(&imported));

    let export = dir.path().join("acme-export");
    let export = export.to_str().unwrap();
    let too_long = rapport(
        &[
            "tenant",
            "offboard",
            "--config",
            config,
            "--tenant",
            "acme",
            "--wind-down-days",
            "120",
            "--export",
            export,
        ],
        None,
    );
    assert!(!too_long.status.success());
    assert!(
        stderr(&too_long).contains("1 to 90"),
        "{}",
        stderr(&too_long)
    );
    let missing = rapport(
        &["tenant", "offboard", "--config", config, "--tenant", "acme"],
        None,
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("--export"),
        "{}",
        stderr(&missing)
    );

    let started = rapport(
        &[
            "tenant",
            "offboard",
            "--config",
            config,
            "--tenant",
            "acme",
            "--wind-down-days",
            "14",
            "--export",
            export,
        ],
        None,
    );
    assert!(started.status.success(), "{}", stderr(&started));
    let printed = stdout(&started);
    let manifest_sha = sha256_of(&Path::new(export).join("manifest.json"));
    assert!(
        printed.contains(&format!("manifest sha256 {manifest_sha}")),
        "{printed}"
    );
    assert!(printed.contains("(14 days of wind-down)"), "{printed}");
    assert_eq!(
        mode_of(&Path::new(export).join("interactions.jsonl")),
        0o600
    );
    assert!(
        std::fs::read_to_string(Path::new(export).join("interactions.jsonl"))
            .unwrap()
            .contains("My parcel is late.")
    );

    let status = rapport(
        &[
            "tenant", "offboard", "--config", config, "--tenant", "acme", "--status",
        ],
        None,
    );
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("winding down"),
        "{}",
        stdout(&status)
    );
    // A second start is refused and names the purge date; the export path is never reused.
    let again = rapport(
        &[
            "tenant", "offboard", "--config", config, "--tenant", "acme", "--export", export,
        ],
        None,
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already being offboarded"),
        "{}",
        stderr(&again)
    );

    let cancelled = rapport(
        &[
            "tenant", "offboard", "--config", config, "--tenant", "acme", "--cancel",
        ],
        None,
    );
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    assert!(stdout(&cancelled).contains("cancelled"));
    let status = rapport(
        &[
            "tenant", "offboard", "--config", config, "--tenant", "acme", "--status",
        ],
        None,
    );
    assert!(!status.status.success());
    assert!(stderr(&status).contains("is not being offboarded"));
}

/// A start that fails after the export directory exists (here: the disk reserve refuses the
/// export's audit entries, as on a full disk) leaves neither the partial export nor an
/// offboarding; once the disk has room, the same start succeeds.
#[test]
fn a_start_that_fails_part_way_leaves_no_export_and_no_offboarding() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("etc").join("rapport.toml");
    rapport::init::run(&rapport::init::InitOptions {
        config_path: config_path.clone(),
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: false,
    })
    .unwrap();
    let context = crate::helpers::open_context(&config_path);
    let acme =
        rapport::tenants::create_tenant(&context, Actor::cli(), None, "acme", "Acme").unwrap();
    write_interaction(
        &context,
        acme.id,
        serde_json::from_value(serde_json::json!({
            "source_system": "desk", "source_id": "A-1", "channel": "chat",
            "messages": [{"role": "customer", "author_name": "Ann", "sent_at": "2026-01-05T10:00:00Z",
                          "text": "A question about invoices."}]
        }))
        .unwrap(),
    );
    drop(context);

    // Reopened with a reserve no disk has: every write, the export's audit entries included, is
    // refused, after the export directory and its first file were created.
    let mut config = rapport::config::Config::load(&config_path).unwrap();
    config.storage.min_free_disk_mib = u64::MAX;
    let context =
        rapport::context::AppContext::open(config, rapport::store::OpenMode::ExistingOnly).unwrap();
    let now = Utc::now();
    let export_dir = offboarding::export::console_export_path(&context, "acme", now).unwrap();
    let exports = export_dir.parent().unwrap().to_path_buf();
    let request = StartRequest {
        actor: &Actor::cli(),
        client: None,
        slug: "acme",
        wind_down_days: None,
        export_dir: &export_dir,
    };
    let failed = offboarding::start(&context, &request, now);
    assert!(failed.is_err(), "{failed:?}");
    assert!(!export_dir.exists(), "a partial export was left behind");
    assert_eq!(std::fs::read_dir(&exports).unwrap().count(), 0);
    assert!(offboarding::status(&context, "acme").unwrap().is_none());
    assert!(offboarding::lock_of(&context, acme.id).unwrap().is_none());
    drop(context);

    // With room again, the same start goes through (no leftover directory refuses it).
    let context = crate::helpers::open_context(&config_path);
    let started = offboarding::start(&context, &request, now).unwrap();
    assert_eq!(started.export.path, export_dir);
    assert!(export_dir.join("manifest.json").exists());
    assert!(offboarding::lock_of(&context, acme.id).unwrap().is_some());
}
