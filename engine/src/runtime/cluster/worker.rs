//! The worker's side of the cluster: joins the coordinator, runs its share
//! of every run deployed to it, and relays its tasks' outcomes and its
//! snapshot writer's acknowledgements.

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::coordinator::TaskCommand;
use crate::checkpoint::writer::WriterInput;
use crate::config::WorkerSettings;
use crate::error::EngineError;
use crate::graph::job::JobGraph;
use crate::graph::stream::StreamGraph;
use crate::metrics::PUBLISH_INTERVAL;
use crate::runtime::cluster::{
    fingerprint, receive, send, Deployment, RemoteOutcome, RunMessage, ToCoordinator, ToWorker,
    HEARTBEAT_INTERVAL,
};
use crate::runtime::executor::{load_restore_point, restartable, wire, Plan, RunSettings};
use crate::runtime::placement::SlotPlan;
use crate::runtime::worker::{AssignedTask, WorkerRun};

/// The job a worker runs its share of.
pub(crate) struct WorkerJob<'a> {
    pub name: &'a str,
    pub graph: &'a StreamGraph,
    pub job: &'a JobGraph,
    pub run: &'a RunSettings,
}

/// Serves the coordinator at `settings.coordinator` until it shuts the job
/// down (`Ok`) or goes away (an error).
pub(crate) fn serve(job: &WorkerJob<'_>, settings: &WorkerSettings) -> Result<(), EngineError> {
    let io = |what: String, e: std::io::Error| EngineError::Exchange {
        channel: "control".into(),
        reason: format!("{what}: {e}"),
    };
    let listener = TcpListener::bind(settings.data)
        .map_err(|e| io(format!("cannot listen for data on {}", settings.data), e))?;
    let data = listener
        .local_addr()
        .map_err(|e| io("cannot read the data address".into(), e))?;
    let mut out = connect(settings.coordinator).map_err(|e| {
        io(
            format!(
                "cannot reach the coordinator at {} within {REGISTRATION_TIMEOUT:?}",
                settings.coordinator
            ),
            e,
        )
    })?;
    out.set_nodelay(true)
        .map_err(|e| io("cannot configure the control connection".into(), e))?;
    let input = out
        .try_clone()
        .map_err(|e| io("cannot read the control connection".into(), e))?;
    let hello = ToCoordinator::Hello {
        data,
        job: fingerprint(job.job),
        slots: settings.slots,
        pid: std::process::id(),
    };
    send(&mut out, &hello).map_err(|e| io("cannot greet the coordinator".into(), e))?;
    tracing::info!(coordinator = %settings.coordinator, %data, slots = settings.slots, "worker joined the coordinator");
    let control = read_control(input)?;
    let line = Line {
        out: Arc::new(Mutex::new(out)),
    };
    line.beat()?;
    loop {
        match control.recv() {
            Ok(Some(ToWorker::Deploy(d))) => {
                let ended = run_deployment(job, &listener, d, &control, &line)?;
                if ended {
                    return Ok(());
                }
            }
            Ok(Some(ToWorker::Shutdown)) => return Ok(()),
            Ok(Some(ToWorker::Refused { reason })) => {
                return Err(EngineError::Config {
                    option: "worker --coordinator".into(),
                    value: settings.coordinator.to_string(),
                    reason,
                })
            }
            // Commands for a run that is over.
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(coordinator_lost()),
        }
    }
}

