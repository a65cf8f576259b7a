//! Firehose delivery for Sluice: delivery streams, buffering hints, format conversion to
//! Parquet, the object-store sink, prefixes and the error output prefix.
//!
//! Nothing is built here yet; see the Firehose delivery issue and `DESIGN.md`.
