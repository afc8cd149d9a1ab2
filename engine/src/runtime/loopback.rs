//! Runs a job as if on several workers, in this process
//! (`--loopback-workers N`): subtask `s` of every vertex belongs to worker
//! `s mod N` (slot sharing, as Flink places subtasks), channels between
//! subtasks of one worker stay local, and every channel between two
//! workers crosses a loopback TCP connection of that pair of workers
//! ([`crate::runtime::tcp`]). It exercises and measures the network path
//! the cluster uses, with the same job and the same results.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::EngineError;
use crate::runtime::exchange::{ChannelId, RemoteInput, RemoteOutput};
use crate::runtime::tcp::{Failures, ReceivingEnd, SendingEnd};

/// The network channels of one job run, being wired.
pub(crate) struct LoopbackExchange {
    workers: usize,
    window: u32,
    /// Per (sending worker, receiving worker): both ends of their connection.
    links: BTreeMap<(usize, usize), (SendingEnd, ReceivingEnd)>,
    next_channel: ChannelId,
}

impl LoopbackExchange {
    /// An exchange over `workers` workers whose channels hold `window`
    /// elements each (the local channels' capacity).
    pub(crate) fn new(workers: usize, window: usize) -> Self {
        LoopbackExchange {
            workers: workers.max(1),
            window: u32::try_from(window).unwrap_or(u32::MAX),
            links: BTreeMap::new(),
            next_channel: 0,
        }
    }

    /// The worker subtask `subtask` runs on.
    pub(crate) fn worker_of(&self, subtask: usize) -> usize {
        subtask % self.workers
    }

    /// The network channel from subtask `from` to subtask `to` when they
    /// are on different workers; `None` when the channel stays local.
    pub(crate) fn channel(
        &mut self,
        label: &str,
        from: usize,
        to: usize,
    ) -> Option<(RemoteOutput, RemoteInput)> {
        let (a, b) = (self.worker_of(from), self.worker_of(to));
        if a == b {
            return None;
        }
        let id = self.next_channel;
        self.next_channel += 1;
        let label: Arc<str> = Arc::from(format!("{label} (worker {a} → worker {b})"));
        let window = self.window;
        let (sending, receiving) = self
            .links
            .entry((a, b))
            .or_insert_with(|| (SendingEnd::new(), ReceivingEnd::new(window)));
        Some((
            sending.channel(id, Arc::clone(&label)),
            receiving.channel(id, label),
        ))
    }

    /// Connects every pair of workers that has channels and starts the
    /// connections' threads.
    pub(crate) fn start(self) -> Result<RunningExchange, EngineError> {
        let failures = Failures::default();
        let mut threads = Vec::new();
        if self.links.is_empty() {
            return Ok(RunningExchange { threads, failures });
        }
        let io = |what: &str, e: std::io::Error| EngineError::Exchange {
            channel: "loopback".into(),
            reason: format!("{what}: {e}"),
        };
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| io("cannot listen on loopback", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| io("cannot read the listening address", e))?;
        for ((a, b), (sending, receiving)) in self.links {
            let name = format!("eddy-net-{a}-{b}");
            let (out, inp) = connect(&listener, addr).map_err(|e| io("cannot connect", e))?;
            threads.extend(
                sending
                    .start(out, &name, &failures)
                    .map_err(|e| io("cannot start a connection", e))?,
            );
            threads.extend(
                receiving
                    .start(inp, &name, &failures)
                    .map_err(|e| io("cannot start a connection", e))?,
            );
        }
        Ok(RunningExchange { threads, failures })
    }
}

/// A connected pair of sockets over `listener`; connections from anyone
/// else are dropped.
fn connect(listener: &TcpListener, addr: SocketAddr) -> std::io::Result<(TcpStream, TcpStream)> {
    let out = TcpStream::connect(addr)?;
    let ours = out.local_addr()?;
    loop {
        let (inp, peer) = listener.accept()?;
        if peer == ours {
            return Ok((out, inp));
        }
    }
}

/// The connections of a job run, running.
pub(crate) struct RunningExchange {
    threads: Vec<JoinHandle<()>>,
    failures: Failures,
}

impl RunningExchange {
    /// Waits for the connections to close (once every task has let go of
    /// its channels); returns the first I/O failure, if any.
    pub(crate) fn finish(self) -> Option<String> {
        for t in self.threads {
            let _ = t.join();
        }
        self.failures.first()
    }
}
