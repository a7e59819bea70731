//! The socket source: newline-delimited JSON over TCP. Every connection is read on its own
//! thread into one bounded queue, so a fast client is slowed down by TCP backpressure rather than
//! growing memory; lines of all connections form one split (a socket cannot be replayed, so a
//! checkpoint stores no position for it).
//!
//! At most `max_connections` are read at once (one more is closed at once), a connection
//! silent for `idle_timeout` is closed, and a line longer than [`MAX_LINE`] is one dead letter
//! (its first bytes, then the rest of it skipped), never cut into pieces that each look like
//! broken JSON.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::interface::{Polled, RawMessage, Source, SourceError, SplitStatus};
use crate::checkpoint::SplitPosition;
use crate::types::{Duration as ConfigDuration, Invalid};

/// A `socket` source: where to listen for newline-delimited JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// Address and port, e.g. "127.0.0.1:9999". The source has no authentication: anyone who
    /// can connect can send events (`check-config` warns about addresses beyond loopback).
    pub listen: SocketAddr,
    /// Most connections read at once (each has a thread); one more is closed at once.
    /// Default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed; default "5m".
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: ConfigDuration,
}

fn default_max_connections() -> usize {
    64
}

fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(300)
}

impl SocketConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=4096).contains(&self.max_connections) {
            return Err(Invalid::new(
                "max_connections",
                "must be between 1 and 4096",
            ));
        }
        self.idle_timeout.positive("idle_timeout")?;
        Ok(())
    }
}

/// Lines queued between the connection threads and the pipeline.
const QUEUE: usize = 10_000;
/// Longest line accepted. A longer one is handed on as its first `MAX_LINE + 1` bytes, which
/// the decoder refuses as too long (see [`SourceConfig::max_message_bytes`]), and the rest of
/// it is skipped.
///
/// [`SourceConfig::max_message_bytes`]: super::SourceConfig::max_message_bytes
pub const MAX_LINE: usize = 1 << 20;

struct Line {
    peer: String,
    payload: Vec<u8>,
}

pub struct SocketSource {
    local: SocketAddr,
    lines: Receiver<Line>,
    offset: u64,
    current: Option<Line>,
}

impl SocketSource {
    /// Binds `config.listen` (e.g. `127.0.0.1:9999`) and accepts connections in the
    /// background.
    pub fn bind(config: &SocketConfig) -> Result<Self, SourceError> {
        let listen = config.listen;
        let listener = TcpListener::bind(listen).map_err(|source| SourceError::Io {
            path: format!("tcp://{listen}"),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| SourceError::Io {
            path: format!("tcp://{listen}"),
            source,
        })?;
        let (sender, lines) = sync_channel(QUEUE);
        let limits = Limits {
            max_connections: config.max_connections,
            idle_timeout: Duration::from_millis(config.idle_timeout.ms().max(1) as u64),
        };
        std::thread::Builder::new()
            .name("socket-accept".into())
            .spawn(move || accept_loop(listener, sender, limits))
            .map_err(|source| SourceError::Io {
                path: format!("tcp://{listen}"),
                source,
            })?;
        info!(%local, "Listening for NDJSON over TCP.");
        Ok(SocketSource {
            local,
            lines,
            offset: 0,
            current: None,
        })
    }
}

/// What keeps clients from exhausting the source's threads.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    idle_timeout: Duration,
}

fn accept_loop(listener: TcpListener, sender: SyncSender<Line>, limits: Limits) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if open.load(Ordering::Acquire) >= limits.max_connections {
                    // Dropped: closed at once, the client sees the end of the stream.
                    warn!(
                        peer = ?stream.peer_addr().ok(),
                        max_connections = limits.max_connections,
                        "Socket source connection refused: too many open."
                    );
                    continue;
                }
                if let Err(e) = stream.set_read_timeout(Some(limits.idle_timeout)) {
                    debug!(error = %e, "Cannot set the idle timeout; connection closed.");
                    continue;
                }
                open.fetch_add(1, Ordering::AcqRel);
                let (sender, count) = (sender.clone(), open.clone());
                let spawned = std::thread::Builder::new()
                    .name("socket-read".into())
                    .spawn(move || {
                        read_connection(stream, sender);
                        count.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    open.fetch_sub(1, Ordering::AcqRel);
                    warn!(error = %e, "Cannot start a connection reader.");
                }
            }
            Err(e) => debug!(error = %e, "Accept failed."),
        }
    }
}

