//! The reference index (`records::refs`) follows every write path: imports (new records and
//! updates), API writes, an import that is rolled back, and deletions; `reindex_references`
//! (behind `rapport records reindex`) is idempotent; and lookups by a person's address, phone or
//! name find their records whatever the spelling.

use chrono::{Duration, Utc};
use rapport::audit::Actor;
use rapport::ids::{ImportId, RecordId, TenantId};
use rapport::ingest::{ImportFormat, ImportRequest};
use rapport::interactions::InteractionRecord;
use rapport::records::delete;
use rapport::records::refs::{RefIndex, Reference};
use rapport::records::RecordKind;

use crate::helpers::{import_committed, write_file, write_interaction, ShrinkingSource, TestApp};

/// One chat of `account` written by `customer`, `days_ago` days ago.
fn chat(id: u32, account: &str, customer: &str, days_ago: i64) -> String {
    let at = (Utc::now() - Duration::days(days_ago)).to_rfc3339();
    serde_json::json!({
        "source_system": "desk", "source_id": format!("c{id}"), "channel": "chat",
        "account": account,
        "messages": [
            {"role": "customer", "author_email": customer, "author_name": "Ana  Souza",
             "sent_at": at, "text": "My invoice is wrong."},
            {"role": "agent", "author_name": "Sam", "sent_at": at, "text": "Let me check."}
        ]
    })
    .to_string()
}

fn referring(
    app: &TestApp,
    tenant: TenantId,
    kind: RecordKind,
    reference: &Reference,
) -> Vec<RecordId> {
    RefIndex::new(app.context.store.clone())
        .referring(tenant, kind, reference, 10_000)
        .unwrap()
}

fn account(value: &str) -> Reference {
    Reference::account(value).unwrap()
}

fn id_of(app: &TestApp, tenant: TenantId, source_id: &str) -> RecordId {
    app.context
        .interactions
        .find_by_source(tenant, &format!("desk\u{0}{source_id}"))
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn the_index_follows_imports_updates_rollbacks_and_deletions() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("refs");
    let dir = tempfile::tempdir().unwrap();
    // 2,001 chats: two batches of the importer. Every third one is Acme's.
    let lines: Vec<String> = (0..2001)
        .map(|n| {
            let owner = if n % 3 == 0 {
                "ACME.example"
            } else {
                "globex.example"
            };
            chat(
                n,
                owner,
                &format!("person{n}@example.com"),
                i64::from(n % 50),
            )
        })
        .collect();
    let first = write_file(dir.path(), "first.jsonl", &(lines.join("\n") + "\n"));
    import_committed(&app.context, &tenant, ImportFormat::Jsonl, &first);

    let acme = referring(
        &app,
        tenant.id,
        RecordKind::Interaction,
        &account("acme.example"),
    );
    assert_eq!(acme.len(), 667);
    let mut sorted = acme.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(acme, sorted, "newest first");
    // Every id found names Acme, and the record the index finds by address is that person's.
    for id in &acme {
        let record = app
            .context
            .interactions
            .get(tenant.id, *id)
            .unwrap()
            .unwrap();
        assert_eq!(record.record.account.as_deref(), Some("ACME.example"));
    }
    let person = referring(
        &app,
        tenant.id,
        RecordKind::Interaction,
        &Reference::email(" Person7@EXAMPLE.com").unwrap(),
    );
    assert_eq!(person, vec![id_of(&app, tenant.id, "c7")]);
    let named = referring(
        &app,
        tenant.id,
        RecordKind::Interaction,
        &Reference::name("ana souza").unwrap(),
    );
    assert_eq!(named.len(), 2001);
    // Interactions and contacts are filed apart: the address names no contact.
    assert!(referring(
        &app,
        tenant.id,
        RecordKind::Contact,
        &Reference::email("person7@example.com").unwrap()
    )
    .is_empty());

    // An API write moves chat 0 from Acme to Initech.
    let moved = id_of(&app, tenant.id, "c0");
    let mut record: InteractionRecord =
        serde_json::from_str(&chat(0, "initech.example", "person0@example.com", 1)).unwrap();
    record.source_system = "desk".to_owned();
    write_interaction(&app.context, tenant.id, record);
    assert!(!referring(
        &app,
        tenant.id,
        RecordKind::Interaction,
        &account("acme.example")
    )
    .contains(&moved));
    assert_eq!(
        referring(
            &app,
            tenant.id,
            RecordKind::Interaction,
            &account("initech.example")
        ),
        vec![moved]
    );

    // An import that moves chats 0..2000 to Hooli and adds one more, whose file loses its last
    // line between the two passes, is rolled back whole after its first batch was written: the
    // index returns to what it was.
    let hooli_lines: Vec<String> = (0..2000)
        .map(|n| chat(n, "hooli.example", &format!("person{n}@example.com"), 2))
        .collect();
    let short = write_file(dir.path(), "short.jsonl", &(hooli_lines.join("\n") + "\n"));
    let whole = write_file(
        dir.path(),
        "whole.jsonl",
        &(hooli_lines.join("\n")
            + "\n"
            + &chat(5000, "hooli.example", "new@example.com", 1)
            + "\n"),
    );
    let outcome = rapport::ingest::import_from_source(
        &app.context,
        &ImportRequest {
            actor: &Actor::cli(),
            tenant: &tenant,
            format: ImportFormat::Jsonl,
            path: &whole,
            skip_invalid: false,
        },
        &ShrinkingSource {
            whole: whole.clone(),
            short,
            opened: std::cell::Cell::new(0),
        },
        ImportId::new(),
        &mut |_| {},
    );
    assert!(outcome.is_err(), "the changed file fails the import");
    assert!(referring(
        &app,
        tenant.id,
        RecordKind::Interaction,
        &account("hooli.example")
    )
    .is_empty());
    assert_eq!(
        referring(
            &app,
            tenant.id,
            RecordKind::Interaction,
            &account("initech.example")
        ),
        vec![moved]
    );
    assert_eq!(
        referring(
            &app,
            tenant.id,
            RecordKind::Interaction,
            &account("acme.example")
        )
        .len(),
        666
    );

    // Reindexing files the same entries again: nothing changes.
    let filed = app
        .context
        .interactions
        .reindex_references(tenant.id, |_| {})
        .unwrap();
    assert_eq!(filed, 2001);
    assert_eq!(
        referring(
            &app,
            tenant.id,
            RecordKind::Interaction,
            &account("acme.example")
        )
        .len(),
        666
    );

    // Deleting a record takes its entries out.
    let targets = delete::targets::<InteractionRecord>(&app.context, tenant.id, &[moved]).unwrap();
    assert_eq!(
        delete::delete::<InteractionRecord>(&app.context, tenant.id, &targets).unwrap(),
        vec![moved]
    );
    assert!(referring(
        &app,
        tenant.id,
        RecordKind::Interaction,
        &account("initech.example")
    )
    .is_empty());
    assert!(referring(
        &app,
        tenant.id,
        RecordKind::Interaction,
        &Reference::email("person0@example.com").unwrap()
    )
    .is_empty());
}

