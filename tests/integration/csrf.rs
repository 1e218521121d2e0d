//! Every state-changing form is refused without the session's CSRF token, and changes nothing.

use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{csrf_in, TestApp, PASSWORD};

#[tokio::test]
async fn a_post_without_or_with_a_wrong_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let client = app.signed_in_client("op@example.com").await;

    let missing = client
        .post(app.url("/admin/tenants"))
        .form(&[("slug", "evil"), ("name", "Evil")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert!(missing
        .text()
        .await
        .unwrap()
        .contains("Nothing was changed"));

    let wrong = client
        .post(app.url("/admin/tenants"))
        .form(&[
            ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ("slug", "evil"),
            ("name", "Evil"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    // A token from another session is just as wrong.
    app.create_user("other@example.com", Role::Operator, None);
    let other = app.signed_in_client("other@example.com").await;
    let foreign = app.csrf(&other).await;
    let crossed = client
        .post(app.url("/admin/tenants"))
        .form(&[
            ("csrf", foreign.as_str()),
            ("slug", "evil"),
            ("name", "Evil"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::FORBIDDEN);
    assert!(app.context.tenants.find_by_slug("evil").unwrap().is_none());

    let accepted = app
        .post_form(
            &client,
            "/admin/tenants",
            &[("slug", "good"), ("name", "Good")],
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert!(app.context.tenants.find_by_slug("good").unwrap().is_some());
}

#[tokio::test]
async fn the_login_form_needs_its_token_too() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let client = app.new_client();
    let response = client
        .post(app.url("/login"))
        .form(&[("email", "op@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // With the token from the page it works.
    let page = app.get(&client, "/login").await.text().await.unwrap();
    let token = csrf_in(&page);
    let response = client
        .post(app.url("/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("email", "op@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_token_may_come_in_a_header() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let client = app.signed_in_client("op@example.com").await;
    let token = app.csrf(&client).await;
    let response = client
        .post(app.url("/admin/tenants"))
        .header("x-csrf-token", token)
        .form(&[("slug", "viaheader"), ("name", "Via header")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}
