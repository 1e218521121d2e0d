//! Analysis jobs and stored analyses: the persistent queue (idempotent enqueue, re-queue after a
//! cut-off, stale analyses queued again), provenance with the `off` backend and with the real
//! default model, the console's Analysis panel (escaped, with provenance), the Re-analyse
//! action (CSRF, permission, audit), the Analysis page, and `rapport analyse`.

use std::path::{Path, PathBuf};

use rapport::analysis::jobs::{JobState, Priority};
use rapport::analysis::worker::{self, BackendCache};
use rapport::analysis::{self, Analysis, AnalysisKind, AnalysisResult, Provenance, DEFAULT_TOPICS};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::context::AppContext;
use rapport::ids::{RecordId, TenantId};
use rapport::inference::models::DEFAULT_MODEL_SHA256;
use rapport::inference::prompts::{PROMPT_VERSION, SUMMARY_PROMPT_VERSION};
use rapport::inference::store::{AnalysisSettings, AnalysisSettingsStore};
use rapport::inference::{BackendKind, SENTIMENT_LABELS};
use rapport::ingest::{self, ImportFormat, ImportRequest, ImportState};
use rapport::interactions::{Interaction, InteractionRecord};
use rapport::tenants::{self, Tenant};
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{
    cli_instance, escaped, free_port, location, open_context, rapport, run_queue, stderr, stdout,
    use_off_backend, write_interaction, TestApp,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// An appliance opened directly on a temporary data directory (no server), so a test can close
/// it and open it again as a restart does.
fn init_instance(dir: &Path) -> PathBuf {
    let config_path = dir.join("etc").join("rapport.toml");
    rapport::init::run(&rapport::init::InitOptions {
        config_path: config_path.clone(),
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: false,
    })
    .unwrap();
    config_path
}

fn record(source_id: &str, text: &str) -> InteractionRecord {
    serde_json::from_value(serde_json::json!({
        "source_system": "livechat", "source_id": source_id, "channel": "chat",
        "subject": "Refund for a broken blender",
        "messages": [
            {"role": "customer", "sent_at": "2026-10-06T10:00:00Z", "text": text},
            {"role": "agent", "sent_at": "2026-10-06T10:05:00Z", "text": "I have issued the refund today."},
            {"role": "customer", "sent_at": "2026-10-06T10:07:00Z", "text": "Thanks, great support!"}
        ]
    }))
    .unwrap()
}

fn counts(context: &AppContext, tenant: TenantId) -> (u64, u64, u64, u64) {
    let counts = context.analysis.counts(tenant).unwrap();
    (counts.queued, counts.running, counts.done, counts.failed)
}

fn analysis_of(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
    kind: AnalysisKind,
) -> Analysis {
    context
        .analysis
        .analyses(tenant, id)
        .unwrap()
        .into_iter()
        .find(|analysis| analysis.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} analysis of {id}"))
}

fn create_tenant(context: &AppContext, slug: &str) -> Tenant {
    tenants::create_tenant(context, Actor::cli(), None, slug, "Acme").unwrap()
}

#[test]
fn an_off_backend_job_stores_every_analysis_with_lexicon_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let context = open_context(&init_instance(dir.path()));
    let tenant = create_tenant(&context, "acme");
    use_off_backend(&context, tenant.id);
    // Written through the API path, which queues it; queuing the same version again (twice,
    // from two enqueue points) does not make a second job.
    let stored = write_interaction(
        &context,
        tenant.id,
        record("C-1", "My blender arrived broken, I want a refund."),
    );
    assert_eq!(counts(&context, tenant.id), (1, 0, 0, 0));
    let again =
        analysis::enqueue_interaction(&context, tenant.id, stored.id, Priority::Backfill, false)
            .unwrap();
    assert_eq!(again.queued, 0);
    analysis::enqueue_written(
        &context,
        tenant.id,
        rapport::records::RecordKind::Interaction,
        stored.id,
        stored.updated,
    );
    assert_eq!(counts(&context, tenant.id), (1, 0, 0, 0));
    let job = context.analysis.job(tenant.id, stored.id).unwrap().unwrap();
    assert_eq!(
        (job.state, job.priority),
        (JobState::Queued, Priority::Live)
    );

    let totals = run_queue(&context, tenant.id);
    assert_eq!((totals.done, totals.failed), (1, 0));
    assert_eq!(counts(&context, tenant.id), (0, 0, 1, 0));

    let sentiment = analysis_of(&context, tenant.id, stored.id, AnalysisKind::Sentiment);
    let Provenance {
        backend,
        model,
        analyzer,
        prompt_version,
        interaction_version,
        ..
    } = &sentiment.provenance;
    assert_eq!(*backend, BackendKind::Off);
    assert_eq!(model, "lexicon");
    assert_eq!(analyzer, "lexicon");
    assert_eq!(*prompt_version, PROMPT_VERSION);
    assert_eq!(*interaction_version, stored.updated);
    let AnalysisResult::Sentiment { overall, messages } = &sentiment.result else {
        panic!("{sentiment:?}");
    };
    assert!(
        SENTIMENT_LABELS.contains(&overall.label.as_str()),
        "{overall:?}"
    );
    let total: f32 = overall
        .probabilities
        .iter()
        .map(|scored| scored.probability)
        .sum();
    assert!((total - 1.0).abs() < 1e-3, "{overall:?}");
    // Each customer message has its own: the complaint is negative, the thanks positive.
    let per_message: Vec<(usize, &str)> = messages
        .iter()
        .map(|message| (message.message, message.scores.label.as_str()))
        .collect();
    assert_eq!(per_message, [(0, "negative"), (2, "positive")]);

    let topics = analysis_of(&context, tenant.id, stored.id, AnalysisKind::Topics);
    let AnalysisResult::Topics {
        labels,
        probabilities,
    } = &topics.result
    else {
        panic!("{topics:?}");
    };
    assert_eq!(probabilities.len(), DEFAULT_TOPICS.len());
    assert_eq!(labels.first().map(String::as_str), Some("refund_request"));
    let summary = analysis_of(&context, tenant.id, stored.id, AnalysisKind::Summary);
    assert_eq!(
        summary.result,
        AnalysisResult::Summary {
            text: "My blender arrived broken, I want a refund.".to_owned()
        }
    );
    assert_eq!(summary.provenance.analyzer, "extractive");
    assert_eq!(summary.provenance.prompt_version, SUMMARY_PROMPT_VERSION);

    // Done at this version: asking again without force changes nothing; with force, it runs.
    let unforced =
        analysis::enqueue_interaction(&context, tenant.id, stored.id, Priority::Live, false)
            .unwrap();
    assert_eq!(unforced.queued, 0);
    let forced =
        analysis::enqueue_interaction(&context, tenant.id, stored.id, Priority::Live, true)
            .unwrap();
    assert_eq!(forced.queued, 1);
    assert_eq!(counts(&context, tenant.id), (1, 0, 0, 0));
}

