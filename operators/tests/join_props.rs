//! Randomised property tests of the joins against brute-force references.
//! Two sources of different parallelism and batch size feed each join, so
//! the two inputs interleave differently run to run; each input respects its
//! bounded disorder, so nothing is late and the results are determined by
//! the data alone. Joins run at parallelism 1 and 4.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use eddy_engine::config::EnvConfig;
use eddy_engine::dsl::{DataStream, Env};
use eddy_engine::element::{Data, Timestamp};
use eddy_engine::error::UserResult;
use eddy_engine::operator::Collector;
use eddy_engine::process::KeyedContext;
use eddy_engine::runtime::stats::JobStats;
use eddy_engine::sink::CollectSink;
use eddy_engine::state::ListStateDesc;
use eddy_engine::time::WatermarkStrategy;
use eddy_operators::join::{
    ConnectExt, IntervalJoinExt, KeyedCoProcessFunction, TemporalJoinExt, WindowJoinExt,
};
use eddy_operators::window::{EventTimeSessions, SlidingEventTime, TumblingEventTime};
use proptest::prelude::*;

/// key, timestamp, id (unique per side)
type Rec = (u8, i64, u32);
const DELAY: i64 = 8;

fn env(parallelism: usize) -> Env {
    Env::with_config(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_batch_size(3)
            .with_buffer_timeout(Duration::ZERO),
    )
    .unwrap()
}

fn side<T: Data + Sync>(
    env: &Env,
    records: &[T],
    parallelism: usize,
    ts: fn(&T) -> i64,
) -> DataStream<T> {
    env.from_collection(records.to_vec())
        .parallelism(parallelism)
        .assign_timestamps(
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(DELAY as u64))
                .with_timestamp(move |r: &T| Timestamp(ts(r)))
                .with_per_batch_emission(),
        )
}

fn rec_ts(r: &Rec) -> i64 {
    r.1
}

/// Records whose timestamps lag the running maximum by at most DELAY.
fn records(max_len: usize) -> impl Strategy<Value = Vec<Rec>> {
    prop::collection::vec((0u8..5, 0i64..6, 0i64..=DELAY), 0..max_len).prop_map(|steps| {
        let mut max = 0;
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (key, advance, lag))| {
                max += advance;
                (key, (max - lag).max(0), i as u32)
            })
            .collect()
    })
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn state_is_empty(stats: &JobStats, op: &str) {
    let o = stats.operator(op).expect("operator");
    assert_eq!(o.metric("timers"), 0, "{op}: timers left");
    assert_eq!(
        o.metric("late_records_dropped"),
        0,
        "{op}: nothing is late here"
    );
}

/// Keeps both sides per key and emits every pair as its second half arrives.
#[derive(Clone)]
struct AllPairs;

const LEFTS: ListStateDesc<u32> = ListStateDesc::new("lefts");
const RIGHTS: ListStateDesc<u32> = ListStateDesc::new("rights");

impl KeyedCoProcessFunction<u8, Rec, Rec, (u32, u32)> for AllPairs {
    fn process1(
        &mut self,
        a: Rec,
        ctx: &mut KeyedContext<'_, u8>,
        out: &mut Collector<'_, (u32, u32)>,
    ) -> UserResult {
        for b in ctx.state(&RIGHTS).get()? {
            out.emit((a.2, b));
        }
        ctx.state(&LEFTS).add(a.2)?;
        Ok(())
    }
    fn process2(
        &mut self,
        b: Rec,
        ctx: &mut KeyedContext<'_, u8>,
        out: &mut Collector<'_, (u32, u32)>,
    ) -> UserResult {
        for a in ctx.state(&LEFTS).get()? {
            out.emit((a, b.2));
        }
        ctx.state(&RIGHTS).add(b.2)?;
        Ok(())
    }
}

fn equal_key_pairs(
    left: &[Rec],
    right: &[Rec],
    keep: impl Fn(&Rec, &Rec) -> bool,
) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for a in left {
        for b in right {
            if a.0 == b.0 && keep(a, b) {
                out.push((a.2, b.2));
            }
        }
    }
    sorted(out)
}

