//! Leads: the lead analyzer's facts with their evidence on a known sales chat (the `off`
//! backend), the inbox and the lead page, Mark as lead, status and assignee with their audit,
//! the `HubSpot` and Salesforce CSV exports (exact headers, the lead's data, restricted subjects
//! left out), and the outbound webhook (signed, retried on 500, failed on 4xx and sent again,
//! only the selected fields, never a restricted subject, every attempt audited).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rapport::analysis::{AnalysisKind, AnalysisResult};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::context::AppContext;
use rapport::ids::{RecordId, TenantId};
use rapport::interactions::InteractionRecord;
use rapport::leads::store::LeadStore;
use rapport::leads::webhook::{self, DeliveryState, Schedule};
use rapport::leads::LeadStatus;
use rapport::privacy::{restrict, RestrictionKind};
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{escaped, run_queue, use_off_backend, write_interaction, TestApp};

const HOT: &str = "Hi! We are 1,500 employees and we use Zendesk today. Budget is $90k a year. We want to buy 200 seats and sign the contract today.";

fn chat(channel: &str, source_id: &str, name: &str, email: &str, text: &str) -> InteractionRecord {
    serde_json::from_value(serde_json::json!({
        "source_system": "website", "source_id": source_id, "channel": channel,
        "messages": [
            {"role": "ai-agent", "sent_at": "2026-10-06T10:00:00Z", "text": "Welcome! How can I help?"},
            {"role": "customer", "author_name": name, "author_email": email,
             "sent_at": "2026-10-06T10:00:05Z", "text": text}
        ]
    }))
    .unwrap()
}

fn qualification(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
) -> rapport::analysis::lead::LeadQualification {
    match context
        .analysis
        .analysis(tenant, id, AnalysisKind::Lead)
        .unwrap()
        .unwrap_or_else(|| panic!("no lead analysis of {id}"))
        .result
    {
        AnalysisResult::Lead(lead) => lead,
        other => panic!("{other:?}"),
    }
}

fn audit_targets(context: &AppContext, tenant: TenantId, action: AuditAction) -> Vec<String> {
    context
        .audit_log
        .entries(AuditView::Tenant(tenant), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.event.action == action)
        .map(|entry| entry.event.target)
        .collect()
}

