//! Restart strategies: whether, and after how long, a failed job restarts
//! from its latest complete checkpoint.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::config::parse_duration;

/// What the job does when a task fails.
#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job.
    None,
    /// Restart after `delay`, at most `attempts` times.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart after a delay that starts at `initial` and grows by
    /// `multiplier` per restart up to `max`; at most `attempts` times
    /// (unbounded when `None`).
    ExponentialDelay {
        /// First delay.
        initial: Duration,
        /// Largest delay.
        max: Duration,
        /// Growth factor per restart.
        multiplier: f64,
        /// Restarts allowed.
        attempts: Option<u32>,
    },
    /// Restart after `delay` unless more than `max_failures` failures
    /// happened within `interval`.
    FailureRate {
        /// Failures allowed per interval.
        max_failures: u32,
        /// The measuring window.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl RestartStrategy {
    /// Flink's default when checkpointing is on: exponential delay from 1 s
    /// to 1 min, factor 1.5, no limit on attempts.
    pub fn default_with_checkpoints() -> Self {
        RestartStrategy::ExponentialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 1.5,
            attempts: None,
        }
    }
}

const SYNTAX: &str = "write none, fixed-delay:attempts=3,delay=1s, exponential:initial=1s,max=1min,multiplier=1.5[,attempts=10] or failure-rate:max=3,interval=5min,delay=1s";

impl FromStr for RestartStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, params) = s.split_once(':').unwrap_or((s, ""));
        let mut fields = std::collections::HashMap::new();
        for part in params.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not name=value; {SYNTAX}"))?;
            fields.insert(k.trim(), v.trim());
        }
        let duration = |name: &str, default: Option<Duration>| -> Result<Duration, String> {
            match fields.get(name) {
                Some(v) => parse_duration(v).map_err(|e| format!("{name}: {e}")),
                None => default.ok_or_else(|| format!("missing {name}=; {SYNTAX}")),
            }
        };
        let number = |name: &str| -> Result<Option<u32>, String> {
            fields
                .get(name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("{name}={v} is not a whole number"))
                })
                .transpose()
        };
        let strategy = match kind {
            "none" => RestartStrategy::None,
            "fixed-delay" => RestartStrategy::FixedDelay {
                attempts: number("attempts")?
                    .ok_or_else(|| format!("missing attempts=; {SYNTAX}"))?,
                delay: duration("delay", Some(Duration::from_secs(1)))?,
            },
            "exponential" => RestartStrategy::ExponentialDelay {
                initial: duration("initial", Some(Duration::from_secs(1)))?,
                max: duration("max", Some(Duration::from_secs(60)))?,
                multiplier: match fields.get("multiplier") {
                    Some(v) => v
                        .parse::<f64>()
                        .ok()
                        .filter(|m| *m >= 1.0)
                        .ok_or_else(|| format!("multiplier={v} must be a number >= 1"))?,
                    None => 1.5,
                },
                attempts: number("attempts")?,
            },
            "failure-rate" => RestartStrategy::FailureRate {
                max_failures: number("max")?.ok_or_else(|| format!("missing max=; {SYNTAX}"))?,
                interval: duration("interval", None)?,
                delay: duration("delay", Some(Duration::from_secs(1)))?,
            },
            other => return Err(format!("unknown restart strategy '{other}'; {SYNTAX}")),
        };
        Ok(strategy)
    }
}

/// Applies a strategy to the failures of one job run.
pub(crate) struct RestartPolicy {
    strategy: RestartStrategy,
    restarts: u32,
    recent: VecDeque<Instant>,
}

impl RestartPolicy {
    pub(crate) fn new(strategy: RestartStrategy) -> Self {
        RestartPolicy {
            strategy,
            restarts: 0,
            recent: VecDeque::new(),
        }
    }

    /// Records a failure at `now`; returns how long to wait before the
    /// restart, or `None` when the job must fail.
    pub(crate) fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        let delay = match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                (self.restarts < *attempts).then_some(*delay)
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                attempts,
            } => attempts.is_none_or(|a| self.restarts < a).then(|| {
                let grown = initial.as_secs_f64() * multiplier.powi(self.restarts as i32);
                Duration::from_secs_f64(grown.min(max.as_secs_f64()))
            }),
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                self.recent.push_back(now);
                while self
                    .recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > *interval)
                {
                    self.recent.pop_front();
                }
                (self.recent.len() as u32 <= *max_failures).then_some(*delay)
            }
        };
        self.restarts += u32::from(delay.is_some());
        delay
    }

    /// How many restarts happened so far.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_and_bad_ones_explain_the_syntax() {
        assert_eq!("none".parse(), Ok(RestartStrategy::None));
        assert_eq!(
            "fixed-delay:attempts=3,delay=10ms".parse(),
            Ok(RestartStrategy::FixedDelay {
                attempts: 3,
                delay: Duration::from_millis(10)
            })
        );
        assert!("sometimes"
            .parse::<RestartStrategy>()
            .unwrap_err()
            .contains("fixed-delay:"));
        assert!("fixed-delay:delay=1s"
            .parse::<RestartStrategy>()
            .unwrap_err()
            .contains("missing attempts"));
    }

    #[test]
    fn fixed_delay_stops_after_its_attempts() {
        let mut p = RestartPolicy::new("fixed-delay:attempts=2,delay=5ms".parse().unwrap());
        let now = Instant::now();
        assert_eq!(p.on_failure(now), Some(Duration::from_millis(5)));
        assert_eq!(p.on_failure(now), Some(Duration::from_millis(5)));
        assert_eq!(p.on_failure(now), None);
    }

    #[test]
    fn exponential_delay_grows_to_its_cap() {
        let mut p = RestartPolicy::new(
            "exponential:initial=100ms,max=300ms,multiplier=2,attempts=4"
                .parse()
                .unwrap(),
        );
        let now = Instant::now();
        let delays: Vec<_> = (0..5).map(|_| p.on_failure(now)).collect();
        let ms = |m| Some(Duration::from_millis(m));
        assert_eq!(delays, vec![ms(100), ms(200), ms(300), ms(300), None]);
    }

    #[test]
    fn failure_rate_fails_when_too_many_failures_fall_in_the_interval() {
        let mut p = RestartPolicy::new(
            "failure-rate:max=2,interval=1min,delay=1ms"
                .parse()
                .unwrap(),
        );
        let t0 = Instant::now();
        assert!(p.on_failure(t0).is_some());
        assert!(p.on_failure(t0).is_some());
        assert!(p.on_failure(t0).is_none());
        let mut p = RestartPolicy::new(
            "failure-rate:max=1,interval=10ms,delay=1ms"
                .parse()
                .unwrap(),
        );
        assert!(p.on_failure(t0).is_some());
        assert!(p.on_failure(t0 + Duration::from_millis(50)).is_some());
    }
}
