//! Helpers shared by the facade's integration tests.

use std::path::Path;
use std::time::Duration;

use eddy::prelude::*;

/// A job that checkpoints every 30 ms into `checkpoints` and restarts from
/// its latest checkpoint after a failure, up to 10 times at once.
pub fn restarting_config(parallelism: usize, checkpoints: &Path) -> EnvConfig {
    EnvConfig::default()
        .with_parallelism(parallelism)
        .with_checkpoint_interval(Duration::from_millis(30))
        .with_checkpoint_dir(checkpoints)
        .with_restart_strategy(RestartStrategy::FixedDelay {
            attempts: 10,
            delay: Duration::ZERO,
        })
}
