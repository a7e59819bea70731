//! The Parquet sink: a data lake of Parquet files per record kind, partitioned by the date and
//! hour of event time, on any object store (`file:///...`, `s3://...`, `hdfs://...`: see
//! `lake_store`). Layout:
//!
//! ```text
//! <url>/_tidewatch_lake.json                                          ({"layout": 2})
//! <url>/record=window/date=2026-11-24/hour=13/part-<pipeline>-<epoch>-<n>.parquet
//! <url>/record=dead_letter/part-<pipeline>-<epoch>-<n>.parquet        (no event time)
//! ```
//!
//! Windows are placed by `window_start`, points and late events by `ts`, alerts by
//! `episode_start` (every version of an alert in one place), joins by `left_ts`.
//!
//! **As Spark and DuckDB read it** (layout 2): the record-kind directory is `record=`, a name no
//! record field has, so hive-style partition discovery cannot shadow a column (window records
//! have their own `kind`). Event times (`ts`, `window_start`, `window_end`, `episode_start`,
//! `acked_at`, `watermark`, `left_ts`, `right_ts`) are Parquet timestamps in milliseconds,
//! adjusted to UTC; counts are signed 64-bit. A lake of layout 1 (`kind=` directories, times as
//! integers) is refused rather than mixed with the new files.
//!
//! **Files and exactly-once.** Records are buffered and written when the pipeline checkpoints
//! (that is the time-based roll) or when a partition's buffer reaches `max_rows` (the size-based
//! roll). Each file is uploaded whole with one `put` — a local or HDFS file is written under a
//! temporary name and renamed, an S3 object appears complete — so a reader never sees half a
//! file, and `begin` deletes the temporary files a killed run left. File
//! names carry the checkpoint epoch they belong to. When a run resumes from checkpoint `k`, it
//! first deletes this pipeline's files of epochs after `k` (written by the crashed run after its
//! last checkpoint), then writes them again: the lake ends with exactly the rows of a run that
//! never stopped. A run that starts without a checkpoint deletes all of this pipeline's files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, FieldRef, TimeUnit};
use futures_util::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};
use thiserror::Error;
use tracing::{debug, info};

use super::interface::{Sink, SinkError};
use super::lake_store::{LakeError, LakeStore};
use crate::record::{
    AlertRecord, DeadLetterRecord, JoinRecord, LateRecord, PointRecord, Record, RecordKind,
    WindowRecord,
};
use crate::types::{Duration, Invalid};

/// A `parquet` sink table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// `file:///abs/path`, a plain (relative) directory, `s3://bucket/prefix`,
    /// `hdfs://namenode:port/path` or `viewfs://cluster/path`.
    pub url: String,
    /// Rows per partition after which a file is written before the next checkpoint
    /// (default 1,000,000).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Longest any one operation on the store (an upload, a listing, a delete) may take before
    /// it fails (default 2 minutes), so a store that stops answering fails the write instead
    /// of hanging the pipeline.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_max_rows() -> usize {
    1_000_000
}

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

impl ParquetConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_rows == 0 {
            return Err(Invalid::new("max_rows", "must be at least 1"));
        }
        lake_url(&self.url).map_err(|message| Invalid::new("url", message))?;
        self.timeout.positive("timeout")?;
        Ok(())
    }
}

/// A lake location as a URL: URLs pass through, a plain path becomes an absolute `file://` URL.
fn lake_url(text: &str) -> Result<String, String> {
    if text.contains("://") {
        return url::Url::parse(text)
            .map(|u| u.to_string())
            .map_err(|e| format!("invalid URL {text:?}: {e}"));
    }
    let absolute = std::path::absolute(text).map_err(|e| format!("{text:?}: {e}"))?;
    url::Url::from_directory_path(&absolute)
        .map(|u| u.to_string())
        .map_err(|()| format!("{text:?} is not a usable directory path"))
}

