//! Job configuration: typed, with documented defaults, parsed once at the
//! edge (command line or code) and validated before anything runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::checkpoint::{CheckpointConfig, CheckpointingMode, RestartStrategy};
use crate::error::EngineError;
use crate::keygroup::MAX_MAX_PARALLELISM;

/// How many records a source subtask reads before
/// [`EnvConfig::max_dead_letter_ratio`] is checked.
pub const DEAD_LETTER_SAMPLE: u64 = 100;

/// Settings of a job. Build with [`EnvConfig::default`] and the `with_`
/// methods, or from the command line with [`EnvArgs`].
#[derive(Clone, Debug, PartialEq)]
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
    /// Fail the job when more than this share of a source subtask's
    /// records are undecodable (dead letters), checked once it has read
    /// [`DEAD_LETTER_SAMPLE`] (default: never).
    pub max_dead_letter_ratio: Option<f64>,
    /// Where keyed state lives (default: the heap).
    pub state_backend: StateBackendKind,
    /// Working directory of disk-based state backends (default
    /// `<temp dir>/eddy-state`); scratch space, not durable.
    pub state_dir: PathBuf,
    /// Checkpoints, restarts and restore.
    pub checkpoints: CheckpointConfig,
    /// Instead of running the job: ask the running instance for a savepoint.
    pub control: Option<ControlAction>,
    /// The REST API (`http://HOST:PORT`) that [`Self::control`] talks to;
    /// `None`: request files in the checkpoint directory (the fallback).
    pub rest: Option<String>,
    /// Print control answers as the REST API's JSON.
    pub json: bool,
    /// How often sources emit latency markers, whose source-to-sink time
    /// sinks export as a histogram (default: never; Flink's
    /// `metrics.latency.interval`).
    pub latency_tracking_interval: Option<Duration>,
    /// Where the job serves its live metrics (`GET /metrics`), if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the job serves its web view (`GET /`), if anywhere.
    pub web_addr: Option<std::net::SocketAddr>,
    /// The bearer token the job's HTTP endpoint requires, if any.
    pub http_token: Option<Secret>,
    /// Serve the HTTP endpoint over TLS with this certificate and key
    /// (default: `None`, plain HTTP).
    pub http_tls: Option<TlsFiles>,
    /// A PEM file of the CA certificates the commands trust for an
    /// `https://` [`Self::rest`] URL, instead of the public roots.
    pub rest_ca: Option<PathBuf>,
    /// Log to standard error in this format when the job runs (set by the
    /// command line; `None`: leave logging to the program).
    pub log_format: Option<crate::logging::LogFormat>,
    /// Draw a progress line while the job runs, when standard output and
    /// error are terminals (set by the command line unless `--quiet`).
    pub progress: bool,
    /// Run the job as if on this many workers, in this process: subtask
    /// `s` of every vertex on worker `s mod N`, and every channel between
    /// two workers over loopback TCP with credit-based flow control — the
    /// network path of the cluster, for testing and measuring it (default:
    /// `None`, every channel local).
    pub loopback_workers: Option<usize>,
    /// This process's part in a cluster (default: `None`, the local
    /// runtime runs the whole job).
    pub cluster: Option<ClusterRole>,
}

/// A process's part in a cluster that runs one job (application mode:
/// every process runs the same job binary with the same job flags).
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterRole {
    /// Coordinate the job: deploy it to the workers, coordinate its
    /// checkpoints, restart it when a worker is lost.
    Coordinator(ClusterSettings),
    /// Run the tasks the coordinator deploys here.
    Worker(WorkerSettings),
}

/// How a cluster's coordinator listens and waits for workers.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// The control address workers connect to.
    pub bind: SocketAddr,
    /// Workers to wait for before the first run.
    pub workers: usize,
    /// A worker silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// How long a run may wait for workers to offer the slots the job needs
    /// before it fails (and the restart strategy decides what follows).
    pub slot_timeout: Duration,
}

/// Where a worker finds its coordinator and offers its data port.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSettings {
    /// The coordinator's control address.
    pub coordinator: SocketAddr,
    /// The address other workers send records to (port 0: any free one).
    pub data: SocketAddr,
    /// The subtasks of each vertex this worker runs at most (its slots).
    pub slots: usize,
}

