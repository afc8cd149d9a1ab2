//! End-to-end behaviour of the local runtime: failures, backpressure,
//! partitioning, chaining.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{CountingSource, ScriptedSource, POLL_DEADLINE};
use eddy_engine::config::EnvConfig;
use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::Env;
use eddy_engine::element::{Data, Record};
use eddy_engine::error::{BoxError, EngineError, UserResult};
use eddy_engine::keygroup::{key_group_of, subtask_for_key_group};
use eddy_engine::operator::Collector;
use eddy_engine::process::{KeyedContext, KeyedProcessFunction};
use eddy_engine::sink::{CollectSink, Sink, SinkWriter};
use eddy_engine::source::ReadStatus;

fn env(parallelism: usize) -> Env {
    Env::with_config(EnvConfig::default().with_parallelism(parallelism)).unwrap()
}

#[test]
fn a_panicking_map_fails_execute_with_an_error_naming_the_operator() {
    let env = env(2);
    let (sink, _out) = CollectSink::new();
    env.from_collection((0..1000u64).collect())
        .map(|x| {
            assert!(x != 500, "bad record {x}");
            x
        })
        .name("explode")
        .uid("explode-uid")
        .sink(sink);
    let err = env.execute("panics").unwrap_err();
    match &err {
        EngineError::UserPanic { location, message } => {
            assert_eq!(location.operator, "explode");
            assert_eq!(location.uid, "explode-uid");
            assert!(message.contains("bad record 500"), "{message}");
        }
        other => panic!("expected a user panic, got {other:?}"),
    }
    assert!(err.to_string().contains("operator 'explode'"));
}

#[test]
fn a_failure_cancels_an_unbounded_job_instead_of_hanging() {
    let env = env(2);
    let produced = Arc::new(AtomicU64::new(0));
    let (sink, _out) = CollectSink::new();
    env.source(CountingSource {
        count: None,
        produced,
    })
    .rebalance()
    .map(|x| {
        assert!(x < 100_000, "enough");
        x
    })
    .name("stop-here")
    .sink(sink);
    let err = env.execute("unbounded").unwrap_err();
    assert!(
        matches!(err, EngineError::UserPanic { ref location, .. } if location.operator == "stop-here"),
        "{err}"
    );
}

#[derive(Clone)]
struct FailOnKey(u64);

impl KeyedProcessFunction<u64, u64, u64> for FailOnKey {
    fn process(
        &mut self,
        v: u64,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> UserResult {
        if *ctx.key() == self.0 {
            return Err(format!("key {} is not allowed", self.0).into());
        }
        out.emit(v);
        Ok(())
    }
}

#[test]
fn a_failing_process_function_returns_its_error_with_the_subtask() {
    let env = env(3);
    let (sink, _out) = CollectSink::new();
    env.from_collection((0..100u64).collect())
        .key_by(|x| *x)
        .process(FailOnKey(42))
        .name("checker")
        .sink(sink);
    match env.execute("fails").unwrap_err() {
        EngineError::UserFunction { location, source } => {
            assert_eq!(location.operator, "checker");
            assert_eq!(location.parallelism, 3);
            let owner = subtask_for_key_group(key_group_of(&42u64, 128), 3, 128);
            assert_eq!(location.subtask, owner);
            assert_eq!(source.to_string(), "key 42 is not allowed");
        }
        other => panic!("expected a user function error, got {other:?}"),
    }
}

/// A sink that is slow and checks that the source never runs far ahead.
struct SlowSink {
    produced: Arc<AtomicU64>,
    max_in_flight: Arc<AtomicU64>,
}

struct SlowWriter {
    produced: Arc<AtomicU64>,
    consumed: u64,
    max_in_flight: Arc<AtomicU64>,
}

impl Sink for SlowSink {
    type In = u64;
    type Writer = SlowWriter;
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<SlowWriter, BoxError> {
        Ok(SlowWriter {
            produced: Arc::clone(&self.produced),
            consumed: 0,
            max_in_flight: Arc::clone(&self.max_in_flight),
        })
    }
}

impl SinkWriter for SlowWriter {
    type In = u64;
    fn write(&mut self, batch: &mut Vec<Record<u64>>) -> Result<(), BoxError> {
        self.consumed += batch.len() as u64;
        let in_flight = self.produced.load(Ordering::SeqCst) - self.consumed;
        self.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(200));
        Ok(())
    }
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn a_slow_sink_bounds_the_records_in_flight_through_backpressure() {
    let (batch, capacity) = (64usize, 2usize);
    let config = EnvConfig::default()
        .with_parallelism(1)
        .with_batch_size(batch)
        .with_channel_capacity(capacity);
    let env = Env::with_config(config).unwrap();
    let produced = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let total = 100_000u64;
    env.source(CountingSource {
        count: Some(total),
        produced: Arc::clone(&produced),
    })
    .sink(SlowSink {
        produced: Arc::clone(&produced),
        max_in_flight: Arc::clone(&max_in_flight),
    })
    .disable_chaining();
    let stats = env.execute("backpressure").unwrap();
    // Source batch + output buffer + channel + the batch in the sink's hand.
    let bound = ((capacity + 3) * batch) as u64;
    let seen = max_in_flight.load(Ordering::SeqCst);
    assert!(seen <= bound, "{seen} records in flight, bound {bound}");
    assert_eq!(stats.operators.last().unwrap().records_in, total);
}

#[derive(Clone)]
struct WhereAmI {
    subtask: usize,
}

impl KeyedProcessFunction<u64, u64, (u64, usize)> for WhereAmI {
    fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
        self.subtask = ctx.subtask();
        Ok(())
    }
    fn process(
        &mut self,
        v: u64,
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, usize)>,
    ) -> UserResult {
        out.emit((v % 97, self.subtask));
        Ok(())
    }
}

