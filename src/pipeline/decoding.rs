//! Decoding ahead of the engine: on a machine with a core to spare, a thread of the stream's
//! own turns the next batch of messages into events while the engine processes the batch
//! before it.
//!
//! JSON decoding is a quarter to a half of the engine thread's work (more for queries without
//! per-point analytics), and it needs nothing of the engine's state, so it is the part of the
//! work that can move to another core without changing a single record: the engine still takes
//! every event in the order read, with the same origin, and an event that cannot be decoded
//! still becomes a dead letter in its place.
//!
//! A [`MessageBatch`] carries the messages (their payloads copied side by side) to the thread
//! and the decoded events back, their strings in one buffer; batches are reused, so a steady
//! stream allocates nothing per message.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::event::{Decoder, Event};
use crate::source::RawMessage;

/// Payload bytes a reused batch keeps room for at most: a batch of 1,024 ordinary events needs
/// a few hundred kilobytes; one of megabyte-sized messages should not pin a gigabyte for good.
const KEPT_PAYLOAD_BYTES: usize = 16 << 20;

/// Where a message of a batch came from, and where its payload ends in the batch's payloads.
#[derive(Debug, Clone, Copy)]
struct MessageOrigin {
    /// Index into [`MessageBatch::sources`].
    source: u32,
    split: u32,
    partition: u32,
    offset: u64,
    payload_end: usize,
}

/// A decoded event whose strings sit in [`MessageBatch::strings`].
#[derive(Debug, Clone)]
struct DecodedEvent {
    ts: i64,
    value: f64,
    series: Range<u32>,
    id: Option<Range<u32>>,
    join_key: Option<Range<u32>>,
}

/// What a message became: an event, or the reason it could not be one.
#[derive(Debug, Clone)]
enum Decoded {
    Event(DecodedEvent),
    Rejected(String),
}

/// A batch of messages read from one stream's source, and once decoded, their events.
#[derive(Debug, Default)]
pub struct MessageBatch {
    /// The distinct sources (file paths, topics) of the batch's messages, in order of first use.
    sources: Vec<String>,
    payloads: Vec<u8>,
    messages: Vec<MessageOrigin>,
    /// The decoded events' strings (series labels, ids, join keys), side by side.
    strings: String,
    /// One entry per message once [`MessageBatch::decode`] ran, empty before.
    decoded: Vec<Decoded>,
}

/// A message of a batch as the engine takes it.
pub struct BatchMessage<'a> {
    /// The message as the source gave it.
    pub raw: RawMessage<'a>,
    /// The event, or why the payload is not one.
    pub event: Result<Event<'a>, &'a str>,
}

