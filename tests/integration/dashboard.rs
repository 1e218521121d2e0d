//! Dashboards end to end: accounts, interactions and reviews imported through the real import
//! path and analysed with the `off` backend; the page draws every chart and each CSV holds exactly
//! the hand-computed numbers (or, for the model-derived sentiment and topics, the numbers counted
//! independently from the stored analyses); the aggregates kept incrementally through imports,
//! API writes, re-analyses, a rolled-back import and `forget` equal a rebuild from scratch; and
//! only tenant admins, analysts and QA leads of the tenant see the dashboard.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{Duration, NaiveDate, Utc};
use rapport::analysis::AnalysisResult;
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::context::AppContext;
use rapport::ids::{ImportId, RecordId, TenantId};
use rapport::ingest::{self, ImportFormat, ImportRequest};
use rapport::insights::{self, InsightsStore};
use rapport::tenants::Tenant;
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{run_queue, use_off_backend, write_interaction, TestApp};

fn import(context: &AppContext, tenant: &Tenant, format: ImportFormat, path: &Path) {
    import_committed(context, tenant, format, path);
}

use crate::helpers::{import_committed, write_file as write, ShrinkingSource};

pub(crate) fn day(days_ago: i64) -> NaiveDate {
    (Utc::now() - Duration::days(days_ago)).date_naive()
}

/// One interaction whose first message was `days_ago` days ago (at noon).
fn interaction(id: &str, channel: &str, account: &str, days_ago: i64, text: &str) -> String {
    let at = format!("{}T12:00:00Z", day(days_ago));
    serde_json::json!({
        "source_system": "desk", "source_id": id, "channel": channel, "account": account,
        "tags": ["team:Blue"],
        "messages": [
            {"role": "customer", "author_name": "Ann Lee", "sent_at": at, "text": text},
            {"role": "agent", "author_name": "Sam Hill", "sent_at": at,
             "text": "Hello Ann, thanks for reaching out. I have fixed it. Have a nice day!"}
        ]
    })
    .to_string()
}

const ACCOUNTS: &str = "account_id,name,domain,plan,arr,renewal_date,owner_email\n\
    A-1,Northwind,northwind.example,Pro,1200,,csm@acme.example\n\
    A-2,Contoso,contoso.example,Basic,300,,other@acme.example\n";

/// Five interactions over three days (2, 1 and 1 days ago … and one outside the range).
fn interactions_file() -> String {
    [
        interaction(
            "T-1",
            "chat",
            "A-1",
            2,
            "Thank you, the new dashboard is great!",
        ),
        interaction(
            "T-2",
            "chat",
            "A-2",
            2,
            "The invoice is wrong and I am angry.",
        ),
        interaction(
            "T-3",
            "email",
            "A-1",
            1,
            "Where is my refund? This is terrible.",
        ),
        interaction(
            "T-4",
            "ticket",
            "northwind.example",
            1,
            "Password reset does not work.",
        ),
        interaction("T-5", "chat", "A-1", 40, "Old question about billing."),
    ]
    .join("\n")
        + "\n"
}

fn reviews_file() -> String {
    let at = |days_ago: i64| format!("{}T09:00:00Z", day(days_ago));
    format!(
        "review_id,platform,location,rating,text,reviewer,reply,reviewed_at,account\n\
         r-1,google,,5,Great service,Jo,,{},\n\
         r-2,google,,1,Never again,Al,,{},\n\
         r-3,trustpilot,,5,Lovely,Bea,,{},\n\
         r-4,google,,3,Fine,Cy,,{},\n",
        at(1),
        at(2),
        at(2),
        at(60)
    )
}

