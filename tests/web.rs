//! The web view (`--web-addr`), loaded in headless Chromium (Debian
//! `chromium` and `chromium-driver`, installed by `scripts/test.sh`) while
//! a job runs: the rendered page shows every vertex and live, non-zero
//! rates, and its savepoint button takes a savepoint through the REST API.

mod common;

use std::time::Duration;

use common::{counted_windows, spawn_job, wait_for_addr};
use eddy::connectors::discard::DiscardSink;

/// How Chromium runs headless here (as root, without a GPU or a large
/// /dev/shm), for both the renderer and chromedriver's sessions.
const HEADLESS: [&str; 4] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
];

/// The page as Chromium renders it after its scripts ran for a while.
/// Chromium's first start on a fresh machine sometimes dumps nothing (it
/// builds its profile and font caches): it gets three tries.
fn rendered(url: &str) -> String {
    let mut errors = String::new();
    for _ in 0..3 {
        let out = std::process::Command::new("chromium")
            .args(HEADLESS)
            .args(["--virtual-time-budget=3000", "--dump-dom", url])
            .output()
            .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
        if !out.stdout.is_empty() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        errors.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    panic!("chromium rendered nothing three times: {errors}");
}

#[test]
fn the_web_view_shows_every_vertex_and_live_rates_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::restarting_config(2, dir.path())
        .with_web_addr("127.0.0.1:0".parse().unwrap())
        .with_http_token("pw");
    let (job, control) = spawn_job(config, "web-view-test", |env| {
        // Far longer than the test needs: cancelled once rendered.
        counted_windows(env, 100_000_000, vec![20_000])
            .sink(DiscardSink::new())
            .uid("sink");
    });
    let addr = wait_for_addr(|| control.web_addr());
    std::thread::sleep(Duration::from_secs(2));
    let dom = rendered(&format!("http://{addr}/?token=pw"));
    let refused = rendered(&format!("http://{addr}/"));
    control.cancel().unwrap();
    // A cancelled job's execute returns an error, which its thread unwraps.
    let _ = job.join();

    let boxes = dom.matches("class=\"vertex\"").count();
    assert_eq!(boxes, 2, "the source and the window vertices: {dom}");
    for name in [
        "DataGen ×2",
        "Window(aggregate) ×2",
        "Sink: DiscardSink",
        "hash",
    ] {
        assert!(dom.contains(name), "{name} missing from {dom}");
    }
    let rates: Vec<u64> = dom
        .match_indices("records/s: ")
        .filter_map(|(i, m)| {
            let digits: String = dom[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect();
    assert!(
        rates.len() == 2 && rates.iter().all(|r| *r > 0),
        "live rates: {rates:?} in {dom}"
    );
    assert!(dom.contains("watermark: 19"), "a watermark time: {dom}");
    assert!(
        dom.contains("injected failure at record 20000") && dom.contains("uid 'faults'"),
        "the failure the job restarted after, with its location: {dom}"
    );
    assert!(
        !refused.contains("class=\"vertex\""),
        "no page without the token"
    );
}

/// A chromedriver on a free loopback port, killed when dropped.
struct Driver {
    process: std::process::Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = common::free_port();
        let process = std::process::Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/test.sh installs Debian's chromium-driver)");
        let driver = Driver {
            process,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while ureq::get(format!("{}/status", driver.url)).call().is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver starts");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A WebDriver command; its `value`.
    fn send(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}{path}", self.url);
        let mut response = match method {
            "POST" => ureq::post(&url).send(body.to_string().as_bytes()),
            "DELETE" => ureq::delete(&url).call(),
            _ => ureq::get(&url).call(),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = response.body_mut().read_to_string().unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A browser session of `driver`: element lookups and clicks.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn element(&self, css: &str) -> String {
        let found = self.driver.send(
            "POST",
            &format!("/session/{}/element", self.id),
            serde_json::json!({ "using": "css selector", "value": css }),
        );
        found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no {css}: {found}"))
            .to_owned()
    }

    fn text(&self, css: &str) -> String {
        let element = self.element(css);
        let path = format!("/session/{}/element/{element}/text", self.id);
        self.driver
            .send("GET", &path, serde_json::Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the text of `css` satisfies `done`; that text.
    fn wait_for_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.text(css);
            if done(&text) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "{css} stays '{text}'");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_savepoint_button_takes_a_savepoint_through_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::restarting_config(1, dir.path())
        .with_web_addr("127.0.0.1:0".parse().unwrap())
        .with_http_token("pw");
    let (job, control) = spawn_job(config, "savepoint-button", |env| {
        counted_windows(env, 2_000_000, vec![])
            .sink(DiscardSink::new())
            .uid("sink");
    });
    let addr = wait_for_addr(|| control.web_addr());
    let driver = Driver::start();
    let created = driver.send(
        "POST",
        "/session",
        serde_json::json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": HEADLESS,
        } } } }),
    );
    let session = Session {
        driver: &driver,
        id: created["sessionId"].as_str().expect("a session").to_owned(),
    };
    let page = format!("http://{addr}/?token=pw");
    driver.send(
        "POST",
        &format!("/session/{}/url", session.id),
        serde_json::json!({ "url": page }),
    );
    session.wait_for_text("#state", |s| s == "RUNNING");
    let button = session.element("#savepoint");
    driver.send(
        "POST",
        &format!("/session/{}/element/{button}/click", session.id),
        serde_json::json!({}),
    );
    let said = session.wait_for_text("#savepoint-status", |s| {
        s.starts_with("savepoint completed") || s.starts_with("savepoint failed")
    });
    let location = said
        .strip_prefix("savepoint completed: ")
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        std::path::Path::new(location).join("_metadata").exists(),
        "{said}"
    );
    assert!(
        location.starts_with(&dir.path().join("savepoint-button").display().to_string()),
        "the job's default savepoint directory: {location}"
    );
    session.wait_for_text("#checkpoints", |t| t.contains("savepoint"));
    driver.send(
        "DELETE",
        &format!("/session/{}", session.id),
        serde_json::Value::Null,
    );
    control.cancel().unwrap();
    assert!(
        job.join().is_err(),
        "cancelled: execute failed, the thread panicked"
    );
}
