//! The coordinator's side of the cluster: the workers' control connections,
//! and one run of the job deployed to them.

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};

use crate::checkpoint::coordinator::TaskCommand;
use crate::checkpoint::requests::Request;
use crate::checkpoint::writer::{Acknowledgement, WriterInput};
use crate::clock::Clock;
use crate::config::ClusterSettings;
use crate::error::EngineError;
use crate::graph::job::JobGraph;
use crate::metrics::{JobMetrics, JobState, WorkerView};
use crate::runtime::cluster::{
    fingerprint, receive, send, Deployment, RemoteOutcome, RunMessage, ToCoordinator, ToWorker,
    HEARTBEAT_INTERVAL,
};
use crate::runtime::placement::SlotPlan;
use crate::runtime::worker::TaskEnded;

/// What the coordinator hears from its workers.
enum Event {
    /// A worker connected and said hello.
    Joined(WorkerLine),
    /// A message from worker `.0`.
    Message(usize, ToCoordinator),
    /// Worker `.0`'s control connection closed or failed.
    Lost(usize, String),
}

/// A worker's control connection.
struct WorkerLine {
    id: usize,
    data: SocketAddr,
    /// Its slots, and its process id on its machine.
    slots: usize,
    pid: u32,
    out: TcpStream,
    last_heard: Instant,
}

/// The longest a write to a worker's control connection may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a coordinator waiting for workers says so.
const WAITING_NOTICE: Duration = Duration::from_secs(5);

/// The workers of a cluster, as the coordinator sees them.
pub(crate) struct Cluster {
    workers: Vec<WorkerLine>,
    /// When a worker was last lost during a run, until the job runs again.
    lost_at: Option<Instant>,
    events: Receiver<Event>,
    /// Workers to wait for before the first run (later runs need only
    /// enough slots).
    first_run_workers: usize,
    heartbeat_timeout: Duration,
    slot_timeout: Duration,
    bind: SocketAddr,
}

impl Cluster {
    /// Listens on `settings.bind` for workers; [`Self::ready`] waits for
    /// them. Workers that join during a run are used from the next one on.
    pub(crate) fn start(
        settings: &ClusterSettings,
        job: &JobGraph,
    ) -> Result<Cluster, EngineError> {
        let fingerprint = fingerprint(job);
        let listener = TcpListener::bind(settings.bind).map_err(|e| EngineError::Config {
            option: "coordinator --bind".into(),
            value: settings.bind.to_string(),
            reason: format!("cannot listen there: {e}"),
        })?;
        tracing::info!(addr = %settings.bind, workers = settings.workers, "coordinator waiting for workers");
        let (events_tx, events) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("eddy-accept".into())
            .spawn(move || accept_workers(&listener, fingerprint, &events_tx))
            .map_err(|e| EngineError::Internal(format!("cannot spawn the acceptor: {e}")))?;
        Ok(Cluster {
            workers: Vec::new(),
            lost_at: None,
            events,
            first_run_workers: settings.workers,
            heartbeat_timeout: settings.heartbeat_timeout,
            slot_timeout: settings.slot_timeout,
            bind: settings.bind,
        })
    }

