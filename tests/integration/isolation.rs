//! Tenant isolation: another tenant's pages do not exist for you; the operator sees no tenant page.

use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_member_of_tenant_a_gets_404_for_every_tenant_b_url() {
    let app = TestApp::spawn();
    let alpha = app.create_tenant("alpha");
    let beta = app.create_tenant("beta");
    let beta_user = app.create_user("analyst@beta.example", Role::Analyst, Some(&beta));
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interactions.jsonl");
    let run = rapport::ingest::import_file(
        &app.context,
        &rapport::ingest::ImportRequest {
            actor: &rapport::audit::Actor::cli(),
            tenant: &beta,
            format: rapport::ingest::ImportFormat::Jsonl,
            path: &fixture,
            skip_invalid: false,
        },
        &mut |_| {},
    )
    .unwrap();
    let mut beta_interaction = None;
    app.context
        .interactions
        .for_each(beta.id, |interaction| {
            beta_interaction.get_or_insert(interaction.id);
            Ok(())
        })
        .unwrap();
    let beta_interaction = beta_interaction.unwrap();
    let get_paths = [
        "/t/beta/".to_owned(),
        "/t/beta/users".to_owned(),
        "/t/beta/settings/security".to_owned(),
        "/t/beta/audit".to_owned(),
        "/t/beta/interactions".to_owned(),
        format!("/t/beta/interactions/{beta_interaction}"),
        format!("/t/alpha/interactions/{beta_interaction}"),
        "/t/beta/accounts".to_owned(),
        "/t/beta/contacts".to_owned(),
        "/t/beta/signals".to_owned(),
        "/t/beta/imports".to_owned(),
        format!("/t/beta/imports/{}", run.id),
        "/t/beta/settings/api-keys".to_owned(),
        "/t/beta/settings/integrations".to_owned(),
    ];
    let user_url = format!("/t/beta/users/{}", beta_user.id);
    let post_paths = [
        "/t/beta/users".to_owned(),
        "/t/beta/settings/security".to_owned(),
        "/t/beta/imports".to_owned(),
        "/t/beta/settings/api-keys".to_owned(),
        "/t/beta/settings/integrations".to_owned(),
        format!("{user_url}/disable"),
        format!("{user_url}/role"),
        format!("{user_url}/enable"),
        format!("{user_url}/reset-second-factor"),
    ];
    for role in Role::TENANT_ROLES {
        let email = format!("{}@alpha.example", role.as_str());
        app.create_user(&email, role, Some(&alpha));
        let client = app.signed_in_client(&email).await;
        for path in &get_paths {
            let status = app.get(&client, path).await.status();
            // A role without the permission in its own tenant gets 403 for alpha's own URL;
            // never anything of beta's.
            let own_tenant_refusal =
                path.starts_with("/t/alpha/") && status == StatusCode::FORBIDDEN;
            assert!(
                status == StatusCode::NOT_FOUND || own_tenant_refusal,
                "{role} GET {path}: {status}"
            );
        }
        for path in &post_paths {
            let response = app
                .post_form(
                    &client,
                    path,
                    &[("role", "auditor"), ("email", "x@y.example")],
                )
                .await;
            assert_eq!(
                response.status(),
                StatusCode::NOT_FOUND,
                "{role} POST {path}"
            );
        }
    }
    // Nothing in beta changed.
    let still = app
        .context
        .users
        .get(beta_user.reference())
        .unwrap()
        .unwrap();
    assert_eq!(still.role, Role::Analyst);
    assert!(!still.disabled);
    assert_eq!(app.context.users.list(Some(beta.id)).unwrap().len(), 1);
}

#[tokio::test]
async fn the_operator_cannot_open_tenant_content() {
    let app = TestApp::spawn();
    app.create_tenant("alpha");
    app.create_user("op@example.com", Role::Operator, None);
    let operator = app.signed_in_client("op@example.com").await;
    for path in [
        "/t/alpha/",
        "/t/alpha/users",
        "/t/alpha/settings/security",
        "/t/alpha/audit",
        "/t/alpha/interactions",
        "/t/alpha/accounts",
        "/t/alpha/contacts",
        "/t/alpha/signals",
        "/t/alpha/imports",
    ] {
        let status = app.get(&operator, path).await.status();
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "operator got {status} on {path}"
        );
    }
}
