//! The fraud example's rule, run through the whole engine on generated
//! out-of-order payments, equals a brute-force reference at parallelism 1
//! and 3.

#[path = "../examples/fraud/mod.rs"]
mod fraud;

use std::collections::BTreeMap;

use eddy::connectors::datagen::{generate_at, DataGen, SplitMix64};
use eddy::prelude::*;
use fraud::{payment, Alert, Payment, SmallThenLarge, LARGE_CENTS, SMALL_CENTS, WINDOW};

const EVENTS: u64 = 60_000;
const CARDS: u64 = 50;

fn reference(payments: &[Payment]) -> Vec<Alert> {
    let mut by_card: BTreeMap<u64, Vec<&Payment>> = BTreeMap::new();
    for p in payments {
        by_card.entry(p.card).or_default().push(p);
    }
    let mut alerts = Vec::new();
    for (card, ps) in by_card {
        for large in ps.iter().filter(|p| p.amount_cents > LARGE_CENTS) {
            let latest_small = ps
                .iter()
                .filter(|s| s.amount_cents < SMALL_CENTS)
                .map(|s| s.at)
                .filter(|&at| at < large.at && large.at - WINDOW <= at)
                .max();
            if let Some(small_at) = latest_small {
                alerts.push(Alert {
                    card,
                    small_at,
                    large_at: large.at,
                    large_amount_cents: large.amount_cents,
                });
            }
        }
    }
    alerts.sort();
    alerts
}

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
