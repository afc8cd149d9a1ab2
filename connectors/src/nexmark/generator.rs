//! The Nexmark event generator: event number in, event out.
//!
//! Follows the shape of the reference generator (Apache Beam's Nexmark, as
//! used by Flink's `nexmark` benchmark):
//!
//! - Out of every 50 event numbers, the first is a person, the next 3 are
//!   auctions and the other 46 are bids.
//! - Person and auction ids are derived from the event number: event `n`'s
//!   newest person is `n / 50`, its newest auction `3 * (n / 50) + …`, both
//!   offset by 1000. So ids are dense and increasing, and any event can be
//!   generated without generating the ones before it.
//! - Most sellers, bidders and bids are "hot": the first (sellers, auctions)
//!   or second (bidders) id of the latest block of 100; the others are drawn
//!   from the most recent `num_active_people` people or
//!   `num_in_flight_auctions` auctions.
//! - Prices are log-uniform between $1 and $1 000 000; 5 categories; half of
//!   the bids come from 4 hot channels, the rest from 10 000 others.
//!
//! Where Eddy differs: the random generator is [`SplitMix64`] seeded from
//! `(seed, event number)` instead of Java's `Random(event id)`, so values
//! differ from Flink's run for run but follow the same distributions;
//! references never point past the newest person or auction unless
//! [`NexmarkConfig::id_lead`] says so (the reference allows 10 ids ahead);
//! channel URLs are derived from the seed instead of being random per
//! process; and timestamps get a bounded, per-event disorder
//! ([`NexmarkConfig::max_disorder`]) instead of out-of-order groups.
//!
//! [`NexmarkGenerator::event`] is a pure function of the configuration and
//! the event number: any subset of events can be generated in any order, on
//! any thread, and is the same every time.

use eddy_engine::element::Timestamp;

use super::config::{ExtraPadding, NexmarkConfig};
use super::model::{Auction, Bid, Event, Person};
use super::strings::{
    extra, push_decimal, push_four_digits, push_random_string, random_string, FIRST_NAMES,
    HOT_CHANNELS, LAST_NAMES, US_CITIES, US_STATES,
};
use crate::datagen::SplitMix64;
use crate::error::ConnectorError;

/// The id of the first person.
pub const FIRST_PERSON_ID: u64 = 1_000;
/// The id of the first auction.
pub const FIRST_AUCTION_ID: u64 = 1_000;
/// The id of the first category.
pub const FIRST_CATEGORY_ID: u64 = 10;

/// Persons per [`TOTAL_PROPORTION`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions per [`TOTAL_PROPORTION`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids per [`TOTAL_PROPORTION`] events.
pub const BID_PROPORTION: u64 = 46;
/// The length of the repeating person/auction/bid pattern.
pub const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

/// Number of auction categories.
const NUM_CATEGORIES: u64 = 5;
/// Hot ids are the first (or second) of the latest block of this many.
const HOT_BLOCK: u64 = 100;
/// One bid in this many comes from a cold channel.
const HOT_CHANNELS_RATIO: u64 = 2;
/// Number of cold channels.
const CHANNELS_NUMBER: u64 = 10_000;
/// Mixed into the seed for channel URLs, so they do not repeat event data.
const CHANNEL_SALT: u64 = 0x6e65_786d_6172_6b01;

/// The kind of an event, known from its number alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A [`Person`].
    Person,
    /// An [`Auction`].
    Auction,
    /// A [`Bid`].
    Bid,
}

impl EventKind {
    /// The kind of event number `n`.
    #[inline]
    pub fn of(n: u64) -> EventKind {
        match n % TOTAL_PROPORTION {
            r if r < PERSON_PROPORTION => EventKind::Person,
            r if r < PERSON_PROPORTION + AUCTION_PROPORTION => EventKind::Auction,
            _ => EventKind::Bid,
        }
    }
}

/// The newest person id (without [`FIRST_PERSON_ID`]) at event `n`: the
/// person event `n` creates, or the last one created before it. (With one
/// person per epoch of [`TOTAL_PROPORTION`] events, that is the epoch.)
#[inline]
fn last_person_base0(n: u64) -> u64 {
    const _: () = assert!(PERSON_PROPORTION == 1);
    n / TOTAL_PROPORTION
}

/// The newest auction id (without [`FIRST_AUCTION_ID`]) at event `n`: the
/// auction event `n` creates, or the last one created before it (0 before
/// the first auction).
#[inline]
fn last_auction_base0(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    let offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        // A person: the last auction of the previous epoch.
        (epoch * AUCTION_PROPORTION).saturating_sub(1)
    } else {
        let in_epoch = (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1);
        epoch * AUCTION_PROPORTION + in_epoch
    }
}

