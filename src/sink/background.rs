//! Writing a sink's records on a thread of its own, so the pipeline goes on reading and
//! computing while a transaction is written.
//!
//! **Why.** A database write is on the pipeline's path: replaying two hours of a 300-series
//! topic into SQLite, the pipeline waited on its writes for most of the run while the second
//! core idled. Handed to this thread, a round's rows are written while the next rounds are
//! read; rows handed over meanwhile wait and go together in the next transaction, so a backlog
//! makes fewer, larger transactions (each one rewrites the index pages it touches) and a live
//! stream still writes each round as soon as it comes.
//!
//! **What stays the same.** `wait` (the sink's flush, before every checkpoint) returns once
//! everything handed over is written, so nothing is marked read before it is durable. A failed
//! write is reported by the next `hand_over` or `wait`, and what waited behind it is dropped:
//! the pipeline goes back to its checkpoint and writes it all again. At most [`MAX_WAITING`]
//! records wait; beyond that `hand_over` blocks until the thread takes them.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::record::Record;

/// Records waiting for the thread, at most: bounds memory when the database is slower than the
/// input (about 17 MB of window records).
pub const MAX_WAITING: usize = 100_000;

/// A thread writing batches of records with `write`, and the records waiting for it.
pub struct BackgroundWriter<E> {
    queue: Arc<Queue<E>>,
    thread: Option<JoinHandle<()>>,
}

struct Queue<E> {
    state: Mutex<State<E>>,
    changed: Condvar,
}

struct State<E> {
    /// Records handed over and not taken yet, in order.
    waiting: Vec<Record>,
    /// The thread is writing a batch.
    writing: bool,
    /// The first failure nobody has been told of.
    failed: Option<E>,
    /// The owner is gone: write what waits, then stop.
    closed: bool,
}

impl<E: Send + 'static> BackgroundWriter<E> {
    /// Starts the thread, named `name`, which writes each batch with `write`.
    pub fn start(
        name: &str,
        write: impl FnMut(&[Record]) -> Result<(), E> + Send + 'static,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                waiting: Vec::new(),
                writing: false,
                failed: None,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let thread = std::thread::Builder::new().name(name.into()).spawn({
            let queue = queue.clone();
            move || queue.write_until_closed(write)
        })?;
        Ok(BackgroundWriter {
            queue,
            thread: Some(thread),
        })
    }

    /// Queues `records` for the thread, after the last failure is reported (then nothing is
    /// queued). Blocks while more than [`MAX_WAITING`] records wait.
    pub fn hand_over(&self, records: impl Iterator<Item = Record>) -> Result<(), E> {
        let mut state = self.queue.lock();
        if let Some(failed) = state.failed.take() {
            return Err(failed);
        }
        state.waiting.extend(records);
        self.queue.changed.notify_all();
        while state.waiting.len() > MAX_WAITING && state.failed.is_none() {
            state = self.queue.wait(state);
        }
        Ok(())
    }

    /// Waits until everything handed over is written; the failure, if a write failed.
    pub fn wait(&self) -> Result<(), E> {
        let mut state = self.queue.lock();
        while (state.writing || !state.waiting.is_empty()) && state.failed.is_none() {
            state = self.queue.wait(state);
        }
        state.failed.take().map_or(Ok(()), Err)
    }

    /// Drops what waits and forgets a failure, once the batch being written is done: the
    /// pipeline went back to its checkpoint and will hand it all over again.
    pub fn discard(&self) {
        let mut state = self.queue.lock();
        state.waiting.clear();
        while state.writing {
            state = self.queue.wait(state);
        }
        state.failed = None;
    }
}

impl<E> Queue<E> {
    fn lock(&self) -> MutexGuard<'_, State<E>> {
        // Nothing the lock guards is left half-changed by a panic: take it as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State<E>>) -> MutexGuard<'a, State<E>> {
        self.changed
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The thread: takes everything waiting as one batch, writes it, and again, until closed
    /// with nothing left.
    fn write_until_closed(&self, mut write: impl FnMut(&[Record]) -> Result<(), E>) {
        let mut batch = Vec::new();
        loop {
            {
                let mut state = self.lock();
                while state.waiting.is_empty() && !state.closed {
                    state = self.wait(state);
                }
                if state.waiting.is_empty() {
                    return;
                }
                std::mem::swap(&mut batch, &mut state.waiting);
                state.writing = true;
            }
            let result = write(&batch);
            batch.clear();
            let mut state = self.lock();
            state.writing = false;
            if let Err(failed) = result {
                // What waits was to follow the failed rows; it is all written again.
                state.waiting.clear();
                state.failed.get_or_insert(failed);
            }
            self.changed.notify_all();
        }
    }
}

impl<E> Drop for BackgroundWriter<E> {
    /// Lets the thread write what was handed over, then stops it. A failure then has nobody to
    /// be told to; the pipeline only drops a sink after its last flush, or after a failure that
    /// it replays from the checkpoint.
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::record::DeadLetterRecord;

