//! The execution environment: holds the configuration and the stream graph
//! being built, explains it and runs it on the local runtime.

use std::cell::RefCell;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, FromArgMatches, Parser};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::checkpoint::coordinator::{job_root, SavepointRequest};
use crate::checkpoint::requests::{request_cancel, request_savepoint, Request};
use crate::checkpoint::status::{self, RunningMarker};
use crate::clock::{Clock, SystemClock};
use crate::collection::CollectionSource;
use crate::config::{ClusterRole, ControlAction, EnvArgs, EnvConfig};
use crate::dsl::stream::DataStream;
use crate::element::Data;
use crate::error::EngineError;
use crate::graph::erased::{SourceNodeImpl, TypedSlot};
use crate::graph::explain::Explain;
use crate::graph::job::{JobDefaults, JobGraph};
use crate::graph::stream::{Chaining, NodeBody, OutputSlot, StreamGraph, StreamNode};
use crate::http::client::RestClient;
use crate::http::{HttpServer, LiveJob};
use crate::metrics::JobMetrics;
use crate::progress::ProgressLine;
use crate::runtime::executor;
use crate::runtime::stats::JobStats;
use crate::runtime::task::TaskSettings;
use crate::source::Source;

/// Builds, explains and runs a job. Cheap to clone; all clones build the
/// same job. Not `Send`: build a job on one thread.
#[derive(Clone)]
pub struct Env {
    inner: Rc<EnvInner>,
}

struct EnvInner {
    config: EnvConfig,
    graph: RefCell<StreamGraph>,
    clock: RefCell<Arc<dyn Clock>>,
    requests: (Sender<Request>, Receiver<Request>),
    running: Arc<AtomicBool>,
    addrs: Arc<Mutex<HttpAddrs>>,
}

/// Where the running job's HTTP endpoints listen: metrics, web view.
type HttpAddrs = (Option<SocketAddr>, Option<SocketAddr>);

impl EnvInner {
    fn set_addrs(&self, addrs: HttpAddrs) {
        if let Ok(mut a) = self.addrs.lock() {
            *a = addrs;
        }
    }
}

/// Asks a job that runs in this process (on another thread) for savepoints,
/// or cancels it. Obtained from [`Env::control`] before `execute`.
#[derive(Clone)]
pub struct JobControl {
    requests: Sender<Request>,
    running: Arc<AtomicBool>,
    addrs: Arc<Mutex<HttpAddrs>>,
}

