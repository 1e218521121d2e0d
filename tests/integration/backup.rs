//! Backups and restores: a backup taken through the running server's control socket while
//! writes go on restores every record acknowledged before it, each whole; a damaged, cut,
//! re-checksummed or foreign backup is refused and leaves nothing behind; `rapport backup`
//! reaches a running `rapport serve`; scheduled backups keep the newest `keep` files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rapport::audit::Actor;
use rapport::backup::{self, control, scheduled, BackupError};
use rapport::config::Config;
use rapport::ids::{RecordId, TenantId};
use rapport::interactions::InteractionRecord;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{
    cli_instance, free_port, open_context, rapport, serve, stderr, stdout, write_interaction,
};

fn chat(source_id: &str, text: &str) -> InteractionRecord {
    let at = chrono::Utc::now().to_rfc3339();
    serde_json::from_value(json!({
        "source_system": "desk", "source_id": source_id, "channel": "chat",
        "messages": [{"role": "customer", "author_name": "Ada", "sent_at": at, "text": text}]
    }))
    .unwrap()
}

fn text_of(record: &InteractionRecord) -> String {
    record.messages[0].text.clone()
}

/// `rapport backup --config CONFIG --out FILE`.
pub fn backup_cli(config: &str, file: &Path) -> Output {
    rapport(
        &[
            "backup",
            "--config",
            config,
            "--out",
            file.to_str().unwrap(),
        ],
        None,
    )
}

/// `rapport restore --config CONFIG --from FROM --data-dir TARGET`.
pub fn restore_cli(config: &str, from: &Path, target: &Path) -> Output {
    rapport(
        &[
            "restore",
            "--config",
            config,
            "--from",
            from.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ],
        None,
    )
}

/// A config file for the same appliance (same master key) with its data in `data_dir`.
fn config_for(config_path: &Path, data_dir: &Path, name: &str) -> PathBuf {
    let mut config = Config::load(config_path).unwrap();
    let live = config.storage.data_dir.clone();
    config.storage.data_dir = data_dir.to_path_buf();
    let text = std::fs::read_to_string(config_path)
        .unwrap()
        .replace(live.to_str().unwrap(), data_dir.to_str().unwrap());
    let path = config_path.with_file_name(name);
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        Config::load(&path).unwrap().storage.data_dir,
        config.storage.data_dir
    );
    path
}

