//! Taking messages out of librdkafka: inline (one `poll` per message on the pipeline's thread),
//! or read ahead by a thread of their own.
//!
//! **Why read ahead.** Consuming has a cost of its own (librdkafka's queue and its locks, freeing
//! each message, copying its payload): a third of a `run --once` from Kafka went there, on the
//! same thread as the engine, one message at a time. The read-ahead thread polls and copies
//! messages into batches while the engine works on the previous ones.
//!
//! **When it is safe.** Only for statically assigned partitions. Their fetch positions are set
//! once, when the source opens, and never move while it lives (a rewind opens a new source), so
//! a message read ahead is always the next one the pipeline would have polled. Under a consumer
//! group, assignments come and go and a read-ahead buffer would hold messages from before a
//! position moved; those sources poll inline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use super::context::LagContext;

/// Messages per batch the read-ahead thread hands over.
const BATCH: usize = 1024;
/// Batches waiting for the pipeline at most: bounds what is read ahead (~4,000 messages).
const BATCHES_AHEAD: usize = 4;
/// How long the read-ahead thread waits in one poll: how quickly it notices a stop.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// One message, copied out of librdkafka: its payload lives in the batch's byte buffer.
struct Entry {
    topic: u32,
    partition: i32,
    offset: i64,
    payload: std::ops::Range<usize>,
}

/// Messages in the order librdkafka gave them.
#[derive(Default)]
pub(super) struct Batch {
    /// The topics of this batch's messages (a handful): entries point into it.
    topics: Vec<String>,
    entries: Vec<Entry>,
    payloads: Vec<u8>,
}

impl Batch {
    fn push(&mut self, message: &impl Message) {
        let topic = match self.topics.iter().rposition(|t| t == message.topic()) {
            Some(index) => index,
            None => {
                self.topics.push(message.topic().to_owned());
                self.topics.len() - 1
            }
        };
        let payload = message.payload().unwrap_or_default();
        let start = self.payloads.len();
        self.payloads.extend_from_slice(payload);
        self.entries.push(Entry {
            topic: topic as u32,
            partition: message.partition(),
            offset: message.offset(),
            payload: start..self.payloads.len(),
        });
    }

    fn clear(&mut self) {
        self.topics.clear();
        self.entries.clear();
        self.payloads.clear();
    }
}

/// What the read-ahead thread hands over, in the order librdkafka gave it.
enum Fetched {
    Messages(Batch),
    Error(KafkaError),
}

/// A message taken out of librdkafka.
pub(super) struct Incoming<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub payload: &'a [u8],
}

/// Where the source takes its messages from.
pub(super) enum Fetcher {
    /// `poll` on the caller's thread, the message copied into `current`.
    Inline {
        current: Batch,
    },
    ReadAhead(ReadAhead),
}

impl Fetcher {
    pub fn inline() -> Fetcher {
        Fetcher::Inline {
            current: Batch::default(),
        }
    }

    /// The next message, waiting up to `timeout`; `None` when none came.
    pub fn next(
        &mut self,
        consumer: &BaseConsumer<LagContext>,
        timeout: Duration,
    ) -> Option<Result<Incoming<'_>, KafkaError>> {
        match self {
            Fetcher::Inline { current } => {
                current.clear();
                match consumer.poll(timeout)? {
                    // The message is copied and freed here: no `BorrowedMessage` outlives a
                    // call (dropping a consumer while one is alive blocks forever).
                    Ok(message) => current.push(&message),
                    Err(error) => return Some(Err(error)),
                }
                Some(Ok(entry(current, 0)))
            }
            Fetcher::ReadAhead(ahead) => ahead.next(timeout),
        }
    }

    /// The message `next` handed out last, while no other call has been made.
    pub fn last(&self) -> Option<Incoming<'_>> {
        match self {
            Fetcher::Inline { current } => (!current.entries.is_empty()).then(|| entry(current, 0)),
            Fetcher::ReadAhead(ahead) => ahead
                .taken
                .checked_sub(1)
                .map(|index| entry(&ahead.current, index)),
        }
    }
}

fn entry(batch: &Batch, index: usize) -> Incoming<'_> {
    let entry = &batch.entries[index];
    Incoming {
        topic: &batch.topics[entry.topic as usize],
        partition: entry.partition,
        offset: entry.offset,
        payload: &batch.payloads[entry.payload.clone()],
    }
}

