//! The NDJSON sink: one file per record kind in a directory (`windows.ndjson`, `points.ndjson`,
//! `alerts.ndjson`, `late.ndjson`, `dead_letters.ndjson`, `joins.ndjson`).
//!
//! A fresh run truncates the files, so re-running `run --once` over the same input rewrites them
//! rather than appending a second copy; a run resuming from a checkpoint appends. Across a crash
//! this sink is at-least-once: what was written after the last checkpoint is written again (the
//! `db` sink upserts and is exactly-once). When the pipeline goes back to its checkpoint after
//! a failure, the files are cut back to their length at the last flush, so a failed write never
//! leaves half a line. Alerts are a changelog: the last line of an `id` is that alert's state.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::interface::{Sink, SinkError};
use crate::record::{Record, RecordKind};

/// An `ndjson` sink table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonConfig {
    /// The directory the files go to (created if missing).
    pub path: PathBuf,
}

pub struct NdjsonSink {
    dir: PathBuf,
    /// Opened by `begin`: truncated for a fresh run, appended to when resuming.
    files: Vec<OpenFile>,
}

struct OpenFile {
    kind: RecordKind,
    out: BufWriter<File>,
    /// Length after the last successful flush: what a rewind cuts the file back to.
    flushed_len: u64,
}

impl NdjsonSink {
    /// Creates the directory; the files are opened when the run begins.
    pub fn create(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(NdjsonSink {
            dir: dir.to_owned(),
            files: Vec::new(),
        })
    }

    fn error(&self, kind: RecordKind, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self
                .dir
                .join(format!("{}.ndjson", kind.collection()))
                .display()
                .to_string(),
            source,
        }
    }
}

impl Sink for NdjsonSink {
    fn begin(&mut self, resume: Option<u64>) -> Result<(), SinkError> {
        let resumed = resume.is_some();
        self.files.clear();
        for &kind in RecordKind::ALL {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(resumed)
                .truncate(!resumed)
                .open(self.dir.join(format!("{}.ndjson", kind.collection())))
                .map_err(|e| self.error(kind, e))?;
            let flushed_len = file.metadata().map_err(|e| self.error(kind, e))?.len();
            self.files.push(OpenFile {
                kind,
                out: BufWriter::with_capacity(1 << 16, file),
                flushed_len,
            });
        }
        Ok(())
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for record in records {
            let kind = record.kind();
            let Some(OpenFile { out, .. }) = self.files.iter_mut().find(|f| f.kind == kind) else {
                continue;
            };
            let written = match record {
                Record::Window(r) => serde_json::to_writer(&mut *out, r),
                Record::Point(r) => serde_json::to_writer(&mut *out, r),
                Record::Alert(r) => serde_json::to_writer(&mut *out, r),
                Record::Late(r) => serde_json::to_writer(&mut *out, r),
                Record::DeadLetter(r) => serde_json::to_writer(&mut *out, r),
                Record::Join(r) => serde_json::to_writer(&mut *out, r),
            };
            written
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| self.error(kind, e))?;
        }
        Ok(())
    }

    fn flush(&mut self, _epoch: u64) -> Result<(), SinkError> {
        for i in 0..self.files.len() {
            let file = &mut self.files[i];
            let flushed = file
                .out
                .flush()
                .and_then(|()| file.out.get_ref().metadata());
            match flushed {
                Ok(meta) => file.flushed_len = meta.len(),
                Err(e) => {
                    let kind = file.kind;
                    return Err(self.error(kind, e));
                }
            }
        }
        Ok(())
    }

    /// Drops what was buffered and cuts each file back to its last flush; the replay writes it
    /// again (at least once: a flush that preceded a failed checkpoint stays).
    fn rewind(&mut self, _resume: Option<u64>) -> Result<(), SinkError> {
        let mut failed = None;
        for file in std::mem::take(&mut self.files) {
            let OpenFile {
                kind,
                out,
                flushed_len,
            } = file;
            let (mut inner, _dropped) = out.into_parts();
            let cut = inner
                .set_len(flushed_len)
                .and_then(|()| inner.seek(SeekFrom::Start(flushed_len)));
            if let Err(e) = cut {
                // Keep the file open either way: the pipeline rewinds again before writing.
                failed.get_or_insert((kind, e));
            }
            self.files.push(OpenFile {
                kind,
                out: BufWriter::with_capacity(1 << 16, inner),
                flushed_len,
            });
        }
        match failed {
            Some((kind, e)) => Err(self.error(kind, e)),
            None => Ok(()),
        }
    }
}
