//! QA scorecards end to end: scoring through the analysis queue (the `off` backend's keyword
//! checks, and the real default model), evidence quotes that are substrings of their
//! conversation and are marked in the thread, overrides that change the reported score while the
//! AI result is kept, auto-fail, a scorecard change that re-scores, the editor's validation, and
//! who may do what.

use rapport::analysis::{Analysis, AnalysisKind, AnalysisResult};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::context::AppContext;
use rapport::ids::TenantId;
use rapport::inference::models::DEFAULT_MODEL_SHA256;
use rapport::inference::BackendKind;
use rapport::interactions::{Interaction, InteractionRecord};
use rapport::qa::evidence::conversation_text;
use rapport::qa::store::QaStore;
use rapport::qa::{QaResult, Scorecard};
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{escaped, run_queue, use_off_backend, write_interaction, TestApp};

fn message(role: &str, author: &str, minute: u32, text: &str) -> serde_json::Value {
    serde_json::json!({"role": role, "author_name": author,
        "sent_at": format!("2026-10-06T10:{minute:02}:00Z"), "text": text})
}

/// A polite conversation answered by a human agent and an AI agent.
fn polite(source_id: &str) -> InteractionRecord {
    serde_json::from_value(serde_json::json!({
        "source_system": "livechat", "source_id": source_id, "channel": "chat",
        "subject": "Parcel missing",
        "messages": [
            message("customer", "Ann Lee", 0, "Hi, my parcel never arrived. It's been two weeks!"),
            message("internal-note", "Sam Hill", 1, "Check the courier's tracking."),
            message("ai-agent", "Rappy", 2, "Hello Ann, thanks for reaching out! I'm sorry about the delay."),
            message("agent", "Sam Hill", 3, "I have sent a replacement today with express delivery."),
            message("customer", "Ann Lee", 4, "Great, thanks."),
            message("agent", "Sam Hill", 5, "Is there anything else I can do? Have a nice day!")
        ]
    }))
    .unwrap()
}

/// A curt conversation: no greeting, no closing, a rude tone.
fn curt(source_id: &str) -> InteractionRecord {
    serde_json::from_value(serde_json::json!({
        "source_system": "livechat", "source_id": source_id, "channel": "chat",
        "subject": "Plan change",
        "messages": [
            message("customer", "Bo Chen", 0, "Can I change my plan?"),
            message("ai-agent", "Rappy", 1, "Read the FAQ. Whatever.")
        ]
    }))
    .unwrap()
}

fn qa_of(
    context: &AppContext,
    tenant: TenantId,
    interaction: &Interaction,
) -> (Analysis, QaResult) {
    let analysis = context
        .analysis
        .analysis(tenant, interaction.id, AnalysisKind::Qa)
        .unwrap()
        .unwrap_or_else(|| panic!("no QA analysis of {}", interaction.id));
    let AnalysisResult::Qa(result) = &analysis.result else {
        panic!("{analysis:?}");
    };
    let result = result.clone();
    (analysis, result)
}

/// Every evidence quote is an exact substring of its conversation, and of the message it names.
fn assert_quotes_are_substrings(record: &InteractionRecord, result: &QaResult) -> usize {
    let conversation = conversation_text(record);
    let mut quotes = 0;
    for score in &result.criteria {
        if let Some(evidence) = &score.evidence {
            assert!(!evidence.quote.is_empty());
            assert!(
                conversation.contains(&evidence.quote),
                "{} is not in the conversation",
                evidence.quote
            );
            assert_eq!(
                record.messages[evidence.message]
                    .text
                    .get(evidence.start..evidence.end),
                Some(evidence.quote.as_str())
            );
            quotes += 1;
        }
        assert!(
            score
                .points
                .is_none_or(|points| score.scale.contains(points)),
            "{score:?}"
        );
    }
    quotes
}

/// The effective score the QA page shows in the row of `subject`.
fn listed_score(page: &str, subject: &str) -> String {
    let row_start = page
        .find(&format!(">{subject}</a>"))
        .unwrap_or_else(|| panic!("{subject} not listed:\n{page}"));
    let cell = "<td class=\"qa-overall\">";
    let start = page[row_start..].find(cell).unwrap() + row_start + cell.len();
    let end = page[start..].find(['<', ' ']).unwrap() + start;
    page[start..end].to_owned()
}