#[test]
fn every_key_lands_on_exactly_the_subtask_owning_its_key_group() {
    let env = env(4);
    let (sink, out) = CollectSink::new();
    env.from_collection((0..20_000u64).collect())
        .parallelism(3)
        .key_by(|v| v % 97)
        .process(WhereAmI { subtask: 0 })
        .sink(sink);
    env.execute("partitioning").unwrap();
    let mut owner: HashMap<u64, usize> = HashMap::new();
    let values = out.values();
    assert_eq!(values.len(), 20_000);
    for (key, subtask) in values {
        let first = *owner.entry(key).or_insert(subtask);
        assert_eq!(first, subtask, "key {key} seen on two subtasks");
        assert_eq!(
            subtask,
            subtask_for_key_group(key_group_of(&key, 128), 4, 128)
        );
    }
    assert_eq!(owner.len(), 97);
}

fn run_chain<T: Data + Ord>(env: &Env, out: &eddy_engine::sink::Collected<T>) -> Vec<T> {
    env.execute("chain").unwrap();
    let mut v = out.values();
    v.sort();
    v
}

#[test]
fn chaining_changes_tasks_but_not_results() {
    let build = |config: EnvConfig| {
        let env = Env::with_config(config).unwrap();
        let (sink, out) = CollectSink::new();
        let s = env.from_collection((0..5_000u64).collect());
        let doubled = s.map(|x| x * 2);
        let odd = s.filter(|x| x % 2 == 1).map(|x| x + 1_000_000);
        doubled
            .union(&[&odd])
            .rebalance()
            .filter(|x| x % 3 != 0)
            .sink(sink);
        (env, out)
    };
    let (chained, out1) = build(EnvConfig::default().with_parallelism(2));
    let text = chained.explain().unwrap().text;
    assert!(
        text.contains("task 2: Filter -> Map [parallelism 2]"),
        "{text}"
    );
    let (unchained, out2) = build(EnvConfig::default().with_parallelism(2).without_chaining());
    let text = unchained.explain().unwrap().text;
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("task") && l.contains(" -> ")),
        "{text}"
    );
    let a = run_chain(&chained, &out1);
    let b = run_chain(&unchained, &out2);
    assert_eq!(a, b);
    assert_eq!(
        a.len(),
        (0..5_000u64).map(|x| x * 2).filter(|x| x % 3 != 0).count()
            + (0..5_000u64)
                .filter(|x| x % 2 == 1)
                .map(|x| x + 1_000_000)
                .filter(|x| x % 3 != 0)
                .count()
    );
}

#[test]
fn explain_prints_tasks_edges_and_dot() {
    let env = env(2);
    let (sink, _out) = CollectSink::new();
    env.from_collection(vec![1u64])
        .key_by(|x| *x)
        .process(FailOnKey(7))
        .uid("proc")
        .sink(sink);
    let e = env.explain().unwrap();
    assert!(
        e.text
            .contains("edge: task 0 (Collection) -> task 1 (KeyedProcess) HASH"),
        "{}",
        e.text
    );
    assert!(e.text.contains("keyed operator, uid 'proc'"), "{}", e.text);
    assert!(e.dot.starts_with("digraph job {"));
    assert!(e.dot.contains("label=\"HASH\""));
}