#[derive(Debug, Error)]
pub enum ParquetError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("arrow conversion")]
    Arrow(#[from] serde_arrow::Error),
    #[error("parquet encoding")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(
        "the lake at {url} has files of layout 1 (kind=... directories, times as integers); \
         this version writes layout {LAYOUT}: move them aside or write to a new URL (see \
         Upgrading in docs/operations.md)"
    )]
    OldLayout { url: String },
}

/// Version of the lake's layout, written to [`MARKER`] at its root.
const LAYOUT: u32 = 2;
/// Spark, Hive and DuckDB skip files whose names start with `_` when reading a directory.
const MARKER: &str = "_tidewatch_lake.json";

/// Event-time fields, written as Parquet timestamps (ms, UTC) rather than bare integers.
const TIME_FIELDS: &[&str] = &[
    "ts",
    "window_start",
    "window_end",
    "episode_start",
    "acked_at",
    "watermark",
    "left_ts",
    "right_ts",
];

/// Where in the lake a record goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Partition {
    kind: RecordKind,
    /// `date=.../hour=..`, empty for dead letters.
    time: String,
}

pub struct ParquetSink {
    lake: LakeStore,
    pipeline: String,
    max_rows: usize,
    /// Epoch of the files being written: one more than the last checkpoint's.
    epoch: u64,
    /// Files written so far in this epoch, per partition (the `<n>` of the name).
    files_in_epoch: BTreeMap<Partition, u32>,
    pending: BTreeMap<Partition, Vec<Record>>,
    schemas: BTreeMap<RecordKind, Vec<FieldRef>>,
}

impl ParquetSink {
    pub fn create(config: &ParquetConfig, pipeline: &str) -> Result<Self, ParquetError> {
        let url = lake_url(&config.url).map_err(|reason| LakeError::Url {
            url: config.url.clone(),
            reason,
        })?;
        let timeout = StdDuration::from_millis(config.timeout.ms().unsigned_abs());
        let lake = LakeStore::open(&url, timeout)?;
        let options = TracingOptions::default().enums_without_data_as_strings(true);
        let mut schemas = BTreeMap::new();
        schemas.insert(RecordKind::Window, fields::<WindowRecord>(&options)?);
        schemas.insert(RecordKind::Point, fields::<PointRecord>(&options)?);
        schemas.insert(RecordKind::Alert, fields::<AlertRecord>(&options)?);
        schemas.insert(RecordKind::Late, fields::<LateRecord>(&options)?);
        schemas.insert(
            RecordKind::DeadLetter,
            fields::<DeadLetterRecord>(&options)?,
        );
        schemas.insert(RecordKind::Join, fields::<JoinRecord>(&options)?);
        Ok(ParquetSink {
            lake,
            pipeline: pipeline.to_owned(),
            max_rows: config.max_rows.max(1),
            epoch: 1,
            files_in_epoch: BTreeMap::new(),
            pending: BTreeMap::new(),
            schemas,
        })
    }

    fn partition_of(record: &Record) -> Partition {
        let at = match record {
            Record::Window(r) => Some(r.window_start),
            Record::Point(r) => Some(r.ts),
            Record::Alert(r) => Some(r.episode_start),
            Record::Late(r) => Some(r.ts),
            Record::Join(r) => Some(r.left_ts),
            Record::DeadLetter(_) => None,
        };
        Partition {
            kind: record.kind(),
            time: at.map(date_hour).unwrap_or_default(),
        }
    }

    /// Refuses a lake of another layout, and marks a new one as this layout.
    fn check_layout(&self) -> Result<(), ParquetError> {
        let lake = &self.lake;
        let top = lake.run("list", lake.store.list_with_delimiter(Some(&lake.root)))?;
        let old = top
            .common_prefixes
            .iter()
            .any(|dir| dir.filename().is_some_and(|name| name.starts_with("kind=")));
        if old {
            return Err(ParquetError::OldLayout {
                url: lake.url.clone(),
            });
        }
        let marker = lake.root.clone().join(MARKER);
        let text = format!("{{\"layout\": {LAYOUT}}}\n");
        lake.run(
            "upload",
            lake.store.put(&marker, PutPayload::from(text.into_bytes())),
        )?;
        Ok(())
    }

