//! TOTP: enrolment, sign-in with a code, replay refused, recovery codes single-use, and tenant
//! admins requiring it per role.

use rapport::auth::totp::{code_at_step, step_at};
use rapport::users::Role;
use reqwest::{Client, StatusCode};

use crate::helpers::{csrf_in, location, TestApp, PASSWORD};

fn now_step() -> u64 {
    step_at(u64::try_from(chrono::Utc::now().timestamp()).unwrap())
}

fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in page:\n{page}"))
        + start.len();
    let to = page[from..].find(end).unwrap() + from;
    &page[from..to]
}

async fn submit_code(app: &TestApp, client: &Client, code: &str) -> reqwest::Response {
    let page = app
        .get(client, "/login/second-factor")
        .await
        .text()
        .await
        .unwrap();
    let token = csrf_in(&page);
    client
        .post(app.url("/login/second-factor"))
        .form(&[("csrf", token.as_str()), ("code", code)])
        .send()
        .await
        .unwrap()
}

/// Enrols the signed-in client's user; returns the secret and the recovery codes.
async fn enrol(app: &TestApp, client: &Client) -> (Vec<u8>, Vec<String>) {
    let page = app
        .get(client, "/account/second-factor")
        .await
        .text()
        .await
        .unwrap();
    let base32 = between(&page, "<code class=\"secret\">", "</code>").to_owned();
    let secret = totp_rs::Secret::Encoded(base32).to_bytes().unwrap();
    let qr = app.get(client, "/account/second-factor/qr.svg").await;
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");
    assert!(qr.text().await.unwrap().contains("<svg"));

    let wrong = app
        .post_form(client, "/account/second-factor", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The previous step's code is accepted at enrolment; it leaves the current step for sign-in.
    let code = code_at_step(&secret, now_step() - 1);
    let done = app
        .post_form(client, "/account/second-factor", &[("code", code.as_str())])
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let page = done.text().await.unwrap();
    let codes: Vec<String> = page
        .split("<li><code>")
        .skip(1)
        .map(|part| part.split("</code>").next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "recovery codes not shown:\n{page}");
    (secret, codes)
}

#[tokio::test]
async fn enrolment_code_login_replay_and_recovery_codes() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let client = app.signed_in_client("op@example.com").await;
    let (secret, recovery) = enrol(&app, &client).await;
    assert!(app
        .context
        .users
        .find_by_email(&rapport::users::Email::parse("op@example.com").unwrap())
        .unwrap()
        .unwrap()
        .totp
        .is_some());
    app.post_form(&client, "/logout", &[]).await;

    // The password alone now leads to the second-factor step, and nothing else opens.
    let browser = app.new_client();
    let response = app.login(&browser, "op@example.com", PASSWORD).await;
    assert_eq!(location(&response), "/login/second-factor");
    assert_eq!(
        location(&app.get(&browser, "/admin/tenants").await),
        "/login/second-factor"
    );
    assert_eq!(
        submit_code(&app, &browser, "123456").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let code = code_at_step(&secret, now_step());
    let accepted = submit_code(&app, &browser, &code).await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&browser, "/admin/tenants").await.status(),
        StatusCode::OK
    );

    // The same code a second time is refused, even in a new sign-in within its 30 seconds.
    let replayer = app.new_client();
    app.login(&replayer, "op@example.com", PASSWORD).await;
    assert_eq!(
        submit_code(&app, &replayer, &code).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A recovery code works once.
    let first = app.new_client();
    app.login(&first, "op@example.com", PASSWORD).await;
    assert_eq!(
        submit_code(&app, &first, &recovery[0]).await.status(),
        StatusCode::SEE_OTHER
    );
    let again = app.new_client();
    app.login(&again, "op@example.com", PASSWORD).await;
    assert_eq!(
        submit_code(&app, &again, &recovery[0]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        submit_code(&app, &again, &recovery[1]).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_tenant_admin_can_require_a_second_factor_for_a_role() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let admin = app.signed_in_client("admin@acme.example").await;
    let saved = app
        .post_form(
            &admin,
            "/t/acme/settings/security",
            &[("totp_role", "analyst")],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let page = app
        .get(&admin, "/t/acme/settings/security")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("value=\"analyst\" checked"));

    let analyst = app.signed_in_client("analyst@acme.example").await;
    assert_eq!(
        location(&app.get(&analyst, "/t/acme/").await),
        "/account/second-factor"
    );
    enrol(&app, &analyst).await;
    assert_eq!(app.get(&analyst, "/t/acme/").await.status(), StatusCode::OK);
    // The admin's own role was not required.
    assert_eq!(app.get(&admin, "/t/acme/").await.status(), StatusCode::OK);

    // A lost authenticator: the admin resets it, the analyst is signed out and must enrol again.
    let analyst_id = app
        .context
        .users
        .find_by_email(&rapport::users::Email::parse("analyst@acme.example").unwrap())
        .unwrap()
        .unwrap()
        .id;
    let reset = app
        .post_form(
            &admin,
            &format!("/t/acme/users/{analyst_id}/reset-second-factor"),
            &[],
        )
        .await;
    assert_eq!(reset.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&app.get(&analyst, "/t/acme/").await), "/login");
    let again = app.signed_in_client("analyst@acme.example").await;
    assert_eq!(
        location(&app.get(&again, "/t/acme/").await),
        "/account/second-factor"
    );
}
