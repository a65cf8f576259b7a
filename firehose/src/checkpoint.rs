//! Per source shard: where delivery stands. `firehose/delivery-streams/<name>/checkpoints.json`,
//! written atomically after every delivery.
//!
//! Before a delivery writes any object it records the range it is about to land
//! (`pending_last`); only after every object is written does `next` move past it. A restart
//! that finds a pending range delivers exactly that range again, so batch boundaries, and
//! with them object keys, are the same as in the attempt that was cut short.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_engine::error::IoError;
use sluice_engine::stream::write_atomically;

/// One source shard's checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// Next sequence number (in the shard's log) to deliver.
    pub next: u64,
    /// Last sequence number of a delivery in progress: `next..=pending_last` is being landed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_last: Option<u64>,
    /// The shard is closed and every record of it is delivered (or it was closed before
    /// the delivery stream existed): children may be read.
    #[serde(default)]
    pub done: bool,
    /// Attempts at the pending range whose planning (transform, partitioning, conversion)
    /// failed or never finished: counted before each attempt starts, so a crash while
    /// planning counts too, and taken back once planning is done; past
    /// [`crate::worker::DELIVERY_ATTEMPTS_MAX`] the range's records go to the error output
    /// and the shard moves on (no crash loop).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Every source shard's checkpoint, by shard index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoints {
    path: PathBuf,
    /// The checkpoints.
    pub shards: BTreeMap<u32, ShardCheckpoint>,
    /// Incarnation of the source Kinesis stream the checkpoints belong to
    /// ([`sluice_engine::stream::Stream::incarnation`]): a source deleted and created again
    /// under its name is read from its start, not from the old stream's positions.
    pub source_incarnation: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct File {
    shards: BTreeMap<u32, ShardCheckpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_incarnation: Option<u64>,
}

impl Checkpoints {
    /// Reads `path`; none yet is an empty set.
    pub fn load(path: &Path) -> Result<Self, IoError> {
        let file = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<File>(&bytes)
                .map_err(|e| IoError::new(path, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File { shards: BTreeMap::new(), source_incarnation: None }
            }
            Err(e) => return Err(IoError::new(path, e)),
        };
        Ok(Self { path: path.to_owned(), shards: file.shards, source_incarnation: file.source_incarnation })
    }

    /// Writes the checkpoints, atomically and durably.
    pub fn save(&self) -> Result<(), IoError> {
        let bytes = serde_json::to_vec_pretty(&File {
            shards: self.shards.clone(),
            source_incarnation: self.source_incarnation,
        })
        .expect("checkpoints serialize");
        write_atomically(&self.path, &bytes)
    }
}
