//! The live metrics endpoint (`--metrics-addr`), scraped while jobs run and
//! parsed with a Prometheus exposition parser.

mod common;

use std::time::Duration;

use common::{
    counted_windows, restarting_config, scrape, spawn_job, total, wait_for_addr, Samples,
};
use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::discard::DiscardSink;
use eddy::prelude::*;

/// Runs `build`'s job on a thread of its own with the endpoint on a free
/// loopback port, scrapes it every 200 ms until the job ends, and returns
/// the scrapes (and the job's statistics).
fn scrape_while_running(
    config: EnvConfig,
    token: Option<&'static str>,
    build: fn(&Env),
) -> (Vec<Samples>, JobStats) {
    let (job, control) = spawn_job(config, "metrics-test", build);
    let mut scrapes = Vec::new();
    while !job.is_finished() {
        if let Some(addr) = control.metrics_addr() {
            if let Ok(samples) = scrape(addr, token) {
                scrapes.push(samples);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (scrapes, job.join().unwrap())
}

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn a_scrape_shows_counters_that_keep_growing_across_a_restart_and_a_moving_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = restarting_config(2, dir.path()).with_metrics_addr(loopback());
    let (scrapes, stats) = scrape_while_running(config, None, |env| {
        counted_windows(env, 120_000, vec![50_000])
            .sink(DiscardSink::new())
            .uid("sink");
    });
    assert_eq!(stats.restarts, 1, "the injected failure restarted the job");
    assert!(scrapes.len() >= 5, "{} scrapes", scrapes.len());
    let last = scrapes.last().unwrap();
    let read: Vec<f64> = scrapes
        .iter()
        .map(|s| total(s, "eddy_operator_records_out_total", "operator", "numbers"))
        .collect();
    assert!(
        read.windows(2).all(|w| w[1] >= w[0]),
        "records out never go down, even across the restart: {read:?}"
    );
    assert!(read.last().unwrap() > read.first().unwrap(), "{read:?}");
    assert!(
        *read.last().unwrap() <= 2.0 * 120_000.0,
        "each record counted once per attempt that read it: {read:?}"
    );
    let labels = &last
        .iter()
        .find(|(n, l, _)| n == "eddy_operator_records_in_total" && l["operator"] == "windows")
        .expect("the window operator's records in")
        .1;
    assert_eq!(labels["job"], "metrics-test");
    assert!(labels.contains_key("subtask") && labels.contains_key("operator_name"));
    let restarts: Vec<f64> = scrapes
        .iter()
        .map(|s| total(s, "eddy_job_restarts_total", "job", "metrics-test"))
        .collect();
    assert_eq!(restarts.last(), Some(&1.0), "{restarts:?}");
    let watermarks: std::collections::BTreeSet<i64> = scrapes
        .iter()
        .filter_map(|s| {
            s.iter()
                .find(|(n, l, _)| {
                    n == "eddy_operator_current_watermark_ms"
                        && l["operator"] == "windows"
                        && l["subtask"] == "0"
                })
                .map(|(_, _, v)| *v as i64)
        })
        .collect();
    assert!(watermarks.len() >= 3, "the watermark moves: {watermarks:?}");
    assert!(total(last, "eddy_job_checkpoints_total", "job", "metrics-test") > 0.0);
    assert!(last
        .iter()
        .any(|(n, l, _)| n == "eddy_operator_state_entries" && l["operator"] == "windows"));
}

#[test]
fn a_slow_operator_shows_as_busy_and_its_upstream_as_backpressured() {
    let config = EnvConfig::default()
        .with_parallelism(1)
        .with_metrics_addr(loopback())
        .with_http_token("s3cret");
    let (scrapes, _) = scrape_while_running(config, Some("s3cret"), |env| {
        env.source(DataGen::new(|i, _: &mut SplitMix64| i).with_count(150_000))
            .uid("numbers")
            .rebalance()
            .map(|v| {
                std::thread::sleep(Duration::from_micros(30));
                v
            })
            .uid("slow")
            .sink(DiscardSink::new());
    });
    let last = scrapes.last().expect("scraped at least once");
    let seconds = |name: &str, task: &str| total(last, name, "task_uid", task);
    let source_blocked = seconds("eddy_task_backpressured_seconds_total", "numbers");
    let slow_busy = seconds("eddy_task_busy_seconds_total", "slow");
    let slow_blocked = seconds("eddy_task_backpressured_seconds_total", "slow");
    assert!(
        source_blocked > 1.0 && slow_busy > 1.0,
        "source blocked {source_blocked} s, slow task busy {slow_busy} s"
    );
    assert!(
        slow_blocked < 0.5,
        "the slow task is not blocked: {slow_blocked} s"
    );
    let batches = total(
        last,
        "eddy_operator_batches_out_total",
        "operator",
        "numbers",
    );
    let records = total(
        last,
        "eddy_operator_records_out_total",
        "operator",
        "numbers",
    );
    assert!(
        batches > 0.0 && batches <= records / 100.0,
        "{batches} batches for {records} records over the network"
    );
}

#[test]
fn the_endpoint_requires_the_configured_token() {
    let config = EnvConfig::default()
        .with_metrics_addr(loopback())
        .with_http_token("s3cret");
    let (job, control) = spawn_job(config, "token-test", |env| {
        env.source(
            DataGen::new(|i, _: &mut SplitMix64| i)
                .with_count(20_000)
                .with_rate(10_000.0),
        )
        .sink(DiscardSink::new());
    });
    let addr = wait_for_addr(|| control.metrics_addr());
    let refused = scrape(addr, None).unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    assert!(scrape(addr, Some("wrong")).is_err());
    assert!(scrape(addr, Some("s3cret")).is_ok());
    job.join().unwrap();
}

/// With `--latency-tracking-interval`, sources emit latency markers that
/// cross the network to every sink subtask, which export their
/// source-to-sink time as a histogram labelled with the source.
#[test]
fn latency_markers_reach_every_sink_subtask_as_a_histogram() {
    let config = EnvConfig::default()
        .with_parallelism(2)
        .with_metrics_addr(loopback())
        .with_latency_tracking_interval(Duration::from_millis(20));
    let (scrapes, _) = scrape_while_running(config, None, |env| {
        env.source(
            DataGen::new(|i, _: &mut SplitMix64| i)
                .with_count(60_000)
                .with_rate(30_000.0),
        )
        .uid("numbers")
        .rebalance()
        .map(|v| v + 1)
        .uid("plus-one")
        .sink(DiscardSink::new())
        .uid("sink");
    });
    let last = scrapes.last().expect("scraped at least once");
    let of = |name: &str, subtask: &str| -> f64 {
        last.iter()
            .filter(|(n, l, _)| {
                n == name
                    && l.get("operator").map(String::as_str) == Some("sink")
                    && l.get("source").map(String::as_str) == Some("numbers")
                    && l.get("subtask").map(String::as_str) == Some(subtask)
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    for subtask in ["0", "1"] {
        let (count, sum) = (
            of("eddy_operator_latency_ms_count", subtask),
            of("eddy_operator_latency_ms_sum", subtask),
        );
        // Two source subtasks, a marker every 20 ms each, for about 2 s.
        assert!(count >= 20.0, "sink subtask {subtask}: {count} markers");
        assert!(
            sum / count < 1_000.0,
            "sink subtask {subtask}: mean latency {} ms",
            sum / count
        );
    }
}