#[tokio::test]
async fn the_off_backend_scores_a_conversation_with_quotes_marked_in_the_thread() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let stored = write_interaction(&app.context, tenant.id, polite("C-1"));
    let totals = run_queue(&app.context, tenant.id);
    assert_eq!((totals.done, totals.failed), (1, 0));

    let (analysis, result) = qa_of(&app.context, tenant.id, &stored);
    assert_eq!(analysis.provenance.backend, BackendKind::Off);
    assert_eq!(analysis.provenance.analyzer, "qa keyword checks");
    assert_eq!(analysis.provenance.interaction_version, stored.updated);
    assert_eq!(result.criteria.len(), 8);
    let quotes = assert_quotes_are_substrings(&stored.record, &result);
    assert!(quotes >= 6, "{result:?}");
    // The internal note is never quoted; the AI agent's and the human's messages are.
    let quoted_messages: Vec<usize> = result
        .criteria
        .iter()
        .filter_map(|score| score.evidence.as_ref().map(|evidence| evidence.message))
        .collect();
    assert!(!quoted_messages.contains(&1));
    assert!(
        quoted_messages.contains(&2) && quoted_messages.contains(&5),
        "{quoted_messages:?}"
    );
    let points = |id: &str| {
        result
            .criteria
            .iter()
            .find(|score| score.criterion == id)
            .unwrap()
            .points
    };
    assert_eq!(points("greeting"), Some(1));
    assert_eq!(points("closing"), Some(1));
    assert_eq!(points("solution_offered"), Some(1));
    assert_eq!(points("comprehension"), None);
    assert_eq!(result.agent.as_deref(), Some("Sam Hill"));
    assert_eq!(result.agent_kind, rapport::qa::AgentKind::Mixed);
    assert!(!result.auto_fail);

    // The interaction page shows the scorecard and marks the quotes in the thread.
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let path = format!("/t/acme/interactions/{}", stored.id);
    let page = app.get(&analyst, &path).await.text().await.unwrap();
    assert!(page.contains("QA scorecard"), "{page}");
    assert!(
        page.contains(&format!(
            "<mark>{}</mark>",
            escaped("Hello Ann, thanks for reaching out!")
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!("<mark>{}</mark>", escaped("Have a nice day!"))),
        "{page}"
    );
    assert!(page.contains("by keyword check"), "{page}");
    // An analyst may read it but gets no override form.
    assert!(!page.contains("qa/override"), "{page}");
}

#[tokio::test]
async fn an_override_changes_the_reported_score_and_the_ai_result_is_kept() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    app.create_user("lead@acme.example", Role::QaLead, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let stored = write_interaction(&app.context, tenant.id, curt("C-2"));
    run_queue(&app.context, tenant.id);
    let (_, before) = qa_of(&app.context, tenant.id, &stored);
    let greeting = before
        .criteria
        .iter()
        .find(|score| score.criterion == "greeting")
        .unwrap()
        .clone();
    assert_eq!(greeting.points, Some(0));
    let ai_overall = before.overall.unwrap();

    let lead = app.signed_in_client("lead@acme.example").await;
    let qa_page = app.get(&lead, "/t/acme/qa").await.text().await.unwrap();
    assert_eq!(
        listed_score(&qa_page, "Plan change"),
        format!("{ai_overall:.1}")
    );

    // The form is on the interaction page for a QA lead.
    let path = format!("/t/acme/interactions/{}", stored.id);
    let override_path = format!("{path}/qa/override");
    let page = app.get(&lead, &path).await.text().await.unwrap();
    assert!(
        page.contains(&format!("action=\"{override_path}\"")),
        "{page}"
    );

    // An analyst may not override; a QA lead without the CSRF token is refused too.
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let fields = [
        ("criterion", "greeting"),
        ("score", "yes"),
        ("comment", "Greeted in the previous chat."),
    ];
    let response = app.post_form(&analyst, &override_path, &fields).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = lead
        .post(app.url(&override_path))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A score off the scale is refused, naming the field.
    let response = app
        .post_form(
            &lead,
            &override_path,
            &[("criterion", "greeting"), ("score", "7"), ("comment", "x")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("score:"));
    assert!(QaStore::new(app.context.store.clone())
        .overrides(tenant.id, stored.id)
        .unwrap()
        .is_empty());

    let response = app.post_form(&lead, &override_path, &fields).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // The AI result is still stored as it was; the override sits beside it.
    let (_, after) = qa_of(&app.context, tenant.id, &stored);
    assert_eq!(after, before);
    let overrides = QaStore::new(app.context.store.clone())
        .overrides(tenant.id, stored.id)
        .unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].points, Some(1));
    assert_eq!(overrides[0].by, "lead@acme.example");
    let effective = rapport::qa::effective_overall(&after, &overrides);
    assert!(effective.score.unwrap() > ai_overall, "{effective:?}");

    // The QA page reports the effective score; the interaction page shows both.
    let qa_page = app.get(&lead, "/t/acme/qa").await.text().await.unwrap();
    assert_eq!(
        listed_score(&qa_page, "Plan change"),
        format!("{:.1}", effective.score.unwrap())
    );
    let page = app.get(&analyst, &path).await.text().await.unwrap();
    assert!(page.contains("Greeted in the previous chat."), "{page}");
    assert!(
        page.contains(&format!("the AI scored {ai_overall:.1}")),
        "{page}"
    );
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::QaOverridden
            && entry.event.target.contains(&stored.id.to_string())
            && entry.event.target.contains("greeting: no → yes")));
    // Reading the QA page is a read of personal data, and audited.
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::PersonalDataRead
            && entry.event.target == "QA list"));
}

