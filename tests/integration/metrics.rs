//! `/metrics`: off by default (404), 401 without the bearer token, and with it every named
//! series, with request counts that move and labels that never name a tenant.

use std::os::unix::fs::PermissionsExt;

use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{cli_instance, free_port, rapport, stderr, stdout, TestApp};

const TOKEN: &str = "4f1d0c6a9b2e47d8a3c5e6f708192a3b-scrape";
const SLUG: &str = "zebra-secret-slug";

fn with_metrics() -> TestApp {
    TestApp::spawn_configured(|config, dir| {
        let path = dir.join("metrics-token");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        config.metrics.enabled = true;
        config.metrics.token_file = Some(path);
    })
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The integer value of the sample whose name and labels are exactly `series`; 0 when absent.
fn value(exposition: &str, series: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |number| number.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_need_the_token_and_count_requests_by_route_family() {
    let app = with_metrics();
    let tenant = app.create_tenant(SLUG);
    app.create_user("admin@zebra.test", Role::TenantAdmin, Some(&tenant));
    let browser = app.signed_in_client("admin@zebra.test").await;

    // Without the token, or with another one: 401, nothing disclosed.
    let anonymous = app.get(&app.client, "/metrics").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    assert!(!anonymous.text().await.unwrap().contains("rapport_"));
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("0".repeat(TOKEN.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let first = scrape(&app).await;
    for name in [
        "rapport_http_requests_total",
        "rapport_http_request_duration_seconds_bucket",
        "rapport_http_request_duration_seconds_count",
        "rapport_analysis_queue_depth",
        "rapport_analysis_items_total",
        "rapport_retention_runs_total",
        "rapport_backup_age_seconds",
        "rapport_database_size_bytes",
    ] {
        assert!(
            rapport::metrics::samples(&first, name).next().is_some(),
            "{name} missing:\n{first}"
        );
    }
    assert!(value(&first, "rapport_database_size_bytes") > 0, "{first}");
    assert!(first.contains("rapport_analysis_queue_depth{state=\"queued\"} 0"));
    assert!(first.contains("rapport_backup_age_seconds NaN"), "{first}");
    assert_eq!(value(&first, "rapport_retention_runs_total"), 0);
    // A retention run and a scheduled backup: counted, and the backup's age reported.
    rapport::retention::run(
        &app.context,
        &rapport::audit::Actor::system(),
        None,
        tenant.id,
        rapport::retention::Trigger::Scheduler,
        chrono::Utc::now(),
        &mut |_| {},
    )
    .unwrap();
    rapport::backup::scheduled::write_to_directory(&app.context).unwrap();
    let after_backup = scrape(&app).await;
    assert_eq!(value(&after_backup, "rapport_retention_runs_total"), 1);
    let age: f64 = after_backup
        .lines()
        .find_map(|line| line.strip_prefix("rapport_backup_age_seconds "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&age), "{after_backup}");

    let console_ok = "rapport_http_requests_total{family=\"console\",status_class=\"2xx\"}";
    let health_ok = "rapport_http_requests_total{family=\"health\",status_class=\"2xx\"}";
    let other_404 = "rapport_http_requests_total{family=\"other\",status_class=\"4xx\"}";
    let console_count = "rapport_http_request_duration_seconds_count{family=\"console\"}";
    let before = (
        value(&first, console_ok),
        value(&first, health_ok),
        value(&first, other_404),
        value(&first, console_count),
    );
    for path in ["interactions", "accounts", "search"] {
        let page = app.get(&browser, &format!("/t/{SLUG}/{path}")).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        app.get(&app.client, "/healthz").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&app.client, &format!("/{SLUG}/no-such-page"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let second = scrape(&app).await;
    assert_eq!(value(&second, console_ok), before.0 + 3, "{second}");
    assert_eq!(value(&second, health_ok), before.1 + 1, "{second}");
    assert_eq!(value(&second, other_404), before.2 + 1, "{second}");
    assert_eq!(value(&second, console_count), before.3 + 3, "{second}");
    // The 401s and the first scrape were counted under their own family.
    assert!(
        value(
            &second,
            "rapport_http_requests_total{family=\"metrics\",status_class=\"4xx\"}"
        ) >= 2
    );
    assert!(
        value(
            &second,
            "rapport_http_requests_total{family=\"metrics\",status_class=\"2xx\"}"
        ) >= 1
    );

    // No label names a tenant: neither its slug nor its id appears anywhere.
    assert!(!second.contains(SLUG), "{second}");
    assert!(!second.contains(&tenant.id.to_string()), "{second}");
    assert!(!second.contains("zebra"), "{second}");
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let app = TestApp::spawn();
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(!response.text().await.unwrap().contains("rapport_http"));
}

#[test]
fn a_bad_metrics_setting_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_instance(dir.path(), free_port());
    let original = std::fs::read_to_string(&config).unwrap();
    let token = dir.path().join("metrics-token");
    let check = |text: &str| {
        std::fs::write(&config, text).unwrap();
        rapport(&["check", "--config", config.to_str().unwrap()], None)
    };

    // Enabled without a token file: the configuration itself is refused.
    let output = check(&original.replace("enabled = false", "enabled = true"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("metrics.token_file"),
        "{}",
        stderr(&output)
    );

    let enabled = original.replace(
        "enabled = false",
        &format!("enabled = true\ntoken_file = {:?}", token.to_str().unwrap()),
    );
    // A missing file, a short token, a world-readable file: each named.
    let output = check(&enabled);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("metrics-token"),
        "{}",
        stderr(&output)
    );
    std::fs::write(&token, "too-short\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = check(&enabled);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("at least 32 characters"),
        "{}",
        stderr(&output)
    );
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = check(&enabled);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("chmod 600"), "{}", stderr(&output));
    // The server refuses to start with it, naming the file.
    let served = rapport(&["serve", "--config", config.to_str().unwrap()], None);
    assert!(!served.status.success());
    assert!(
        stderr(&served).contains("metrics-token"),
        "{}",
        stderr(&served)
    );

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let output = check(&enabled);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("metrics are on"),
        "{}",
        stdout(&output)
    );
}
