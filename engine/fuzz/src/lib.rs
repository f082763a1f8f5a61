//! cargo-fuzz targets of mqlab-engine; the bodies live in `targets.rs`,
//! which the CI harness (`engine/tests/reliability_fuzz.rs`) includes too.
pub mod targets;