#[test]
fn a_job_left_running_is_requeued_when_the_appliance_opens_again_and_then_completes() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = init_instance(dir.path());
    let (tenant, id) = {
        let context = open_context(&config_path);
        let tenant = create_tenant(&context, "acme");
        use_off_backend(&context, tenant.id);
        let first = write_interaction(&context, tenant.id, record("C-1", "Where is my order?"));
        write_interaction(
            &context,
            tenant.id,
            record("C-2", "The app keeps crashing."),
        );
        // The worker takes one job, then the process "dies" before finishing it.
        let claimed = context.analysis.claim(tenant.id, 1).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].interaction, first.id);
        assert_eq!(counts(&context, tenant.id), (1, 1, 0, 0));
        (tenant.id, first.id)
    };
    let context = open_context(&config_path);
    assert_eq!(counts(&context, tenant), (2, 0, 0, 0));
    let job = context.analysis.job(tenant, id).unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Queued, 1));
    // It kept its place: it is still the first to be taken.
    assert_eq!(
        context
            .analysis
            .jobs_in_state(tenant, JobState::Queued, 1)
            .unwrap()[0]
            .interaction,
        id
    );
    let totals = run_queue(&context, tenant);
    assert_eq!((totals.done, totals.failed), (2, 0));
    assert_eq!(counts(&context, tenant), (0, 0, 2, 0));
    // Summary, sentiment, topics and the QA scorecard.
    assert_eq!(context.analysis.analyses(tenant, id).unwrap().len(), 4);
}

#[test]
fn jobs_of_a_batch_cut_off_by_a_crash_are_claimed_alone_so_one_poison_item_fails_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = init_instance(dir.path());
    let context = open_context(&config_path);
    let tenant = create_tenant(&context, "acme");
    use_off_backend(&context, tenant.id);
    let ids: Vec<_> = ["C-1", "C-2", "C-3"]
        .iter()
        .map(|source| {
            write_interaction(&context, tenant.id, record(source, "Where is my order?")).id
        })
        .collect();
    drop(context);
    // The batch of three takes the process down; each time the appliance opens, the jobs it
    // left running go back to the queue. Claimed together again, all three would fail after
    // the third crash (three attempts in all).
    let mut context = open_context(&config_path);
    assert_eq!(context.analysis.claim(tenant.id, 8).unwrap().len(), 3);
    for _ in 0..2 {
        drop(context);
        context = open_context(&config_path);
        // Suspects are taken one at a time; the first, C-1, is the "poison" that crashes again.
        let claimed = context.analysis.claim(tenant.id, 8).unwrap();
        assert_eq!(claimed.len(), 1, "a suspect job is claimed alone");
        assert_eq!(claimed[0].interaction, ids[0]);
    }
    drop(context);
    let context = open_context(&config_path);
    let poison = context.analysis.job(tenant.id, ids[0]).unwrap().unwrap();
    assert_eq!(poison.state, JobState::Failed, "{poison:?}");
    for id in &ids[1..] {
        let job = context.analysis.job(tenant.id, *id).unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Queued, 1), "{job:?}");
        assert!(job.suspect);
    }
    let totals = run_queue(&context, tenant.id);
    assert_eq!((totals.done, totals.failed), (2, 0));
    // A new job, not cut off by any crash, is batched as usual.
    write_interaction(&context, tenant.id, record("C-4", "Thanks!"));
    write_interaction(&context, tenant.id, record("C-5", "Thanks again!"));
    assert_eq!(context.analysis.claim(tenant.id, 8).unwrap().len(), 2);
}