/// The editor's fields for `scorecard`, as the browser sends them.
fn editor_fields(scorecard: &Scorecard) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for criterion in &scorecard.criteria {
        let id = &criterion.id;
        if criterion.enabled {
            fields.push((format!("enabled_{id}"), "on".to_owned()));
        }
        if criterion.critical {
            fields.push((format!("critical_{id}"), "on".to_owned()));
        }
        fields.push((format!("scale_{id}"), criterion.scale.as_str().to_owned()));
        fields.push((format!("weight_{id}"), criterion.weight.to_string()));
    }
    fields
}

async fn post_fields(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    fields: &[(String, String)],
) -> reqwest::Response {
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    app.post_form(client, path, &borrowed).await
}

#[tokio::test]
async fn a_critical_criterion_fails_the_interaction_and_a_scorecard_change_rescores() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("lead@acme.example", Role::QaLead, Some(&tenant));
    let rude = write_interaction(&app.context, tenant.id, curt("C-3"));
    let kind = write_interaction(&app.context, tenant.id, polite("C-4"));
    run_queue(&app.context, tenant.id);
    let (first, before) = qa_of(&app.context, tenant.id, &rude);
    assert!(!before.auto_fail);
    assert!(before.overall.unwrap() > 0.0);

    // The tenant admin makes the greeting critical and adds a criterion of their own.
    let admin = app.signed_in_client("admin@acme.example").await;
    let editor = app
        .get(&admin, "/t/acme/settings/scorecard")
        .await
        .text()
        .await
        .unwrap();
    assert!(editor.contains("name=\"weight_greeting\""), "{editor}");
    let mut card = Scorecard::builtin();
    card.criteria[0].critical = true;
    let mut fields = editor_fields(&card);
    fields.push(("new_name".to_owned(), "Refund policy".to_owned()));
    fields.push((
        "new_question".to_owned(),
        "Did the agent explain the refund policy?".to_owned(),
    ));
    fields.push(("new_scale".to_owned(), "5-point".to_owned()));
    fields.push(("new_weight".to_owned(), "2".to_owned()));
    let response = post_fields(&app, &admin, "/t/acme/settings/scorecard", &fields).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let saved = QaStore::new(app.context.store.clone())
        .scorecard(tenant.id)
        .unwrap();
    assert_eq!(saved.criteria.len(), 9);
    assert!(saved.get("greeting").unwrap().critical);
    assert!(saved.get("custom_refund_policy").is_some());

    // Nothing is re-scored until someone asks; then the chosen scope is queued and re-scored.
    let response = app
        .post_form(
            &admin,
            "/t/acme/settings/scorecard/rescore",
            &[("scope", "all")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.context.analysis.counts(tenant.id).unwrap().queued, 2);
    run_queue(&app.context, tenant.id);
    let (second, after) = qa_of(&app.context, tenant.id, &rude);
    assert_ne!(
        second.provenance.input_digest,
        first.provenance.input_digest
    );
    assert_eq!(after.criteria.len(), 9);
    assert!(after.auto_fail);
    assert_eq!(after.overall, Some(0.0));
    let (_, kept) = qa_of(&app.context, tenant.id, &kind);
    assert!(!kept.auto_fail);
    // The keyword checks cannot judge a tenant criterion: N/A, with the reason.
    let custom = after
        .criteria
        .iter()
        .find(|score| score.criterion == "custom_refund_policy")
        .unwrap();
    assert_eq!(custom.points, None);
    assert!(
        custom.reasoning.contains("cannot judge"),
        "{}",
        custom.reasoning
    );

    // The QA page's filters: auto-fail only, agent kind, agent, score range.
    let lead = app.signed_in_client("lead@acme.example").await;
    let page = |query: &'static str| {
        let lead = lead.clone();
        let app = &app;
        async move {
            app.get(&lead, &format!("/t/acme/qa{query}"))
                .await
                .text()
                .await
                .unwrap()
        }
    };
    let failed = page("?auto_fail=on").await;
    assert!(
        failed.contains("Plan change") && !failed.contains("Parcel missing"),
        "{failed}"
    );
    assert!(failed.contains("auto-fail"), "{failed}");
    let human = page("?agent_kind=human").await;
    assert!(
        !human.contains("Plan change") && human.contains("Parcel missing"),
        "{human}"
    );
    let ai = page("?agent_kind=ai").await;
    assert!(
        ai.contains("Plan change") && ai.contains("Parcel missing"),
        "{ai}"
    );
    let by_agent = page("?agent=sam+hill").await;
    assert!(!by_agent.contains("Plan change") && by_agent.contains("Parcel missing"));
    let high = page("?min=50").await;
    assert!(
        !high.contains("Plan change") && high.contains("Parcel missing"),
        "{high}"
    );
    let response = app.get(&lead, "/t/acme/qa?min=200").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("minimum score"));

    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::QaScorecardChanged));
}