    /// Waits until the workers offer `needed` slots (and, before the first
    /// run, until `--workers` of them have joined), showing the wait as
    /// the job's state; returns the next run's slots. A cancel request ends
    /// the wait; a savepoint request fails, since nothing runs.
    ///
    /// # Errors
    /// [`EngineError::Cancelled`] when cancelled; [`EngineError::Exchange`]
    /// (restartable, so the restart strategy decides) when the slots have
    /// not come within `--slot-timeout`.
    pub(crate) fn ready(
        &mut self,
        needed: usize,
        requests: &Receiver<Request>,
        metrics: &JobMetrics,
    ) -> Result<SlotPlan, EngineError> {
        let since = Instant::now();
        let mut notice = since;
        let mut requests = requests.clone();
        loop {
            self.refresh();
            let offered: usize = self.workers.iter().map(|w| w.slots).sum();
            let enough_workers = self.workers.len() >= self.first_run_workers;
            if offered >= needed && enough_workers && !self.workers.is_empty() {
                self.first_run_workers = 0;
                let slots =
                    SlotPlan::new(&self.workers.iter().map(|w| w.slots).collect::<Vec<_>>());
                metrics.set_roster(self.roster(&slots, needed), Some(slots.clone()));
                return Ok(slots);
            }
            metrics.set_state(JobState::WaitingForSlots);
            metrics.set_roster(self.roster(&SlotPlan::default(), 0), None);
            let waited = since.elapsed();
            if waited >= self.slot_timeout {
                return Err(EngineError::Exchange {
                    channel: "cluster".into(),
                    reason: format!(
                        "the job needs {needed} slots and {} workers offer {offered} after waiting {} (--slot-timeout); start more workers (`worker --coordinator {} --slots N`) or lower --parallelism",
                        self.workers.len(),
                        humantime::format_duration(waited),
                        self.bind
                    ),
                });
            }
            if Instant::now() >= notice {
                notice = Instant::now() + WAITING_NOTICE;
                tracing::warn!(
                    needed,
                    offered,
                    workers = self.workers.len(),
                    expected_workers = self.first_run_workers,
                    addr = %self.bind,
                    "waiting for slots (start workers with `worker --coordinator ADDR --slots N`)"
                );
            }
            let wait = (self.slot_timeout - waited).min(Duration::from_secs(1));
            crossbeam_channel::select! {
                recv(self.events) -> event => match event {
                    Ok(event) => self.on_idle_event(event),
                    Err(_) => return Err(EngineError::Internal("the acceptor stopped".into())),
                },
                recv(requests) -> request => match request {
                    Ok(Request::Cancel) => return Err(EngineError::Cancelled),
                    Ok(Request::Savepoint(r)) => {
                        let _ = r.reply.send(Err(format!(
                            "the job is waiting for slots ({offered} of {needed}): no task runs to take a savepoint"
                        )));
                    }
                    Err(_) => requests = crossbeam_channel::never(),
                },
                default(wait) => {}
            }
        }
    }