pub(crate) fn set_up(app: &TestApp) -> (Tenant, tempfile::TempDir) {
    let tenant = app.create_tenant("acme");
    use_off_backend(&app.context, tenant.id);
    let dir = tempfile::tempdir().unwrap();
    import(
        &app.context,
        &tenant,
        ImportFormat::Accounts,
        &write(dir.path(), "accounts.csv", ACCOUNTS),
    );
    import(
        &app.context,
        &tenant,
        ImportFormat::Jsonl,
        &write(dir.path(), "chats.jsonl", &interactions_file()),
    );
    import(
        &app.context,
        &tenant,
        ImportFormat::Reviews,
        &write(dir.path(), "reviews.csv", &reviews_file()),
    );
    run_queue(&app.context, tenant.id);
    (tenant, dir)
}

/// Calls `each` with the day of the first message and each stored analysis result of every
/// interaction of the tenant that began in `from..=to`: read from the analyses directly,
/// independently of the aggregates.
fn for_each_analysis(
    context: &AppContext,
    tenant: TenantId,
    from: NaiveDate,
    to: NaiveDate,
    mut each: impl FnMut(NaiveDate, AnalysisResult),
) {
    context
        .interactions
        .for_each(tenant, |interaction| {
            let began = rapport::interactions::query::first_message_time(&interaction.record)
                .unwrap()
                .date_naive();
            if began < from || began > to {
                return Ok(());
            }
            for analysis in context.analysis.analyses(tenant, interaction.id)? {
                each(began, analysis.result);
            }
            Ok(())
        })
        .unwrap();
}

/// Sentiment labels per day of the tenant's interactions in `from..=to`, counted from the stored
/// analyses directly (independently of the aggregates).
fn sentiment_by_day(
    context: &AppContext,
    tenant: TenantId,
    from: NaiveDate,
    to: NaiveDate,
) -> BTreeMap<(NaiveDate, String), i64> {
    let mut counts = BTreeMap::new();
    for_each_analysis(context, tenant, from, to, |began, result| {
        if let AnalysisResult::Sentiment { overall, .. } = result {
            *counts
                .entry((began, overall.label.to_lowercase()))
                .or_insert(0) += 1;
        }
    });
    counts
}

