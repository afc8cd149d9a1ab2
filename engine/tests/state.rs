//! The heap state backend through its public API: every state kind,
//! namespaces, TTL with a driven clock, type checks, cleanup.

use std::sync::Arc;
use std::time::Duration;

use eddy_engine::checkpoint::{RestoredState, StateSnapshot};
use eddy_engine::clock::ManualClock;
use eddy_engine::config::StateBackendKind;
use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{CheckpointId, Timestamp};
use eddy_engine::error::StateError;
use eddy_engine::keygroup::{key_group_of, KeyGroupRange};
use eddy_engine::state::{
    AggregateFunction, AggregatingStateDesc, KeyedStateBackend, ListStateDesc, MapStateDesc,
    ReducingStateDesc, ValueStateDesc,
};

const COUNT: ValueStateDesc<u64> = ValueStateDesc::new("count");
const SEEN: ListStateDesc<String> = ListStateDesc::new("seen");
const LAST_BY_KIND: MapStateDesc<String, i64> = MapStateDesc::new("last-by-kind");
const MAX: ReducingStateDesc<i64> = ReducingStateDesc::new("max", |a, b| a.max(b));
const TTL_VALUE: ValueStateDesc<u64> = ValueStateDesc::new("ttl").with_ttl(Duration::from_secs(10));

struct Average;

