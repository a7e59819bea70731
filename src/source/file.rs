//! The file source: newline-delimited JSON from one file, or from every `*.ndjson`/`*.jsonl`
//! file of a directory in name order, read as a single partition.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::interface::{Polled, RawMessage, Source, SourceError};
use crate::checkpoint::SplitPosition;

/// A `file` source: one `.ndjson`/`.jsonl` file, or every such file of a directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: PathBuf,
}

/// Reads NDJSON lines. Blank lines are skipped; the offset of a message is its line number.
pub struct FileSource {
    files: std::vec::IntoIter<PathBuf>,
    reader: Option<BufReader<File>>,
    name: String,
    line_number: u64,
    buffer: Vec<u8>,
    /// The current line within `buffer`, without surrounding white space.
    line: std::ops::Range<usize>,
    /// From a checkpoint: files before this one are done, and in it lines before this number.
    resume: Option<SplitPosition>,
    skip_below_line: u64,
    /// Following (`run`): the directory to rescan for new files, `None` for a single file.
    follow_dir: Option<PathBuf>,
    following: bool,
    /// Bytes of a line whose newline has not been written yet (following only).
    partial: Vec<u8>,
}

impl FileSource {
    /// Opens a file, or lists a directory's `.ndjson`/`.jsonl` files (sorted by name), and
    /// skips what a checkpoint's position says was read already.
    pub fn open(path: &Path, resume: Option<SplitPosition>) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let files = if path.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io)? {
                let file = entry.map_err(io)?.path();
                let wanted = file
                    .extension()
                    .is_some_and(|ext| ext == "ndjson" || ext == "jsonl");
                if wanted && file.is_file() {
                    files.push(file);
                }
            }
            if files.is_empty() {
                return Err(SourceError::Empty {
                    path: path.display().to_string(),
                });
            }
            files.sort();
            files
        } else {
            // Fail now, not at the first read, when the file is missing.
            std::fs::metadata(path).map_err(io)?;
            vec![path.to_owned()]
        };
        Ok(FileSource {
            files: files.into_iter(),
            reader: None,
            name: String::new(),
            line_number: 0,
            buffer: Vec::with_capacity(4096),
            line: 0..0,
            resume,
            skip_below_line: 0,
            follow_dir: path.is_dir().then(|| path.to_owned()),
            following: false,
            partial: Vec::new(),
        })
    }

    /// Keeps reading after the end: lines appended to the last file, and files added to the
    /// directory whose names sort after it (like Spark's file source, files are expected to be
    /// added in name order).
    pub fn follow(mut self) -> Self {
        self.following = true;
        self
    }

    /// New files of the followed directory that sort after the current one.
    fn rescan(&mut self) -> Result<bool, SourceError> {
        let Some(dir) = &self.follow_dir else {
            return Ok(false);
        };
        let io = |source| SourceError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut newer: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let file = entry.map_err(io)?.path();
            let wanted = file
                .extension()
                .is_some_and(|ext| ext == "ndjson" || ext == "jsonl");
            if wanted && file.is_file() && file.display().to_string() > self.name {
                newer.push(file);
            }
        }
        newer.sort();
        let found = !newer.is_empty();
        if found {
            self.files = newer.into_iter();
        }
        Ok(found)
    }

    fn current_message(&self) -> RawMessage<'_> {
        RawMessage {
            source: &self.name,
            split: 0,
            partition: 0,
            offset: self.line_number,
            payload: &self.buffer[self.line.clone()],
        }
    }

    /// Reads up to the next non-blank line; `false` at the end of the last file (for now, when
    /// following).
    fn advance(&mut self) -> Result<bool, SourceError> {
        loop {
            let reader = match self.reader.as_mut() {
                Some(reader) => reader,
                None => {
                    let Some(path) = self.files.next() else {
                        return Ok(false);
                    };
                    self.name = path.display().to_string();
                    self.skip_below_line = 0;
                    if let Some(resume) = &self.resume {
                        match self.name.as_str().cmp(resume.source.as_str()) {
                            std::cmp::Ordering::Less => continue,
                            std::cmp::Ordering::Equal => self.skip_below_line = resume.next_offset,
                            std::cmp::Ordering::Greater => {}
                        }
                        self.resume = None;
                    }
                    let file = File::open(&path).map_err(|source| SourceError::Io {
                        path: self.name.clone(),
                        source,
                    })?;
                    self.line_number = 0;
                    self.reader.insert(BufReader::with_capacity(1 << 16, file))
                }
            };
            self.buffer.clear();
            self.buffer.append(&mut self.partial);
            let read = reader
                .read_until(b'\n', &mut self.buffer)
                .map_err(|source| SourceError::Io {
                    path: self.name.clone(),
                    source,
                })?;
            let complete = self.buffer.last() == Some(&b'\n');
            if self.following && !complete {
                // At the end for now: a newer file ends this one, otherwise wait for more.
                if self.files.len() == 0 && !self.rescan()? {
                    std::mem::swap(&mut self.partial, &mut self.buffer);
                    return Ok(false);
                }
                if self.buffer.is_empty() {
                    self.reader = None;
                    continue;
                }
            } else if read == 0 && self.buffer.is_empty() {
                self.reader = None;
                continue;
            }
            self.line_number += 1;
            if self.line_number < self.skip_below_line {
                continue;
            }
            let start = self
                .buffer
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buffer.len());
            let end = self
                .buffer
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(start, |i| i + 1);
            if start < end {
                self.line = start..end;
                return Ok(true);
            }
        }
    }
}

impl Source for FileSource {
    fn poll_message(&mut self, timeout: std::time::Duration) -> Result<Polled<'_>, SourceError> {
        if !self.following {
            return Ok(match self.next_message()? {
                Some(message) => Polled::Message(message),
                None => Polled::End,
            });
        }
        if !self.advance()? {
            // Nothing new: do not spin on the file system.
            std::thread::sleep(timeout.min(std::time::Duration::from_millis(200)));
            return Ok(Polled::Idle);
        }
        Ok(Polled::Message(self.current_message()))
    }

    fn positions(&self) -> Vec<SplitPosition> {
        if let Some(resume) = &self.resume {
            return vec![resume.clone()];
        }
        if self.name.is_empty() {
            return Vec::new();
        }
        vec![SplitPosition {
            source: self.name.clone(),
            partition: 0,
            next_offset: self.line_number + 1,
        }]
    }

    fn next_message(&mut self) -> Result<Option<RawMessage<'_>>, SourceError> {
        if !self.advance()? {
            return Ok(None);
        }
        Ok(Some(self.current_message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_directory_files_in_name_order_skipping_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.ndjson"), "{\"n\":3}\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"n\":1}\r\n\n  \n{\"n\":2}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let mut source = FileSource::open(dir.path(), None).unwrap();
        let mut seen = Vec::new();
        while let Some(msg) = source.next_message().unwrap() {
            let file = Path::new(msg.source)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            seen.push((
                file,
                msg.offset,
                String::from_utf8(msg.payload.to_vec()).unwrap(),
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("a.jsonl".into(), 1, "{\"n\":1}".into()),
                ("a.jsonl".into(), 4, "{\"n\":2}".into()),
                ("b.ndjson".into(), 1, "{\"n\":3}".into()),
            ]
        );
    }

    #[test]
    fn missing_paths_and_empty_directories_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FileSource::open(dir.path(), None),
            Err(SourceError::Empty { .. })
        ));
        assert!(matches!(
            FileSource::open(&dir.path().join("nope.ndjson"), None),
            Err(SourceError::Io { .. })
        ));
    }
}