#[test]
fn a_new_interaction_version_makes_the_analysis_stale_and_queues_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let context = open_context(&init_instance(dir.path()));
    let tenant = create_tenant(&context, "acme");
    use_off_backend(&context, tenant.id);
    let first = write_interaction(
        &context,
        tenant.id,
        record("C-1", "Thanks, everything works."),
    );
    run_queue(&context, tenant.id);
    let before = analysis_of(&context, tenant.id, first.id, AnalysisKind::Sentiment);
    assert!(!before.is_stale(first.updated));
    assert_eq!(first_message_sentiment(&before), "positive");

    // The same source id with new text: a new version, queued by the write.
    let second = write_interaction(
        &context,
        tenant.id,
        record("C-1", "It broke again, this is terrible."),
    );
    assert_eq!(second.id, first.id);
    assert!(second.updated > first.updated);
    assert!(before.is_stale(second.updated));
    let job = context.analysis.job(tenant.id, first.id).unwrap().unwrap();
    assert_eq!((job.state, job.version), (JobState::Queued, second.updated));
    assert_eq!(counts(&context, tenant.id), (1, 0, 0, 0));

    run_queue(&context, tenant.id);
    let after = analysis_of(&context, tenant.id, first.id, AnalysisKind::Sentiment);
    assert!(!after.is_stale(second.updated));
    assert_eq!(after.provenance.interaction_version, second.updated);
    // The new text was analysed, not the old result kept.
    assert_eq!(first_message_sentiment(&after), "negative");
    assert_ne!(
        after.provenance.input_digest,
        before.provenance.input_digest
    );
    assert_eq!(counts(&context, tenant.id), (0, 0, 1, 0));
}

fn first_message_sentiment(analysis: &Analysis) -> String {
    let AnalysisResult::Sentiment { messages, .. } = &analysis.result else {
        panic!("{analysis:?}");
    };
    assert_eq!(messages[0].message, 0);
    messages[0].scores.label.clone()
}

#[test]
fn a_committed_import_queues_what_it_wrote_once() {
    let dir = tempfile::tempdir().unwrap();
    let context = open_context(&init_instance(dir.path()));
    let tenant = create_tenant(&context, "acme");
    use_off_backend(&context, tenant.id);
    let import = || {
        ingest::import_file(
            &context,
            &ImportRequest {
                actor: &Actor::cli(),
                tenant: &tenant,
                format: ImportFormat::Jsonl,
                path: &fixture("interactions.jsonl"),
                skip_invalid: false,
            },
            &mut |_| {},
        )
        .unwrap()
    };
    let run = import();
    assert_eq!(run.state, ImportState::Committed);
    let written = usize::try_from(run.imported).unwrap();
    assert!(written > 1);
    assert_eq!(
        analysis::enqueue_after_import(&context, tenant.id, &run),
        written
    );
    assert_eq!(analysis::enqueue_after_import(&context, tenant.id, &run), 0);
    assert_eq!(counts(&context, tenant.id).0, run.imported);
    run_queue(&context, tenant.id);
    assert_eq!(counts(&context, tenant.id), (0, 0, run.imported, 0));
    // Re-importing the same file makes new versions with the same texts: they are queued, and
    // the stored results are re-stamped rather than computed again (same `created`).
    let some = context
        .interactions
        .newest_page(tenant.id, None)
        .unwrap()
        .items[0]
        .clone();
    let created = analysis_of(&context, tenant.id, some.id, AnalysisKind::Sentiment)
        .provenance
        .created;
    let rerun = import();
    assert_eq!(rerun.updated, run.imported);
    assert_eq!(
        analysis::enqueue_after_import(&context, tenant.id, &rerun),
        written
    );
    run_queue(&context, tenant.id);
    let reused = analysis_of(&context, tenant.id, some.id, AnalysisKind::Sentiment);
    let current = context
        .interactions
        .get(tenant.id, some.id)
        .unwrap()
        .unwrap();
    assert_eq!(reused.provenance.created, created);
    assert_eq!(reused.provenance.interaction_version, current.updated);
    assert_eq!(counts(&context, tenant.id), (0, 0, run.imported, 0));
}

#[test]
fn a_job_whose_interaction_is_gone_fails_and_takes_its_analyses_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let context = open_context(&init_instance(dir.path()));
    let tenant = create_tenant(&context, "acme");
    use_off_backend(&context, tenant.id);
    let stored = write_interaction(&context, tenant.id, record("G-1", "Hello"));
    run_queue(&context, tenant.id);
    // Analyses and a queued job for an interaction that no longer exists (as after an import
    // that created it was rolled back).
    let mut ghost = stored.clone();
    ghost.id = RecordId::new();
    for analysis in hostile_analyses(&ghost) {
        context.analysis.put_analysis(tenant.id, &analysis).unwrap();
    }
    assert_eq!(
        context
            .analysis
            .analyses(tenant.id, ghost.id)
            .unwrap()
            .len(),
        2
    );
    let qa = rapport::qa::store::QaStore::new(context.store.clone());
    qa.add_override(
        tenant.id,
        ghost.id,
        rapport::qa::Override {
            criterion: "greeting".to_owned(),
            points: Some(1),
            comment: "The customer, Jo Kim, was greeted.".to_owned(),
            by: "qa@acme.example".to_owned(),
            at: chrono::Utc::now(),
        },
    )
    .unwrap();
    assert_eq!(qa.overrides(tenant.id, ghost.id).unwrap().len(), 1);
    let request = rapport::analysis::jobs::EnqueueRequest {
        subject: rapport::analysis::jobs::JobSubject::Interaction,
        version: ghost.updated,
        kinds: AnalysisKind::ALL.to_vec(),
        priority: Priority::Live,
        force: true,
    };
    assert_eq!(
        context
            .analysis
            .enqueue(tenant.id, &[(ghost.id, request)])
            .unwrap(),
        1
    );
    let totals = run_queue(&context, tenant.id);
    assert_eq!(totals.failed, 1);
    let job = context.analysis.job(tenant.id, ghost.id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.error,
        Some(rapport::analysis::jobs::JobErrorKind::InteractionMissing)
    );
    assert!(context
        .analysis
        .analyses(tenant.id, ghost.id)
        .unwrap()
        .is_empty());
    assert!(qa.overrides(tenant.id, ghost.id).unwrap().is_empty());
    // The interaction that exists keeps its analyses.
    assert_eq!(
        context
            .analysis
            .analyses(tenant.id, stored.id)
            .unwrap()
            .len(),
        4,
        "summary, sentiment, topics and QA (it is not a sales chat)"
    );
}

