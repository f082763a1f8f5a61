//! The commit log: record codec, segments, recovery, checkpoint.
pub mod record;