    /// The workers as the job's view lists them, with the slots `slots`
    /// uses of theirs for a job of highest parallelism `needed`.
    fn roster(&self, slots: &SlotPlan, needed: usize) -> Vec<WorkerView> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| WorkerView {
                id: format!("worker {i} ({})", w.data),
                pid: w.pid,
                slots: w.slots,
                slots_used: slots.used(i, needed),
            })
            .collect()
    }

    /// Handles an event between runs.
    fn on_idle_event(&mut self, event: Event) {
        match event {
            Event::Joined(line) => {
                tracing::info!(worker = line.id, data = %line.data, slots = line.slots, "worker joined");
                self.workers.push(line);
            }
            Event::Lost(id, reason) => {
                tracing::warn!(worker = id, %reason, "worker lost");
                self.workers.retain(|w| w.id != id);
            }
            Event::Message(id, _) => {
                if let Some(w) = self.workers.iter_mut().find(|w| w.id == id) {
                    w.last_heard = Instant::now();
                }
            }
        }
    }

    /// Workers that joined or left since the last run.
    fn refresh(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.on_idle_event(event);
        }
        let timeout = self.heartbeat_timeout;
        self.workers.retain(|w| {
            let alive = w.last_heard.elapsed() < timeout;
            if !alive {
                tracing::warn!(worker = w.id, "worker lost: no heartbeat");
            }
            alive
        });
    }

    /// Deploys run `attempt` to the workers [`Self::ready`] found, over
    /// their `slots`: worker `i` runs the tasks whose writer index is `i`
    /// (`placement`). The returned run relays the commands of `lines` to
    /// the tasks, and the workers' acknowledgements and the tasks' outcomes
    /// back; it also returns the lines to each worker's snapshot writer.
    pub(crate) fn deploy(
        mut self,
        attempt: u32,
        restore: Option<PathBuf>,
        slots: &SlotPlan,
        placement: Vec<usize>,
        lines: RunLines,
    ) -> Result<(RemoteRun, Vec<Sender<WriterInput>>), EngineError> {
        debug_assert_eq!(
            slots.slots(),
            self.workers.iter().map(|w| w.slots).sum::<usize>()
        );
        let addrs: Vec<SocketAddr> = self.workers.iter().map(|w| w.data).collect();
        let offered: Vec<usize> = self.workers.iter().map(|w| w.slots).collect();
        let mut initial: Vec<Vec<(usize, TaskCommand)>> =
            addrs.iter().map(|_| Vec::new()).collect();
        for (task, commands) in lines.commands.iter().enumerate() {
            initial[placement[task]].extend(commands.try_iter().map(|c| (task, c)));
        }
        for ((index, w), initial) in self.workers.iter_mut().enumerate().zip(initial) {
            let deployment = Deployment {
                attempt,
                index,
                workers: addrs.clone(),
                slots: offered.clone(),
                restore: restore.clone(),
                initial,
                heartbeat_timeout: self.heartbeat_timeout,
            };
            if let Err(e) = send(&mut w.out, &ToWorker::Deploy(deployment)) {
                // The relay finds it silent at once and loses it.
                tracing::warn!(worker = w.id, error = %e, "cannot deploy to a worker");
                w.last_heard = Instant::now() - self.heartbeat_timeout * 2;
            }
        }
        let mut writer_tx = Vec::new();
        let mut writer_rx = Vec::new();
        for _ in &self.workers {
            let (tx, rx) = crossbeam_channel::unbounded();
            writer_tx.push(tx);
            writer_rx.push(rx);
        }
        let relay = Relay::new(self, attempt, placement, lines, writer_rx);
        let thread = std::thread::Builder::new()
            .name("eddy-relay".into())
            .spawn(move || relay.run())
            .map_err(|e| EngineError::Internal(format!("cannot spawn the relay: {e}")))?;
        Ok((RemoteRun { thread }, writer_tx))
    }

    /// Tells every worker the job is over.
    pub(crate) fn shut_down(mut self) {
        for w in &mut self.workers {
            let _ = send(&mut w.out, &ToWorker::Shutdown);
        }
    }
}

/// The coordinator's ends of one run's lines to its tasks.
pub(crate) struct RunLines {
    /// Commands for task `t` arrive on `commands[t]`.
    pub commands: Vec<Receiver<TaskCommand>>,
    /// Set when the run is to stop (a task failed, or the job is cancelled).
    pub cancel: Arc<AtomicBool>,
    /// Where the snapshot writers' acknowledgements go.
    pub acks: Sender<Acknowledgement>,
    /// Where the tasks' outcomes go.
    pub ended: Sender<TaskEnded>,
    /// The job's live metrics, where the workers' publications go.
    pub metrics: Arc<JobMetrics>,
    pub clock: Arc<dyn Clock>,
}

/// A run deployed to the workers, relayed by its own thread.
pub(crate) struct RemoteRun {
    thread: JoinHandle<(Cluster, Option<String>)>,
}

impl RemoteRun {
    /// Waits until every worker's run has ended (or the worker was lost);
    /// returns the cluster for the next run and the first connection
    /// failure a worker reported.
    pub(crate) fn finish(self) -> Result<(Cluster, Option<String>), EngineError> {
        self.thread
            .join()
            .map_err(|_| EngineError::Internal("the relay thread panicked".into()))
    }
}