async fn analyse(app: &TestApp, tenant: TenantId) {
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || run_queue(&context, tenant))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_sales_chat_is_qualified_with_evidence_and_worked_in_the_inbox() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let analyst = app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let qa_lead = app.create_user("qa@acme.example", Role::QaLead, Some(&tenant));
    use_off_backend(&app.context, tenant.id);
    let hot = write_interaction(
        &app.context,
        tenant.id,
        chat(
            "sales-chat",
            "S-1",
            "Dana Scully",
            "dana@globex.example",
            HOT,
        ),
    );
    let support = write_interaction(
        &app.context,
        tenant.id,
        chat(
            "chat",
            "C-1",
            "Fox Mulder",
            "fox@initech.example",
            "We are switching from Freshdesk next month and want a quote for 40 people.",
        ),
    );
    analyse(&app, tenant.id).await;

    // The analyzer's fields, each fact with the visitor's own sentence.
    let lead = qualification(&app.context, tenant.id, hot.id);
    assert_eq!(lead.intent.label, "ready_to_buy");
    assert_eq!(
        rapport::analysis::lead::intent_group(&lead.intent.label),
        "buying"
    );
    assert_eq!(lead.facts.budget.as_deref(), Some("$90k a year"));
    assert_eq!(lead.facts.company_size, Some(1500));
    assert_eq!(lead.facts.timeline, "now");
    assert_eq!(lead.facts.current_solution.as_deref(), Some("Zendesk"));
    let quote = |fact: &str| {
        lead.evidence_for(fact)
            .map(|evidence| evidence.quote.clone())
    };
    assert_eq!(quote("budget").as_deref(), Some("Budget is $90k a year."));
    assert_eq!(
        quote("company_size").as_deref(),
        Some("We are 1,500 employees and we use Zendesk today.")
    );
    assert_eq!(quote("current_solution"), quote("company_size"));
    assert!(quote("timeline").unwrap().contains("today"));
    for found in &lead.evidence {
        assert_eq!(found.evidence.message, 1);
        assert!(HOT.contains(&found.evidence.quote));
    }
    // Not a sales chat, not marked: no lead.
    assert!(app
        .context
        .analysis
        .analysis(tenant.id, support.id, AnalysisKind::Lead)
        .unwrap()
        .is_none());

    let client = app.signed_in_client("analyst@acme.example").await;
    let inbox = app
        .get(&client, "/t/acme/leads")
        .await
        .text()
        .await
        .unwrap();
    assert!(inbox.contains("1 lead(s)"), "{inbox}");
    assert!(
        inbox.contains(&escaped("Dana Scully <dana@globex.example>")),
        "{inbox}"
    );
    for shown in [
        "buying · ready to buy",
        "$90k a year",
        "1500",
        "Zendesk",
        "now",
    ] {
        assert!(inbox.contains(shown), "{shown} in {inbox}");
    }
    assert!(!inbox.contains("Fox Mulder"), "{inbox}");
    let page = app
        .get(&client, &format!("/t/acme/leads/{}", hot.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&escaped("Budget is $90k a year.")), "{page}");
    assert!(
        page.contains(&format!("/t/acme/interactions/{}#message-2", hot.id)),
        "{page}"
    );
    assert!(
        audit_targets(&app.context, tenant.id, AuditAction::PersonalDataRead)
            .contains(&format!("lead {}", hot.id))
    );

    // Status and assignee, audited; only a user who works leads can be assigned.
    let response = app
        .post_form(
            &client,
            &format!("/t/acme/leads/{}/status", hot.id),
            &[("status", "qualified")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let analyst_id = analyst.id.to_string();
    let response = app
        .post_form(
            &client,
            &format!("/t/acme/leads/{}/assign", hot.id),
            &[("assignee", analyst_id.as_str())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let qa_id = qa_lead.id.to_string();
    let response = app
        .post_form(
            &client,
            &format!("/t/acme/leads/{}/assign", hot.id),
            &[("assignee", qa_id.as_str())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let state = LeadStore::new(app.context.store.clone())
        .state(tenant.id, hot.id)
        .unwrap();
    assert_eq!(state.status, LeadStatus::Qualified);
    assert_eq!(state.assignee, Some(analyst.id));
    assert_eq!(
        audit_targets(&app.context, tenant.id, AuditAction::LeadStatusChanged),
        vec![format!("lead {}: new to qualified", hot.id)]
    );
    assert_eq!(
        audit_targets(&app.context, tenant.id, AuditAction::LeadAssigned),
        vec![format!("lead {} to user {}", hot.id, analyst.id)]
    );

    // Mark as lead: the support chat joins the inbox and gets its lead analysis.
    let response = app
        .post_form(
            &client,
            &format!("/t/acme/interactions/{}/mark-lead", support.id),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    analyse(&app, tenant.id).await;
    let marked = qualification(&app.context, tenant.id, support.id);
    assert_eq!(marked.facts.current_solution.as_deref(), Some("Freshdesk"));
    assert_eq!(marked.facts.company_size, Some(40));
    let inbox = app
        .get(&client, "/t/acme/leads?sort=time")
        .await
        .text()
        .await
        .unwrap();
    assert!(inbox.contains("2 lead(s)"), "{inbox}");
    assert!(inbox.contains("Fox Mulder"), "{inbox}");
    // Filters: status, assignee, intent group.
    let qualified = app
        .get(&client, "/t/acme/leads?status=qualified")
        .await
        .text()
        .await
        .unwrap();
    assert!(qualified.contains("1 lead(s)") && qualified.contains("Dana Scully"));
    let unassigned = app
        .get(&client, "/t/acme/leads?assignee=none")
        .await
        .text()
        .await
        .unwrap();
    assert!(unassigned.contains("1 lead(s)") && unassigned.contains("Fox Mulder"));
    let browsing = app
        .get(&client, "/t/acme/leads?intent=browsing")
        .await
        .text()
        .await
        .unwrap();
    assert!(!browsing.contains("Dana Scully"), "{browsing}");
    let interaction_page = app
        .get(&client, &format!("/t/acme/interactions/{}", support.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        interaction_page.contains("Unmark as lead"),
        "{interaction_page}"
    );
    let response = app
        .post_form(
            &client,
            &format!("/t/acme/interactions/{}/unmark-lead", support.id),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let inbox = app
        .get(&client, "/t/acme/leads")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        inbox.contains("1 lead(s)") && !inbox.contains("Fox Mulder"),
        "{inbox}"
    );
    assert_eq!(
        audit_targets(&app.context, tenant.id, AuditAction::LeadMarked),
        vec![format!("interaction {}", support.id)]
    );
    assert_eq!(
        audit_targets(&app.context, tenant.id, AuditAction::LeadUnmarked).len(),
        1
    );

    // A QA lead does not work leads.
    let qa = app.signed_in_client("qa@acme.example").await;
    assert_eq!(
        app.get(&qa, "/t/acme/leads").await.status(),
        StatusCode::FORBIDDEN
    );
    let response = app
        .post_form(
            &qa,
            &format!("/t/acme/interactions/{}/mark-lead", support.id),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// Writes two sales chats, analyses them and qualifies both; the second subject restricts.
async fn two_qualified_leads(app: &TestApp, tenant: TenantId) -> (RecordId, RecordId) {
    use_off_backend(&app.context, tenant);
    let dana = write_interaction(
        &app.context,
        tenant,
        chat(
            "sales-chat",
            "S-1",
            "Dana Scully",
            "dana@globex.example",
            HOT,
        ),
    );
    let walter = write_interaction(
        &app.context,
        tenant,
        chat(
            "sales-chat",
            "S-2",
            "Walter Skinner",
            "walter@fbi.example",
            "We have 300 staff and a budget of $20k a year.",
        ),
    );
    analyse(app, tenant).await;
    for id in [dana.id, walter.id] {
        rapport::leads::set_status(
            &app.context,
            &Actor::cli(),
            None,
            tenant,
            id,
            LeadStatus::Qualified,
        )
        .unwrap();
    }
    (dana.id, walter.id)
}

fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|record| {
            headers
                .iter()
                .cloned()
                .zip(record.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect();
    (headers, rows)
}

#[tokio::test]
async fn qualified_leads_export_as_hubspot_and_salesforce_csv_without_restricted_subjects() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let (dana, walter) = two_qualified_leads(&app, tenant.id).await;
    restrict(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "walter@fbi.example",
        RestrictionKind::Objection,
        "DSR-7",
    )
    .unwrap();
    let client = app.signed_in_client("analyst@acme.example").await;

    // A GET exports nothing: the export is a POST with the form's CSRF token.
    let response = app.get(&client, "/t/acme/leads/export/hubspot.csv").await;
    assert!(response.status().is_client_error(), "{}", response.status());
    let inbox = app
        .get(&client, "/t/acme/leads")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        inbox.contains("method=\"post\" action=\"/t/acme/leads/export/hubspot.csv\""),
        "{inbox}"
    );
    let response = app
        .post_form(&client, "/t/acme/leads/export/hubspot.csv", &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-rapport-left-out"], "1");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let (headers, rows) = read_csv(&response.bytes().await.unwrap());
    // The columns the README documents, in order.
    assert_eq!(
        headers,
        [
            "First Name",
            "Last Name",
            "Email",
            "Company Name",
            "Lead Status",
            "Lifecycle Stage",
            "Rapport Lead Score",
            "Rapport Intent",
            "Rapport Budget",
            "Rapport Company Size",
            "Rapport Timeline",
            "Rapport Current Solution",
            "Rapport Lead ID",
        ]
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    let score = qualification(&app.context, tenant.id, dana)
        .score
        .to_string();
    for (column, value) in [
        ("First Name", "Dana"),
        ("Last Name", "Scully"),
        ("Email", "dana@globex.example"),
        ("Company Name", "globex.example"),
        ("Lifecycle Stage", "Sales Qualified Lead"),
        ("Rapport Lead Score", score.as_str()),
        ("Rapport Intent", "ready to buy"),
        ("Rapport Budget", "$90k a year"),
        ("Rapport Company Size", "1500"),
        ("Rapport Timeline", "now"),
        ("Rapport Current Solution", "Zendesk"),
    ] {
        assert_eq!(row[column], value, "{column}");
    }
    assert_eq!(row["Rapport Lead ID"], dana.to_string());

    let response = app
        .post_form(&client, "/t/acme/leads/export/salesforce.csv", &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-rapport-left-out"], "1");
    let bytes = response.bytes().await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        !text.contains("walter") && !text.contains("Skinner"),
        "{text}"
    );
    let (headers, rows) = read_csv(&bytes);
    assert_eq!(
        headers,
        [
            "First Name",
            "Last Name",
            "Email",
            "Company",
            "Lead Status",
            "Lead Source",
            "No. of Employees",
            "Rating",
            "Description",
        ]
    );
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["First Name"], "Dana");
    assert_eq!(row["Last Name"], "Scully");
    assert_eq!(row["Company"], "globex.example");
    assert_eq!(row["Lead Source"], "Web");
    assert_eq!(row["No. of Employees"], "1500");
    assert_eq!(row["Rating"], "Hot");
    assert!(row["Description"].contains("budget $90k a year"), "{row:?}");
    assert!(
        row["Description"].contains("current solution Zendesk"),
        "{row:?}"
    );

    let mut exports = audit_targets(&app.context, tenant.id, AuditAction::LeadsExported);
    exports.sort();
    assert_eq!(
        exports,
        vec![
            format!("hubspot CSV: 1 qualified leads, 1 left out (restricted); leads: {dana}"),
            format!("salesforce CSV: 1 qualified leads, 1 left out (restricted); leads: {dana}"),
        ]
    );
    assert!(exports
        .iter()
        .all(|target| !target.contains(&walter.to_string())));
}

/// What the test receiver got.
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A loopback HTTP receiver that answers each request with the next of `statuses`.
fn receiver(statuses: Vec<u16>) -> (u16, Arc<Mutex<Vec<Received>>>) {
    receiver_with(statuses, || {})
}

/// [`receiver`], calling `before_answer` once each request is read and before it is answered.
fn receiver_with(
    statuses: Vec<u16>,
    before_answer: impl Fn() + Send + 'static,
) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    std::thread::spawn(move || {
        for status in statuses {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let trimmed = line.trim_end();
                if trimmed.is_empty() {
                    break;
                }
                if let Some((name, value)) = trimmed.split_once(':') {
                    headers.insert(name.trim().to_lowercase(), value.trim().to_owned());
                }
            }
            let length: usize = headers["content-length"].parse().unwrap();
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(Received { headers, body });
            before_answer();
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            stream.flush().unwrap();
        }
    });
    (port, received)
}

#[tokio::test]
async fn the_crm_webhook_is_signed_retried_and_never_sends_a_restricted_subject() {
    let app = allowing_private_networks();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let (port, received) = receiver(vec![500, 200, 404, 200]);
    let admin = app.signed_in_client("admin@acme.example").await;

    // The secret is shown once; only the checked fields are sent; off by default.
    let page = app
        .get(&admin, "/t/acme/settings/crm")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("name=\"enabled\" checked"), "{page}");
    let page = app
        .post_form(&admin, "/t/acme/settings/crm/secret", &[])
        .await
        .text()
        .await
        .unwrap();
    let marker = "<code class=\"secret\">";
    let start = page.find(marker).unwrap() + marker.len();
    let secret = page[start..start + page[start..].find('<').unwrap()].to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let again = app
        .get(&admin, "/t/acme/settings/crm")
        .await
        .text()
        .await
        .unwrap();
    assert!(!again.contains(&secret));
    // Plain http to another machine is refused.
    let response = app
        .post_form(
            &admin,
            "/t/acme/settings/crm",
            &[("url", "http://crm.example.com/hook"), ("enabled", "on")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let url = format!("http://127.0.0.1:{port}/hook");
    let response = app
        .post_form(
            &admin,
            "/t/acme/settings/crm",
            &[
                ("url", url.as_str()),
                ("field_email", "on"),
                ("field_score", "on"),
                ("field_budget", "on"),
                ("field_evidence", "on"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let (dana, walter) = two_qualified_leads(&app, tenant.id).await;
    // Walter objects after his delivery was queued: the check at send time catches it.
    restrict(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "walter@fbi.example",
        RestrictionKind::Objection,
        "DSR-8",
    )
    .unwrap();
    let store = LeadStore::new(app.context.store.clone());
    let delivery_of = |lead: RecordId| {
        store
            .recent_deliveries(tenant.id, 100)
            .unwrap()
            .0
            .into_iter()
            .find(|delivery| delivery.lead == lead)
            .unwrap()
    };

    // First round: Dana's gets 500 (retried), Walter's is skipped.
    assert_eq!(run_due(&app).await, 2);
    assert_eq!(delivery_of(dana).state, DeliveryState::Pending);
    assert_eq!(delivery_of(walter).state, DeliveryState::Skipped);
    // Second round: 200.
    assert_eq!(run_due(&app).await, 1);
    let delivered = delivery_of(dana);
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.attempts.len(), 2);
    assert_eq!(delivered.attempts[0].status, Some(500));
    assert_eq!(delivered.attempts[1].status, Some(200));

    {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), 2, "Walter's lead was never sent");
        for request in got.iter() {
            let timestamp = &request.headers["x-rapport-timestamp"];
            let signature = &request.headers["x-rapport-signature"];
            rapport::api::webhooks::verify_signature(
                secret.as_bytes(),
                timestamp,
                signature,
                &request.body,
                chrono::Utc::now().timestamp(),
            )
            .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let mut keys: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["budget", "email", "event", "evidence", "lead_id", "score", "sent_at"]
            );
            assert_eq!(body["email"], "dana@globex.example");
            assert_eq!(body["budget"], "$90k a year");
            assert_eq!(body["lead_id"], dana.to_string());
            assert!(!String::from_utf8_lossy(&request.body).contains("Dana Scully"));
        }
        // A wrong secret does not verify.
        assert!(rapport::api::webhooks::verify_signature(
            b"whsec_wrong",
            &got[0].headers["x-rapport-timestamp"],
            &got[0].headers["x-rapport-signature"],
            &got[0].body,
            chrono::Utc::now().timestamp(),
        )
        .is_err());
    }

    // A 4xx fails at once; Send again queues it, and it is delivered.
    let third = write_interaction(
        &app.context,
        tenant.id,
        chat(
            "sales-chat",
            "S-3",
            "Monica Reyes",
            "monica@acme.example",
            "Budget $5k a month, 12 people.",
        ),
    );
    analyse(&app, tenant.id).await;
    rapport::leads::set_status(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        third.id,
        LeadStatus::Qualified,
    )
    .unwrap();
    run_due(&app).await;
    let failed = delivery_of(third.id);
    assert_eq!(failed.state, DeliveryState::Failed);
    assert_eq!(failed.attempts.len(), 1);
    assert_eq!(failed.attempts[0].status, Some(404));
    let log = app
        .get(&admin, "/t/acme/settings/crm/deliveries")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        log.contains("HTTP 500, retrying") && log.contains("delivered"),
        "{log}"
    );
    assert!(
        log.contains("skipped") && log.contains("under restriction or objection"),
        "{log}"
    );
    assert!(
        !log.contains("dana@globex.example") && !log.contains("90k"),
        "{log}"
    );
    let response = app
        .post_form(
            &admin,
            &format!(
                "/t/acme/settings/crm/deliveries/{}/send-again",
                failed.number
            ),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    run_due(&app).await;
    assert_eq!(delivery_of(third.id).state, DeliveryState::Delivered);
    assert_eq!(received.lock().unwrap().len(), 4);

    // Every attempt is in the audit log: the delivery, the lead, the host, the outcome; never
    // the payload.
    let attempts = audit_targets(&app.context, tenant.id, AuditAction::CrmDeliveryAttempted);
    assert_eq!(attempts.len(), 5, "{attempts:?}");
    let host = format!("127.0.0.1:{port}");
    assert!(attempts
        .iter()
        .any(|target| target.contains(&dana.to_string())
            && target.contains(&host)
            && target.ends_with("HTTP 500, retrying")));
    assert!(attempts
        .iter()
        .any(|target| target.contains(&walter.to_string()) && target.contains("restriction")));
    assert!(attempts
        .iter()
        .all(|target| !target.contains('@') && !target.contains("90k")));
    assert_eq!(
        audit_targets(&app.context, tenant.id, AuditAction::CrmDeliveryRequeued).len(),
        1
    );
    assert!(!audit_targets(&app.context, tenant.id, AuditAction::CrmSettingsChanged).is_empty());

    // An analyst works leads but does not configure the hand-off.
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let analyst = app.signed_in_client("analyst@acme.example").await;
    assert_eq!(
        app.get(&analyst, "/t/acme/settings/crm").await.status(),
        StatusCode::FORBIDDEN
    );
}

/// The test server with `[integrations] allow_private_networks = true`, so that the webhook
/// may reach the test's receiver on loopback over plain http.
fn allowing_private_networks() -> TestApp {
    TestApp::spawn_configured(|config, _| config.integrations.allow_private_networks = true)
}

fn delivery_of(app: &TestApp, tenant: TenantId, lead: RecordId) -> Option<webhook::Delivery> {
    LeadStore::new(app.context.store.clone())
        .recent_deliveries(tenant, 1000)
        .unwrap()
        .0
        .into_iter()
        .find(|delivery| delivery.lead == lead)
}

/// Saves the tenant's webhook (secret, URL, the fields, on) through the settings page.
async fn turn_webhook_on(
    app: &TestApp,
    tenant: &rapport::tenants::Tenant,
    url: &str,
    fields: &[&str],
) -> StatusCode {
    if app.context.users.list(Some(tenant.id)).unwrap().is_empty() {
        app.create_user("admin@acme.example", Role::TenantAdmin, Some(tenant));
    }
    let admin = app.signed_in_client("admin@acme.example").await;
    app.post_form(&admin, "/t/acme/settings/crm/secret", &[])
        .await;
    let names: Vec<String> = fields
        .iter()
        .map(|field| format!("field_{field}"))
        .collect();
    let mut form = vec![("url", url), ("enabled", "on")];
    form.extend(names.iter().map(|name| (name.as_str(), "on")));
    app.post_form(&admin, "/t/acme/settings/crm", &form)
        .await
        .status()
}

#[tokio::test]
async fn a_private_address_is_refused_when_sent_to_unless_the_operator_allows_it() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Plain http to this machine needs the operator's setting.
    assert_eq!(
        turn_webhook_on(
            &app,
            &tenant,
            &format!("http://127.0.0.1:{port}/hook"),
            &["email"]
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // https to any host is saved; where it leads is checked when it is sent.
    let admin = app.signed_in_client("admin@acme.example").await;
    let url = format!("https://127.0.0.1:{port}/hook");
    let response = app
        .post_form(
            &admin,
            "/t/acme/settings/crm",
            &[
                ("url", url.as_str()),
                ("field_email", "on"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (dana, _) = two_qualified_leads(&app, tenant.id).await;
    run_due(&app).await;
    let refused = delivery_of(&app, tenant.id, dana).unwrap();
    assert_eq!(refused.state, DeliveryState::Failed);
    assert_eq!(refused.attempts.len(), 1);
    assert_eq!(refused.attempts[0].outcome, "refused: private address");
    assert!(
        listener.accept().is_err(),
        "the private address was contacted"
    );
    let log = app
        .get(&admin, "/t/acme/settings/crm/deliveries")
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("refused: private address"), "{log}");
}

#[tokio::test]
async fn a_delivery_is_in_flight_before_it_is_sent_redacted_and_skipped_once_disqualified() {
    let app = allowing_private_networks();
    let tenant = app.create_tenant("acme");
    let context = app.context.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_receiver = Arc::clone(&seen);
    // While the receiver holds the request, the delivery is already stored as in flight, with
    // its next attempt pushed out by the schedule's delay: a failure to record the outcome now
    // would lead to one retry after that delay, not a re-send at every poll.
    let (port, received) = receiver_with(vec![200], move || {
        let store = LeadStore::new(context.store.clone());
        let (deliveries, _) = store.recent_deliveries(tenant.id, 10).unwrap();
        let due_soon = store
            .due(
                tenant.id,
                chrono::Utc::now() + chrono::Duration::seconds(30),
            )
            .unwrap();
        seen_by_receiver
            .lock()
            .unwrap()
            .push((deliveries, due_soon));
    });
    let url = format!("http://127.0.0.1:{port}/hook");
    assert_eq!(
        turn_webhook_on(&app, &tenant, &url, &["email", "evidence", "budget"]).await,
        StatusCode::SEE_OTHER
    );
    use_off_backend(&app.context, tenant.id);
    let phone = write_interaction(
        &app.context,
        tenant.id,
        chat(
            "sales-chat",
            "S-9",
            "Fox Mulder",
            "fox@fbi.example",
            "Budget is $90k a year, call me on +1 415 555 0132. We are 40 people.",
        ),
    );
    let other = write_interaction(
        &app.context,
        tenant.id,
        chat(
            "sales-chat",
            "S-10",
            "Alex Krycek",
            "alex@example.org",
            "We have 300 staff and a budget of $20k a year.",
        ),
    );
    analyse(&app, tenant.id).await;
    // A lead left qualified without its delivery (as a failure between the two once could)
    // gets it when it is set to qualified again.
    LeadStore::new(app.context.store.clone())
        .update(tenant.id, phone.id, |state| {
            state.status = LeadStatus::Qualified;
        })
        .unwrap();
    assert!(delivery_of(&app, tenant.id, phone.id).is_none());
    for id in [phone.id, other.id] {
        rapport::leads::set_status(
            &app.context,
            &Actor::cli(),
            None,
            tenant.id,
            id,
            LeadStatus::Qualified,
        )
        .unwrap();
    }
    assert!(delivery_of(&app, tenant.id, phone.id).is_some());
    // Krycek is disqualified while his delivery waits: it is not sent.
    rapport::leads::set_status(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        other.id,
        LeadStatus::Disqualified,
    )
    .unwrap();

    let context = app.context.clone();
    tokio::task::spawn_blocking(move || {
        webhook::run_due(&context, chrono::Utc::now(), &Schedule::default())
    })
    .await
    .unwrap();

    let skipped = delivery_of(&app, tenant.id, other.id).unwrap();
    assert_eq!(skipped.state, DeliveryState::Skipped);
    assert_eq!(skipped.attempts[0].outcome, "not sent: no longer qualified");
    let delivered = delivery_of(&app, tenant.id, phone.id).unwrap();
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.attempts.len(), 1, "{:?}", delivered.attempts);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (during, due_soon) = &seen[0];
    let in_flight = during
        .iter()
        .find(|delivery| delivery.lead == phone.id)
        .unwrap();
    assert_eq!(in_flight.state, DeliveryState::Pending);
    assert_eq!(
        in_flight.attempts.last().unwrap().outcome,
        webhook::IN_FLIGHT
    );
    assert!(
        in_flight.next_attempt.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(50),
        "{:?}",
        in_flight.next_attempt
    );
    assert!(!due_soon.contains(&in_flight.number), "{due_soon:?}");

    // The free text left redacted; the e-mail address as selected.
    let got = received.lock().unwrap();
    assert_eq!(got.len(), 1, "only the qualified lead was sent");
    let text = String::from_utf8_lossy(&got[0].body).into_owned();
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["email"], "fox@fbi.example");
    assert!(!text.contains("555 0132"), "{text}");
    let quotes: Vec<&str> = body["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|found| found["quote"].as_str())
        .collect();
    assert!(
        quotes.iter().any(|quote| quote.contains("[PHONE]")),
        "{text}"
    );
}

#[tokio::test]
async fn reading_every_lead_stops_at_the_cap_and_says_so() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let (dana, walter) = two_qualified_leads(&app, tenant.id).await;
    let capped = rapport::leads::all_up_to(&app.context, tenant.id, 1).unwrap();
    assert!(capped.limit_reached);
    // The newest is kept.
    let kept: Vec<RecordId> = capped.leads.iter().map(rapport::leads::Lead::id).collect();
    assert_eq!(kept, vec![walter]);
    let whole = rapport::leads::all_up_to(&app.context, tenant.id, 2).unwrap();
    assert!(!whole.limit_reached);
    assert_eq!(whole.leads.len(), 2);
    assert!(whole.leads.iter().any(|lead| lead.id() == dana));
    assert_eq!(rapport::leads::MAX_SCANNED, 5000);
}

/// Makes every due delivery attempt now, with no waiting between attempts (the test drives the
/// schedule itself).
async fn run_due(app: &TestApp) -> usize {
    let context = app.context.clone();
    tokio::task::spawn_blocking(move || {
        let schedule = Schedule {
            delays: vec![Duration::ZERO; 4],
        };
        webhook::run_due(&context, chrono::Utc::now(), &schedule)
    })
    .await
    .unwrap()
}
