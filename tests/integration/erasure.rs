//! Erasure of a data subject: nothing about them is returned by any page, API, search or export
//! afterwards; their old ciphertext no longer opens; a legal hold blocks it; the dashboard
//! aggregates equal a rebuild; and the erasure ledger erases them again from a restored copy of
//! the database taken before the erasure.

use std::collections::BTreeSet;
use std::path::Path;

use rapport::accounts::ContactRecord;
use rapport::api::keys::{self, ApiScope};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::context::AppContext;
use rapport::ids::{RecordId, TenantId};
use rapport::insights;
use rapport::interactions::InteractionRecord;
use rapport::privacy::erasure::{erase_subject, ErasureError, SubjectRef};
use rapport::privacy::ledger;
use rapport::retention::holds::{self, NewHold};
use rapport::signals::SignalRecord;
use rapport::store::StoreError;
use rapport::users::Role;
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::backup::{backup_cli, restore_cli};
use crate::dashboard::{snapshot, total_volume};
use crate::helpers::{
    cli_instance, free_port, open_context, rapport, run_queue, stderr, stdout, use_off_backend,
    write_interaction, TestApp,
};

/// The subject's marker word: it appears only in what the subject wrote.
const MARKER: &str = "zebracornish";
const SUBJECT: &str = "jo.quill@example.org";

fn chat(source_id: &str, author: &str, email: &str, text: &str) -> InteractionRecord {
    let at = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    serde_json::from_value(json!({
        "source_system": "desk", "source_id": source_id, "channel": "chat",
        "account": "acme.example", "tags": ["team:Blue"],
        "messages": [
            {"role": "customer", "author_name": author, "author_email": email, "sent_at": at,
             "text": text},
            {"role": "agent", "author_name": "Sam Hill", "sent_at": at,
             "text": "Thanks for writing, we are on it."}
        ]
    }))
    .unwrap()
}

fn contact(source_id: &str, name: &str, email: &str, phone: &str) -> ContactRecord {
    serde_json::from_value(json!({
        "source_system": "crm", "source_id": source_id, "name": name, "email": email,
        "phone": phone, "account": "acme.example"
    }))
    .unwrap()
}

fn lead(source_id: &str, email: &str) -> SignalRecord {
    serde_json::from_value(json!({
        "source_system": "forms", "source_id": source_id, "account": "acme.example",
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "signal": {"kind": "lead", "name": "Jo Quill", "email": email,
                   "message": format!("Please call me about {MARKER}")}
    }))
    .unwrap()
}

/// What the tenant holds: two interactions, a contact and a lead by the subject; one interaction
/// and one contact by someone else. Returns the subject's first interaction's id.
fn fill(context: &AppContext, tenant: TenantId) -> (RecordId, RecordId) {
    let jo_first = write_interaction(
        context,
        tenant,
        chat(
            "T-1",
            "Jo Quill",
            "Jo.Quill@Example.org",
            &format!("My {MARKER} order never arrived."),
        ),
    );
    write_interaction(
        context,
        tenant,
        chat(
            "T-2",
            "Jo Quill",
            SUBJECT,
            &format!("Any news on the {MARKER} order?"),
        ),
    );
    let kim = write_interaction(
        context,
        tenant,
        chat(
            "T-3",
            "Kim Park",
            "kim@example.org",
            "The invoice total is wrong.",
        ),
    );
    context
        .contacts
        .upsert(
            tenant,
            contact("C-1", "Jo Quill", SUBJECT, "+44 20 7946 0991"),
        )
        .unwrap();
    context
        .contacts
        .upsert(
            tenant,
            contact("C-2", "Kim Park", "kim@example.org", "+44 20 7946 0000"),
        )
        .unwrap();
    context
        .signals
        .upsert(tenant, lead("L-1", SUBJECT))
        .unwrap();
    (jo_first.id, kim.id)
}

fn api_key(context: &AppContext, tenant: TenantId) -> String {
    keys::create_key(
        context,
        &Actor::cli(),
        None,
        tenant,
        "test",
        [ApiScope::Read].into_iter().collect::<BTreeSet<_>>(),
    )
    .unwrap()
    .secret
    .expose_secret()
    .to_owned()
}