#[test]
fn contacts_are_found_by_address_phone_and_name_and_the_cli_reindexes() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::cli_instance(dir.path(), crate::helpers::free_port());
    let config = config.to_str().unwrap();
    let created = crate::helpers::rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "crm", "--name", "CRM",
        ],
        None,
    );
    assert!(
        created.status.success(),
        "{}",
        crate::helpers::stderr(&created)
    );
    let contacts = write_file(
        dir.path(),
        "contacts.csv",
        "contact_id,name,email,phone,date_of_birth,job_title,account_id\n\
         k1,Ana Souza,Ana@Example.com,+44 20 7946 0958,,Buyer,acme.example\n\
         k2,Bo Lee,bo@example.com,,,,globex.example\n",
    );
    let imported = crate::helpers::rapport(
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
    assert!(
        imported.status.success(),
        "{}",
        crate::helpers::stderr(&imported)
    );
    let reindexed = crate::helpers::rapport(
        &["records", "reindex", "--config", config, "--tenant", "crm"],
        None,
    );
    assert!(
        reindexed.status.success(),
        "{}",
        crate::helpers::stderr(&reindexed)
    );
    let out = crate::helpers::stdout(&reindexed);
    assert!(
        out.contains("reindexed the records of crm: 0 interaction(s), 0 account(s), 2 contact(s), 0 signal(s)"),
        "{out}"
    );

    let context = crate::helpers::open_context(std::path::Path::new(config));
    let tenant = context.tenants.find_by_slug("crm").unwrap().unwrap().id;
    let index = RefIndex::new(context.store.clone());
    let find = |reference: Reference| {
        index
            .referring(tenant, RecordKind::Contact, &reference, 10)
            .unwrap()
    };
    let ana = find(Reference::email("ana@example.COM").unwrap());
    assert_eq!(ana.len(), 1);
    assert_eq!(find(Reference::phone("+442079460958").unwrap()), ana);
    assert_eq!(find(Reference::name("ANA  souza").unwrap()), ana);
    assert_eq!(find(Reference::account("Acme.Example").unwrap()), ana);
    assert_eq!(
        find(Reference::email("nobody@example.com").unwrap()),
        Vec::<RecordId>::new()
    );
    let bo = context
        .contacts
        .get(tenant, find(Reference::email("bo@example.com").unwrap())[0])
        .unwrap()
        .unwrap();
    assert_eq!(bo.record.name, "Bo Lee");
}