fn connected_pairs(left: &[Rec], right: &[Rec], p: usize) -> Vec<(u32, u32)> {
    let env = env(p);
    let (sink, out) = CollectSink::new();
    let a = side(&env, left, 1, rec_ts).key_by(|r| r.0);
    let b = side(&env, right, 2, rec_ts).key_by(|r| r.0);
    a.connect(&b).process(AllPairs).sink(sink);
    env.execute("connect").unwrap();
    sorted(out.values())
}

#[derive(Clone, Copy, Debug)]
enum Windows {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

fn windows_of(w: Windows, ts: i64) -> Vec<(i64, i64)> {
    match w {
        Windows::Tumbling(size) => vec![(
            ts.div_euclid(size) * size,
            ts.div_euclid(size) * size + size,
        )],
        Windows::Sliding(size, slide) => {
            let mut v = Vec::new();
            let mut s = ts.div_euclid(slide) * slide;
            while s > ts - size {
                v.push((s, s + size));
                s -= slide;
            }
            v
        }
        Windows::Session(_) => unreachable!("sessions are computed per key"),
    }
}

/// Sessions per key over both sides' timestamps: (key, ts) -> session.
fn sessions(all: &[(u8, i64)], gap: i64) -> BTreeMap<(u8, i64), (i64, i64)> {
    let mut by_key: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
    for &(k, ts) in all {
        by_key.entry(k).or_default().push(ts);
    }
    let mut map = BTreeMap::new();
    for (k, mut ts) in by_key {
        ts.sort();
        let mut i = 0;
        while i < ts.len() {
            let (start, mut end) = (ts[i], ts[i] + gap);
            let mut j = i + 1;
            while j < ts.len() && ts[j] <= end {
                end = end.max(ts[j] + gap);
                j += 1;
            }
            for &t in &ts[i..j] {
                map.insert((k, t), (start, end));
            }
            i = j;
        }
    }
    map
}

fn window_join_reference(left: &[Rec], right: &[Rec], w: Windows) -> Vec<(u32, u32, i64)> {
    let mut out = Vec::new();
    let all: Vec<(u8, i64)> = left.iter().chain(right).map(|r| (r.0, r.1)).collect();
    let session = match w {
        Windows::Session(gap) => Some(sessions(&all, gap)),
        _ => None,
    };
    let of = |r: &Rec| -> Vec<(i64, i64)> {
        match &session {
            Some(s) => vec![s[&(r.0, r.1)]],
            None => windows_of(w, r.1),
        }
    };
    for a in left {
        for b in right.iter().filter(|b| b.0 == a.0) {
            let wb: HashSet<(i64, i64)> = of(b).into_iter().collect();
            for wa in of(a) {
                if wb.contains(&wa) {
                    out.push((a.2, b.2, wa.1 - 1));
                }
            }
        }
    }
    sorted(out)
}

fn window_join(left: &[Rec], right: &[Rec], w: Windows, p: usize) -> Vec<(u32, u32, i64)> {
    let env = env(p);
    let (sink, out) = CollectSink::new();
    let a = side(&env, left, 2, rec_ts).key_by(|r| r.0);
    let b = side(&env, right, 1, rec_ts).key_by(|r| r.0);
    let ms = |v: i64| Duration::from_millis(v as u64);
    let joined = match w {
        Windows::Tumbling(size) => a.window_join(&b, TumblingEventTime::of(ms(size))),
        Windows::Sliding(size, slide) => {
            a.window_join(&b, SlidingEventTime::of(ms(size), ms(slide)))
        }
        Windows::Session(gap) => a.window_join(&b, EventTimeSessions::with_gap(ms(gap))),
    };
    joined
        .apply(|a: &Rec, b: &Rec| (a.2, b.2))
        .uid("join")
        .sink(sink);
    let stats = env.execute("window-join").unwrap();
    assert_eq!(stats.operator("join").unwrap().metric("state_entries"), 0);
    // The result timestamp is the window's last instant.
    sorted(
        out.records()
            .into_iter()
            .map(|r| (r.value.0, r.value.1, r.ts.millis()))
            .collect(),
    )
}

fn interval_join(
    left: &[Rec],
    right: &[Rec],
    lower: i64,
    upper: i64,
    exclusive: bool,
    p: usize,
) -> Vec<(u32, u32)> {
    let env = env(p);
    let (sink, out) = CollectSink::new();
    let a = side(&env, left, 1, rec_ts).key_by(|r| r.0);
    let b = side(&env, right, 2, rec_ts).key_by(|r| r.0);
    let mut j = a.interval_join(&b).between(lower, upper);
    if exclusive {
        j = j.lower_bound_exclusive().upper_bound_exclusive();
    }
    j.process(|a: &Rec, b: &Rec| (a.2, b.2))
        .uid("interval")
        .sink(sink);
    let stats = env.execute("interval").unwrap();
    state_is_empty(&stats, "interval");
    assert_eq!(
        stats.operator("interval").unwrap().metric("state_entries"),
        0
    );
    sorted(out.values())
}

/// key, timestamp, Some(version) or None for a delete
type Change = (u8, i64, Option<u32>);

fn change_ts(c: &Change) -> i64 {
    c.1
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    records(40).prop_map(|rs| {
        rs.into_iter()
            .map(|(k, ts, id)| (k, ts, if id % 5 == 4 { None } else { Some(id) }))
            .collect()
    })
}

fn temporal_reference(events: &[Rec], changes: &[Change]) -> (Vec<(u32, Option<u32>)>, usize) {
    let mut out = Vec::new();
    for e in events {
        // The latest change at or before the event; among changes at the
        // same time, the one that arrived last (the later in the input).
        let valid = changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.0 == e.0 && c.1 <= e.1)
            .max_by_key(|(i, c)| (c.1, *i))
            .and_then(|(_, c)| c.2);
        out.push((e.2, valid));
    }
    let mut last: BTreeMap<u8, (i64, usize, Option<u32>)> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        let e = last.entry(c.0).or_insert((c.1, i, c.2));
        if (c.1, i) >= (e.0, e.1) {
            *e = (c.1, i, c.2);
        }
    }
    let retained = last.values().filter(|(_, _, v)| v.is_some()).count();
    (sorted(out), retained)
}

