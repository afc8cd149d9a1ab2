//! Randomised property tests: the window operator against a naive reference
//! that copies every record into every window it belongs to (as Flink does),
//! over out-of-order input with late records, random batch boundaries (so a
//! random watermark cadence), with and without allowed lateness, at
//! parallelism 1 and 4.
//!
//! The source runs at parallelism 1, so each window subtask sees its keys'
//! records and watermarks in one deterministic order; the reference replays
//! that order: after every batch of `batch` records the watermark becomes
//! `max timestamp - delay - 1`.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_engine::config::{EnvConfig, StateBackendKind};
use eddy_engine::dsl::{DataStream, Env};
use eddy_engine::element::Timestamp;
use eddy_engine::operator::OutputTag;
use eddy_engine::sink::CollectSink;
use eddy_engine::time::WatermarkStrategy;
use eddy_operators::window::{
    Count, EventTimeSessions, SlidingEventTime, Sum, TimeWindow, WindowExt, WindowedStream,
};
use proptest::prelude::*;

type In = (u8, i64, i64); // key, timestamp, value
const DELAY: i64 = 5;
const LATE: OutputTag<In> = OutputTag::new("late");

#[derive(Clone, Copy, Debug)]
enum Layout {
    Aligned {
        size: i64,
        slide: i64,
        offset: i64,
    },
    Session {
        gap: i64,
    },
    /// Gap = 3 + |value| % 7.
    DynamicSession,
}

#[derive(Clone, Copy, Debug)]
enum Function {
    /// `process`: the sorted contents.
    Process,
    /// `aggregate((Count, Sum))`.
    CountSum,
    /// `reduce` keeping the largest value.
    ReduceMax,
}

#[derive(Clone, Debug)]
struct Case {
    input: Vec<In>,
    layout: Layout,
    function: Function,
    lateness: i64,
    batch: usize,
}

/// (key, window, result) with the result rendered as numbers.
type Out = (u8, TimeWindow, Vec<i64>);

fn render(function: Function, contents: &[i64]) -> Vec<i64> {
    match function {
        Function::Process => {
            let mut v = contents.to_vec();
            v.sort();
            v
        }
        Function::CountSum => vec![contents.len() as i64, contents.iter().sum()],
        Function::ReduceMax => vec![*contents.iter().max().expect("non-empty")],
    }
}

fn gap_of(layout: Layout, value: i64) -> i64 {
    match layout {
        Layout::Session { gap } => gap,
        _ => 3 + value.abs() % 7,
    }
}

fn window(start: i64, end: i64) -> TimeWindow {
    TimeWindow::new(Timestamp(start), Timestamp(end))
}

/// The naive engine: per key, every window's contents.
struct Reference {
    case: Case,
    watermark: i64,
    windows: BTreeMap<(u8, TimeWindow), Vec<i64>>,
    out: Vec<Out>,
    late: Vec<In>,
}

impl Reference {
    fn max_ts(w: &TimeWindow) -> i64 {
        w.end.millis() - 1
    }

    fn is_late(&self, w: &TimeWindow) -> bool {
        Self::max_ts(w) + self.case.lateness <= self.watermark
    }

    fn emit(&mut self, key: u8, w: TimeWindow) {
        let contents = &self.windows[&(key, w)];
        self.out
            .push((key, w, render(self.case.function, contents)));
    }

    fn add(&mut self, (key, ts, v): In) {
        match self.case.layout {
            Layout::Aligned {
                size,
                slide,
                offset,
            } => {
                let mut starts = Vec::new();
                let mut s = offset + (ts - offset).div_euclid(slide) * slide;
                while s > ts - size {
                    starts.push(s);
                    s -= slide;
                }
                let live: Vec<TimeWindow> = starts
                    .into_iter()
                    .map(|s| window(s, s + size))
                    .filter(|w| !self.is_late(w))
                    .collect();
                if live.is_empty() {
                    self.late.push((key, ts, v));
                    return;
                }
                for w in live {
                    self.windows.entry((key, w)).or_default().push(v);
                    if Self::max_ts(&w) <= self.watermark {
                        self.emit(key, w);
                    }
                }
            }
            layout => {
                let proto = window(ts, ts + gap_of(layout, v));
                let touching: Vec<TimeWindow> = self
                    .windows
                    .keys()
                    .filter(|(k, w)| *k == key && w.intersects(&proto))
                    .map(|(_, w)| *w)
                    .collect();
                let merged = touching.iter().fold(proto, |m, w| m.cover(w));
                if self.is_late(&merged) {
                    self.late.push((key, ts, v));
                    return;
                }
                let mut contents = vec![v];
                for w in touching {
                    contents.extend(self.windows.remove(&(key, w)).expect("listed"));
                }
                self.windows.insert((key, merged), contents);
                if Self::max_ts(&merged) <= self.watermark {
                    self.emit(key, merged);
                }
            }
        }
    }

    fn advance(&mut self, to: i64) {
        if to <= self.watermark {
            return;
        }
        let from = self.watermark;
        self.watermark = to;
        let due: Vec<(u8, TimeWindow)> = self
            .windows
            .keys()
            .filter(|(_, w)| from < Self::max_ts(w) && Self::max_ts(w) <= to)
            .copied()
            .collect();
        for (k, w) in due {
            self.emit(k, w);
        }
        let lateness = self.case.lateness;
        self.windows
            .retain(|(_, w), _| Self::max_ts(w) + lateness > to);
    }

