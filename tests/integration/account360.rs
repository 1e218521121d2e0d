//! The account 360 page end to end: accounts, chats, surveys and a review imported through the
//! real import path and analysed with the off backend (and, once, the default GGUF model). The
//! page shows the account's open alerts, the QA and sentiment figures of its conversations (equal
//! to what is stored), and a briefing that cites only the account's interactions, each citation a
//! link; new data makes the briefing regenerate through the queue, never at page load. The two
//! CSV exports equal the data, and only the roles that may export get them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::{Duration, Utc};
use rapport::accounts::briefing::{self, Briefing};
use rapport::alerts::{self, AlertKind, NewAlert};
use rapport::analysis::{AnalysisKind, AnalysisResult};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::health::{ChurnRule, HealthStore};
use rapport::ids::{RecordId, TenantId};
use rapport::inference::models::DEFAULT_MODEL_SHA256;
use rapport::inference::BackendKind;
use rapport::ingest::ImportFormat;
use rapport::privacy::RestrictionKind;
use rapport::tenants::Tenant;
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{run_queue, use_off_backend, TestApp};

fn import(app: &TestApp, tenant: &Tenant, format: ImportFormat, path: &Path) {
    import_committed(&app.context, tenant, format, path);
}

use crate::helpers::{import_committed, write_file as write};

/// One chat of `account` that began `days_ago` days ago.
fn chat(id: &str, account: &str, days_ago: i64, customer: &str, text: &str) -> String {
    let at = (Utc::now() - Duration::days(days_ago)).to_rfc3339();
    serde_json::json!({
        "source_system": "desk", "source_id": id, "channel": "chat",
        "account": account, "subject": format!("Chat {id}"),
        "messages": [
            {"role": "customer", "author_email": customer, "sent_at": at, "text": text},
            {"role": "agent", "author_name": "Sam", "sent_at": at, "text": "Hello, thank you for writing. I have sorted this out for you."}
        ]
    })
    .to_string()
}

fn account_id(app: &TestApp, tenant: TenantId, source_id: &str) -> RecordId {
    app.context
        .accounts
        .newest_page(tenant, None)
        .unwrap()
        .items
        .iter()
        .find(|account| account.record.source_id == source_id)
        .unwrap()
        .id
}

/// The ids of the interactions that name `account` (its source id).
fn interactions_of(app: &TestApp, tenant: TenantId, account: &str) -> Vec<RecordId> {
    app.context
        .interactions
        .newest_page(tenant, None)
        .unwrap()
        .items
        .iter()
        .filter(|interaction| interaction.record.account.as_deref() == Some(account))
        .map(|interaction| interaction.id)
        .collect()
}

fn stored_briefing(app: &TestApp, tenant: TenantId, account: RecordId) -> (String, Briefing) {
    let (analysis, briefing) = briefing::stored(&app.context, tenant, account)
        .unwrap()
        .expect("a stored briefing");
    (analysis.provenance.input_digest, briefing)
}

/// The hrefs of the citation links in a page.
fn citation_links(page: &str) -> Vec<String> {
    let marker = "class=\"citation\" href=\"";
    page.match_indices(marker)
        .map(|(at, _)| {
            let start = at + marker.len();
            let end = start + page[start..].find('"').unwrap();
            page[start..end].to_owned()
        })
        .collect()
}

fn audited(app: &TestApp, tenant: TenantId, action: AuditAction) -> Vec<String> {
    app.context
        .audit_log
        .entries(AuditView::Tenant(tenant), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == action)
        .map(|entry| entry.event.target)
        .collect()
}

