//! Property test: a keyed process function with map, value and list state
//! and event-time timers, over out-of-order input with random batch
//! boundaries and watermark cadence, at parallelism 1 and 4 (and at 4 over
//! three loopback workers, through TCP channels), equals a brute-force
//! reference.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_engine::config::{EnvConfig, StateBackendKind};
use eddy_engine::dsl::Env;
use eddy_engine::element::Timestamp;
use eddy_engine::error::UserResult;
use eddy_engine::operator::Collector;
use eddy_engine::process::{KeyedContext, KeyedProcessFunction, TimeDomain};
use eddy_engine::sink::CollectSink;
use eddy_engine::state::{ListStateDesc, MapStateDesc, ValueStateDesc};
use eddy_engine::time::WatermarkStrategy;
use proptest::prelude::*;

const WINDOW: i64 = 10;
const MAX_DELAY: i64 = 25;

/// Per key: sums and counts per tumbling 10 ms bucket, emitted when the
/// watermark passes the bucket's end; keeps the values of a bucket in a list
/// and checks them against the sum at firing time.
#[derive(Clone)]
struct BucketSums;

const SUMS: MapStateDesc<i64, (i64, u32)> = MapStateDesc::new("sums");
const VALUES: ListStateDesc<(i64, i64)> = ListStateDesc::new("values");
const FIRED: ValueStateDesc<u32> = ValueStateDesc::new("fired");

/// (key, bucket end, sum, count, buckets fired before for this key)
type Out = (u32, i64, i64, u32, u32);

impl KeyedProcessFunction<u32, (u32, i64, i64), Out> for BucketSums {
    fn process(
        &mut self,
        (_, ts, v): (u32, i64, i64),
        ctx: &mut KeyedContext<'_, u32>,
        _out: &mut Collector<'_, Out>,
    ) -> UserResult {
        assert_eq!(ctx.timestamp(), Timestamp(ts));
        assert!(
            ctx.timestamp() > ctx.current_watermark(),
            "input is never late here"
        );
        let end = (ts.div_euclid(WINDOW) + 1) * WINDOW;
        let mut sums = ctx.state(&SUMS);
        let (s, c) = sums.get(&end)?.unwrap_or((0, 0));
        sums.put(end, (s + v, c + 1))?;
        ctx.state(&VALUES).add((end, v))?;
        ctx.timers().register_event_time(Timestamp(end - 1));
        Ok(())
    }

    fn on_timer(
        &mut self,
        time: Timestamp,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, Out>,
    ) -> UserResult {
        assert_eq!(ctx.time_domain(), Some(TimeDomain::EventTime));
        assert!(ctx.current_watermark() >= time);
        let end = time.millis() + 1;
        let (sum, count) = ctx
            .state(&SUMS)
            .remove(&end)?
            .expect("a timer implies a bucket");
        let values = ctx.state(&VALUES).take()?;
        let (mine, rest): (Vec<_>, Vec<_>) = values.into_iter().partition(|(e, _)| *e == end);
        assert_eq!(mine.iter().map(|(_, v)| v).sum::<i64>(), sum);
        ctx.state(&VALUES).update(rest)?;
        let fired = ctx.state(&FIRED).get()?.unwrap_or(0);
        ctx.state(&FIRED).set(fired + 1)?;
        out.emit((*ctx.key(), end, sum, count, fired));
        Ok(())
    }
}

fn reference(input: &[(u32, i64, i64)]) -> Vec<Out> {
    let mut buckets: BTreeMap<(u32, i64), (i64, u32)> = BTreeMap::new();
    for &(k, ts, v) in input {
        let end = (ts.div_euclid(WINDOW) + 1) * WINDOW;
        let e = buckets.entry((k, end)).or_insert((0, 0));
        e.0 += v;
        e.1 += 1;
    }
    let mut fired: BTreeMap<u32, u32> = BTreeMap::new();
    let mut out: Vec<Out> = buckets
        .into_iter()
        .map(|((k, end), (s, c))| {
            let f = fired.entry(k).or_insert(0);
            *f += 1;
            (k, end, s, c, *f - 1)
        })
        .collect();
    out.sort();
    out
}

fn run(
    input: &[(u32, i64, i64)],
    parallelism: usize,
    batch_size: usize,
    backend: StateBackendKind,
    loopback_workers: Option<usize>,
) -> Vec<Out> {
    let mut config = EnvConfig::default()
        .with_state_backend(backend)
        .with_parallelism(parallelism)
        .with_batch_size(batch_size)
        .with_buffer_timeout(Duration::ZERO);
    config.loopback_workers = loopback_workers;
    let env = Env::with_config(config).unwrap();
    let (sink, out) = CollectSink::new();
    env.from_collection(input.to_vec())
        .parallelism(parallelism)
        .assign_timestamps(
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(MAX_DELAY as u64))
                .with_timestamp(|r: &(u32, i64, i64)| Timestamp(r.1))
                .with_per_batch_emission(),
        )
        .key_by(|r| r.0)
        .process(BucketSums)
        .sink(sink);
    env.execute("bucket-sums").unwrap();
    let mut got = out.values();
    got.sort();
    got
}

/// Input whose timestamps never fall more than MAX_DELAY behind the running
/// maximum (so no record is late), in random order within that bound.
fn bounded_disorder() -> impl Strategy<Value = Vec<(u32, i64, i64)>> {
    prop::collection::vec((0u32..6, 0i64..8, -50i64..50, 0i64..=MAX_DELAY), 0..300).prop_map(
        |steps| {
            let mut max = 0i64;
            steps
                .into_iter()
                .map(|(key, advance, value, lag)| {
                    max += advance;
                    (key, (max - lag).max(0).max(max - MAX_DELAY), value)
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn keyed_state_and_timers_match_the_reference_at_parallelism_1_and_4(
        input in bounded_disorder(),
        batch_size in 1usize..40,
    ) {
        let expected = reference(&input);
        prop_assert_eq!(&run(&input, 1, batch_size, StateBackendKind::Heap, None), &expected);
        prop_assert_eq!(&run(&input, 4, batch_size, StateBackendKind::Heap, None), &expected);
        // Over three workers: most channels cross loopback TCP.
        prop_assert_eq!(&run(&input, 4, batch_size, StateBackendKind::Heap, Some(3)), &expected);
        if cfg!(feature = "rocksdb") {
            prop_assert_eq!(&run(&input, 4, batch_size, StateBackendKind::Rocksdb, None), &expected);
        }
    }
}
