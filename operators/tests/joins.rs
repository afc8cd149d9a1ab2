//! Joins case by case: broadcast state on every subtask, outer joins by
//! co-group, invalid intervals.

use std::time::Duration;

use eddy_engine::config::EnvConfig;
use eddy_engine::context::RuntimeContext;
use eddy_engine::dsl::Env;
use eddy_engine::element::Timestamp;
use eddy_engine::error::UserResult;
use eddy_engine::operator::Collector;
use eddy_engine::process::KeyedContext;
use eddy_engine::sink::CollectSink;
use eddy_engine::state::MapStateDesc;
use eddy_engine::time::WatermarkStrategy;
use eddy_operators::join::{
    BroadcastExt, BroadcastState, IntervalJoinExt, KeyedBroadcastProcessFunction,
    ReadOnlyBroadcastState, WindowJoinExt,
};
use eddy_operators::window::{TimeWindow, TumblingEventTime};

const THRESHOLDS: MapStateDesc<String, u64> = MapStateDesc::new("thresholds");

/// Rules set a threshold per name; events report how many rules they saw.
#[derive(Clone, Default)]
struct Rules {
    subtask: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum Seen {
    Rule { subtask: usize, name: String },
    Event { key: u64, rules: usize },
}

impl KeyedBroadcastProcessFunction<u64, u64, (String, u64), Seen> for Rules {
    fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
        self.subtask = ctx.subtask();
        Ok(())
    }

    fn process_element(
        &mut self,
        value: u64,
        _ctx: &mut KeyedContext<'_, u64>,
        broadcast: &mut ReadOnlyBroadcastState<'_>,
        out: &mut Collector<'_, Seen>,
    ) -> UserResult {
        let rules = broadcast.entries(&THRESHOLDS)?.len();
        out.emit(Seen::Event { key: value, rules });
        Ok(())
    }

    fn process_broadcast(
        &mut self,
        (name, t): (String, u64),
        broadcast: &mut BroadcastState<'_>,
        out: &mut Collector<'_, Seen>,
    ) -> UserResult {
        broadcast.map(&THRESHOLDS).put(name.clone(), t)?;
        out.emit(Seen::Rule {
            subtask: self.subtask,
            name,
        });
        Ok(())
    }
}

#[test]
fn broadcast_records_reach_every_subtask_and_keyed_records_read_them() {
    let env = Env::with_config(EnvConfig::default().with_parallelism(3)).unwrap();
    let (sink, out) = CollectSink::new();
    let events = env.from_collection((0..300u64).collect()).key_by(|v| *v);
    let rules = env.from_collection(vec![("a".to_owned(), 1u64), ("b".to_owned(), 2)]);
    events
        .connect_broadcast(&rules)
        .process(Rules::default())
        .sink(sink);
    env.execute("broadcast").unwrap();
    let seen = out.values();
    let mut rules_seen: Vec<(usize, String)> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Rule { subtask, name } => Some((*subtask, name.clone())),
            _ => None,
        })
        .collect();
    rules_seen.sort();
    let expected: Vec<(usize, String)> = (0..3)
        .flat_map(|s| [(s, "a".to_owned()), (s, "b".to_owned())])
        .collect();
    assert_eq!(rules_seen, expected, "every subtask got every rule once");
    let events: Vec<usize> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Event { rules, .. } => Some(*rules),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 300);
    assert!(events.iter().all(|r| *r <= 2));
}

#[test]
fn co_group_gives_outer_joins() {
    let env = Env::with_config(EnvConfig::default().with_parallelism(2)).unwrap();
    let ts = |r: &(u8, i64)| Timestamp(r.1);
    let strategy = || WatermarkStrategy::monotonous().with_timestamp(ts);
    let orders = env
        .from_collection(vec![(1u8, 1i64), (2, 2), (1, 15)])
        .assign_timestamps(strategy());
    let payments = env
        .from_collection(vec![(1u8, 3i64), (3, 4)])
        .assign_timestamps(strategy());
    let (sink, out) = CollectSink::new();
    orders
        .key_by(|r| r.0)
        .window_join(
            &payments.key_by(|r| r.0),
            TumblingEventTime::of(Duration::from_millis(10)),
        )
        .co_group(
            |key: &u8,
             w: &TimeWindow,
             l: Vec<(u8, i64)>,
             r: Vec<(u8, i64)>,
             out: &mut Collector<'_, (u8, i64, usize, usize)>| {
                out.emit((*key, w.start.millis(), l.len(), r.len()));
                Ok(())
            },
        )
        .sink(sink);
    env.execute("cogroup").unwrap();
    let mut got = out.values();
    got.sort();
    assert_eq!(
        got,
        vec![(1, 0, 1, 1), (1, 10, 1, 0), (2, 0, 1, 0), (3, 0, 0, 1)]
    );
}

#[test]
fn an_empty_join_interval_is_an_error_before_running() {
    let env = Env::new();
    let (sink, _out) = CollectSink::new();
    let a = env.from_collection(vec![1u64]).key_by(|v| *v);
    let b = env.from_collection(vec![1u64]).key_by(|v| *v);
    a.interval_join(&b)
        .between(5, 5)
        .lower_bound_exclusive()
        .process(|a, b| a + b)
        .sink(sink);
    let err = env.execute("empty").unwrap_err();
    assert!(
        err.to_string().contains("the interval [6, 5] ms is empty"),
        "{err}"
    );
}

/// `within(before, after)` takes `Duration`s: `a.ts - before <= b.ts <=
/// a.ts + after`, both ends inclusive.
#[test]
fn an_interval_join_within_durations_keeps_both_ends() {
    let env = Env::with_config(EnvConfig::default().with_parallelism(2)).unwrap();
    let (sink, out) = CollectSink::new();
    let stamped = |v: &(u64, i64)| Timestamp(v.1);
    let a = env
        .from_collection(vec![(1u64, 10_000i64)])
        .assign_timestamps(WatermarkStrategy::monotonous().with_timestamp(stamped))
        .key_by(|v| v.0);
    let b = env
        .from_collection(vec![(1u64, 7_999i64), (1, 8_000), (1, 13_000), (1, 13_001)])
        .assign_timestamps(WatermarkStrategy::monotonous().with_timestamp(stamped))
        .key_by(|v| v.0);
    a.interval_join(&b)
        .within(Duration::from_secs(2), Duration::from_secs(3))
        .process(|_, b| b.1)
        .sink(sink);
    env.execute("within").unwrap();
    let mut got = out.values();
    got.sort();
    assert_eq!(got, vec![8_000, 13_000]);
}
