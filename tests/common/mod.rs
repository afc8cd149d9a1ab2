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

    /// Stops the server's process (SIGSTOP) for `outage`, then lets it go
    /// on (SIGCONT): it holds its connections and answers nothing meanwhile.
    pub fn freeze_for(&self, outage: Duration) {
        let name = self.script.trim_end_matches(".sh");
        let pid =
            std::fs::read_to_string(self.dir().join(format!("{name}.pid"))).expect("pid file");
        let signal = |sig: &str| {
            let status = std::process::Command::new("kill")
                .args([sig, pid.trim()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {sig} {name}");
        };
        signal("-STOP");
        std::thread::sleep(outage);
        signal("-CONT");
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

/// Keys of [`counted_windows`].
pub const KEYS: u64 = 11;
/// Window size of [`counted_windows`], ms.
pub const WINDOW_MS: i64 = 100;

/// Numbers `0..events` (event time = the number, 30 k/s, 4 splits), a map
/// that panics once when the records seen over all runs reach each count in
/// `failures`, and per-key (`n % KEYS`) tumbling counts of `WINDOW_MS`.
pub fn counted_windows(
    env: &Env,
    events: u64,
    failures: Vec<u64>,
) -> DataStream<(u64, TimeWindow, u64)> {
    use eddy::connectors::datagen::{DataGen, SplitMix64};
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    env.source(
        DataGen::new(|i, _: &mut SplitMix64| i)
            .with_count(events)
            .with_splits(4)
            .with_rate(30_000.0),
    )
    .uid("numbers")
    .assign_timestamps(
        WatermarkStrategy::monotonous().with_timestamp(|v: &u64| Timestamp(*v as i64)),
    )
    .map(move |v| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if failures.contains(&n) {
            panic!("injected failure at record {n}");
        }
        v
    })
    .uid("faults")
    .key_by(|v| v % KEYS)
    .window(TumblingEventTime::of(Duration::from_millis(
        WINDOW_MS as u64,
    )))
    .aggregate(Count)
    .uid("windows")
}

/// What [`counted_windows`] must produce: per key and window start, the
/// count.
pub fn expected_windows(events: u64) -> std::collections::BTreeMap<(u64, i64), u64> {
    let mut counts = std::collections::BTreeMap::new();
    for v in 0..events {
        *counts
            .entry((v % KEYS, v as i64 / WINDOW_MS * WINDOW_MS))
            .or_default() += 1;
    }
    counts
}

/// Runs the test `child` of this test binary in a new process with the
/// environment `env`, kills it with SIGKILL at random points (200–700 ms in)
/// `kills` times, and lets the last run finish; returns how many times it
/// was killed. The child's input should take it over a second, so kills
/// land mid-run; each child resumes from its latest checkpoint.
pub fn run_killed(child: &str, env: &[(&str, String)], kills: u32, seed: u64) -> u32 {
    let mut rng = eddy::connectors::datagen::SplitMix64::new(seed);
    let mut killed = 0;
    loop {
        let mut process = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", child, "--test-threads=1"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if killed < kills {
            std::thread::sleep(Duration::from_millis(200 + rng.below(500)));
            if process.try_wait().unwrap().is_none() {
                process.kill().unwrap();
                process.wait().unwrap();
                killed += 1;
                continue;
            }
        }
        assert!(process.wait().unwrap().success(), "the last run completes");
        break;
    }
    assert!(killed > 0, "the job was killed at least once");
    killed
}

/// A two-phase-commit sink whose first `failures` commits fail as if the
/// process had died after the checkpoint completed and before the commit
/// reached the server: the job fails, restarts from that checkpoint, and
/// must commit it then.
pub struct FailingCommits<S> {
    /// The real sink.
    pub sink: S,
    /// How many commits are still to fail.
    pub failures: std::sync::atomic::AtomicU32,
}

impl<S: TwoPhaseCommitSink> TwoPhaseCommitSink for FailingCommits<S> {
    type In = S::In;
    type Committable = S::Committable;
    type Writer = S::Writer;

    fn create_writer(
        &self,
        ctx: &RuntimeContext,
    ) -> Result<S::Writer, eddy::engine::error::BoxError> {
        self.sink.create_writer(ctx)
    }

    fn commit(&self, committable: &S::Committable) -> Result<(), eddy::engine::error::BoxError> {
        use std::sync::atomic::Ordering;
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err("injected: the process died before this commit".into());
        }
        self.sink.commit(committable)
    }
}

/// [`counted_windows`] of `events` at parallelism 1, shaped by `rows`, into
/// `sink` wrapped in [`FailingCommits`] whose first seven commits fail (all
/// the retries of the first commit, as if the process died after the
/// checkpoint completed): the job fails, and its restart must commit the
/// restored checkpoint. Returns the job's statistics.
pub fn windows_with_a_lost_commit<S: TwoPhaseCommitSink>(
    sink: S,
    events: u64,
    rows: impl FnOnce(DataStream<(u64, TimeWindow, u64)>) -> DataStream<S::In>,
) -> JobStats {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = Env::with_config(restarting_config(1, &dir.path().join("chk"))).expect("env");
    let sink = FailingCommits {
        sink,
        failures: std::sync::atomic::AtomicU32::new(7),
    };
    rows(counted_windows(&env, events, Vec::new()))
        .sink(ExactlyOnce::new(sink))
        .uid("sink");
    let stats = env.execute("lost-commit").expect("the job ends");
    assert!(stats.restarts >= 1, "the failed commit failed the job");
    stats
}

