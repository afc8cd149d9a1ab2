//! Parameters of the Nexmark generator, with the benchmark's defaults.

use std::time::Duration;

use eddy_engine::element::Timestamp;

use crate::error::ConnectorError;

/// Whether events carry padding in their `extra` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExtraPadding {
    /// `extra` is always empty: the cheapest events (default).
    #[default]
    Empty,
    /// `extra` is filled with random letters so that events average the
    /// configured byte sizes, as in the reference generator.
    ToAverageSize,
}

/// Configuration of the Nexmark generator. `NexmarkConfig::default()` gives
/// the defaults documented on each field.
///
/// The proportions of event kinds are fixed by the benchmark: out of every
/// 50 events, 1 person, 3 auctions and 46 bids.
#[derive(Clone, Debug, PartialEq)]
pub struct NexmarkConfig {
    /// Seeds the per-event random generator together with the event number
    /// (default 0).
    pub seed: u64,
    /// Event time of event 0 (default 2015-07-15T00:00:00Z, 1436918400000 ms).
    pub base_time: Timestamp,
    /// Events per second of *event time* (default 10 000: events 0.1 ms
    /// apart). This is not a processing-time rate; see
    /// `NexmarkSource::with_rate` for that.
    pub events_per_second: u64,
    /// How much earlier than its in-order time an event's timestamp may be
    /// (default 1 s). Each event's delay is uniform in `0..=max_disorder`, a
    /// pure function of the event number, and never makes a timestamp go
    /// below `base_time - max_disorder`. A watermark strategy of
    /// `bounded_out_of_orderness(max_disorder)` therefore sees no late events
    /// (each split emits event numbers in increasing order). Zero gives
    /// events in timestamp order. Whole milliseconds are used.
    pub max_disorder: Duration,
    /// Persons a random (non-hot) seller or bidder is drawn from: the most
    /// recent ones (default 1000).
    pub num_active_people: u64,
    /// Auctions a random (non-hot) bid is drawn from: the most recent ones
    /// (default 100). Also sets auction lengths: on average an auction lasts
    /// as long as it takes to open this many more auctions.
    pub num_in_flight_auctions: u64,
    /// One bid in `hot_auction_ratio` is for a random recent auction, the
    /// others for the current hot auction (default 2, as in Flink's Nexmark).
    pub hot_auction_ratio: u64,
    /// One auction in `hot_sellers_ratio` has a random recent seller, the
    /// others the current hot seller (default 4).
    pub hot_sellers_ratio: u64,
    /// One bid in `hot_bidders_ratio` is by a random recent bidder, the others
    /// by the current hot bidder (default 4).
    pub hot_bidders_ratio: u64,
    /// How many ids beyond the newest person or auction a random reference
    /// may point at (default 0: every reference is to an existing person or
    /// auction). The reference generator uses 10, so that some bids refer to
    /// auctions that do not exist yet; set 10 to reproduce that.
    pub id_lead: u64,
    /// Padding of the `extra` fields (default [`ExtraPadding::Empty`]).
    pub extra: ExtraPadding,
    /// Average size in bytes of a person with padding (default 200).
    pub avg_person_bytes: usize,
    /// Average size in bytes of an auction with padding (default 500).
    pub avg_auction_bytes: usize,
    /// Average size in bytes of a bid with padding (default 100).
    pub avg_bid_bytes: usize,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            seed: 0,
            base_time: Timestamp::from_millis(1_436_918_400_000),
            events_per_second: 10_000,
            max_disorder: Duration::from_secs(1),
            num_active_people: 1_000,
            num_in_flight_auctions: 100,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            id_lead: 0,
            extra: ExtraPadding::Empty,
            avg_person_bytes: 200,
            avg_auction_bytes: 500,
            avg_bid_bytes: 100,
        }
    }
}

impl NexmarkConfig {
    /// Checks that every field is in range.
    ///
    /// # Errors
    /// [`ConnectorError::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConnectorError> {
        let positive = [
            ("NexmarkConfig::events_per_second", self.events_per_second),
            ("NexmarkConfig::num_active_people", self.num_active_people),
            ("NexmarkConfig::hot_auction_ratio", self.hot_auction_ratio),
            ("NexmarkConfig::hot_sellers_ratio", self.hot_sellers_ratio),
            ("NexmarkConfig::hot_bidders_ratio", self.hot_bidders_ratio),
        ];
        for (option, value) in positive {
            if value == 0 {
                return Err(ConnectorError::config(option, 0, "must be at least 1"));
            }
        }
        if self.max_disorder > Duration::from_secs(365 * 24 * 3600) {
            return Err(ConnectorError::config(
                "NexmarkConfig::max_disorder",
                format!("{:?}", self.max_disorder),
                "must be at most a year",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_base_time_is_2015_07_15_midnight_utc() {
        // 16 631 days after 1970-01-01.
        assert_eq!(
            NexmarkConfig::default().base_time.millis(),
            16_631 * 86_400_000
        );
    }

    #[test]
    fn the_defaults_are_valid_and_zero_ratios_are_not() {
        assert!(NexmarkConfig::default().validate().is_ok());
        let bad = NexmarkConfig {
            hot_bidders_ratio: 0,
            ..NexmarkConfig::default()
        };
        let msg = bad
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("hot_bidders_ratio"), "{msg}");
    }
}
