//! Job binaries log on standard error, filtered by `RUST_LOG`, as text or
//! JSON, each task's lines inside its `task` span, and what concerns a
//! checkpoint inside its `checkpoint` span.

use eddy::connectors::datagen::{DataGen, SplitMix64};
use eddy::connectors::discard::DiscardSink;
use eddy::prelude::*;

/// The child: a job with a failure it restarts from, configured from a
/// command line with `--log-format json`. Runs only when the parent sets
/// `EDDY_LOGGING_CHILD`.
#[test]
fn logging_child_job() {
    let Ok(dir) = std::env::var("EDDY_LOGGING_CHILD") else {
        return;
    };
    let env = Env::from_arg_list([
        "job",
        "--log-format",
        "json",
        "--checkpoint-interval",
        "50ms",
        "--checkpoint-dir",
        &dir,
        "--restart-strategy",
        "fixed-delay:attempts=3,delay=10ms",
    ])
    .unwrap();
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    env.source(
        DataGen::new(|i, _: &mut SplitMix64| i)
            .with_count(20_000)
            .with_rate(40_000.0),
    )
    .map(move |v| {
        if v == 10_000 && !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected failure");
        }
        v
    })
    .uid("faults")
    .sink(DiscardSink::new());
    env.execute("logging-test").unwrap();
}

#[test]
fn json_log_lines_name_the_task_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "logging_child_job", "--test-threads=1"])
        .env("EDDY_LOGGING_CHILD", dir.path())
        .env("RUST_LOG", "info,eddy_engine::runtime::task=debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "job starting"),
        "info lines pass RUST_LOG=info: {stderr}"
    );
    let in_task = |l: &serde_json::Value| {
        l["spans"].as_array().is_some_and(|spans| {
            spans.iter().any(|s| {
                s["name"] == "task" && s["job"] == "logging-test" && s["subtask"].is_number()
            })
        })
    };
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "task failed" && in_task(l)),
        "the failed task's line carries its task span: {stderr}"
    );
    let in_checkpoint = |l: &serde_json::Value| {
        l["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .any(|s| s["name"] == "checkpoint" && s["id"].is_number())
        })
    };
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "snapshotted" && in_task(l) && in_checkpoint(l)),
        "a task's snapshot logs inside its task and checkpoint spans: {stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "checkpoint complete" && in_checkpoint(l)),
        "the coordinator's completion logs inside the checkpoint's span: {stderr}"
    );
}