#[tokio::test]
async fn the_editor_refuses_bad_input_naming_the_field_and_guards_its_routes() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("lead@acme.example", Role::QaLead, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let lead = app.signed_in_client("lead@acme.example").await;

    let mut fields = editor_fields(&Scorecard::builtin());
    for (name, value) in &mut fields {
        if name == "weight_tone" {
            *value = "heavy".to_owned();
        }
    }
    let response = post_fields(&app, &lead, "/t/acme/settings/scorecard", &fields).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("weight of “Tone”"), "{page}");
    // What was typed is shown again.
    assert!(page.contains("value=\"heavy\""), "{page}");

    let mut fields = editor_fields(&Scorecard::builtin());
    fields.push(("new_name".to_owned(), "Upsell".to_owned()));
    let response = post_fields(&app, &lead, "/t/acme/settings/scorecard", &fields).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("question of the new criterion"));

    let fields: Vec<(String, String)> = editor_fields(&Scorecard::builtin())
        .into_iter()
        .filter(|(name, _)| !name.starts_with("enabled_"))
        .collect();
    let response = post_fields(&app, &lead, "/t/acme/settings/scorecard", &fields).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("enable at least one criterion"));
    // Nothing was stored.
    assert_eq!(
        QaStore::new(app.context.store.clone())
            .scorecard(tenant.id)
            .unwrap(),
        Scorecard::builtin()
    );

    // An analyst reads the QA page but may not edit the scorecard or re-score.
    let analyst = app.signed_in_client("analyst@acme.example").await;
    assert_eq!(
        app.get(&analyst, "/t/acme/qa").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&analyst, "/t/acme/settings/scorecard")
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let response = post_fields(
        &app,
        &analyst,
        "/t/acme/settings/scorecard",
        &editor_fields(&Scorecard::builtin()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .post_form(
            &analyst,
            "/t/acme/settings/scorecard/rescore",
            &[("scope", "all")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Without the CSRF token, a QA lead's save is refused.
    let response = lead
        .post(app.url("/t/acme/settings/scorecard"))
        .form(&editor_fields(&Scorecard::builtin()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[test]
fn the_default_model_scores_qa_with_quotes_from_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("etc").join("rapport.toml");
    rapport::init::run(&rapport::init::InitOptions {
        config_path: config_path.clone(),
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: false,
    })
    .unwrap();
    let mut config = rapport::config::Config::load(&config_path).unwrap();
    config.storage.min_free_disk_mib = 1;
    let context = AppContext::open(config, rapport::store::OpenMode::ExistingOnly).unwrap();
    let tenant =
        rapport::tenants::create_tenant(&context, Actor::cli(), None, "acme", "Acme").unwrap();
    // No settings stored: the local backend with the default model. The write queues every
    // kind of analysis; QA is one more classification step of the same batch.
    let stored = write_interaction(&context, tenant.id, polite("C-5"));
    let started = std::time::Instant::now();
    let totals = run_queue(&context, tenant.id);
    assert_eq!(totals.failed, 0);
    eprintln!(
        "default model: QA of 1 interaction (8 criteria) plus the other analyses in {:.2} s, model loading included",
        started.elapsed().as_secs_f64()
    );
    let (analysis, result) = qa_of(&context, tenant.id, &stored);
    assert_eq!(analysis.provenance.backend, BackendKind::Local);
    assert_eq!(analysis.provenance.model, DEFAULT_MODEL_SHA256);
    assert_eq!(analysis.provenance.analyzer, "label scoring");
    assert_eq!(result.criteria.len(), 8);
    assert_quotes_are_substrings(&stored.record, &result);
    for score in &result.criteria {
        eprintln!(
            "  {}: {} ({:.0} %)",
            score.criterion,
            score.scale.describe(score.points),
            score.confidence * 100.0
        );
        assert!((0.0..=1.0).contains(&score.confidence), "{score:?}");
        let total: f32 = score.probabilities.iter().map(|p| p.probability).sum();
        assert!((total - 1.0).abs() < 1e-3, "{score:?}");
        assert_eq!(score.probabilities.len(), score.scale.labels().len());
        assert!(
            score.reasoning.contains("% confidence"),
            "{}",
            score.reasoning
        );
    }
    if let Some(overall) = result.overall {
        assert!((0.0..=100.0).contains(&overall), "{overall}");
    }
}

/// The dashboard CSV `chart` of today, as the analyst downloads it.
async fn todays_csv(app: &TestApp, client: &reqwest::Client, chart: &str) -> String {
    let today = chrono::Utc::now().date_naive();
    let response = app
        .get(
            client,
            &format!("/t/acme/dashboard/{chart}.csv?from={today}&to={today}"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{chart}.csv");
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_label_override_changes_the_reported_sentiment_and_topics_and_the_ai_result_is_kept() {
    use rapport::analysis::overrides::{LabelOverrides, LabelTarget};

    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    app.create_user("lead@acme.example", Role::QaLead, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let now = chrono::Utc::now().to_rfc3339();
    let record: InteractionRecord = serde_json::from_value(serde_json::json!({
        "source_system": "livechat", "source_id": "L-1", "channel": "chat",
        "subject": "Thanks",
        "messages": [
            {"role": "customer", "author_name": "Ann Lee", "sent_at": now,
             "text": "Great service, thank you so much, I love it!"},
            {"role": "agent", "author_name": "Sam Hill", "sent_at": now,
             "text": "Glad to help!"}
        ]
    }))
    .unwrap();
    let stored = write_interaction(&app.context, tenant.id, record);
    run_queue(&app.context, tenant.id);
    let ai_sentiment = app
        .context
        .analysis
        .analysis(tenant.id, stored.id, AnalysisKind::Sentiment)
        .unwrap()
        .unwrap();
    let AnalysisResult::Sentiment { overall, .. } = &ai_sentiment.result else {
        panic!("{ai_sentiment:?}");
    };
    assert_eq!(overall.label, "positive");
    let ai_topics = app
        .context
        .analysis
        .analysis(tenant.id, stored.id, AnalysisKind::Topics)
        .unwrap()
        .unwrap();

    let analyst = app.signed_in_client("analyst@acme.example").await;
    let sentiment_csv = todays_csv(&app, &analyst, "sentiment").await;
    assert!(sentiment_csv.ends_with(",1,0,0\n"), "{sentiment_csv}");

    // The forms are on the interaction page for a QA lead, not for an analyst.
    let path = format!("/t/acme/interactions/{}", stored.id);
    let override_path = format!("{path}/labels/override");
    let lead = app.signed_in_client("lead@acme.example").await;
    let page = app.get(&lead, &path).await.text().await.unwrap();
    assert!(
        page.contains(&format!("action=\"{override_path}\"")) && page.contains("Override topics"),
        "{page}"
    );
    let page = app.get(&analyst, &path).await.text().await.unwrap();
    assert!(!page.contains("labels/override"), "{page}");

    // An analyst may not override; a QA lead without the CSRF token is refused too.
    let sentiment = [
        ("target", "sentiment"),
        ("label", "negative"),
        ("comment", "Sarcasm: the customer cancelled the next day."),
    ];
    let response = app.post_form(&analyst, &override_path, &sentiment).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = lead
        .post(app.url(&override_path))
        .form(&sentiment)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Bad input is refused, naming the field, and nothing is stored.
    for (fields, field) in [
        (
            vec![
                ("target", "sentiment"),
                ("label", "furious"),
                ("comment", "x"),
            ],
            "sentiment:",
        ),
        (
            vec![
                ("target", "topics"),
                ("label", "not_a_topic"),
                ("comment", "x"),
            ],
            "topics:",
        ),
        (vec![("target", "topics"), ("comment", "x")], "topics:"),
        (
            vec![
                ("target", "sentiment"),
                ("label", "negative"),
                ("comment", "  "),
            ],
            "comment:",
        ),
        (vec![("target", "mood"), ("label", "negative")], "target:"),
    ] {
        let response = app.post_form(&lead, &override_path, &fields).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{fields:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(field), "{field}: {body}");
    }
    let overrides = LabelOverrides::new(app.context.store.clone());
    assert!(overrides
        .overrides(tenant.id, stored.id)
        .unwrap()
        .is_empty());

    let response = app.post_form(&lead, &override_path, &sentiment).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let topics = [
        ("target", "topics"),
        ("label", "complaint"),
        ("label", "cancellation"),
        ("comment", "The thanks was ironic."),
    ];
    let response = app.post_form(&lead, &override_path, &topics).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // The AI results are stored as they were; the overrides sit beside them.
    let analysis = |kind| {
        app.context
            .analysis
            .analysis(tenant.id, stored.id, kind)
            .unwrap()
            .unwrap()
    };
    assert_eq!(analysis(AnalysisKind::Sentiment), ai_sentiment);
    assert_eq!(analysis(AnalysisKind::Topics), ai_topics);
    let stored_overrides = overrides.overrides(tenant.id, stored.id).unwrap();
    assert_eq!(stored_overrides.len(), 2);
    assert_eq!(stored_overrides[0].target, LabelTarget::Sentiment);
    assert_eq!(stored_overrides[1].labels, ["complaint", "cancellation"]);
    assert_eq!(stored_overrides[1].by, "lead@acme.example");

    // The reports use the overrides: the dashboard counts the interaction as negative and
    // under the two chosen topics.
    let sentiment_csv = todays_csv(&app, &analyst, "sentiment").await;
    assert!(sentiment_csv.ends_with(",0,0,1\n"), "{sentiment_csv}");
    let topics_csv = todays_csv(&app, &analyst, "topics").await;
    let rows: Vec<&str> = topics_csv.lines().skip(1).collect();
    assert!(
        rows.contains(&"complaint,1,0") && rows.contains(&"cancellation,1,0"),
        "{topics_csv}"
    );
    assert_eq!(rows.len(), 2, "{topics_csv}");

    // The page shows both: the effective labels with who set them, and what the AI said.
    let page = app.get(&analyst, &path).await.text().await.unwrap();
    assert!(page.contains("The AI said positive"), "{page}");
    assert!(page.contains(&escaped("The thanks was ironic.")), "{page}");
    assert!(page.contains("overridden by lead@acme.example"), "{page}");

    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries.iter().any(
        |entry| entry.event.action == AuditAction::AnalysisLabelOverridden
            && entry.event.target.contains(&stored.id.to_string())
            && entry
                .event
                .target
                .contains("sentiment: positive → negative")
    ));

    // A second override replaces the first: the audit says what it replaced, the reports follow.
    let response = app
        .post_form(
            &lead,
            &override_path,
            &[
                ("target", "sentiment"),
                ("label", "neutral"),
                ("comment", "On reflection, neutral."),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let sentiment_csv = todays_csv(&app, &analyst, "sentiment").await;
    assert!(sentiment_csv.ends_with(",0,1,0\n"), "{sentiment_csv}");
    assert!(app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10)
        .unwrap()
        .iter()
        .any(
            |entry| entry.event.action == AuditAction::AnalysisLabelOverridden
                && entry.event.target.contains("sentiment: negative → neutral")
        ));

    // Deleting the interaction deletes its overrides with it.
    rapport::records::delete::delete::<rapport::interactions::InteractionRecord>(
        &app.context,
        tenant.id,
        &rapport::records::delete::targets::<rapport::interactions::InteractionRecord>(
            &app.context,
            tenant.id,
            &[stored.id],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(overrides
        .overrides(tenant.id, stored.id)
        .unwrap()
        .is_empty());
}
