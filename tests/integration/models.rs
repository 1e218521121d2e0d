//! The operator's model catalogue: `rapport model list|approve|revoke` and the `/admin/models`
//! page. The default model is the real one in the model cache (`scripts/fetch-model.sh`); other
//! models are tiny GGUF headers written here, which the safe header reader accepts.

use std::path::{Path, PathBuf};

use rapport::audit::{Actor, AuditAction, AuditEntry, AuditView};
use rapport::config::Config;
use rapport::context::AppContext;
use rapport::inference::models::{self, ModelError, DEFAULT_MODEL_SHA256};
use rapport::inference::settings::{self, AnalysisChoice};
use rapport::inference::store::ModelApprovals;
use rapport::inference::InferenceError;
use rapport::store::OpenMode;
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{cli_instance, free_port, location, rapport, stderr, stdout, TestApp};

fn push_string(bytes: &mut Vec<u8>, text: &str) {
    bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
}

/// A valid GGUF header (version 3): an architecture, a file type, a context length and one
/// tensor of `elements` elements; no weights. `elements` makes digests differ.
fn write_gguf(path: &Path, architecture: &str, elements: u64) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3_u32.to_le_bytes());
    bytes.extend_from_slice(&1_u64.to_le_bytes());
    bytes.extend_from_slice(&3_u64.to_le_bytes());
    push_string(&mut bytes, "general.architecture");
    bytes.extend_from_slice(&8_u32.to_le_bytes());
    push_string(&mut bytes, architecture);
    push_string(&mut bytes, "general.file_type");
    bytes.extend_from_slice(&4_u32.to_le_bytes());
    bytes.extend_from_slice(&7_u32.to_le_bytes());
    push_string(&mut bytes, &format!("{architecture}.context_length"));
    bytes.extend_from_slice(&4_u32.to_le_bytes());
    bytes.extend_from_slice(&2048_u32.to_le_bytes());
    push_string(&mut bytes, "token_embd.weight");
    bytes.extend_from_slice(&1_u32.to_le_bytes());
    bytes.extend_from_slice(&elements.to_le_bytes());
    bytes.extend_from_slice(&0_u32.to_le_bytes());
    bytes.extend_from_slice(&0_u64.to_le_bytes());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

fn open_context(config_path: &Path) -> AppContext {
    let mut config = Config::load(config_path).unwrap();
    config.storage.min_free_disk_mib = 1;
    AppContext::open(config, OpenMode::ExistingOnly).unwrap()
}

fn appliance_entries(context: &AppContext) -> Vec<AuditEntry> {
    context
        .audit_log
        .entries(AuditView::Appliance, None, 10_000)
        .unwrap()
}

/// The line of `rapport model list` that names `needle`.
fn line_with<'t>(text: &'t str, needle: &str) -> &'t str {
    text.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle} in:\n{text}"))
}

fn use_local_model(context: &AppContext, slug: &str, sha256: &str) {
    let tenant = context.tenants.find_by_slug(slug).unwrap().unwrap();
    settings::choose_backend(
        context,
        Actor::cli(),
        None,
        &tenant,
        &AnalysisChoice {
            backend: "local".to_owned(),
            model_sha256: sha256.to_owned(),
            ..AnalysisChoice::default()
        },
    )
    .unwrap();
}

