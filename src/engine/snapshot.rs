//! The engine's state as bytes, for checkpoints: the routers' state, then each key group's
//! (as each shard encoded its own), behind a format byte and ahead of a CRC-32.
//!
//! Layout: the format byte; the body — `postcard((pos, routers, groups))` where `groups` is how
//! many `postcard((key group, image))` follow it — and the body's CRC-32 (little endian). The
//! checksum is there because a restored engine trusts its state (series numbers index its
//! tables): a damaged row must be refused, not panic on the first event after it.

use super::keygroup::KgTask;
use super::router::TaskRouter;
use super::shard::GroupImage;
use super::SnapshotError;

/// Version of the layout: bumped whenever a state type changes shape, so an old checkpoint is
/// refused with a clear message instead of misread.
pub const SNAPSHOT_FORMAT: u8 = 10;

/// Bytes of the CRC-32 that ends a snapshot.
const CHECKSUM_BYTES: usize = 4;

/// The state of an engine, encoded and ready to be written.
pub struct EngineImage {
    /// The format byte and the body's head: position, routers, and how many groups follow.
    head: Vec<u8>,
    /// Each shard's encoded key groups.
    parts: Vec<Vec<u8>>,
}

impl EngineImage {
    /// Bytes written by [`EngineImage::write`].
    pub fn len(&self) -> usize {
        self.head.len() + self.parts.iter().map(Vec::len).sum::<usize>() + CHECKSUM_BYTES
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the image to `out` in parts of the sizes it has (buffer `out`). Fails with
    /// [`SnapshotError::Encoding`] when `out` does (the caller knows why).
    pub fn write(&self, mut out: impl std::io::Write) -> Result<(), SnapshotError> {
        let failed = |_| SnapshotError::Encoding(postcard::Error::SerializeBufferFull);
        let mut crc = crc32fast::Hasher::new();
        out.write_all(&self.head).map_err(failed)?;
        crc.update(&self.head[1..]);
        for part in &self.parts {
            out.write_all(part).map_err(failed)?;
            crc.update(part);
        }
        out.write_all(&crc.finalize().to_le_bytes())
            .map_err(failed)?;
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.len());
        // Writing to a vector cannot fail.
        let _ = self.write(&mut bytes);
        bytes
    }
}

/// Encodes an engine's state: its next position, its routers and its shards' images (how many
/// groups each, and their bytes).
pub fn image(
    pos: u64,
    routers: &[(u32, &TaskRouter)],
    shards: Vec<(u32, Vec<u8>)>,
) -> Result<EngineImage, SnapshotError> {
    let groups: u32 = shards.iter().map(|(n, _)| n).sum();
    let mut head = vec![SNAPSHOT_FORMAT];
    head = postcard::to_extend(&(pos, routers, groups), head).map_err(SnapshotError::Encoding)?;
    Ok(EngineImage {
        head,
        parts: shards.into_iter().map(|(_, bytes)| bytes).collect(),
    })
}

/// The head of the body: position, routers, and how many key groups follow.
type Head = (u64, Vec<(u32, TaskRouter)>, u32);

/// What [`image`] encoded.
pub type Decoded = (u64, Vec<(u32, TaskRouter)>, Vec<(u16, GroupImage)>);

/// Reads what [`EngineImage::write`] wrote.
pub fn read(bytes: &[u8]) -> Result<Decoded, SnapshotError> {
    let body = checked_body(bytes)?;
    let ((pos, mut routers, groups), mut rest): (Head, _) =
        postcard::take_from_bytes(body).map_err(SnapshotError::Encoding)?;
    let mut images = Vec::with_capacity(groups.min(1 << 16) as usize);
    for _ in 0..groups {
        let (group, next): ((u16, GroupImage), _) =
            postcard::take_from_bytes(rest).map_err(SnapshotError::Encoding)?;
        images.push(group);
        rest = next;
    }
    if !rest.is_empty() {
        return Err(SnapshotError::Damaged);
    }
    for (_, router) in &mut routers {
        router.rebuild_index();
    }
    Ok((pos, routers, images))
}

/// A task's state under `task`'s id: its router and its key groups.
pub fn task_image(
    router: &TaskRouter,
    shards: Vec<(u32, Vec<u8>)>,
) -> Result<EngineImage, SnapshotError> {
    image(0, &[(0, router)], shards)
}

/// Reads a task's state written by [`task_image`], its key groups' state renumbered as task
/// `task`.
pub fn read_task(
    bytes: &[u8],
    task: u32,
) -> Result<(TaskRouter, Vec<(u16, GroupImage)>), SnapshotError> {
    let (_, mut routers, groups) = read(bytes)?;
    let (_, router) = routers.pop().ok_or(SnapshotError::Damaged)?;
    let groups = groups
        .into_iter()
        .map(|(kg, image)| {
            let tasks: Vec<(u32, KgTask)> = image
                .tasks
                .into_iter()
                .map(|(_, state)| (task, state))
                .collect();
            (
                kg,
                GroupImage {
                    tasks,
                    joins: image.joins,
                },
            )
        })
        .collect();
    Ok((router, groups))
}

/// The body of a snapshot, once its format and checksum are right.
fn checked_body(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    let (&format, body) = bytes
        .split_first()
        .ok_or(SnapshotError::Format { found: 0 })?;
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::Format { found: format });
    }
    let split = body
        .len()
        .checked_sub(CHECKSUM_BYTES)
        .ok_or(SnapshotError::Damaged)?;
    let (body, crc) = body.split_at(split);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(SnapshotError::Damaged);
    }
    Ok(body)
}
