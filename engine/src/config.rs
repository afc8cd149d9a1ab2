//! Job configuration: typed, with documented defaults, parsed once at the
//! edge (command line or code) and validated before anything runs.

use std::time::Duration;

use crate::error::EngineError;
use crate::keygroup::MAX_MAX_PARALLELISM;

/// Settings of a job. Build with [`EnvConfig::default`] and the `with_`
/// methods, or from the command line with [`EnvArgs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvConfig {
    /// Default parallelism of operators (default: number of CPU cores).
    pub parallelism: usize,
    /// Default number of key groups (default 128).
    pub max_parallelism: usize,
    /// Longest time a partly filled output batch waits before it is sent
    /// (default 5 ms; 0 sends after every input batch).
    pub buffer_timeout: Duration,
    /// Records per batch between tasks (default 1024).
    pub batch_size: usize,
    /// Batches a channel holds before the sender blocks (default 8).
    pub channel_capacity: usize,
    /// Interval of periodic watermark emission (default 200 ms).
    pub watermark_interval: Duration,
    /// Whether operators are chained into tasks (default true).
    pub chaining: bool,
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig {
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            max_parallelism: 128,
            buffer_timeout: Duration::from_millis(5),
            batch_size: 1024,
            channel_capacity: 8,
            watermark_interval: Duration::from_millis(200),
            chaining: true,
        }
    }
}

impl EnvConfig {
    /// Sets the default parallelism.
    pub fn with_parallelism(mut self, p: usize) -> Self {
        self.parallelism = p;
        self
    }

    /// Sets the default max parallelism (number of key groups).
    pub fn with_max_parallelism(mut self, p: usize) -> Self {
        self.max_parallelism = p;
        self
    }

    /// Sets the buffer timeout.
    pub fn with_buffer_timeout(mut self, d: Duration) -> Self {
        self.buffer_timeout = d;
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Sets the channel capacity in batches.
    pub fn with_channel_capacity(mut self, n: usize) -> Self {
        self.channel_capacity = n;
        self
    }

    /// Sets the periodic watermark interval.
    pub fn with_watermark_interval(mut self, d: Duration) -> Self {
        self.watermark_interval = d;
        self
    }

    /// Turns operator chaining off (every operator its own task).
    pub fn without_chaining(mut self) -> Self {
        self.chaining = false;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`EngineError::Config`] naming the option, the value and the valid range.
    pub fn validate(&self) -> Result<(), EngineError> {
        if !(1..=MAX_MAX_PARALLELISM).contains(&self.max_parallelism) {
            return Err(EngineError::config(
                "--max-parallelism",
                self.max_parallelism,
                format!("must be between 1 and {MAX_MAX_PARALLELISM}"),
            ));
        }
        if !(1..=self.max_parallelism).contains(&self.parallelism) {
            return Err(EngineError::config(
                "--parallelism",
                self.parallelism,
                format!(
                    "must be between 1 and the max parallelism ({}); raise --max-parallelism for more",
                    self.max_parallelism
                ),
            ));
        }
        if !(1..=1 << 20).contains(&self.batch_size) {
            return Err(EngineError::config(
                "--batch-size",
                self.batch_size,
                "must be between 1 and 1048576",
            ));
        }
        if self.channel_capacity == 0 {
            return Err(EngineError::config(
                "--channel-capacity",
                self.channel_capacity,
                "must be at least 1 batch",
            ));
        }
        if self.watermark_interval.is_zero() {
            return Err(EngineError::config(
                "--watermark-interval",
                "0s",
                "must be positive, e.g. 200ms",
            ));
        }
        Ok(())
    }
}

/// Parses a duration such as `5ms`, `1s` or `2min`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write a number and a unit, e.g. 5ms, 1s, 2min"))
}

/// The standard command-line flags of every job binary. Flatten it into a
/// job's own clap parser, or use `Env::from_args()` when the job has no
/// flags of its own.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EnvArgs {
    /// Default parallelism of operators [default: number of cores].
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    /// Number of key groups: the upper bound for rescaling [default: 128].
    #[arg(long, value_name = "N")]
    pub max_parallelism: Option<usize>,
    /// Longest wait before a partly filled batch is sent, e.g. 5ms [default: 5ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub buffer_timeout: Option<Duration>,
    /// Records per batch between tasks [default: 1024].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Batches per channel before the sender blocks [default: 8].
    #[arg(long, value_name = "N")]
    pub channel_capacity: Option<usize>,
    /// Interval of periodic watermarks, e.g. 200ms [default: 200ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub watermark_interval: Option<Duration>,
    /// Run every operator in its own task.
    #[arg(long)]
    pub disable_chaining: bool,
}

impl EnvArgs {
    /// The configuration these flags describe, validated.
    ///
    /// # Errors
    /// [`EngineError::Config`] for an out-of-range value.
    pub fn to_config(&self) -> Result<EnvConfig, EngineError> {
        let d = EnvConfig::default();
        let config = EnvConfig {
            parallelism: self.parallelism.unwrap_or(d.parallelism),
            max_parallelism: self.max_parallelism.unwrap_or(d.max_parallelism),
            buffer_timeout: self.buffer_timeout.unwrap_or(d.buffer_timeout),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            channel_capacity: self.channel_capacity.unwrap_or(d.channel_capacity),
            watermark_interval: self.watermark_interval.unwrap_or(d.watermark_interval),
            chaining: !self.disable_chaining,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_parallelism_is_rejected_with_the_flag_and_range() {
        let err = EnvConfig::default()
            .with_parallelism(0)
            .validate()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--parallelism = '0'"), "{text}");
        assert!(text.contains("between 1 and"), "{text}");
    }

    #[test]
    fn parallelism_above_max_parallelism_is_rejected() {
        let err = EnvConfig::default()
            .with_max_parallelism(4)
            .with_parallelism(8)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("raise --max-parallelism"));
    }

    #[test]
    fn durations_parse_with_units_and_bad_ones_say_how() {
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5").unwrap_err().contains("e.g. 5ms"));
    }
}
