//! Just enough of the W3C WebDriver protocol to drive Debian's headless
//! Chromium through its chromedriver: open pages, find elements, read their
//! text, type, click, take screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// Where Debian's packages put them (`infra/chromium.sh` installs them).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver with one headless Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    _profile: PathBuf,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile in
    /// `dir`. The flags keep Chromium off the network (the machine's closed
    /// network otherwise stalls it).
    pub async fn start(dir: &Path) -> Self {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: run `bash infra/chromium.sh` (make test does)"
            );
        }
        let address = e2e::processes::free_address();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", address.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://{address}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(status) = ready {
                if status.await.is_ok_and(|s| s["value"]["ready"] == true) {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver not ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1300", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let mut browser = Self {
            driver,
            http,
            session: String::new(),
            base,
            _profile: profile,
        };
        let created = browser.call("POST", "/session", capabilities).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response = request
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let answer: Value = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn open(&self, url: &str) {
        self.call("POST", &self.session_path("/url"), json!({"url": url}))
            .await;
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        let title = self
            .call("GET", &self.session_path("/title"), Value::Null)
            .await;
        title.as_str().unwrap_or_default().to_owned()
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        let url = self
            .call("GET", &self.session_path("/url"), Value::Null)
            .await;
        url.as_str().unwrap_or_default().to_owned()
    }

    /// Every element matching the CSS `selector`.
    pub async fn all(&self, selector: &str) -> Vec<Element<'_>> {
        let found = self
            .call(
                "POST",
                &self.session_path("/elements"),
                json!({"using": "css selector", "value": selector}),
            )
            .await;
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .map(|e| Element {
                        browser: self,
                        id: e[ELEMENT]
                            .as_str()
                            .unwrap_or_else(|| panic!("an element reference: {e}"))
                            .to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `selector`; panics if there is none.
    pub async fn find(&self, selector: &str) -> Element<'_> {
        self.all(selector)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {selector:?} on the page"))
    }

    /// Waits (up to 20 s) until an element matches `selector`, e.g. on the
    /// page a click navigates to, and returns the first.
    pub async fn wait_for(&self, selector: &str) -> Element<'_> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(element) = self.all(selector).await.into_iter().next() {
                return element;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no element {selector:?} on {} after 20 s",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of every element matching `selector`.
    pub async fn texts(&self, selector: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.all(selector).await {
            texts.push(element.text().await);
        }
        texts
    }

    /// The text of the first element matching `selector`.
    pub async fn text(&self, selector: &str) -> String {
        self.find(selector).await.text().await
    }

    /// Saves a PNG of the viewport to each of `paths`.
    pub async fn screenshot(&self, paths: &[PathBuf]) {
        let encoded = self
            .call("GET", &self.session_path("/screenshot"), Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 PNG"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        for path in paths {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        self.browser
            .session_path(&format!("/element/{}{rest}", self.id))
    }

    /// Its rendered text.
    pub async fn text(&self) -> String {
        let text = self
            .browser
            .call("GET", &self.path("/text"), Value::Null)
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Types `text` into it.
    pub async fn type_text(&self, text: &str) {
        self.browser
            .call("POST", &self.path("/value"), json!({"text": text}))
            .await;
    }

    /// Clicks it (and waits for a navigation it starts).
    pub async fn click(&self) {
        self.browser
            .call("POST", &self.path("/click"), json!({}))
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session ends Chromium (from a thread of its own: this
        // may run inside the test's runtime); then the driver.
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async {
                        let _ = reqwest::Client::new()
                            .delete(url)
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                    });
                }
            })
            .join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