    /// This pipeline's files: complete ones with the epoch in their name, and the staging
    /// files of uploads a killed run left (HDFS's `.<name>.tmp.<n>`).
    fn list_own_files(&self) -> Result<Vec<(StorePath, OwnFile)>, ParquetError> {
        let lake = &self.lake;
        let objects = lake.run(
            "list",
            lake.store.list(Some(&lake.root)).try_collect::<Vec<_>>(),
        )?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                let own = match own_file_epoch(name, &self.pipeline) {
                    Some(epoch) => OwnFile::Complete { epoch },
                    None => {
                        let staged = hdfs_staged_upload_of(name)?;
                        own_file_epoch(staged, &self.pipeline)?;
                        OwnFile::Staged
                    }
                };
                Some((meta.location.clone(), own))
            })
            .collect())
    }

    /// Writes one partition's buffered records as one file.
    fn write_file(
        &mut self,
        partition: &Partition,
        records: &[Record],
    ) -> Result<(), ParquetError> {
        let file = self.encode_file(partition, records)?;
        Ok(self.lake.upload_all(vec![file])?)
    }

    /// One partition's buffered records as a Parquet file, and where in the lake it goes.
    fn encode_file(
        &mut self,
        partition: &Partition,
        records: &[Record],
    ) -> Result<(StorePath, PutPayload), ParquetError> {
        let batch = self.batch(partition.kind, records)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props))?;
        writer.write(&batch)?;
        writer.close()?;

        let n = self.files_in_epoch.entry(partition.clone()).or_insert(0);
        let name = format!(
            "part-{}-{:010}-{:04}.parquet",
            self.pipeline, self.epoch, *n
        );
        *n += 1;
        let mut path = self.lake.root.clone();
        for part in std::iter::once(format!("record={}", partition.kind.as_str()))
            .chain(
                partition
                    .time
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            )
            .chain(std::iter::once(name))
        {
            path = path.join(part.as_str());
        }
        fail::fail_point!("parquet-upload", |_| Err(ParquetError::Lake(
            LakeError::Store {
                url: self.lake.url.clone(),
                operation: "upload",
                source: object_store::Error::Generic {
                    store: "failpoint",
                    source: "fault injected at parquet-upload".into(),
                },
            }
        )));
        debug!(%path, rows = records.len(), "Parquet file encoded.");
        Ok((path, PutPayload::from(bytes)))
    }

    fn batch(&self, kind: RecordKind, records: &[Record]) -> Result<RecordBatch, ParquetError> {
        let fields = &self.schemas[&kind];
        macro_rules! rows {
            ($variant:ident) => {{
                let rows: Vec<_> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::$variant(x) => Some(x),
                        _ => None,
                    })
                    .collect();
                serde_arrow::to_record_batch(fields, &rows)?
            }};
        }
        Ok(match kind {
            RecordKind::Window => rows!(Window),
            RecordKind::Point => rows!(Point),
            RecordKind::Alert => rows!(Alert),
            RecordKind::Late => rows!(Late),
            RecordKind::DeadLetter => rows!(DeadLetter),
            RecordKind::Join => rows!(Join),
        })
    }
}

/// One of a pipeline's files in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnFile {
    /// A whole file of checkpoint epoch `epoch`.
    Complete { epoch: u64 },
    /// The staging file of an upload that never finished.
    Staged,
}

