//! Real browsers for the console's tests: Debian's Chromium, headless,
//! driven through ChromeDriver (both installed by `scripts/test-tools`) with
//! fantoccini. One ChromeDriver per test; each [`Browser`] is a separate
//! session with its own empty profile, so two people sign in side by side.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::port::free_port;
use crate::workspace;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(15);

/// A running ChromeDriver.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    url: String,
}

/// How a browser is set up.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `Accept-Language` and the browser's own language.
    pub lang: &'static str,
    pub javascript: bool,
    pub width: u32,
    pub height: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lang: "en",
            javascript: true,
            width: 1280,
            height: 800,
        }
    }
}

impl Settings {
    /// A browser that asks for Japanese.
    pub fn japanese() -> Self {
        Self {
            lang: "ja",
            ..Self::default()
        }
    }
}

impl Driver {
    pub async fn start() -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Chromium and ChromeDriver with ./scripts/test-tools (scripts/test does)"
            );
        }
        // chromedriver binds its port itself: one taken between choosing
        // it and chromedriver starting makes it exit, and it is started
        // again on another, a few times.
        for attempt in 1..=3 {
            let port = free_port();
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start chromedriver");
            let url = format!("http://127.0.0.1:{port}");
            let status = format!("{url}/status");
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let ready = reqwest::get(&status)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success());
                if ready.is_some() {
                    return Self { child, url };
                }
                if let Some(exit) = child.try_wait().unwrap() {
                    assert!(attempt < 3, "chromedriver exited with {exit}, three times");
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "chromedriver did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unreachable!("the third attempt returns or fails")
    }

    /// A new browser session.
    pub async fn browser(&self, settings: Settings) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut prefs = json!({ "intl.accept_languages": settings.lang });
        if !settings.javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--lang={}", settings.lang),
            format!("--window-size={},{}", settings.width, settings.height),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args, "prefs": prefs }),
        );
        let client = ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("start a Chromium session");
        Browser {
            client,
            settings,
            _profile: profile,
            base: String::new(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One person's browser.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    pub settings: Settings,
    /// The console's origin as the sign-in link named it (cookies are kept
    /// per host).
    pub base: String,
    _profile: TempDir,
}

impl Browser {
    /// Opens a one-time sign-in link and uses it; the console's home next.
    pub async fn sign_in(&mut self, link: &str) {
        self.base = link.split("/console/").next().expect("a console link").to_owned();
        self.client.goto(link).await.unwrap();
        self.client
            .find(Locator::Css("#use-link"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for("#who").await;
    }

    pub async fn open(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// Waits for an element (a condition, not a time).
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for `{css}`: {e}"))
    }

    pub async fn text(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.wait_for(css).await.text().await {
                Ok(text) => return text,
                Err(e) if tokio::time::Instant::now() < deadline && is_stale(&e) => continue,
                Err(e) => panic!("reading `{css}`: {e}"),
            }
        }
    }

    /// Waits until the element's text contains `wanted`.
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if text.contains(wanted) {
                        return text;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{css}` never showed `{wanted}`; the page: {}",
                self.main_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's address contains `part` (a form submitted:
    /// elements of the page before it would otherwise still be found).
    pub async fn wait_for_address(&self, part: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.client.current_url().await.map(|u| u.to_string());
            if now.as_deref().is_ok_and(|u| u.contains(part)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never went to an address with `{part}`: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no element matches (the page after an action shows its
    /// outcome: a row gone).
    pub async fn wait_gone(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.client.find(Locator::Css(css)).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "`{css}` never went away");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn main_text(&self) -> String {
        match self.client.find(Locator::Css("main")).await {
            Ok(m) => m.text().await.unwrap_or_default(),
            Err(_) => self.client.source().await.unwrap_or_default(),
        }
    }

    /// Clicks an element; found again if a live update replaced it
    /// between finding and clicking.
    pub async fn click(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.wait_for(css).await.click().await {
                Ok(()) => return,
                Err(e) if tokio::time::Instant::now() < deadline && is_stale(&e) => continue,
                Err(e) => panic!("clicking `{css}`: {e}"),
            }
        }
    }

    /// Clicks a button that asks for confirmation, and confirms (with
    /// JavaScript off nothing asks).
    pub async fn click_and_confirm(&self, css: &str) {
        self.click(css).await;
        if self.settings.javascript {
            let deadline = tokio::time::Instant::now() + WAIT;
            while self.client.get_alert_text().await.is_err() {
                assert!(tokio::time::Instant::now() < deadline, "no confirmation asked");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.client.accept_alert().await.unwrap();
        }
    }

    /// How many elements match now.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |found| found.len())
    }

    /// Types into a field.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
    }

    /// Chooses the option of a `<select>` by its value.
    pub async fn select(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choosing `{value}` in `{css}`: {e}"));
    }

    /// The value of a cookie the broker set (HttpOnly ones too).
    pub async fn cookie(&self, name: &str) -> String {
        self.client
            .get_named_cookie(name)
            .await
            .unwrap_or_else(|e| panic!("cookie {name}: {e}"))
            .value()
            .to_owned()
    }

    /// The page's form token.
    pub async fn csrf(&self) -> String {
        self.wait_for("input[name=csrf]")
            .await
            .attr("value")
            .await
            .unwrap()
            .expect("a csrf value")
    }

    /// A screenshot of the page at the browser's size and at a phone's,
    /// under `target/console-screenshots/NAME-WxH.png`.
    pub async fn screenshots(&self, name: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (w, h) in [(1280, 800), (390, 844)] {
            self.client.set_window_size(w, h).await.unwrap();
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{w}x{h}.png")), png).unwrap();
        }
        self.client
            .set_window_size(self.settings.width, self.settings.height)
            .await
            .unwrap();
    }

    /// Serious and critical accessibility violations axe-core finds on the
    /// page (empty: none).
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(axe_script()).unwrap();
        self.client.execute(&axe, vec![]).await.unwrap();
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(
                   r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' +
                          v.nodes.map(n => n.target.join(' ')).join(', '))
                 ), e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .unwrap();
        match found {
            Value::Array(items) => items
                .into_iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect(),
            other => vec![format!("unexpected axe answer: {other}")],
        }
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    matches!(
        e,
        fantoccini::error::CmdError::Standard(w)
            if w.error == fantoccini::error::ErrorStatus::StaleElementReference
    )
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("console-screenshots")
}

fn axe_script() -> PathBuf {
    let path = workspace().join("target/test-tools/axe/node_modules/axe-core/axe.min.js");
    assert!(
        path.exists(),
        "{} is missing: install the test peers with ./scripts/test-tools (scripts/test does)",
        path.display()
    );
    path
}
