//! Window behaviour case by case: session merging edges, triggers, late data
//! accounting, all-records windows, processing-time windows.

use std::sync::Arc;
use std::time::Duration;

use eddy_engine::clock::ManualClock;
use eddy_engine::config::EnvConfig;
use eddy_engine::dsl::{DataStream, Env};
use eddy_engine::element::Timestamp;
use eddy_engine::sink::CollectSink;
use eddy_engine::time::WatermarkStrategy;
use eddy_operators::window::{
    Count, EventTimeSessions, GlobalWindows, Max, SlidingEventTime, Sum, TimeWindow, Trigger,
    TumblingEventTime, TumblingProcessingTime, WindowAllExt, WindowExt,
};

type In = (u8, i64); // key, timestamp

fn env(parallelism: usize) -> Env {
    Env::with_config(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_batch_size(1)
            .with_buffer_timeout(Duration::ZERO),
    )
    .unwrap()
}

/// Records in this order, one per batch, watermark = max ts - `delay` - 1.
fn source(env: &Env, input: &[In], delay: u64) -> DataStream<In> {
    env.from_collection(input.to_vec()).assign_timestamps(
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(delay))
            .with_timestamp(|r: &In| Timestamp(r.1))
            .with_per_batch_emission(),
    )
}

fn w(start: i64, end: i64) -> TimeWindow {
    TimeWindow::new(Timestamp(start), Timestamp(end))
}

fn sessions(input: &[In], gap: u64) -> Vec<(TimeWindow, u64)> {
    let env = env(2);
    let (sink, out) = CollectSink::new();
    source(&env, input, 1_000)
        .key_by(|r| r.0)
        .window(EventTimeSessions::with_gap(Duration::from_millis(gap)))
        .aggregate(Count)
        .sink(sink);
    env.execute("sessions").unwrap();
    let mut v: Vec<(TimeWindow, u64)> = out.values().into_iter().map(|(_, w, n)| (w, n)).collect();
    v.sort();
    v
}

#[test]
fn a_record_bridging_two_sessions_merges_them() {
    // [0,10) and [15,25), then 8 -> [8,18) touches both.
    assert_eq!(
        sessions(&[(1, 0), (1, 15), (1, 8)], 10),
        vec![(w(0, 25), 3)]
    );
}

#[test]
fn records_at_the_same_timestamp_share_a_session() {
    assert_eq!(sessions(&[(1, 5), (1, 5), (1, 5)], 10), vec![(w(5, 15), 3)]);
}

#[test]
fn sessions_exactly_a_gap_apart_touch_and_merge_one_more_do_not() {
    // [0,10) and [10,20) touch: one session. [0,10) and [11,21) do not.
    assert_eq!(sessions(&[(1, 0), (1, 10)], 10), vec![(w(0, 20), 2)]);
    assert_eq!(
        sessions(&[(1, 0), (1, 11)], 10),
        vec![(w(0, 10), 1), (w(11, 21), 1)]
    );
}

#[test]
fn late_records_are_counted_even_without_a_side_output() {
    let env = env(1);
    let (sink, out) = CollectSink::new();
    // Watermark reaches 100 - 0 - 1 = 99 before the record at 3 arrives.
    source(&env, &[(1, 1), (1, 100), (1, 3)], 0)
        .key_by(|r| r.0)
        .window(TumblingEventTime::of(Duration::from_millis(10)))
        .aggregate(Count)
        .uid("counts")
        .sink(sink);
    let stats = env.execute("late").unwrap();
    let mut got: Vec<(TimeWindow, u64)> =
        out.values().into_iter().map(|(_, w, n)| (w, n)).collect();
    got.sort();
    assert_eq!(got, vec![(w(0, 10), 1), (w(100, 110), 1)]);
    assert_eq!(
        stats
            .operator("counts")
            .unwrap()
            .metric("late_records_dropped"),
        1
    );
}

#[test]
fn allowed_lateness_refires_with_the_updated_result() {
    let env = env(1);
    let (sink, out) = CollectSink::new();
    source(&env, &[(1, 1), (1, 15), (1, 3), (1, 40), (1, 4)], 0)
        .key_by(|r| r.0)
        .window(TumblingEventTime::of(Duration::from_millis(10)))
        .allowed_lateness(Duration::from_millis(20))
        .aggregate(Count)
        .sink(sink);
    env.execute("lateness").unwrap();
    let mut got: Vec<(TimeWindow, u64)> =
        out.values().into_iter().map(|(_, w, n)| (w, n)).collect();
    got.sort();
    // [0,10) fires at watermark 14 with 1, again with 2 when 3 arrives; at
    // watermark 39 it is cleaned up (9 + 20 <= 39), so 4 is late and dropped.
    assert_eq!(
        got,
        vec![(w(0, 10), 1), (w(0, 10), 2), (w(10, 20), 1), (w(40, 50), 1)]
    );
}