#[tokio::test]
async fn the_dashboard_draws_every_chart_and_each_csv_is_exactly_its_data() {
    let app = TestApp::spawn();
    let (tenant, _dir) = set_up(&app);
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let analyst = app.signed_in_client("analyst@acme.example").await;

    let (from, to) = (day(3), day(0));
    let filters = format!("from={from}&to={to}");
    let page = app
        .get(&analyst, &format!("/t/acme/dashboard?{filters}"))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    for id in [
        "sentiment",
        "volume",
        "topics",
        "qa-agents",
        "qa-criteria",
        "reviews",
        "health",
    ] {
        assert!(
            html.contains("<figure class=\"chart chart-")
                && html.contains(&format!("id=\"chart-{id}\"")),
            "chart {id} is on the page"
        );
        assert!(
            html.contains(&format!(
                "/t/acme/dashboard/{id}.csv?from={from}&#38;to={to}"
            )) || html.contains(&format!(
                "/t/acme/dashboard/{id}.csv?from={from}&amp;to={to}"
            )),
            "chart {id} links its CSV"
        );
    }
    assert!(html.contains("role=\"img\""));
    assert!(
        !html.contains("<script"),
        "the dashboard works without JavaScript"
    );

    let csv = |name: &'static str| {
        let analyst = analyst.clone();
        let url = app.url(&format!("/t/acme/dashboard/{name}.csv?{filters}"));
        async move {
            let response = analyst.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{name}.csv");
            assert!(response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv"));
            response.text().await.unwrap()
        }
    };

    // Volume by channel, by hand: two chats two days ago, an e-mail and a ticket yesterday;
    // the chat of 40 days ago is outside the range.
    let expected_volume = format!(
        "day,ticket,chat,email\n{},0,0,0\n{},0,2,0\n{},1,0,1\n{},0,0,0\n",
        day(3),
        day(2),
        day(1),
        day(0)
    );
    assert_eq!(csv("volume").await, expected_volume);
    // The same rows are the chart's data table on the page.
    assert!(html.contains(&format!(
        "<td>{}</td><td>0</td><td>2</td><td>0</td>",
        day(2)
    )));

    // Review ratings in the range: 5, 1 and 5 stars (the 3 stars of 60 days ago is outside).
    assert_eq!(
        csv("reviews").await,
        "rating,count\n1 star,1\n2 stars,0\n3 stars,0\n4 stars,0\n5 stars,2\n"
    );

    // Sentiment per day, against a count of the stored analyses.
    let counted = sentiment_by_day(&app.context, tenant.id, from, to);
    assert_eq!(
        counted.values().sum::<i64>(),
        4,
        "every interaction in range analysed"
    );
    let mut expected = String::from("day,positive,neutral,negative\n");
    for offset in (0..=3).rev() {
        let d = day(offset);
        let n = |label: &str| counted.get(&(d, label.to_owned())).copied().unwrap_or(0);
        writeln!(
            expected,
            "{d},{},{},{}",
            n("positive"),
            n("neutral"),
            n("negative")
        )
        .unwrap();
    }
    assert_eq!(csv("sentiment").await, expected);

    // QA by agent and team: every scored interaction was answered by Sam Hill of team Blue.
    let qa = csv("qa-agents").await;
    let mut lines = qa.lines();
    assert_eq!(lines.next(), Some("group,mean QA score"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{qa}");
    assert!(rows[0].starts_with("agent: Sam Hill,"));
    assert!(rows[1].starts_with("team: Blue,"));
    assert_eq!(
        rows[0].split(',').nth(1),
        rows[1].split(',').nth(1),
        "one agent in one team: the same mean"
    );

    // Health: neither account has a snapshot with a score yet, or both are banded; the CSV
    // counts every account once.
    let health = csv("health").await;
    let total: u64 = health
        .lines()
        .skip(1)
        .map(|line| line.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 2, "{health}");

    // Filtering by owner keeps only the owner's accounts' interactions (A-1 and its domain).
    let owner_volume = analyst
        .get(app.url(&format!(
            "/t/acme/dashboard/volume.csv?{filters}&owner=csm%40acme.example"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        owner_volume,
        format!(
            "day,ticket,chat,email\n{},0,0,0\n{},0,1,0\n{},1,0,1\n{},0,0,0\n",
            day(3),
            day(2),
            day(1),
            day(0)
        )
    );
    // A channel filter keeps only its series; no data at all says so.
    let chat_only = analyst
        .get(app.url(&format!(
            "/t/acme/dashboard?from={}&to={}&channel=call",
            day(3),
            day(0)
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(chat_only.contains("No data for these filters."));
    let refused = analyst
        .get(app.url("/t/acme/dashboard?from=2026-13-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    // A page built before a write is not served after it: an API write today shows at once.
    write_interaction(
        &app.context,
        tenant.id,
        serde_json::from_str(&interaction("T-6", "chat", "A-2", 0, "Hello again")).unwrap(),
    );
    let after_write = csv("volume").await;
    assert!(
        after_write.ends_with(&format!("{},0,1,0\n", day(0))),
        "{after_write}"
    );

    // The account page draws the health history over the bands, its table the text alternative.
    let mut northwind = None;
    app.context
        .accounts
        .for_each(tenant.id, |account| {
            if account.record.source_id == "A-1" {
                northwind = Some(account.id);
            }
            Ok(())
        })
        .unwrap();
    let northwind = northwind.unwrap();
    let account_page = app
        .get(&analyst, &format!("/t/acme/accounts/{northwind}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(account_page.contains("id=\"chart-health-history\""));
    assert!(account_page.contains("id=\"health-history-table\""));
    assert!(account_page.contains("role=\"img\""));

    // Audited: the page as a read of personal data, each CSV as an export.
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 10_000)
        .unwrap();
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::PersonalDataRead
            && entry.event.target == "dashboard"));
    assert!(entries
        .iter()
        .any(|entry| entry.event.action == AuditAction::DashboardExported
            && entry.event.target.starts_with("dashboard volume.csv")));
}

#[tokio::test]
async fn only_the_tenants_admins_analysts_and_qa_leads_see_its_dashboard() {
    let app = TestApp::spawn();
    let acme = app.create_tenant("acme");
    let beta = app.create_tenant("beta");
    app.create_user("a@beta.example", Role::Analyst, Some(&beta));
    app.create_user("auditor@acme.example", Role::Auditor, Some(&acme));
    app.create_user("privacy@acme.example", Role::PrivacyOfficer, Some(&acme));
    app.create_user("qa@acme.example", Role::QaLead, Some(&acme));
    let stranger = app.signed_in_client("a@beta.example").await;
    for path in ["/t/acme/dashboard", "/t/acme/dashboard/topics.csv"] {
        assert_eq!(
            app.get(&stranger, path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        app.get(&stranger, "/t/beta/dashboard").await.status(),
        StatusCode::OK
    );
    for email in ["auditor@acme.example", "privacy@acme.example"] {
        let client = app.signed_in_client(email).await;
        assert_eq!(
            app.get(&client, "/t/acme/dashboard").await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.get(&client, "/t/acme/dashboard/volume.csv")
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
        let home = app.get(&client, "/t/acme/").await.text().await.unwrap();
        assert!(
            !home.contains("/t/acme/dashboard"),
            "no Dashboard link for {email}"
        );
    }
    let qa_lead = app.signed_in_client("qa@acme.example").await;
    let home = app.get(&qa_lead, "/t/acme/").await.text().await.unwrap();
    assert!(home.contains("href=\"/t/acme/dashboard\""));
    assert_eq!(
        app.get(&qa_lead, "/t/acme/dashboard/nonsense.csv")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let _ = acme;
}

/// The aggregates as the dashboard and account pages read them: the day buckets, the number of
/// directory entries, and each account's sums (in account id order).
pub(crate) fn snapshot(
    context: &AppContext,
    tenant: TenantId,
) -> (
    Vec<(NaiveDate, insights::DayBucket)>,
    usize,
    Vec<insights::account_sums::AccountSums>,
) {
    let store = InsightsStore::new(context.store.clone());
    let buckets = store.buckets(tenant, day(400), day(-1)).unwrap();
    let mut directory = store.directory(tenant).unwrap();
    directory.accounts.sort_by_key(|entry| entry.id);
    let sums = directory
        .accounts
        .iter()
        .map(|entry| {
            let names: Vec<&str> = entry.keys.iter().map(String::as_str).collect();
            insights::account_sums::of_account(&store, tenant, &names).unwrap()
        })
        .collect();
    (buckets, directory.accounts.len(), sums)
}

pub(crate) fn total_volume(buckets: &[(NaiveDate, insights::DayBucket)]) -> i64 {
    buckets
        .iter()
        .flat_map(|(_, bucket)| &bucket.cells)
        .map(|cell| cell.volume)
        .sum()
}

#[tokio::test]
async fn incremental_aggregates_equal_a_rebuild_after_imports_reanalyses_rollbacks_and_forgets() {
    let app = TestApp::spawn();
    let (tenant, dir) = set_up(&app);
    let context = &app.context;
    let (buckets, accounts, sums) = snapshot(context, tenant.id);
    assert_eq!(total_volume(&buckets), 5);
    assert_eq!(accounts, 2);
    assert_eq!(
        sums.iter().map(|sums| sums.interactions).sum::<i64>(),
        5,
        "every interaction counts in its account's sums: {sums:?}"
    );

    // An update through the API moves T-2 to another day and channel; a forced re-analysis.
    let mut moved: rapport::interactions::InteractionRecord = serde_json::from_str(&interaction(
        "T-2",
        "call",
        "A-2",
        5,
        "All good now, thanks!",
    ))
    .unwrap();
    moved.subject = Some("Moved".to_owned());
    let written = write_interaction(context, tenant.id, moved);
    rapport::analysis::enqueue_interaction(
        context,
        tenant.id,
        written.id,
        rapport::analysis::jobs::Priority::Live,
        true,
    )
    .unwrap();
    run_queue(context, tenant.id);

    // A re-import that changes T-3's channel, then an import rolled back half-way whose records
    // (an update of T-1 and a new T-9) must leave no trace.
    import(
        context,
        &tenant,
        ImportFormat::Jsonl,
        &write(
            dir.path(),
            "again.jsonl",
            &(interaction(
                "T-3",
                "ticket",
                "A-1",
                1,
                "Where is my refund? This is terrible.",
            ) + "\n"),
        ),
    );
    run_queue(context, tenant.id);
    let whole = write(
        dir.path(),
        "whole.jsonl",
        &format!(
            "{}\n{}\n",
            interaction("T-1", "email", "A-2", 7, "Changed"),
            interaction("T-9", "chat", "A-1", 3, "New")
        ),
    );
    let short = write(
        dir.path(),
        "short.jsonl",
        &format!("{}\n", interaction("T-1", "email", "A-2", 7, "Changed")),
    );
    let outcome = ingest::import_from_source(
        context,
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

    // Erasure of T-4 and of the 1-star review: the records go, then `forget`.
    let find = |key: &str| {
        context
            .interactions
            .find_by_source(tenant.id, &format!("desk\u{0}{key}"))
            .unwrap()
            .unwrap()
            .id
    };
    let erased = find("T-4");
    context
        .interactions
        .records(tenant.id)
        .unwrap()
        .remove(&erased)
        .unwrap();
    let mut review: Option<RecordId> = None;
    context
        .signals
        .for_each(tenant.id, |signal| {
            if signal.record.source_id == "r-2" {
                review = Some(signal.id);
            }
            Ok(())
        })
        .unwrap();
    let review = review.unwrap();
    context
        .signals
        .records(tenant.id)
        .unwrap()
        .remove(&review)
        .unwrap();
    insights::forget(context, tenant.id, &[erased], &[review]).unwrap();
    // Forgetting twice changes nothing.
    insights::forget(context, tenant.id, &[erased], &[review]).unwrap();

    let incremental = snapshot(context, tenant.id);
    assert_eq!(
        total_volume(&incremental.0),
        4,
        "T-4 forgotten, T-9 rolled back"
    );
    let ratings: i64 = incremental
        .0
        .iter()
        .flat_map(|(_, bucket)| bucket.reviews.values())
        .map(|counts| counts[0])
        .sum();
    assert_eq!(ratings, 0, "the erased 1-star review no longer counts");
    let call_day = incremental
        .0
        .iter()
        .find(|(d, _)| *d == day(5))
        .expect("T-2 counts on its new day");
    assert_eq!(call_day.1.cells[0].channel, "call");

    let mut progress = Vec::new();
    let done = insights::rebuild(context, tenant.id, &mut |step| progress.push(step)).unwrap();
    assert_eq!((done.accounts, done.interactions), (2, 4));
    assert!(!progress.is_empty());
    let rebuilt = snapshot(context, tenant.id);
    assert_eq!(
        incremental, rebuilt,
        "incremental maintenance equals a rebuild"
    );
}

#[test]
fn the_rebuild_command_prints_progress() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::cli_instance(dir.path(), crate::helpers::free_port());
    let created = crate::helpers::rapport(
        &[
            "tenant",
            "create",
            "--config",
            config.to_str().unwrap(),
            "--slug",
            "acme",
            "--name",
            "Acme",
        ],
        None,
    );
    assert!(
        created.status.success(),
        "{}",
        crate::helpers::stderr(&created)
    );
    let rebuilt = crate::helpers::rapport(
        &[
            "insights",
            "rebuild",
            "--config",
            config.to_str().unwrap(),
            "--tenant",
            "acme",
        ],
        None,
    );
    assert!(
        rebuilt.status.success(),
        "{}",
        crate::helpers::stderr(&rebuilt)
    );
    let out = crate::helpers::stdout(&rebuilt);
    assert!(
        out.contains("0 account(s), 0 interaction(s), 0 signal(s) counted"),
        "{out}"
    );
    assert!(
        out.contains("rebuilt the dashboard aggregates of acme"),
        "{out}"
    );
}

#[tokio::test]
async fn a_retention_sweep_takes_deleted_interactions_out_of_the_aggregates() {
    use rapport::retention::{self, Category, Keep, Policies, Trigger};

    let app = TestApp::spawn();
    let (tenant, _dir) = set_up(&app);
    let context = &app.context;
    let (before, _, _) = snapshot(context, tenant.id);
    assert_eq!(total_volume(&before), 5);
    assert!(
        before.iter().any(|(d, _)| *d == day(40)),
        "T-5 counts on its day before the sweep"
    );

    let mut policies = Policies::default();
    policies.set(Category::Interactions, Keep::Days(30));
    retention::save_policies(context, &Actor::cli(), None, tenant.id, &policies).unwrap();
    let generation = insights::store::generation(tenant.id);
    let report = retention::run(
        context,
        &Actor::cli(),
        None,
        tenant.id,
        Trigger::CommandLine,
        Utc::now(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.total_deleted(), 1, "only T-5 is older than 30 days");
    assert!(
        insights::store::generation(tenant.id) > generation,
        "a dashboard cached before the sweep is no longer served"
    );

    let after = snapshot(context, tenant.id);
    assert_eq!(
        total_volume(&after.0),
        4,
        "the swept interaction no longer counts"
    );
    let old_day = after.0.iter().find(|(d, _)| *d == day(40));
    assert!(
        old_day.is_none_or(|(_, bucket)| bucket.cells.iter().all(|cell| cell.volume == 0)),
        "nothing is left on the swept interaction's day"
    );
    insights::rebuild(context, tenant.id, &mut |_| {}).unwrap();
    assert_eq!(
        after,
        snapshot(context, tenant.id),
        "the sweep's correction equals a rebuild"
    );
}

/// Per criterion, points above the scale's lowest and the most there are, of the stored QA
/// analyses of `agent`'s interactions whose first message is in `from..=to`; read from the
/// analyses directly, independently of the aggregates. `None` agent: every interaction.
fn criterion_points(
    context: &AppContext,
    tenant: TenantId,
    agent: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> BTreeMap<String, (i64, i64)> {
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for_each_analysis(context, tenant, from, to, |_, result| {
        let AnalysisResult::Qa(result) = result else {
            return;
        };
        if agent.is_some_and(|agent| result.agent.as_deref() != Some(agent)) {
            return;
        }
        let points = rapport::qa::effective_points(&result, &[]);
        for (score, points) in result.criteria.iter().zip(points) {
            let Some(points) = points else { continue };
            let entry = sums.entry(score.name.clone()).or_default();
            entry.0 += i64::from(points - score.scale.min());
            entry.1 += i64::from(score.scale.max() - score.scale.min());
        }
    });
    sums
}

/// The (criterion, share %) rows of a `qa-criteria` CSV.
fn criterion_rows(csv: &str) -> Vec<(String, f64)> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("criterion,% of points"), "{csv}");
    lines
        .map(|line| {
            let (name, share) = line.rsplit_once(',').unwrap();
            (name.trim_matches('"').to_owned(), share.parse().unwrap())
        })
        .collect()
}

#[allow(clippy::cast_precision_loss)] // a few points
fn assert_shares(rows: &[(String, f64)], expected: &BTreeMap<String, (i64, i64)>, what: &str) {
    let expected: Vec<(String, f64)> = expected
        .iter()
        .filter(|(_, (_, most))| *most > 0)
        .map(|(name, (points, most))| (name.clone(), *points as f64 / *most as f64 * 100.0))
        .collect();
    assert_eq!(
        rows.len(),
        expected.len(),
        "{what}: {rows:?} against {expected:?}"
    );
    for ((name, share), (expected_name, expected_share)) in rows.iter().zip(&expected) {
        assert_eq!(name, expected_name, "{what}");
        assert!(
            (share - expected_share).abs() < 0.051,
            "{what}, {name}: {share} against {expected_share}"
        );
    }
}

#[tokio::test]
async fn the_criterion_chart_breaks_down_one_agent_team_or_ai_agent() {
    let app = TestApp::spawn();
    let (tenant, dir) = set_up(&app);
    // A second agent, Kim Ray of team Red, who answers curtly: other points per criterion.
    let curt = |id: &str, days_ago: i64| {
        let at = format!("{}T09:00:00Z", day(days_ago));
        serde_json::json!({
            "source_system": "desk", "source_id": id, "channel": "chat", "account": "A-2",
            "tags": ["team:Red"],
            "messages": [
                {"role": "customer", "author_name": "Bo Park", "sent_at": at,
                 "text": "My invoice is wrong and nobody answers."},
                {"role": "agent", "author_name": "Kim Ray", "sent_at": at, "text": "no"}
            ]
        })
        .to_string()
    };
    import(
        &app.context,
        &tenant,
        ImportFormat::Jsonl,
        &write(
            dir.path(),
            "curt.jsonl",
            &format!("{}\n{}\n", curt("K-1", 1), curt("K-2", 2)),
        ),
    );
    run_queue(&app.context, tenant.id);
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let analyst = app.signed_in_client("analyst@acme.example").await;
    let (from, to) = (day(3), day(0));
    let csv = |group: Option<&'static str>| {
        let analyst = analyst.clone();
        let query = match group {
            Some(group) => format!(
                "from={from}&to={to}&qa_group={}",
                group.replace(' ', "%20").replace(':', "%3A")
            ),
            None => format!("from={from}&to={to}"),
        };
        let url = app.url(&format!("/t/acme/dashboard/qa-criteria.csv?{query}"));
        async move {
            let response = analyst.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.unwrap()
        }
    };

    let context = &app.context;
    let kim = criterion_points(context, tenant.id, Some("Kim Ray"), from, to);
    let sam = criterion_points(context, tenant.id, Some("Sam Hill"), from, to);
    assert!(
        !kim.is_empty() && !sam.is_empty(),
        "both agents were scored"
    );
    assert_ne!(
        kim, sam,
        "the two agents' points differ, so a breakdown shows something"
    );
    let kim_rows = criterion_rows(&csv(Some("agent:Kim Ray")).await);
    assert_shares(&kim_rows, &kim, "agent Kim Ray");
    assert_shares(
        &criterion_rows(&csv(Some("agent:Sam Hill")).await),
        &sam,
        "agent Sam Hill",
    );
    // Kim is team Red's only agent; the whole is both agents together.
    assert_eq!(criterion_rows(&csv(Some("team:Red")).await), kim_rows);
    assert_shares(
        &criterion_rows(&csv(None).await),
        &criterion_points(context, tenant.id, None, from, to),
        "every agent",
    );

    // The page offers the groups and names the one shown.
    let page = app
        .get(
            &analyst,
            &format!("/t/acme/dashboard?from={from}&to={to}&qa_group=agent%3AKim%20Ray"),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<option value=\"agent:Kim Ray\" selected>agent: Kim Ray</option>"));
    assert!(page.contains("<option value=\"team:Blue\">team: Blue</option>"));
    assert!(page.contains("QA score per criterion — agent: Kim Ray"));
    let refused = analyst
        .get(app.url("/t/acme/dashboard?qa_group=boss%3AKim"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("qa_group"));

    // A rebuild from the data gives the same breakdown.
    insights::rebuild(context, tenant.id, &mut |_| {}).unwrap();
    assert_eq!(criterion_rows(&csv(Some("agent:Kim Ray")).await), kim_rows);
}
