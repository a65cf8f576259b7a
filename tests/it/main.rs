//! Integration tests of the `sluice` server, driven by the real AWS SDK for Rust.

mod bad_input;
mod config;
mod h2c;
mod kinesis_sdk;
mod resharding;
mod stream_status;
mod support;
mod throttling;
mod datasets;
mod firehose_delivery;
mod s3_server;