/// Every page, API answer and export that could show the subject: (what, its text in lower
/// case). The search pages echo their query, so they are checked for the records they link to.
async fn everything_shown(
    app: &TestApp,
    client: &reqwest::Client,
    key: &str,
    ids: &[RecordId],
) -> Vec<(String, String)> {
    let mut shown = Vec::new();
    let mut paths: Vec<String> = [
        "/t/acme/interactions",
        "/t/acme/contacts",
        "/t/acme/signals",
        "/t/acme/accounts",
        "/t/acme/accounts/export.csv",
    ]
    .iter()
    .map(|path| (*path).to_owned())
    .collect();
    for id in ids {
        paths.push(format!("/t/acme/interactions/{id}"));
    }
    for path in paths {
        let response = app.get(client, &path).await;
        shown.push((path, response.text().await.unwrap().to_lowercase()));
    }
    for path in [
        "/api/v1/interactions",
        "/api/v1/contacts",
        "/api/v1/signals",
    ] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}");
        shown.push((
            path.to_owned(),
            response.text().await.unwrap().to_lowercase(),
        ));
    }
    let tenant = app.context.tenants.find_by_slug("acme").unwrap().unwrap();
    let mut export = Vec::new();
    rapport::ingest::export_jsonl(&app.context, &Actor::cli(), &tenant, &mut export).unwrap();
    shown.push((
        "rapport export".to_owned(),
        String::from_utf8(export).unwrap().to_lowercase(),
    ));
    shown
}

/// The search pages for the subject's word and name, concatenated.
async fn searched(app: &TestApp, client: &reqwest::Client) -> String {
    let mut pages = String::new();
    for query in [MARKER, "quill"] {
        let response = app.get(client, &format!("/t/acme/search?q={query}")).await;
        assert!(response.status().is_success());
        pages.push_str(&response.text().await.unwrap());
    }
    pages
}

