//! Event time end to end: watermarks are monotonic, the minimum over inputs,
//! released by idleness, flushed to MAX at end of input; processing-time
//! timers follow the job's clock.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{CountingSource, ScriptedSource, POLL_DEADLINE};
use eddy_engine::clock::{Clock, ManualClock};
use eddy_engine::config::EnvConfig;
use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::Env;
use eddy_engine::element::Timestamp;
use eddy_engine::error::UserResult;
use eddy_engine::operator::Collector;
use eddy_engine::process::{KeyedContext, KeyedProcessFunction, TimeDomain};
use eddy_engine::sink::CollectSink;
use eddy_engine::source::ReadStatus;
use eddy_engine::time::WatermarkStrategy;

/// Records every watermark seen and fires one far-future timer per key.
#[derive(Clone)]
struct WatchWatermarks {
    seen: Arc<Mutex<Vec<(usize, Timestamp)>>>,
    subtask: usize,
}

impl KeyedProcessFunction<u64, u64, (u64, Timestamp)> for WatchWatermarks {
    fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
        self.subtask = ctx.subtask();
        Ok(())
    }
    fn process(
        &mut self,
        v: u64,
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, (u64, Timestamp)>,
    ) -> UserResult {
        assert!(
            ctx.timestamp() > ctx.current_watermark(),
            "record {v} is late"
        );
        self.seen
            .lock()
            .unwrap()
            .push((self.subtask, ctx.current_watermark()));
        ctx.timers().register_event_time(Timestamp(1_000_000_000));
        Ok(())
    }
    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, Timestamp)>,
    ) -> UserResult {
        out.emit((*ctx.key(), ctx.current_watermark()));
        assert_eq!(t, Timestamp(1_000_000_000));
        Ok(())
    }
}

#[test]
fn watermarks_are_monotonic_the_minimum_of_inputs_and_flushed_at_end() {
    let env =
        Env::with_config(EnvConfig::default().with_parallelism(2).with_batch_size(16)).unwrap();
    let strategy = || {
        WatermarkStrategy::monotonous()
            .with_timestamp(|v: &u64| Timestamp(*v as i64))
            .with_per_batch_emission()
    };
    // A fast input racing far ahead in event time and a slow one: the slow
    // one's records must never be late downstream.
    let fast = env
        .source(CountingSource {
            count: Some(50_000),
            produced: Default::default(),
        })
        .assign_timestamps(strategy());
    let slow = env
        .from_collection((0..300u64).collect())
        .assign_timestamps(strategy());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (sink, out) = CollectSink::new();
    fast.union(&[&slow])
        .key_by(|v| v % 10)
        .process(WatchWatermarks {
            seen: Arc::clone(&seen),
            subtask: 0,
        })
        .sink(sink);
    env.execute("watermarks").unwrap();

    let seen = seen.lock().unwrap();
    for subtask in 0..2 {
        let wms: Vec<Timestamp> = seen
            .iter()
            .filter(|(s, _)| *s == subtask)
            .map(|(_, w)| *w)
            .collect();
        assert!(
            wms.windows(2).all(|w| w[0] <= w[1]),
            "watermark went backwards on subtask {subtask}"
        );
    }
    let fired = out.values();
    assert_eq!(fired.len(), 10, "one timer per key fires at the end");
    assert!(fired.iter().all(|(_, wm)| *wm == Timestamp::MAX));
}

/// Two splits; split 1 never has data. After the first batch the reader
/// moves the manual clock on and emits once more, then ends.
fn one_silent_split(clock: ManualClock) -> ScriptedSource {
    ScriptedSource::new(2, move |poll, out| {
        match poll {
            1 => (0..100).for_each(|v| out.emit(0, v)),
            2 => {
                clock.advance(Duration::from_secs(1));
                (100..200).for_each(|v| out.emit(0, v));
            }
            _ => return Ok(ReadStatus::Finished),
        }
        Ok(ReadStatus::MoreAvailable)
    })
}

/// Fires a timer at 50 and reports the watermark it fired at.
#[derive(Clone)]
struct TimerAt50;

