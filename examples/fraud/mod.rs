//! The fraud rule, shared by the `fraud_detection` example and its tests:
//! alert when a card makes a large payment (over $500) and the same card made
//! a small payment (under $1) in the minute before it, in event time.
//!
//! The result does not depend on the order payments arrive in: a large
//! payment is checked only when the watermark passes it, i.e. once every
//! small payment that could precede it has arrived.
//!
//! State per card: the small payments of the last minute (dropped by a timer
//! a minute after each), and large payments waiting for the watermark.

use eddy::connectors::datagen::SplitMix64;
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

/// A card payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Card number.
    pub card: u64,
    /// Amount in cents.
    pub amount_cents: u64,
    /// Event time.
    pub at: Timestamp,
}

/// A large payment preceded by a small one within a minute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Alert {
    /// Card number.
    pub card: u64,
    /// The latest small payment before the large one.
    pub small_at: Timestamp,
    /// The large payment.
    pub large_at: Timestamp,
    /// Its amount in cents.
    pub large_amount_cents: u64,
}

/// Payments below this are small.
pub const SMALL_CENTS: u64 = 100;
/// Payments above this are large.
pub const LARGE_CENTS: u64 = 50_000;
/// How long a small payment makes a large one suspicious.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How far out of event-time order the generated payments are.
pub const MAX_DISORDER: Duration = Duration::from_millis(500);

const SMALLS: ListStateDesc<Timestamp> = ListStateDesc::new("smalls");
const PENDING_LARGE: ListStateDesc<(Timestamp, u64)> = ListStateDesc::new("pending-large");

/// The keyed process function implementing the rule.
#[derive(Clone)]
pub struct SmallThenLarge;

impl KeyedProcessFunction<u64, Payment, Alert> for SmallThenLarge {
    fn process(
        &mut self,
        p: Payment,
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, Alert>,
    ) -> UserResult {
        let at = ctx.timestamp();
        if p.amount_cents < SMALL_CENTS {
            ctx.state(&SMALLS).add(at)?;
            ctx.timers().register_event_time(at + WINDOW);
        } else if p.amount_cents > LARGE_CENTS {
            ctx.state(&PENDING_LARGE).add((at, p.amount_cents))?;
            ctx.timers().register_event_time(at);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        now: Timestamp,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Alert>,
    ) -> UserResult {
        let card = *ctx.key();
        let smalls = ctx.state(&SMALLS).get()?;
        let (due, waiting): (Vec<_>, Vec<_>) = ctx
            .state(&PENDING_LARGE)
            .take()?
            .into_iter()
            .partition(|(at, _)| *at <= now);
        for (large_at, amount) in due {
            let small = smalls
                .iter()
                .filter(|s| **s < large_at && large_at - WINDOW <= **s)
                .max();
            if let Some(&small_at) = small {
                out.emit(Alert {
                    card,
                    small_at,
                    large_at,
                    large_amount_cents: amount,
                });
            }
        }
        ctx.state(&PENDING_LARGE).update(waiting)?;
        // Smalls a minute old can no longer precede a large payment that is
        // still to be checked (those are all later than `now`).
        let live: Vec<Timestamp> = smalls.into_iter().filter(|s| *s + WINDOW > now).collect();
        ctx.state(&SMALLS).update(live)?;
        Ok(())
    }
}

/// Payment number `i`: one of `cards` cards, 1 ms of event time apart, up to
/// half a second out of order; 10% small, 0.5% large.
pub fn payment(i: u64, rng: &mut SplitMix64, cards: u64) -> Payment {
    let amount_cents = match rng.below(1_000) {
        0..=99 => rng.below(SMALL_CENTS),
        100..=104 => LARGE_CENTS + 1 + rng.below(100_000),
        _ => SMALL_CENTS + rng.below(20_000),
    };
    let disorder = rng.below(MAX_DISORDER.as_millis() as u64 + 1) as i64;
    Payment {
        card: rng.below(cards),
        amount_cents,
        at: Timestamp::from_millis(1_700_000_000_000 + i as i64 - disorder),
    }
}

/// The watermark strategy the generated payments need.
pub fn watermarks() -> WatermarkStrategy<Payment> {
    WatermarkStrategy::bounded_out_of_orderness(MAX_DISORDER).with_timestamp(|p: &Payment| p.at)
}