/// [`restarting_config`] with checkpoints in `dir/chk`, resuming from the
/// job's newest checkpoint there if there is one (`run --resume`): how a
/// killed job's next process resumes.
pub fn resuming_config(parallelism: usize, dir: &Path) -> EnvConfig {
    restarting_config(parallelism, &dir.join("chk")).with_resume()
}

/// Asserts that the exactly-once sink `uid` of `job`, run with
/// [`resuming_config`] in `dir`, staged files (its checkpoints outgrew its
/// memory bound) and that none is left: every staged checkpoint was
/// committed, and those of checkpoints that never completed were deleted.
pub fn assert_staging_drained(dir: &Path, job: &str, uid: &str) {
    let staging = dir.join("chk").join(job).join("staging").join(uid);
    let left: Vec<_> = std::fs::read_dir(&staging)
        .unwrap_or_else(|e| panic!("{} was never made: {e}", staging.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "staged files left behind: {left:?}");
}

/// Reads `topic` from its start until `enough` says so (or a minute has
/// passed), then a little longer for late duplicates. Tansu's end offsets
/// are not reliable, so a bounded read cannot be used.
pub fn read_back<T: Data + Sync + serde::de::DeserializeOwned>(
    addr: &str,
    topic: &str,
    enough: impl Fn(&[T]) -> bool + Sync,
) -> Vec<T> {
    let source = eddy::connectors::kafka::KafkaSource::<T>::builder(addr)
        .topics([topic])
        .discovery_interval(Duration::ZERO)
        .build()
        .unwrap();
    let chk = tempfile::tempdir().unwrap();
    let env = Env::with_config(EnvConfig::default().with_checkpoint_dir(chk.path())).unwrap();
    let (sink, got) = CollectSink::new();
    env.source(source).sink(sink);
    let control = env.control();
    let sp = tempfile::tempdir().unwrap();
    let mut back: Vec<T> = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut back: Vec<T> = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !enough(&back) && std::time::Instant::now() < deadline {
                back.extend(got.values());
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(300));
            control.stop_with_savepoint(sp.path()).expect("stopped");
            back
        });
        env.execute("kafka-read-back").unwrap();
        watcher.join().unwrap()
    });
    back.extend(got.values());
    back
}

/// Runs the job `build` makes with `config` as `job` on a thread of its
/// own (an `Env` stays on the thread that built it); returns that thread
/// and the job's control handle.
pub fn spawn_job(
    config: EnvConfig,
    job: &'static str,
    build: fn(&Env),
) -> (
    std::thread::JoinHandle<JobStats>,
    eddy::engine::dsl::JobControl,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let env = Env::with_config(config).unwrap();
        build(&env);
        tx.send(env.control()).unwrap();
        env.execute(job).unwrap()
    });
    (thread, rx.recv().unwrap())
}