impl KeyedProcessFunction<u8, u64, Timestamp> for TimerAt50 {
    fn process(
        &mut self,
        _v: u64,
        ctx: &mut KeyedContext<'_, u8>,
        _out: &mut Collector<'_, Timestamp>,
    ) -> UserResult {
        ctx.timers().register_event_time(Timestamp(50));
        Ok(())
    }
    fn on_timer(
        &mut self,
        _t: Timestamp,
        ctx: &mut KeyedContext<'_, u8>,
        out: &mut Collector<'_, Timestamp>,
    ) -> UserResult {
        out.emit(ctx.current_watermark());
        Ok(())
    }
}

fn fired_at(idleness: Option<Duration>) -> Vec<Timestamp> {
    let env = Env::with_config(EnvConfig::default().with_parallelism(1)).unwrap();
    let clock = ManualClock::new(Timestamp(0));
    env.set_clock(Arc::new(clock.clone()));
    let mut strategy = WatermarkStrategy::monotonous()
        .with_timestamp(|v: &u64| Timestamp(*v as i64))
        .with_per_batch_emission();
    if let Some(t) = idleness {
        strategy = strategy.with_idleness(t);
    }
    let (sink, out) = CollectSink::new();
    env.source(one_silent_split(clock))
        .assign_timestamps(strategy)
        .key_by(|_| 0u8)
        .process(TimerAt50)
        .sink(sink);
    env.execute("idleness").unwrap();
    out.values()
}

#[test]
fn an_idle_split_stops_holding_the_watermark_back() {
    assert_eq!(
        fired_at(None),
        vec![Timestamp::MAX],
        "the silent split holds the watermark until the end"
    );
    assert_eq!(
        fired_at(Some(Duration::from_millis(500))),
        vec![Timestamp(198)]
    );
}

/// Registers a processing-time timer 100 ms ahead and says when it fired.
#[derive(Clone)]
struct ProcTimer {
    fired: Arc<AtomicBool>,
}

impl KeyedProcessFunction<u8, u64, (TimeDomain, Timestamp)> for ProcTimer {
    fn process(
        &mut self,
        _v: u64,
        ctx: &mut KeyedContext<'_, u8>,
        _out: &mut Collector<'_, (TimeDomain, Timestamp)>,
    ) -> UserResult {
        let now = ctx.current_processing_time();
        ctx.timers()
            .register_processing_time(now + Duration::from_millis(100));
        Ok(())
    }
    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut KeyedContext<'_, u8>,
        out: &mut Collector<'_, (TimeDomain, Timestamp)>,
    ) -> UserResult {
        out.emit((ctx.time_domain().unwrap(), t));
        self.fired.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Emits one record, then moves the clock and waits until the timer fired.
fn then_advance(clock: ManualClock, fired: Arc<AtomicBool>) -> ScriptedSource {
    ScriptedSource::new(1, move |poll, out| {
        if poll == 1 {
            out.emit(0, 1);
            return Ok(ReadStatus::MoreAvailable);
        }
        if poll == 2 {
            clock.advance(Duration::from_millis(150));
        }
        if fired.load(Ordering::SeqCst) || poll > POLL_DEADLINE {
            return Ok(ReadStatus::Finished);
        }
        Ok(ReadStatus::NothingAvailable)
    })
}

#[test]
fn processing_time_timers_fire_when_the_jobs_clock_passes_them() {
    let env = Env::with_config(EnvConfig::default().with_parallelism(1)).unwrap();
    let clock = ManualClock::new(Timestamp(10_000));
    env.set_clock(Arc::new(clock.clone()));
    let fired = Arc::new(AtomicBool::new(false));
    let (sink, out) = CollectSink::new();
    env.source(then_advance(clock.clone(), Arc::clone(&fired)))
        .key_by(|_| 0u8)
        .process(ProcTimer { fired })
        .sink(sink);
    env.execute("proc-time").unwrap();
    assert_eq!(
        out.values(),
        vec![(TimeDomain::ProcessingTime, Timestamp(10_100))]
    );
    assert!(clock.now() >= Timestamp(10_150));
}
