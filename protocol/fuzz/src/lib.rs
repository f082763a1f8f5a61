//! cargo-fuzz targets of the wire decoders; the bodies live in `targets.rs`.
pub mod targets;
