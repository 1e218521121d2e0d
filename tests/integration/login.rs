//! Sign-in, sign-out, lock-out, one-time passwords and session revocation.

use rapport::audit::{AuditAction, AuditView};
use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{location, TestApp, PASSWORD};

#[tokio::test]
async fn a_correct_password_signs_in_and_a_wrong_one_does_not() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);

    let stranger = app.new_client();
    let wrong = app
        .login(&stranger, "op@example.com", "not the password at all")
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().contains("rapport-session")));
    assert!(wrong.text().await.unwrap().contains("not correct"));
    let unknown = app.login(&stranger, "nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        location(&app.get(&stranger, "/admin/tenants").await),
        "/login"
    );

    let client = app.new_client();
    let response = app.login(&client, "OP@example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/");
    assert_eq!(location(&app.get(&client, "/").await), "/admin/tenants");
    let page = app.get(&client, "/admin/tenants").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Create a tenant"));
}

/// The `name=value` of the session cookie a response sets.
pub fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.contains("rapport-session="))
        .expect("no session cookie set")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn logout_ends_the_session_for_good() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let client = app.new_client();
    let cookie = session_cookie(&app.login(&client, "op@example.com", PASSWORD).await);
    assert_eq!(
        app.get(&client, "/admin/tenants").await.status(),
        StatusCode::OK
    );

    let response = app.post_form(&client, "/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login");
    assert_eq!(
        location(&app.get(&client, "/admin/tenants").await),
        "/login"
    );

    // Replaying the old cookie from another browser does not bring the session back.
    let replay = app
        .new_client()
        .get(app.url("/admin/tenants"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&replay), "/login");
}

#[tokio::test]
async fn repeated_failures_lock_the_account_for_a_while() {
    let app = TestApp::spawn();
    app.create_user("victim@example.com", Role::Operator, None);
    let attacker = app.new_client();
    for _ in 0..5 {
        let response = app
            .login(&attacker, "victim@example.com", "wrong password guess")
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused until the lock expires.
    let locked = app
        .login(&app.new_client(), "victim@example.com", PASSWORD)
        .await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.text().await.unwrap().contains("Try again in"));

    let entries = app
        .context
        .audit_log
        .entries(AuditView::Appliance, None, 100)
        .unwrap();
    let failures = entries
        .iter()
        .filter(|e| e.event.action == AuditAction::LoginFailed)
        .count();
    assert_eq!(failures, 5);
    assert!(entries
        .iter()
        .any(|e| e.event.action == AuditAction::LockedOut));
}

#[tokio::test]
async fn a_one_time_password_must_be_changed_first_and_the_change_ends_other_sessions() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user_with("new@acme.example", Role::Analyst, Some(&tenant), true);
    let first = app.signed_in_client("new@acme.example").await;
    let second = app.signed_in_client("new@acme.example").await;
    assert_eq!(
        location(&app.get(&first, "/t/acme/").await),
        "/account/password"
    );

    let short = app
        .post_form(
            &first,
            "/account/password",
            &[
                ("current", PASSWORD),
                ("new", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short
        .text()
        .await
        .unwrap()
        .contains("12 to 1024 characters"));

    let new_password = "a much better passphrase";
    let changed = app
        .post_form(
            &first,
            "/account/password",
            &[
                ("current", PASSWORD),
                ("new", new_password),
                ("confirm", new_password),
            ],
        )
        .await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get(&first, "/t/acme/").await.status(), StatusCode::OK);
    // The other session was signed out by the change.
    assert_eq!(location(&app.get(&second, "/t/acme/").await), "/login");
    // The old password no longer works; the new one does.
    assert_eq!(
        app.login(&app.new_client(), "new@acme.example", PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&app.new_client(), "new@acme.example", new_password)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_blocks_sign_in() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let analyst = app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let admin = app.signed_in_client("admin@acme.example").await;
    let victim = app.signed_in_client("analyst@acme.example").await;
    assert_eq!(app.get(&victim, "/t/acme/").await.status(), StatusCode::OK);

    let response = app
        .post_form(
            &admin,
            &format!("/t/acme/users/{}/disable", analyst.id),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&app.get(&victim, "/t/acme/").await), "/login");
    assert_eq!(
        app.login(&app.new_client(), "analyst@acme.example", PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // Enabled again, the user signs in as before; the old session stays ended.
    let enabled = app
        .post_form(&admin, &format!("/t/acme/users/{}/enable", analyst.id), &[])
        .await;
    assert_eq!(enabled.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&app.get(&victim, "/t/acme/").await), "/login");
    assert_eq!(
        app.login(&app.new_client(), "analyst@acme.example", PASSWORD)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    // Nobody disables themselves by accident.
    let admin_id = app
        .context
        .users
        .find_by_email(&rapport::users::Email::parse("admin@acme.example").unwrap())
        .unwrap()
        .unwrap()
        .id;
    let own = app
        .post_form(&admin, &format!("/t/acme/users/{admin_id}/disable"), &[])
        .await;
    assert_eq!(own.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn signing_in_again_issues_a_new_session_id() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let client = app.new_client();
    let first = app.login(&client, "op@example.com", PASSWORD).await;
    // Signing in again from the same browser, with its session's CSRF token.
    let second = app
        .post_form(
            &client,
            "/login",
            &[("email", "op@example.com"), ("password", PASSWORD)],
        )
        .await;
    let first_cookie = session_cookie(&first);
    assert!(first_cookie.starts_with("__Host-rapport-session="));
    assert_ne!(first_cookie, session_cookie(&second));
    // The first session was deleted when the second began.
    let replay = app
        .new_client()
        .get(app.url("/admin/tenants"))
        .header("cookie", first_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&replay), "/login");
}