fn temporal_join(events: &[Rec], changes: &[Change], p: usize) -> (Vec<(u32, Option<u32>)>, u64) {
    let env = env(p);
    let (sink, out) = CollectSink::new();
    // One split per side: changes of one key at the same timestamp keep their order.
    let a = side(&env, events, 2, rec_ts).key_by(|r| r.0);
    let c = side(&env, changes, 1, change_ts).key_by(|c| c.0);
    a.temporal_join(&c, |c: &Change| c.2)
        .left_outer(|e: &Rec, v: Option<&u32>| (e.2, v.copied()))
        .uid("temporal")
        .sink(sink);
    let stats = env.execute("temporal").unwrap();
    state_is_empty(&stats, "temporal");
    (
        sorted(out.values()),
        stats.operator("temporal").unwrap().metric("state_entries"),
    )
}

fn windows() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (1i64..20).prop_map(Windows::Tumbling),
        (1i64..20, 1i64..20).prop_map(|(a, b)| Windows::Sliding(a.max(b), a.min(b))),
        (1i64..12).prop_map(Windows::Session),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn connected_streams_pair_every_left_with_every_right_of_its_key(left in records(60), right in records(60)) {
        let expected = equal_key_pairs(&left, &right, |_, _| true);
        prop_assert_eq!(&connected_pairs(&left, &right, 1), &expected);
        prop_assert_eq!(&connected_pairs(&left, &right, 4), &expected);
    }

    #[test]
    fn window_joins_pair_records_sharing_key_and_window(left in records(50), right in records(50), w in windows()) {
        let expected = window_join_reference(&left, &right, w);
        prop_assert_eq!(&window_join(&left, &right, w, 1), &expected);
        prop_assert_eq!(&window_join(&left, &right, w, 4), &expected);
    }

    #[test]
    fn interval_joins_pair_records_within_the_bounds(
        left in records(50),
        right in records(50),
        a in -15i64..15,
        b in -15i64..15,
        exclusive in any::<bool>(),
    ) {
        let (lower, upper) = (a.min(b), a.max(b));
        // Exclusive bounds need room for at least one instant.
        let upper = if exclusive { upper.max(lower + 2) } else { upper };
        let (lo, hi) = if exclusive { (lower + 1, upper - 1) } else { (lower, upper) };
        let expected = equal_key_pairs(&left, &right, |x, y| x.1 + lo <= y.1 && y.1 <= x.1 + hi);
        prop_assert_eq!(&interval_join(&left, &right, lower, upper, exclusive, 1), &expected);
        prop_assert_eq!(&interval_join(&left, &right, lower, upper, exclusive, 4), &expected);
    }

    #[test]
    fn temporal_joins_see_the_version_valid_at_each_event(events in records(50), changes in changes()) {
        let (expected, retained) = temporal_reference(&events, &changes);
        for p in [1, 4] {
            let (got, state) = temporal_join(&events, &changes, p);
            prop_assert_eq!(&got, &expected, "parallelism {}", p);
            prop_assert_eq!(state as usize, retained, "only each key's last live row stays (p {})", p);
        }
    }
}