fn read_connection(stream: TcpStream, sender: SyncSender<Line>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    debug!(%peer, "Connection opened.");
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer);
        let line = match read {
            Ok(0) => break,
            Ok(_) if buffer.len() > MAX_LINE && buffer.last() != Some(&b'\n') => {
                // Too long: its first bytes go on whole (the decoder refuses them by their
                // length), the rest is skipped up to the end of the line.
                if let Err(e) = reader.skip_until(b'\n') {
                    debug!(%peer, error = %e, "Connection failed.");
                    break;
                }
                &buffer[..]
            }
            Ok(_) => buffer.trim_ascii(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                debug!(%peer, "Connection idle for too long; closed.");
                break;
            }
            Err(e) => {
                debug!(%peer, error = %e, "Connection failed.");
                break;
            }
        };
        if line.is_empty() {
            continue;
        }
        let line = Line {
            peer: peer.clone(),
            payload: line.to_vec(),
        };
        if sender.send(line).is_err() {
            break; // the pipeline is gone
        }
    }
    debug!(%peer, "Connection closed.");
}

impl Source for SocketSource {
    /// A socket never ends; in batch mode it reads what is queued now and stops.
    fn next_message(&mut self) -> Result<Option<RawMessage<'_>>, SourceError> {
        match self.lines.try_recv() {
            Ok(line) => Ok(Some(self.accept(line))),
            Err(_) => Ok(None),
        }
    }

    fn poll_message(&mut self, timeout: Duration) -> Result<Polled<'_>, SourceError> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(Polled::Message(self.accept(line))),
            Err(RecvTimeoutError::Timeout) => Ok(Polled::Idle),
            Err(RecvTimeoutError::Disconnected) => Ok(Polled::End),
        }
    }

    /// Nothing to resume from (a socket cannot replay), so no positions; the status page still
    /// shows the address and how many lines came in.
    fn positions(&self) -> Vec<SplitPosition> {
        Vec::new()
    }

    fn split_status(&self) -> Vec<SplitStatus> {
        vec![SplitStatus {
            split: 0,
            position: SplitPosition {
                source: format!("tcp://{}", self.local),
                partition: 0,
                next_offset: self.offset + 1,
            },
            lag: None,
        }]
    }
}

impl SocketSource {
    fn accept(&mut self, line: Line) -> RawMessage<'_> {
        self.offset += 1;
        let current = self.current.insert(line);
        RawMessage {
            source: &current.peer,
            split: 0,
            partition: 0,
            offset: self.offset,
            payload: &current.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn source(max_connections: usize, idle: &str) -> SocketSource {
        SocketSource::bind(&SocketConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_connections,
            idle_timeout: idle.parse().unwrap(),
        })
        .unwrap()
    }

    /// The next `n` payloads the source hands on (within a few seconds).
    fn payloads(source: &mut SocketSource, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for _ in 0..n {
            match source.poll_message(Duration::from_secs(5)).unwrap() {
                Polled::Message(m) => got.push(m.payload.to_vec()),
                _ => break,
            }
        }
        got
    }

    #[test]
    fn a_line_too_long_is_one_message_and_the_lines_after_it_are_read() {
        let mut source = source(4, "5m");
        let mut client = TcpStream::connect(source.local).unwrap();
        let mut feed = b"{\"a\":1}\n".to_vec();
        feed.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE + 17));
        feed.extend_from_slice(b"\n{\"b\":2}\n");
        client.write_all(&feed).unwrap();
        let got = payloads(&mut source, 3);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], b"{\"a\":1}");
        assert_eq!(got[1].len(), MAX_LINE + 1, "cut to one byte past the limit");
        assert_eq!(got[2], b"{\"b\":2}");
        // A line of exactly the limit is an ordinary line.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        client.write_all(&exact).unwrap();
        assert_eq!(payloads(&mut source, 1)[0].len(), MAX_LINE);
    }

    /// Whether the server closes `stream` within `within`.
    fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        stream.set_read_timeout(Some(within)).unwrap();
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    #[test]
    fn connections_beyond_the_limit_are_closed_and_idle_ones_time_out() {
        let mut source = source(2, "700ms");
        let mut first = TcpStream::connect(source.local).unwrap();
        let mut second = TcpStream::connect(source.local).unwrap();
        first.write_all(b"{\"n\":1}\n").unwrap();
        second.write_all(b"{\"n\":2}\n").unwrap();
        assert_eq!(payloads(&mut source, 2).len(), 2, "both are read");
        let mut third = TcpStream::connect(source.local).unwrap();
        assert!(
            closed_within(&mut third, Duration::from_secs(5)),
            "a third connection is closed at once"
        );
        // Silent past the idle timeout: closed, which makes room for a new one.
        assert!(closed_within(&mut first, Duration::from_secs(5)));
        assert!(closed_within(&mut second, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(100));
        let mut fourth = TcpStream::connect(source.local).unwrap();
        fourth.write_all(b"{\"n\":4}\n").unwrap();
        assert_eq!(payloads(&mut source, 1), [b"{\"n\":4}".to_vec()]);
    }
}
