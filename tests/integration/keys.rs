//! Key rotation through the real binary: `rapport keys rotate-master` (every tenant still opens,
//! the old key no longer does, an interrupted rotation is reported and finished) and
//! `rapport keys rotate-tenant` (every value re-sealed, resumable, old key retired), both audited.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rapport::audit::{AuditAction, AuditView};
use rapport::config::Config;
use rapport::context::{AppContext, ContextError};
use rapport::store::{keys::pending_path, MasterKey, OpenMode, Scope, StoreError};

use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn run_ok(args: &[&str]) -> std::process::Output {
    let output = rapport(args, None);
    assert!(
        output.status.success(),
        "rapport {args:?} failed:\n{}",
        stderr(&output)
    );
    output
}

/// An instance with tenants `acme` and `globex`, each holding the interactions fixture and
/// `acme` the accounts and contacts too.
fn instance_with_data(dir: &Path) -> String {
    let config = cli_instance(dir, free_port());
    let config = config.to_str().unwrap().to_owned();
    for slug in ["acme", "globex"] {
        run_ok(&[
            "tenant", "create", "--config", &config, "--slug", slug, "--name", slug,
        ]);
        run_ok(&[
            "import",
            "--config",
            &config,
            "--tenant",
            slug,
            "--format",
            "jsonl",
            fixture("interactions.jsonl").to_str().unwrap(),
        ]);
    }
    for (format, file) in [("accounts", "accounts.csv"), ("contacts", "contacts.csv")] {
        run_ok(&[
            "import",
            "--config",
            &config,
            "--tenant",
            "acme",
            "--format",
            format,
            fixture(file).to_str().unwrap(),
        ]);
    }
    config
}

fn export(config: &str, slug: &str) -> String {
    let output = run_ok(&[
        "export", "--config", config, "--tenant", slug, "--format", "jsonl",
    ]);
    let text = stdout(&output);
    assert!(
        text.lines().count() >= 6,
        "export of {slug} too short:\n{text}"
    );
    text
}

fn open(config: &str) -> AppContext {
    AppContext::open(
        Config::load(Path::new(config)).unwrap(),
        OpenMode::ExistingOnly,
    )
    .unwrap()
}

fn key_file(config: &str) -> PathBuf {
    Config::load(Path::new(config))
        .unwrap()
        .storage
        .master_key_file
}

fn audit_targets(context: &AppContext, view: AuditView, action: AuditAction) -> Vec<String> {
    context
        .audit_log
        .entries(view, None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == action)
        .map(|entry| entry.event.target)
        .collect()
}

#[test]
fn master_rotation_keeps_every_tenant_readable_and_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = instance_with_data(dir.path());
    let before_acme = export(&config, "acme");
    let before_globex = export(&config, "globex");
    let key_path = key_file(&config);
    let old_key = std::fs::read(&key_path).unwrap();
    let old_fingerprint = MasterKey::load_file(&key_path).unwrap().fingerprint_hex();

    let output = run_ok(&["keys", "rotate-master", "--config", &config]);
    let printed = stdout(&output);
    assert!(printed.contains("master key rotated"), "{printed}");

    let new_key = std::fs::read(&key_path).unwrap();
    assert_eq!(new_key.len(), 32);
    assert_ne!(new_key, old_key);
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!pending_path(&key_path).exists());
    assert!(!dir.path().join("master.key.old").exists());

    // Every tenant still opens and reads its records.
    assert_eq!(export(&config, "acme"), before_acme);
    assert_eq!(export(&config, "globex"), before_globex);
    let check = rapport(&["check", "--config", &config], None);
    assert!(check.status.success(), "{}", stderr(&check));

    // The old key opens nothing any more, and says so clearly.
    let old_path = dir.path().join("old.key");
    std::fs::write(&old_path, &old_key).unwrap();
    std::fs::set_permissions(&old_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut with_old = Config::load(Path::new(&config)).unwrap();
    with_old.storage.master_key_file.clone_from(&old_path);
    match AppContext::open(with_old, OpenMode::ExistingOnly) {
        Err(ContextError::Store(error @ StoreError::WrongMasterKey { .. })) => {
            let message = error.to_string();
            assert!(message.contains("does not match the database"), "{message}");
            assert!(message.contains("old.key"), "{message}");
        }
        Err(other) => panic!("unexpected error with the old key: {other}"),
        Ok(_) => panic!("the old master key still opens the database"),
    }

    // Audited on the appliance log with fingerprints only.
    let context = open(&config);
    let targets = audit_targets(
        &context,
        AuditView::Appliance,
        AuditAction::KeysMasterRotated,
    );
    assert_eq!(targets.len(), 1, "{targets:?}");
    let new_fingerprint = MasterKey::load_file(&key_path).unwrap().fingerprint_hex();
    assert!(targets[0].contains(&old_fingerprint), "{}", targets[0]);
    assert!(targets[0].contains(&new_fingerprint), "{}", targets[0]);
    assert!(
        !targets[0].contains(&hex::encode(&new_key)),
        "{}",
        targets[0]
    );
    assert!(
        !targets[0].contains(&hex::encode(&old_key)),
        "{}",
        targets[0]
    );
}