impl AggregateFunction for Average {
    type In = f64;
    type Acc = (f64, u64);
    type Out = f64;
    fn create(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn add(&self, acc: &mut (f64, u64), v: f64) {
        acc.0 += v;
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn result(&self, acc: &(f64, u64)) -> f64 {
        acc.0 / acc.1 as f64
    }
}

const AVG: AggregatingStateDesc<Average> = AggregatingStateDesc::new("avg", Average);

/// The backends every state test runs against: the heap, and RocksDB when
/// it is built in.
fn backends() -> Vec<(KeyedStateBackend<String>, ManualClock)> {
    kinds().into_iter().map(|k| backend_in(k, 0, 1)).collect()
}

fn kinds() -> Vec<StateBackendKind> {
    let mut all = vec![StateBackendKind::Heap];
    if cfg!(feature = "rocksdb") {
        all.push(StateBackendKind::Rocksdb);
    }
    all
}

/// A `kind` backend for subtask `subtask` of `parallelism` (128 key groups).
fn backend_in(
    kind: StateBackendKind,
    subtask: usize,
    parallelism: usize,
) -> (KeyedStateBackend<String>, ManualClock) {
    let clock = ManualClock::new(Timestamp(0));
    let range = KeyGroupRange::for_subtask(subtask, parallelism, 128);
    let mut backend = KeyedStateBackend::new(range, Arc::new(clock.clone()));
    if kind == StateBackendKind::Rocksdb {
        let ctx = RuntimeContext::standalone(
            "state-test",
            subtask,
            parallelism,
            128,
            Arc::new(clock.clone()),
        );
        backend
            .use_rocksdb(ctx.state_dir_for_subtask())
            .expect("RocksDB opens");
    }
    (backend, clock)
}

fn kg(key: &String) -> u16 {
    key_group_of(key, 128)
}

#[test]
fn value_state_is_per_key_and_namespace() {
    for (mut b, _) in backends() {
        let (a, z) = ("a".to_owned(), "z".to_owned());
        b.state(&COUNT, &a, kg(&a), &()).set(3).unwrap();
        b.state(&COUNT, &z, kg(&z), &()).set(7).unwrap();
        assert_eq!(b.state(&COUNT, &a, kg(&a), &()).get().unwrap(), Some(3));
        assert_eq!(b.state(&COUNT, &z, kg(&z), &()).get().unwrap(), Some(7));
        // Namespaces (e.g. windows) of one state are separate.
        const PER_WINDOW: ValueStateDesc<u64> = ValueStateDesc::new("per-window");
        b.state(&PER_WINDOW, &a, kg(&a), &1u32).set(10).unwrap();
        assert_eq!(b.state(&PER_WINDOW, &a, kg(&a), &2u32).get().unwrap(), None);
        assert_eq!(
            b.state(&PER_WINDOW, &a, kg(&a), &1u32).take().unwrap(),
            Some(10)
        );
        assert_eq!(b.state(&COUNT, &a, kg(&a), &()).take().unwrap(), Some(3));
        assert_eq!(b.state(&COUNT, &a, kg(&a), &()).get().unwrap(), None);
        b.state(&COUNT, &z, kg(&z), &()).clear().unwrap();
        assert_eq!(b.entry_count(), 0);
    }
}

#[test]
fn list_map_reducing_and_aggregating_state_behave_like_flinks() {
    for (mut b, _) in backends() {
        let k = "card-1".to_owned();
        let g = kg(&k);
        b.state(&SEEN, &k, g, &()).add("x".into()).unwrap();
        b.state(&SEEN, &k, g, &())
            .add_all(["y".into(), "z".into()])
            .unwrap();
        assert_eq!(
            b.state(&SEEN, &k, g, &()).get().unwrap(),
            vec!["x", "y", "z"]
        );
        b.state(&SEEN, &k, g, &()).update(vec!["q".into()]).unwrap();
        assert_eq!(b.state(&SEEN, &k, g, &()).take().unwrap(), vec!["q"]);

        let mut m = b.state(&LAST_BY_KIND, &k, g, &());
        m.put("deposit".into(), 10).unwrap();
        m.put("withdrawal".into(), -4).unwrap();
        m.put("deposit".into(), 12).unwrap();
        assert_eq!(m.get(&"deposit".into()).unwrap(), Some(12));
        assert!(m.contains(&"withdrawal".into()).unwrap());
        let mut entries = m.entries().unwrap();
        entries.sort();
        assert_eq!(
            entries,
            vec![("deposit".to_owned(), 12), ("withdrawal".to_owned(), -4)]
        );
        assert_eq!(m.remove(&"deposit".into()).unwrap(), Some(12));
        m.clear().unwrap();
        assert!(m.is_empty().unwrap());

        for v in [3, 9, -2] {
            b.state(&MAX, &k, g, &()).add(v).unwrap();
        }
        assert_eq!(b.state(&MAX, &k, g, &()).get().unwrap(), Some(9));

        for v in [1.0, 2.0, 6.0] {
            b.state(&AVG, &k, g, &()).add(v).unwrap();
        }
        assert_eq!(b.state(&AVG, &k, g, &()).get().unwrap(), Some(3.0));
        b.state(&AVG, &k, g, &()).clear().unwrap();
        b.state(&MAX, &k, g, &()).clear().unwrap();
        assert_eq!(b.entry_count(), 0, "cleared state leaves nothing behind");
    }
}

#[test]
fn ttl_values_expire_after_the_last_write_and_are_never_returned() {
    for (mut b, clock) in backends() {
        let k = "k".to_owned();
        b.state(&TTL_VALUE, &k, kg(&k), &()).set(1).unwrap();
        clock.advance(Duration::from_secs(9));
        assert_eq!(b.state(&TTL_VALUE, &k, kg(&k), &()).get().unwrap(), Some(1));
        b.state(&TTL_VALUE, &k, kg(&k), &()).set(2).unwrap();
        clock.advance(Duration::from_secs(9));
        assert_eq!(
            b.state(&TTL_VALUE, &k, kg(&k), &()).get().unwrap(),
            Some(2),
            "the write renewed it"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(&TTL_VALUE, &k, kg(&k), &()).get().unwrap(), None);
        assert_eq!(
            b.entry_count(),
            0,
            "expired values are removed when touched"
        );
    }
}

#[test]
fn one_name_with_two_types_is_an_error_naming_the_state() {
    const AS_TEXT: ValueStateDesc<String> = ValueStateDesc::new("count");
    for (mut b, _) in backends() {
        let k = "k".to_owned();
        b.state(&COUNT, &k, kg(&k), &()).set(1).unwrap();
        let err = b.state(&AS_TEXT, &k, kg(&k), &()).get().unwrap_err();
        assert!(matches!(err, StateError::TypeMismatch { ref name, .. } if name == "count"));
        assert!(err.to_string().contains("give each state its own name"));
    }
}

/// State written into one backend, snapshotted, and restored into the
/// other (and the same) — at parallelism 2, so each half takes its key
/// groups — holds the same values. More keys than RocksDB's write-back cache
/// holds, so evicted entries are read back from disk.
#[test]
fn snapshots_restore_into_either_backend_at_another_parallelism() {
    const KEYS: u64 = 40_000;
    for from in kinds() {
        for into in kinds() {
            let (mut b, _) = backend_in(from, 0, 1);
            for i in 0..KEYS {
                let k = format!("key-{i}");
                b.state(&COUNT, &k, kg(&k), &()).set(i).unwrap();
                if i % 7 == 0 {
                    b.state(&SEEN, &k, kg(&k), &())
                        .add(format!("s{i}"))
                        .unwrap();
                }
                if i % 5 == 0 {
                    b.state(&COUNT, &k, kg(&k), &()).clear().unwrap();
                }
            }
            let live = KEYS - KEYS.div_ceil(5) + KEYS.div_ceil(7);
            assert_eq!(b.entry_count() as u64, live, "{from:?}");
            let mut snapshot = StateSnapshot::new(CheckpointId(1), 128);
            b.snapshot(&mut snapshot).unwrap();
            let mut restored_entries = 0;
            for subtask in 0..2 {
                let restored =
                    RestoredState::from_snapshots(vec![snapshot.clone()], subtask, 2, 128);
                let range = KeyGroupRange::for_subtask(subtask, 2, 128);
                let (mut half, _) = backend_in(into, subtask, 2);
                half.restore(&restored).unwrap();
                for i in 0..KEYS {
                    let k = format!("key-{i}");
                    if !range.contains(kg(&k)) {
                        continue;
                    }
                    let want = (i % 5 != 0).then_some(i);
                    assert_eq!(half.state(&COUNT, &k, kg(&k), &()).get().unwrap(), want);
                    let list = half.state(&SEEN, &k, kg(&k), &()).get().unwrap();
                    assert_eq!(list.len(), usize::from(i % 7 == 0), "{from:?} → {into:?}");
                }
                restored_entries += half.entry_count() as u64;
            }
            assert_eq!(restored_entries, live, "{from:?} → {into:?}");
        }
    }
}
