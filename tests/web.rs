//! The web view (`--web-addr`), loaded in headless Chromium (Debian
//! `chromium`, installed by `scripts/test.sh`) while a job runs: the
//! rendered page shows every vertex and live, non-zero rates.

mod common;

use std::time::Duration;

use common::{counted_windows, spawn_job, wait_for_addr};
use eddy::connectors::discard::DiscardSink;

/// The page as Chromium renders it after its scripts ran for a while.
fn rendered(url: &str) -> String {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_web_view_shows_every_vertex_and_live_rates_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::restarting_config(2, dir.path())
        .with_web_addr("127.0.0.1:0".parse().unwrap())
        .with_http_token("pw");
    let (job, control) = spawn_job(config, "web-view-test", |env| {
        counted_windows(env, 240_000, vec![20_000])
            .sink(DiscardSink::new())
            .uid("sink");
    });
    let addr = wait_for_addr(|| control.web_addr());
    std::thread::sleep(Duration::from_secs(2));
    let dom = rendered(&format!("http://{addr}/?token=pw"));
    let refused = rendered(&format!("http://{addr}/"));
    job.join().unwrap();

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
