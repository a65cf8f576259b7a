//! The transform host on real components: the example transforms on real records, and
//! hostile components contained.

mod examples;
mod guests;
mod hostile;
mod jq;
mod loading;
