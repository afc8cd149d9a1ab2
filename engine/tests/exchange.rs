//! The network path (`--loopback-workers`): channels between workers over
//! loopback TCP with credit-based flow control. Backpressure crosses the
//! connection without one slow channel holding up another on it; failures
//! tear the job down with the right error; a record type the wire format
//! cannot carry is named.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{counting, spawn_job, wait_until, CountingSource};
use eddy_engine::config::EnvConfig;
use eddy_engine::dsl::Env;
use eddy_engine::error::EngineError;
use eddy_engine::sink::CollectSink;
use eddy_engine::testing::GatedSink;

/// Two pipelines on two workers: A's sink subtask 1 is stuck, B runs
/// freely. A's channel from subtask 0 to subtask 1 and B's share the
/// connection from worker 0 to worker 1. While A is stuck, B delivers
/// every record, and A's sources stop after a bounded number of records:
/// backpressure crossed the connection without blocking it.
#[test]
fn a_stuck_channel_bounds_its_producer_while_another_on_the_same_connection_flows() {
    let (batch, capacity) = (16usize, 2usize);
    let config = EnvConfig::default()
        .with_parallelism(2)
        .with_batch_size(batch)
        .with_channel_capacity(capacity)
        .with_buffer_timeout(Duration::ZERO)
        .with_loopback_workers(2);
    let (a_total, b_total) = (200_000u64, 50_000u64);
    let a_produced = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicBool::new(false));
    let (a_received, b_received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sink = |gated, received: &Arc<AtomicU64>| {
        let (open, received) = (Arc::clone(&open), Arc::clone(received));
        GatedSink::new(
            gated,
            move || open.load(Ordering::SeqCst),
            move |n| {
                received.fetch_add(n, Ordering::SeqCst);
            },
        )
    };
    let (a_sink, b_sink) = (sink(Some(1), &a_received), sink(None, &b_received));
    let produced = Arc::clone(&a_produced);
    let (_control, done) = spawn_job(
        "stuck-and-free",
        move |env: &Env| {
            env.source(CountingSource {
                count: Some(a_total),
                produced,
            })
            .uid("a-source")
            .rebalance()
            .sink(a_sink)
            .uid("a-sink");
            env.source(counting(Some(b_total)))
                .uid("b-source")
                .rebalance()
                .sink(b_sink)
                .uid("b-sink");
        },
        config,
    );
    wait_until("pipeline B to deliver every record", || {
        b_received.load(Ordering::SeqCst) == b_total
    });
    // Settle, then count: per source subtask at most the stuck channel's
    // window, its output buffer and the batch in hand, and as much again
    // to the free subtask (rebalance alternates).
    std::thread::sleep(Duration::from_millis(200));
    let bound = (2 * 2 * (capacity + 4) * batch) as u64;
    let seen = a_produced.load(Ordering::SeqCst);
    assert!(
        seen <= bound,
        "{seen} records of A produced while its consumer is stuck, bound {bound}"
    );
    open.store(true, Ordering::SeqCst);
    done.recv().unwrap().unwrap();
    assert_eq!(a_received.load(Ordering::SeqCst), a_total);
    assert_eq!(a_produced.load(Ordering::SeqCst), a_total);
}

#[test]
fn a_failure_on_one_worker_fails_the_job_with_its_own_error() {
    let env = Env::with_config(
        EnvConfig::default()
            .with_parallelism(3)
            .with_loopback_workers(3),
    )
    .unwrap();
    let (sink, _out) = CollectSink::new();
    env.source(counting(None))
        .rebalance()
        .map(|v| {
            assert!(v < 50_000, "enough");
            v
        })
        .name("stop-here")
        .sink(sink);
    let err = env.execute("fails-remotely").unwrap_err();
    assert!(
        matches!(err, EngineError::UserPanic { ref location, .. } if location.operator == "stop-here"),
        "{err}"
    );
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Loose {
    Number(u64),
}

#[test]
fn a_record_type_the_wire_cannot_decode_is_named_with_the_fix() {
    let env = Env::with_config(
        EnvConfig::default()
            .with_parallelism(2)
            .with_batch_size(1)
            .with_loopback_workers(2),
    )
    .unwrap();
    let (sink, _out) = CollectSink::new();
    env.from_collection((0..100u64).map(Loose::Number).collect())
        .rebalance()
        .map(|l| l)
        .sink(sink);
    let err = env.execute("untagged").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EngineError::Exchange { .. }), "{text}");
    assert!(
        text.contains("Loose") && text.contains("untagged"),
        "{text}"
    );
}

#[test]
fn loopback_workers_out_of_range_are_refused() {
    let err = EnvConfig::default()
        .with_loopback_workers(0)
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("--loopback-workers"), "{err}");
}