#[test]
fn count_trigger_fires_every_n_records_and_purging_resets() {
    let input: Vec<In> = (0..7).map(|i| (1, i)).collect();
    let run = |trigger: Trigger| {
        let env = env(1);
        let (sink, out) = CollectSink::new();
        source(&env, &input, 0)
            .key_by(|r| r.0)
            .window(GlobalWindows::create())
            .trigger(trigger)
            .aggregate(Count)
            .sink(sink);
        let stats = env.execute("count").unwrap();
        let window = stats
            .operators
            .iter()
            .find(|o| o.name.starts_with("Window"))
            .unwrap();
        assert_eq!(
            window.metric("state_entries"),
            0,
            "global window state is dropped at the end"
        );
        out.values()
            .into_iter()
            .map(|(_, _, n)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(Trigger::Count(3)), vec![3, 6]);
    assert_eq!(run(Trigger::Count(3).purging()), vec![3, 3]);
    assert_eq!(run(Trigger::Never), Vec::<u64>::new());
    assert_eq!(
        run(Trigger::EventTime),
        vec![7],
        "fires once the input ends"
    );
}

#[test]
fn continuous_event_time_trigger_fires_early_and_at_the_end() {
    let env = env(1);
    let (sink, out) = CollectSink::new();
    source(&env, &[(1, 0), (1, 12), (1, 25), (1, 31), (1, 200)], 0)
        .key_by(|r| r.0)
        .window(TumblingEventTime::of(Duration::from_millis(100)))
        .trigger(Trigger::ContinuousEventTime(Duration::from_millis(10)))
        .aggregate(Count)
        .sink(sink);
    env.execute("continuous").unwrap();
    let got: Vec<(i64, u64)> = out
        .values()
        .into_iter()
        .filter(|(_, w, _)| w.start == Timestamp(0))
        .map(|(_, _, n)| (0, n))
        .collect();
    // As Flink's ContinuousEventTimeTrigger: an early firing every 10 ms of
    // event time once the watermark passes it (10 at watermark 11, with the
    // records 0 and 12 in; 20 at 24; 30 at 30; 40..90 at 199), then the
    // final firing at the window's end.
    let counts: Vec<u64> = got.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, vec![2, 3, 4, 4, 4, 4, 4, 4, 4, 4]);
}

#[test]
fn sliding_windows_aggregate_tuples_of_ready_made_functions() {
    let env = env(2);
    let (sink, out) = CollectSink::new();
    source(&env, &[(1, 1), (1, 4), (1, 6)], 1_000)
        .key_by(|r| r.0)
        .window(SlidingEventTime::of(
            Duration::from_millis(4),
            Duration::from_millis(2),
        ))
        .aggregate((Count, Sum::of(|r: &In| r.1), Max::of(|r: &In| r.1)))
        .sink(sink);
    env.execute("tuples").unwrap();
    type CountSumMax = (u64, i64, Option<i64>);
    let mut got: Vec<(TimeWindow, CountSumMax)> =
        out.values().into_iter().map(|(_, w, r)| (w, r)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (w(-2, 2), (1, 1, Some(1))),
            (w(0, 4), (1, 1, Some(1))),
            (w(2, 6), (1, 4, Some(4))),
            (w(4, 8), (2, 10, Some(6))),
            (w(6, 10), (1, 6, Some(6))),
        ]
    );
}

#[test]
fn window_all_runs_in_one_subtask_over_every_record() {
    let env = env(3);
    let (sink, out) = CollectSink::new();
    let input: Vec<In> = (0..30).map(|i| ((i % 5) as u8, i)).collect();
    source(&env, &input, 1_000)
        .window_all(TumblingEventTime::of(Duration::from_millis(10)))
        .reduce(|a, b| if b.1 > a.1 { b } else { a })
        .sink(sink);
    let text = env.explain().unwrap().text;
    assert!(text.contains("Window(reduce) [parallelism 1]"), "{text}");
    env.execute("all").unwrap();
    let mut got: Vec<i64> = out.values().into_iter().map(|(_, _, r)| r.1).collect();
    got.sort();
    assert_eq!(got, vec![9, 19, 29]);
}

#[test]
fn processing_time_windows_follow_the_jobs_clock_and_flush_at_the_end() {
    let env = env(1);
    let clock = ManualClock::new(Timestamp(1_000));
    env.set_clock(Arc::new(clock.clone()));
    let (sink, out) = CollectSink::new();
    env.from_collection(vec![(1u8, 0i64), (1, 0), (2, 0)])
        .key_by(|r| r.0)
        .window(TumblingProcessingTime::of(Duration::from_secs(10)))
        .aggregate(Count)
        .sink(sink);
    env.execute("processing").unwrap();
    let mut got: Vec<(u8, TimeWindow, u64)> = out.values();
    got.sort();
    assert_eq!(got, vec![(1, w(0, 10_000), 2), (2, w(0, 10_000), 1)]);
}