#[tokio::test]
async fn after_erasure_nothing_about_the_subject_is_returned_and_its_old_ciphertext_does_not_open()
{
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let context = &app.context;
    let (jo_first, kim) = fill(context, tenant.id);
    run_queue(context, tenant.id);
    // A restriction on the subject is data about them too.
    rapport::privacy::restrict(
        context,
        &Actor::cli(),
        None,
        tenant.id,
        SUBJECT,
        rapport::privacy::RestrictionKind::Objection,
        "DSR-7",
    )
    .unwrap();
    let records = context.interactions.records(tenant.id).unwrap();
    let kept = records.sealed_bytes(&jo_first).unwrap().unwrap();
    assert!(
        records.subject_key_of(&jo_first).unwrap().is_some(),
        "the subject's interaction is sealed under the subject's own key"
    );
    assert!(!context
        .analysis
        .analyses(tenant.id, jo_first)
        .unwrap()
        .is_empty());
    let jo_key = records.subject_key_of(&jo_first).unwrap();
    let analysis_keys = context
        .analysis
        .analysis_subject_keys(tenant.id, jo_first)
        .unwrap();
    assert!(
        !analysis_keys.is_empty() && analysis_keys.iter().all(|key| *key == jo_key),
        "the analyses are sealed under the subject's key too: {analysis_keys:?}"
    );

    let client = app.signed_in_client("admin@acme.example").await;
    let key = api_key(context, tenant.id);
    let before = everything_shown(&app, &client, &key, &[jo_first, kim]).await;
    let all_before: String = before.iter().map(|(_, text)| text.as_str()).collect();
    assert!(
        all_before.contains(MARKER),
        "the pages show the subject before"
    );
    assert!(
        all_before.contains(SUBJECT),
        "the API shows the subject's address before"
    );
    assert!(searched(&app, &client)
        .await
        .contains(&jo_first.to_string()));

    let report = erase_subject(
        context,
        &Actor::cli(),
        tenant.id,
        &SubjectRef::Email("JO.QUILL@example.org".to_owned()),
        Some("DSR-7"),
    )
    .unwrap();
    assert_eq!(
        (report.interactions, report.contacts, report.signals),
        (2, 1, 1)
    );
    assert!(report.keys_destroyed >= 1);

    let after = everything_shown(&app, &client, &key, &[jo_first, kim]).await;
    for (what, text) in &after {
        for trace in [MARKER, SUBJECT, "jo quill", "7946 0991"] {
            assert!(!text.contains(trace), "{what} still shows {trace:?}");
        }
    }
    let all_after: String = after.iter().map(|(_, text)| text.as_str()).collect();
    assert!(
        all_after.contains("kim@example.org"),
        "someone else's data stays"
    );
    let search = searched(&app, &client).await;
    assert!(
        !search.contains(&jo_first.to_string()),
        "search still finds the subject's interaction"
    );
    assert_eq!(
        app.get(&client, &format!("/t/acme/interactions/{jo_first}"))
            .await
            .status(),
        reqwest::StatusCode::NOT_FOUND
    );
    // Derived data and the restriction went with the records.
    assert!(context
        .analysis
        .analyses(tenant.id, jo_first)
        .unwrap()
        .is_empty());
    assert!(rapport::privacy::Restrictions::new(context.store.clone())
        .of(tenant.id, SUBJECT)
        .unwrap()
        .is_none());
    // The bytes a copy of the database still holds no longer open: the key is gone.
    let opened = records.open_sealed(&jo_first, &kept);
    assert!(
        matches!(opened, Err(StoreError::SubjectErased { .. })),
        "{opened:?}"
    );
    // The audit log keeps the request, never the address.
    let entries = context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    let erased = &entries
        .iter()
        .find(|entry| entry.event.action == AuditAction::PrivacyErased)
        .expect("privacy.erased is audited")
        .event
        .target;
    assert!(
        erased.contains("DSR-7") && erased.contains("2 interactions"),
        "{erased}"
    );
    assert!(!erased.to_lowercase().contains("quill"));
    // Run again: nothing left to do, and no error (an interrupted erasure finishes this way).
    let again = erase_subject(
        context,
        &Actor::cli(),
        tenant.id,
        &SubjectRef::Email(SUBJECT.to_owned()),
        None,
    )
    .unwrap();
    assert_eq!(
        (again.interactions, again.contacts, again.keys_destroyed),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_legal_hold_on_the_subject_blocks_erasure_and_names_the_hold() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let context = &app.context;
    let (jo_first, _) = fill(context, tenant.id);
    let hold = holds::create(
        context,
        &Actor::cli(),
        None,
        tenant.id,
        &NewHold {
            kind: "subject".to_owned(),
            value: SUBJECT.to_owned(),
            reason: "Matter 12".to_owned(),
            owner: "Legal".to_owned(),
            ..NewHold::default()
        },
    )
    .unwrap();
    let refused = erase_subject(
        context,
        &Actor::cli(),
        tenant.id,
        &SubjectRef::Contact(
            context
                .contacts
                .find_by_source(tenant.id, "crm\u{0}C-1")
                .unwrap()
                .unwrap()
                .id,
        ),
        None,
    )
    .unwrap_err();
    assert!(matches!(&refused, ErasureError::Held { hold: id, .. } if *id == hold.id.to_string()));
    assert!(refused.to_string().contains(&hold.id.to_string()));
    assert!(context
        .interactions
        .get(tenant.id, jo_first)
        .unwrap()
        .is_some());
    assert!(
        ledger::entries(context).unwrap().is_empty(),
        "nothing recorded"
    );

    // A tenant-wide hold covers the subject's records too.
    holds::release(context, &Actor::cli(), None, tenant.id, hold.id).unwrap();
    holds::create(
        context,
        &Actor::cli(),
        None,
        tenant.id,
        &NewHold {
            kind: "tenant".to_owned(),
            reason: "Audit".to_owned(),
            owner: "Legal".to_owned(),
            ..NewHold::default()
        },
    )
    .unwrap();
    let refused = erase_subject(
        context,
        &Actor::cli(),
        tenant.id,
        &SubjectRef::Email(SUBJECT.to_owned()),
        None,
    );
    assert!(matches!(
        refused,
        Err(ErasureError::Held { kind: "tenant", .. })
    ));
    assert!(context
        .interactions
        .get(tenant.id, jo_first)
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn erasing_a_subject_updates_the_aggregates_equal_to_a_rebuild() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    let context = &app.context;
    fill(context, tenant.id);
    run_queue(context, tenant.id);
    let (before, _, _) = snapshot(context, tenant.id);
    assert_eq!(total_volume(&before), 3);

    let report = erase_subject(
        context,
        &Actor::cli(),
        tenant.id,
        &SubjectRef::Name("  jo   QUILL ".to_owned()),
        None,
    )
    .unwrap();
    assert_eq!(
        (report.interactions, report.contacts, report.signals),
        (2, 1, 1)
    );
    assert_eq!(
        report.keys_destroyed, 1,
        "by name, the key of the address that name wrote from is destroyed too"
    );
    let after = snapshot(context, tenant.id);
    assert_eq!(
        total_volume(&after.0),
        1,
        "the subject's two interactions no longer count"
    );
    insights::rebuild(context, tenant.id, &mut |_| {}).unwrap();
    assert_eq!(
        after,
        snapshot(context, tenant.id),
        "the correction equals a rebuild"
    );
}

#[test]
fn a_backup_taken_before_the_erasure_is_erased_again_by_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = cli_instance(dir.path(), free_port());
    let data = dir.path().join("data");
    let (tenant, jo_first, kim) = {
        let context = open_context(&config_path);
        let tenant =
            rapport::tenants::create_tenant(&context, Actor::cli(), None, "acme", "Acme").unwrap();
        let (jo_first, kim) = fill(&context, tenant.id);
        (tenant.id, jo_first, kim)
    };
    // Someone else's conversation mentions the subject's address (in another case).
    let mention = {
        let context = open_context(&config_path);
        write_interaction(
            &context,
            tenant,
            chat(
                "T-4",
                "Kim Park",
                "kim@example.org",
                "Please copy my colleague JO.QUILL@example.org on the refund.",
            ),
        )
        .id
    };
    let mention_text = |context: &AppContext| {
        context
            .interactions
            .get(tenant, mention)
            .unwrap()
            .expect("the mentioning conversation stays")
            .record
            .messages[0]
            .text
            .clone()
    };
    // The backup, with `rapport backup` (the server is stopped: it reads the database itself).
    let config = config_path.to_str().unwrap();
    let backup = dir.path().join("before-erasure.backup");
    let made = backup_cli(config, &backup);
    assert!(made.status.success(), "{}", stderr(&made));

    {
        let context = open_context(&config_path);
        erase_subject(
            &context,
            &Actor::cli(),
            tenant,
            &SubjectRef::Email(SUBJECT.to_owned()),
            Some("DSR-9"),
        )
        .unwrap();
        assert!(context
            .interactions
            .get(tenant, jo_first)
            .unwrap()
            .is_none());
        // The mention is redacted in place; the rest of Kim's words stay, and the address is no
        // longer found by search.
        assert_eq!(
            mention_text(&context),
            "Please copy my colleague [erased] on the refund."
        );
        let index = rapport::search::SearchIndex::new(context.store.clone());
        assert!(index
            .records_with_term(tenant, SUBJECT, 10)
            .unwrap()
            .0
            .is_empty());
    }
    let text = std::fs::read_to_string(&config_path).unwrap();
    let config_with = |data_dir: &Path, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            text.replace(data.to_str().unwrap(), data_dir.to_str().unwrap()),
        )
        .unwrap();
        path
    };
    let restore =
        |config: &Path, target: &Path| restore_cli(config.to_str().unwrap(), &backup, target);

    // Without the live ledger (a configuration whose data directory has none), the backup's own
    // copy of the ledger, older than the erasure, is all there is: the subject is in the backup.
    let elsewhere = dir.path().join("elsewhere");
    let alone = dir.path().join("alone");
    let restored_alone = restore(&config_with(&elsewhere, "elsewhere.toml"), &alone);
    assert!(
        restored_alone.status.success(),
        "{}",
        stderr(&restored_alone)
    );
    {
        let context = open_context(&config_with(&alone, "alone.toml"));
        assert!(
            context
                .interactions
                .get(tenant, jo_first)
                .unwrap()
                .is_some(),
            "the backup holds the subject: a restore without the ledger would resurrect them"
        );
        assert!(mention_text(&context).contains("JO.QUILL@example.org"));
    }

    // `rapport restore` with the appliance's configuration re-applies its live ledger.
    let restored = dir.path().join("restored");
    let restored_with_ledger = restore(&config_path, &restored);
    assert!(
        restored_with_ledger.status.success(),
        "{}",
        stderr(&restored_with_ledger)
    );
    assert!(
        stdout(&restored_with_ledger)
            .contains("re-applied: 4 records deleted, 1 mentions redacted"),
        "two interactions, a contact and a lead: {}",
        stdout(&restored_with_ledger)
    );
    let restored_config = config_with(&restored, "restored.toml");
    {
        let context = open_context(&restored_config);
        assert!(context
            .interactions
            .get(tenant, jo_first)
            .unwrap()
            .is_none());
        assert!(context.interactions.get(tenant, kim).unwrap().is_some());
        assert_eq!(
            mention_text(&context),
            "Please copy my colleague [erased] on the refund."
        );
        let found = rapport::privacy::requests::find::find_subject(
            &context,
            tenant,
            &SubjectRef::Email(SUBJECT.to_owned()),
        )
        .unwrap();
        assert!(
            found.contacts.is_empty()
                && found.interactions.is_empty()
                && found.mentions.is_empty()
                && found.signals.is_empty()
                && found.analyses.is_empty(),
            "the subject came back"
        );
        // Idempotent.
        let report = ledger::reapply(&context).unwrap();
        assert_eq!(report.entries, 1);
        assert_eq!(report.records_deleted, 0, "nothing left the second time");
        assert_eq!(report.mentions_redacted, 0, "nothing left the second time");
    }
    // A ledger with an altered byte is refused, never silently shortened.
    let ledger_file = restored.join("erasure-ledger");
    let mut bytes = std::fs::read(&ledger_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&ledger_file, &bytes).unwrap();
    {
        let context = open_context(&restored_config);
        let refused = ledger::entries(&context).unwrap_err().to_string();
        assert!(refused.contains("damaged at entry 1"), "{refused}");
    }
    std::fs::copy(data.join("erasure-ledger"), &ledger_file).unwrap();
    // The exports of the restored instance do not show the subject.
    let config = restored_config.to_str().unwrap();
    let exported = rapport(
        &[
            "export", "--config", config, "--tenant", "acme", "--format", "jsonl",
        ],
        None,
    );
    assert!(exported.status.success(), "{}", stderr(&exported));
    let exported = stdout(&exported).to_lowercase();
    assert!(exported.contains("kim@example.org"));
    assert!(!exported.contains(SUBJECT) && !exported.contains(MARKER));
}

