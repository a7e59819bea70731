//! The NDJSON sink: one file per record kind in a directory (`windows.ndjson`, `points.ndjson`,
//! `alerts.ndjson`, `late.ndjson`, `dead_letters.ndjson`, `joins.ndjson`).
//!
//! Files are truncated when the sink opens, so re-running `run --once` over the same input
//! rewrites the same files rather than appending a second copy. Alerts are a changelog: the last
//! line of an `id` is that alert's state.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Sink, SinkError};
use crate::record::{Record, RecordKind};

pub struct NdjsonSink {
    dir: PathBuf,
    files: Vec<(RecordKind, BufWriter<File>)>,
}

impl NdjsonSink {
    pub fn create(dir: &Path) -> Result<Self, SinkError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SinkError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files = Vec::new();
        for kind in RecordKind::ALL {
            let path = dir.join(format!("{}.ndjson", kind.file_stem()));
            let file = File::create(&path).map_err(io(&path))?;
            files.push((kind, BufWriter::with_capacity(1 << 16, file)));
        }
        Ok(NdjsonSink {
            dir: dir.to_owned(),
            files,
        })
    }

    fn error(&self, kind: RecordKind, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self
                .dir
                .join(format!("{}.ndjson", kind.file_stem()))
                .display()
                .to_string(),
            source,
        }
    }
}

impl Sink for NdjsonSink {
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for record in records {
            let kind = record.kind();
            let Some((_, out)) = self.files.iter_mut().find(|(k, _)| *k == kind) else {
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

    fn flush(&mut self) -> Result<(), SinkError> {
        for i in 0..self.files.len() {
            let (kind, out) = &mut self.files[i];
            let kind = *kind;
            if let Err(e) = out.flush() {
                return Err(self.error(kind, e));
            }
        }
        Ok(())
    }
}
