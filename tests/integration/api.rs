//! The REST API v1: keys and scopes, the four resources with filters and cursors, problem+json
//! naming the bad field, signed webhooks (Rapport and Zendesk bodies, bad signatures, stale
//! timestamps, replays), the `OpenAPI` document, the audit of API reads, the console pages for
//! keys and integrations, and `rapport apikey create`.

use std::collections::BTreeSet;

use rapport::api::keys::{self, ApiScope};
use rapport::api::webhooks::{self, IntegrationKind};
use rapport::audit::{Actor, AuditAction, AuditView};
use rapport::tenants::Tenant;
use rapport::users::Role;
use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};

use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout, TestApp};

fn key_for(app: &TestApp, tenant: &Tenant, scopes: &[ApiScope]) -> String {
    let scopes: BTreeSet<ApiScope> = scopes.iter().copied().collect();
    keys::create_key(&app.context, &Actor::cli(), None, tenant.id, "test", scopes)
        .unwrap()
        .secret
        .expose_secret()
        .to_owned()
}

fn interaction(source_id: &str, channel: &str, tags: &[&str], sent_at: &str) -> Value {
    json!({
        "source_system": "desk",
        "source_id": source_id,
        "channel": channel,
        "subject": format!("Subject {source_id}"),
        "status": "open",
        "account": "acme.example",
        "tags": tags,
        "messages": [
            {"role": "customer", "author_email": "cus@acme.example", "sent_at": sent_at, "text": "Hello, my invoice is wrong."},
            {"role": "agent", "sent_at": sent_at, "text": "Let me check."}
        ]
    })
}

async fn post(app: &TestApp, key: &str, path: &str, body: &Value) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, key: &str, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:rapport:problem:"));
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

