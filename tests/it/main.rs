//! The one integration-test binary (one link of the whole crate, not one per file).

mod browser;
mod cli;
mod compose;
mod config_docs;
mod crash;
mod decode_ahead;
mod detection;
mod examples;
mod faults;
mod follow;
mod format;
mod golden;
mod group;
mod hdfs;
mod hostile;
mod kafka;
mod lake;
mod notify;
mod props;
mod remote_lake;
mod s3;
mod store;
mod support;
mod web;