/// A thread polling librdkafka into batches, and the batch being read.
pub(super) struct ReadAhead {
    stop: Arc<AtomicBool>,
    batches: Receiver<Fetched>,
    thread: Option<JoinHandle<()>>,
    current: Batch,
    /// Entries of `current` already handed out.
    taken: usize,
}

impl ReadAhead {
    /// Starts reading ahead on `consumer`, whose partitions are assigned and stay so.
    pub fn start(consumer: Arc<BaseConsumer<LagContext>>) -> std::io::Result<ReadAhead> {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, batches) = mpsc::sync_channel(BATCHES_AHEAD);
        let thread = std::thread::Builder::new()
            .name("kafka-read-ahead".into())
            .spawn({
                let stop = stop.clone();
                move || read_ahead(&consumer, &stop, &sender)
            })?;
        Ok(ReadAhead {
            stop,
            batches,
            thread: Some(thread),
            current: Batch::default(),
            taken: 0,
        })
    }

    fn next(&mut self, timeout: Duration) -> Option<Result<Incoming<'_>, KafkaError>> {
        if self.taken >= self.current.entries.len() {
            let fetched = if timeout.is_zero() {
                match self.batches.try_recv() {
                    Ok(fetched) => fetched,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
                }
            } else {
                match self.batches.recv_timeout(timeout) {
                    Ok(fetched) => fetched,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
                }
            };
            match fetched {
                Fetched::Messages(batch) => {
                    self.current = batch;
                    self.taken = 0;
                }
                Fetched::Error(error) => return Some(Err(error)),
            }
        }
        let index = self.taken;
        self.taken += 1;
        Some(Ok(entry(&self.current, index)))
    }
}

impl Drop for ReadAhead {
    /// Stops the thread before the consumer can go: it holds the consumer and may be inside a
    /// `poll`. What it read ahead is dropped; nobody asked for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Unblock a thread waiting for room in the channel, until it has seen the flag.
            while !thread.is_finished() {
                while self.batches.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = thread.join();
        }
    }
}

/// The thread: polls, copies messages into batches, and hands a batch over when it is full or
/// when librdkafka has nothing more at the moment (so a trickle is not held back).
fn read_ahead(
    consumer: &BaseConsumer<LagContext>,
    stop: &AtomicBool,
    batches: &SyncSender<Fetched>,
) {
    let mut batch = Batch::default();
    while !stop.load(Ordering::Relaxed) {
        let timeout = if batch.entries.is_empty() {
            POLL_SLICE
        } else {
            Duration::ZERO
        };
        let polled = consumer.poll(timeout);
        let hand_over = match &polled {
            Some(Ok(message)) => {
                batch.push(message);
                batch.entries.len() >= BATCH
            }
            Some(Err(_)) | None => !batch.entries.is_empty(),
        };
        let error = match polled {
            Some(Err(error)) => Some(error),
            // Freed here, on this thread, before anything else happens.
            Some(Ok(message)) => {
                drop(message);
                None
            }
            None => None,
        };
        if hand_over {
            let full = std::mem::take(&mut batch);
            if batches.send(Fetched::Messages(full)).is_err() {
                return;
            }
        }
        if let Some(error) = error {
            if batches.send(Fetched::Error(error)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;

    fn message(topic: &str, partition: i32, offset: i64, payload: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            None,
            topic.to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn a_batch_gives_back_each_message_as_it_was_copied_in() {
        let mut batch = Batch::default();
        let messages = [
            message("orders", 0, 7, "{\"a\":1}"),
            message("payments", 2, 3, ""),
            message("orders", 1, 9, "{\"b\":22}"),
        ];
        for m in &messages {
            batch.push(m);
        }
        assert_eq!(batch.topics, ["orders", "payments"]);
        for (index, m) in messages.iter().enumerate() {
            let got = entry(&batch, index);
            assert_eq!(
                (got.topic, got.partition, got.offset, got.payload),
                (m.topic(), m.partition(), m.offset(), m.payload().unwrap())
            );
        }
        batch.clear();
        batch.push(&messages[1]);
        assert_eq!(entry(&batch, 0).topic, "payments");
        assert_eq!(batch.entries.len(), 1);
    }
}
