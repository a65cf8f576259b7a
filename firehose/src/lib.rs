//! Sluice's Firehose: delivery streams that land records as Parquet (or raw, compressed
//! objects) in S3-compatible storage or a local folder.
//!
//! A delivery stream reads an engine stream: a Kinesis stream it was pointed at
//! (`KinesisStreamAsSource`), or, for `DirectPut`, an internal stream of its own, so a record
//! acknowledged by `PutRecordBatch` is as durable as one acknowledged by `PutRecords` and one
//! delivery path serves both. The worker buffers records per source shard until the
//! buffering hints say flush (size or interval), then:
//!
//! 1. extracts dynamic partition keys (`MetadataExtraction` jq queries),
//! 2. converts JSON to Parquet (or concatenates raw records, optionally compressed),
//! 3. writes each object under its evaluated prefix with a key derived from (delivery
//!    stream, source shard, first and last sequence number), so a retried or re-run
//!    delivery overwrites the same key instead of adding a duplicate,
//! 4. writes records that failed to the error output prefix, as AWS's error records,
//! 5. and only then advances the shard's checkpoint.
//!
//! Before writing, the planned range is recorded in the checkpoint file, so a delivery cut
//! short by a crash is redone with exactly the same records and keys.

pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod coordination;
pub mod deaggregate;
pub mod delivery_streams;
pub mod deserializer;
mod direct;
pub mod error_output;
pub mod jq_fast_path;
mod json_check;
pub mod json_depth;
pub mod kpl;
pub mod lake;
pub mod metrics;
pub mod object_key;
pub mod orc;
pub mod parquet_file;
pub mod partition;
pub mod plan;
pub mod prefix;
pub mod redrive;
pub mod replay;
pub mod schema;
pub mod spec;
pub mod table;
pub mod tasks;
pub mod timestamp_pattern;
pub mod wasm;
pub mod worker;

pub use delivery_streams::DeliveryStreams;
pub use lake::{Lake, LakeConfig};