/// The name of the file an HDFS staging file was uploading: the HDFS store writes
/// `.<name>.tmp.<n>` and renames it into place. Spark and DuckDB skip such names (leading
/// dot), but they hold a block's worth of space each, so `begin` removes them.
fn hdfs_staged_upload_of(name: &str) -> Option<&str> {
    let (file, n) = name.strip_prefix('.')?.rsplit_once(".tmp.")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(file)
}

/// Deletes what uploads of `pipeline` killed half-way left in a local lake: object_store writes
/// `<name>#<n>` and renames it into place, and its listings skip such files, but Spark reads
/// every file of a directory and would fail on half a Parquet file.
fn remove_staged_uploads(dir: &std::path::Path, pipeline: &str) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            remove_staged_uploads(&path, pipeline)?;
            continue;
        }
        let name = entry.file_name();
        let Some((file, staging)) = name.to_str().and_then(|n| n.split_once('#')) else {
            continue;
        };
        let numbered = !staging.is_empty() && staging.bytes().all(|b| b.is_ascii_digit());
        if numbered && own_file_epoch(file, pipeline).is_some() {
            std::fs::remove_file(&path)?;
            info!(path = %path.display(), "Removed a half-written file of a stopped run.");
        }
    }
    Ok(())
}

/// The epoch of `name` when it is a file of `pipeline` (`part-<pipeline>-<epoch>-<n>.parquet`).
///
/// Read from the right and matched whole, so pipeline `orders` does not claim (and delete) the
/// files of pipeline `orders-2`, whatever characters the names hold.
fn own_file_epoch(name: &str, pipeline: &str) -> Option<u64> {
    let stem = name.strip_suffix(".parquet")?;
    let (rest, n) = stem.rsplit_once('-')?;
    let (owner, epoch) = rest.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(n) || !digits(epoch) || owner.strip_prefix("part-")? != pipeline {
        return None;
    }
    epoch.parse().ok()
}

/// The Arrow fields of a record type: as serde traces them, with event times as timestamps
/// and counts signed (Spark reads unsigned 64-bit as `decimal(20,0)`).
fn fields<'de, T: Deserialize<'de> + Serialize>(
    options: &TracingOptions,
) -> Result<Vec<FieldRef>, ParquetError> {
    let traced = Vec::<FieldRef>::from_type::<T>(options.clone())?;
    Ok(traced
        .into_iter()
        .map(|field| {
            let as_type =
                |data_type| Arc::new(Field::new(field.name(), data_type, field.is_nullable()));
            if TIME_FIELDS.contains(&field.name().as_str()) {
                as_type(DataType::Timestamp(
                    TimeUnit::Millisecond,
                    Some("UTC".into()),
                ))
            } else if field.data_type() == &DataType::UInt64 {
                as_type(DataType::Int64)
            } else {
                field
            }
        })
        .collect())
}

/// `date=YYYY-MM-DD/hour=HH` of an epoch-millisecond time, in UTC.
fn date_hour(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "date={:04}-{:02}-{:02}/hour={:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        ),
        Err(_) => "date=out-of-range".to_owned(),
    }
}