/// A log-uniform price between 100 and 100 000 000 cents.
#[inline]
fn next_price(rng: &mut SplitMix64) -> u64 {
    (10f64.powf(rng.next_f64() * 6.0) * 100.0).round() as u64
}

/// `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`.
fn base_url(rng: &mut SplitMix64) -> String {
    let mut url = String::with_capacity(64);
    url.push_str("https://www.nexmark.com/");
    for _ in 0..3 {
        push_random_string(rng, &mut url, 5, '_');
        url.push('/');
    }
    url.push_str("item.htm?query=1");
    url
}

/// The deterministic Nexmark event generator. Build it once (it precomputes
/// the channel table, about 1 MB) and share it; [`NexmarkGenerator::event`]
/// takes `&self`.
///
/// ```
/// use eddy_connectors::nexmark::{Event, NexmarkConfig, NexmarkGenerator};
///
/// let generator = NexmarkGenerator::new(NexmarkConfig::default())?;
/// let mut max_bid = 0;
/// for n in 0..10_000 {
///     if let Event::Bid(bid) = generator.event(n) {
///         max_bid = max_bid.max(bid.price);
///     }
/// }
/// assert!(max_bid > 0);
/// # Ok::<(), eddy_connectors::error::ConnectorError>(())
/// ```
#[derive(Clone)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    max_disorder_ms: u64,
    /// Event numbers until `num_in_flight_auctions` more auctions exist.
    auction_horizon_events: u64,
    hot_urls: [String; 4],
    /// `(channel, url)` of each cold channel.
    channels: Box<[(String, String)]>,
}

