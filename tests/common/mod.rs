//! Helpers shared by the facade's integration tests.

// Each test binary uses some of them.
#![allow(dead_code)]

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

/// A test server of our own, run by one of `scripts/services/`: started on
/// a free loopback port, stopped when dropped (also when the test fails).
pub struct Service {
    script: &'static str,
    dir: tempfile::TempDir,
    /// What the script's `start` printed: the server's address or URL.
    pub addr: String,
}

impl Service {
    /// Starts the server of `scripts/services/<script>`.
    pub fn start(script: &'static str) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port().to_string();
        let dir_arg = dir.path().display().to_string();
        let mut service = Service {
            script,
            dir,
            addr: String::new(),
        };
        service.addr = service.run(&["start", &dir_arg, &port]);
        service
    }

    /// Runs the script with `args`; returns what it printed. Fails the test,
    /// with the script's own message, when the script fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("bash")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("scripts/services")
                    .join(self.script),
            )
            .args(args)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{} {args:?} failed (is it installed? `bash scripts/services/{} install`): {}",
            self.script,
            self.script,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The server's working directory (its pid file, logs, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if !self.addr.is_empty() {
            let dir = self.dir.path().display().to_string();
            let _ = std::process::Command::new("bash")
                .arg(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("scripts/services")
                        .join(self.script),
                )
                .args(["stop", &dir])
                .output();
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