/// Tenant `acme` with accounts A-1 (Northwind, owned by the CSM) and A-2, three chats of A-1 (one
/// by a customer who later objects to processing), one of A-2, and a negative review of A-1.
struct Fixture {
    app: TestApp,
    tenant: Tenant,
    northwind: RecordId,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("csm@acme.example", Role::Analyst, Some(&tenant));
    app.create_user("qa@acme.example", Role::QaLead, Some(&tenant));
    app.create_user("auditor@acme.example", Role::Auditor, Some(&tenant));
    use_off_backend(&app.context, tenant.id);
    let dir = tempfile::tempdir().unwrap();
    let renewal = (Utc::now() + Duration::days(45)).date_naive();
    import(
        &app,
        &tenant,
        ImportFormat::Accounts,
        &write(
            dir.path(),
            "accounts.csv",
            &format!(
                "account_id,name,domain,plan,arr,renewal_date,owner_email\n\
                 A-1,Northwind,northwind.example,Pro,1200,{renewal},csm@acme.example\n\
                 A-2,=Contoso,contoso.example,Basic,300,,\n"
            ),
        ),
    );
    let chats = [
        chat(
            "T-1",
            "A-1",
            3,
            "ann@northwind.example",
            "I was charged twice this month and I am very unhappy. Please refund me.",
        ),
        chat(
            "T-2",
            "A-1",
            2,
            "bob@northwind.example",
            "Thank you so much, the new dashboard is great and works perfectly.",
        ),
        chat(
            "T-3",
            "A-1",
            1,
            "objector@northwind.example",
            "How do I add three more users to our plan?",
        ),
        chat(
            "T-9",
            "A-2",
            1,
            "eve@contoso.example",
            "The export fails with an error every time.",
        ),
    ];
    import(
        &app,
        &tenant,
        ImportFormat::Jsonl,
        &write(dir.path(), "chats.jsonl", &(chats.join("\n") + "\n")),
    );
    let reviewed = (Utc::now() - Duration::days(1)).date_naive();
    import(
        &app,
        &tenant,
        ImportFormat::Reviews,
        &write(
            dir.path(),
            "reviews.csv",
            &format!(
                "review_id,platform,location,rating,text,reviewer,reply,reviewed_at,account\n\
                 g-1,google,Berlin,1,Slow support and a double charge,Ann,,{reviewed},A-1\n"
            ),
        ),
    );
    run_queue(&app.context, tenant.id);
    let northwind = account_id(&app, tenant.id, "A-1");
    Fixture {
        app,
        tenant,
        northwind,
        _dir: dir,
    }
}

