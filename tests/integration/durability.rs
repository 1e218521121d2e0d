//! Acknowledged writes survive `kill -9`: a real `rapport serve` process is killed right after
//! acknowledging N writes, and all N are there when the database is opened again.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{cli_instance, csrf_in, free_port, rapport, serve, stderr, stdout, PASSWORD};

const WRITES: usize = 25;

#[tokio::test]
async fn writes_acknowledged_before_sigkill_are_all_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = cli_instance(dir.path(), port);
    let config = config.to_str().unwrap();
    let added = rapport(
        &[
            "user",
            "add",
            "--config",
            config,
            "--email",
            "op@example.com",
            "--role",
            "operator",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(added.status.success(), "{}", stderr(&added));

    let mut server = serve(config);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = Instant::now();
    let login_page = loop {
        match client.get(format!("{base}/login")).send().await {
            Ok(response) => break response.text().await.unwrap(),
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("server did not start: {error}"),
        }
    };
    let token = csrf_in(&login_page);
    let login = client
        .post(format!("{base}/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("email", "op@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let page = client
        .get(format!("{base}/admin/tenants"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_in(&page);

    for index in 0..WRITES {
        let response = client
            .post(format!("{base}/admin/tenants"))
            .form(&[
                ("csrf", token.as_str()),
                ("slug", &format!("t{index}")),
                ("name", &format!("Tenant {index}")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "write {index} not acknowledged"
        );
    }
    server.kill().unwrap(); // SIGKILL: no shutdown, no final flush
    server.wait().unwrap();

    let listed = rapport(&["tenant", "list", "--config", config], None);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = stdout(&listed);
    for index in 0..WRITES {
        assert!(
            text.contains(&format!("Tenant {index}\n")),
            "tenant t{index} lost:\n{text}"
        );
    }
    let verify = rapport(&["audit", "verify", "--config", config], None);
    assert!(
        verify.status.success(),
        "audit chain damaged by the kill: {}",
        stderr(&verify)
    );
}