/// Relays one run between the coordinator's loop and the workers.
struct Relay {
    attempt: u32,
    cluster: Cluster,
    /// Task index → index of the worker (in `cluster.workers`) running it.
    placement: Vec<usize>,
    commands: Vec<Receiver<TaskCommand>>,
    writers: Vec<Receiver<WriterInput>>,
    cancel: Arc<AtomicBool>,
    acks: Sender<Acknowledgement>,
    ended: Sender<TaskEnded>,
    metrics: Arc<JobMetrics>,
    clock: Arc<dyn Clock>,
    /// Workers whose run has not ended.
    running: BTreeSet<usize>,
    /// Per worker: its tasks that have not ended.
    open: Vec<BTreeSet<usize>>,
    /// Workers that have started their tasks.
    started: BTreeSet<usize>,
    /// Workers found silent or unwritable: lost at the next turn.
    to_lose: Vec<usize>,
    /// The first connection failure a worker reported.
    failure: Option<String>,
}

impl Relay {
    fn new(
        cluster: Cluster,
        attempt: u32,
        placement: Vec<usize>,
        lines: RunLines,
        writers: Vec<Receiver<WriterInput>>,
    ) -> Self {
        let workers = cluster.workers.len();
        let mut open = vec![BTreeSet::new(); workers];
        for (task, &w) in placement.iter().enumerate() {
            open[w].insert(task);
        }
        Relay {
            attempt,
            writers,
            cluster,
            placement,
            commands: lines.commands,
            cancel: lines.cancel,
            acks: lines.acks,
            ended: lines.ended,
            metrics: lines.metrics,
            clock: lines.clock,
            running: (0..workers).collect(),
            open,
            started: BTreeSet::new(),
            to_lose: Vec::new(),
            failure: None,
        }
    }

