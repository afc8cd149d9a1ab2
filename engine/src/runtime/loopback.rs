//! Runs a job as if on several workers, in this process
//! (`--loopback-workers N`): subtask `s` of every vertex belongs to worker
//! `s mod N` (slot sharing, as Flink places subtasks; a cluster places by
//! its workers' slots, [`crate::runtime::placement`]), channels between
//! subtasks of one worker stay local, and every channel between two
//! workers crosses a loopback TCP connection of that pair of workers
//! ([`crate::runtime::tcp`]). It exercises and measures the network path
//! the cluster uses, with the same job and the same results.
//!
//! A worker of a cluster wires the same way ([`LoopbackExchange::start_worker`]):
//! every process enumerates the channels in the same order, so channel ids
//! agree on both ends of a connection, and each starts only the connections
//! it is an end of.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::EngineError;
use crate::runtime::exchange::{ChannelId, RemoteInput, RemoteOutput};
use crate::runtime::placement::SlotPlan;
use crate::runtime::tcp::{Failures, ReceivingEnd, SendingEnd};

/// The network channels of one job run, being wired.
pub(crate) struct LoopbackExchange {
    slots: SlotPlan,
    window: u32,
    /// Per (sending worker, receiving worker): both ends of their connection.
    links: BTreeMap<(usize, usize), (SendingEnd, ReceivingEnd)>,
    next_channel: ChannelId,
}

impl LoopbackExchange {
    /// An exchange over the workers of `slots` whose channels hold
    /// `window` elements each (the local channels' capacity).
    pub(crate) fn new(slots: SlotPlan, window: usize) -> Self {
        LoopbackExchange {
            slots,
            window: u32::try_from(window).unwrap_or(u32::MAX),
            links: BTreeMap::new(),
            next_channel: 0,
        }
    }

    /// The worker subtask `subtask` runs on.
    pub(crate) fn worker_of(&self, subtask: usize) -> usize {
        self.slots.worker_of(subtask)
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
        let mut streams = Vec::new();
        if self.links.is_empty() {
            return Ok(RunningExchange {
                threads,
                streams,
                failures,
            });
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
            streams.push(
                out.try_clone()
                    .map_err(|e| io("cannot keep a connection", e))?,
            );
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
        Ok(RunningExchange {
            threads,
            streams,
            failures,
        })
    }
}

impl LoopbackExchange {
    /// Starts the connections of worker `me` of a cluster: it connects to
    /// every worker it sends to (`peers`: their data addresses, by index)
    /// and accepts one connection from every worker that sends to it, on
    /// `listener`. Each connection opens with `attempt` and the sender's
    /// index, so a connection of an older run is refused.
    pub(crate) fn start_worker(
        self,
        me: usize,
        listener: &TcpListener,
        peers: &[SocketAddr],
        attempt: u32,
    ) -> Result<RunningExchange, EngineError> {
        let failures = Failures::default();
        let mut threads = Vec::new();
        let mut streams = Vec::new();
        let io = |what: String, e: std::io::Error| EngineError::Exchange {
            channel: format!("worker {me}"),
            reason: format!("{what}: {e}"),
        };
        let mut receiving = BTreeMap::new();
        for ((a, b), (sending, receiving_end)) in self.links {
            let name = format!("eddy-net-{a}-{b}");
            if a == me {
                let mut out = TcpStream::connect(peers[b])
                    .map_err(|e| io(format!("cannot connect to worker {b} at {}", peers[b]), e))?;
                let mut hello = attempt.to_le_bytes().to_vec();
                hello.extend((me as u32).to_le_bytes());
                out.write_all(&hello)
                    .map_err(|e| io(format!("cannot greet worker {b}"), e))?;
                streams.push(
                    out.try_clone()
                        .map_err(|e| io("cannot keep a connection".into(), e))?,
                );
                threads.extend(
                    sending
                        .start(out, &name, &failures)
                        .map_err(|e| io("cannot start a connection".into(), e))?,
                );
            } else if b == me {
                receiving.insert(a, (name, receiving_end));
            }
        }
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        listener
            .set_nonblocking(true)
            .map_err(|e| io("cannot poll the data port".into(), e))?;
        while !receiving.is_empty() {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<String> =
                            receiving.keys().map(|w| w.to_string()).collect();
                        return Err(EngineError::Exchange {
                            channel: format!("worker {me}"),
                            reason: format!(
                                "workers {} did not connect within {ACCEPT_TIMEOUT:?}; check that they can reach this worker's data address",
                                missing.join(", ")
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => return Err(io("cannot accept a connection".into(), e)),
            };
            let Some((from, stream)) = greeted(stream, attempt) else {
                continue; // a stray or stale client
            };
            if let Some((name, end)) = receiving.remove(&from) {
                streams.push(
                    stream
                        .try_clone()
                        .map_err(|e| io("cannot keep a connection".into(), e))?,
                );
                threads.extend(
                    end.start(stream, &name, &failures)
                        .map_err(|e| io("cannot start a connection".into(), e))?,
                );
            }
        }
        Ok(RunningExchange {
            threads,
            streams,
            failures,
        })
    }
}

/// How long a worker waits for its peers' connections.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The sending worker of a new connection, if it greets for `attempt`.
fn greeted(mut stream: TcpStream, attempt: u32) -> Option<(usize, TcpStream)> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut hello = [0u8; 8];
    stream.read_exact(&mut hello).ok()?;
    stream.set_read_timeout(None).ok()?;
    let their_attempt = u32::from_le_bytes(hello[..4].try_into().ok()?);
    let from = u32::from_le_bytes(hello[4..].try_into().ok()?) as usize;
    (their_attempt == attempt).then_some((from, stream))
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
    /// The sockets, to close those a peer holds open.
    streams: Vec<TcpStream>,
    failures: Failures,
}

/// How long connections may stay open after this worker's tasks ended.
const LINGER: Duration = Duration::from_secs(2);

impl RunningExchange {
    /// Waits for the connections to close (once every task has let go of
    /// its channels); returns the first I/O failure, if any. A connection
    /// whose peer does not close it within [`LINGER`] (a frozen or cut-off
    /// worker) is closed from this end.
    pub(crate) fn finish(self) -> Option<String> {
        let deadline = Instant::now() + LINGER;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.threads.iter().any(|t| !t.is_finished()) {
            tracing::warn!(?LINGER, "a peer held its connection open; closing it");
            for s in &self.streams {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        for t in self.threads {
            let _ = t.join();
        }
        self.failures.first()
    }
}