    fn record(offset: u64) -> Record {
        Record::DeadLetter(DeadLetterRecord {
            stream: "s".into(),
            source: "f".into(),
            partition: 0,
            offset,
            reason: "r".into(),
            payload: String::new(),
        })
    }

    fn offsets(records: &[Record]) -> Vec<u64> {
        records
            .iter()
            .map(|r| match r {
                Record::DeadLetter(d) => d.offset,
                _ => u64::MAX,
            })
            .collect()
    }

    type Started = mpsc::Receiver<Vec<u64>>;
    type Release = mpsc::Sender<()>;

    /// A writer whose every batch reports its offsets as it starts, then waits for a release
    /// and ends with `result` of those offsets.
    fn gated(
        result: impl Fn(&[u64]) -> Result<(), String> + Send + 'static,
    ) -> (BackgroundWriter<String>, Started, Release) {
        let (started, batches) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let writer = BackgroundWriter::start("test-writer", move |batch| {
            let offsets = offsets(batch);
            started.send(offsets.clone()).ok();
            gate.recv().ok();
            result(&offsets)
        })
        .unwrap();
        (writer, batches, release)
    }

    #[test]
    fn records_handed_over_while_a_batch_is_written_go_together_in_order() {
        let (writer, started, release) = gated(|_| Ok(()));
        writer.hand_over((0..2).map(record)).unwrap();
        assert_eq!(started.recv().unwrap(), [0, 1]);
        for offset in 2..5 {
            writer.hand_over(std::iter::once(record(offset))).unwrap();
        }
        release.send(()).unwrap();
        assert_eq!(started.recv().unwrap(), [2, 3, 4]);
        release.send(()).unwrap();
        writer.wait().unwrap();
        assert!(started.try_recv().is_err());
    }

    #[test]
    fn a_failed_write_is_reported_once_and_what_waited_behind_it_is_dropped() {
        let (writer, started, release) = gated(|offsets| match offsets {
            [0] => Err("disk full".to_owned()),
            _ => Ok(()),
        });
        writer.hand_over(std::iter::once(record(0))).unwrap();
        assert_eq!(started.recv().unwrap(), [0]);
        writer.hand_over(std::iter::once(record(1))).unwrap();
        release.send(()).unwrap();
        assert_eq!(writer.wait(), Err("disk full".to_owned()));
        // Reported once; record 1 was dropped, never written.
        assert_eq!(writer.wait(), Ok(()));
        assert!(started.try_recv().is_err());
        writer.hand_over(std::iter::once(record(2))).unwrap();
        assert_eq!(started.recv().unwrap(), [2]);
        release.send(()).unwrap();
        assert_eq!(writer.wait(), Ok(()));
    }

    #[test]
    fn a_failure_is_reported_by_the_next_hand_over_which_then_queues_nothing() {
        let (writer, started, release) = gated(|_| Err("gone".to_owned()));
        writer.hand_over(std::iter::once(record(0))).unwrap();
        assert_eq!(started.recv().unwrap(), [0]);
        release.send(()).unwrap();
        // The failure is recorded just after the release: wait for it to be.
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.queue.lock().failed.is_none() {
            assert!(Instant::now() < deadline, "no failure recorded");
            std::thread::sleep(Duration::from_millis(1));
        }
        let next = writer.hand_over(std::iter::once(record(1)));
        assert_eq!(next, Err("gone".to_owned()));
        writer.discard();
        assert_eq!(writer.wait(), Ok(()));
        assert!(started.try_recv().is_err(), "record 1 was queued");
    }

    #[test]
    fn dropping_the_writer_writes_what_was_handed_over_first() {
        let (written, batches) = mpsc::channel();
        let writer = BackgroundWriter::<String>::start("test-writer", move |batch| {
            std::thread::sleep(Duration::from_millis(20));
            written.send(offsets(batch)).ok();
            Ok(())
        })
        .unwrap();
        writer.hand_over((0..3).map(record)).unwrap();
        drop(writer);
        let all: Vec<u64> = batches.try_iter().flatten().collect();
        assert_eq!(all, [0, 1, 2]);
    }

    #[test]
    fn discard_drops_what_waits_once_the_batch_being_written_is_done() {
        let (writer, started, release) = gated(|_| Ok(()));
        writer.hand_over(std::iter::once(record(0))).unwrap();
        assert_eq!(started.recv().unwrap(), [0]);
        writer.hand_over(std::iter::once(record(1))).unwrap();
        std::thread::scope(|scope| {
            let discarding = scope.spawn(|| writer.discard());
            std::thread::sleep(Duration::from_millis(50));
            assert!(!discarding.is_finished(), "discard returned mid-write");
            release.send(()).unwrap();
            discarding.join().unwrap();
        });
        assert_eq!(writer.wait(), Ok(()));
        assert!(started.try_recv().is_err(), "record 1 was written");
    }
}