    fn run(mut self) -> (Cluster, Option<String>) {
        let index_of: HashMap<usize, usize> = self
            .cluster
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id, i))
            .collect();
        let (mut cancel_sent, mut end_sent) = (false, false);
        let mut next_beat = Instant::now();
        let mut commands_open = vec![true; self.commands.len()];
        let mut writers_open = vec![true; self.writers.len()];
        while !self.running.is_empty() {
            if !cancel_sent && self.cancel.load(Ordering::SeqCst) {
                cancel_sent = true;
                self.tell_running(&ToWorker::Cancel);
            }
            // Every task has ended: the workers may let go of the run
            // (until then their writers may still be asked for stand-ins).
            if !end_sent && self.open.iter().all(BTreeSet::is_empty) {
                end_sent = true;
                self.tell_running(&ToWorker::EndRun);
            }
            let now = Instant::now();
            if now >= next_beat {
                next_beat = now + HEARTBEAT_INTERVAL;
                self.tell_running(&ToWorker::Heartbeat);
            }
            let timeout = self.cluster.heartbeat_timeout;
            let silent = self
                .running
                .iter()
                .filter(|&&i| now.duration_since(self.cluster.workers[i].last_heard) >= timeout);
            self.to_lose.extend(silent);
            if !self.to_lose.is_empty() {
                for i in std::mem::take(&mut self.to_lose) {
                    self.lose(i, "silent, or unreachable");
                }
                continue;
            }
            let mut select = Select::new();
            let events = select.recv(&self.cluster.events);
            // (select index, task or writer)
            let mut sources = Vec::new();
            for (t, rx) in self.commands.iter().enumerate() {
                if commands_open[t] && self.running.contains(&self.placement[t]) {
                    sources.push((select.recv(rx), Ok(t)));
                }
            }
            for (w, rx) in self.writers.iter().enumerate() {
                if writers_open[w] && self.running.contains(&w) {
                    sources.push((select.recv(rx), Err(w)));
                }
            }
            let Ok(op) = select.select_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let index = op.index();
            if index == events {
                match op.recv(&self.cluster.events) {
                    Ok(event) => self.on_event(event, &index_of),
                    Err(_) => break,
                }
                continue;
            }
            match sources.iter().find(|(i, _)| *i == index).map(|s| s.1) {
                Some(Ok(t)) => match op.recv(&self.commands[t]) {
                    Ok(command) => {
                        self.tell(self.placement[t], &ToWorker::Command { task: t, command })
                    }
                    Err(_) => commands_open[t] = false,
                },
                Some(Err(w)) => match op.recv(&self.writers[w]) {
                    Ok(WriterInput::Command(command)) => self.tell(w, &ToWorker::Writer(command)),
                    Ok(WriterInput::Task(_)) => {}
                    Err(_) => writers_open[w] = false,
                },
                None => {}
            }
        }
        // Drop the workers lost during the run.
        let timeout = self.cluster.heartbeat_timeout;
        self.cluster
            .workers
            .retain(|w| w.last_heard.elapsed() < timeout);
        (self.cluster, self.failure)
    }

    /// Handles what the acceptor or a worker's reader says.
    fn on_event(&mut self, event: Event, index_of: &HashMap<usize, usize>) {
        match event {
            Event::Joined(line) => {
                tracing::info!(worker = line.id, "worker joined; used from the next run");
                self.cluster.workers.push(line);
            }
            Event::Lost(id, reason) => match index_of.get(&id) {
                Some(&i) => self.lose(i, &reason),
                None => self.cluster.workers.retain(|w| w.id != id),
            },
            Event::Message(id, message) => {
                let Some(&i) = index_of.get(&id) else {
                    return;
                };
                self.cluster.workers[i].last_heard = Instant::now();
                match message {
                    ToCoordinator::Run { attempt, message } if attempt == self.attempt => {
                        self.on_run_message(i, id, message);
                    }
                    // A beat, or a stale word about an older run.
                    _ => {}
                }
            }
        }
    }

    /// Handles what worker `i` (id `id`) says about this run.
    fn on_run_message(&mut self, i: usize, id: usize, message: RunMessage) {
        match message {
            RunMessage::Ack(ack) => {
                let _ = self.acks.send(ack);
            }
            RunMessage::TaskEnded { task, outcome } => {
                self.open[i].remove(&task);
                // A failed or cancelled task (a broken data connection) ends
                // the run everywhere.
                if !matches!(outcome, RemoteOutcome::Finished(_)) {
                    self.cancel.store(true, Ordering::SeqCst);
                }
                let _ = self.ended.send((task, outcome.into_result(id)));
            }
            RunMessage::RunEnded { failure } => {
                self.running.remove(&i);
                if failure.is_some() {
                    self.cancel.store(true, Ordering::SeqCst);
                }
                self.failure = self.failure.take().or(failure);
            }
            RunMessage::Published(publications) => {
                self.metrics
                    .republish(self.attempt, &publications, self.clock.now());
            }
            RunMessage::Started => {
                self.started.insert(i);
                if self.started.len() == self.open.len() {
                    self.running_again();
                }
            }
        }
    }

    /// Sends `message` to every worker whose run has not ended.
    fn tell_running(&mut self, message: &ToWorker) {
        for i in self.running.clone() {
            self.tell(i, message);
        }
    }

    /// Sends `message` to worker `i`; one that cannot be written to is lost.
    fn tell(&mut self, i: usize, message: &ToWorker) {
        if let Err(e) = send(&mut self.cluster.workers[i].out, message) {
            tracing::warn!(worker = self.cluster.workers[i].id, error = %e, "cannot write to a worker");
            self.to_lose.push(i);
        }
    }

    /// Every worker has started its tasks: says so, and how long after the
    /// loss of a worker that was.
    fn running_again(&mut self) {
        let recovered_ms = self
            .cluster
            .lost_at
            .take()
            .map(|t| t.elapsed().as_millis() as u64);
        tracing::info!(
            attempt = self.attempt,
            workers = self.open.len(),
            recovered_ms,
            "job running on the cluster"
        );
    }

    /// Worker `i` is lost: a worker still in the run has its open tasks
    /// fail (restartably) and the others cancel theirs; either way it is
    /// cut off and dropped after the run.
    fn lose(&mut self, i: usize, reason: &str) {
        if self.running.remove(&i) {
            self.fail_tasks_of(i, reason);
        }
        let timeout = self.cluster.heartbeat_timeout;
        let line = &mut self.cluster.workers[i];
        line.last_heard = Instant::now() - timeout * 2;
        // Cut it off: a worker that was only slow sees its connection
        // close, ends its run and exits, and is not mistaken for a live one.
        let _ = line.out.shutdown(std::net::Shutdown::Both);
    }

    fn fail_tasks_of(&mut self, i: usize, reason: &str) {
        self.cluster.lost_at.get_or_insert_with(Instant::now);
        let id = self.cluster.workers[i].id;
        tracing::warn!(worker = id, reason, "worker lost during the run");
        self.cancel.store(true, Ordering::SeqCst);
        for task in std::mem::take(&mut self.open[i]) {
            let error = EngineError::Exchange {
                channel: format!("worker {id}"),
                reason: format!("the worker was lost ({reason})"),
            };
            let _ = self.ended.send((task, Err(error)));
        }
    }
}

