//! The audit log: entries for the listed events, visibility by role, and tamper detection by
//! `rapport audit verify`.

use rapport::audit::{AuditAction, AuditView, Outcome};
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{
    cli_instance, files_under, free_port, rapport, stderr, stdout, TestApp, PASSWORD,
};

#[tokio::test]
async fn the_listed_events_are_recorded_and_shown_to_the_right_readers() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let operator = app.signed_in_client("op@example.com").await;
    app.post_form(
        &operator,
        "/admin/tenants",
        &[("slug", "acme"), ("name", "Acme")],
    )
    .await;
    let created = app
        .post_form(
            &operator,
            "/admin/users",
            &[
                ("email", "admin@acme.example"),
                ("role", "tenant-admin"),
                ("tenant", "acme"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::OK);
    let page = created.text().await.unwrap();
    let one_time = page
        .split("<code class=\"secret\">")
        .nth(1)
        .unwrap()
        .split("</code>")
        .next()
        .unwrap()
        .to_owned();
    let tenant = app.context.tenants.find_by_slug("acme").unwrap().unwrap();
    let auditor = app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    app.login(
        &app.new_client(),
        "admin@acme.example",
        "wrong password here",
    )
    .await;
    let admin = app.new_client();
    assert_eq!(
        app.login(&admin, "admin@acme.example", &one_time)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let new_password = "the admin's own password";
    app.post_form(
        &admin,
        "/account/password",
        &[
            ("current", &one_time),
            ("new", new_password),
            ("confirm", new_password),
        ],
    )
    .await;
    app.post_form(
        &admin,
        &format!("/t/acme/users/{}/role", auditor.id),
        &[("role", "privacy-officer")],
    )
    .await;
    app.post_form(
        &admin,
        &format!("/t/acme/users/{}/disable", auditor.id),
        &[],
    )
    .await;
    assert_eq!(
        app.get(&admin, "/t/acme/users").await.status(),
        StatusCode::OK
    );

    let appliance = app
        .context
        .audit_log
        .entries(AuditView::Appliance, None, 1000)
        .unwrap();
    let tenant_entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 1000)
        .unwrap();
    let has = |entries: &[rapport::audit::AuditEntry], action: AuditAction, outcome: Outcome| {
        entries
            .iter()
            .any(|e| e.event.action == action && e.event.outcome == outcome)
    };
    assert!(has(&appliance, AuditAction::Login, Outcome::Success));
    assert!(has(
        &appliance,
        AuditAction::TenantCreated,
        Outcome::Success
    ));
    assert!(has(
        &tenant_entries,
        AuditAction::UserCreated,
        Outcome::Success
    ));
    assert!(has(
        &tenant_entries,
        AuditAction::LoginFailed,
        Outcome::Failure
    ));
    assert!(has(&tenant_entries, AuditAction::Login, Outcome::Success));
    assert!(has(
        &tenant_entries,
        AuditAction::PasswordChanged,
        Outcome::Success
    ));
    assert!(has(
        &tenant_entries,
        AuditAction::UserRoleChanged,
        Outcome::Success
    ));
    assert!(has(
        &tenant_entries,
        AuditAction::UserDisabled,
        Outcome::Success
    ));
    assert!(
        has(
            &tenant_entries,
            AuditAction::PersonalDataRead,
            Outcome::Success
        ),
        "user list read not audited"
    );
    let login = tenant_entries
        .iter()
        .find(|e| e.event.action == AuditAction::Login)
        .unwrap();
    assert_eq!(login.event.actor.label, "admin@acme.example");
    assert_eq!(login.event.client.as_deref(), Some("127.0.0.1"));
    // No tenant entry leaks into the appliance view and vice versa.
    assert!(appliance.iter().all(|e| e.event.tenant.is_none()));
    assert!(tenant_entries
        .iter()
        .all(|e| e.event.tenant == Some(tenant.id)));

    // The operator's appliance-wide user list is recorded in the tenant's own log too.
    assert_eq!(
        app.get(&operator, "/admin/users").await.status(),
        StatusCode::OK
    );
    let latest = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 1)
        .unwrap();
    assert_eq!(latest[0].event.action, AuditAction::PersonalDataRead);
    assert_eq!(latest[0].event.actor.label, "op@example.com");

    // An auditor of the tenant reads the tenant's log, and that read is itself recorded.
    app.create_user("reader@acme.example", Role::Auditor, Some(&tenant));
    let reader = app.signed_in_client("reader@acme.example").await;
    let page = app
        .get(&reader, "/t/acme/audit")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("user.role_changed"));
    assert!(
        !page.contains("tenant.created"),
        "an appliance entry was shown to a tenant auditor"
    );
    let after = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 1)
        .unwrap();
    assert_eq!(after[0].event.action, AuditAction::PersonalDataRead);
    assert_eq!(after[0].event.target, "audit log");
    let total = app
        .context
        .audit_log
        .entries(AuditView::Appliance, None, 10_000)
        .unwrap()
        .len()
        + app
            .context
            .audit_log
            .entries(AuditView::Tenant(tenant.id), None, 10_000)
            .unwrap()
            .len();
    assert_eq!(
        app.context.audit_log.verify().unwrap().entries,
        total as u64
    );
}