#[test]
fn a_backup_taken_while_writes_go_on_restores_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = cli_instance(dir.path(), free_port());
    let context = Arc::new(open_context(&config_path));
    let tenant =
        rapport::tenants::create_tenant(&context, Actor::cli(), None, "acme", "Acme").unwrap();
    // Every version ever written of each record, in order, and what was acknowledged so far:
    // source id → (record id, index of its newest acknowledged version).
    let versions: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let acknowledged: Arc<Mutex<BTreeMap<String, (RecordId, usize)>>> = Arc::default();
    let write = {
        let (context, versions, acknowledged) =
            (context.clone(), versions.clone(), acknowledged.clone());
        move |source_id: String, text: String| {
            let index = {
                let mut versions = versions.lock().unwrap();
                let list = versions.entry(source_id.clone()).or_default();
                list.push(text.clone());
                list.len() - 1
            };
            let stored = write_interaction(&context, tenant.id, chat(&source_id, &text));
            acknowledged
                .lock()
                .unwrap()
                .insert(source_id, (stored.id, index));
        }
    };
    for n in 0..150 {
        write(format!("T-{n}"), format!("first version of ticket {n}"));
    }
    let server = control::spawn(context.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, write) = (stop.clone(), write.clone());
        std::thread::spawn(move || {
            let mut round = 0usize;
            while !stop.load(Ordering::SeqCst) {
                round += 1;
                // A new record, and a new version of an old one (pre-images in the snapshot).
                write(format!("N-{round}"), format!("new ticket {round}"));
                write(
                    format!("T-{}", round % 150),
                    format!("version {round} of ticket {}", round % 150),
                );
            }
            round
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let before_request = acknowledged.lock().unwrap().clone();
    let file = dir.path().join("online.backup");
    let mut out = std::fs::File::create(&file).unwrap();
    assert!(
        control::request_backup(&context.config.storage.data_dir, &mut out).unwrap(),
        "the control socket answered"
    );
    drop(out);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let rounds = writer.join().unwrap();
    server.stop();
    assert!(rounds > 5, "only {rounds} rounds of writes ran");
    let written_during = acknowledged.lock().unwrap().len() - before_request.len();
    assert!(written_during > 0, "writes went on around the backup");

    let target = dir.path().join("restored");
    let restored = backup::restore(&context.config, &file, &target, &mut |_| {}).unwrap();
    assert!(restored.audit_entries > 0);
    assert_eq!(restored.reapplied.records_deleted, 0);
    let restored_context = open_context(&config_for(&config_path, &target, "restored.toml"));
    let versions = versions.lock().unwrap().clone();
    // Every record acknowledged before the request is there, at that version or a later one.
    for (source_id, (id, acknowledged_version)) in &before_request {
        let stored = restored_context
            .interactions
            .get(tenant.id, *id)
            .unwrap()
            .unwrap_or_else(|| panic!("{source_id} was acknowledged before the backup"));
        let text = text_of(&stored.record);
        let position = versions[source_id]
            .iter()
            .position(|version| *version == text)
            .unwrap_or_else(|| panic!("{source_id} restored as {text:?}, never written"));
        assert!(
            position >= *acknowledged_version,
            "{source_id} went back from version {acknowledged_version} to {position}"
        );
    }
    // Nothing restored is torn or invented: each record is one version that was written.
    let ids = restored_context.interactions.ids(tenant.id).unwrap();
    assert!(ids.len() >= before_request.len());
    for id in ids {
        let stored = restored_context
            .interactions
            .get(tenant.id, id)
            .unwrap()
            .unwrap();
        let source_id = stored.record.source_id.clone();
        assert!(versions[&source_id].contains(&text_of(&stored.record)));
    }
    // The restored appliance goes on: new records get new ids, the old ones stay.
    let fresh = write_interaction(
        &restored_context,
        tenant.id,
        chat("after-restore", "written after the restore"),
    );
    assert!(!before_request.values().any(|(id, _)| *id == fresh.id));
    assert!(restored_context.audit_log.verify().is_ok());
}

/// Flips one byte of `bytes` at `at` and writes them to `path`; with `rechecksum`, the trailer's
/// SHA-256 is made to match again, so only the sealing can notice.
fn tampered(path: &Path, bytes: &[u8], at: usize, rechecksum: bool) {
    let mut bytes = bytes.to_vec();
    bytes[at] ^= 0x20;
    if rechecksum {
        let body = bytes.len() - 32;
        let digest = Sha256::digest(&bytes[..body - 16]);
        bytes[body..].copy_from_slice(&digest);
    }
    std::fs::write(path, bytes).unwrap();
}

/// One way of damaging the backup (it writes the damaged copy).
type Damage<'a> = Box<dyn Fn() + 'a>;

#[test]
fn a_damaged_cut_or_foreign_backup_is_refused_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = cli_instance(dir.path(), free_port());
    {
        let context = open_context(&config_path);
        let tenant =
            rapport::tenants::create_tenant(&context, Actor::cli(), None, "acme", "Acme").unwrap();
        for n in 0..50 {
            write_interaction(&context, tenant.id, chat(&format!("T-{n}"), "a ticket"));
        }
    }
    let config = config_path.to_str().unwrap();
    let file = dir.path().join("cold.backup");
    let made = backup_cli(config, &file);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(
        stdout(&made).contains("from the stopped database"),
        "{}",
        stdout(&made)
    );
    // A backup never replaces a file.
    let again = backup_cli(config, &file);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..14], b"RAPPORT-BACKUP");
    assert!(
        !bytes.windows(8).any(|window| window == b"a ticket"),
        "the backup is sealed"
    );

    let restore = |from: &Path, target: &Path, config: &str| restore_cli(config, from, target);
    let broken = dir.path().join("broken.backup");
    let target = dir.path().join("target");
    let cases: Vec<(&str, Damage<'_>)> = vec![
        (
            "its checksum does not match",
            Box::new(|| tampered(&broken, &bytes, bytes.len() / 2, false)),
        ),
        // A header byte: damage, not "another key".
        (
            "its checksum does not match",
            Box::new(|| tampered(&broken, &bytes, 40, false)),
        ),
        (
            "cut short",
            Box::new(|| std::fs::write(&broken, &bytes[..bytes.len() * 2 / 3]).unwrap()),
        ),
        // The checksum made to match: the sealed chunk itself refuses, mid-restore.
        (
            "altered",
            Box::new(|| tampered(&broken, &bytes, bytes.len() - 200, true)),
        ),
        (
            "is not a Rapport backup",
            Box::new(|| std::fs::write(&broken, b"id,text\n1,hello\n").unwrap()),
        ),
    ];
    for (expected, damage) in cases {
        damage();
        let refused = restore(&broken, &target, config);
        assert!(
            !refused.status.success(),
            "{expected}: {}",
            stdout(&refused)
        );
        assert!(
            stderr(&refused).contains(expected),
            "{expected}: {}",
            stderr(&refused)
        );
        assert!(
            !target.exists(),
            "{expected}: a refused restore left {target:?}"
        );
    }

    // Another appliance (its own master key) cannot restore it.
    let other = tempfile::tempdir().unwrap();
    let other_config = cli_instance(other.path(), free_port());
    let foreign = restore(
        &file,
        &other.path().join("target"),
        other_config.to_str().unwrap(),
    );
    assert!(!foreign.status.success());
    assert!(
        stderr(&foreign).contains("sealed under another master key"),
        "{}",
        stderr(&foreign)
    );

    // A directory that is not empty is refused, an empty one is used.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    let occupied = restore(&file, &target, config);
    assert!(
        stderr(&occupied).contains("is not empty"),
        "{}",
        stderr(&occupied)
    );
    assert_eq!(
        std::fs::read_to_string(target.join("keep.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_file(target.join("keep.txt")).unwrap();
    let restored = restore(&file, &target, config);
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert!(
        stdout(&restored).contains("audit entries verified"),
        "{}",
        stdout(&restored)
    );
    let context = open_context(&config_for(&config_path, &target, "restored.toml"));
    let tenant = context.tenants.find_by_slug("acme").unwrap().unwrap();
    assert_eq!(context.interactions.count(tenant.id).unwrap(), 50);

    // The library says the same as the command line.
    tampered(&broken, &bytes, bytes.len() / 2, false);
    let error = backup::restore(
        &context.config,
        &broken,
        &dir.path().join("t2"),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(error, BackupError::Damaged { .. }), "{error}");
}

fn tenant_named(context: &rapport::context::AppContext, slug: &str) -> TenantId {
    context.tenants.find_by_slug(slug).unwrap().unwrap().id
}

#[test]
fn rapport_backup_reaches_the_running_server_and_scheduled_backups_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = cli_instance(dir.path(), free_port());
    {
        let context = open_context(&config_path);
        let tenant =
            rapport::tenants::create_tenant(&context, Actor::cli(), None, "acme", "Acme").unwrap();
        write_interaction(
            &context,
            tenant.id,
            chat("T-1", "before the server started"),
        );
    }
    let config = config_path.to_str().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = serve(config);
    let started = Instant::now();
    while !control::socket_path(&data_dir).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no control socket"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let file = dir.path().join("online.backup");
    let made = backup_cli(config, &file);
    // The restore runs beside the live server: it never touches the live data directory.
    let target = dir.path().join("restored");
    let restored = restore_cli(config, &file, &target);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(
        stdout(&made).contains("online, from the running server"),
        "{}",
        stdout(&made)
    );
    assert!(restored.status.success(), "{}", stderr(&restored));
    let restored_config = config_for(&config_path, &target, "restored.toml");
    let verified = rapport(
        &[
            "audit",
            "verify",
            "--config",
            restored_config.to_str().unwrap(),
        ],
        None,
    );
    assert!(verified.status.success(), "{}", stderr(&verified));
    {
        let context = open_context(&restored_config);
        let tenant = tenant_named(&context, "acme");
        assert_eq!(context.interactions.count(tenant).unwrap(), 1);
        let actions: Vec<rapport::audit::AuditAction> = context
            .audit_log
            .entries(rapport::audit::AuditView::Appliance, None, 20)
            .unwrap()
            .into_iter()
            .map(|entry| entry.event.action)
            .collect();
        assert_eq!(actions[0], rapport::audit::AuditAction::BackupRestored);
    }

    // Scheduled backups: named by time, the newest `keep` kept, the age known to /metrics.
    let mut config = Config::load(&config_path).unwrap();
    config.backup.keep = 2;
    config.storage.min_free_disk_mib = 1;
    let context =
        rapport::context::AppContext::open(config, rapport::store::OpenMode::ExistingOnly).unwrap();
    let live_actions: Vec<rapport::audit::AuditAction> = context
        .audit_log
        .entries(rapport::audit::AuditView::Appliance, None, 5)
        .unwrap()
        .into_iter()
        .map(|entry| entry.event.action)
        .collect();
    assert_eq!(
        live_actions[0],
        rapport::audit::AuditAction::BackupCreated,
        "the server audited the backup it sent"
    );
    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(scheduled::write_to_directory(&context).unwrap().0);
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut kept: Vec<PathBuf> = std::fs::read_dir(data_dir.join("backups"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    kept.sort();
    assert_eq!(kept, written[1..], "the oldest was deleted");
    assert!(context.backups.age_seconds().is_some_and(|age| age < 60.0));
    let master = rapport::store::MasterKey::load(&context.config.storage.master_key_file).unwrap();
    for file in &kept {
        backup::verify(file, &master).unwrap();
    }
}