impl std::fmt::Debug for NexmarkGenerator {
    /// The configuration only: the channel table is large and derived from it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexmarkGenerator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NexmarkGenerator {
    /// A generator for `config`.
    ///
    /// # Errors
    /// [`ConnectorError::InvalidConfig`] when a field is out of range.
    pub fn new(config: NexmarkConfig) -> Result<Self, ConnectorError> {
        config.validate()?;
        let salt = config.seed ^ CHANNEL_SALT;
        let hot_urls = std::array::from_fn(|i| {
            base_url(&mut SplitMix64::for_index(salt, u64::MAX - i as u64))
        });
        let channels = (0..CHANNELS_NUMBER)
            .map(|k| {
                let mut rng = SplitMix64::for_index(salt, k);
                let mut channel = String::with_capacity(13);
                channel.push_str("channel-");
                push_decimal(&mut channel, k);
                let mut url = base_url(&mut rng);
                if rng.below(10) > 0 {
                    url.push_str("&channel_id=");
                    push_decimal(&mut url, u64::from((k as u32).reverse_bits()));
                }
                (channel, url)
            })
            .collect();
        Ok(NexmarkGenerator {
            max_disorder_ms: u64::try_from(config.max_disorder.as_millis()).unwrap_or(u64::MAX),
            auction_horizon_events: config.num_in_flight_auctions * TOTAL_PROPORTION
                / AUCTION_PROPORTION,
            hot_urls,
            channels,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    /// Event `n`. A pure function of the configuration and `n`.
    pub fn event(&self, n: u64) -> Event {
        let mut rng = SplitMix64::for_index(self.config.seed, n);
        let date_time = self.disordered_time(n, &mut rng);
        match EventKind::of(n) {
            EventKind::Person => Event::Person(Box::new(self.person(n, &mut rng, date_time))),
            EventKind::Auction => Event::Auction(Box::new(self.auction(n, &mut rng, date_time))),
            EventKind::Bid => Event::Bid(self.bid(n, &mut rng, date_time)),
        }
    }

    /// The timestamp of event `n` (what `event(n).date_time()` returns),
    /// without generating the event.
    pub fn timestamp(&self, n: u64) -> Timestamp {
        self.disordered_time(n, &mut SplitMix64::for_index(self.config.seed, n))
    }

    /// Event `n`'s time without disorder: `base_time + n / events_per_second`.
    /// Never decreases with `n`.
    pub fn in_order_time(&self, n: u64) -> Timestamp {
        let offset_ms = u128::from(n) * 1_000 / u128::from(self.config.events_per_second.max(1));
        self.config
            .base_time
            .add_millis(i64::try_from(offset_ms).unwrap_or(i64::MAX))
    }

    /// The newest person id that exists at event `n` (event `n` included).
    pub fn last_person_id(n: u64) -> u64 {
        last_person_base0(n) + FIRST_PERSON_ID
    }

    /// The newest auction id that exists at event `n` (event `n` included);
    /// `None` before the first auction.
    pub fn last_auction_id(n: u64) -> Option<u64> {
        (n >= PERSON_PROPORTION).then(|| last_auction_base0(n) + FIRST_AUCTION_ID)
    }

    /// The in-order time minus a delay uniform in `0..=max_disorder`. Always
    /// takes the first draw, so the other fields do not depend on the
    /// disorder setting.
    #[inline]
    fn disordered_time(&self, n: u64, rng: &mut SplitMix64) -> Timestamp {
        let draw = rng.next_u64();
        let delay = ((u128::from(draw) * (u128::from(self.max_disorder_ms) + 1)) >> 64) as i64;
        self.in_order_time(n).add_millis(-delay)
    }

    /// A random recent person (without [`FIRST_PERSON_ID`]).
    #[inline]
    fn random_person_base0(&self, n: u64, rng: &mut SplitMix64) -> u64 {
        let people = last_person_base0(n) + 1;
        let active = people.min(self.config.num_active_people);
        people - active + rng.below(active + self.config.id_lead)
    }

    /// A random recent auction (without [`FIRST_AUCTION_ID`]).
    #[inline]
    fn random_auction_base0(&self, n: u64, rng: &mut SplitMix64) -> u64 {
        let newest = last_auction_base0(n);
        let oldest = newest.saturating_sub(self.config.num_in_flight_auctions);
        oldest + rng.below(newest - oldest + 1 + self.config.id_lead)
    }

    fn person(&self, n: u64, rng: &mut SplitMix64, date_time: Timestamp) -> Person {
        let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
        let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
        let mut name = String::with_capacity(first.len() + 1 + last.len());
        name.push_str(first);
        name.push(' ');
        name.push_str(last);

        let mut email_address = String::with_capacity(7 + 1 + 5 + 4);
        push_random_string(rng, &mut email_address, 7, '_');
        email_address.push('@');
        push_random_string(rng, &mut email_address, 5, '_');
        email_address.push_str(".com");

        let mut credit_card = String::with_capacity(19);
        for group in 0..4 {
            if group > 0 {
                credit_card.push(' ');
            }
            push_four_digits(&mut credit_card, rng.below(10_000));
        }
        let city = US_CITIES[rng.below(US_CITIES.len() as u64) as usize].to_owned();
        let state = US_STATES[rng.below(US_STATES.len() as u64) as usize].to_owned();
        let extra = match self.config.extra {
            ExtraPadding::Empty => String::new(),
            ExtraPadding::ToAverageSize => {
                let size = 8
                    + name.len()
                    + email_address.len()
                    + credit_card.len()
                    + city.len()
                    + state.len();
                extra(rng, size, self.config.avg_person_bytes)
            }
        };
        Person {
            id: last_person_base0(n) + FIRST_PERSON_ID,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time,
            extra,
        }
    }

    fn auction(&self, n: u64, rng: &mut SplitMix64, date_time: Timestamp) -> Auction {
        let hot_seller = rng.below(self.config.hot_sellers_ratio) > 0;
        let seller = if hot_seller {
            last_person_base0(n) / HOT_BLOCK * HOT_BLOCK
        } else {
            self.random_person_base0(n, rng)
        };
        let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES);
        let initial_bid = next_price(rng);
        let reserve = initial_bid + next_price(rng);
        // On average an auction lasts until `num_in_flight_auctions` more
        // have opened.
        let horizon_ms = self
            .in_order_time(n.saturating_add(self.auction_horizon_events))
            .millis()
            - self.in_order_time(n).millis();
        let length_ms = 1 + rng.below((horizon_ms.max(0) as u64 * 2).max(1));
        let expires = date_time.add_millis(length_ms as i64);
        let item_name = random_string(rng, 20, ' ');
        let description = random_string(rng, 100, ' ');
        let extra = match self.config.extra {
            ExtraPadding::Empty => String::new(),
            ExtraPadding::ToAverageSize => {
                let size = 8 + item_name.len() + description.len() + 8 * 5;
                extra(rng, size, self.config.avg_auction_bytes)
            }
        };
        Auction {
            id: last_auction_base0(n) + FIRST_AUCTION_ID,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time,
            expires,
            seller: seller + FIRST_PERSON_ID,
            category,
            extra,
        }
    }

    fn bid(&self, n: u64, rng: &mut SplitMix64, date_time: Timestamp) -> Bid {
        let auction = if rng.below(self.config.hot_auction_ratio) > 0 {
            last_auction_base0(n) / HOT_BLOCK * HOT_BLOCK
        } else {
            self.random_auction_base0(n, rng)
        };
        let bidder = if rng.below(self.config.hot_bidders_ratio) > 0 {
            // The second person of the block, so hot bidders are not hot
            // sellers; never a person that does not exist yet.
            let newest = last_person_base0(n);
            (newest / HOT_BLOCK * HOT_BLOCK + 1).min(newest + self.config.id_lead)
        } else {
            self.random_person_base0(n, rng)
        };
        let price = next_price(rng);
        let (channel, url) = if rng.below(HOT_CHANNELS_RATIO) > 0 {
            let i = rng.below(HOT_CHANNELS.len() as u64) as usize;
            (HOT_CHANNELS[i].to_owned(), self.hot_urls[i].clone())
        } else {
            self.channels[rng.below(CHANNELS_NUMBER) as usize].clone()
        };
        let extra = match self.config.extra {
            ExtraPadding::Empty => String::new(),
            ExtraPadding::ToAverageSize => extra(rng, 8 * 4, self.config.avg_bid_bytes),
        };
        Bid {
            auction: auction + FIRST_AUCTION_ID,
            bidder: bidder + FIRST_PERSON_ID,
            price,
            channel,
            url,
            date_time,
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn generator(config: NexmarkConfig) -> NexmarkGenerator {
        NexmarkGenerator::new(config).expect("valid config")
    }

    #[test]
    fn every_fifty_events_are_one_person_three_auctions_and_46_bids() {
        let g = generator(NexmarkConfig::default());
        for block in [0u64, 1, 977] {
            let mut counts = [0; 3];
            for n in block * 50..(block + 1) * 50 {
                let i = match g.event(n) {
                    Event::Person(_) => 0,
                    Event::Auction(_) => 1,
                    Event::Bid(_) => 2,
                };
                counts[i] += 1;
                assert_eq!(EventKind::of(n) as usize, i);
            }
            assert_eq!(counts, [1, 3, 46], "block {block}");
        }
    }

    #[test]
    fn an_event_is_a_pure_function_of_config_and_event_number() {
        let a = generator(NexmarkConfig::default());
        let b = generator(NexmarkConfig::default());
        let forwards: Vec<Event> = (0..500).map(|n| a.event(n)).collect();
        let backwards: Vec<Event> = (0..500).rev().map(|n| b.event(n)).collect();
        assert!(forwards.iter().eq(backwards.iter().rev()));
        let other = generator(NexmarkConfig {
            seed: 1,
            ..NexmarkConfig::default()
        });
        assert_ne!(a.event(10), other.event(10));
        assert_eq!(a.timestamp(123), a.event(123).date_time());
    }

    #[test]
    fn timestamps_are_at_most_max_disorder_before_their_in_order_time() {
        let g = generator(NexmarkConfig::default());
        let base = g.config().base_time;
        assert_eq!(g.in_order_time(10_000), base + Duration::from_secs(1));
        let mut disordered = 0;
        for n in 0..100_000 {
            let ts = g.event(n).date_time();
            let in_order = g.in_order_time(n);
            assert!(
                ts <= in_order && ts >= in_order - Duration::from_secs(1),
                "{n}"
            );
            disordered += u32::from(ts < in_order);
        }
        assert!(disordered > 90_000, "{disordered}");
    }

    #[test]
    fn a_bounded_out_of_orderness_watermark_of_max_disorder_sees_no_late_event() {
        let g = generator(NexmarkConfig {
            max_disorder: Duration::from_millis(300),
            ..NexmarkConfig::default()
        });
        // Four splits, each emitting its event numbers in order.
        for split in 0..4u64 {
            let mut max_ts = Timestamp::MIN;
            for n in (split..40_000).step_by(4) {
                let ts = g.timestamp(n);
                if max_ts > Timestamp::MIN {
                    let watermark = (max_ts - Duration::from_millis(300)).add_millis(-1);
                    assert!(ts > watermark, "event {n} is late");
                }
                max_ts = max_ts.max(ts);
            }
        }
    }

    #[test]
    fn zero_disorder_gives_timestamps_in_order() {
        let g = generator(NexmarkConfig {
            max_disorder: Duration::ZERO,
            ..NexmarkConfig::default()
        });
        assert!((0..10_000).all(|n| g.timestamp(n) == g.in_order_time(n)));
    }

    #[test]
    fn ids_are_dense_and_references_point_at_existing_persons_and_auctions() {
        let g = generator(NexmarkConfig::default());
        let (mut next_person, mut next_auction) = (FIRST_PERSON_ID, FIRST_AUCTION_ID);
        for n in 0..200_000 {
            match g.event(n) {
                Event::Person(p) => {
                    assert_eq!(p.id, next_person);
                    next_person += 1;
                }
                Event::Auction(a) => {
                    assert_eq!(a.id, next_auction);
                    next_auction += 1;
                    assert!(
                        (FIRST_PERSON_ID..next_person).contains(&a.seller),
                        "{n}: {a:?}"
                    );
                }
                Event::Bid(b) => {
                    assert!(
                        (FIRST_AUCTION_ID..next_auction).contains(&b.auction),
                        "{n}: {b:?}"
                    );
                    assert!(
                        (FIRST_PERSON_ID..next_person).contains(&b.bidder),
                        "{n}: {b:?}"
                    );
                }
            }
            assert_eq!(NexmarkGenerator::last_person_id(n), next_person - 1);
            if next_auction > FIRST_AUCTION_ID {
                assert_eq!(NexmarkGenerator::last_auction_id(n), Some(next_auction - 1));
            }
        }
    }

    #[test]
    fn most_bids_go_to_the_hot_auction_and_hot_bidder() {
        let g = generator(NexmarkConfig::default());
        let (mut bids, mut hot_auction, mut hot_bidder) = (0, 0, 0);
        for n in 0..100_000 {
            if let Event::Bid(b) = g.event(n) {
                bids += 1;
                let newest_auction = last_auction_base0(n);
                hot_auction += u32::from(
                    b.auction == newest_auction / HOT_BLOCK * HOT_BLOCK + FIRST_AUCTION_ID,
                );
                let newest_person = last_person_base0(n);
                let hot = (newest_person / HOT_BLOCK * HOT_BLOCK + 1).min(newest_person);
                hot_bidder += u32::from(b.bidder == hot + FIRST_PERSON_ID);
            }
        }
        // Ratios 2 and 4: about 1/2 and 3/4 of bids are hot.
        let share = |k: u32| f64::from(k) / f64::from(bids);
        assert!(
            (0.48..0.53).contains(&share(hot_auction)),
            "{}",
            share(hot_auction)
        );
        assert!(
            (0.73..0.78).contains(&share(hot_bidder)),
            "{}",
            share(hot_bidder)
        );
    }

    #[test]
    fn field_values_stay_in_their_documented_ranges() {
        let g = generator(NexmarkConfig::default());
        let mut channels = std::collections::HashSet::new();
        for n in 0..50_000 {
            match g.event(n) {
                Event::Person(p) => {
                    assert_eq!(p.credit_card.len(), 19);
                    assert!(p.email_address.ends_with(".com"));
                    assert!(US_STATES.contains(&p.state.as_str()));
                    assert!(p.extra.is_empty());
                }
                Event::Auction(a) => {
                    assert!((10..15).contains(&a.category));
                    assert!(a.reserve >= a.initial_bid);
                    assert!(a.expires > a.date_time);
                    assert!((100..=100_000_000).contains(&a.initial_bid));
                }
                Event::Bid(b) => {
                    assert!((100..=100_000_000).contains(&b.price));
                    assert!(b.url.starts_with("https://www.nexmark.com/"));
                    channels.insert(b.channel);
                }
            }
        }
        assert!(HOT_CHANNELS.iter().all(|c| channels.contains(*c)));
        assert!(channels.len() > 1_000);
    }

    #[test]
    fn padding_makes_events_average_the_configured_sizes() {
        let g = generator(NexmarkConfig {
            extra: ExtraPadding::ToAverageSize,
            ..NexmarkConfig::default()
        });
        let (mut bytes, mut bids) = (0, 0);
        for n in 0..5_000 {
            if let Event::Bid(b) = g.event(n) {
                bytes += 32 + b.extra.len();
                bids += 1;
            }
        }
        assert!((95..=105).contains(&(bytes / bids)), "{}", bytes / bids);
    }

    #[test]
    fn an_id_lead_lets_references_point_at_future_ids_as_in_the_reference() {
        let g = generator(NexmarkConfig {
            id_lead: 10,
            ..NexmarkConfig::default()
        });
        let ahead = (0..100_000u64).any(|n| match g.event(n) {
            Event::Bid(b) => Some(b.auction) > NexmarkGenerator::last_auction_id(n),
            _ => false,
        });
        assert!(ahead);
    }
}