impl Sink for ParquetSink {
    fn begin(&mut self, resume: Option<u64>) -> Result<(), SinkError> {
        self.check_layout()?;
        if let Some(dir) = &self.lake.local_dir {
            remove_staged_uploads(dir, &self.pipeline).map_err(|source| SinkError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let keep_through = resume.unwrap_or(0);
        let stale: Vec<StorePath> = self
            .list_own_files()?
            .into_iter()
            .filter(|(_, own)| match own {
                OwnFile::Complete { epoch } => *epoch > keep_through,
                OwnFile::Staged => true,
            })
            .map(|(path, _)| path)
            .collect();
        let lake = &self.lake;
        for path in &stale {
            lake.run("delete", lake.store.delete(path))
                .map_err(ParquetError::from)?;
        }
        if !stale.is_empty() {
            info!(
                files = stale.len(),
                after_epoch = keep_through,
                "Removed files written after the checkpoint."
            );
        }
        self.epoch = keep_through + 1;
        self.files_in_epoch.clear();
        // A rewind (see `pipeline`) replays what these buffers held.
        self.pending.clear();
        Ok(())
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for record in records {
            let partition = Self::partition_of(record);
            let buffer = self.pending.entry(partition.clone()).or_default();
            buffer.push(record.clone());
            if buffer.len() >= self.max_rows {
                let full = std::mem::take(buffer);
                self.write_file(&partition, &full)?;
            }
        }
        Ok(())
    }

    /// Writes every buffered partition as files of checkpoint `epoch`, then names later files
    /// after the epoch that follows. Files rolled by size before this flush carry an epoch no
    /// greater than `epoch`, so they are kept if this checkpoint is stored and removed on
    /// restore if it is not.
    fn flush(&mut self, epoch: u64) -> Result<(), SinkError> {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.files_in_epoch.clear();
        }
        let pending = std::mem::take(&mut self.pending);
        let mut files = Vec::with_capacity(pending.len());
        for (partition, records) in &pending {
            if !records.is_empty() {
                files.push(self.encode_file(partition, records)?);
            }
        }
        self.lake.upload_all(files).map_err(ParquetError::from)?;
        self.epoch = epoch + 1;
        self.files_in_epoch.clear();
        Ok(())
    }
}

impl From<ParquetError> for SinkError {
    fn from(error: ParquetError) -> Self {
        SinkError::Failed {
            kind: "parquet",
            source: Box::new(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_utc_date_and_hour() {
        assert_eq!(date_hour(1_764_000_000_000), "date=2025-11-24/hour=16");
        assert_eq!(date_hour(0), "date=1970-01-01/hour=00");
    }

    #[test]
    fn half_written_uploads_of_this_pipeline_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("record=point/date=2025-11-24/hour=16");
        std::fs::create_dir_all(&hour).unwrap();
        let names = [
            "part-p-0000000002-0000.parquet",
            "part-p-0000000003-0000.parquet#1",
            "part-q-0000000003-0000.parquet#1",
            "notes#1",
        ];
        for name in names {
            std::fs::write(hour.join(name), b"x").unwrap();
        }
        remove_staged_uploads(dir.path(), "p").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&hour)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [names[3], names[0], names[2]]);
    }

    #[test]
    fn hdfs_staging_files_name_the_file_they_were_uploading() {
        let file = "part-p-0000000003-0000.parquet";
        assert_eq!(hdfs_staged_upload_of(&format!(".{file}.tmp.0")), Some(file));
        assert_eq!(
            hdfs_staged_upload_of(&format!(".{file}.tmp.12")),
            Some(file)
        );
        assert_eq!(hdfs_staged_upload_of(file), None);
        assert_eq!(hdfs_staged_upload_of(&format!(".{file}.tmp.")), None);
        assert_eq!(hdfs_staged_upload_of(&format!(".{file}.tmp.x")), None);
        assert_eq!(hdfs_staged_upload_of(".hidden"), None);
    }

    #[test]
    fn a_pipeline_owns_exactly_the_files_named_after_it() {
        let name = |pipeline: &str, epoch: u64| format!("part-{pipeline}-{epoch:010}-0003.parquet");
        assert_eq!(own_file_epoch(&name("orders", 7), "orders"), Some(7));
        assert_eq!(own_file_epoch(&name("orders-2", 7), "orders"), None);
        assert_eq!(own_file_epoch(&name("orders-2", 7), "orders-2"), Some(7));
        assert_eq!(own_file_epoch(&name("a-0000000001", 5), "a"), None);
        assert_eq!(
            own_file_epoch(&name("a-0000000001", 5), "a-0000000001"),
            Some(5)
        );
        assert_eq!(own_file_epoch("part-orders-x-0000.parquet", "orders"), None);
        assert_eq!(
            own_file_epoch("part-orders-0000000001-0000.tmp", "orders"),
            None
        );
    }
}