/// How long a worker keeps trying to reach its coordinator (which may
/// start after it, or be restarting).
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to the coordinator, retrying with backoff until
/// [`REGISTRATION_TIMEOUT`].
fn connect(coordinator: SocketAddr) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + REGISTRATION_TIMEOUT;
    let mut pause = Duration::from_millis(50);
    loop {
        match TcpStream::connect(coordinator) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() + pause > deadline => return Err(e),
            Err(e) => {
                tracing::debug!(%coordinator, error = %e, "coordinator not reachable yet; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn coordinator_lost() -> EngineError {
    EngineError::Exchange {
        channel: "control".into(),
        reason: "the coordinator closed the connection".into(),
    }
}

/// The write side of the control connection, shared with the thread that
/// beats on it.
#[derive(Clone)]
struct Line {
    out: Arc<Mutex<TcpStream>>,
}

impl Line {
    fn send(&self, message: &ToCoordinator) -> Result<(), EngineError> {
        let mut out = self
            .out
            .lock()
            .map_err(|_| EngineError::Internal("the control line is poisoned".into()))?;
        send(&mut *out, message).map_err(|e| EngineError::Exchange {
            channel: "control".into(),
            reason: format!("cannot write to the coordinator: {e}"),
        })
    }

    /// Says `message` about run `attempt`.
    fn run(&self, attempt: u32, message: RunMessage) -> Result<(), EngineError> {
        self.send(&ToCoordinator::Run { attempt, message })
    }

    /// Beats every [`HEARTBEAT_INTERVAL`] on its own thread, also while a
    /// run restores its state or connects, until the connection fails.
    fn beat(&self) -> Result<(), EngineError> {
        let line = self.clone();
        std::thread::Builder::new()
            .name("eddy-heartbeat".into())
            .spawn(move || loop {
                std::thread::sleep(HEARTBEAT_INTERVAL);
                if line.send(&ToCoordinator::Heartbeat).is_err() {
                    return;
                }
            })
            .map(drop)
            .map_err(|e| EngineError::Internal(format!("cannot spawn the heartbeat: {e}")))
    }
}

/// A thread that reads the coordinator's messages into a channel (`None`:
/// the connection closed).
fn read_control(stream: TcpStream) -> Result<Receiver<Option<ToWorker>>, EngineError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("eddy-control".into())
        .spawn(move || {
            let mut input = BufReader::new(stream);
            loop {
                match receive::<ToWorker>(&mut input) {
                    Ok(Some(message)) => {
                        if tx.send(Some(message)).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                }
            }
        })
        .map_err(|e| EngineError::Internal(format!("cannot spawn the control reader: {e}")))?;
    Ok(rx)
}

/// Runs this worker's share of one run; true when the coordinator shut the
/// job down meanwhile.
fn run_deployment(
    job: &WorkerJob<'_>,
    listener: &TcpListener,
    mut d: Deployment,
    control: &Receiver<Option<ToWorker>>,
    line: &Line,
) -> Result<bool, EngineError> {
    let slots = SlotPlan::new(&d.slots);
    let placement = slots.tasks(job.job);
    let mine: Vec<usize> = (0..placement.len())
        .filter(|&t| placement[t] == d.index)
        .collect();
    // (vertex, subtask) of each task here, for shipping their metrics.
    let places: Vec<(usize, usize)> = job
        .job
        .vertices
        .iter()
        .enumerate()
        .flat_map(|(v, vertex)| (0..vertex.parallelism).map(move |s| (v, s)))
        .enumerate()
        .filter(|(t, _)| placement[*t] == d.index)
        .map(|(_, place)| place)
        .collect();
    let started = start_run(job, listener, &mut d, slots, &placement);
    let share = match started {
        Ok(s) => s,
        Err(e) => {
            // Nothing of this run runs here: every task of ours failed.
            let restartable = restartable(&e);
            for &task in &mine {
                let outcome = RemoteOutcome::Failed {
                    message: e.to_string(),
                    restartable,
                };
                line.run(d.attempt, RunMessage::TaskEnded { task, outcome })?;
            }
            line.run(d.attempt, RunMessage::RunEnded { failure: None })?;
            return Ok(false);
        }
    };
    line.run(d.attempt, RunMessage::Started)?;
    let mut left = mine.len();
    let mut shut_down = false;
    // The run is over when the coordinator says so: until every task of
    // the job has ended, the writer may be asked for stand-ins.
    let mut over = false;
    let mut last_heard = Instant::now();
    let mut next_publication = Instant::now() + PUBLISH_INTERVAL;
    let no_more_tasks = crossbeam_channel::never();
    let publish = || {
        let publications = job.run.metrics.publications(d.attempt, &places);
        line.run(d.attempt, RunMessage::Published(publications))
    };
    while !over {
        if Instant::now() >= next_publication {
            next_publication = Instant::now() + PUBLISH_INTERVAL;
            publish()?;
        }
        if last_heard.elapsed() >= d.heartbeat_timeout {
            tracing::error!(timeout = ?d.heartbeat_timeout, "the coordinator is silent; cancelling");
            share.cancel.store(true, Ordering::SeqCst);
            drop(share.commands);
            share.worker.join();
            return Err(EngineError::Exchange {
                channel: "control".into(),
                reason: format!("the coordinator sent nothing for {:?}", d.heartbeat_timeout),
            });
        }
        let ending = if left > 0 {
            &share.ended
        } else {
            &no_more_tasks
        };
        crossbeam_channel::select! {
            recv(control) -> message => match message {
                Ok(Some(ToWorker::Heartbeat)) => last_heard = Instant::now(),
                Ok(Some(ToWorker::EndRun)) => over = true,
                Ok(Some(ToWorker::Command { task, command })) => {
                    last_heard = Instant::now();
                    if let Some(tx) = share.commands.get(&task) {
                        let _ = tx.send(command);
                    }
                }
                Ok(Some(ToWorker::Writer(command))) => {
                    let _ = share.worker.writer().send(WriterInput::Command(command));
                }
                Ok(Some(ToWorker::Cancel)) => share.cancel.store(true, Ordering::SeqCst),
                Ok(Some(ToWorker::Shutdown)) => {
                    shut_down = true;
                    over = true;
                    share.cancel.store(true, Ordering::SeqCst);
                }
                Ok(Some(ToWorker::Deploy(_) | ToWorker::Refused { .. })) => {
                    tracing::warn!("a deployment or refusal during a run; ignored");
                }
                Ok(None) | Err(_) => {
                    share.cancel.store(true, Ordering::SeqCst);
                    drop(share.commands);
                    share.worker.join();
                    return Err(coordinator_lost());
                }
            },
            recv(share.acks) -> ack => {
                if let Ok(ack) = ack {
                    line.run(d.attempt, RunMessage::Ack(ack))?;
                }
            },
            recv(ending) -> result => {
                if let Ok((task, outcome)) = result {
                    left -= 1;
                    let outcome = match outcome {
                        Ok(stats) => RemoteOutcome::Finished(stats),
                        Err(EngineError::Cancelled) => RemoteOutcome::Cancelled,
                        Err(e) => RemoteOutcome::Failed {
                            restartable: restartable(&e),
                            message: e.to_string(),
                        },
                    };
                    line.run(d.attempt, RunMessage::TaskEnded { task, outcome })?;
                }
            },
            default(HEARTBEAT_INTERVAL) => {},
        }
    }
    drop(share.commands);
    // A shut-down ends the job while tasks may still run: wait for them.
    while left > 0 && share.ended.recv().is_ok() {
        left -= 1;
    }
    share.worker.join();
    // The tasks' last counts, for the coordinator's view.
    publish()?;
    let failure = share
        .exchange
        .and_then(crate::runtime::loopback::RunningExchange::finish);
    line.run(d.attempt, RunMessage::RunEnded { failure })?;
    Ok(shut_down)
}

/// This worker's share of a run, started.
struct Started {
    worker: WorkerRun,
    exchange: Option<crate::runtime::loopback::RunningExchange>,
    /// Task index → its command channel.
    commands: HashMap<usize, Sender<TaskCommand>>,
    acks: Receiver<crate::checkpoint::writer::Acknowledgement>,
    ended: Receiver<crate::runtime::worker::TaskEnded>,
    cancel: Arc<AtomicBool>,
}

/// Builds this worker's tasks of run `d`, connects its channels to the
/// other workers, and starts them.
fn start_run(
    job: &WorkerJob<'_>,
    listener: &TcpListener,
    d: &mut Deployment,
    slots: SlotPlan,
    placement: &[usize],
) -> Result<Started, EngineError> {
    let run = job.run;
    let restored = match &d.restore {
        Some(path) => Some(Arc::new(load_restore_point(path, job.job, run)?)),
        None => None,
    };
    let plan = Plan::new(job.name, job.graph, job.job, run, restored, d.attempt);
    let (io, exchange) = wire(&plan, run.channel_capacity, Some(slots))?;
    let exchange = match exchange {
        Some(x) => Some(x.start_worker(d.index, listener, &d.workers, d.attempt)?),
        None => None,
    };
    let mut assigned = Vec::new();
    let mut commands = HashMap::new();
    let mut task = 0;
    for (v, subtasks) in io.into_iter().enumerate() {
        for (s, io) in subtasks.into_iter().enumerate() {
            if placement[task] == d.index {
                let (tx, rx) = crossbeam_channel::unbounded();
                commands.insert(task, tx);
                assigned.push(AssignedTask {
                    task,
                    vertex: v,
                    subtask: s,
                    io,
                    commands: rx,
                });
            }
            task += 1;
        }
    }
    for (task, command) in d.initial.drain(..) {
        if let Some(tx) = commands.get(&task) {
            let _ = tx.send(command);
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let (ack_tx, acks) = crossbeam_channel::unbounded();
    let (ended_tx, ended) = crossbeam_channel::unbounded();
    let worker = WorkerRun::start(
        &plan,
        &run.settings,
        &run.clock,
        assigned,
        &cancel,
        ack_tx,
        &ended_tx,
    )?;
    Ok(Started {
        worker,
        exchange,
        commands,
        acks,
        ended,
        cancel,
    })
}