/// The PEM files of a TLS server: its certificate chain and private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A value kept out of logs and debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where keyed state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StateBackendKind {
    /// Typed values in hash maps: fastest; state must fit in memory.
    #[default]
    Heap,
    /// One RocksDB instance per keyed operator subtask: state may exceed
    /// memory (needs Eddy built with the `rocksdb` feature).
    Rocksdb,
}

/// A request to a job that is already running (in another process), sent
/// to its REST API ([`EnvConfig::rest`]) or through its checkpoint
/// directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlAction {
    /// Take a savepoint into this directory (`None`: the job's default,
    /// `<checkpoint dir>/<job>/savepoints/savepoint-<id>`); the job keeps
    /// running.
    Savepoint(Option<PathBuf>),
    /// Take a savepoint into this directory (or the default), then stop
    /// the job.
    StopWithSavepoint(Option<PathBuf>),
    /// Stop the job without a savepoint; it does not restart.
    Cancel,
    /// Tell whether the job runs, and its newest checkpoint.
    Status,
    /// Tell every job under the checkpoint directory, with its status.
    List,
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
            max_dead_letter_ratio: None,
            chaining: true,
            state_backend: StateBackendKind::Heap,
            state_dir: std::env::temp_dir().join("eddy-state"),
            checkpoints: CheckpointConfig::default(),
            control: None,
            rest: None,
            json: false,
            latency_tracking_interval: None,
            metrics_addr: None,
            web_addr: None,
            http_token: None,
            http_tls: None,
            rest_ca: None,
            log_format: None,
            progress: false,
            loopback_workers: None,
            cluster: None,
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

    /// Runs the job over `n` loopback workers (see
    /// [`EnvConfig::loopback_workers`]).
    pub fn with_loopback_workers(mut self, n: usize) -> Self {
        self.loopback_workers = Some(n);
        self
    }

    /// Sets the periodic watermark interval.
    pub fn with_watermark_interval(mut self, d: Duration) -> Self {
        self.watermark_interval = d;
        self
    }

    /// Fails the job when more than `ratio` (0–1) of what a source subtask
    /// reads is undecodable.
    pub fn with_max_dead_letter_ratio(mut self, ratio: f64) -> Self {
        self.max_dead_letter_ratio = Some(ratio);
        self
    }

    /// Takes a checkpoint every `interval` (into [`CheckpointConfig::dir`]).
    pub fn with_checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoints.interval = Some(interval);
        self
    }

    /// Sets the root directory of checkpoint storage.
    pub fn with_checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoints.dir = dir.into();
        self
    }

    /// Sets the restart strategy.
    pub fn with_restart_strategy(mut self, strategy: RestartStrategy) -> Self {
        self.checkpoints.restart = Some(strategy);
        self
    }

    /// Starts the job from a savepoint or checkpoint.
    pub fn with_restore(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoints.restore = Some(path.into());
        self
    }

    /// Starts from the job's newest complete checkpoint in the checkpoint
    /// directory if there is one, from scratch otherwise (`run --resume`).
    pub fn with_resume(mut self) -> Self {
        self.checkpoints.resume = true;
        self
    }

    /// Serves the live metrics at `addr` (`GET /metrics`, Prometheus text
    /// format; port 0: any free port, see
    /// Emits latency markers from the sources every `every` (sinks export
    /// their source-to-sink time).
    pub fn with_latency_tracking_interval(mut self, every: Duration) -> Self {
        self.latency_tracking_interval = Some(every);
        self
    }

    /// [`JobControl::metrics_addr`](crate::dsl::JobControl::metrics_addr)).
    pub fn with_metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Serves the web view at `addr` (`GET /`: the job graph, live rates,
    /// watermarks, checkpoints; port 0: any free port, see
    /// [`JobControl::web_addr`](crate::dsl::JobControl::web_addr)).
    pub fn with_web_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.web_addr = Some(addr);
        self
    }

    /// Requires `Authorization: Bearer <token>` on the job's HTTP endpoint.
    pub fn with_http_token(mut self, token: impl Into<String>) -> Self {
        self.http_token = Some(Secret(token.into()));
        self
    }

    /// Serves the job's HTTP endpoint over TLS with the PEM certificate
    /// chain `cert` and private key `key`.
    pub fn with_http_tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.http_tls = Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Chooses where keyed state lives.
    pub fn with_state_backend(mut self, backend: StateBackendKind) -> Self {
        self.state_backend = backend;
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
        if let Some(ClusterRole::Coordinator(c)) = &self.cluster {
            if !(1..=256).contains(&c.workers) {
                return Err(EngineError::config(
                    "coordinator --workers",
                    c.workers,
                    "must be between 1 and 256 workers",
                ));
            }
            if c.heartbeat_timeout < Duration::from_secs(1) {
                return Err(EngineError::config(
                    "coordinator --heartbeat-timeout",
                    humantime::format_duration(c.heartbeat_timeout),
                    "must be at least 1s (workers beat every 500ms)",
                ));
            }
        }
        if let Some(ClusterRole::Worker(w)) = &self.cluster {
            if !(1..=1024).contains(&w.slots) {
                return Err(EngineError::config(
                    "worker --slots",
                    w.slots,
                    "must be between 1 and 1024 slots",
                ));
            }
        }
        if let Some(n) = self.loopback_workers.filter(|n| !(1..=256).contains(n)) {
            return Err(EngineError::config(
                "--loopback-workers",
                n,
                "must be between 1 and 256 workers",
            ));
        }
        if let Some(r) = self
            .max_dead_letter_ratio
            .filter(|r| !(0.0..=1.0).contains(r))
        {
            return Err(EngineError::config(
                "--max-dead-letter-ratio",
                r,
                "must be between 0 and 1, e.g. 0.01 for one record in a hundred",
            ));
        }
        if self.watermark_interval.is_zero() {
            return Err(EngineError::config(
                "--watermark-interval",
                "0s",
                "must be positive, e.g. 200ms",
            ));
        }
        if self.state_backend == StateBackendKind::Rocksdb && !cfg!(feature = "rocksdb") {
            return Err(EngineError::config(
                "--state-backend",
                "rocksdb",
                "this build has no RocksDB backend; build with `--features rocksdb` (apt libclang-dev needed)",
            ));
        }
        self.checkpoints.validate()
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

/// The standard command line of every job binary: the engine's flags and
/// commands (`run`, `savepoint`, `stop`). Flatten it into a job's own clap
/// parser, or use `Env::from_args()` when the job has no flags of its own.
/// The engine's flags may come before or after the command
/// (`my_job run --restore D --parallelism 2`). A job with subcommands of its
/// own flattens [`EnvFlags`] instead and [`JobCommand`] into its command
/// enum (`#[command(flatten)] Engine(JobCommand)`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EnvArgs {
    /// The engine's flags.
    #[command(flatten)]
    pub flags: EnvFlags,
    /// What to do: run (the default), or talk to a running instance.
    #[command(subcommand)]
    pub action: Option<JobCommand>,
}