impl RemoteOutcome {
    /// The outcome as the coordinator's loop takes it.
    fn into_result(self, worker: usize) -> crate::runtime::worker::TaskOutcome {
        match self {
            RemoteOutcome::Finished(stats) => Ok(stats),
            RemoteOutcome::Cancelled => Err(EngineError::Cancelled),
            RemoteOutcome::Failed {
                message,
                restartable: true,
            } => Err(EngineError::Exchange {
                channel: format!("worker {worker}"),
                reason: message,
            }),
            RemoteOutcome::Failed { message, .. } => Err(EngineError::Internal(format!(
                "on worker {worker}: {message}"
            ))),
        }
    }
}

/// Accepts workers' control connections until the process ends; each gets
/// a reader thread that turns its messages into events.
fn accept_workers(listener: &TcpListener, job: u64, events: &Sender<Event>) {
    for (id, stream) in listener.incoming().enumerate() {
        let Ok(stream) = stream else { continue };
        let events = events.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("eddy-control-{id}"))
            .spawn(move || read_worker(id, stream, job, &events));
        if spawned.is_err() {
            tracing::warn!("cannot spawn a control reader; worker refused");
        }
    }
}

/// Reads worker `id`'s messages: first its hello (refused unless it built
/// the job graph `job`), then everything else.
fn read_worker(id: usize, stream: TcpStream, job: u64, events: &Sender<Event>) {
    let _ = stream.set_nodelay(true);
    // A frozen worker must not block the coordinator's writes to it.
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut input = BufReader::new(stream);
    let (data, slots, pid) = match receive::<ToCoordinator>(&mut input) {
        Ok(Some(ToCoordinator::Hello {
            data,
            job: theirs,
            slots,
            pid,
        })) if theirs == job => (data, slots, pid),
        Ok(Some(ToCoordinator::Hello { data, .. })) => {
            tracing::error!(worker = id, %data, "a worker built another job graph; refused");
            let reason = "this worker built another job graph than the coordinator's: start every process of a cluster with the same job binary and the same job flags (--parallelism, --max-parallelism, --disable-chaining, …)".to_owned();
            let _ = send(&mut out, &ToWorker::Refused { reason });
            return;
        }
        _ => {
            tracing::warn!(
                worker = id,
                "a client that did not greet as a worker was refused"
            );
            return;
        }
    };
    let line = WorkerLine {
        id,
        data,
        slots,
        pid,
        out,
        last_heard: Instant::now(),
    };
    if events.send(Event::Joined(line)).is_err() {
        return;
    }
    loop {
        match receive::<ToCoordinator>(&mut input) {
            Ok(Some(message)) => {
                if events.send(Event::Message(id, message)).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = events.send(Event::Lost(id, "its connection closed".into()));
                return;
            }
            Err(e) => {
                let _ = events.send(Event::Lost(id, format!("its connection failed: {e}")));
                return;
            }
        }
    }
}
