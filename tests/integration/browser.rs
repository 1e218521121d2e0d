//! End to end in a real headless Chromium (Debian's `chromium` and `chromium-driver`): sign in
//! through the form and see the home page; upload a file with the progress-bar script and read
//! the imported interactions; open the dashboard and an account page of a seeded tenant and
//! find every chart drawn (SVG with a title and marks), a chart's CSV downloadable, and the
//! account's health history chart and timeline.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use rapport::users::Role;

use crate::dashboard::{day, set_up};
use crate::helpers::{free_port, TestApp, PASSWORD};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium driven through chromedriver; the driver process and the profile
/// directory live as long as this value.
struct Chromium {
    client: fantoccini::Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Chromium {
    async fn start() -> Self {
        // fantoccini's TLS stack links both of rustls's providers; name one for this process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Driver(
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
        let client = loop {
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
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }
}

/// Fills in and submits the real sign-in form (the browser is on `/login`).
async fn submit_login_form(
    browser: &fantoccini::Client,
    email: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser
        .find(Locator::Id("email"))
        .await?
        .send_keys(email)
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
        .await
}

#[tokio::test]
async fn sign_in_in_chromium_and_see_the_tenant_home_page() {
    let app = TestApp::spawn();
    let tenant = app.create_tenant("acme");
    app.create_user("admin@acme.example", Role::TenantAdmin, Some(&tenant));
    let chromium = Chromium::start().await;
    let browser = &chromium.client;

    let result = async {
        browser.goto(&app.url("/t/acme/")).await?;
        // Not signed in: the console sends the browser to the sign-in form.
        assert!(browser.current_url().await?.path().ends_with("/login"));
        submit_login_form(browser, "admin@acme.example").await?;
        let heading =
            text_when_present(browser, Locator::Css("main h1"), Duration::from_secs(30)).await?;
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
        let table =
            text_when_present(browser, Locator::Css("table"), Duration::from_secs(30)).await?;
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
        let state = text_when_present(
            browser,
            Locator::XPath("//dd[@class='state' and text()='committed']"),
            Duration::from_secs(30),
        )
        .await?;
        assert_eq!(state, "committed");
        assert!(browser
            .current_url()
            .await?
            .path()
            .starts_with("/t/acme/imports/"));
        std::fs::write(shots.join("import.png"), browser.screenshot().await?).unwrap();

        browser.goto(&app.url("/t/acme/interactions")).await?;
        let list =
            text_when_present(browser, Locator::Css("table"), Duration::from_secs(30)).await?;
        assert!(list.contains("Card payment declined at checkout"), "{list}");
        std::fs::write(shots.join("interactions.png"), browser.screenshot().await?).unwrap();
        browser
            .find(Locator::LinkText("Re: Contract renewal terms"))
            .await?
            .click()
            .await?;
        let thread =
            text_when_present(browser, Locator::Css("ol.thread"), Duration::from_secs(30)).await?;
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
    browser.clone().close().await.ok();
    result.unwrap();
}

/// The text of the first element `locator` finds, waiting up to `patience` for it, and finding it
/// again when the page replaced it between the find and the read (a page that refreshes itself,
/// or a navigation still landing).
async fn text_when_present(
    browser: &fantoccini::Client,
    locator: Locator<'_>,
    patience: Duration,
) -> Result<String, fantoccini::error::CmdError> {
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let element = browser.wait().at_most(left).for_element(locator).await?;
        match element.text().await {
            Err(error) if error.is_stale_element_reference() && Instant::now() < deadline => {}
            read => return read,
        }
    }
}

/// What the browser finds of one `<figure class="chart" id="chart-{id}">`: the SVG's title (its
/// text content) and the number of drawn marks (`path` and `rect` elements inside the SVG).
async fn drawn_chart(
    browser: &fantoccini::Client,
    id: &str,
) -> Result<(String, usize), fantoccini::error::CmdError> {
    let figure = browser
        .find(Locator::Css(&format!("figure.chart#chart-{id}")))
        .await?;
    let svg = figure.find(Locator::Css("svg[role=img]")).await?;
    let title = svg
        .find(Locator::Css("title"))
        .await?
        .prop("textContent")
        .await?
        .unwrap_or_default();
    let marks = svg.find_all(Locator::Css("path, rect")).await?.len();
    Ok((title, marks))
}

/// Fetches `href` from inside the page (the session's cookie, same origin) and returns the
/// status, the content type and the body.
async fn fetch_in_page(
    browser: &fantoccini::Client,
    href: &str,
) -> Result<(u64, String, String), fantoccini::error::CmdError> {
    let answer = browser
        .execute_async(
            "const [href, done] = arguments;\n\
             fetch(href, {credentials: 'same-origin'})\n\
               .then(r => r.text().then(body => done([r.status, r.headers.get('content-type') || '', body])))\n\
               .catch(e => done([0, String(e), '']));",
            vec![serde_json::json!(href)],
        )
        .await?;
    let status = answer[0].as_u64().unwrap_or_default();
    let kind = answer[1].as_str().unwrap_or_default().to_owned();
    let body = answer[2].as_str().unwrap_or_default().to_owned();
    Ok((status, kind, body))
}

/// Issue 6's end-to-end check: the dashboard and an account page, as a signed-in analyst sees
/// them in Chromium, with the tenant seeded as the dashboard test seeds it (accounts, chats,
/// reviews, analyses by the `off` backend, health computed by the imports).
#[tokio::test]
async fn the_dashboard_and_an_account_page_draw_their_charts_in_chromium() {
    let app = TestApp::spawn();
    let (tenant, _dir) = set_up(&app);
    app.create_user("analyst@acme.example", Role::Analyst, Some(&tenant));
    let northwind = app
        .context
        .accounts
        .newest_page(tenant.id, None)
        .unwrap()
        .items
        .iter()
        .find(|account| account.record.source_id == "A-1")
        .unwrap()
        .id;
    let mut expected_timeline: Vec<String> = app
        .context
        .interactions
        .newest_page(tenant.id, None)
        .unwrap()
        .items
        .iter()
        .filter(|interaction| {
            matches!(
                interaction.record.account.as_deref(),
                Some("A-1" | "northwind.example")
            )
        })
        .map(|interaction| format!("/t/acme/interactions/{}", interaction.id))
        .collect();
    expected_timeline.sort();
    assert_eq!(expected_timeline.len(), 4);
    let chromium = Chromium::start().await;
    let browser = &chromium.client;
    let (from, to) = (day(3), day(0));
    let dashboard = app.url(&format!("/t/acme/dashboard?from={from}&to={to}"));

    let result = async {
        browser.goto(&dashboard).await?;
        assert!(browser.current_url().await?.path().ends_with("/login"));
        submit_login_form(browser, "analyst@acme.example").await?;
        browser.wait().for_element(Locator::Css("main h1")).await?;
        // The sign-in lands on the tenant's home page; the dashboard is opened again.
        browser.goto(&dashboard).await?;
        let heading =
            text_when_present(browser, Locator::Css("main h1"), Duration::from_secs(30)).await?;
        assert_eq!(heading, "Dashboard");
        for id in [
            "sentiment",
            "volume",
            "topics",
            "qa-agents",
            "qa-criteria",
            "reviews",
            "health",
        ] {
            let (title, marks) = drawn_chart(browser, id).await?;
            assert!(!title.trim().is_empty(), "chart {id} has a title");
            assert!(marks > 0, "chart {id} draws its data ({marks} marks)");
        }
        // Seven charts, and no chart says it has nothing to draw: the seeded data is in range.
        assert_eq!(
            browser.find_all(Locator::Css("figure.chart")).await?.len(),
            7
        );
        assert!(browser
            .find_all(Locator::Css(".chart-empty"))
            .await?
            .is_empty());
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::write(shots.join("dashboard.png"), browser.screenshot().await?).unwrap();

        // The volume chart's CSV link, fetched with the browser's session: exactly the hand
        // count of the dashboard test (two chats two days ago, an e-mail and a ticket yesterday).
        let href = browser
            .find(Locator::Css("#chart-volume a.chart-csv"))
            .await?
            .attr("href")
            .await?
            .expect("the volume chart links its CSV");
        let (status, kind, body) = fetch_in_page(browser, &href).await?;
        assert_eq!(status, 200, "{href}: {kind} {body}");
        assert!(kind.starts_with("text/csv"), "{kind}");
        assert_eq!(
            body,
            format!(
                "day,ticket,chat,email\n{},0,0,0\n{},0,2,0\n{},1,0,1\n{},0,0,0\n",
                day(3),
                day(2),
                day(1),
                day(0)
            )
        );

        // The account page: the health history chart and the timeline.
        browser
            .goto(&app.url(&format!("/t/acme/accounts/{northwind}")))
            .await?;
        let heading =
            text_when_present(browser, Locator::Css("main h1"), Duration::from_secs(30)).await?;
        assert!(heading.contains("Northwind"), "{heading}");
        let (title, marks) = drawn_chart(browser, "health-history").await?;
        assert_eq!(title, "Health score history");
        assert!(marks > 0, "the history draws at least one snapshot");
        // The timeline: Northwind's four interactions (three named by its id, one by its
        // domain), each linking to its page; Contoso's chat is not there.
        let mut linked = Vec::new();
        for link in browser.find_all(Locator::Css("ol.timeline > li a")).await? {
            linked.push(link.attr("href").await?.unwrap_or_default());
        }
        linked.sort();
        assert_eq!(linked, expected_timeline);
        // The kind labels are upper-cased by the style sheet; WebDriver reports rendered text.
        let kinds = browser
            .find(Locator::Css("ol.timeline"))
            .await?
            .text()
            .await?
            .to_lowercase();
        assert!(
            kinds.matches("chat").count() == 2
                && kinds.contains("email")
                && kinds.contains("ticket"),
            "{kinds}"
        );
        std::fs::write(shots.join("account.png"), browser.screenshot().await?).unwrap();
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    browser.clone().close().await.ok();
    result.unwrap();
}