    fn run(case: &Case) -> (Vec<Out>, Vec<In>) {
        let mut r = Reference {
            case: case.clone(),
            watermark: i64::MIN,
            windows: BTreeMap::new(),
            out: Vec::new(),
            late: Vec::new(),
        };
        let mut max_ts = i64::MIN;
        for chunk in case.input.chunks(case.batch) {
            for &record in chunk {
                max_ts = max_ts.max(record.1);
                r.add(record);
            }
            r.advance(max_ts - DELAY - 1);
        }
        r.advance(i64::MAX);
        let (mut out, mut late) = (r.out, r.late);
        out.sort();
        late.sort();
        (out, late)
    }
}

fn windowed(stream: &DataStream<In>, case: &Case) -> WindowedStream<u8, In> {
    let keyed = stream.key_by(|r: &In| r.0);
    let w = match case.layout {
        Layout::Aligned {
            size,
            slide,
            offset,
        } => keyed.window(
            SlidingEventTime::of(
                Duration::from_millis(size as u64),
                Duration::from_millis(slide as u64),
            )
            .with_offset(Duration::from_millis(offset as u64)),
        ),
        Layout::Session { gap } => keyed.window(EventTimeSessions::with_gap(
            Duration::from_millis(gap as u64),
        )),
        Layout::DynamicSession => keyed.window(EventTimeSessions::with_dynamic_gap(|r: &In| {
            Duration::from_millis(gap_of(Layout::DynamicSession, r.2) as u64)
        })),
    };
    w.allowed_lateness(Duration::from_millis(case.lateness as u64))
        .side_output_late_data(&LATE)
}

fn run_engine(case: &Case, parallelism: usize, backend: StateBackendKind) -> (Vec<Out>, Vec<In>) {
    let config = EnvConfig::default()
        .with_state_backend(backend)
        .with_parallelism(parallelism)
        .with_batch_size(case.batch)
        .with_buffer_timeout(Duration::ZERO);
    let env = Env::with_config(config).unwrap();
    let source = env.from_collection(case.input.clone()).assign_timestamps(
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(DELAY as u64))
            .with_timestamp(|r: &In| Timestamp(r.1))
            .with_per_batch_emission(),
    );
    let w = windowed(&source, case);
    let function = case.function;
    // The late side output belongs to the window operator itself.
    let (results, late): (DataStream<Out>, DataStream<In>) = match function {
        Function::Process => {
            let r = w.process(
                move |key: &u8,
                      window: &TimeWindow,
                      values: Vec<In>,
                      out: &mut eddy_engine::operator::Collector<'_, Out>| {
                    let contents: Vec<i64> = values.iter().map(|r| r.2).collect();
                    out.emit((*key, *window, render(function, &contents)));
                    Ok(())
                },
            );
            (r.clone(), r.side_output(&LATE))
        }
        Function::CountSum => {
            let r = w.aggregate((Count, Sum::of(|r: &In| r.2)));
            (
                r.map(|(k, w, (c, s))| (k, w, vec![c as i64, s])),
                r.side_output(&LATE),
            )
        }
        Function::ReduceMax => {
            let r = w.reduce(|a: In, b: In| if b.2 > a.2 { b } else { a });
            (r.map(|(k, w, r)| (k, w, vec![r.2])), r.side_output(&LATE))
        }
    };
    let (sink, out) = CollectSink::new();
    let (late_sink, late_out) = CollectSink::new();
    late.sink(late_sink);
    results.sink(sink);
    let stats = env.execute("window-props").unwrap();
    let window_op = stats
        .operators
        .iter()
        .find(|o| o.name.starts_with("Window"))
        .expect("a window operator");
    assert_eq!(
        window_op.metric("state_entries"),
        0,
        "window state left after the end"
    );
    assert_eq!(window_op.metric("timers"), 0, "timers left after the end");
    let mut results = out.values();
    let mut late = late_out.values();
    results.sort();
    late.sort();
    (results, late)
}

fn input() -> impl Strategy<Value = Vec<In>> {
    // Timestamps wander forward; a record lags the newest one by up to 12 ms,
    // so some are late (the watermark lags by 6 ms).
    prop::collection::vec((0u8..4, 0i64..6, 0i64..13, -50i64..50), 0..120).prop_map(|steps| {
        let mut max = 0i64;
        steps
            .into_iter()
            .map(|(key, advance, lag, value)| {
                max += advance;
                (key, (max - lag).max(0), value)
            })
            .collect()
    })
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        (1i64..25, 1i64..25, 0i64..25).prop_map(|(a, b, o)| {
            let (size, slide) = (a.max(b), a.min(b));
            Layout::Aligned {
                size,
                slide,
                offset: o % slide,
            }
        }),
        (1i64..20).prop_map(|size| Layout::Aligned {
            size,
            slide: size,
            offset: 0
        }),
        (1i64..15).prop_map(|gap| Layout::Session { gap }),
        Just(Layout::DynamicSession),
    ]
}

fn function() -> impl Strategy<Value = Function> {
    prop_oneof![
        Just(Function::Process),
        Just(Function::CountSum),
        Just(Function::ReduceMax)
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        input(),
        layout(),
        function(),
        prop_oneof![Just(0i64), 1i64..15],
        1usize..20,
    )
        .prop_map(|(input, layout, function, lateness, batch)| Case {
            input,
            layout,
            function,
            lateness,
            batch,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_the_naive_reference_at_parallelism_1_and_4(case in case()) {
        let expected = Reference::run(&case);
        prop_assert_eq!(&run_engine(&case, 1, StateBackendKind::Heap), &expected, "parallelism 1");
        prop_assert_eq!(&run_engine(&case, 4, StateBackendKind::Heap), &expected, "parallelism 4");
        if cfg!(feature = "rocksdb") {
            prop_assert_eq!(&run_engine(&case, 4, StateBackendKind::Rocksdb), &expected, "RocksDB, parallelism 4");
        }
    }
}
