//! Sluice's storage engine: the shard log.
//!
//! A shard log is an ordered set of fixed-size segment files in one directory, each an
//! mmap'd, append-only sequence of checksummed frames. One writer appends batches and gets
//! dense, strictly increasing sequence numbers; any number of readers read from a sequence
//! number or seek by arrival time through a sparse index; retention deletes whole sealed
//! segments; opening recovers from a crash by cutting a torn tail off the active segment
//! and reporting, with file and offset, any bad frame elsewhere: at open for a segment it
//! scans, at the read that meets it for a sealed segment opened from its index file
//! ([`index_file`]), which spares reading every retained byte at start.
//!
//! ```
//! use sluice_engine::{ReadLimits, Record, ShardLog, ShardLogOptions, StartingPosition};
//!
//! let dir = tempfile::tempdir()?;
//! let log = ShardLog::open(dir.path(), ShardLogOptions::default())?;
//! let appended = log.append(&[Record { partition_key: "station-1", data: b"{\"pm25\":12}" }])?;
//! let from = log.position(StartingPosition::TrimHorizon)?;
//! let batch = log.read(from, ReadLimits::default())?;
//! assert_eq!(batch.iter().next().unwrap().data, b"{\"pm25\":12}");
//! assert_eq!(batch.next_sequence_number(), appended.sequence_numbers().end);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod clock;
mod durability;
pub mod error;
pub mod frame;
pub mod hash_key;
mod index;
pub mod index_file;
pub mod iterator;
pub mod limits;
mod options;
pub mod parallel;
pub mod queue;
mod read;
pub mod routing;
pub mod segment;
pub mod sequence_number;
pub mod settings;
mod shard_log;
pub mod stream;
pub mod streams;
mod syncer;
pub mod throttle;

pub use clock::{Clock, ManualClock, SystemClock};
pub use durability::Durability;
pub use error::{
    AppendError, Corruption, FrameDefect, IoError, OpenError, ReadError, SyncError, TrimError, TruncateError,
};
pub use options::ShardLogOptions;
pub use read::{ReadBatch, ReadLimits, RecordRef, StartingPosition, RELEASE_AFTER_BYTES};
pub use shard_log::{Appended, Bounds, Record, RecoveryReport, ShardLog, TrimReport, TruncateReport};
