//! End to end in a real headless Chromium (Debian's `chromium` and `chromium-driver`): sign in
//! through the form and see the home page; upload a file with the progress-bar script and read
//! the imported interactions.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use rapport::users::Role;

use crate::helpers::{free_port, TestApp, PASSWORD};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sign_in_in_chromium_and_see_the_tenant_home_page() {
    // fantoccini's TLS stack links both of rustls's providers; name one for this process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));

    let port = free_port();
    let _driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by scripts/install-deps.sh --test (package chromium-driver)"),
    );
    let profile = tempfile::tempdir().unwrap();
    let capabilities: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    }))
    .unwrap();
    let started = Instant::now();
    let browser = loop {
        match ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => break client,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("could not start Chromium through chromedriver: {error}"),
        }
    };

    let result = async {
        browser.goto(&app.url("/t/acme/")).await?;
        // Not signed in: the console sends the browser to the sign-in form.
        assert!(browser.current_url().await?.path().ends_with("/login"));
        browser
            .find(Locator::Id("email"))
            .await?
            .send_keys("admin@acme.example")
            .await?;
        browser
            .find(Locator::Id("password"))
            .await?
            .send_keys(PASSWORD)
            .await?;
        browser
            .find(Locator::Css("form.stacked button[type=submit]"))
            .await?
            .click()
            .await?;
        let heading = browser
            .wait()
            .for_element(Locator::Css("main h1"))
            .await?
            .text()
            .await?;
        assert_eq!(heading, "Tenant acme");
        assert_eq!(browser.current_url().await?.path(), "/t/acme/");
        let nav = browser
            .find(Locator::Css("header nav"))
            .await?
            .text()
            .await?;
        assert!(nav.contains("Users") && nav.contains("Security"), "{nav}");
        let who = browser.find(Locator::Css(".who")).await?.text().await?;
        assert!(who.contains("admin@acme.example"), "{who}");
        // Screenshots of what a person sees, kept beside the build for review.
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::write(shots.join("home.png"), browser.screenshot().await?).unwrap();
        browser.goto(&app.url("/t/acme/users")).await?;
        let table = browser
            .wait()
            .for_element(Locator::Css("table"))
            .await?
            .text()
            .await?;
        assert!(table.contains("admin@acme.example"), "{table}");
        std::fs::write(shots.join("users.png"), browser.screenshot().await?).unwrap();

        // Upload through the script (XMLHttpRequest, CSRF header, progress bar); the import's
        // page refreshes itself until the run is committed.
        browser.goto(&app.url("/t/acme/imports")).await?;
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/interactions.jsonl");
        browser
            .find(Locator::Id("format"))
            .await?
            .select_by_value("jsonl")
            .await?;
        browser
            .find(Locator::Id("file"))
            .await?
            .send_keys(fixture.to_str().unwrap())
            .await?;
        browser
            .find(Locator::Css("#upload-form button[type=submit]"))
            .await?
            .click()
            .await?;
        let state = browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::XPath(
                "//dd[@class='state' and text()='committed']",
            ))
            .await?
            .text()
            .await?;
        assert_eq!(state, "committed");
        assert!(browser
            .current_url()
            .await?
            .path()
            .starts_with("/t/acme/imports/"));
        std::fs::write(shots.join("import.png"), browser.screenshot().await?).unwrap();

        browser.goto(&app.url("/t/acme/interactions")).await?;
        let list = browser
            .wait()
            .for_element(Locator::Css("table"))
            .await?
            .text()
            .await?;
        assert!(list.contains("Card payment declined at checkout"), "{list}");
        std::fs::write(shots.join("interactions.png"), browser.screenshot().await?).unwrap();
        browser
            .find(Locator::LinkText("Re: Contract renewal terms"))
            .await?
            .click()
            .await?;
        let thread = browser
            .wait()
            .for_element(Locator::Css("ol.thread"))
            .await?
            .text()
            .await?;
        // The role labels are upper-cased by the style sheet; WebDriver reports rendered text.
        let lower = thread.to_lowercase();
        assert!(
            lower.contains("customer") && lower.contains("agent"),
            "{thread}"
        );
        std::fs::write(shots.join("interaction.png"), browser.screenshot().await?).unwrap();
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.close().await.ok();
    result.unwrap();
}