#[test]
fn the_command_line_erases_by_phone_and_requires_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = cli_instance(dir.path(), free_port());
    let tenant = {
        let context = open_context(&config_path);
        let tenant =
            rapport::tenants::create_tenant(&context, Actor::cli(), None, "acme", "Acme").unwrap();
        fill(&context, tenant.id);
        tenant.id
    };
    let config = config_path.to_str().unwrap();
    let unconfirmed = rapport(
        &[
            "privacy",
            "erase",
            "--config",
            config,
            "--tenant",
            "acme",
            "--phone",
            "+44 20 7946 0991",
        ],
        None,
    );
    assert!(!unconfirmed.status.success());
    assert!(stderr(&unconfirmed).contains("--yes"));
    let erased = rapport(
        &[
            "privacy",
            "erase",
            "--config",
            config,
            "--tenant",
            "acme",
            "--phone",
            "+44 20 7946 0991",
            "--yes",
        ],
        None,
    );
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert!(
        stdout(&erased).contains("1 contacts"),
        "{}",
        stdout(&erased)
    );
    assert!(!stdout(&erased).contains("7946"));
    let context = open_context(&config_path);
    assert!(context
        .contacts
        .find_by_source(tenant, "crm\u{0}C-1")
        .unwrap()
        .is_none());
    assert!(context
        .contacts
        .find_by_source(tenant, "crm\u{0}C-2")
        .unwrap()
        .is_some());
}