#[test]
fn verify_passes_on_an_intact_log_and_names_the_entry_whose_bytes_were_altered() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config = config.to_str().unwrap();
    assert!(rapport(
        &["tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme"],
        None
    )
    .status
    .success());
    for index in 0..4 {
        let email = format!("user{index}@acme.example");
        let output = rapport(
            &[
                "user",
                "add",
                "--config",
                config,
                "--email",
                &email,
                "--role",
                "analyst",
                "--tenant",
                "acme",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        );
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let intact = rapport(&["audit", "verify", "--config", config], None);
    assert!(intact.status.success(), "{}", stderr(&intact));
    assert!(stdout(&intact).contains("5 entries"), "{}", stdout(&intact));

    let segment = files_under(&dir.path().join("data").join("audit"))
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Flip a byte inside the third entry's ciphertext (each frame: length, then body).
    let mut offset = 0usize;
    for _ in 0..2 {
        let length = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 4 + length;
    }
    let target = offset + 4 + 40 + 30;
    bytes[target] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let broken = rapport(&["audit", "verify", "--config", config], None);
    assert!(!broken.status.success());
    let message = stderr(&broken);
    assert!(message.contains("entry 3"), "{message}");
}

/// Appends made at the same time share fsyncs (group commit) and still form one intact chain:
/// every append gets its own sequence number, nothing is lost across a restart, and the chain
/// continues after it.
#[test]
fn concurrent_appends_share_fsyncs_and_keep_one_intact_chain() {
    use rapport::audit::{Actor, AuditEvent};

    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let before = {
        let context = crate::helpers::open_context(&config);
        context.audit_log.verify().unwrap().entries
    };
    let (writers, each) = (16usize, 40usize);
    let context = crate::helpers::open_context(&config);
    let mut seqs: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let context = &context;
                scope.spawn(move || {
                    (0..each)
                        .map(|index| {
                            context
                                .audit(AuditEvent::new(
                                    None,
                                    Actor::system(),
                                    AuditAction::PersonalDataRead,
                                    format!("writer {writer} entry {index}"),
                                ))
                                .unwrap()
                                .seq
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    seqs.sort_unstable();
    let total = (writers * each) as u64;
    assert_eq!(seqs, ((before + 1)..=(before + total)).collect::<Vec<_>>());
    assert!(
        context.audit_log.syncs() < total,
        "{} fsyncs for {total} overlapping appends",
        context.audit_log.syncs()
    );
    assert_eq!(context.audit_log.verify().unwrap().entries, before + total);
    drop(context);

    let reopened = crate::helpers::open_context(&config);
    assert_eq!(reopened.audit_log.verify().unwrap().entries, before + total);
    let next = reopened
        .audit(AuditEvent::new(
            None,
            Actor::system(),
            AuditAction::PersonalDataRead,
            "after the restart",
        ))
        .unwrap();
    assert_eq!(next.seq, before + total + 1);
    assert_eq!(
        reopened.audit_log.verify().unwrap().entries,
        before + total + 1
    );
}

/// Pruning deletes whole expired segments from the start of the log, stops at the first segment
/// holding an entry that must be kept (a tenant keeping its audit log for its life, or under a
/// legal hold), and leaves one chain that verifies from its new start: after a restart, in a
/// backup restored elsewhere, and with a file a crash left behind. Removing a kept segment is
/// still detected.
#[test]
fn pruning_deletes_expired_segments_and_the_kept_chain_still_verifies() {
    use chrono::{Duration, Utc};
    use rapport::audit::{Actor, AuditEvent};
    use rapport::retention::{audit_log, holds, policies, save_policies, Category, Keep};

    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let context = crate::helpers::open_context(&config);
    let note = |context: &rapport::context::AppContext, tenant, text: &str| {
        context
            .audit(AuditEvent::new(
                tenant,
                Actor::system(),
                AuditAction::PersonalDataRead,
                text,
            ))
            .unwrap()
            .seq
    };
    // Segment 1: the instance's set-up and a tenant keeping its audit log 365 days.
    let short =
        rapport::tenants::create_tenant(&context, Actor::cli(), None, "short", "Short").unwrap();
    note(&context, Some(short.id), "short, first segment");
    context.audit_log.rotate().unwrap();
    // Segment 2: that tenant's and the appliance's entries only.
    let second_start = note(&context, Some(short.id), "short, second segment");
    note(&context, None, "appliance, second segment");
    context.audit_log.rotate().unwrap();
    let through_second = context.audit_log.verify().unwrap().entries;
    // Segment 3: a tenant that keeps its audit log for its life.
    let keeper =
        rapport::tenants::create_tenant(&context, Actor::cli(), None, "keeper", "Keeper").unwrap();
    let mut forever = policies(&context, keeper.id).unwrap();
    forever.set(Category::AuditLog, Keep::Forever);
    save_policies(&context, &Actor::cli(), None, keeper.id, &forever).unwrap();
    note(&context, Some(keeper.id), "keeper, third segment");
    context.audit_log.rotate().unwrap();
    // Segment 4, the open one.
    note(&context, Some(short.id), "short, fourth segment");
    let segment = |number: u32| {
        dir.path()
            .join("data/audit")
            .join(format!("segment-{number:08}.log"))
    };
    assert!((1..=4).all(|number| segment(number).exists()));
    let total = context.audit_log.verify().unwrap().entries;

    // Ten days on, nothing has expired; the open segment is over a week old and is closed.
    let outcome =
        audit_log::prune(&context, &Actor::cli(), Utc::now() + Duration::days(10)).unwrap();
    assert!(outcome.rotated);
    assert_eq!(outcome.pruned.segments, 0);
    assert!(segment(1).exists());

    // 400 days on, segments 1 and 2 have expired; segment 3 holds the keeper's entries, so it and
    // everything after it stay.
    let outcome =
        audit_log::prune(&context, &Actor::cli(), Utc::now() + Duration::days(400)).unwrap();
    assert_eq!(outcome.pruned.segments, 2, "{outcome:?}");
    assert_eq!(outcome.pruned.entries, through_second);
    assert_eq!(outcome.pruned.first_kept, Some(through_second + 1));
    assert!(!segment(1).exists() && !segment(2).exists() && segment(3).exists());
    assert!(second_start <= through_second);
    let report = context.audit_log.verify().unwrap();
    assert_eq!(report.first, through_second + 1);
    // The kept entries, and the pruning's own entry in a new segment.
    assert_eq!(report.entries, total - through_second + 1);
    let kept = context
        .audit_log
        .entries(AuditView::Tenant(short.id), None, 100)
        .unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].event.target, "short, fourth segment");
    let appliance = context
        .audit_log
        .entries(AuditView::Appliance, None, 1)
        .unwrap();
    assert_eq!(appliance[0].event.action, AuditAction::AuditPruned);
    assert!(
        appliance[0].event.target.contains("2 segment(s)")
            && appliance[0]
                .event
                .target
                .contains(&format!("starts at entry {}", through_second + 1)),
        "{}",
        appliance[0].event.target
    );

    // A legal hold keeps a tenant's entries although its period has passed.
    let mut yearly = policies(&context, keeper.id).unwrap();
    yearly.set(Category::AuditLog, Keep::Days(365));
    save_policies(&context, &Actor::cli(), None, keeper.id, &yearly).unwrap();
    let hold = holds::create(
        &context,
        &Actor::cli(),
        None,
        keeper.id,
        &holds::NewHold {
            kind: "tenant".to_owned(),
            reason: "matter 12".to_owned(),
            owner: "legal".to_owned(),
            ..holds::NewHold::default()
        },
    )
    .unwrap();
    context.audit_log.rotate().unwrap();
    note(&context, None, "appliance, after the hold");
    let outcome =
        audit_log::prune(&context, &Actor::cli(), Utc::now() + Duration::days(800)).unwrap();
    assert_eq!(outcome.pruned.segments, 0, "{outcome:?}");
    holds::release(&context, &Actor::cli(), None, keeper.id, hold.id).unwrap();
    let outcome =
        audit_log::prune(&context, &Actor::cli(), Utc::now() + Duration::days(800)).unwrap();
    assert!(outcome.pruned.segments >= 2, "{outcome:?}");
    assert!(!segment(3).exists());
    let first = context.audit_log.verify().unwrap().first;
    drop(context);

    // A file that a crash left behind after the anchor was stored is skipped, then deleted.
    std::fs::write(segment(1), b"left over").unwrap();
    let verified = rapport(
        &["audit", "verify", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains(&format!("from entry {first}")),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let pruned = rapport(
        &["audit", "prune", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(!segment(1).exists());

    // A backup of the pruned log restores, and the restored chain verifies from the same start.
    let backup = dir.path().join("pruned.rbk");
    let taken = crate::backup::backup_cli(config.to_str().unwrap(), &backup);
    assert!(taken.status.success(), "{}", stderr(&taken));
    let restored_dir = dir.path().join("restored");
    let restored = crate::backup::restore_cli(config.to_str().unwrap(), &backup, &restored_dir);
    assert!(restored.status.success(), "{}", stderr(&restored));

    // Removing a kept segment is still found.
    let kept_segments: Vec<_> = std::fs::read_dir(dir.path().join("data/audit"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    let oldest = kept_segments.iter().min().unwrap();
    std::fs::remove_file(oldest).unwrap();
    let broken = rapport(
        &["audit", "verify", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("audit log is broken at entry"),
        "{}",
        stderr(&broken)
    );
}
