//! Network channels over TCP with credit-based flow control.
//!
//! One connection per ordered pair of workers carries every channel from
//! the first to the second. The sending worker's end has a writer thread
//! (frames out: `[channel u32][length u32][bincode element]`, little
//! endian) and a credit reader; the receiving worker's end has a reader
//! that routes each frame to its channel's queue, and a credit writer
//! (`[channel u32][credits u32]`). The receiver first grants every channel
//! a window of credits; a task that takes an element returns its credit.
//! A sender without credit waits, so a channel never holds more than its
//! window and the reader never blocks: one slow channel does not hold up
//! another on the same connection.
//!
//! The threads block on their socket and their queues; they end when
//! their tasks let go of the channel ends (or the peer closes), and every
//! I/O failure is kept in [`Failures`] for the executor to report.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::runtime::exchange::{ChannelId, Frame, RemoteInput, RemoteOutput};

/// What a connection starts with, so that a stray client is refused.
const MAGIC: &[u8; 8] = b"EDDYNET1";
/// The largest frame a reader accepts (a batch of big records).
const MAX_FRAME: usize = 256 << 20;
/// Socket buffer of the readers and writers.
const IO_BUFFER: usize = 64 << 10;

/// I/O failures of a job run's connections, first one first.
#[derive(Clone, Default)]
pub(crate) struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    fn record(&self, what: &str, error: &io::Error) {
        tracing::warn!(connection = what, %error, "network channel failed");
        if let Ok(mut all) = self.0.lock() {
            all.push(format!("{what}: {error}"));
        }
    }

    /// The first failure, if any.
    pub(crate) fn first(&self) -> Option<String> {
        self.0.lock().ok().and_then(|all| all.first().cloned())
    }
}

/// The sending worker's end of a connection, being wired.
pub(crate) struct SendingEnd {
    frames_tx: Sender<Frame>,
    frames_rx: Receiver<Frame>,
    /// Per channel: where its granted credits go.
    credit_feeds: HashMap<ChannelId, Sender<()>>,
}

impl SendingEnd {
    pub(crate) fn new() -> Self {
        let (frames_tx, frames_rx) = crossbeam_channel::unbounded();
        SendingEnd {
            frames_tx,
            frames_rx,
            credit_feeds: HashMap::new(),
        }
    }

    /// The sending end of channel `id` on this connection.
    pub(crate) fn channel(&mut self, id: ChannelId, label: Arc<str>) -> RemoteOutput {
        let (feed, credits) = crossbeam_channel::unbounded();
        self.credit_feeds.insert(id, feed);
        RemoteOutput {
            channel: id,
            label,
            credits,
            frames: self.frames_tx.clone(),
        }
    }

    /// Starts the writer and the credit reader on `stream`.
    pub(crate) fn start(
        self,
        stream: TcpStream,
        name: &str,
        failures: &Failures,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let SendingEnd {
            frames_tx,
            frames_rx,
            credit_feeds,
        } = self;
        // Only the channels' senders keep the writer going.
        drop(frames_tx);
        stream.set_nodelay(true)?;
        let reading = stream.try_clone()?;
        Ok(vec![
            spawn(format!("{name}-send"), name, failures, stream, move |s| {
                write_frames(s, &frames_rx)
            })?,
            spawn(
                format!("{name}-credit"),
                name,
                failures,
                reading,
                move |s| read_credits(s, &credit_feeds),
            )?,
        ])
    }
}

/// The receiving worker's end of a connection, being wired.
pub(crate) struct ReceivingEnd {
    window: u32,
    queues: HashMap<ChannelId, Sender<Vec<u8>>>,
    credit_tx: Sender<ChannelId>,
    credit_rx: Receiver<ChannelId>,
}

impl ReceivingEnd {
    /// An end that grants every channel `window` credits.
    pub(crate) fn new(window: u32) -> Self {
        let (credit_tx, credit_rx) = crossbeam_channel::unbounded();
        ReceivingEnd {
            window,
            queues: HashMap::new(),
            credit_tx,
            credit_rx,
        }
    }

    /// The receiving end of channel `id` on this connection.
    pub(crate) fn channel(&mut self, id: ChannelId, label: Arc<str>) -> RemoteInput {
        // Unbounded, yet never longer than the window: senders need credit.
        let (tx, frames) = crossbeam_channel::unbounded();
        self.queues.insert(id, tx);
        RemoteInput {
            channel: id,
            label,
            frames,
            credit: self.credit_tx.clone(),
        }
    }

