//! Integration tests of the shard log: one test binary, one module per concern.

mod basic;
mod crash;
mod idle;
mod model;
mod recovery;
mod replica;
mod resident;
mod streams;
mod support;
mod truncate;
mod watermark;
