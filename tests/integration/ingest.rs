//! Imports and exports through the command line: fixtures in, the same records out; malformed
//! files refused whole with line and field; `--skip-invalid`; idempotent re-imports; round trips
//! between tenants; no plaintext on disk; an import killed midway leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{cli_instance, files_under, free_port, rapport, stderr, stdout};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

struct Instance {
    _dir: tempfile::TempDir,
    config: String,
    root: PathBuf,
}

fn instance_with_tenants(slugs: &[&str]) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port())
        .to_str()
        .unwrap()
        .to_owned();
    for slug in slugs {
        let created = rapport(
            &[
                "tenant", "create", "--config", &config, "--slug", slug, "--name", slug,
            ],
            None,
        );
        assert!(created.status.success(), "{}", stderr(&created));
    }
    Instance {
        root: dir.path().to_path_buf(),
        _dir: dir,
        config,
    }
}

impl Instance {
    fn import(&self, tenant: &str, file: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "import",
            "--config",
            &self.config,
            "--tenant",
            tenant,
            "--format",
            "jsonl",
        ];
        args.extend_from_slice(extra);
        let file = file.to_str().unwrap();
        args.push(file);
        rapport(&args, None)
    }

    /// The tenant's export, one JSON value per interaction, sorted by source id.
    fn export(&self, tenant: &str) -> Vec<Value> {
        let output = rapport(
            &[
                "export",
                "--config",
                &self.config,
                "--tenant",
                tenant,
                "--format",
                "jsonl",
            ],
            None,
        );
        assert!(output.status.success(), "{}", stderr(&output));
        sorted(&stdout(&output))
    }
}

fn sorted(jsonl: &str) -> Vec<Value> {
    let mut values: Vec<Value> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    values.sort_by_key(|value| value["source_id"].as_str().unwrap().to_owned());
    values
}

