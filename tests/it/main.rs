//! Integration tests of the `sluice` server, driven by the real AWS SDK for Rust.

mod bad_input;
mod cbor;
mod config;
mod cors;
mod crash_loop;
mod datasets;
mod demo;
mod firehose_api;
mod firehose_crash_guard;
mod firehose_delivery;
mod firehose_faults;
mod firehose_transform;
mod fuzz;
mod h2c;
mod hostile;
mod hostile_firehose;
mod kinesis_sdk;
mod protocol;
mod resharding;
mod resource_faults;
mod s3_server;
mod stream_status;
mod support;
mod throttling;
mod tls;
mod validation_table;
