//! Transport and browser hardening: TLS versions, security headers, cookie attributes, probes.

use std::process::{Command, Stdio};

use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{TestApp, PASSWORD};

#[tokio::test]
async fn every_response_carries_the_security_headers_and_hsts_under_tls() {
    let app = TestApp::spawn();
    for path in ["/login", "/no/such/page", "/healthz"] {
        let response = app.get(&app.client, path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age="));
    }
}

#[tokio::test]
async fn cookies_are_host_only_secure_http_only_and_strict() {
    let app = TestApp::spawn();
    app.create_user("op@example.com", Role::Operator, None);
    let response = app
        .login(&app.new_client(), "op@example.com", PASSWORD)
        .await;
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.contains("rapport-session"))
        .unwrap();
    assert!(cookie.starts_with("__Host-rapport-session="), "{cookie}");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="));
}

#[tokio::test]
async fn plain_http_has_no_hsts_and_unprefixed_cookies() {
    let app = TestApp::spawn_plain();
    app.create_user("op@example.com", Role::Operator, None);
    let page = app.get(&app.client, "/login").await;
    assert!(page.headers().get("strict-transport-security").is_none());
    let response = app
        .login(&app.new_client(), "op@example.com", PASSWORD)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("rapport-session=") && !cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn health_probes_answer() {
    let app = TestApp::spawn();
    assert_eq!(
        app.get(&app.client, "/healthz").await.status(),
        StatusCode::OK
    );
    let ready = app.get(&app.client, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.text().await.unwrap(), "ready");
}

#[tokio::test]
async fn static_assets_are_versioned_and_long_cached() {
    let app = TestApp::spawn();
    let page = app.get(&app.client, "/login").await.text().await.unwrap();
    let start = page.find("/static/").unwrap();
    let href = &page[start..start + page[start..].find('"').unwrap()];
    let css = app.get(&app.client, href).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(
        app.get(&app.client, "/static/0000/rapport.css")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

fn handshake(port: u16, version_flag: &str) -> bool {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version_flag,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("openssl is installed by scripts/install-deps.sh");
    let text = String::from_utf8_lossy(&output.stdout);
    text.contains("Cipher is ") && !text.contains("Cipher is (NONE)")
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_offered() {
    let app = TestApp::spawn();
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let results = tokio::task::spawn_blocking(move || {
        ["-tls1_3", "-tls1_2", "-tls1_1", "-tls1"].map(|flag| (flag, handshake(port, flag)))
    })
    .await
    .unwrap();
    assert_eq!(
        results,
        [
            ("-tls1_3", true),
            ("-tls1_2", true),
            ("-tls1_1", false),
            ("-tls1", false)
        ]
    );
}