/// Waits until `addr` tells where a job's HTTP endpoint listens.
pub fn wait_for_addr(addr: impl Fn() -> Option<std::net::SocketAddr>) -> std::net::SocketAddr {
    loop {
        if let Some(a) = addr() {
            return a;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One scrape: every sample's value by name and labels.
pub type Samples = Vec<(String, std::collections::BTreeMap<String, String>, f64)>;

/// Scrapes `/metrics` at `addr` (with `token`) and parses the exposition.
pub fn scrape(addr: std::net::SocketAddr, token: Option<&str>) -> Result<Samples, String> {
    let mut request = ureq::get(format!("http://{addr}/metrics"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    Ok(parsed
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            let labels: std::collections::BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (s.metric, labels, value)
        })
        .collect())
}

/// `method` (GET or POST, no body) on the REST API at `addr`: the status
/// and the JSON answer (`Null` when the API does not answer).
pub fn rest(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{addr}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let response = match method {
        "POST" => agent.post(&url).send_empty(),
        _ => agent.get(&url).call(),
    };
    let Ok(mut response) = response else {
        return (0, serde_json::Value::Null);
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// Polls `check` every 50 ms until it holds; fails naming `what` after
/// `within`.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum over subtasks of `name` where label `key` is `value`.
pub fn total(samples: &Samples, name: &str, key: &str, value: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && l.get(key).map(String::as_str) == Some(value))
        .map(|(_, _, v)| v)
        .sum()
}

/// The processes of a cluster on loopback — a coordinator and workers, each
/// the test binary running the child test `child` — killed when dropped
/// (also when the test fails). Each child reads `EDDY_CLUSTER_ROLE`
/// (`coordinator` or `worker`), `EDDY_CLUSTER_DIR`, `EDDY_CLUSTER_CONTROL`
/// (the coordinator's address), `EDDY_CLUSTER_WORKERS`, `EDDY_CLUSTER_SLOTS`
/// (a worker's slots, default 4) and the test's own variables, and logs to `<dir>/<role>-<n>.log`.
pub struct ClusterProcesses {
    pub dir: std::path::PathBuf,
    child: &'static str,
    /// The children's `EDDY_CLUSTER_*` variables.
    pub vars: Vec<(&'static str, String)>,
    pub coordinator: std::process::Child,
    pub workers: Vec<std::process::Child>,
}

impl ClusterProcesses {
    /// A coordinator waiting for `workers` workers, and those workers
    /// (4 slots each).
    pub fn start(
        child: &'static str,
        dir: &Path,
        workers: usize,
        extra: Vec<(&'static str, String)>,
    ) -> Self {
        Self::start_with_slots(child, dir, &vec![4; workers], extra)
    }

    /// A coordinator waiting for as many workers as `slots` has, and
    /// those workers, worker `i` with `slots[i]` slots.
    pub fn start_with_slots(
        child: &'static str,
        dir: &Path,
        slots: &[usize],
        extra: Vec<(&'static str, String)>,
    ) -> Self {
        let workers = slots.len();
        let control = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut vars = vec![
            ("EDDY_CLUSTER_DIR", dir.display().to_string()),
            ("EDDY_CLUSTER_CONTROL", control.to_string()),
            ("EDDY_CLUSTER_WORKERS", workers.to_string()),
        ];
        vars.extend(extra);
        let coordinator = spawn_child(child, dir, &vars, "coordinator");
        let mut cluster = ClusterProcesses {
            dir: dir.to_owned(),
            child,
            vars,
            coordinator,
            workers: Vec::new(),
        };
        for &n in slots {
            cluster.add_worker_with_slots(n);
        }
        cluster
    }

    /// One more process of this cluster, with `vars`, as `role`.
    pub fn spawn(&self, vars: &[(&'static str, String)], role: &str) -> std::process::Child {
        spawn_child(self.child, &self.dir, vars, role)
    }

    /// Starts one more worker (4 slots).
    pub fn add_worker(&mut self) {
        self.add_worker_with_slots(4);
    }

    /// Starts one more worker with `slots` slots.
    pub fn add_worker_with_slots(&mut self, slots: usize) {
        let mut vars = self.vars.clone();
        vars.push(("EDDY_CLUSTER_SLOTS", slots.to_string()));
        let worker = self.spawn(&vars, "worker");
        self.workers.push(worker);
    }

    /// Waits for the coordinator (the job) to end; true when it succeeded.
    pub fn wait(&mut self) -> bool {
        self.coordinator.wait().unwrap().success()
    }

    /// Lets the job run for `time`; it must still be running then.
    pub fn run_for(&mut self, time: Duration) {
        std::thread::sleep(time);
        assert!(
            self.coordinator.try_wait().unwrap().is_none(),
            "the job still runs after {time:?}"
        );
    }

    /// A figure the coordinator wrote into `<dir>/<name>` when the job ended.
    pub fn reported(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn spawn_child(
    child: &str,
    dir: &Path,
    vars: &[(&'static str, String)],
    role: &str,
) -> std::process::Child {
    let log = (0..)
        .map(|n| dir.join(format!("{role}-{n}.log")))
        .find(|p| !p.exists())
        .unwrap();
    let log = std::fs::File::create(log).unwrap();
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--test-threads=1"])
        .env("EDDY_CLUSTER_ROLE", role)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        // The harness prints a failing child's error on standard output.
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for ClusterProcesses {
    fn drop(&mut self) {
        for child in self.workers.iter_mut().chain([&mut self.coordinator]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGSTOPs `process`: it keeps its sockets open but says nothing, as
/// behind a network cut (a SIGKILL still ends it).
pub fn freeze(process: &std::process::Child) {
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &process.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
}

/// This process's part in the cluster of a [`ClusterProcesses`] child.
pub fn cluster_role() -> Option<eddy::engine::config::ClusterRole> {
    use eddy::engine::config::{ClusterRole, ClusterSettings, WorkerSettings};
    let role = std::env::var("EDDY_CLUSTER_ROLE").ok()?;
    let control = std::env::var("EDDY_CLUSTER_CONTROL")
        .unwrap()
        .parse()
        .unwrap();
    Some(match role.as_str() {
        "coordinator" => ClusterRole::Coordinator(ClusterSettings {
            bind: control,
            workers: std::env::var("EDDY_CLUSTER_WORKERS")
                .unwrap()
                .parse()
                .unwrap(),
            heartbeat_timeout: Duration::from_secs(5),
            slot_timeout: Duration::from_secs(60),
        }),
        _ => ClusterRole::Worker(WorkerSettings {
            coordinator: control,
            data: "127.0.0.1:0".parse().unwrap(),
            slots: std::env::var("EDDY_CLUSTER_SLOTS").map_or(4, |n| n.parse().unwrap()),
        }),
    })
}