fn sales_chat(source_id: &str, text: &str) -> InteractionRecord {
    serde_json::from_value(serde_json::json!({
        "source_system": "website", "source_id": source_id, "channel": "sales-chat",
        "messages": [
            {"role": "customer", "sent_at": "2026-10-06T10:00:00Z", "text": text},
            {"role": "ai-agent", "sent_at": "2026-10-06T10:00:05Z", "text": "Happy to help! I will pass this to our sales team."}
        ]
    }))
    .unwrap()
}

fn lead_of(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
) -> analysis::lead::LeadQualification {
    match analysis_of(context, tenant, id, AnalysisKind::Lead).result {
        AnalysisResult::Lead(lead) => lead,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sales_chats_are_qualified_as_leads_and_other_interactions_are_not() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    use_off_backend(&app.context, tenant.id);
    let hot = write_interaction(
        &app.context,
        tenant.id,
        sales_chat(
            "S-1",
            "We want to buy 200 seats for our 1,500 employees and sign the contract today. Budget is $90k a year.",
        ),
    );
    let cold = write_interaction(
        &app.context,
        tenant.id,
        sales_chat("S-2", "Just looking around, what does your product do?"),
    );
    let support = write_interaction(
        &app.context,
        tenant.id,
        record("C-1", "My order never arrived."),
    );
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || run_queue(&context, tenant.id))
        .await
        .unwrap();

    let lead = lead_of(&app.context, tenant.id, hot.id);
    assert_eq!(lead.intent.label, "ready_to_buy");
    assert_eq!(lead.facts.budget.as_deref(), Some("$90k a year"));
    assert_eq!(lead.facts.company_size, Some(1500));
    assert_eq!(lead.facts.timeline, "now");
    assert!(lead.score >= 80, "{lead:?}");
    let cold_lead = lead_of(&app.context, tenant.id, cold.id);
    assert_eq!(cold_lead.intent.label, "just_browsing");
    assert_eq!(cold_lead.facts.budget, None);
    assert!(cold_lead.score < 20, "{cold_lead:?}");
    assert!(lead.score > cold_lead.score);
    let provenance = analysis_of(&app.context, tenant.id, hot.id, AnalysisKind::Lead).provenance;
    assert_eq!(provenance.analyzer, "keyword intent and fact patterns");
    assert_eq!(
        provenance.prompt_version,
        analysis::lead::LEAD_PROMPT_VERSION
    );
    // A support chat has every other analysis but no lead, and its job is done.
    let kinds: Vec<AnalysisKind> = app
        .context
        .analysis
        .analyses(tenant.id, support.id)
        .unwrap()
        .iter()
        .map(Analysis::kind)
        .collect();
    assert!(!kinds.contains(&AnalysisKind::Lead), "{kinds:?}");
    // Summary, sentiment, topics and the QA scorecard.
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert_eq!(counts(&app.context, tenant.id), (0, 0, 3, 0));

    let analyst = app.signed_in_client("analyst@acme.example").await;
    let page = app
        .get(&analyst, &format!("/t/acme/interactions/{}", hot.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Lead qualification"), "{page}");
    assert!(page.contains(&format!("{} / 100", lead.score)), "{page}");
    assert!(page.contains("1500 people"), "{page}");
    assert!(page.contains("ready to buy"), "{page}");
}

#[test]
fn the_default_model_is_loaded_once_and_shared_by_tenants_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let context = open_context(&init_instance(dir.path()));
    let acme = create_tenant(&context, "acme");
    let globex = create_tenant(&context, "globex");
    let mut cache = BackendCache::default();
    let first = cache.backend_for(&context, acme.id).unwrap();
    assert_eq!(first.kind(), BackendKind::Local);
    let again = cache.backend_for(&context, acme.id).unwrap();
    let other = cache.backend_for(&context, globex.id).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert!(std::sync::Arc::ptr_eq(&first, &other));
    assert_eq!(cache.loaded(), 1);
}

#[test]
fn the_default_model_summarises_and_labels_an_interaction_with_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let context = open_context(&init_instance(dir.path()));
    let tenant = create_tenant(&context, "acme");
    // No settings stored: a new tenant uses the local backend with the default model.
    let stored = write_interaction(
        &context,
        tenant.id,
        record("C-1", "My blender arrived broken and I want my money back."),
    );
    let totals = run_queue(&context, tenant.id);
    assert_eq!((totals.done, totals.failed), (1, 0));
    eprintln!(
        "default model: 1 interaction analysed (summary, sentiment of the interaction and 2 messages, topics) in {:.2} s, model loading included",
        totals.elapsed.as_secs_f64()
    );
    let analyses = context.analysis.analyses(tenant.id, stored.id).unwrap();
    // Summary, sentiment, topics and the QA scorecard.
    assert_eq!(analyses.len(), 4);
    for analysis in &analyses {
        assert_eq!(analysis.provenance.backend, BackendKind::Local);
        assert_eq!(analysis.provenance.model, DEFAULT_MODEL_SHA256);
        assert!(analysis
            .provenance
            .backend_description
            .contains("gemma-3-270m-q4_k_m.gguf"));
        assert_eq!(analysis.provenance.interaction_version, stored.updated);
    }
    let summary = analysis_of(&context, tenant.id, stored.id, AnalysisKind::Summary);
    let AnalysisResult::Summary { text } = &summary.result else {
        panic!("{summary:?}");
    };
    assert!(!text.trim().is_empty(), "{summary:?}");
    assert!(
        !text.contains('\n') && text.chars().count() <= 400,
        "{text:?}"
    );
    assert_eq!(summary.provenance.analyzer, "few-shot generation");
    let sentiment = analysis_of(&context, tenant.id, stored.id, AnalysisKind::Sentiment);
    let AnalysisResult::Sentiment { overall, messages } = &sentiment.result else {
        panic!("{sentiment:?}");
    };
    assert!(
        SENTIMENT_LABELS.contains(&overall.label.as_str()),
        "{overall:?}"
    );
    assert_eq!(messages.len(), 2);
    let topics = analysis_of(&context, tenant.id, stored.id, AnalysisKind::Topics);
    let AnalysisResult::Topics { labels, .. } = &topics.result else {
        panic!("{topics:?}");
    };
    assert!(!labels.is_empty());
    assert!(
        labels
            .iter()
            .all(|label| DEFAULT_TOPICS.contains(&label.as_str())),
        "{labels:?}"
    );

    // A sales chat: its intent by label scoring, its facts by grammar-constrained generation,
    // kept only where the visitor wrote them.
    let visitor = "We are 40 people, we use Zendesk, and want to start next month. Our budget is $500 per month.";
    let chat = write_interaction(&context, tenant.id, sales_chat("S-1", visitor));
    let totals = run_queue(&context, tenant.id);
    assert_eq!((totals.done, totals.failed), (1, 0));
    let lead = lead_of(&context, tenant.id, chat.id);
    eprintln!("default model, lead qualification: {lead:?}");
    assert!(
        analysis::lead::INTENT_LABELS.contains(&lead.intent.label.as_str()),
        "{lead:?}"
    );
    assert!(lead.intent.confidence > 0.0 && lead.intent.confidence <= 1.0);
    if let Some(budget) = &lead.facts.budget {
        assert!(
            visitor.to_lowercase().contains(&budget.to_lowercase()),
            "{lead:?}"
        );
    }
    if let Some(size) = lead.facts.company_size {
        assert_eq!(size, 40, "{lead:?}");
    }
    assert!(
        analysis::lead::TIMELINE_LABELS.contains(&lead.facts.timeline.as_str()),
        "{lead:?}"
    );
    assert!(lead.score <= 100);
    // The current solution, when the model named one, is the visitor's own words; every fact
    // with a quote is quoted from the visitor's message, exactly.
    if let Some(solution) = &lead.facts.current_solution {
        assert!(
            visitor.to_lowercase().contains(&solution.to_lowercase()),
            "{lead:?}"
        );
    }
    for found in &lead.evidence {
        assert!(
            analysis::lead::FACT_NAMES.contains(&found.fact.as_str()),
            "{lead:?}"
        );
        assert_eq!(found.evidence.message, 0, "{lead:?}");
        assert!(visitor.contains(&found.evidence.quote), "{lead:?}");
    }
    if lead.facts.budget.is_some() {
        assert!(lead.evidence_for("budget").is_some(), "{lead:?}");
    }
    let provenance = analysis_of(&context, tenant.id, chat.id, AnalysisKind::Lead).provenance;
    assert_eq!(
        provenance.analyzer,
        "label scoring and grammar-constrained extraction"
    );
    assert_eq!(provenance.model, DEFAULT_MODEL_SHA256);
}

