//! The brute-force reference of the fraud rule (`examples/fraud`), for the
//! tests of the fraud example and of the `fraud_alerts` pipeline.

use std::collections::BTreeMap;

use crate::fraud::{Alert, Payment, LARGE_CENTS, SMALL_CENTS, WINDOW};

/// Every alert the rule must raise on `payments`, sorted.
pub fn reference(payments: &[Payment]) -> Vec<Alert> {
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