/// The engine's flags (global: they may follow the command).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EnvFlags {
    /// Default parallelism of operators [default: number of cores].
    #[arg(long, global = true, value_name = "N")]
    pub parallelism: Option<usize>,
    /// Number of key groups: the upper bound for rescaling [default: 128].
    #[arg(long, global = true, value_name = "N")]
    pub max_parallelism: Option<usize>,
    /// Longest wait before a partly filled batch is sent, e.g. 5ms [default: 5ms].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub buffer_timeout: Option<Duration>,
    /// Records per batch between tasks [default: 1024].
    #[arg(long, global = true, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Batches per channel before the sender blocks [default: 8].
    #[arg(long, global = true, value_name = "N")]
    pub channel_capacity: Option<usize>,
    /// Interval of periodic watermarks, e.g. 200ms [default: 200ms].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub watermark_interval: Option<Duration>,
    /// Run as if on N workers in this process: subtask s on worker s mod N,
    /// channels between workers over loopback TCP (to test and measure the
    /// network path) [default: every channel local].
    #[arg(long, global = true, value_name = "N")]
    pub loopback_workers: Option<usize>,
    /// Fail the job when more than this share (0–1) of what a source
    /// subtask reads is undecodable, e.g. 0.01 [default: never].
    #[arg(long, global = true, value_name = "RATIO")]
    pub max_dead_letter_ratio: Option<f64>,
    /// Run every operator in its own task.
    #[arg(long, global = true)]
    pub disable_chaining: bool,
    /// Where keyed state lives [default: heap].
    #[arg(long, global = true, value_name = "BACKEND")]
    pub state_backend: Option<StateBackendKind>,
    /// Working directory of the RocksDB backend [default: TMPDIR/eddy-state].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Take a checkpoint this often, e.g. 1s [default: no checkpoints].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub checkpoint_interval: Option<Duration>,
    /// Barrier alignment [default: exactly-once].
    #[arg(long, global = true, value_name = "MODE")]
    pub checkpointing_mode: Option<CheckpointingMode>,
    /// Root directory of checkpoints; a job's go to DIR/JOB (the job name)
    /// [default: TMPDIR/eddy-checkpoints].
    #[arg(long, global = true, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Abandon a checkpoint not complete after this long [default: 10min].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub checkpoint_timeout: Option<Duration>,
    /// Checkpoints in flight at once [default: 1].
    #[arg(long, global = true, value_name = "N")]
    pub max_concurrent_checkpoints: Option<usize>,
    /// Complete checkpoints kept [default: 1].
    #[arg(long, global = true, value_name = "N")]
    pub retained_checkpoints: Option<usize>,
    /// What to do when a task fails: none, fixed-delay:attempts=3,delay=1s,
    /// exponential:initial=1s,max=1min,multiplier=1.5[,attempts=N] or
    /// failure-rate:max=3,interval=5min,delay=1s [default: none without
    /// checkpoints, exponential with them].
    #[arg(long, global = true, value_name = "SPEC")]
    pub restart_strategy: Option<RestartStrategy>,
    /// Emit a latency marker from every source subtask this often, e.g.
    /// 200ms; sinks export how long markers took to reach them
    /// (eddy_operator_latency_ms) [default: off].
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub latency_tracking_interval: Option<Duration>,
    /// Serve live metrics in the Prometheus text format at ADDR/metrics,
    /// e.g. 127.0.0.1:9249 [default: off].
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve the web view of the running job at ADDR, e.g.
    /// 127.0.0.1:8081 [default: off].
    #[arg(long, global = true, value_name = "ADDR")]
    pub web_addr: Option<std::net::SocketAddr>,
    /// Require `Authorization: Bearer <token>` on the job's HTTP endpoint
    /// (and send it, for the commands with --rest), the token read from
    /// FILE (or the environment variable EDDY_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve the HTTP endpoint (--web-addr, --metrics-addr) over TLS with
    /// this PEM certificate chain (needs --tls-key).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// For the commands with an https:// --rest URL: trust the CA
    /// certificates in this PEM file (a private CA, a self-signed
    /// certificate) instead of the public roots.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The commands (savepoint, stop, cancel, status, list) ask the job's
    /// REST API at URL, e.g. http://127.0.0.1:8081 (its --web-addr)
    /// [default: request files in --checkpoint-dir].
    #[arg(long, global = true, value_name = "URL")]
    pub rest: Option<String>,
    /// The commands print the REST API's JSON answer.
    #[arg(long, global = true, requires = "rest")]
    pub json: bool,
    /// Log lines on standard error as text or JSON; RUST_LOG filters them
    /// [default: text, RUST_LOG=warn].
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<crate::logging::LogFormat>,
    /// No progress line on the terminal.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// The commands of every job binary.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum JobCommand {
    /// Run the job (what happens without a command).
    Run {
        /// Start from this savepoint, checkpoint, or checkpoint directory
        /// (its newest complete checkpoint).
        #[arg(long, value_name = "DIR")]
        restore: Option<PathBuf>,
        /// Start from the job's newest complete checkpoint in
        /// --checkpoint-dir if there is one, from scratch otherwise (for a
        /// supervisor that restarts a crashed process).
        #[arg(long, conflicts_with = "restore")]
        resume: bool,
        /// Restore even when the savepoint holds state of operators (uids)
        /// the job no longer has; that state is dropped.
        #[arg(long)]
        allow_non_restored_state: bool,
    },
    /// Ask the running job (--rest, or the same --checkpoint-dir) for a
    /// savepoint in DIR.
    Savepoint {
        /// Where to write the savepoint (an empty or new directory)
        /// [default: CHECKPOINT_DIR/JOB/savepoints/savepoint-ID].
        dir: Option<PathBuf>,
    },
    /// Stop the running job (--rest, or the same --checkpoint-dir) with a
    /// savepoint.
    Stop {
        /// Where to write the savepoint (an empty or new directory)
        /// [default: CHECKPOINT_DIR/JOB/savepoints/savepoint-ID].
        #[arg(long, value_name = "DIR")]
        savepoint: Option<PathBuf>,
    },
    /// Cancel the running job (--rest, or the same --checkpoint-dir): it
    /// stops without a savepoint and does not restart.
    Cancel,
    /// Whether the job runs, and its newest checkpoint (with --rest: its
    /// vertices, rates and failures too).
    Status,
    /// Every job under --checkpoint-dir (with --rest: the jobs of that
    /// runtime), with its status.
    List,
    /// Coordinate the job on a cluster: wait for --workers workers with
    /// enough slots, deploy the job to them, and restart it from its latest
    /// checkpoint when one is lost (start every process with the same job
    /// flags).
    Coordinator {
        /// The control address workers connect to.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6123")]
        bind: std::net::SocketAddr,
        /// Workers to wait for before the job starts.
        #[arg(long, value_name = "N")]
        workers: usize,
        /// A worker silent this long is lost, e.g. 10s.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        heartbeat_timeout: Duration,
        /// How long to wait for workers to offer the slots the job needs
        /// (one per subtask of its widest vertex) before the run fails.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
        slot_timeout: Duration,
        /// Start from this savepoint, checkpoint, or checkpoint directory.
        #[arg(long, value_name = "DIR")]
        restore: Option<PathBuf>,
        /// Start from the job's newest complete checkpoint, if any.
        #[arg(long, conflicts_with = "restore")]
        resume: bool,
    },
    /// Run the tasks a coordinator deploys to this process.
    Worker {
        /// The coordinator's control address.
        #[arg(long, value_name = "ADDR")]
        coordinator: std::net::SocketAddr,
        /// Where other workers send this one records (port 0: a free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        data_addr: std::net::SocketAddr,
        /// How many subtasks of each vertex this worker runs at most
        /// [default: the machine's cores].
        #[arg(long, value_name = "N")]
        slots: Option<usize>,
    },
}