#[test]
fn invalid_jobs_are_rejected_before_running() {
    let env = env(2);
    let (sink, _out) = CollectSink::new();
    env.from_collection(vec![1u64])
        .map(|x| x)
        .uid("same")
        .sink(sink)
        .uid("same");
    let err = env.execute("dup").unwrap_err();
    assert!(err.to_string().contains("uids must be unique"), "{err}");

    let env = Env::with_config(EnvConfig::default().with_parallelism(1)).unwrap();
    let (sink, _out) = CollectSink::new();
    env.from_collection(vec![1u64])
        .map(|x| x)
        .parallelism(3)
        .forward()
        .map(|x| x)
        .sink(sink);
    let err = env.execute("forward").unwrap_err();
    assert!(
        err.to_string()
            .contains("forward() needs equal parallelism"),
        "{err}"
    );
}

#[test]
fn bad_command_line_values_say_what_and_where() {
    let err = Env::from_arg_list(["job", "--parallelism", "0"])
        .err()
        .unwrap();
    assert!(err.to_string().contains("--parallelism = '0'"), "{err}");
    let err = Env::from_arg_list(["job", "--buffer-timeout", "soon"])
        .err()
        .unwrap();
    assert!(err.to_string().contains("--buffer-timeout"), "{err}");
    let env = Env::from_arg_list(["job", "--parallelism", "3", "--buffer-timeout", "1ms"]).unwrap();
    assert_eq!(env.config().parallelism, 3);
    assert_eq!(env.config().buffer_timeout, Duration::from_millis(1));
}

const ODD: eddy_engine::operator::OutputTag<String> = eddy_engine::operator::OutputTag::new("odd");
const UNUSED: eddy_engine::operator::OutputTag<u64> =
    eddy_engine::operator::OutputTag::new("unused");

#[derive(Clone)]
struct SplitOdd;