/// A stored analysis whose text and labels carry markup, as untrusted model output may.
fn hostile_analyses(interaction: &Interaction) -> Vec<Analysis> {
    let provenance = Provenance {
        backend: BackendKind::Local,
        backend_description: "local: <b>model</b>.gguf".to_owned(),
        model: "a5fd<i>".to_owned(),
        analyzer: "few-shot generation".to_owned(),
        prompt_version: 1,
        interaction_version: interaction.updated,
        created: chrono::Utc::now(),
        duration_ms: 12,
        input_digest: String::new(),
    };
    let scores = rapport::analysis::LabelScores {
        label: "<em>negative</em>".to_owned(),
        confidence: 0.75,
        probabilities: vec![rapport::analysis::LabelProbability {
            label: "<em>negative</em>".to_owned(),
            probability: 0.75,
        }],
    };
    vec![
        Analysis {
            interaction: interaction.id,
            result: AnalysisResult::Summary {
                text: "Customer said <script>alert(1)</script> twice".to_owned(),
            },
            provenance: provenance.clone(),
        },
        Analysis {
            interaction: interaction.id,
            result: AnalysisResult::Sentiment {
                overall: scores.clone(),
                messages: vec![rapport::analysis::MessageSentiment { message: 0, scores }],
            },
            provenance,
        },
    ]
}