mod broadcast {
    use super::*;
    use eddy_engine::context::RuntimeContext;
    use eddy_engine::state::MapStateDesc;
    use eddy_operators::join::{
        BroadcastExt, BroadcastState, KeyedBroadcastProcessFunction, ReadOnlyBroadcastState,
    };

    const RULES: MapStateDesc<u8, u32> = MapStateDesc::new("rules");

    /// Rules arrive in order on every subtask; events report the rule
    /// version they saw for their key.
    #[derive(Clone, Default)]
    struct Versions {
        subtask: usize,
    }

    type Seen = (bool, usize, u8, u32); // (is rule, subtask, key, value)

    impl KeyedBroadcastProcessFunction<u8, Rec, (u8, u32), Seen> for Versions {
        fn open(&mut self, ctx: &RuntimeContext) -> UserResult {
            self.subtask = ctx.subtask();
            Ok(())
        }

        fn process_element(
            &mut self,
            r: Rec,
            _ctx: &mut KeyedContext<'_, u8>,
            rules: &mut ReadOnlyBroadcastState<'_>,
            out: &mut Collector<'_, Seen>,
        ) -> UserResult {
            let v = rules.get(&RULES, &r.0)?.unwrap_or(0);
            out.emit((false, self.subtask, r.0, v));
            Ok(())
        }

        fn process_broadcast(
            &mut self,
            (k, v): (u8, u32),
            rules: &mut BroadcastState<'_>,
            out: &mut Collector<'_, Seen>,
        ) -> UserResult {
            let previous = rules.map(&RULES).get(&k)?.unwrap_or(0);
            // Versions only grow: a subtask that sees them out of order fails.
            assert!(
                v > previous,
                "rule versions arrive in order on every subtask"
            );
            rules.map(&RULES).put(k, v)?;
            out.emit((true, self.subtask, k, v));
            Ok(())
        }
    }

    fn run(events: &[Rec], rules: &[(u8, u32)], p: usize) -> Vec<Seen> {
        let env = env(p);
        let (sink, out) = CollectSink::new();
        let keyed = side(&env, events, 2, rec_ts).key_by(|r| r.0);
        let rules = env.from_collection(rules.to_vec());
        keyed
            .connect_broadcast(&rules)
            .process(Versions::default())
            .sink(sink);
        env.execute("broadcast").unwrap();
        out.values()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn every_subtask_gets_every_rule_in_order_and_every_event_once(
            events in records(60),
            keys in prop::collection::vec(0u8..5, 0..20),
            p in prop_oneof![Just(1usize), Just(4)],
        ) {
            // Rule i sets key keys[i] to version i + 1 (increasing per key).
            let rules: Vec<(u8, u32)> = keys.iter().enumerate().map(|(i, k)| (*k, i as u32 + 1)).collect();
            let seen = run(&events, &rules, p);
            for subtask in 0..p {
                let got: Vec<(u8, u32)> = seen.iter().filter(|s| s.0 && s.1 == subtask).map(|s| (s.2, s.3)).collect();
                prop_assert_eq!(&got, &rules, "subtask {}", subtask);
            }
            let mut event_keys: Vec<u8> = seen.iter().filter(|s| !s.0).map(|s| s.2).collect();
            event_keys.sort();
            prop_assert_eq!(event_keys, sorted(events.iter().map(|r| r.0).collect()));
            // An event sees no version newer than the last rule for its key.
            for s in seen.iter().filter(|s| !s.0) {
                let last = rules.iter().filter(|r| r.0 == s.2).map(|r| r.1).max().unwrap_or(0);
                prop_assert!(s.3 <= last);
            }
        }
    }
}
