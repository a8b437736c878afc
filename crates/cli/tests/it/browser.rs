//! The console in headless Chromium (Debian's `chromium` + `chromium-driver`, which
//! `.ci/run` installs): an admin signs in, opens Connect Platforms, clicks "+", connects
//! Microsoft Teams through the sandbox's consent page (clicks Accept) and sees the result,
//! sees the team list, selects two teams, imports them and sees their channels and users;
//! then connects Slack. Screenshots go to `target/screenshots/`. Fails under `CI` when
//! Chromium or chromedriver is missing; skips (saying so) elsewhere.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.exists())
}

/// The page's source once it contains `text` (clicks return before the next page has loaded).
async fn page_with(c: &fantoccini::Client, text: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = c.source().await.unwrap_or_default();
        if last.contains(text) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page never showed {text:?}: {last}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn an_admin_connects_teams_and_slack_in_a_real_browser() {
    let Some(b) = browser(&["serve", "--sandbox", "--time-scale", "0"]).await else {
        return;
    };
    let (c, url, token) = (b.c.clone(), b.url.clone(), b.token.clone());
    let ready = &b.ready;
    let ms = &ready["sandbox"]["msteams"];
    let http = reqwest::Client::new();
    let shot = |name: &'static str| {
        let c = c.clone();
        async move {
            let png = c.screenshot().await.unwrap();
            std::fs::write(shots().join(name), png).unwrap();
        }
    };

    // Sign in.
    c.goto(&format!("{url}/connect")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/signin"));
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&token)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(&c, "No platform is connected yet").await;
    assert!(page.contains("Connect Platforms"), "{page}");
    assert!(page.contains("Universal channels can be created once two platforms are connected"));
    shot("1-connect-empty.png").await;

    // "+", then Connect with Microsoft Teams, through the consent page.
    c.find(Locator::Css("details.add summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Id("connect-msteams"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_with(&c, "name=\"password\"").await;
    shot("2-microsoft-consent.png").await;
    let user = c.find(Locator::Css("input[name=username]")).await.unwrap();
    user.clear().await.unwrap();
    user.send_keys(ms["service_account_upn"].as_str().unwrap())
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(ms["service_account_password"].as_str().unwrap())
        .await
        .unwrap();
    c.find(Locator::Css("button[value=accept]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The whole page, not its first bytes while it loads: wait for its last part.
    let page = page_with(&c, "Choose teams to import").await;
    assert!(page.contains("Microsoft Teams connected"), "{page}");
    shot("3-teams-connected.png").await;

    // The team list: select two teams, import, watch the progress, see channels and users.
    c.find(Locator::LinkText("Choose teams to import"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(&c, "Import selected teams").await;
    for team in ["Engineering", "Marketing", "Leadership"] {
        assert!(page.contains(team), "{team} is listed: {page}");
    }
    assert!(page.contains("Not imported"), "{page}");
    for team in ["Engineering", "Marketing"] {
        c.find(Locator::XPath(&format!(
            "//tr[td/label[normalize-space()='{team}']]//input[@type='checkbox']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    }
    shot("3a-team-list.png").await;
    // Graph answers slowly for a moment, so the progress page is seen while the import runs
    // and must update itself (the test never reloads it).
    let faults = http
        .post(format!(
            "{}/_sandbox/faults",
            ready["sandbox"]["base_url"].as_str().unwrap()
        ))
        .json(&serde_json::json!({
            "platform": "msteams", "kind": "stall", "rate": 1.0,
            "seconds": 2.0, "stall_seconds": 1.0,
        }))
        .send()
        .await
        .unwrap();
    assert!(faults.status().is_success());
    c.find(Locator::Id("import-selected"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(&c, "data-done=\"false\"").await;
    assert!(page.contains("Importing from"), "{page}");
    shot("3b-import-running.png").await;
    let page = page_with(&c, "Users imported").await;
    assert!(page.contains("Imported from"), "{page}");
    for channel in ["Backend", "Frontend", "Incidents", "Campaigns"] {
        assert!(page.contains(channel), "{channel} was imported: {page}");
    }
    assert!(
        !page.contains(">Leadership<"),
        "the team left unselected was not imported: {page}"
    );
    assert!(
        page.contains("alice@contoso.com"),
        "users are shown: {page}"
    );
    shot("3c-imported.png").await;
    c.execute(
        "document.getElementById('imported-users').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    shot("3d-imported-users.png").await;
    c.goto(&format!("{url}{}", {
        let here = c.current_url().await.unwrap();
        let path = here.path().to_owned();
        path.split("/import/").next().unwrap().to_owned() + "/teams"
    }))
    .await
    .unwrap();
    let page = page_with(&c, "Import selected teams").await;
    assert_eq!(
        page.matches("badge ok\">Imported").count(),
        2,
        "the two imported teams are marked: {page}"
    );

    // Then Slack.
    c.goto(&format!("{url}/connect")).await.unwrap();
    c.find(Locator::Css("details.add summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Id("connect-slack"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_with(&c, "value=\"accept\"").await;
    c.find(Locator::Css("button[value=accept]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_with(&c, "Slack connected").await;
    c.goto(&format!("{url}/connect")).await.unwrap();
    let page = page_with(&c, "Connected platforms").await;
    assert!(
        page.contains("Microsoft Teams") && page.contains("Healthy"),
        "{page}"
    );
    assert!(
        page.contains("link channels into a universal channel"),
        "both platforms connected: {page}"
    );
    shot("4-both-connected.png").await;
    c.close().await.unwrap();
}

/// What a browser test runs on: the server (with its sandbox), chromedriver and a session.
struct Browser {
    c: fantoccini::Client,
    url: String,
    token: String,
    /// The server's ready line (with the sandbox object).
    ready: serde_json::Value,
    _serve: Proc,
    _driver: Proc,
    _data: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

/// Starts `serve` with `args` (plus a fresh data directory and any port), chromedriver and
/// a headless Chromium session; `None` (after saying so) when Chromium is not installed
/// outside CI.
async fn browser(args: &[&str]) -> Option<Browser> {
    let (Some(chromium), Some(driver)) = (tool("chromium"), tool("chromedriver")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromium/chromedriver are missing: apt-get install chromium chromium-driver"
        );
        eprintln!("SKIPPED: chromium and chromedriver are not installed");
        return None;
    };
    let data = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .args(["--port", "0", "--data-dir"])
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let serve = Proc(serve);
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = free_port();
    let driver = Proc(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{driver_url}/status")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["value"]["ready"] == true {
                    up = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "chromedriver did not become ready");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a WebDriver session");
    Some(Browser {
        c,
        url: ready["url"].as_str().unwrap().to_owned(),
        token: ready["admin_token"].as_str().unwrap().to_owned(),
        ready,
        _serve: serve,
        _driver: driver,
        _data: data,
        _profile: profile,
    })
}

async fn screenshot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(name), png).unwrap();
}

#[tokio::test]
async fn an_admin_checks_and_links_a_slack_and_a_teams_channel_in_a_real_browser() {
    let Some(b) = browser(&["serve", "--sandbox", "--autoconnect", "--time-scale", "0"]).await
    else {
        return;
    };
    let c = &b.c;
    c.goto(&format!("{}/universal-channels", b.url))
        .await
        .unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/signin"));
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&b.token)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_with(c, "Connected platforms").await;

    // The sidebar leads to Universal Channels; both platforms are connected, so the form is
    // there (and no Link button before a check).
    c.find(Locator::Css("nav.sidebar a[href='/universal-channels']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(c, "Link channels").await;
    assert!(page.contains("No universal channel yet"), "{page}");
    assert!(!page.contains("id=\"link-button\""));
    assert!(page.contains("aria-current=\"page\""));
    screenshot(c, "links-1-universal-channels.png").await;

    // Pick the Slack channel #engineering and a Teams channel, name it, Check.
    let slack = c.find(Locator::Id("pick-slack")).await.unwrap();
    let slack_value = slack
        .find(Locator::XPath("option[contains(., '#engineering')]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    slack.select_by_value(&slack_value).await.unwrap();
    let teams = c.find(Locator::Id("pick-msteams")).await.unwrap();
    let teams_value = teams
        .find(Locator::XPath("option[contains(., '#Backend')]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    teams.select_by_value(&teams_value).await.unwrap();
    c.find(Locator::Id("uc-name"))
        .await
        .unwrap()
        .send_keys("engineering")
        .await
        .unwrap();
    c.find(Locator::Id("check-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(c, "Capability report").await;
    assert!(page.contains("These channels can be linked"), "{page}");
    assert!(page.contains("3,000 messages a day"), "{page}");
    assert!(
        c.find_all(Locator::Css("#universal-channels tbody tr"))
            .await
            .unwrap()
            .is_empty(),
        "checking links nothing"
    );
    screenshot(c, "links-2-capability-report.png").await;

    // Link: the page lists it.
    c.find(Locator::Id("link-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(c, "id=\"universal-channels\"").await;
    assert!(page.contains("Linked"), "{page}");
    let rows = c
        .find_all(Locator::Css("#universal-channels tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].text().await.unwrap();
    assert!(row.contains("engineering"), "{row}");
    assert!(row.contains("#Backend"), "{row}");
    assert!(
        row.contains("Slack") && row.contains("Microsoft Teams"),
        "{row}"
    );
    screenshot(c, "links-3-linked.png").await;

    // The API agrees.
    let list: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/universal-channels", b.url))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoints = list[0]["endpoints"].as_array().unwrap();
    assert!(
        endpoints.contains(&serde_json::json!(slack_value)),
        "{list}"
    );
    assert!(
        endpoints.contains(&serde_json::json!(teams_value)),
        "{list}"
    );

    // The other pages render, and the audit log recorded the link.
    c.find(Locator::Css("nav.sidebar a[href='/users']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_with(c, "Matched by email").await;
    screenshot(c, "links-4-users.png").await;
    c.find(Locator::Css("nav.sidebar a[href='/audit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(c, "Chain verified").await;
    assert!(page.contains("universal_channel.created"), "{page}");
    screenshot(c, "links-5-audit.png").await;
    c.find(Locator::Css("nav.sidebar a[href='/settings']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = page_with(c, "Admin tokens").await;
    assert!(page.contains("webhooks"), "{page}");
    screenshot(c, "links-6-settings.png").await;
    b.c.clone().close().await.unwrap();
}