#[tokio::test]
async fn the_interaction_page_shows_analyses_escaped_with_provenance_and_guards_reanalyse() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    app.create_user("privacy@acme.example", Role::PrivacyOfficer, Some(&tenant));
    app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    let stored = rapport::api::resources::write_record(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "api",
        record("C-1", "Hello"),
    )
    .unwrap()
    .0;
    // Only the stored analyses below are shown; the job the write queued is run nowhere here.
    for analysis in hostile_analyses(&stored) {
        app.context
            .analysis
            .put_analysis(tenant.id, &analysis)
            .unwrap();
    }
    let path = format!("/t/acme/interactions/{}", stored.id);
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let page = app.get(&analyst, &path).await.text().await.unwrap();
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(!page.contains("<em>negative"), "{page}");
    assert!(!page.contains("<b>model"), "{page}");
    assert!(
        page.contains(&escaped("Customer said <script>alert(1)</script> twice")),
        "{page}"
    );
    assert!(page.contains(&escaped("<em>negative</em>")), "{page}");
    assert!(page.contains("prompt v1"), "{page}");
    assert!(page.contains("model a5fd&#60;i&#62;"), "{page}");
    assert!(page.contains("queued for analysis"), "{page}");
    assert!(!page.contains("Stale:"), "{page}");
    assert!(
        page.contains(&format!("action=\"{path}/reanalyse\"")),
        "{page}"
    );
    // The read of the page, analyses included, is audited like any interaction read.
    let reads = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(reads
        .iter()
        .any(|entry| entry.event.action == AuditAction::PersonalDataRead
            && entry.event.target == format!("interaction {}", stored.id)));

    // A newer version makes the shown analyses stale.
    rapport::api::resources::write_record(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "api",
        record("C-1", "Hello again"),
    )
    .unwrap();
    let page = app.get(&analyst, &path).await.text().await.unwrap();
    assert_eq!(page.matches("Stale:").count(), 2, "{page}");
    // A stale analysis's per-message sentiment is not pinned on the new messages.
    assert!(!page.contains("sentiment: "), "{page}");

    // Re-analyse: refused without a CSRF token, refused to a role without the permission,
    // accepted (and audited) for an analyst.
    let before = app
        .context
        .analysis
        .job(tenant.id, stored.id)
        .unwrap()
        .unwrap();
    let reanalyse = format!("{path}/reanalyse");
    let response = analyst
        .post(app.url(&reanalyse))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let privacy = app.signed_in_client("privacy@acme.example").await;
    assert_eq!(app.get(&privacy, &path).await.status(), StatusCode::OK);
    let privacy_page = app.get(&privacy, &path).await.text().await.unwrap();
    assert!(!privacy_page.contains("/reanalyse"), "{privacy_page}");
    let response = app.post_form(&privacy, &reanalyse, &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.context
            .analysis
            .job(tenant.id, stored.id)
            .unwrap()
            .unwrap(),
        before
    );

    // Finish the queued job, so that Re-analyse has something to re-queue.
    let off = AnalysisSettingsStore::new(app.context.store.clone());
    off.save(
        tenant.id,
        &AnalysisSettings {
            backend: BackendKind::Off,
            model_sha256: None,
            remote: None,
        },
    )
    .unwrap();
    run_queue(&app.context, tenant.id);
    assert_eq!(counts(&app.context, tenant.id), (0, 0, 1, 0));
    let response = app.post_form(&analyst, &reanalyse, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), path);
    assert_eq!(counts(&app.context, tenant.id), (1, 0, 0, 0));
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::AnalysisRequested
            && entry.event.target == format!("interaction {}", stored.id)
            && entry.event.actor.label == "analyst@acme.example"));
    let page = app.get(&analyst, &path).await.text().await.unwrap();
    assert!(page.contains("queued for analysis"), "{page}");

    // The Analysis page: counts per state for the analyst; 403 for roles without the permission.
    let status = app.get(&analyst, "/t/acme/analysis").await;
    assert_eq!(status.status(), StatusCode::OK);
    let status = status.text().await.unwrap();
    assert!(
        status.contains("<td>queued</td><td class=\"state-queued\">1</td>"),
        "{status}"
    );
    assert!(
        status.contains("<td>done</td><td class=\"state-done\">0</td>"),
        "{status}"
    );
    assert!(status.contains("refund_request"), "{status}");
    assert_eq!(
        app.get(&privacy, "/t/acme/analysis").await.status(),
        StatusCode::FORBIDDEN
    );
    let auditor = app.signed_in_client("auditor@acme.example").await;
    assert_eq!(
        app.get(&auditor, "/t/acme/analysis").await.status(),
        StatusCode::FORBIDDEN
    );
    let response = app.post_form(&auditor, &reanalyse, &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_analysis_page_shows_progress_and_cancels_the_queued_jobs() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    use_off_backend(&app.context, tenant.id);
    let mut ids = Vec::new();
    // More than one batch (the default batch width is 8).
    let total: u64 = 12;
    for number in 0..total {
        let text = format!("My order number {number} never arrived.");
        ids.push(
            write_interaction(
                &app.context,
                tenant.id,
                record(&format!("P-{number}"), &text),
            )
            .id,
        );
    }
    // One batch of the worker (as `serve` runs it): its jobs count as finished, and the rate
    // and ETA come from it.
    let context = app.context.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut cache = BackendCache::default();
        let report = worker::process_batch(&context, &mut cache, tenant.id, &|| false).unwrap();
        (report, context.analysis.per_minute(tenant.id))
    })
    .await
    .unwrap();
    let (report, rate) = report;
    assert!(
        report.done >= 1 && (report.done as u64) < total,
        "{report:?}"
    );
    assert!(rate.is_some_and(|rate| rate > 0.0), "{rate:?}");
    let done = report.done as u64;
    assert_eq!(counts(&app.context, tenant.id), (total - done, 0, done, 0));

    let analyst = app.signed_in_client("analyst@acme.example").await;
    let page = app
        .get(&analyst, "/t/acme/analysis")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            "<progress id=\"analysis-progress\" max=\"{total}\" value=\"{done}\">"
        )),
        "{page}"
    );
    assert!(page.contains("interactions per minute; the "), "{page}");
    assert!(
        page.contains("action=\"/t/acme/analysis/cancel\""),
        "{page}"
    );

    // Cancel: refused without a CSRF token and to a role without the permission.
    let response = analyst
        .post(app.url("/t/acme/analysis/cancel"))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let auditor = app.signed_in_client("auditor@acme.example").await;
    let response = app
        .post_form(&auditor, "/t/acme/analysis/cancel", &[])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(counts(&app.context, tenant.id), (total - done, 0, done, 0));

    let response = app
        .post_form(&analyst, "/t/acme/analysis/cancel", &[])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/t/acme/analysis");
    assert_eq!(counts(&app.context, tenant.id), (0, 0, done, total - done));
    let page = app
        .get(&analyst, "/t/acme/analysis")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("queued jobs cancelled"), "{page}");
    assert_eq!(
        page.matches("<td>cancelled</td>").count() as u64,
        total - done,
        "{page}"
    );
    assert!(!page.contains("/analysis/cancel\""), "{page}");
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::AnalysisCancelled
            && entry.event.target == format!("{} queued jobs", total - done)
            && entry.event.actor.label == "analyst@acme.example"));

    // A cancelled job is queued again when someone asks, and then runs.
    let cancelled = *ids
        .iter()
        .find(|id| {
            app.context
                .analysis
                .job(tenant.id, **id)
                .unwrap()
                .unwrap()
                .state
                == JobState::Failed
        })
        .unwrap();
    let response = app
        .post_form(
            &analyst,
            &format!("/t/acme/interactions/{cancelled}/reanalyse"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || run_queue(&context, tenant.id))
        .await
        .unwrap();
    assert_eq!(
        app.context
            .analysis
            .job(tenant.id, cancelled)
            .unwrap()
            .unwrap()
            .state,
        JobState::Done
    );
}

