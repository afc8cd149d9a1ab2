//! The fraud example's rule, run through the whole engine on generated
//! out-of-order payments, equals a brute-force reference at parallelism 1
//! and 3.

#[path = "../examples/fraud/mod.rs"]
mod fraud;
#[path = "common/fraud_reference.rs"]
mod fraud_reference;

use eddy::connectors::datagen::{generate_at, DataGen, SplitMix64};
use eddy::prelude::*;
use fraud::{payment, Alert, Payment, SmallThenLarge};
use fraud_reference::reference;

const EVENTS: u64 = 60_000;
const CARDS: u64 = 50;

fn run(parallelism: usize) -> Vec<Alert> {
    let env = Env::with_config(EnvConfig::default().with_parallelism(parallelism)).unwrap();
    let (sink, out) = CollectSink::new();
    env.source(DataGen::new(|i, rng: &mut SplitMix64| payment(i, rng, CARDS)).with_count(EVENTS))
        .assign_timestamps(fraud::watermarks())
        .key_by(|p| p.card)
        .process(SmallThenLarge)
        .sink(sink);
    env.execute("fraud").unwrap();
    let mut alerts = out.values();
    alerts.sort();
    alerts
}

#[test]
fn fraud_alerts_equal_the_reference_at_any_parallelism() {
    let payments: Vec<Payment> = (0..EVENTS)
        .map(|i| generate_at(0, i, |i, rng| payment(i, rng, CARDS)))
        .collect();
    let expected = reference(&payments);
    assert!(
        expected.len() > 20,
        "the data makes alerts ({})",
        expected.len()
    );
    assert_eq!(run(1), expected);
    assert_eq!(run(3), expected);
}

mod harness {
    use eddy::engine::testing::Harness;
    use eddy::prelude::*;

    use super::fraud::{Alert, Payment, SmallThenLarge, WINDOW};

    fn pay(card: u64, cents: u64, at: i64) -> (Payment, Timestamp) {
        (
            Payment {
                card,
                amount_cents: cents,
                at: Timestamp(at),
            },
            Timestamp(at),
        )
    }

    #[test]
    fn a_large_payment_within_a_minute_of_a_small_one_alerts_once_the_watermark_passes_it() {
        let mut h = Harness::keyed(SmallThenLarge, |p: &Payment| p.card).unwrap();
        for (p, ts) in [
            pay(7, 50, 1_000),
            pay(7, 90_000, 30_000),
            pay(8, 90_000, 30_000),
        ] {
            h.process(p, ts).unwrap();
        }
        assert!(h.take_output().is_empty(), "nothing before the watermark");
        h.advance_watermark(Timestamp(30_000)).unwrap();
        assert_eq!(
            h.take_output(),
            vec![Alert {
                card: 7,
                small_at: Timestamp(1_000),
                large_at: Timestamp(30_000),
                large_amount_cents: 90_000,
            }]
        );
        // A minute after the small payment it is forgotten: state empties.
        h.process(pay(7, 90_000, 61_001).0, Timestamp(61_001))
            .unwrap();
        h.finish().unwrap();
        assert!(
            h.take_output().is_empty(),
            "61.001 s is more than {WINDOW:?} after 1 s"
        );
        let metrics = h.operator().metrics();
        assert!(metrics.contains(&("state_entries", 0)), "{metrics:?}");
        assert!(metrics.contains(&("timers", 0)), "{metrics:?}");
    }

    /// The rule's state and timers survive a snapshot and restore: the
    /// restored operator alerts as the original would have.
    #[test]
    fn the_rule_resumes_from_a_snapshot_with_its_state_and_timers() {
        let mut h = Harness::keyed(SmallThenLarge, |p: &Payment| p.card).unwrap();
        for (p, ts) in [pay(7, 50, 1_000), pay(7, 90_000, 30_000)] {
            h.process(p, ts).unwrap();
        }
        let snapshot = h.snapshot().unwrap();
        let key: eddy::engine::process::KeySelector<Payment, u64> =
            std::sync::Arc::new(|p: &Payment| p.card);
        let mut restored = Harness::restored(
            |ctx| eddy::engine::process::KeyedProcessOperator::new(SmallThenLarge, key, ctx),
            snapshot,
        )
        .unwrap();
        restored.advance_watermark(Timestamp(30_000)).unwrap();
        assert_eq!(
            restored.take_output(),
            vec![Alert {
                card: 7,
                small_at: Timestamp(1_000),
                large_at: Timestamp(30_000),
                large_amount_cents: 90_000,
            }]
        );
    }
}
