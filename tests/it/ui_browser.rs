//! The web UI in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`, which `.ci/run`
//! installs) walks stories → story → run → event on a `tale serve` with an
//! API token, one succeeded and one failed run. Skipped without the
//! browser, except under CI (`TALE_REQUIRE_BROWSER=1`). A failed check
//! saves a screenshot under `target/ui-failures/`; `UPDATE_SCREENSHOTS=1`
//! writes the pictures of docs/ui.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value as J, json};

use crate::serve::{client, eventually};
use crate::support::{free_port, root};
use crate::ui::{post_hook, triage};

const TOKEN: &str = "browser-t0ken-9";

/// chromedriver and Chromium, when this machine has them.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.exists());
    let found = find(&["/usr/bin/chromedriver"]).zip(find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]));
    if found.is_none() {
        assert!(
            std::env::var("TALE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "TALE_REQUIRE_BROWSER=1 but chromedriver or chromium is missing"
        );
        eprintln!("skipped: no chromedriver and chromium (apt-get install chromium chromium-driver)");
    }
    found
}

/// Kills chromedriver (and its browser) when the test ends, however.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver's log of the browser console (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

/// Every resource a page loaded, and the page itself.
const LOADED: &str = "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation')).map(e => e.name).concat([location.href]);";

struct Walk {
    client: Client,
    base: String,
    shots: Option<PathBuf>,
}

impl Walk {
    async fn goto(&self, path: &str) -> Result<(), String> {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .map_err(|e| format!("goto {path}: {e}"))?;
        self.page_is_clean().await
    }

    /// What every page must be: nothing fetched beyond 127.0.0.1, no
    /// console error, no dialog opened by a script.
    async fn page_is_clean(&self) -> Result<(), String> {
        let loaded = self.client.execute(LOADED, vec![]).await.map_err(|e| e.to_string())?;
        for url in loaded.as_array().into_iter().flatten().filter_map(J::as_str) {
            if !url.starts_with("http://127.0.0.1:") {
                return Err(format!("the page loaded {url}"));
            }
        }
        if let Ok(text) = self.client.get_alert_text().await {
            return Err(format!("a script opened a dialog: {text}"));
        }
        let log = self.client.issue_cmd(BrowserLog).await.map_err(|e| e.to_string())?;
        let severe: Vec<&J> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .collect();
        if !severe.is_empty() {
            return Err(format!("console errors: {severe:?}"));
        }
        Ok(())
    }

    async fn text(&self, css: &str) -> Result<String, String> {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("no `{css}`: {e}"))?;
        e.text().await.map_err(|e| e.to_string())
    }

    async fn attr(&self, css: &str, name: &str) -> Result<String, String> {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("no `{css}`: {e}"))?;
        e.attr(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("`{css}` has no {name}"))
    }

    /// Clicks a link or button that loads another page, and waits until
    /// the browser shows a page whose path starts with `to` and has loaded
    /// (a click returns before the navigation it starts).
    async fn click(&self, css: &str, to: &str) -> Result<(), String> {
        self.navigate(css, to).await?;
        self.page_is_clean().await
    }

    /// [`Walk::click`] without the checks of a clean page (a page that
    /// answers an error status logs it to the console, as it should).
    async fn navigate(&self, css: &str, to: &str) -> Result<(), String> {
        let before = self.client.current_url().await.map_err(|e| e.to_string())?;
        self.client
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("no `{css}`: {e}"))?
            .click()
            .await
            .map_err(|e| format!("click `{css}`: {e}"))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.client.current_url().await.map_err(|e| e.to_string())?;
            let ready = self
                .client
                .execute("return document.readyState", vec![])
                .await
                .map_err(|e| e.to_string())?;
            let path = self.path().await?;
            // A link to the page itself (`#anchor`, `?action=`) changes the URL only.
            if path.starts_with(to) && ready == "complete" && (url != before || to.contains('#')) {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("clicking `{css}` did not lead to {to} (at {path})"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn path(&self) -> Result<String, String> {
        let url = self.client.current_url().await.map_err(|e| e.to_string())?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    /// Saves the page for docs/ui.md (with `UPDATE_SCREENSHOTS=1`).
    async fn picture(&self, name: &str) -> Result<(), String> {
        let Some(dir) = &self.shots else { return Ok(()) };
        let png = self.client.screenshot().await.map_err(|e| e.to_string())?;
        std::fs::write(dir.join(format!("{name}.png")), png).map_err(|e| e.to_string())
    }
}

fn check(ok: bool, what: impl Into<String>) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.into()) }
}