impl JobControl {
    /// Where the running job serves its metrics (with `--metrics-addr`),
    /// the port resolved when it was 0.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.addrs.lock().ok().and_then(|a| a.0)
    }

    /// Where the running job serves its web view (with `--web-addr`), the
    /// port resolved when it was 0.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.addrs.lock().ok().and_then(|a| a.1)
    }

    /// Whether the job is running (between the start and the end of its
    /// `execute`).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Takes a savepoint into `dir` and waits until it is complete; the job
    /// keeps running.
    ///
    /// # Errors
    /// [`EngineError::Checkpoint`] when the job is not running, is ending,
    /// or the savepoint fails.
    pub fn savepoint(&self, dir: impl Into<PathBuf>) -> Result<PathBuf, EngineError> {
        self.request(dir.into(), false)
    }

    /// Takes a savepoint into `dir`, then stops the job (its `execute`
    /// returns with `stopped_with_savepoint` set).
    ///
    /// # Errors
    /// As [`Self::savepoint`].
    pub fn stop_with_savepoint(&self, dir: impl Into<PathBuf>) -> Result<PathBuf, EngineError> {
        self.request(dir.into(), true)
    }

    /// Cancels the job: it stops without a savepoint and does not restart
    /// (its `execute` fails with [`EngineError::Cancelled`]).
    ///
    /// # Errors
    /// [`EngineError::Checkpoint`] when the job is not running.
    pub fn cancel(&self) -> Result<(), EngineError> {
        let not_running = || EngineError::checkpoint("cancelling", "the job is not running");
        if !self.running.load(Ordering::SeqCst) {
            return Err(not_running());
        }
        self.requests
            .send(Request::Cancel)
            .map_err(|_| not_running())
    }

    fn request(&self, dir: PathBuf, stop: bool) -> Result<PathBuf, EngineError> {
        let context = format!("savepoint into {}", dir.display());
        let not_running = || EngineError::checkpoint(&context, "the job is not running");
        if !self.running.load(Ordering::SeqCst) {
            return Err(not_running());
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = SavepointRequest {
            dir: Some(dir),
            stop,
            reply,
        };
        self.requests
            .send(Request::Savepoint(request))
            .map_err(|_| not_running())?;
        loop {
            match answer.recv_timeout(Duration::from_millis(100)) {
                Ok(result) => {
                    return result.map_err(|reason| EngineError::checkpoint(&context, reason))
                }
                Err(RecvTimeoutError::Disconnected) => return Err(not_running()),
                // The job may have ended without reading the request.
                Err(RecvTimeoutError::Timeout) if !self.running.load(Ordering::SeqCst) => {
                    return Err(not_running())
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// How long a job that stopped with a savepoint asked for through its REST
/// API keeps the API up for the client to read where the savepoint is.
const STOP_ANSWER_WAIT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(about = "An Eddy job")]
struct EnvOnly {
    #[command(flatten)]
    env: EnvArgs,
}

impl Default for Env {
    fn default() -> Self {
        Env::from_valid_config(EnvConfig::default())
    }
}

impl Env {
    /// An environment with the default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// An environment with `config`.
    ///
    /// # Errors
    /// [`EngineError::Config`] when a value is out of range.
    pub fn with_config(config: EnvConfig) -> Result<Self, EngineError> {
        config.validate()?;
        Ok(Self::from_valid_config(config))
    }

    /// An environment configured by the process's command line (the
    /// standard flags of [`EnvArgs`] only; jobs with flags of their own
    /// flatten `EnvArgs` into their parser and call [`Env::with_config`]).
    ///
    /// # Errors
    /// [`EngineError::Cli`] for unknown or malformed flags (and for `--help`,
    /// whose text is the error's message); [`EngineError::Config`] for values
    /// out of range.
    pub fn from_args() -> Result<Self, EngineError> {
        Self::from_arg_list(std::env::args_os())
    }

    /// Runs the `savepoint` / `stop --savepoint` command of the command
    /// line against the running instance of `job_name`, if the command line
    /// has one; `None` otherwise. Call it first in `main`: it reads only the
    /// engine's flags and commands, so the job's own flags (even required
    /// ones) need not be given to control a running job.
    ///
    /// # Errors
    /// When the command cannot be delivered or the savepoint fails.
    pub fn control_command(job_name: &str) -> Result<Option<JobStats>, EngineError> {
        Self::control_command_from(job_name, std::env::args_os())
    }

    /// [`Env::control_command`] with an explicit argument list.
    ///
    /// # Errors
    /// As [`Env::control_command`].
    pub fn control_command_from<I, A>(
        job_name: &str,
        args: I,
    ) -> Result<Option<JobStats>, EngineError>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString> + Clone,
    {
        let command = clap::Command::new("job").ignore_errors(true);
        let parsed = EnvOnly::augment_args(command).try_get_matches_from(args);
        let Ok(matches) = parsed else {
            return Ok(None);
        };
        let Ok(only) = EnvOnly::from_arg_matches(&matches) else {
            return Ok(None);
        };
        let config = only.env.to_config()?;
        if config.control.is_none() {
            return Ok(None);
        }
        Ok(Some(Self::with_config(config)?.execute(job_name)?))
    }

    /// Like [`Env::from_args`] with an explicit argument list (first item is
    /// the program name).
    ///
    /// # Errors
    /// As [`Env::from_args`].
    pub fn from_arg_list<I, A>(args: I) -> Result<Self, EngineError>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString> + Clone,
    {
        let parsed = EnvOnly::try_parse_from(args)?;
        Self::with_config(parsed.env.to_config()?)
    }

    fn from_valid_config(config: EnvConfig) -> Self {
        Env {
            inner: Rc::new(EnvInner {
                config,
                graph: RefCell::new(StreamGraph::default()),
                clock: RefCell::new(Arc::new(SystemClock)),
                requests: crossbeam_channel::unbounded(),
                running: Arc::new(AtomicBool::new(false)),
                addrs: Arc::new(Mutex::new((None, None))),
            }),
        }
    }

    /// A handle to take savepoints of the job while `execute` runs.
    pub fn control(&self) -> JobControl {
        JobControl {
            requests: self.inner.requests.0.clone(),
            running: Arc::clone(&self.inner.running),
            addrs: Arc::clone(&self.inner.addrs),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EnvConfig {
        &self.inner.config
    }

    /// Replaces the processing-time clock (tests drive time with a
    /// [`crate::clock::ManualClock`]).
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.inner.clock.borrow_mut() = clock;
    }

    /// Records a misuse of the DSL found by an extension trait (e.g. an empty
    /// join interval); `execute` and `explain` report it before running.
    pub fn report_invalid(&self, node: &str, reason: impl Into<String>) {
        self.graph().errors.push(EngineError::InvalidJob {
            node: node.to_owned(),
            reason: reason.into(),
        });
    }

    pub(crate) fn graph(&self) -> std::cell::RefMut<'_, StreamGraph> {
        self.inner.graph.borrow_mut()
    }

    /// Adds a source; its parallelism defaults to the job's.
    pub fn source<S: Source>(&self, source: S) -> DataStream<S::Out> {
        let name = short_type_name::<S>();
        let id = self.graph().add(StreamNode {
            name,
            uid: None,
            parallelism: None,
            max_parallelism: None,
            chaining: Chaining::Always,
            keyed: false,
            body: NodeBody::Source(Arc::new(SourceNodeImpl(source))),
            inputs: Vec::new(),
            slots: vec![OutputSlot {
                name: "",
                factory: TypedSlot::<S::Out>::shared(),
            }],
            strategy: None,
        });
        DataStream::of_node(self.clone(), id)
    }

    /// A bounded source over `items`, read in order at parallelism 1.
    pub fn from_collection<T: Data + Sync>(&self, items: Vec<T>) -> DataStream<T> {
        self.source(CollectionSource::new(items))
            .name("Collection")
            .parallelism(1)
    }

    fn job_graph(&self) -> Result<JobGraph, EngineError> {
        let c = &self.inner.config;
        JobGraph::build(
            &self.inner.graph.borrow(),
            JobDefaults {
                parallelism: c.parallelism,
                max_parallelism: c.max_parallelism,
                chaining: c.chaining,
            },
        )
    }

    /// The job graph as text and Graphviz dot.
    ///
    /// # Errors
    /// When the job is not valid (the same errors `execute` would report).
    pub fn explain(&self) -> Result<Explain, EngineError> {
        Ok(Explain::of(&self.job_graph()?))
    }

    /// Runs the job on the local runtime and blocks until it ends (bounded
    /// inputs) or fails.
    ///
    /// # Errors
    /// The first task failure, naming the operator and subtask; an invalid
    /// job is reported before anything runs.
    pub fn execute(&self, job_name: &str) -> Result<JobStats, EngineError> {
        let c = &self.inner.config;
        if let Some(format) = c.log_format {
            crate::logging::init(format);
        }
        if let Some(action) = &c.control {
            return self.send_control(job_name, action);
        }
        let job = self.job_graph()?;
        let mut checkpoints = c.checkpoints.clone();
        if checkpoints.resume && checkpoints.restore.is_none() {
            checkpoints.restore = crate::checkpoint::latest_checkpoint(&checkpoints.dir, job_name);
            match &checkpoints.restore {
                Some(latest) => {
                    tracing::info!(job = job_name, from = %latest.display(), "resuming")
                }
                None => tracing::info!(
                    job = job_name,
                    "no checkpoint to resume from: starting from scratch"
                ),
            }
        }
        let run = executor::RunSettings {
            settings: TaskSettings {
                batch_size: c.batch_size,
                buffer_timeout: c.buffer_timeout,
                watermark_interval: c.watermark_interval,
                checkpointing_mode: c.checkpoints.mode,
                max_dead_letter_ratio: c.max_dead_letter_ratio,
                latency_tracking_interval: c.latency_tracking_interval,
            },
            channel_capacity: c.channel_capacity,
            loopback_workers: c.loopback_workers,
            clock: Arc::clone(&self.inner.clock.borrow()),
            checkpoints,
            requests: self.inner.requests.1.clone(),
            state_backend: c.state_backend,
            state_dir: c.state_dir.clone(),
            metrics: JobMetrics::new(job_name, &job),
            cluster: match &c.cluster {
                Some(ClusterRole::Coordinator(settings)) => Some(settings.clone()),
                _ => None,
            },
        };
        if let Some(ClusterRole::Worker(settings)) = &c.cluster {
            let graph = self.inner.graph.borrow();
            let started = std::time::Instant::now();
            let worker_job = crate::runtime::cluster::worker::WorkerJob {
                name: job_name,
                graph: &graph,
                job: &job,
                run: &run,
            };
            crate::runtime::cluster::worker::serve(&worker_job, settings)?;
            return Ok(JobStats::of_worker(job_name, started.elapsed()));
        }
        let token = c.http_token.as_ref().map(|t| t.0.clone());
        let live = LiveJob::new(Arc::clone(&run.metrics), self.inner.requests.0.clone());
        let start = |flag: &str, addr: Option<SocketAddr>| {
            addr.map(|a| {
                let tls = c.http_tls.as_ref();
                HttpServer::start(flag, a, Arc::clone(&live), token.clone(), tls)
            })
            .transpose()
        };
        let metrics_server = start("--metrics-addr", c.metrics_addr)?;
        // One server when both flags name the same address.
        let web_server = match c.web_addr {
            Some(web) if Some(web) == c.metrics_addr => None,
            web => start("--web-addr", web)?,
        };
        let bound = |s: &Option<HttpServer>| s.as_ref().map(HttpServer::addr);
        let addrs = (
            bound(&metrics_server),
            bound(&web_server).or(bound(&metrics_server).filter(|_| c.web_addr.is_some())),
        );
        self.inner.set_addrs(addrs);
        let graph = self.inner.graph.borrow();
        let progress = c.progress.then(|| {
            let sources: Vec<(usize, Option<u64>)> = graph
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(id, n)| match &n.body {
                    NodeBody::Source(s) => Some((id, s.expected_records())),
                    _ => None,
                })
                .collect();
            let total = sources.iter().map(|(_, n)| *n).sum::<Option<u64>>();
            let ids = sources.into_iter().map(|(id, _)| id).collect();
            ProgressLine::start(Arc::clone(&run.metrics), ids, total)
        });
        tracing::info!(job = job_name, tasks = job.vertices.len(), "job starting");
        // Requests left over from an earlier run are not for this one.
        while let Ok(stale) = self.inner.requests.1.try_recv() {
            if let Request::Savepoint(stale) = stale {
                let _ = stale.reply.send(Err("the job was not running".into()));
            }
        }
        self.inner.running.store(true, Ordering::SeqCst);
        let marker = RunningMarker::create(&job_root(&c.checkpoints.dir, job_name));
        let result = executor::execute(job_name, &graph, job, run);
        drop(marker);
        live.linger(STOP_ANSWER_WAIT);
        drop(progress);
        drop((metrics_server, web_server));
        self.inner.set_addrs((None, None));
        self.inner.running.store(false, Ordering::SeqCst);
        let stats = result?;
        tracing::info!(
            job = job_name,
            duration_ms = stats.duration.as_millis() as u64,
            "job finished"
        );
        Ok(stats)
    }
}

impl Env {
    /// Runs a control command (savepoint, stop, cancel, status, list)
    /// against the running instance of `job_name`: through its REST API
    /// with `--rest`, else through the checkpoint directory it uses.
    fn send_control(
        &self,
        job_name: &str,
        action: &ControlAction,
    ) -> Result<JobStats, EngineError> {
        let config = &self.inner.config;
        let c = &config.checkpoints;
        let timeout = c.timeout.max(Duration::from_secs(10));
        let (answer, savepoint) = match &config.rest {
            Some(url) => {
                let token = config.http_token.as_ref().map(|t| t.0.clone());
                let client = RestClient::new(
                    url,
                    token,
                    config.rest_ca.as_deref(),
                    Duration::from_secs(10),
                )?;
                let a = client.run(action, job_name, config.json, timeout)?;
                (a.text, a.savepoint)
            }
            None => Self::send_control_file(job_name, action, c, timeout)?,
        };
        Ok(JobStats {
            job: job_name.to_owned(),
            duration: Duration::ZERO,
            operators: Vec::new(),
            restarts: 0,
            checkpoints: Vec::new(),
            stopped_with_savepoint: savepoint,
            answer: Some(answer),
        })
    }

    /// [`Self::send_control`] through request files in the checkpoint
    /// directory: the answer, and the savepoint taken.
    fn send_control_file(
        job_name: &str,
        action: &ControlAction,
        c: &crate::checkpoint::CheckpointConfig,
        timeout: Duration,
    ) -> Result<(String, Option<PathBuf>), EngineError> {
        let root = job_root(&c.dir, job_name);
        Ok(match action {
            ControlAction::Savepoint(dir) | ControlAction::StopWithSavepoint(dir) => {
                let stop = matches!(action, ControlAction::StopWithSavepoint(_));
                let path = request_savepoint(&root, dir.as_deref(), stop, timeout)?;
                let answer = format!("job '{job_name}': savepoint in {}", path.display());
                (answer, Some(path))
            }
            ControlAction::Cancel => {
                request_cancel(&root, timeout)?;
                (format!("job '{job_name}': cancelled"), None)
            }
            ControlAction::Status => (status::job_status(job_name, &root), None),
            ControlAction::List => (status::list(&c.dir), None),
        })
    }
}

/// The last path segment of a type's name, without generics: `DataGen<u64>`
/// → `DataGen`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}
