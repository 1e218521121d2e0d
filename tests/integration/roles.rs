//! The role matrix: every role against every route family, allowed or refused, as one table.

use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{location, TestApp};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Allowed,
    Refused,
    SignIn,
}

use Expect::{Allowed, Refused, SignIn};

/// (route family, GET path, [anonymous, operator, tenant-admin, analyst, qa-lead, privacy-officer, auditor])
const MATRIX: &[(&str, &str, [Expect; 7])] = &[
    (
        "appliance: tenants",
        "/admin/tenants",
        [SignIn, Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
    (
        "appliance: users",
        "/admin/users",
        [SignIn, Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
    (
        "appliance: models",
        "/admin/models",
        [SignIn, Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
    (
        "appliance: audit",
        "/admin/audit",
        [SignIn, Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: home",
        "/t/acme/",
        [SignIn, Refused, Allowed, Allowed, Allowed, Allowed, Allowed],
    ),
    (
        "tenant: users",
        "/t/acme/users",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: security",
        "/t/acme/settings/security",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: api keys",
        "/t/acme/settings/api-keys",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: integrations",
        "/t/acme/settings/integrations",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: analysis settings",
        "/t/acme/settings/analysis",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: topics",
        "/t/acme/settings/topics",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: analysis queue",
        "/t/acme/analysis",
        [SignIn, Refused, Allowed, Allowed, Allowed, Refused, Refused],
    ),
    (
        "tenant: privacy restrictions",
        "/t/acme/privacy/restrictions",
        [SignIn, Refused, Refused, Refused, Refused, Allowed, Refused],
    ),
    (
        "tenant: retention",
        "/t/acme/privacy/retention",
        [SignIn, Refused, Refused, Refused, Refused, Allowed, Refused],
    ),
    (
        "tenant: legal holds",
        "/t/acme/privacy/holds",
        [SignIn, Refused, Refused, Refused, Refused, Allowed, Refused],
    ),
    (
        "tenant: QA page",
        "/t/acme/qa",
        [SignIn, Refused, Allowed, Allowed, Allowed, Allowed, Refused],
    ),
    (
        "tenant: scorecard editor",
        "/t/acme/settings/scorecard",
        [SignIn, Refused, Allowed, Refused, Allowed, Refused, Refused],
    ),
    (
        "tenant: feedback requests",
        "/t/acme/feedback",
        [SignIn, Refused, Allowed, Allowed, Refused, Refused, Refused],
    ),
    (
        "tenant: feedback template",
        "/t/acme/settings/feedback",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: alerts inbox",
        "/t/acme/alerts",
        [SignIn, Refused, Allowed, Allowed, Refused, Refused, Refused],
    ),
    (
        "tenant: alert rules",
        "/t/acme/settings/alerts",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: audit",
        "/t/acme/audit",
        [SignIn, Refused, Refused, Refused, Refused, Allowed, Allowed],
    ),
    (
        "tenant: interactions",
        "/t/acme/interactions",
        [SignIn, Refused, Allowed, Allowed, Allowed, Allowed, Refused],
    ),
    (
        "tenant: accounts",
        "/t/acme/accounts",
        [SignIn, Refused, Allowed, Allowed, Allowed, Allowed, Refused],
    ),
    (
        "tenant: contacts",
        "/t/acme/contacts",
        [SignIn, Refused, Allowed, Allowed, Allowed, Allowed, Refused],
    ),
    (
        "tenant: signals",
        "/t/acme/signals",
        [SignIn, Refused, Allowed, Allowed, Allowed, Allowed, Refused],
    ),
    (
        "tenant: imports",
        "/t/acme/imports",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: leads",
        "/t/acme/leads",
        [SignIn, Refused, Allowed, Allowed, Refused, Refused, Refused],
    ),
    (
        "tenant: CRM hand-off",
        "/t/acme/settings/crm",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: CRM deliveries",
        "/t/acme/settings/crm/deliveries",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: review inbox",
        "/t/acme/reviews",
        [SignIn, Refused, Allowed, Allowed, Refused, Refused, Refused],
    ),
    (
        "tenant: review export",
        "/t/acme/reviews/export.csv",
        [SignIn, Refused, Allowed, Allowed, Refused, Refused, Refused],
    ),
    (
        "tenant: account export",
        "/t/acme/accounts/export.csv",
        [SignIn, Refused, Allowed, Allowed, Refused, Refused, Refused],
    ),
    (
        "tenant: QA report export",
        "/t/acme/qa/export.csv",
        [SignIn, Refused, Allowed, Refused, Allowed, Refused, Refused],
    ),
    (
        "tenant: reply-draft settings",
        "/t/acme/settings/reviews",
        [SignIn, Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "tenant: dashboard",
        "/t/acme/dashboard",
        [SignIn, Refused, Allowed, Allowed, Allowed, Refused, Refused],
    ),
    (
        "tenant: dashboard CSV",
        "/t/acme/dashboard/volume.csv",
        [SignIn, Refused, Allowed, Allowed, Allowed, Refused, Refused],
    ),
    (
        "account",
        "/account/password",
        [SignIn, Allowed, Allowed, Allowed, Allowed, Allowed, Allowed],
    ),
    (
        "appliance: tenant offboarding",
        "/admin/tenants/acme/offboarding",
        [SignIn, Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
];

/// (action, POST path, form fields, [operator, tenant-admin, analyst, qa-lead, privacy-officer, auditor])
type PostCase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    [Expect; 6],
);

/// State-changing routes, checked with a valid CSRF token so only the role decides.
const POST_MATRIX: &[PostCase] = &[
    (
        "create tenant",
        "/admin/tenants",
        &[("slug", "x-new"), ("name", "X")],
        [Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
    (
        "create tenant user",
        "/t/acme/users",
        &[("email", "fresh@acme.example"), ("role", "analyst")],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "security settings",
        "/t/acme/settings/security",
        &[],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "create api key",
        "/t/acme/settings/api-keys",
        &[("name", "ETL"), ("scope", "read")],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "create integration",
        "/t/acme/settings/integrations",
        &[("name", "Desk"), ("kind", "rapport")],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "analysis settings",
        "/t/acme/settings/analysis",
        &[("backend", "off")],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "topic list",
        "/t/acme/settings/topics",
        &[("topics", "billing\nshipping")],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "cancel queued analysis",
        "/t/acme/analysis/cancel",
        &[],
        [Refused, Allowed, Allowed, Allowed, Refused, Refused],
    ),
    (
        "export leads CSV",
        "/t/acme/leads/export/hubspot.csv",
        &[],
        [Refused, Allowed, Allowed, Refused, Refused, Refused],
    ),
    (
        "CRM hand-off settings",
        "/t/acme/settings/crm",
        &[("url", "")],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "record a restriction",
        "/t/acme/privacy/restrictions",
        &[
            ("email", "subject@example.org"),
            ("kind", "objection"),
            ("reason", "DSR-1"),
        ],
        [Refused, Refused, Refused, Refused, Allowed, Refused],
    ),
    (
        "save the retention policy",
        "/t/acme/privacy/retention",
        &[("interactions", ""), ("audit_log", "365")],
        [Refused, Refused, Refused, Refused, Allowed, Refused],
    ),
    (
        "preview retention",
        "/t/acme/privacy/retention/preview",
        &[],
        [Refused, Refused, Refused, Refused, Allowed, Refused],
    ),
    (
        "place a legal hold",
        "/t/acme/privacy/holds",
        &[
            ("kind", "tag"),
            ("value", "litigation"),
            ("reason", "M-1"),
            ("owner", "Legal"),
        ],
        [Refused, Refused, Refused, Refused, Allowed, Refused],
    ),
    (
        "QA re-score",
        "/t/acme/settings/scorecard/rescore",
        &[("scope", "7")],
        [Refused, Allowed, Refused, Allowed, Refused, Refused],
    ),
    (
        "regenerate an account briefing (no such account: 404 once allowed)",
        "/t/acme/accounts/01ARZ3NDEKTSV4RRFFQ69G5FAV/briefing",
        &[],
        [Refused, Refused, Refused, Refused, Refused, Refused],
    ),
    (
        "alert rules",
        "/t/acme/settings/alerts",
        &[("enabled", "on"), ("max_rating", "2")],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "reply-draft settings",
        "/t/acme/settings/reviews",
        &[
            ("mode", "off"),
            ("formality", "friendly"),
            ("template_1", "Sorry."),
            ("template_2", "Sorry."),
            ("template_3", "Thanks."),
            ("template_4", "Thanks."),
            ("template_5", "Thanks!"),
        ],
        [Refused, Allowed, Refused, Refused, Refused, Refused],
    ),
    (
        "start offboarding (of the tenant the first row created)",
        "/admin/tenants/x-new/offboarding",
        &[("wind_down_days", "30")],
        [Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
    (
        "cancel offboarding",
        "/admin/tenants/x-new/offboarding/cancel",
        &[],
        [Allowed, Refused, Refused, Refused, Refused, Refused],
    ),
];

const ROLES: [Role; 6] = [
    Role::Operator,
    Role::TenantAdmin,
    Role::Analyst,
    Role::QaLead,
    Role::PrivacyOfficer,
    Role::Auditor,
];

fn judge(status: StatusCode, location: &str) -> Expect {
    match status {
        StatusCode::OK | StatusCode::SEE_OTHER if location != "/login" => Allowed,
        StatusCode::SEE_OTHER => SignIn,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Refused,
        other => panic!("unexpected status {other}"),
    }
}

#[tokio::test]
async fn every_role_gets_exactly_its_route_families() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    let mut clients = vec![app.new_client()];
    for role in ROLES {
        let email = format!("{}@acme.example", role.as_str());
        let tenant = role.is_tenant_role().then_some(&tenant);
        app.create_user(&email, role, tenant);
        clients.push(app.signed_in_client(&email).await);
    }

    let mut mismatches = Vec::new();
    for (family, path, expected) in MATRIX {
        for (index, client) in clients.iter().enumerate() {
            let response = app.get(client, path).await;
            let got = judge(response.status(), &location(&response));
            if got != expected[index] {
                let who = if index == 0 {
                    "anonymous"
                } else {
                    ROLES[index - 1].as_str()
                };
                mismatches.push(format!(
                    "{family} ({path}) as {who}: expected {:?}, got {got:?}",
                    expected[index]
                ));
            }
        }
    }
    for (family, path, fields, expected) in POST_MATRIX {
        for (index, client) in clients.iter().skip(1).enumerate() {
            let response = app.post_form(client, path, fields).await;
            let got = judge(response.status(), &location(&response));
            if got != expected[index] {
                mismatches.push(format!(
                    "{family} (POST {path}) as {}: expected {:?}, got {got:?}",
                    ROLES[index].as_str(),
                    expected[index]
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "role matrix violations:\n{}",
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_anonymous_posts_are_refused() {
    let app = TestApp::spawn();
    let client = app.new_client();
    assert_eq!(
        app.get(&client, "/no/such/page").await.status(),
        StatusCode::NOT_FOUND
    );
    let response = client
        .post(app.url("/admin/tenants"))
        .form(&[("slug", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_user_row_of_a_tenant_that_no_longer_exists_is_404_not_500() {
    use rapport::ids::{ApiKeyId, IntegrationId, TenantId, UserId};
    use rapport::users::UserRef;

    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let operator = app.signed_in_client("op@example.com").await;
    // A row action as a stale directory page would post it, for a tenant id that is gone.
    let gone = TenantId::new();
    let response = app
        .post_form(
            &operator,
            &format!("/admin/users/{gone}/{}/disable", UserId::new()),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // References held elsewhere (e-mail index, key and webhook directories, sessions) that lead
    // into a tenant without keys read as absent, not as a store failure.
    let user = UserRef {
        tenant: Some(gone),
        id: UserId::new(),
    };
    assert!(app.context.users.get(user).unwrap().is_none());
    assert!(app
        .context
        .api_keys
        .get(gone, ApiKeyId::new())
        .unwrap()
        .is_none());
    assert!(app
        .context
        .integrations
        .get(gone, IntegrationId::new())
        .unwrap()
        .is_none());
}