impl MessageBatch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Empties the batch, keeping its buffers for the next (unless a burst of large messages
    /// grew them past [`KEPT_PAYLOAD_BYTES`]: that memory goes back).
    pub fn clear(&mut self) {
        self.sources.clear();
        if self.payloads.capacity() > KEPT_PAYLOAD_BYTES {
            self.payloads = Vec::new();
        }
        self.payloads.clear();
        self.messages.clear();
        self.strings.clear();
        self.decoded.clear();
    }

    /// Adds a copy of `message`.
    pub fn push(&mut self, message: &RawMessage<'_>) {
        let source = match self.sources.iter().rposition(|s| s == message.source) {
            Some(index) => index,
            None => {
                self.sources.push(message.source.to_owned());
                self.sources.len() - 1
            }
        };
        self.payloads.extend_from_slice(message.payload);
        self.messages.push(MessageOrigin {
            source: source as u32,
            split: message.split,
            partition: message.partition,
            offset: message.offset,
            payload_end: self.payloads.len(),
        });
    }

    /// Decodes every message with `decoder`.
    pub fn decode(&mut self, decoder: &Decoder) {
        let MessageBatch {
            payloads,
            messages,
            strings,
            decoded,
            ..
        } = self;
        strings.clear();
        decoded.clear();
        let mut start = 0;
        for message in messages.iter() {
            let payload = &payloads[start..message.payload_end];
            start = message.payload_end;
            decoded.push(match decoder.decode(payload) {
                Ok(event) => Decoded::Event(DecodedEvent {
                    ts: event.ts,
                    value: event.value,
                    series: keep(strings, &event.series),
                    id: event.id.as_deref().map(|id| keep(strings, id)),
                    join_key: event.join_key.as_deref().map(|key| keep(strings, key)),
                }),
                Err(bad) => Decoded::Rejected(bad.to_string()),
            });
        }
    }

    /// The messages with their events, in the order read. Call after [`MessageBatch::decode`].
    pub fn iter(&self) -> impl Iterator<Item = BatchMessage<'_>> {
        debug_assert_eq!(self.decoded.len(), self.messages.len(), "decode first");
        let mut start = 0;
        self.messages
            .iter()
            .zip(&self.decoded)
            .map(move |(message, decoded)| {
                let payload = &self.payloads[start..message.payload_end];
                start = message.payload_end;
                let text = |span: &Range<u32>| {
                    Cow::Borrowed(&self.strings[span.start as usize..span.end as usize])
                };
                BatchMessage {
                    raw: RawMessage {
                        source: &self.sources[message.source as usize],
                        split: message.split,
                        partition: message.partition,
                        offset: message.offset,
                        payload,
                    },
                    event: match decoded {
                        Decoded::Event(event) => Ok(Event {
                            ts: event.ts,
                            series: text(&event.series),
                            value: event.value,
                            id: event.id.as_ref().map(text),
                            join_key: event.join_key.as_ref().map(text),
                        }),
                        Decoded::Rejected(reason) => Err(reason.as_str()),
                    },
                }
            })
    }
}

/// Appends `text` to `strings` and says where it is.
fn keep(strings: &mut String, text: &str) -> Range<u32> {
    let start = strings.len() as u32;
    strings.push_str(text);
    start..strings.len() as u32
}

/// The decoding thread of one stream could not take or give back a batch: it stopped, which
/// only a bug can make it do (decoding never panics on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the decoding thread stopped")]
pub struct DecoderStopped;

/// Batches travelling to the decoding thread at most: one being decoded, one waiting.
const IN_FLIGHT: usize = 2;

/// A thread that decodes batches in the order they are sent, and sends them back.
pub struct DecodeAhead {
    to_thread: Option<SyncSender<MessageBatch>>,
    from_thread: Receiver<MessageBatch>,
    thread: Option<JoinHandle<()>>,
}

impl DecodeAhead {
    /// Starts the thread, named after the stream.
    pub fn spawn(decoder: Decoder, stream: &str) -> std::io::Result<Self> {
        let (to_thread, batches) = mpsc::sync_channel::<MessageBatch>(IN_FLIGHT);
        let (decoded, from_thread) = mpsc::sync_channel(IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name(format!("decode-{stream}"))
            .spawn(move || {
                for mut batch in batches {
                    batch.decode(&decoder);
                    if decoded.send(batch).is_err() {
                        return;
                    }
                }
            })?;
        Ok(DecodeAhead {
            to_thread: Some(to_thread),
            from_thread,
            thread: Some(thread),
        })
    }

    /// Hands `batch` to the thread. Never blocks while fewer than two batches are out.
    pub fn send(&self, batch: MessageBatch) -> Result<(), DecoderStopped> {
        self.to_thread
            .as_ref()
            .ok_or(DecoderStopped)?
            .send(batch)
            .map_err(|_| DecoderStopped)
    }

    /// The oldest batch sent, decoded; waits for it.
    pub fn recv(&self) -> Result<MessageBatch, DecoderStopped> {
        self.from_thread.recv().map_err(|_| DecoderStopped)
    }
}

impl Drop for DecodeAhead {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.to_thread.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldMapping;

    fn decoder() -> Decoder {
        Decoder::new(FieldMapping {
            time: "ts".into(),
            time_format: Default::default(),
            series: Some("s".into()),
            group_by: vec!["host".into()],
            value: Some("v".into()),
            id: Some("id".into()),
            join_key: None,
        })
    }