#[tokio::test]
async fn the_account_page_shows_alerts_qa_and_a_cited_briefing_that_follows_new_data() {
    let Fixture {
        app,
        tenant,
        northwind,
        _dir: dir,
    } = fixture();
    let acme = tenant.id;
    let mine = interactions_of(&app, acme, "A-1");
    assert_eq!(mine.len(), 3);

    // The briefing was written by the queue (extractive under `off`) and cites only the
    // account's interactions.
    let (digest, first) = stored_briefing(&app, acme, northwind);
    assert_eq!(first.sources.len(), 3, "{first:?}");
    assert!(first.sources.iter().all(|id| mine.contains(id)));
    assert!(!first.cited.is_empty());
    assert!(first.cited.iter().all(|id| first.sources.contains(id)));
    let analysis = app
        .context
        .analysis
        .analysis(acme, northwind, AnalysisKind::Briefing)
        .unwrap()
        .unwrap();
    assert_eq!(analysis.provenance.backend, BackendKind::Off);
    assert_eq!(analysis.provenance.analyzer, briefing::EXTRACTIVE_ANALYZER);
    assert_eq!(
        analysis.provenance.prompt_version,
        briefing::BRIEFING_PROMPT_VERSION
    );
    // The text keeps only valid marks: cleaning it again changes nothing.
    assert_eq!(
        briefing::keep_valid_citations(&first.text, first.sources.len()).0,
        first.text
    );

    // Open alerts: a churn-risk alert raised for the account shows; a resolved one does not;
    // the negative review's alert (raised by its import) shows too.
    let csm = app
        .context
        .users
        .find_by_email(&rapport::users::Email::parse("csm@acme.example").unwrap())
        .unwrap()
        .unwrap();
    let raise = |rule: ChurnRule, title: &str| {
        let raised = alerts::raise(
            &app.context,
            &Actor::system(),
            acme,
            NewAlert {
                kind: AlertKind::ChurnRisk(rule),
                subject: northwind,
                link: format!("/t/acme/accounts/{northwind}"),
                title: title.to_owned(),
                recipients: vec![csm.id],
            },
        )
        .unwrap();
        match raised {
            alerts::Raised::Created(id) | alerts::Raised::AlreadyOpen(id) => id,
        }
    };
    let open = raise(ChurnRule::BandToRed, "Band changed to red: Northwind");
    let done = raise(ChurnRule::UsageDrop, "Usage dropped: Northwind");
    alerts::act(
        &app.context,
        &csm,
        None,
        acme,
        done,
        &alerts::Action::Resolve("called them".to_owned()),
    )
    .unwrap();

    let analyst = app.signed_in_client("csm@acme.example").await;
    let page_path = format!("/t/acme/accounts/{northwind}");
    let page = app.get(&analyst, &page_path).await.text().await.unwrap();
    let alerts_at = page.find("<h2>Open alerts</h2>").unwrap();
    let briefing_at = page.find("<h2>Briefing</h2>").unwrap();
    let qa_at = page.find("<h2>QA and sentiment</h2>").unwrap();
    let contacts_at = page.find("<h2>Contacts</h2>").unwrap();
    let timeline_at = page.find("<h2>Timeline</h2>").unwrap();
    assert!(page.find("<h2>Health</h2>").unwrap() < alerts_at);
    assert!(alerts_at < briefing_at && briefing_at < qa_at);
    assert!(qa_at < contacts_at && contacts_at < timeline_at);
    let alerts_section = &page[alerts_at..briefing_at];
    assert!(
        alerts_section.contains(&format!("href=\"/t/acme/alerts/{open}\"")),
        "{alerts_section}"
    );
    // (Health may have raised this rule's alert already, with its own title.)
    let shown = rapport::alerts::AlertStore::new(app.context.store.clone())
        .get(acme, open)
        .unwrap()
        .unwrap();
    assert!(alerts_section.contains(&crate::helpers::escaped(&shown.title)));
    assert!(!alerts_section.contains(&done.to_string()));
    assert!(
        alerts_section.contains("Negative review"),
        "{alerts_section}"
    );

    // Each citation is a link to one of the account's interactions.
    let links = citation_links(&page[briefing_at..qa_at]);
    assert!(!links.is_empty(), "{page}");
    for link in &links {
        let id = link.strip_prefix("/t/acme/interactions/").unwrap();
        assert!(mine.iter().any(|mine| mine.to_string() == id), "{link}");
    }
    assert!(!page[briefing_at..qa_at].contains("Outdated"));

    // QA and sentiment equal the stored analyses of the account's interactions.
    let mut sentiments: BTreeMap<String, usize> = BTreeMap::new();
    let mut scores = Vec::new();
    for id in &mine {
        for analysis in app.context.analysis.analyses(acme, *id).unwrap() {
            match analysis.result {
                AnalysisResult::Sentiment { overall, .. } => {
                    *sentiments.entry(overall.label).or_default() += 1;
                }
                AnalysisResult::Qa(result) => {
                    if let Some(score) = rapport::qa::effective_overall(&result, &[]).score {
                        scores.push(f64::from(score));
                    }
                }
                _ => {}
            }
        }
    }
    assert_eq!(sentiments.values().sum::<usize>(), 3, "{sentiments:?}");
    let qa_section = &page[qa_at..contacts_at];
    assert!(
        qa_section.contains("Of all the account's 3 interaction(s)"),
        "{qa_section}"
    );
    for (label, count) in &sentiments {
        assert!(
            qa_section.contains(&format!("{label}: {count}")),
            "{label}: {count} in {qa_section}"
        );
    }
    assert!(!scores.is_empty());
    #[allow(clippy::cast_precision_loss)]
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    assert!(
        qa_section.contains(&format!(
            "<strong class=\"mean-qa\">{mean:.1}</strong> over {} scored",
            scores.len()
        )),
        "{qa_section}"
    );
    for id in &mine {
        assert!(qa_section.contains(&format!("/t/acme/interactions/{id}")));
    }

    // New data: a chat of A-1 arrives. Health notices the account, the briefing is queued (the
    // page says it is being prepared and that the one shown is outdated), and the queue writes
    // a new one from a new input.
    let newest = chat(
        "T-4",
        "A-1",
        0,
        "cara@northwind.example",
        "Our invoices are wrong again, this is the third time.",
    );
    import(
        &app,
        &tenant,
        ImportFormat::Jsonl,
        &write(dir.path(), "more.jsonl", &(newest + "\n")),
    );
    let page = app.get(&analyst, &page_path).await.text().await.unwrap();
    assert!(page.contains("A briefing is being prepared."), "{page}");
    assert!(page.contains("Outdated"), "{page}");
    // Loading the page wrote nothing: the stored briefing is the first one still.
    assert_eq!(stored_briefing(&app, acme, northwind).0, digest);
    run_queue(&app.context, acme);
    let (second_digest, second) = stored_briefing(&app, acme, northwind);
    assert_ne!(second_digest, digest);
    assert_eq!(second.sources.len(), 4);
    let added = interactions_of(&app, acme, "A-1")
        .into_iter()
        .find(|id| !mine.contains(id))
        .unwrap();
    assert_eq!(second.sources[0], added, "the newest interaction is [1]");
    let page = app.get(&analyst, &page_path).await.text().await.unwrap();
    assert!(!page.contains("A briefing is being prepared."));
    assert!(!page.contains("Outdated"));

    // A customer objects to processing: their interaction leaves the briefing's input.
    rapport::privacy::restrict(
        &app.context,
        &Actor::cli(),
        None,
        acme,
        "objector@northwind.example",
        RestrictionKind::Objection,
        "DSR-7",
    )
    .unwrap();
    let objected = app
        .context
        .interactions
        .newest_page(acme, None)
        .unwrap()
        .items
        .into_iter()
        .find(|interaction| interaction.record.source_id == "T-3")
        .unwrap()
        .id;
    let account = app.context.accounts.get(acme, northwind).unwrap().unwrap();
    let input = briefing::input_for(&app.context, acme, &account).unwrap();
    assert_eq!(input.sources.len(), 3);
    assert!(input.sources.iter().all(|source| source.id != objected));
    assert!(!briefing::prompt(&input).contains("add three more users"));

    // Regenerate: an analyst may ask (audited, queued, written by the queue); an auditor may not.
    let auditor = app.signed_in_client("auditor@acme.example").await;
    let action = format!("{page_path}/briefing");
    assert_eq!(
        app.post_form(&auditor, &action, &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    let response = app.post_form(&analyst, &action, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(briefing::pending(&app.context, acme, northwind).unwrap());
    let requested = audited(&app, acme, AuditAction::BriefingRequested);
    assert_eq!(requested, vec![format!("account {northwind}")]);
    run_queue(&app.context, acme);
    let (_, third) = stored_briefing(&app, acme, northwind);
    assert!(!third.sources.contains(&objected));
    assert!(!third.cited.contains(&objected));
    // An account of the tenant that does not exist is 404.
    assert_eq!(
        app.post_form(
            &analyst,
            &format!("/t/acme/accounts/{}/briefing", RecordId::new()),
            &[]
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );

    // The page is one audited read, whatever it shows.
    let reads = audited(&app, acme, AuditAction::PersonalDataRead);
    assert_eq!(
        reads
            .iter()
            .filter(|target| **target == format!("account {northwind}"))
            .count(),
        3
    );
}

#[tokio::test]
async fn the_account_and_qa_exports_equal_the_data_and_only_their_roles_get_them() {
    let Fixture {
        app,
        tenant,
        northwind,
        ..
    } = fixture();
    let acme = tenant.id;

    // A QA lead's override shows in the QA report.
    let scored = rapport::qa::list_scored(
        &app.context,
        acme,
        &rapport::qa::QaFilter::default(),
        100,
        5000,
    )
    .unwrap()
    .rows;
    assert_eq!(scored.len(), 4, "every chat is scored");
    let target = &scored[0];
    let criterion = target.result.criteria[0].criterion.clone();
    let scale = target.result.criteria[0].scale;
    let points = scale.min();
    rapport::qa::override_criterion(
        &app.context,
        &Actor::cli(),
        None,
        acme,
        target.interaction,
        &rapport::qa::OverrideInput {
            criterion: criterion.clone(),
            score: scale.label(Some(points)),
            comment: "checked by hand".to_owned(),
        },
    )
    .unwrap();

    // The accounts export.
    let admin = app.signed_in_client("admin@acme.example").await;
    let list = app
        .get(&admin, "/t/acme/accounts")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("href=\"/t/acme/accounts/export.csv\""),
        "{list}"
    );
    let response = app.get(&admin, "/t/acme/accounts/export.csv").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        rapport::accounts::export::EXPORT_COLUMNS
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let row = rows
        .iter()
        .find(|row| &row[0] == northwind.to_string().as_str())
        .unwrap();
    let snapshot = HealthStore::new(app.context.store.clone())
        .history(acme, northwind, 1)
        .unwrap()
        .pop()
        .unwrap();
    let renewal = (Utc::now() + Duration::days(45)).date_naive().to_string();
    assert_eq!(&row[1], "Northwind");
    assert_eq!((&row[2], &row[3]), ("csv", "A-1"));
    assert_eq!(&row[4], "csm@acme.example");
    assert_eq!(&row[5], "1200.00");
    assert_eq!(&row[6], renewal.as_str());
    assert_eq!(&row[7], format!("{:.1}", snapshot.score.unwrap()).as_str());
    assert_eq!(&row[8], snapshot.band.unwrap().label());
    assert_eq!(&row[9], snapshot.explanation.sentences().join(" ").as_str());
    assert!(!row[9].is_empty());
    assert_eq!(&row[10], snapshot.day.to_string().as_str());
    assert_eq!(&row[11], format!("/t/acme/accounts/{northwind}").as_str());
    // A name that starts a formula is defused.
    assert!(rows.iter().any(|row| &row[1] == "'=Contoso"));
    assert_eq!(
        audited(&app, acme, AuditAction::AccountsExported),
        vec!["accounts export (csv): 2 accounts".to_owned()]
    );

    // The QA report, with the QA page's filters.
    let qa_lead = app.signed_in_client("qa@acme.example").await;
    let qa_page = app
        .get(&qa_lead, "/t/acme/qa?agent=Sam")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        qa_page.contains("/t/acme/qa/export.csv?agent_kind=&amp;agent=Sam")
            || qa_page.contains("/t/acme/qa/export.csv?agent_kind=&#38;agent=Sam"),
        "{qa_page}"
    );
    let response = app.get(&qa_lead, "/t/acme/qa/export.csv?agent=Sam").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let column = |name: &str| header.iter().position(|column| column == name).unwrap();
    let store = rapport::qa::store::QaStore::new(app.context.store.clone());
    for row in &rows {
        let id: RecordId = row[0].parse().unwrap();
        let (_, result) = rapport::qa::qa_analysis(&app.context, acme, id)
            .unwrap()
            .unwrap();
        let overrides = store.overrides(acme, id).unwrap();
        let effective = rapport::qa::effective_overall(&result, &overrides);
        let interaction = app.context.interactions.get(acme, id).unwrap().unwrap();
        assert_eq!(
            &row[column("link")],
            format!("/t/acme/interactions/{id}").as_str()
        );
        assert_eq!(
            &row[column("date")],
            interaction.record.messages[0].sent_at.to_rfc3339().as_str()
        );
        assert_eq!(&row[column("channel")], "chat");
        assert_eq!(&row[column("agent")], "Sam");
        assert_eq!(
            &row[column("overall")],
            effective
                .score
                .map(|score| format!("{score:.1}"))
                .unwrap_or_default()
                .as_str()
        );
        assert_eq!(
            &row[column("auto_fail")],
            effective.auto_fail.to_string().as_str()
        );
        let points = rapport::qa::effective_points(&result, &overrides);
        for (score, points) in result.criteria.iter().zip(points) {
            assert_eq!(
                &row[column(&format!("{}_points", score.criterion))],
                points
                    .map_or_else(|| "n/a".to_owned(), |points| points.to_string())
                    .as_str()
            );
            let overridden = id == target.interaction && score.criterion == criterion;
            assert_eq!(
                &row[column(&format!("{}_overridden", score.criterion))],
                overridden.to_string().as_str()
            );
        }
    }
    let overridden_row = rows
        .iter()
        .find(|row| &row[0] == target.interaction.to_string().as_str())
        .unwrap();
    assert_eq!(
        &overridden_row[column(&format!("{criterion}_points"))],
        points.to_string().as_str()
    );
    // A filter that keeps nothing exports the header alone.
    let response = app
        .get(&qa_lead, "/t/acme/qa/export.csv?agent=Nobody")
        .await;
    assert_eq!(response.text().await.unwrap().lines().count(), 1);
    let exported = audited(&app, acme, AuditAction::QaReportExported);
    assert_eq!(exported.len(), 2);
    assert!(exported[0].contains("agent Sam") || exported[1].contains("agent Sam"));

    // Roles: the auditor gets neither export; the analyst gets the accounts, not the QA report;
    // the QA lead gets the QA report, not the accounts; the tenant admin gets both.
    let auditor = app.signed_in_client("auditor@acme.example").await;
    let analyst = app.signed_in_client("csm@acme.example").await;
    for (client, path, expected) in [
        (
            &auditor,
            "/t/acme/accounts/export.csv",
            StatusCode::FORBIDDEN,
        ),
        (&auditor, "/t/acme/qa/export.csv", StatusCode::FORBIDDEN),
        (&analyst, "/t/acme/qa/export.csv", StatusCode::FORBIDDEN),
        (&analyst, "/t/acme/accounts/export.csv", StatusCode::OK),
        (
            &qa_lead,
            "/t/acme/accounts/export.csv",
            StatusCode::FORBIDDEN,
        ),
        (&admin, "/t/acme/qa/export.csv", StatusCode::OK),
    ] {
        assert_eq!(app.get(client, path).await.status(), expected, "{path}");
    }
    let analyst_page = app.get(&analyst, "/t/acme/qa").await.text().await.unwrap();
    assert!(!analyst_page.contains("qa/export.csv"));

    // An analyst of another tenant gets nothing of acme's.
    let beta = app.create_tenant("beta");
    app.create_user("csm@beta.example", Role::Analyst, Some(&beta));
    app.create_user("admin@beta.example", Role::TenantAdmin, Some(&beta));
    let stranger = app.signed_in_client("csm@beta.example").await;
    let stranger_admin = app.signed_in_client("admin@beta.example").await;
    for client in [&stranger, &stranger_admin] {
        for path in [
            "/t/acme/accounts/export.csv".to_owned(),
            "/t/acme/qa/export.csv".to_owned(),
            format!("/t/acme/accounts/{northwind}"),
        ] {
            assert_eq!(
                app.get(client, &path).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
    let own = app
        .get(&stranger, "/t/beta/accounts/export.csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(own.lines().count(), 1, "beta has no accounts: {own}");
}

#[tokio::test]
async fn a_briefing_by_the_default_model_keeps_only_valid_citations() {
    let Fixture {
        app,
        tenant,
        northwind,
        ..
    } = fixture();
    let acme = tenant.id;
    // The interactions were analysed with `off`; the briefing is now written by the default
    // GGUF model (a tenant's choice of `local` with no model named).
    rapport::inference::store::AnalysisSettingsStore::new(app.context.store.clone())
        .save(
            acme,
            &rapport::inference::store::AnalysisSettings {
                backend: BackendKind::Local,
                model_sha256: None,
                remote: None,
            },
        )
        .unwrap();
    briefing::request(&app.context, &Actor::cli(), None, acme, northwind).unwrap();
    let totals = run_queue(&app.context, acme);
    assert_eq!((totals.done, totals.failed), (1, 0));
    let analysis = app
        .context
        .analysis
        .analysis(acme, northwind, AnalysisKind::Briefing)
        .unwrap()
        .unwrap();
    assert_eq!(analysis.provenance.backend, BackendKind::Local);
    assert_eq!(analysis.provenance.model, DEFAULT_MODEL_SHA256);
    let AnalysisResult::Briefing(stored) = &analysis.result else {
        panic!("not a briefing");
    };
    eprintln!(
        "default model briefing ({}, {} ms): {}",
        analysis.provenance.analyzer, analysis.provenance.duration_ms, stored.text
    );
    let mine: HashSet<RecordId> = interactions_of(&app, acme, "A-1").into_iter().collect();
    assert_eq!(stored.sources.len(), 3);
    assert!(stored.sources.iter().all(|id| mine.contains(id)));
    assert!(stored.cited.iter().all(|id| stored.sources.contains(id)));
    // It cites what it draws on (the model's marks, or those its sentences' words support).
    assert!(!stored.cited.is_empty(), "{}", stored.text);
    assert!(!stored.text.trim().is_empty());
    assert!(stored.text.chars().count() <= briefing::MAX_BRIEFING_CHARS);
    assert_eq!(
        briefing::keep_valid_citations(&stored.text, stored.sources.len()).0,
        stored.text,
        "only valid citations are stored"
    );

    let analyst = app.signed_in_client("csm@acme.example").await;
    let page = app
        .get(&analyst, &format!("/t/acme/accounts/{northwind}"))
        .await
        .text()
        .await
        .unwrap();
    let links = citation_links(&page);
    // Every mark left in the text is a valid one, and each became one link.
    let marks: usize = (1..=stored.sources.len())
        .map(|number| stored.text.matches(&format!("[{number}]")).count())
        .sum();
    assert_eq!(links.len(), marks);
    for link in links {
        let id: RecordId = link
            .strip_prefix("/t/acme/interactions/")
            .unwrap()
            .parse()
            .unwrap();
        assert!(mine.contains(&id));
    }
}

/// `rapport accounts export`: every account with its health, streamed to a new 0600 file (or
/// standard output), audited like the console's export.
#[test]
fn the_accounts_export_command_writes_every_account_with_its_health() {
    use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout};
    use std::os::unix::fs::PermissionsExt as _;

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
    let renewal = (Utc::now() + Duration::days(45)).date_naive();
    let accounts = write(
        dir.path(),
        "accounts.csv",
        &format!(
            "account_id,name,domain,plan,arr,renewal_date,owner_email\n\
             A-1,Northwind,northwind.example,Pro,1200,{renewal},\n\
             A-2,+Contoso,contoso.example,Pro,300,,\n"
        ),
    );
    let output = rapport(
        &[
            "import",
            "--config",
            config,
            "--tenant",
            "acme",
            "--format",
            "accounts",
            accounts.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let file = dir.path().join("accounts-out.csv");
    let output = rapport(
        &[
            "accounts",
            "export",
            "--config",
            config,
            "--tenant",
            "acme",
            "--out",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("exported 2 account(s)"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let body = std::fs::read_to_string(&file).unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    // Oldest imported first; the import's health hook scored A-1 on its renewal date alone (50).
    assert_eq!((&rows[0][1], &rows[0][3]), ("Northwind", "A-1"));
    assert_eq!((&rows[0][7], &rows[0][8]), ("50.0", "Amber (watch)"));
    assert_eq!(&rows[1][1], "'+Contoso");
    assert_eq!(&rows[1][7], "");

    // To standard output, too; an unknown tenant is an error.
    let output = rapport(
        &["accounts", "export", "--config", config, "--tenant", "acme"],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), body);
    let output = rapport(
        &[
            "accounts", "export", "--config", config, "--tenant", "nobody",
        ],
        None,
    );
    assert!(!output.status.success());
}