#[test]
fn the_fixture_imports_whole_and_the_export_returns_exactly_it() {
    let instance = instance_with_tenants(&["acme"]);
    let output = instance.import("acme", &fixture("interactions.jsonl"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "imported 6, updated 0, rejected 0");
    let expected = sorted(&std::fs::read_to_string(fixture("interactions.jsonl")).unwrap());
    assert_eq!(instance.export("acme"), expected);
}

#[test]
fn a_malformed_file_is_refused_whole_naming_each_line_and_field() {
    let instance = instance_with_tenants(&["acme"]);
    let output = instance.import("acme", &fixture("interactions-with-errors.jsonl"), &[]);
    assert!(!output.status.success());
    let errors = stderr(&output);
    assert!(
        errors.contains("rejected: line 4, field messages[1].sent_at:"),
        "{errors}"
    );
    assert!(
        errors.contains("rejected: line 6, field channel:"),
        "{errors}"
    );
    assert!(
        errors.contains("nothing was imported: 2 invalid record(s)"),
        "{errors}"
    );
    assert!(
        !errors.contains("5 October, morning"),
        "a rejected value was echoed: {errors}"
    );
    assert_eq!(stdout(&output).trim(), "imported 0, updated 0, rejected 2");
    assert!(
        instance.export("acme").is_empty(),
        "a refused import wrote something"
    );
}

#[test]
fn skip_invalid_commits_exactly_the_valid_records() {
    let instance = instance_with_tenants(&["acme"]);
    let output = instance.import(
        "acme",
        &fixture("interactions-with-errors.jsonl"),
        &["--skip-invalid"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "imported 4, updated 0, rejected 2");
    let ids: Vec<String> = instance
        .export("acme")
        .iter()
        .map(|v| v["source_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "<CAF1x9@mail.contoso.example>",
            "C-88231",
            "S-4410",
            "T-1001"
        ]
    );
}

#[test]
fn reimporting_updates_and_never_duplicates() {
    let instance = instance_with_tenants(&["acme"]);
    assert!(instance
        .import("acme", &fixture("interactions.jsonl"), &[])
        .status
        .success());
    let again = instance.import("acme", &fixture("interactions.jsonl"), &[]);
    assert_eq!(stdout(&again).trim(), "imported 0, updated 6, rejected 0");
    assert_eq!(instance.export("acme").len(), 6);

    let changed = std::fs::read_to_string(fixture("interactions.jsonl"))
        .unwrap()
        .replace(r#""source_id": "C-88231", "channel": "chat", "subject": "Export to CSV is empty", "status": "open""#,
                 r#""source_id": "C-88231", "channel": "chat", "subject": "Export to CSV is empty", "status": "solved""#);
    let path = instance.root.join("changed.jsonl");
    std::fs::write(&path, changed).unwrap();
    let third = instance.import("acme", &path, &[]);
    assert_eq!(stdout(&third).trim(), "imported 0, updated 6, rejected 0");
    let exported = instance.export("acme");
    let chat = exported
        .iter()
        .find(|v| v["source_id"] == "C-88231")
        .unwrap();
    assert_eq!(chat["status"], "solved");
}

#[test]
fn an_export_imported_into_a_fresh_tenant_reproduces_it() {
    let instance = instance_with_tenants(&["acme", "fresh"]);
    assert!(instance
        .import("acme", &fixture("interactions.jsonl"), &[])
        .status
        .success());
    let exported = instance.root.join("acme.jsonl");
    let output = rapport(
        &[
            "export",
            "--config",
            &instance.config,
            "--tenant",
            "acme",
            "--format",
            "jsonl",
            "--out",
            exported.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("exported 6 interaction(s)"));
    assert_eq!(
        std::fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let refused = rapport(
        &[
            "export",
            "--config",
            &instance.config,
            "--tenant",
            "acme",
            "--format",
            "jsonl",
            "--out",
            exported.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        !refused.status.success(),
        "an export overwrote an existing file"
    );

    assert!(instance.import("fresh", &exported, &[]).status.success());
    assert_eq!(instance.export("fresh"), instance.export("acme"));
}

#[test]
fn imported_text_never_reaches_the_disk_in_plaintext() {
    let instance = instance_with_tenants(&["acme"]);
    let sentinel = format!("qx{}z", ulid::Ulid::new().to_string().to_lowercase());
    let record = serde_json::json!({
        "source_system": "helpdesk", "source_id": format!("S-{sentinel}"), "channel": "ticket",
        "subject": format!("Subject {sentinel}"), "tags": [sentinel.clone()],
        "messages": [{"role": "customer", "author_name": format!("Name {sentinel}"),
                      "author_email": format!("{sentinel}@example.com"),
                      "sent_at": "2026-10-01T08:00:00Z", "text": format!("Body {sentinel} text")}]
    });
    let path = instance.root.join("sentinel.jsonl");
    std::fs::write(&path, format!("{record}\n")).unwrap();
    let output = instance.import("acme", &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::remove_file(&path).unwrap();
    assert_eq!(instance.export("acme").len(), 1);
    for file in files_under(&instance.root) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(sentinel.len())
                .any(|w| w == sentinel.as_bytes()),
            "plaintext sentinel found in {}",
            file.display()
        );
    }
}

/// Records in the file that the kill test imports: enough that writing takes a few seconds.
const RECORDS: usize = 20_000;

/// A file large enough that writing it takes a while in a debug build.
fn large_file(path: &Path, records: usize) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for index in 0..records {
        let record = serde_json::json!({
            "source_system": "bulk", "source_id": format!("B-{index}"), "channel": "chat",
            "messages": [
                {"role": "customer", "sent_at": "2026-10-01T08:00:00Z", "text": "My parcel has not arrived yet, can you check the tracking?"},
                {"role": "agent", "sent_at": "2026-10-01T08:05:00Z", "text": "Of course. It left our warehouse yesterday and should arrive tomorrow."}
            ]
        });
        writeln!(out, "{record}").unwrap();
    }
}

#[test]
fn an_import_killed_midway_is_rolled_back_when_the_database_next_opens() {
    let instance = instance_with_tenants(&["acme"]);
    let path = instance.root.join("large.jsonl");
    large_file(&path, RECORDS);

    let mut saw_rollback = false;
    for delay_ms in [1500u64, 2500, 1000, 4000, 700, 6000] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args([
                "import",
                "--config",
                &instance.config,
                "--tenant",
                "acme",
                "--format",
                "jsonl",
                path.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();

        // Opening the database undoes the cut-off import: all or nothing, never a part.
        let count = instance.export("acme").len();
        if finished {
            assert_eq!(count, RECORDS);
            break;
        }
        assert!(
            count == 0 || count == RECORDS,
            "a killed import left {count} of {RECORDS} records"
        );
        let history = rapport(&["audit", "verify", "--config", &instance.config], None);
        assert!(history.status.success(), "{}", stderr(&history));
        if count == 0 {
            saw_rollback |= rolled_back_imports(&instance) > 0;
        }
        if saw_rollback {
            break;
        }
    }
    assert!(
        saw_rollback,
        "no attempt was cut off while writing; the test did not exercise recovery"
    );
}

fn rolled_back_imports(instance: &Instance) -> usize {
    let config = rapport::config::Config::load(Path::new(&instance.config)).unwrap();
    let context =
        rapport::context::AppContext::open(config, rapport::store::OpenMode::ExistingOnly).unwrap();
    let tenant = context.tenants.find_by_slug("acme").unwrap().unwrap();
    rapport::ingest::history(&context, tenant.id)
        .unwrap()
        .iter()
        .filter(|run| run.state == rapport::ingest::ImportState::RolledBack)
        .count()
}

/// Serves a file whole on the first read (validation) and cut short on the second (writing), as
/// a file replaced during an import would be.
struct ShrinkingSource {
    whole: PathBuf,
    short: PathBuf,
    opened: std::cell::Cell<u32>,
}

impl rapport::ingest::ImportSource for ShrinkingSource {
    fn open(&self) -> std::io::Result<(Box<dyn std::io::Read>, u64)> {
        let count = self.opened.get();
        self.opened.set(count + 1);
        let path = if count == 0 { &self.whole } else { &self.short };
        let file = std::fs::File::open(path)?;
        let length = file.metadata()?.len();
        Ok((Box::new(file), length))
    }
}

#[test]
fn a_rolled_back_import_keeps_a_write_made_meanwhile_and_removes_only_its_own() {
    let instance = instance_with_tenants(&["acme"]);
    let whole = instance.root.join("whole.jsonl");
    let short = instance.root.join("short.jsonl");
    large_file(&whole, 5000);
    large_file(&short, 4999);
    let config = rapport::config::Config::load(Path::new(&instance.config)).unwrap();
    let context =
        rapport::context::AppContext::open(config, rapport::store::OpenMode::ExistingOnly).unwrap();
    let tenant = context.tenants.find_by_slug("acme").unwrap().unwrap();
    let key = |id: &str| format!("bulk\u{0}{id}");
    let actor = rapport::audit::Actor::cli();
    let request = rapport::ingest::ImportRequest {
        actor: &actor,
        tenant: &tenant,
        format: rapport::ingest::ImportFormat::Jsonl,
        path: &whole,
        skip_invalid: false,
    };
    let source = ShrinkingSource {
        whole: whole.clone(),
        short,
        opened: std::cell::Cell::new(0),
    };
    // Once the first batch (2,000 records) is committed, an API client updates one of them.
    let mut api_version = None;
    let mut progress = |progress: rapport::ingest::Progress| {
        if progress.pass == 2 && progress.records == 3000 && api_version.is_none() {
            let mut record = context
                .interactions
                .find_by_source(tenant.id, &key("B-5"))
                .unwrap()
                .expect("the first batch is committed")
                .record;
            record.subject = Some("Changed through the API".to_owned());
            api_version = Some(context.interactions.upsert(tenant.id, record).unwrap().0);
        }
    };
    let outcome = rapport::ingest::import_from_source(
        &context,
        &request,
        &source,
        rapport::ids::ImportId::new(),
        &mut progress,
    );
    assert!(outcome.is_err(), "a file that changed must fail the import");
    let kept = context
        .interactions
        .find_by_source(tenant.id, &key("B-5"))
        .unwrap()
        .expect("the API's write survives the rollback");
    assert_eq!(Some(kept), api_version);
    for gone in ["B-4", "B-6", "B-2500"] {
        assert!(
            context
                .interactions
                .find_by_source(tenant.id, &key(gone))
                .unwrap()
                .is_none(),
            "{gone} was written by the import and must be rolled back"
        );
    }
    assert_eq!(context.interactions.count(tenant.id).unwrap(), 1);
}