#[tokio::test]
async fn a_tenant_admin_edits_the_topic_list_and_re_analyses_a_chosen_scope() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    use_off_backend(&app.context, tenant.id);
    let stored = write_interaction(
        &app.context,
        tenant.id,
        record("T-1", "The shipping of my parcel is late."),
    );
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || run_queue(&context, tenant.id))
        .await
        .unwrap();
    let sentiment_created =
        analysis_of(&app.context, tenant.id, stored.id, AnalysisKind::Sentiment)
            .provenance
            .created;
    let path = "/t/acme/settings/topics";
    let admin = app.signed_in_client("admin@acme.example").await;
    let analyst = app.signed_in_client("analyst@acme.example").await;
    assert_eq!(
        app.get(&analyst, path).await.status(),
        StatusCode::FORBIDDEN
    );
    let response = app.post_form(&analyst, path, &[("topics", "x")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let page = app.get(&admin, path).await.text().await.unwrap();
    assert!(page.contains("uses the default list"), "{page}");
    assert!(page.contains("refund_request"), "{page}");

    // Refused: a repeated label (the line is named, nothing stored) and a missing CSRF token.
    let response = app
        .post_form(&admin, path, &[("topics", "shipping\nbilling\nShipping")])
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("Topics, line 3: repeats"), "{page}");
    assert!(page.contains("shipping\nbilling\nShipping"), "{page}");
    let response = admin
        .post(app.url(path))
        .form(&[("topics", "shipping")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.context.analysis.topics(tenant.id).unwrap().as_slice(),
        DEFAULT_TOPICS
    );

    let response = app
        .post_form(&admin, path, &[("topics", " shipping \n\nbilling\n")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.context.analysis.topics(tenant.id).unwrap().as_slice(),
        ["shipping", "billing"]
    );
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries.iter().any(
        |entry| entry.event.action == AuditAction::AnalysisTopicsChanged
            && entry.event.target == "2 topics"
            && entry.event.actor.label == "admin@acme.example"
    ));

    // Re-analysis of a scope: a bad day is named; a day after the write queues nothing; all
    // interactions queues it again, and only the topics are computed anew.
    let reanalyse = "/t/acme/settings/topics/reanalyse";
    let response = app
        .post_form(
            &admin,
            reanalyse,
            &[("scope", "since"), ("since", "23/11/2026")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Updated since: give a day as YYYY-MM-DD"));
    let response = app
        .post_form(
            &admin,
            reanalyse,
            &[("scope", "since"), ("since", "2999-01-01")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(counts(&app.context, tenant.id), (0, 0, 1, 0));
    let response = app.post_form(&admin, reanalyse, &[("scope", "all")]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/t/acme/analysis");
    assert_eq!(counts(&app.context, tenant.id), (1, 0, 0, 0));
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::AnalysisRequested
            && entry.event.target == "all interactions"));
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || run_queue(&context, tenant.id))
        .await
        .unwrap();
    let topics = analysis_of(&app.context, tenant.id, stored.id, AnalysisKind::Topics);
    let AnalysisResult::Topics { labels, .. } = &topics.result else {
        panic!("{topics:?}")
    };
    assert_eq!(labels.first().map(String::as_str), Some("shipping"));
    assert!(
        labels
            .iter()
            .all(|label| label == "shipping" || label == "billing"),
        "{labels:?}"
    );
    let sentiment = analysis_of(&app.context, tenant.id, stored.id, AnalysisKind::Sentiment);
    assert_eq!(sentiment.provenance.created, sentiment_created);

    // Restoring the default list.
    let response = app
        .post_form(&admin, path, &[("topics", ""), ("restore_default", "1")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.context.analysis.topics(tenant.id).unwrap().as_slice(),
        DEFAULT_TOPICS
    );
}

#[test]
fn rapport_analyse_queues_and_runs_a_tenants_interactions_with_the_default_model() {
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
    let file = dir.path().join("two.jsonl");
    let lines: Vec<String> = [
        record("C-1", "My card was declined again, I am furious."),
        record("C-2", "Thank you, the new card works perfectly."),
    ]
    .iter()
    .map(|record| serde_json::to_string(record).unwrap())
    .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let output = rapport(
        &[
            "import",
            "--config",
            config,
            "--tenant",
            "acme",
            "--format",
            "jsonl",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // The counts line stays alone on standard output; the queue's line goes to standard error.
    assert_eq!(stdout(&output).trim(), "imported 2, updated 0, rejected 0");
    assert!(
        stderr(&output).contains("queued 2 interaction(s) for analysis"),
        "{}",
        stderr(&output)
    );

    // Without --wait the jobs only wait; --all finds nothing new to queue.
    let output = rapport(
        &["analyse", "--config", config, "--tenant", "acme", "--all"],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("queued 0 of 2 interaction(s)"), "{text}");
    assert!(
        text.contains("jobs: queued 2, running 0, done 0, failed 0"),
        "{text}"
    );

    let output = rapport(
        &["analyse", "--config", config, "--tenant", "acme", "--wait"],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("analysed 2 interaction(s), 0 failed attempt(s)"),
        "{text}"
    );
    assert!(
        text.contains("jobs: queued 0, running 0, done 2, failed 0"),
        "{text}"
    );
    eprintln!("{text}");

    let output = rapport(
        &[
            "analyse",
            "--config",
            config,
            "--tenant",
            "acme",
            "--interaction",
            "01BX5ZZKBKACTAV9WEVGEMMVRZ",
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no interaction"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_background_worker_runs_what_arrives_and_a_stopping_batch_gives_its_jobs_back() {
    let dir = tempfile::tempdir().unwrap();
    let context = std::sync::Arc::new(open_context(&init_instance(dir.path())));
    let tenant = create_tenant(&context, "acme");
    use_off_backend(&context, tenant.id);

    // A batch told to stop before its summaries gives every job back, attempt uncounted.
    let first = write_interaction(&context, tenant.id, record("C-1", "Where is my order?"));
    write_interaction(
        &context,
        tenant.id,
        record("C-2", "The app keeps crashing."),
    );
    let mut cache = BackendCache::default();
    let report = worker::process_batch(&context, &mut cache, tenant.id, &|| true).unwrap();
    assert_eq!((report.claimed, report.released, report.done), (2, 2, 0));
    assert_eq!(counts(&context, tenant.id), (2, 0, 0, 0));
    let job = context.analysis.job(tenant.id, first.id).unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    assert!(context
        .analysis
        .analyses(tenant.id, first.id)
        .unwrap()
        .is_empty());

    // The server's worker thread takes them, then wakes for an interaction that arrives later.
    let handle = worker::spawn(std::sync::Arc::clone(&context)).unwrap();
    let wait_for = |done: u64| {
        // Well below the worker's 30 s idle wait: only the wake-up of an enqueue gets it there in time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while counts(&context, tenant.id).2 < done && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        counts(&context, tenant.id)
    };
    assert_eq!(wait_for(2), (0, 0, 2, 0));
    write_interaction(&context, tenant.id, record("C-3", "Thanks, all good now."));
    assert_eq!(wait_for(3), (0, 0, 3, 0));
    handle.stop(std::time::Duration::from_secs(10));
    // Stopped: nothing more is taken.
    write_interaction(&context, tenant.id, record("C-4", "Another question."));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(counts(&context, tenant.id), (1, 0, 3, 0));
}