#[test]
fn master_rotation_takes_a_given_key_and_keeps_the_old_one_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = instance_with_data(dir.path());
    let before = export(&config, "acme");
    let key_path = key_file(&config);
    let old_key = std::fs::read(&key_path).unwrap();
    let given = dir.path().join("given.key");
    let given_bytes = [7u8; 32];
    std::fs::write(&given, given_bytes).unwrap();
    std::fs::set_permissions(&given, std::fs::Permissions::from_mode(0o600)).unwrap();

    run_ok(&[
        "keys",
        "rotate-master",
        "--config",
        &config,
        "--new-key-file",
        given.to_str().unwrap(),
        "--keep-old",
    ]);
    assert_eq!(std::fs::read(&key_path).unwrap(), given_bytes);
    let old_copy = PathBuf::from(format!("{}.old", key_path.display()));
    assert_eq!(std::fs::read(&old_copy).unwrap(), old_key);
    assert_eq!(
        std::fs::metadata(&old_copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(export(&config, "acme"), before);

    // The same key again is refused, and so is a second --keep-old over the first copy.
    let same = rapport(
        &[
            "keys",
            "rotate-master",
            "--config",
            &config,
            "--new-key-file",
            given.to_str().unwrap(),
        ],
        None,
    );
    assert!(!same.status.success());
    assert!(
        stderr(&same).contains("already in use"),
        "{}",
        stderr(&same)
    );
    let again = rapport(
        &["keys", "rotate-master", "--config", &config, "--keep-old"],
        None,
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&key_path).unwrap(), given_bytes);
}

#[test]
fn an_interrupted_master_rotation_is_reported_and_finished_and_a_running_server_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let config = instance_with_data(dir.path());
    let before = export(&config, "globex");
    let key_path = key_file(&config);
    let pending = pending_path(&key_path);

    // A run that stopped before its commit leaves a stale `.new`: the next run replaces it.
    MasterKey::generate(&key_path)
        .write_new_file(&pending)
        .unwrap();
    run_ok(&["keys", "rotate-master", "--config", &config]);
    assert!(!pending.exists());
    assert_eq!(export(&config, "globex"), before);

    // A run that stopped after its commit but before its rename: steps 1 and 2 by hand.
    {
        let context = open(&config);
        let new = MasterKey::generate(&key_path);
        new.write_new_file(&pending).unwrap();
        context.store.rotate_master(new).unwrap();
    }
    let check = rapport(&["check", "--config", &config], None);
    assert!(!check.status.success());
    let message = stderr(&check);
    assert!(message.contains("interrupted"), "{message}");
    assert!(message.contains("master.key.new"), "{message}");
    assert!(message.contains("rapport keys rotate-master"), "{message}");

    let output = run_ok(&["keys", "rotate-master", "--config", &config]);
    assert!(
        stdout(&output).contains("finished an interrupted"),
        "{}",
        stdout(&output)
    );
    assert!(!pending.exists());
    let check = rapport(&["check", "--config", &config], None);
    assert!(check.status.success(), "{}", stderr(&check));
    assert_eq!(export(&config, "globex"), before);
    let context = open(&config);
    assert_eq!(
        audit_targets(
            &context,
            AuditView::Appliance,
            AuditAction::KeysMasterRotated
        )
        .len(),
        2
    );

    // With the database held open (as a running server holds it), the command refuses.
    let key_before = std::fs::read(&key_path).unwrap();
    let refused = rapport(&["keys", "rotate-master", "--config", &config], None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("stop the service first"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before);
    assert!(!pending.exists());
    drop(context);
}