impl KeyedProcessFunction<u64, u64, u64> for SplitOdd {
    fn process(
        &mut self,
        v: u64,
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> UserResult {
        if v % 2 == 0 {
            out.emit(v);
        } else {
            out.output(&ODD, format!("odd {v}"));
            out.output(&UNUSED, v);
        }
        Ok(())
    }
}

#[test]
fn side_outputs_reach_their_consumers_and_unconsumed_ones_are_counted() {
    let env = env(2);
    let (evens, even_out) = CollectSink::new();
    let (odds, odd_out) = CollectSink::new();
    let main = env
        .from_collection((0..100u64).collect())
        .key_by(|v| *v)
        .process(SplitOdd)
        .uid("split");
    main.sink(evens);
    main.side_output(&ODD).map(|s| s.to_uppercase()).sink(odds);
    let stats = env.execute("side").unwrap();
    let mut e = even_out.values();
    e.sort();
    assert_eq!(e, (0..100).filter(|v| v % 2 == 0).collect::<Vec<_>>());
    let mut o = odd_out.values();
    o.sort();
    let mut expected: Vec<String> = (0..100)
        .filter(|v| v % 2 == 1)
        .map(|v| format!("ODD {v}"))
        .collect();
    expected.sort();
    assert_eq!(o, expected);
    assert_eq!(stats.operator("split").unwrap().side_dropped, 50);
}

#[test]
fn broadcast_sends_every_record_to_every_subtask() {
    let env = env(3);
    let (sink, out) = CollectSink::new();
    env.from_collection((0..10u64).collect())
        .broadcast()
        .map(|v| v * 2)
        .sink(sink);
    env.execute("broadcast").unwrap();
    let mut got = out.values();
    got.sort();
    let mut expected: Vec<u64> = (0..10u64).flat_map(|v| [v * 2; 3]).collect();
    expected.sort();
    assert_eq!(got, expected);
}

/// Emits one record, then waits (polling against a deadline) until the sink
/// has received it, and ends. Only a flush on the buffer timeout can deliver
/// the record while the source is still running.
fn one_then_wait(delivered: Arc<AtomicU64>) -> ScriptedSource {
    ScriptedSource::new(1, move |poll, out| {
        if poll == 1 {
            out.emit(0, 7);
            return Ok(ReadStatus::MoreAvailable);
        }
        if delivered.load(Ordering::SeqCst) > 0 {
            return Ok(ReadStatus::Finished);
        }
        if poll > POLL_DEADLINE {
            return Err("the record was not delivered within 10 s".into());
        }
        Ok(ReadStatus::NothingAvailable)
    })
}

struct CountingSink(Arc<AtomicU64>);
struct CountingWriter(Arc<AtomicU64>);

impl Sink for CountingSink {
    type In = u64;
    type Writer = CountingWriter;
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<CountingWriter, BoxError> {
        Ok(CountingWriter(Arc::clone(&self.0)))
    }
}

impl SinkWriter for CountingWriter {
    type In = u64;
    fn write(&mut self, batch: &mut Vec<Record<u64>>) -> Result<(), BoxError> {
        self.0.fetch_add(batch.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn the_buffer_timeout_flushes_a_partial_batch_while_the_source_runs() {
    let config = EnvConfig::default()
        .with_parallelism(1)
        .with_buffer_timeout(Duration::from_millis(2));
    let env = Env::with_config(config).unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    env.source(one_then_wait(Arc::clone(&delivered)))
        .sink(CountingSink(Arc::clone(&delivered)))
        .disable_chaining();
    env.execute("flush").unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
}

const COPY: eddy_engine::operator::OutputTag<u64> = eddy_engine::operator::OutputTag::new("copy");

/// Sends every record to the main output and to the side output `copy`.
struct Duplicate;

impl eddy_engine::operator::Operator for Duplicate {
    type In = u64;
    type Out = u64;
    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<u64>>,
        out: &mut Collector<'_, u64>,
    ) -> UserResult {
        for r in batch.drain(..) {
            out.output(&COPY, r.value);
            out.emit(r.value);
        }
        Ok(())
    }
}

/// Fires one processing-time timer at `at`.
struct TimerAt {
    at: Option<eddy_engine::element::Timestamp>,
    fired: Arc<AtomicU64>,
}

impl eddy_engine::operator::Operator for TimerAt {
    type In = u64;
    type Out = u64;
    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<u64>>,
        out: &mut Collector<'_, u64>,
    ) -> UserResult {
        batch.drain(..).for_each(|r| out.emit(r.value));
        Ok(())
    }
    fn next_processing_time(&self) -> Option<eddy_engine::element::Timestamp> {
        self.at
    }
    fn on_processing_time(
        &mut self,
        _now: eddy_engine::element::Timestamp,
        _out: &mut Collector<'_, u64>,
    ) -> UserResult {
        self.fired.fetch_add(1, Ordering::SeqCst);
        self.at = None;
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_behind_a_side_output_too() {
    use eddy_engine::clock::ManualClock;
    use eddy_engine::element::Timestamp;
    let env = env(1);
    let clock = ManualClock::new(Timestamp(0));
    env.set_clock(Arc::new(clock.clone()));
    let fired = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&fired);
    let source = ScriptedSource::new(1, move |poll, out| {
        if poll == 1 {
            out.emit(0, 1);
            return Ok(ReadStatus::MoreAvailable);
        }
        clock.advance(Duration::from_millis(100));
        if seen.load(Ordering::SeqCst) > 0 || poll > POLL_DEADLINE {
            return Ok(ReadStatus::Finished);
        }
        Ok(ReadStatus::NothingAvailable)
    });
    let duplicated = env.source(source).transform("Duplicate", |_| Duplicate);
    let timer_fired = Arc::clone(&fired);
    let (a, _) = CollectSink::new();
    let (b, _) = CollectSink::new();
    duplicated
        .side_output(&COPY)
        .transform("Timer", move |_| TimerAt {
            at: Some(Timestamp(30)),
            fired: Arc::clone(&timer_fired),
        })
        .sink(a);
    duplicated.sink(b);
    env.execute("side-timer").unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_key_selector_names_its_operator() {
    let env = env(2);
    let (sink, _out) = CollectSink::new();
    env.from_collection((0..10u64).collect())
        .map(|x| x)
        .name("before-keyby")
        .key_by(|x: &u64| {
            assert!(*x != 5, "bad key");
            *x
        })
        .process(FailOnKey(99))
        .sink(sink);
    match env.execute("keys").unwrap_err() {
        EngineError::UserPanic { location, message } => {
            assert_eq!(location.operator, "before-keyby");
            assert!(message.contains("bad key"));
        }
        other => panic!("expected a user panic, got {other:?}"),
    }
}

#[test]
fn sources_have_no_side_outputs_but_dead_letters() {
    let env = env(2);
    let (sink, _out) = CollectSink::new();
    env.from_collection(vec![1u64])
        .side_output(&COPY)
        .sink(sink);
    let err = env.execute("source-side").unwrap_err();
    assert!(
        err.to_string().contains("sources have only dead_letters()"),
        "{err}"
    );
}