#[test]
fn the_command_line_lists_approves_and_revokes_models() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = cli_instance(dir.path(), free_port());
    let config = config_path.to_str().unwrap();
    let output = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let models_dir = dir.path().join("data").join("models");
    let installed = models_dir.join("small-llama.gguf");
    write_gguf(&installed, "llama", 1000);
    let installed_sha = models::sha256_file(&installed).unwrap();
    // The same file twice: both paths are listed.
    std::fs::copy(&installed, models_dir.join("small-llama-copy.gguf")).unwrap();
    std::fs::write(models_dir.join("broken.gguf"), "not a model at all").unwrap();

    // The default model is approved, and the tenant without settings uses it.
    let output = rapport(&["model", "list", "--config", config], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let listed = stdout(&output);
    let default_line = line_with(&listed, DEFAULT_MODEL_SHA256);
    assert!(default_line.contains("gemma3"), "{default_line}");
    assert!(default_line.contains("Q4_K_M"), "{default_line}");
    assert!(default_line.contains(" default "), "{default_line}");
    assert!(default_line.contains("acme"), "{default_line}");
    let small_line = line_with(&listed, "small-llama.gguf");
    assert!(small_line.contains(&installed_sha), "{small_line}");
    assert!(small_line.contains("not approved"), "{small_line}");
    assert!(small_line.contains("2048"), "{small_line}");
    assert!(
        listed.contains(&format!(
            "same sha256: {} is also at {}",
            installed.display(),
            models_dir.join("small-llama-copy.gguf").display()
        )),
        "{listed}"
    );
    let broken_line = line_with(&listed, "unreadable:");
    assert!(
        broken_line.contains("broken.gguf") && broken_line.contains("not a GGUF file"),
        "{broken_line}"
    );

    // Approve by digest (a file in the model directories).
    let output = rapport(
        &[
            "model",
            "approve",
            "--config",
            config,
            "--sha256",
            &installed_sha,
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("approved model sha256 {installed_sha}")),
        "{}",
        stdout(&output)
    );

    // Approve by file, anywhere.
    let elsewhere = dir.path().join("incoming").join("crafted.gguf");
    write_gguf(&elsewhere, "qwen2", 2000);
    let crafted_sha = models::sha256_file(&elsewhere).unwrap();
    let output = rapport(
        &[
            "model",
            "approve",
            "--config",
            config,
            "--file",
            elsewhere.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    // A file that is not GGUF is refused, and nothing is approved.
    let notes = dir.path().join("incoming").join("notes.gguf");
    std::fs::write(&notes, "these are not model weights\n").unwrap();
    let notes_sha = models::sha256_file(&notes).unwrap();
    let output = rapport(
        &[
            "model",
            "approve",
            "--config",
            config,
            "--file",
            notes.to_str().unwrap(),
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not a GGUF file") && stderr(&output).contains("notes.gguf"),
        "{}",
        stderr(&output)
    );

    // A digest of no installed file is refused too.
    let output = rapport(
        &[
            "model", "approve", "--config", config, "--sha256", &notes_sha,
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no model file with sha256"),
        "{}",
        stderr(&output)
    );

    // Both approvals are recorded and audited by the command line.
    {
        let context = open_context(&config_path);
        let approved = ModelApprovals::new(context.store.clone())
            .approved_digests()
            .unwrap();
        assert!(approved.contains(&installed_sha), "{approved:?}");
        assert!(approved.contains(&crafted_sha), "{approved:?}");
        assert!(!approved.contains(&notes_sha), "{approved:?}");
        let entries = appliance_entries(&context);
        for sha in [&installed_sha, &crafted_sha] {
            let entry = entries
                .iter()
                .find(|entry| {
                    entry.event.action == AuditAction::ModelApproved
                        && entry.event.target.contains(sha.as_str())
                })
                .unwrap_or_else(|| panic!("no model.approved entry for {sha}"));
            assert_eq!(entry.event.actor, Actor::cli());
        }
        // The tenant now uses the installed small model.
        use_local_model(&context, "acme", &installed_sha);
    }

    let output = rapport(&["model", "list", "--config", config], None);
    let listed = stdout(&output);
    let small_line = line_with(&listed, "small-llama.gguf");
    assert!(small_line.contains(" approved "), "{small_line}");
    assert!(small_line.contains("acme"), "{small_line}");
    assert!(
        !line_with(&listed, DEFAULT_MODEL_SHA256).contains("acme"),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("approved but not installed: sha256 {crafted_sha}")),
        "{listed}"
    );

    // The default model cannot be revoked.
    let output = rapport(
        &[
            "model",
            "revoke",
            "--config",
            config,
            "--sha256",
            DEFAULT_MODEL_SHA256,
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot be revoked"),
        "{}",
        stderr(&output)
    );

    // A model in use is not revoked without --force, and the refusal names the tenant.
    let output = rapport(
        &[
            "model",
            "revoke",
            "--config",
            config,
            "--sha256",
            &installed_sha,
        ],
        None,
    );
    assert!(!output.status.success());
    let refusal = stderr(&output);
    assert!(
        refusal.contains("acme") && refusal.contains("--force"),
        "{refusal}"
    );
    {
        let context = open_context(&config_path);
        assert!(ModelApprovals::new(context.store.clone())
            .get(&installed_sha)
            .unwrap()
            .is_some());
    }
    let output = rapport(
        &[
            "model",
            "revoke",
            "--config",
            config,
            "--sha256",
            &installed_sha,
            "--force",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("acme"), "{}", stderr(&output));

    // An unused one needs no --force.
    let output = rapport(
        &[
            "model",
            "revoke",
            "--config",
            config,
            "--sha256",
            &crafted_sha,
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    // Revoked models are no longer loaded: not by the tenant's backend, not by the check.
    let context = open_context(&config_path);
    let approved = ModelApprovals::new(context.store.clone())
        .approved_digests()
        .unwrap();
    assert!(approved.is_empty(), "{approved:?}");
    let error = models::approve_for_loading(&installed, &approved).unwrap_err();
    assert!(matches!(error, ModelError::NotApproved { .. }), "{error}");
    let tenant = context.tenants.find_by_slug("acme").unwrap().unwrap();
    let error = rapport::inference::open_tenant_backend(&context, &Actor::cli(), &tenant)
        .err()
        .expect("a revoked model was loaded");
    assert!(
        matches!(error, InferenceError::Model(ModelError::NotApproved { .. })),
        "{error}"
    );
    assert!(error.to_string().contains(&installed_sha), "{error}");
    let revocations: Vec<AuditEntry> = appliance_entries(&context)
        .into_iter()
        .filter(|entry| entry.event.action == AuditAction::ModelRevoked)
        .collect();
    assert_eq!(revocations.len(), 2, "{revocations:?}");
    let forced = revocations
        .iter()
        .find(|entry| entry.event.target.contains(&installed_sha))
        .unwrap();
    assert!(
        forced.event.target.contains("forced") && forced.event.target.contains("acme"),
        "{}",
        forced.event.target
    );
    assert_eq!(forced.event.actor, Actor::cli());
}

fn models_dir(app: &TestApp) -> PathBuf {
    app.data_dir.join("models")
}

#[tokio::test]
async fn the_models_page_is_the_operators_and_escapes_header_strings() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("op@example.com", Role::Operator, None);
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let hostile = models_dir(&app).join("hostile.gguf");
    write_gguf(&hostile, "<script>alert(1)</script>", 3000);
    let hostile_sha = models::sha256_file(&hostile).unwrap();

    // A tenant admin may neither see nor change the catalogue.
    let admin = app.signed_in_client("admin@acme.example").await;
    assert_eq!(
        app.get(&admin, "/admin/models").await.status(),
        StatusCode::FORBIDDEN
    );
    let response = app
        .post_form(&admin, "/admin/models/approve", &[("sha256", &hostile_sha)])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let page = app
        .get(&admin, "/t/acme/settings/analysis")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("href=\"/admin/models\""), "{page}");

    // The operator sees the table, the default model approved and used by the tenant, and the
    // hostile architecture as text.
    let operator = app.signed_in_client("op@example.com").await;
    let response = app.get(&operator, "/admin/models").await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("href=\"/admin/models\""), "{page}");
    assert!(page.contains(DEFAULT_MODEL_SHA256), "{page}");
    assert!(page.contains("gemma-3-270m-q4_k_m.gguf"), "{page}");
    assert!(page.contains("Tenant acme"), "{page}");
    assert!(page.contains(&hostile_sha), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"),
        "{page}"
    );

    // Approving without the CSRF token is refused and approves nothing.
    let response = operator
        .post(app.url("/admin/models/approve"))
        .form(&[("sha256", hostile_sha.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let approvals = ModelApprovals::new(app.context.store.clone());
    assert!(approvals.get(&hostile_sha).unwrap().is_none());

    // With it, the model is approved, audited with the operator as actor.
    let response = app
        .post_form(
            &operator,
            "/admin/models/approve",
            &[("sha256", &hostile_sha)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/admin/models");
    let approval = approvals.get(&hostile_sha).unwrap().unwrap();
    assert_eq!(approval.approved_by, "op@example.com");
    let page = app
        .get(&operator, "/admin/models")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("action=\"/admin/models/revoke\""), "{page}");
    assert!(page.contains("approved."), "{page}");
    let approved_entry = appliance_entries(&app.context)
        .into_iter()
        .find(|entry| entry.event.action == AuditAction::ModelApproved)
        .unwrap();
    assert!(approved_entry.event.target.contains(&hostile_sha));
    assert_eq!(approved_entry.event.actor.label, "op@example.com");
    assert!(approved_entry.event.client.is_some());

    // The built-in default cannot be revoked from the page either.
    let response = app
        .post_form(
            &operator,
            "/admin/models/revoke",
            &[("sha256", DEFAULT_MODEL_SHA256)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response.text().await.unwrap().contains("cannot be revoked"));

    // In use: refused without the box ticked, revoked with it.
    use_local_model(&app.context, "acme", &hostile_sha);
    let response = app
        .post_form(
            &operator,
            "/admin/models/revoke",
            &[("sha256", &hostile_sha)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response.text().await.unwrap().contains("acme"));
    assert!(approvals.get(&hostile_sha).unwrap().is_some());
    let response = app
        .post_form(
            &operator,
            "/admin/models/revoke",
            &[("sha256", &hostile_sha), ("force", "1")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(approvals.get(&hostile_sha).unwrap().is_none());
    let revoked_entry = appliance_entries(&app.context)
        .into_iter()
        .find(|entry| entry.event.action == AuditAction::ModelRevoked)
        .unwrap();
    assert_eq!(revoked_entry.event.actor.label, "op@example.com");
    let error =
        models::approve_for_loading(&hostile, &approvals.approved_digests().unwrap()).unwrap_err();
    assert!(matches!(error, ModelError::NotApproved { .. }), "{error}");
}

/// The analysis worker keeps loaded backends; one whose model is revoked is not used again.
#[tokio::test]
async fn the_worker_drops_a_loaded_model_once_it_is_revoked() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    // The default model with a few bytes after its tensor data: llama.cpp loads it, but its
    // digest is another one, which only an operator's approval makes loadable.
    let default = models::ModelDirectories::from_config(&app.context.config)
        .find_by_sha256(DEFAULT_MODEL_SHA256)
        .unwrap();
    let variant = models_dir(&app).join("gemma-variant.gguf");
    std::fs::create_dir_all(models_dir(&app)).unwrap();
    let mut bytes = std::fs::read(default).unwrap();
    bytes.extend_from_slice(&[0_u8; 64]);
    std::fs::write(&variant, bytes).unwrap();
    let variant_sha = models::sha256_file(&variant).unwrap();
    let operator = Actor {
        user: None,
        label: "op@example.com".to_owned(),
    };
    rapport::inference::catalogue::approve_file(&app.context, &operator, None, &variant).unwrap();
    use_local_model(&app.context, "acme", &variant_sha);

    let mut cache = rapport::analysis::worker::BackendCache::default();
    let backend = cache.backend_for(&app.context, tenant.id).unwrap();
    assert_eq!(backend.model_id(), variant_sha);
    drop(backend);

    rapport::inference::catalogue::revoke(&app.context, &operator, None, &variant_sha, true)
        .unwrap();
    let error = cache
        .backend_for(&app.context, tenant.id)
        .err()
        .expect("the revoked model was still used");
    assert!(
        matches!(error, InferenceError::Model(ModelError::NotApproved { .. })),
        "{error}"
    );
}