impl EnvArgs {
    /// The configuration these flags and this command describe, validated.
    ///
    /// # Errors
    /// [`EngineError::Config`] for an out-of-range value.
    pub fn to_config(&self) -> Result<EnvConfig, EngineError> {
        self.flags.to_config(self.action.as_ref())
    }
}

impl EnvFlags {
    /// The token from `--token-file`, else from `EDDY_TOKEN`.
    fn http_token(&self) -> Result<Option<Secret>, EngineError> {
        let token = match &self.token_file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| EngineError::Config {
                option: "--token-file".into(),
                value: path.display().to_string(),
                reason: format!("cannot read it: {e}"),
            })?,
            None => std::env::var("EDDY_TOKEN").unwrap_or_default(),
        };
        let token = token.trim();
        Ok((!token.is_empty()).then(|| Secret(token.to_owned())))
    }

    /// The configuration these flags and `action` (none: run) describe,
    /// validated.
    ///
    /// # Errors
    /// [`EngineError::Config`] for an out-of-range value.
    pub fn to_config(&self, action: Option<&JobCommand>) -> Result<EnvConfig, EngineError> {
        let d = EnvConfig::default();
        let c = d.checkpoints.clone();
        let mut cluster = None;
        let (restore, resume, allow_non_restored_state, control) = match action.cloned() {
            None => (None, false, false, None),
            Some(JobCommand::Coordinator {
                bind,
                workers,
                heartbeat_timeout,
                slot_timeout,
                restore,
                resume,
            }) => {
                cluster = Some(ClusterRole::Coordinator(ClusterSettings {
                    bind,
                    workers,
                    heartbeat_timeout,
                    slot_timeout,
                }));
                (restore, resume, false, None)
            }
            Some(JobCommand::Worker {
                coordinator,
                data_addr,
                slots,
            }) => {
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                cluster = Some(ClusterRole::Worker(WorkerSettings {
                    coordinator,
                    data: data_addr,
                    slots: slots.unwrap_or(cores),
                }));
                (None, false, false, None)
            }
            Some(JobCommand::Run {
                restore,
                resume,
                allow_non_restored_state,
            }) => (restore, resume, allow_non_restored_state, None),
            Some(JobCommand::Savepoint { dir }) => {
                (None, false, false, Some(ControlAction::Savepoint(dir)))
            }
            Some(JobCommand::Stop { savepoint }) => (
                None,
                false,
                false,
                Some(ControlAction::StopWithSavepoint(savepoint)),
            ),
            Some(JobCommand::Cancel) => (None, false, false, Some(ControlAction::Cancel)),
            Some(JobCommand::Status) => (None, false, false, Some(ControlAction::Status)),
            Some(JobCommand::List) => (None, false, false, Some(ControlAction::List)),
        };
        let checkpoints = CheckpointConfig {
            interval: self.checkpoint_interval.or(c.interval),
            mode: self.checkpointing_mode.unwrap_or(c.mode),
            dir: self.checkpoint_dir.clone().unwrap_or(c.dir),
            timeout: self.checkpoint_timeout.unwrap_or(c.timeout),
            max_concurrent: self.max_concurrent_checkpoints.unwrap_or(c.max_concurrent),
            retained: self.retained_checkpoints.unwrap_or(c.retained),
            restart: self.restart_strategy.clone(),
            restore,
            resume,
            allow_non_restored_state,
        };
        let config = EnvConfig {
            parallelism: self.parallelism.unwrap_or(d.parallelism),
            max_parallelism: self.max_parallelism.unwrap_or(d.max_parallelism),
            buffer_timeout: self.buffer_timeout.unwrap_or(d.buffer_timeout),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            channel_capacity: self.channel_capacity.unwrap_or(d.channel_capacity),
            watermark_interval: self.watermark_interval.unwrap_or(d.watermark_interval),
            chaining: !self.disable_chaining,
            max_dead_letter_ratio: self.max_dead_letter_ratio,
            state_backend: self.state_backend.unwrap_or(d.state_backend),
            state_dir: self.state_dir.clone().unwrap_or(d.state_dir),
            checkpoints,
            control,
            rest: self.rest.clone(),
            json: self.json,
            latency_tracking_interval: self.latency_tracking_interval,
            metrics_addr: self.metrics_addr,
            web_addr: self.web_addr,
            http_token: self.http_token()?,
            http_tls: self
                .tls_cert
                .clone()
                .zip(self.tls_key.clone())
                .map(|(cert, key)| TlsFiles { cert, key }),
            rest_ca: self.tls_ca.clone(),
            log_format: Some(self.log_format.unwrap_or_default()),
            progress: !self.quiet,
            loopback_workers: self.loopback_workers,
            cluster,
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
    fn coordinator_and_worker_commands_set_the_cluster_role_and_bad_values_say_which() {
        use clap::Parser;
        #[derive(Parser)]
        struct Job {
            #[command(flatten)]
            env: EnvArgs,
        }
        let parse = |args: &[&str]| {
            let mut all = vec!["job"];
            all.extend(args);
            Job::try_parse_from(all).unwrap().env.to_config()
        };
        let coordinator = parse(&["coordinator", "--workers", "3", "--resume"]).unwrap();
        let Some(ClusterRole::Coordinator(c)) = &coordinator.cluster else {
            panic!("a coordinator");
        };
        assert_eq!(c.workers, 3);
        assert_eq!(
            c.bind,
            "127.0.0.1:6123".parse().unwrap(),
            "loopback by default"
        );
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(10));
        assert_eq!(c.slot_timeout, Duration::from_secs(300));
        assert!(coordinator.checkpoints.resume);
        let worker = parse(&["worker", "--coordinator", "10.0.0.1:6123"]).unwrap();
        let Some(ClusterRole::Worker(w)) = &worker.cluster else {
            panic!("a worker");
        };
        assert_eq!(w.coordinator, "10.0.0.1:6123".parse().unwrap());
        assert_eq!(w.data.port(), 0, "any free data port by default");
        assert!(w.slots >= 1, "a slot per core by default");
        let slots = parse(&["worker", "--coordinator", "10.0.0.1:6123", "--slots", "3"]).unwrap();
        assert!(matches!(
            slots.cluster,
            Some(ClusterRole::Worker(WorkerSettings { slots: 3, .. }))
        ));
        let no_slots = parse(&["worker", "--coordinator", "10.0.0.1:6123", "--slots", "0"]);
        assert!(no_slots.unwrap_err().to_string().contains("--slots"));
        let none = parse(&["coordinator", "--workers", "0"]).unwrap_err();
        assert!(none.to_string().contains("--workers"), "{none}");
        let short = parse(&[
            "coordinator",
            "--workers",
            "2",
            "--heartbeat-timeout",
            "100ms",
        ])
        .unwrap_err();
        assert!(short.to_string().contains("--heartbeat-timeout"), "{short}");
    }

    #[test]
    fn durations_parse_with_units_and_bad_ones_say_how() {
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5").unwrap_err().contains("e.g. 5ms"));
    }
}