fn source_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["source_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn interactions_are_created_updated_read_and_listed_with_filters_and_cursors() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let key = key_for(&app, &tenant, &[ApiScope::Read, ApiScope::Write]);

    let first = interaction("t-1", "email", &["billing"], "2026-01-01T10:00:00Z");
    let created = post(&app, &key, "/api/v1/interactions", &first).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/interactions/{id}"));
    assert_eq!(created["subject"], "Subject t-1");
    assert!(created["first_imported"].is_string() && created["updated"].is_string());

    // The same source id updates the record, keeping its id.
    let mut changed = first.clone();
    changed["status"] = json!("solved");
    let updated = post(&app, &key, "/api/v1/interactions", &changed).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["first_imported"], created["first_imported"]);

    let fetched: Value = get(&app, &key, &format!("/api/v1/interactions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["status"], "solved");
    assert_eq!(
        fetched["messages"][0]["text"],
        "Hello, my invoice is wrong."
    );

    for (source, channel, tags, time) in [
        ("t-2", "chat", vec!["billing"], "2026-02-01T10:00:00Z"),
        ("t-3", "chat", vec!["login"], "2026-03-01T10:00:00Z"),
        ("t-4", "call", vec![], "2026-04-01T10:00:00Z"),
        (
            "t-5",
            "chat",
            vec!["billing", "vip"],
            "2026-05-01T10:00:00Z",
        ),
    ] {
        let response = post(
            &app,
            &key,
            "/api/v1/interactions",
            &interaction(source, channel, &tags, time),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    let list = |query: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            let response = get(app, &key, &format!("/api/v1/interactions{query}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            response.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        source_ids(&list("?channel=chat").await),
        ["t-2", "t-3", "t-5"]
    );
    assert_eq!(
        source_ids(&list("?tag=billing").await),
        ["t-1", "t-2", "t-5"]
    );
    assert_eq!(source_ids(&list("?status=solved").await), ["t-1"]);
    assert_eq!(
        source_ids(&list("?since=2026-02-01T00:00:00Z&until=2026-04-01T10:00:00Z").await),
        ["t-2", "t-3"]
    );
    assert_eq!(source_ids(&list("?account=nobody.example").await).len(), 0);

    // Cursor pagination walks every record once, in creation order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/interactions?limit=2&cursor={cursor}"),
            None => "/api/v1/interactions?limit=2".to_owned(),
        };
        let page: Value = get(&app, &key, &path).await.json().await.unwrap();
        pages += 1;
        seen.extend(source_ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["t-1", "t-2", "t-3", "t-4", "t-5"]);
    assert_eq!(pages, 3);

    // Bad parameters are named.
    let bad = problem(
        get(&app, &key, "/api/v1/interactions?limit=500&channel=fax").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let parameters: Vec<&str> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["parameter"].as_str().unwrap())
        .collect();
    assert_eq!(parameters, ["limit", "channel"]);

    // Every read and write is in the tenant's audit log.
    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 1000)
        .unwrap();
    let targets = |action: AuditAction| -> Vec<String> {
        entries
            .iter()
            .filter(|entry| entry.event.action == action)
            .map(|entry| entry.event.target.clone())
            .collect()
    };
    let reads = targets(AuditAction::PersonalDataRead);
    assert!(
        reads.contains(&format!("api: interaction {id}")),
        "{reads:?}"
    );
    assert!(reads
        .iter()
        .any(|target| target.starts_with("api: interactions list")));
    let writes = targets(AuditAction::DataWritten);
    assert!(writes.contains(&format!("api: interaction {id} created")));
    assert!(writes.contains(&format!("api: interaction {id} updated")));
    assert!(entries
        .iter()
        .any(|entry| entry.event.actor.label.starts_with("api key ")));
}

#[tokio::test]
async fn accounts_contacts_and_signals_round_trip() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let key = key_for(&app, &tenant, &[ApiScope::Read, ApiScope::Write]);

    let records = [
        (
            "/api/v1/accounts",
            json!({"source_system": "crm", "source_id": "a-1", "name": "Acme", "domain": "acme.example",
                   "plan": "enterprise", "arr": 120_000.0, "renewal_date": "2027-01-31", "owner": "csm@vendor.example"}),
        ),
        (
            "/api/v1/contacts",
            json!({"source_system": "crm", "source_id": "c-1", "name": "Dana Doe", "email": "dana@acme.example",
                   "phone": "+44 20 7946 0000", "date_of_birth": "1980-05-17", "job_title": "CTO", "account": "a-1"}),
        ),
        (
            "/api/v1/signals",
            json!({"source_system": "survey", "source_id": "s-1", "account": "a-1", "occurred_at": "2026-10-01T00:00:00Z",
                   "signal": {"kind": "survey", "survey": "nps", "score": 9, "comment": "Great"}}),
        ),
        (
            "/api/v1/signals",
            json!({"source_system": "reviews", "source_id": "s-2", "occurred_at": "2026-10-02T00:00:00Z",
                   "signal": {"kind": "review", "platform": "google", "rating": 2, "text": "Slow", "reviewer": "R."}}),
        ),
    ];
    for (path, body) in &records {
        let response = post(&app, &key, path, body).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{path}");
        let stored: Value = response.json().await.unwrap();
        let fetched: Value = get(
            &app,
            &key,
            &format!("{path}/{}", stored["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
        // Everything sent comes back, plus Rapport's id and times.
        for (field, value) in body.as_object().unwrap() {
            assert_eq!(&fetched[field], value, "{path} {field}");
        }
        assert_eq!(fetched["id"], stored["id"]);
    }
    let reviews: Value = get(&app, &key, "/api/v1/signals?kind=review")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(source_ids(&reviews), ["s-2"]);
    let contacts: Value = get(&app, &key, "/api/v1/contacts?account=a-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(source_ids(&contacts), ["c-1"]);
    // A filter that does not apply to a resource is refused, by name.
    let refused = problem(
        get(&app, &key, "/api/v1/accounts?channel=chat").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(refused["errors"][0]["parameter"], "channel");
}

#[tokio::test]
async fn keys_are_required_scoped_revocable_and_tenant_bound() {
    let app = TestApp::spawn();
    let acme = app.create_tenant("acme");
    let other = app.create_tenant("other");
    let writer = key_for(&app, &acme, &[ApiScope::Read, ApiScope::Write]);
    let reader = key_for(&app, &acme, &[ApiScope::Read]);
    let write_only = key_for(&app, &acme, &[ApiScope::Write]);
    let other_key = key_for(&app, &other, &[ApiScope::Read, ApiScope::Write]);
    let body = interaction("t-1", "chat", &[], "2026-01-01T10:00:00Z");
    let stored: Value = post(&app, &writer, "/api/v1/interactions", &body)
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/interactions/{}", stored["id"].as_str().unwrap());

    let missing = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, StatusCode::UNAUTHORIZED).await;
    problem(
        get(&app, "rpk_garbage", &path).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // A real key id with a wrong secret.
    let forged = format!("{}x", &reader[..reader.len() - 1]);
    problem(get(&app, &forged, &path).await, StatusCode::UNAUTHORIZED).await;

    let denied = problem(
        post(&app, &reader, "/api/v1/interactions", &body).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(denied["detail"].as_str().unwrap().contains("write"));
    problem(get(&app, &write_only, &path).await, StatusCode::FORBIDDEN).await;
    assert_eq!(get(&app, &reader, &path).await.status(), StatusCode::OK);

    // Another tenant's key sees nothing of this tenant.
    problem(get(&app, &other_key, &path).await, StatusCode::NOT_FOUND).await;
    let listed: Value = get(&app, &other_key, "/api/v1/interactions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);

    // Revoked keys are refused; last use was recorded.
    let reader_id = reader.split('_').nth(1).unwrap().parse().unwrap();
    let used = app.context.api_keys.last_used(acme.id, reader_id).unwrap();
    assert!(used.is_some());
    keys::revoke_key(&app.context, &Actor::cli(), None, acme.id, reader_id).unwrap();
    problem(get(&app, &reader, &path).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn an_invalid_record_gets_problem_json_naming_the_field_and_stores_nothing() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let key = key_for(&app, &tenant, &[ApiScope::Read, ApiScope::Write]);

    let mut invalid = interaction("t-1", "chat", &[], "2026-01-01T10:00:00Z");
    invalid["messages"][1]["author_email"] = json!("secret-not-an-address");
    invalid["source_id"] = json!("");
    let body = problem(
        post(&app, &key, "/api/v1/interactions", &invalid).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/source_id", "/messages/1/author_email"]);
    assert!(!body.to_string().contains("secret-not-an-address"));

    // A value of the wrong type is named by its pointer, and not repeated.
    let mut mistyped = interaction("t-2", "chat", &[], "2026-01-01T10:00:00Z");
    mistyped["messages"][1]["sent_at"] = json!("secret-yesterday");
    let body = problem(
        post(&app, &key, "/api/v1/interactions", &mistyped).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/messages/1/sent_at");
    assert!(!body.to_string().contains("secret-yesterday"));

    // A missing field is named itself, not the object that lacks it.
    let mut lacking = interaction("t-3", "chat", &[], "2026-01-01T10:00:00Z");
    lacking["messages"][1]
        .as_object_mut()
        .unwrap()
        .remove("sent_at");
    let body = problem(
        post(&app, &key, "/api/v1/interactions", &lacking).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        body["errors"][0]["pointer"], "/messages/1/sent_at",
        "{body}"
    );
    let mut lacking = interaction("t-4", "chat", &[], "2026-01-01T10:00:00Z");
    lacking.as_object_mut().unwrap().remove("channel");
    let body = problem(
        post(&app, &key, "/api/v1/interactions", &lacking).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/channel", "{body}");

    // Not JSON at all.
    let broken = app
        .client
        .post(app.url("/api/v1/interactions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"source_system\": ")
        .send()
        .await
        .unwrap();
    problem(broken, StatusCode::BAD_REQUEST).await;

    // Over the size limit.
    let huge = app
        .client
        .post(app.url("/api/v1/interactions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(vec![b' '; 17 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    problem(huge, StatusCode::PAYLOAD_TOO_LARGE).await;

    assert_eq!(app.context.interactions.count(tenant.id).unwrap(), 0);
}

fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    format!(
        "sha256={}",
        hex::encode(rapport::crypto::hmac_sha256(
            secret.as_bytes(),
            &[timestamp.as_bytes(), b".", body]
        ))
    )
}

async fn deliver(
    app: &TestApp,
    path: &str,
    timestamp: i64,
    signature: &str,
    body: &[u8],
) -> Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("X-Rapport-Timestamp", timestamp.to_string())
        .header("X-Rapport-Signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn webhooks_need_a_fresh_valid_signature_and_map_zendesk_tickets() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let created = webhooks::create_integration(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "Helpdesk",
        IntegrationKind::Rapport,
    )
    .unwrap();
    let path = created.integration.webhook_path();
    let secret = created.secret.expose_secret().to_owned();
    let now = chrono::Utc::now().timestamp();
    let count = || app.context.interactions.count(tenant.id).unwrap();

    let body = interaction("w-1", "chat", &[], "2026-01-01T10:00:00Z").to_string();
    let body = body.as_bytes();

    // Wrong secret, a changed body, no headers, an old timestamp: 401 and nothing stored.
    problem(
        deliver(&app, &path, now, &sign("whsec_wrong", now, body), body).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let signature = sign(&secret, now, body);
    problem(
        deliver(&app, &path, now, &signature, b"{}").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let unsigned = app
        .client
        .post(app.url(&path))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    problem(unsigned, StatusCode::UNAUTHORIZED).await;
    let old = now - 301;
    problem(
        deliver(&app, &path, old, &sign(&secret, old, body), body).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(count(), 0);

    // A valid delivery is stored once; its replay is refused.
    let accepted = deliver(&app, &path, now, &signature, body).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["result"], "created");
    assert_eq!(count(), 1);
    problem(
        deliver(&app, &path, now, &signature, body).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // The same signature in capital hex digits is the same signature.
    let shouted = format!("sha256={}", signature["sha256=".len()..].to_uppercase());
    problem(
        deliver(&app, &path, now, &shouted, body).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(count(), 1);

    // A Zendesk integration maps ticket events.
    let zendesk = webhooks::create_integration(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "Zendesk",
        IntegrationKind::Zendesk,
    )
    .unwrap();
    let ticket = json!({"ticket": {
        "id": 35436, "subject": "Refund please", "status": "open", "tags": ["billing"],
        "via": {"channel": "email"}, "organization_id": 57542, "url": "https://x.zendesk.com/api/v2/tickets/35436.json",
        "comments": [
            {"id": 1, "public": true, "created_at": "2026-11-01T09:00:00Z", "plain_body": "I was charged twice.",
             "author": {"name": "Cus Tomer", "email": "cus@acme.example", "role": "end-user"},
             "attachments": [{"file_name": "invoice.pdf", "content_url": "https://x/1"}]},
            {"id": 2, "public": true, "created_at": "2026-11-01T09:30:00Z", "plain_body": "Refunded.",
             "author": {"name": "Agent Smith", "email": "smith@vendor.example", "role": "agent"}},
            {"id": 3, "public": false, "created_at": "2026-11-01T09:31:00Z", "body": "Check the billing run.",
             "author": {"name": "Agent Smith", "role": "agent"}}
        ]}})
    .to_string();
    let response = deliver(
        &app,
        &zendesk.integration.webhook_path(),
        now,
        &sign(zendesk.secret.expose_secret(), now, ticket.as_bytes()),
        ticket.as_bytes(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored = app
        .context
        .interactions
        .find_by_source(tenant.id, "zendesk\u{0}35436")
        .unwrap()
        .unwrap()
        .record;
    assert_eq!(stored.subject.as_deref(), Some("Refund please"));
    assert_eq!(stored.channel.as_str(), "email");
    assert_eq!(stored.account.as_deref(), Some("57542"));
    assert_eq!(stored.tags, ["billing"]);
    assert_eq!(stored.attachments, ["invoice.pdf"]);
    let roles: Vec<String> = stored
        .messages
        .iter()
        .map(|message| {
            serde_json::to_value(message.role)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(roles, ["customer", "agent", "internal-note"]);
    assert_eq!(
        stored.messages[0].author_email.as_deref(),
        Some("cus@acme.example")
    );

    // A disabled integration's deliveries are refused.
    webhooks::disable_integration(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        zendesk.integration.id,
    )
    .unwrap();
    let later = now + 1;
    problem(
        deliver(
            &app,
            &zendesk.integration.webhook_path(),
            later,
            &sign(zendesk.secret.expose_secret(), later, ticket.as_bytes()),
            ticket.as_bytes(),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_the_record_schemas() {
    let app = TestApp::spawn();
    let response = app.get(&app.client, "/api/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for resource in ["interactions", "accounts", "contacts", "signals"] {
        let collection = &paths[&format!("/api/v1/{resource}")];
        assert!(
            collection["get"].is_object() && collection["post"].is_object(),
            "{resource}"
        );
        assert!(
            paths[&format!("/api/v1/{resource}/{{id}}")]["get"].is_object(),
            "{resource}"
        );
    }
    assert!(paths["/api/v1/webhooks/{integration}"]["post"].is_object());
    assert!(paths["/api/v1/openapi.json"]["get"].is_object());
    let schemas = &document["components"]["schemas"];
    let fields = schemas["InteractionRecord"]["properties"]
        .as_object()
        .unwrap();
    for field in [
        "source_system",
        "source_id",
        "channel",
        "subject",
        "status",
        "account",
        "tags",
        "ai_tool",
        "attachments",
        "messages",
    ] {
        assert!(
            fields.contains_key(field),
            "InteractionRecord lacks {field}"
        );
    }
    assert!(schemas["MessageRecord"]["properties"]["sent_at"].is_object());
    assert!(document["components"]["securitySchemes"]["api_key"].is_object());
    // Every documented operation is served (nothing documented is missing from the router).
    for (path, operations) in paths {
        let concrete = path
            .replace("{id}", "01JD0000000000000000000000")
            .replace("{integration}", "01JD0000000000000000000000");
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap()
                .status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but answers {status}"
            );
        }
    }
    // Unknown API paths and methods answer in problem+json too.
    for path in ["/api/v1/nothing", "/api/v2/interactions", "/api/"] {
        problem(app.get(&app.client, path).await, StatusCode::NOT_FOUND).await;
    }
    let delete = app
        .client
        .delete(app.url("/api/v1/interactions"))
        .send()
        .await
        .unwrap();
    problem(delete, StatusCode::METHOD_NOT_ALLOWED).await;
}

fn secret_in(page: &str) -> String {
    let marker = "<code class=\"secret\">";
    let start = page.find(marker).expect("no secret on the page") + marker.len();
    let end = page[start..].find('<').unwrap() + start;
    page[start..end].to_owned()
}

#[tokio::test]
async fn tenant_admins_manage_keys_and_integrations_in_the_console_and_analysts_cannot() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("ana@acme.example", Role::Analyst, Some(&tenant));
    let admin = app.signed_in_client("admin@acme.example").await;

    let created = app
        .post_form(
            &admin,
            "/t/acme/settings/api-keys",
            &[("name", "CRM sync"), ("scope", "read"), ("scope", "write")],
        )
        .await;
    assert_eq!(created.status(), StatusCode::OK);
    let page = created.text().await.unwrap();
    let key = secret_in(&page);
    assert!(key.starts_with("rpk_"));
    assert!(page.contains("read, write"));
    // The key works, and the list never shows it again.
    assert_eq!(
        get(&app, &key, "/api/v1/interactions").await.status(),
        StatusCode::OK
    );
    let list = app
        .get(&admin, "/t/acme/settings/api-keys")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("CRM sync") && !list.contains(&key));
    assert!(!list.contains("never"), "last use is shown");
    assert!(
        list.contains("href=\"/t/acme/settings/integrations\""),
        "nav link"
    );

    let id = key.split('_').nth(1).unwrap();
    let revoked = app
        .post_form(
            &admin,
            &format!("/t/acme/settings/api-keys/{id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        get(&app, &key, "/api/v1/interactions").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let list = app
        .get(&admin, "/t/acme/settings/api-keys")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("revoked"));

    // Integrations: the secret and the webhook URL are shown once.
    let created = app
        .post_form(
            &admin,
            "/t/acme/settings/integrations",
            &[("name", "Zendesk"), ("kind", "zendesk")],
        )
        .await;
    assert_eq!(created.status(), StatusCode::OK);
    let page = created.text().await.unwrap();
    let secret = secret_in(&page);
    assert!(secret.starts_with("whsec_"));
    assert!(page.contains("/api/v1/webhooks/"));
    let list = app
        .get(&admin, "/t/acme/settings/integrations")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("Zendesk") && !list.contains(&secret));

    let entries = app
        .context
        .audit_log
        .entries(AuditView::Tenant(tenant.id), None, 1000)
        .unwrap();
    for action in [
        AuditAction::ApiKeyCreated,
        AuditAction::ApiKeyRevoked,
        AuditAction::IntegrationCreated,
    ] {
        assert!(
            entries.iter().any(|entry| entry.event.action == action),
            "{action}"
        );
    }

    let analyst = app.signed_in_client("ana@acme.example").await;
    for path in ["/t/acme/settings/api-keys", "/t/acme/settings/integrations"] {
        assert_eq!(
            app.get(&analyst, path).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let refused = app
        .post_form(
            &analyst,
            "/t/acme/settings/api-keys",
            &[("name", "x"), ("scope", "read")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.context.api_keys.list(tenant.id).unwrap().len(), 1);
}

#[test]
fn apikey_create_prints_the_key_as_its_last_word() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let config = config.to_str().unwrap();
    let tenant = rapport(
        &[
            "tenant", "create", "--config", config, "--slug", "acme", "--name", "Acme",
        ],
        None,
    );
    assert!(tenant.status.success(), "{}", stderr(&tenant));
    let created = rapport(
        &[
            "apikey",
            "create",
            "--config",
            config,
            "--tenant",
            "acme",
            "--scopes",
            "read,write",
            "--name",
            "ETL",
        ],
        None,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let output = stdout(&created);
    let key = output.split_whitespace().last().unwrap();
    assert!(key.starts_with("rpk_") && key.len() > 60, "{output}");

    let refused = rapport(
        &[
            "apikey", "create", "--config", config, "--tenant", "acme", "--scopes", "admin",
            "--name", "ETL",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("unknown scope"));
}

#[tokio::test]
async fn api_records_keys_and_webhook_secrets_never_reach_the_disk_in_plaintext() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let sentinel = format!("zq{}x", ulid::Ulid::new().to_string().to_lowercase());
    let key = key_for(&app, &tenant, &[ApiScope::Read, ApiScope::Write]);
    let mut record = interaction("t-1", "chat", &[], "2026-01-01T10:00:00Z");
    record["messages"][0]["text"] = json!(format!("My secret is {sentinel}"));
    record["subject"] = json!(sentinel.clone());
    assert_eq!(
        post(&app, &key, "/api/v1/interactions", &record)
            .await
            .status(),
        StatusCode::CREATED
    );
    let created = webhooks::create_integration(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        &format!("Hook {sentinel}"),
        IntegrationKind::Rapport,
    )
    .unwrap();
    // Keys and secrets are held in `secrecy` types: zeroed on drop, never printed by `Debug`.
    let shown_key = keys::create_key(
        &app.context,
        &Actor::cli(),
        None,
        tenant.id,
        "debug check",
        [ApiScope::Read].into_iter().collect(),
    )
    .unwrap();
    for secret in [&created.secret, &shown_key.secret] {
        let printed = format!("{secret:?}");
        assert!(!printed.contains(secret.expose_secret()), "{printed}");
    }
    let now = chrono::Utc::now().timestamp();
    let mut delivered = interaction("w-1", "chat", &[], "2026-01-01T10:00:00Z");
    delivered["subject"] = json!(format!("Webhook {sentinel}"));
    let body = delivered.to_string();
    let response = deliver(
        &app,
        &created.integration.webhook_path(),
        now,
        &sign(created.secret.expose_secret(), now, body.as_bytes()),
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.context.store.flush().unwrap();

    // `rpk_<id>_<random>`: the random part is URL-safe base64, which may itself hold `_`, so it
    // is everything after the second `_` (a last `_`-separated fragment could be one character
    // long and match any file by chance).
    let secret_part = key.splitn(3, '_').nth(2).unwrap().to_owned();
    assert_eq!(secret_part.len(), 43, "{key}");
    let needles = [
        sentinel.into_bytes(),
        key.into_bytes(),
        secret_part.into_bytes(),
        created.secret.expose_secret().as_bytes().to_vec(),
    ];
    for file in crate::helpers::files_under(&app.data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        for needle in &needles {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_slice()),
                "plaintext found in {}",
                file.display()
            );
        }
    }
}

#[tokio::test]
async fn a_review_posted_with_a_surveys_source_id_does_not_replace_the_survey() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let key = key_for(&app, &tenant, &[ApiScope::Read, ApiScope::Write]);
    let survey = json!({"source_system": "csv", "source_id": "1001", "occurred_at": "2026-10-01T00:00:00Z",
                        "signal": {"kind": "survey", "survey": "nps", "score": 9, "comment": "Great"}});
    let review = json!({"source_system": "csv", "source_id": "1001", "occurred_at": "2026-10-02T00:00:00Z",
                        "signal": {"kind": "review", "platform": "google", "rating": 2, "text": "Slow"}});
    let created = post(&app, &key, "/api/v1/signals", &survey).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let survey_id = created.json::<Value>().await.unwrap()["id"].clone();
    let created = post(&app, &key, "/api/v1/signals", &review).await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "the review replaced the survey"
    );
    let review_id = created.json::<Value>().await.unwrap()["id"].clone();
    assert_ne!(survey_id, review_id);
    // Posting the review again updates it.
    let again = post(&app, &key, "/api/v1/signals", &review).await;
    assert!(again.status().is_success());
    assert_ne!(again.status(), StatusCode::CREATED);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], review_id);
    let fetched: Value = get(
        &app,
        &key,
        &format!("/api/v1/signals/{}", survey_id.as_str().unwrap()),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(fetched["signal"], survey["signal"]);
    assert_eq!(app.context.signals.count(tenant.id).unwrap(), 2);
}