    /// Starts the reader and the credit writer on `stream`.
    pub(crate) fn start(
        self,
        stream: TcpStream,
        name: &str,
        failures: &Failures,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let ReceivingEnd {
            window,
            queues,
            credit_tx,
            credit_rx,
        } = self;
        drop(credit_tx);
        stream.set_nodelay(true)?;
        let writing = stream.try_clone()?;
        let mut channels: Vec<ChannelId> = queues.keys().copied().collect();
        channels.sort_unstable();
        Ok(vec![
            spawn(format!("{name}-recv"), name, failures, stream, move |s| {
                read_frames(s, &queues)
            })?,
            spawn(format!("{name}-grant"), name, failures, writing, move |s| {
                write_credits(s, &channels, window, &credit_rx)
            })?,
        ])
    }
}

/// Runs `work` on its own thread; a failure is recorded and closes the
/// socket both ways, so the peer's threads end too.
fn spawn(
    thread: String,
    name: &str,
    failures: &Failures,
    stream: TcpStream,
    work: impl FnOnce(&TcpStream) -> io::Result<()> + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let (name, failures) = (name.to_owned(), failures.clone());
    std::thread::Builder::new().name(thread).spawn(move || {
        if let Err(e) = work(&stream) {
            failures.record(&name, &e);
            let _ = stream.shutdown(Shutdown::Both);
        }
    })
}

fn write_frames(stream: &TcpStream, frames: &Receiver<Frame>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(IO_BUFFER, stream);
    out.write_all(MAGIC)?;
    out.flush()?;
    while let Ok(first) = frames.recv() {
        write_frame(&mut out, &first)?;
        // Write what else is queued, then flush once.
        while let Ok(next) = frames.try_recv() {
            write_frame(&mut out, &next)?;
        }
        out.flush()?;
    }
    stream.shutdown(Shutdown::Write)
}

fn write_frame(out: &mut impl Write, frame: &Frame) -> io::Result<()> {
    let len = u32::try_from(frame.payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a batch of {} bytes is over the {MAX_FRAME}-byte frame limit; lower --batch-size",
                    frame.payload.len()
                ),
            )
        })?;
    out.write_all(&frame.channel.to_le_bytes())?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&frame.payload)
}

/// Reads 8 bytes; `None` at a clean end of stream before the first.
fn read_pair(input: &mut impl Read) -> io::Result<Option<(u32, u32)>> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    Ok(Some((word(0), word(4))))
}

fn read_frames(stream: &TcpStream, queues: &HashMap<ChannelId, Sender<Vec<u8>>>) -> io::Result<()> {
    let mut input = BufReader::with_capacity(IO_BUFFER, stream);
    let mut magic = [0u8; MAGIC.len()];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("the peer is not an Eddy worker of this version"));
    }
    while let Some((channel, len)) = read_pair(&mut input)? {
        let len = len as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!(
                "a frame of {len} bytes is over the {MAX_FRAME}-byte limit"
            )));
        }
        let queue = queues
            .get(&channel)
            .ok_or_else(|| invalid(format!("a frame for unknown channel {channel}")))?;
        let mut payload = vec![0u8; len];
        input.read_exact(&mut payload)?;
        // A task that has gone needs no more input; keep reading the others.
        let _ = queue.send(payload);
    }
    Ok(())
}

fn write_credits(
    stream: &TcpStream,
    channels: &[ChannelId],
    window: u32,
    returned: &Receiver<ChannelId>,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(IO_BUFFER, stream);
    for &channel in channels {
        out.write_all(&channel.to_le_bytes())?;
        out.write_all(&window.to_le_bytes())?;
    }
    out.flush()?;
    let mut due: HashMap<ChannelId, u32> = HashMap::new();
    while let Ok(first) = returned.recv() {
        *due.entry(first).or_default() += 1;
        while let Ok(next) = returned.try_recv() {
            *due.entry(next).or_default() += 1;
        }
        for (channel, credits) in due.drain() {
            out.write_all(&channel.to_le_bytes())?;
            out.write_all(&credits.to_le_bytes())?;
        }
        out.flush()?;
    }
    stream.shutdown(Shutdown::Write)
}

fn read_credits(stream: &TcpStream, feeds: &HashMap<ChannelId, Sender<()>>) -> io::Result<()> {
    let mut input = BufReader::with_capacity(IO_BUFFER, stream);
    while let Some((channel, credits)) = read_pair(&mut input)? {
        let feed = feeds
            .get(&channel)
            .ok_or_else(|| invalid(format!("credit for unknown channel {channel}")))?;
        for _ in 0..credits {
            // A task that has gone sends no more.
            let _ = feed.send(());
        }
    }
    Ok(())
}

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}
