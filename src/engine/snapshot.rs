//! The engine's state as bytes, for checkpoints (see [`super::changelog`] for what a checkpoint
//! holds): the head — format byte, next input position and the routers' state — and each key
//! group's image and log segments, every blob ending in the CRC-32 of what it holds.
//!
//! The checksums are there because a restored engine trusts its state (series numbers index its
//! tables): a damaged row must be refused, not panic on the first event after it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use thiserror::Error;

/// Version of the layout: bumped whenever a state type changes shape, so an old checkpoint is
/// refused with a clear message instead of misread.
pub const SNAPSHOT_FORMAT: u8 = 11;

/// Bytes of the CRC-32 that ends a blob.
const CHECKSUM_BYTES: usize = 4;

/// `value` encoded, with its checksum after it.
pub fn seal<T: Serialize>(value: &T) -> Result<Vec<u8>, SnapshotError> {
    let mut bytes = postcard::to_allocvec(value).map_err(SnapshotError::Encoding)?;
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// Bytes with their checksum after them: a log segment (entries written one after the other).
pub fn seal_bytes(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// What [`seal_bytes`] sealed, once its checksum is right.
pub fn unseal_bytes(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    let split = bytes
        .len()
        .checked_sub(CHECKSUM_BYTES)
        .ok_or(SnapshotError::Damaged)?;
    let (body, crc) = bytes.split_at(split);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(SnapshotError::Damaged);
    }
    Ok(body)
}

/// What [`seal`] sealed.
pub fn unseal<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    postcard::from_bytes(unseal_bytes(bytes)?).map_err(SnapshotError::Encoding)
}

/// The head of a unit's stored state: the engine's next input position and its routers (by
/// task id).
pub fn head<R: Serialize>(pos: u64, routers: &[(u32, &R)]) -> Result<Vec<u8>, SnapshotError> {
    let mut bytes = vec![SNAPSHOT_FORMAT];
    bytes.extend(seal(&(pos, routers))?);
    Ok(bytes)
}

/// What [`head`] wrote.
pub fn read_head<R: DeserializeOwned>(bytes: &[u8]) -> Result<(u64, Vec<(u32, R)>), SnapshotError> {
    let (&format, body) = bytes
        .split_first()
        .ok_or(SnapshotError::Format { found: 0 })?;
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::Format { found: format });
    }
    unseal(body)
}

/// A checkpoint could not be written or read back.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("engine snapshot")]
    Encoding(#[source] postcard::Error),
    #[error(
        "engine snapshot in state format {found}, but this Tidewatch reads format \
         {SNAPSHOT_FORMAT}: it was written by another version; start afresh under a new \
         checkpoint.pipeline name (or remove the old checkpoint row)"
    )]
    Format { found: u8 },
    #[error("engine snapshot taken while a round of input was still being run (a bug: the pipeline lands it first)")]
    Busy,
    #[error(
        "engine snapshot is damaged (its checksum does not match): start afresh under a new \
         checkpoint.pipeline name (or remove the checkpoint row)"
    )]
    Damaged,
}