#[test]
fn tenant_rotation_reseals_every_value_resumes_and_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = instance_with_data(dir.path());
    let before = export(&config, "acme");
    let before_globex = export(&config, "globex");
    let (acme, globex, old_key, total, globex_usage) = {
        let context = open(&config);
        let acme = context.tenants.find_by_slug("acme").unwrap().unwrap().id;
        let globex = context.tenants.find_by_slug("globex").unwrap().unwrap().id;
        let usage = context.store.data_key_usage(Scope::Tenant(acme)).unwrap();
        assert!(usage.older.is_empty());
        let total = usage.count(usage.current);
        assert!(total > 20, "too few values to test batches: {total}");
        assert_eq!(usage.values.len(), 1);
        let globex_usage = context.store.data_key_usage(Scope::Tenant(globex)).unwrap();
        (acme, globex, usage.current, total, globex_usage)
    };

    // A run cut short after 5 records.
    let output = run_ok(&[
        "keys",
        "rotate-tenant",
        "--config",
        &config,
        "--tenant",
        "acme",
        "--max-records",
        "5",
    ]);
    assert!(
        stderr(&output).contains(&format!("re-sealed 5/{total} records")),
        "{}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("run the command again"),
        "{}",
        stdout(&output)
    );
    let new_key = {
        let context = open(&config);
        let usage = context.store.data_key_usage(Scope::Tenant(acme)).unwrap();
        assert_ne!(usage.current, old_key);
        assert_eq!(usage.older, vec![old_key]);
        assert_eq!(usage.count(old_key), total - 5);
        assert_eq!(usage.count(usage.current), 5);
        usage.current
    };
    // Half-rotated, every record still reads.
    assert_eq!(export(&config, "acme"), before);

    // The next run resumes with the same new key and finishes.
    let output = run_ok(&[
        "keys",
        "rotate-tenant",
        "--config",
        &config,
        "--tenant",
        "acme",
    ]);
    let printed = stdout(&output);
    assert!(printed.contains("1 older keys retired"), "{printed}");
    assert!(printed.contains(&new_key.to_string()), "{printed}");
    assert!(
        stderr(&output).contains(&format!("/{} records", total - 5)),
        "{}",
        stderr(&output)
    );
    {
        let context = open(&config);
        let usage = context.store.data_key_usage(Scope::Tenant(acme)).unwrap();
        assert_eq!(usage.current, new_key);
        assert!(usage.older.is_empty(), "old key not retired");
        assert_eq!(usage.count(old_key), 0);
        assert_eq!(usage.count(new_key), total);
        // A further pass finds nothing to do and changes nothing.
        let report = context
            .store
            .reseal_scope(Scope::Tenant(acme), None, |_| {})
            .unwrap();
        assert_eq!(report.resealed, 0);
        assert!(report.complete);
        assert!(context
            .store
            .retire_unused_data_keys(Scope::Tenant(acme))
            .unwrap()
            .is_empty());
        // The other tenant was not touched.
        let other = context.store.data_key_usage(Scope::Tenant(globex)).unwrap();
        assert_eq!(other.current, globex_usage.current);
        assert_eq!(other.values, globex_usage.values);

        let targets = audit_targets(
            &context,
            AuditView::Tenant(acme),
            AuditAction::KeysTenantRotated,
        );
        // Newest first: completed, resumed, started.
        assert_eq!(targets.len(), 3, "{targets:?}");
        assert!(targets[0].contains("completed"), "{targets:?}");
        assert!(targets[0].contains(&old_key.to_string()), "{targets:?}");
        assert!(targets[1].contains("resumed"), "{targets:?}");
        assert!(targets[2].contains("started"), "{targets:?}");
        assert!(audit_targets(
            &context,
            AuditView::Tenant(globex),
            AuditAction::KeysTenantRotated
        )
        .is_empty());
    }
    assert_eq!(export(&config, "acme"), before);
    assert_eq!(export(&config, "globex"), before_globex);

    let unknown = rapport(
        &[
            "keys",
            "rotate-tenant",
            "--config",
            &config,
            "--tenant",
            "nobody",
        ],
        None,
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no tenant with slug"),
        "{}",
        stderr(&unknown)
    );
}