async fn start_driver(driver: &Path, chromium: &Path, profile: &Path) -> Result<(Driver, Client), String> {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start chromedriver: {e}"))?;
    let guard = Driver(child);
    let status = format!("http://127.0.0.1:{port}/status");
    eventually("chromedriver to answer", Duration::from_secs(20), async || {
        client().get(&status).send().await.is_ok()
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,1000",
                // Nothing but 127.0.0.1 resolves: no request can leave it.
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-sync",
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("cannot open a browser session: {e}"))?;
    Ok((guard, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_walks_from_the_stories_to_a_failed_run_and_re_emits_an_event() {
    let Some((driver, chromium)) = browser() else { return };
    let (dir, _sink, mut a) = triage();
    a.api_token = Some(secrecy::SecretString::from(TOKEN.to_owned()));
    let server = tale::serve::start(&a, None).await.expect("serve");
    post_hook(&server, json!({"severity": "high", "route": "ok"})).await;
    post_hook(
        &server,
        json!({"severity": "high", "route": "fail", "note": "<script>alert('x')</script>"}),
    )
    .await;
    eventually("both runs to finish", Duration::from_secs(20), async || {
        let runs: J = client()
            .get(format!("http://{}/api/runs", server.addr))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        let list = runs["runs"].as_array().cloned().unwrap_or_default();
        list.len() == 2 && list.iter().all(|r| r["status"] != "running")
    })
    .await;

    let (_driver, browser) = start_driver(&driver, &chromium, &dir.path().join("profile"))
        .await
        .expect("a browser");
    let shots = std::env::var_os("UPDATE_SCREENSHOTS").map(|_| root().join("docs/ui"));
    if let Some(d) = &shots {
        std::fs::create_dir_all(d).expect("mkdir docs/ui");
    }
    let walk = Walk {
        client: browser,
        base: format!("http://{}", server.addr),
        shots,
    };
    let result = steps(&walk).await;
    if let Err(e) = &result {
        let failures = root().join("target/ui-failures");
        let _ = std::fs::create_dir_all(&failures);
        let file = failures.join("walk.png");
        if let Ok(png) = walk.client.screenshot().await {
            let _ = std::fs::write(&file, png);
        }
        let _ = walk.client.clone().close().await;
        panic!(
            "{e} (page at {}: {})",
            walk.path().await.unwrap_or_default(),
            file.display()
        );
    }
    walk.client.clone().close().await.expect("close the browser");
    server.stop().await.expect("stop");
}

async fn steps(w: &Walk) -> Result<(), String> {
    // Without a session, the UI asks for the token.
    w.goto("/ui/").await?;
    check(
        w.path().await?.starts_with("/ui/login"),
        format!("not sent to the login form: {}", w.path().await?),
    )?;
    w.client
        .find(Locator::Css("input[name=token]"))
        .await
        .map_err(|e| e.to_string())?
        .send_keys(TOKEN)
        .await
        .map_err(|e| e.to_string())?;
    w.click("form.login button", "/ui/").await?;
    check(
        w.path().await? == "/ui/",
        format!("after the login: {}", w.path().await?),
    )?;

    // Stories: the name comes out as text.
    let name = w.text("table.stories a[href='/ui/stories/triage']").await?;
    check(
        name.contains("<script>alert('story')</script>"),
        format!("story name shown as `{name}`"),
    )?;
    w.picture("stories").await?;

    // Story: the graph has the actions and the edges.
    w.click("table.stories a[href='/ui/stories/triage']", "/ui/stories/triage")
        .await?;
    let nodes = w
        .client
        .find_all(Locator::Css("svg.graph g.node"))
        .await
        .map_err(|e| e.to_string())?;
    let mut slugs = Vec::new();
    for n in &nodes {
        slugs.push(
            n.attr("data-action")
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default(),
        );
    }
    check(
        slugs == ["hook", "is_urgent", "notify", "done"],
        format!("graph nodes {slugs:?}"),
    )?;
    for (from, to) in [("hook", "is_urgent"), ("is_urgent", "notify"), ("notify", "done")] {
        w.client
            .find(Locator::Css(&format!(
                "svg.graph g.edge[data-from='{from}'][data-to='{to}']"
            )))
            .await
            .map_err(|_| format!("no edge {from} → {to}"))?;
    }
    w.click(
        "svg.graph g.node[data-action='notify'] a",
        "/ui/stories/triage?action=notify",
    )
    .await?;
    check(
        w.text("#events").await?.contains("notify"),
        "selecting an action lists its events",
    )?;
    w.picture("story").await?;

    // Runs → the failed one.
    w.click("header nav a[href='/ui/runs']", "/ui/runs").await?;
    w.click("tr.status-failed td a", "/ui/runs/").await?;
    check(w.path().await?.starts_with("/ui/runs/"), "on a run page")?;
    check(w.text("#run-status").await? == "failed", "the run is failed")?;
    let status = w.attr("svg.graph g.node[data-action='notify']", "data-status").await?;
    check(status == "failed", format!("notify is marked {status}"))?;
    let after = w.attr("svg.graph g.node[data-action='done']", "data-status").await?;
    check(after == "unreached", format!("done is marked {after}"))?;
    let step = w.text("#step-notify").await?;
    check(
        step.contains("failed") && step.contains("500"),
        format!("the failed step says `{step}`"),
    )?;
    w.picture("run").await?;

    // Its input event: the JSON, escaped, then re-emit.
    w.click("#step-notify summary a", "/ui/events/").await?;
    check(w.path().await?.starts_with("/ui/events/"), "on an event page")?;
    let json = w.text("#event-json").await?;
    check(
        json.contains("\"severity\"") && json.contains("<script>alert('x')</script>"),
        format!("event JSON `{json}`"),
    )?;
    w.picture("event").await?;
    let event_page = w.path().await?;
    w.click("#reemit", "/ui/runs/").await?;
    let landed = w.path().await?;
    check(landed.starts_with("/ui/runs/"), format!("re-emit went to {landed}"))?;

    // Without the session, re-emit is refused.
    w.goto(&event_page).await?;
    w.client.delete_all_cookies().await.map_err(|e| e.to_string())?;
    w.navigate("#reemit", "/ui/events/").await?;
    let refused = w.text("main").await?;
    check(
        refused.contains("Log in with the API token first"),
        format!("without a session: `{refused}`"),
    )?;
    // The 403 is logged by the browser as it should be: not an error of a page.
    w.client.issue_cmd(BrowserLog).await.map_err(|e| e.to_string())?;
    w.goto(&event_page).await?;
    check(
        w.path().await?.starts_with("/ui/login"),
        "a page without a session asks for the token",
    )?;
    Ok(())
}
