//! At-rest encryption: a unique sentinel never appears in any file under the data directory.

use rapport::users::Role;
use reqwest::StatusCode;

use crate::helpers::{files_under, TestApp, PASSWORD};

#[tokio::test]
async fn sentinels_in_user_emails_and_tenant_data_never_reach_the_disk_in_plaintext() {
    let app = TestApp::spawn();
    let sentinel = format!("zq{}x", ulid::Ulid::new().to_string().to_lowercase());
    let tenant_name = format!("Org {sentinel}");
    let tenant = rapport::tenants::create_tenant(
        &app.context,
        rapport::audit::Actor::cli(),
        None,
        "sentinel",
        &tenant_name,
    )
    .unwrap();
    let operator_email = format!("op.{sentinel}@example.com");
    let member_email = format!("{sentinel}@tenant.example");
    app.create_user(&operator_email, Role::Operator, None);
    app.create_user(&member_email, Role::TenantAdmin, Some(&tenant));

    // Exercise sessions, failed logins and the audit log with the sentinel inside.
    let member = app.signed_in_client(&member_email).await;
    assert_eq!(
        app.get(&member, "/t/sentinel/users").await.status(),
        StatusCode::OK
    );
    let _ = app
        .login(
            &app.new_client(),
            &format!("typo.{sentinel}@tenant.example"),
            PASSWORD,
        )
        .await;
    let operator = app.signed_in_client(&operator_email).await;
    assert_eq!(
        app.get(&operator, "/admin/users").await.status(),
        StatusCode::OK
    );
    app.context.store.flush().unwrap();

    let needles = [
        sentinel.as_bytes().to_vec(),
        sentinel.to_uppercase().into_bytes(),
    ];
    let files = files_under(&app.data_dir);
    assert!(
        files.len() > 3,
        "expected database and audit files, found {files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for needle in &needles {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_slice()),
                "plaintext sentinel found in {}",
                file.display()
            );
        }
    }
}