    fn message<'a>(source: &'a str, offset: u64, payload: &'a str) -> RawMessage<'a> {
        RawMessage {
            source,
            split: offset as u32 % 3,
            partition: offset as u32 % 3,
            offset,
            payload: payload.as_bytes(),
        }
    }

    const PAYLOADS: [&str; 5] = [
        r#"{"ts":1000,"s":"cpu","host":"a/b","v":1.5,"id":"x1"}"#,
        r#"{"ts":"soon","s":"cpu","host":"a","v":1}"#,
        r#"{"ts":2000,"s":"m\u00e9m","host":"c","v":-2,"id":7}"#,
        "not json",
        r#"{"ts":3000,"s":"disk","host":"d","v":3e2,"id":"x3"}"#,
    ];

    /// A batch gives back each message with its origin and exactly what decoding it alone
    /// gives, in order, whichever thread decoded it, and the same again when reused.
    #[test]
    fn a_batch_gives_what_decoding_each_message_gives() {
        let decoder = decoder();
        let ahead = DecodeAhead::spawn(decoder.clone(), "t").unwrap();
        let mut batch = MessageBatch::default();
        for round in 0..2 {
            batch.clear();
            for (i, payload) in PAYLOADS.iter().enumerate() {
                let source = if i == 3 { "other" } else { "topic" };
                batch.push(&message(source, (round * 10 + i) as u64, payload));
            }
            ahead.send(batch).unwrap();
            batch = ahead.recv().unwrap();
            assert_eq!(batch.iter().count(), PAYLOADS.len());
            for (i, got) in batch.iter().enumerate() {
                let offset = (round * 10 + i) as u64;
                assert_eq!(got.raw.source, if i == 3 { "other" } else { "topic" });
                assert_eq!(
                    (got.raw.split, got.raw.partition, got.raw.offset),
                    (offset as u32 % 3, offset as u32 % 3, offset)
                );
                assert_eq!(got.raw.payload, PAYLOADS[i].as_bytes());
                let alone = decoder.decode(PAYLOADS[i].as_bytes());
                match (&got.event, &alone) {
                    (Ok(event), Ok(expected)) => assert_eq!(event, expected),
                    (Err(reason), Err(expected)) => assert_eq!(*reason, expected.to_string()),
                    _ => panic!("message {i}: {:?} against {:?}", got.event, alone),
                }
            }
        }
        let rejected = batch.iter().filter(|m| m.event.is_err()).count();
        assert_eq!(rejected, 2, "a bad time and a line that is not JSON");
    }

    /// A batch keeps its buffers for the next, but not the room a burst of huge messages took.
    #[test]
    fn a_reused_batch_gives_back_the_room_of_huge_messages() {
        let mut batch = MessageBatch::default();
        batch.push(&message("t", 1, PAYLOADS[0]));
        batch.clear();
        assert!(
            batch.payloads.capacity() >= PAYLOADS[0].len(),
            "ordinary room kept"
        );
        let huge = "x".repeat(KEPT_PAYLOAD_BYTES + 1);
        batch.push(&message("t", 2, &huge));
        batch.clear();
        assert_eq!(batch.payloads.capacity(), 0);
        assert!(batch.is_empty());
    }

    /// Batches come back in the order sent, and dropping the handle ends the thread.
    #[test]
    fn batches_come_back_in_order() {
        let decoder = decoder();
        let ahead = DecodeAhead::spawn(decoder, "t").unwrap();
        let mut spare: Vec<MessageBatch> = Vec::new();
        for n in 0..50u64 {
            let mut batch = spare.pop().unwrap_or_default();
            batch.clear();
            let payload = format!(r#"{{"ts":{n},"s":"a","host":"h","v":{n},"id":"i{n}"}}"#);
            batch.push(&message("t", n, &payload));
            ahead.send(batch).unwrap();
            if n % 2 == 1 {
                for expected in [n - 1, n] {
                    let back = ahead.recv().unwrap();
                    let got = back.iter().next().unwrap();
                    assert_eq!(got.raw.offset, expected);
                    assert_eq!(got.event.as_ref().unwrap().ts, expected as i64);
                    drop(got);
                    spare.push(back);
                }
            }
        }
        drop(ahead);
    }
}
