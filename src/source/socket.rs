//! The socket source: newline-delimited JSON over TCP. Every connection is read on its own
//! thread into one bounded queue, so a fast client is slowed down by TCP backpressure rather than
//! growing memory; lines of all connections form one split (a socket cannot be replayed, so a
//! checkpoint stores no position for it).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::{Polled, RawMessage, Source, SourceError, SplitStatus};
use crate::checkpoint::SplitPosition;

/// A `socket` source: where to listen for newline-delimited JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// Address and port, e.g. "127.0.0.1:9999".
    pub listen: SocketAddr,
}

/// Lines queued between the connection threads and the pipeline.
const QUEUE: usize = 10_000;
/// Longest line accepted; a longer one is cut and ends up a dead letter (invalid JSON).
const MAX_LINE: usize = 1 << 20;

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
    /// Binds `listen` (e.g. `127.0.0.1:9999`) and accepts connections in the background.
    pub fn bind(listen: SocketAddr) -> Result<Self, SourceError> {
        let listener = TcpListener::bind(listen).map_err(|source| SourceError::Io {
            path: format!("tcp://{listen}"),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| SourceError::Io {
            path: format!("tcp://{listen}"),
            source,
        })?;
        let (sender, lines) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("socket-accept".into())
            .spawn(move || accept_loop(listener, sender))
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

fn accept_loop(listener: TcpListener, sender: SyncSender<Line>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let sender = sender.clone();
                let spawned = std::thread::Builder::new()
                    .name("socket-read".into())
                    .spawn(move || read_connection(stream, sender));
                if let Err(e) = spawned {
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
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buffer)
        {
            Ok(0) => break,
            Ok(_) => {
                let line = buffer.trim_ascii();
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
            Err(e) => {
                debug!(%peer, error = %e, "Connection failed.");
                break;
            }
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
