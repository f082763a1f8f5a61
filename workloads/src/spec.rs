//! Workload specs: TOML files naming a workload (workloads/specs/*.toml),
//! and their resolution with command-line flags into one concrete
//! [`Workload`] with every value filled in.
//!
//! Precedence: command-line flag, then spec file, then the default written
//! in `--help`. The resolved workload is what summary.json records, so a
//! run is reproducible from its summary alone.

use std::path::Path;

use anyhow::{bail, Context, Result};
use mqlab_engine::{BackendKind, FlushConfig, FlushKind, StoreConfig};
use serde::{Deserialize, Serialize};

/// Workload values given on the command line, each beating the spec's
/// (`None`: the spec's value, else the default named in `--help`); the
/// options `run` and `matrix` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Producer threads. [default: 4]
    #[arg(long, value_name = "N")]
    pub producers: Option<usize>,
    /// Outstanding sends per producer. `Store::put` is synchronous, so each
    /// producer runs N sender threads, each with one put in flight
    /// (producers x inflight threads in all; with --target, asynchronous
    /// sends in flight, no thread each). [default: 1]
    #[arg(long, value_name = "N")]
    pub inflight: Option<usize>,
    /// Message body size in bytes. [default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub msg_size: Option<usize>,
    /// Target send rate over all producers, messages per second; 0 = as fast
    /// as possible. With a rate, latency is also recorded against each
    /// message's intended send time (coordinated omission shows). [default: 0]
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Measured duration in seconds, after the warmup. [default: 5 for run,
    /// 3 for matrix, 1 for matrix --quick]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Stop after this many messages in all (warmup included) instead of
    /// after a duration.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Warmup in seconds, excluded from every statistic. [default: 1 for run
    /// (0 with --messages), 0.5 for matrix, 0.25 for matrix --quick]
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Queues of the topic; messages go round-robin. [default: 8]
    #[arg(long, value_name = "N")]
    pub queues: Option<u32>,
    /// Give every message a unique key (KEYS property, indexed), so `verify`
    /// can look it up. [default: true]
    #[arg(long, value_name = "BOOL")]
    pub keys: Option<bool>,
    /// Topic name. [default: mqlab]
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Async/pool flusher period in ms (flushIntervalCommitLog). [default: 500]
    #[arg(long, value_name = "MS")]
    pub flush_interval_ms: Option<u64>,
    /// Group commit only: puts copy into a memory staging area and the
    /// group-commit service writes each batch with one write before its
    /// fdatasync (true), or every put writes its own record, as RocketMQ's
    /// GroupCommitService does (false). Acks wait for the fdatasync either
    /// way. [default: true]
    #[arg(long, value_name = "BOOL")]
    pub group_batch_writes: Option<bool>,
    /// Commit-log segment size in bytes. [default: 1073741824 (1 GiB)]
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes: Option<u64>,
    /// Write zeros over each commit-log segment before it is used
    /// (RocketMQ's warmMapedFileEnable): opening writes the first segment
    /// whole (1 GiB by default: seconds), a background thread the next
    /// ones; then the fdatasyncs that acknowledge puts do not also commit
    /// ext4 block allocations. [default: false]
    #[arg(long, value_name = "BOOL")]
    pub warm_segments: Option<bool>,
    /// Small store files (StoreConfig::small(): 1 MiB segments, small
    /// consume-queue and index files) for tests and quick checks; the
    /// default is RocketMQ's geometry (1 GiB segments, 420 MB index files).
    #[arg(long)]
    pub small_files: bool,
    /// Time-series bucket in ms (timeseries.csv rows and the over-time
    /// chart). [default: 100 for runs under 10 s with warmup (coarser with
    /// hundreds of senders), else 1000]
    #[arg(long, value_name = "MS")]
    pub timeseries_ms: Option<u64>,
    /// Loss-window sampling period in ms (at most 10). [default: 5]
    #[arg(long, value_name = "MS")]
    pub sample_ms: Option<u64>,
}

/// A spec file as written. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Name used in result folders and legends.
    pub name: Option<String>,
    /// One line saying what the workload models.
    pub description: Option<String>,
    /// Flush strategy.
    pub flush: Option<FlushKind>,
    /// I/O backend.
    pub backend: Option<BackendKind>,
    /// Producer threads.
    pub producers: Option<usize>,
    /// Sender threads per producer.
    pub inflight: Option<usize>,
    /// Body size, bytes.
    pub msg_size: Option<usize>,
    /// Target rate over all producers, msgs/s (0 = unlimited).
    pub rate: Option<f64>,
    /// Measured seconds after warmup.
    pub duration_secs: Option<f64>,
    /// Message count instead of a duration.
    pub messages: Option<u64>,
    /// Warmup seconds.
    pub warmup_secs: Option<f64>,
    /// Queues of the topic.
    pub queues: Option<u32>,
    /// Unique key per message.
    pub keys: Option<bool>,
    /// Topic.
    pub topic: Option<String>,
    /// Async flusher period, ms.
    pub flush_interval_ms: Option<u64>,
    /// Group commit: one write per batch (true) or per put (false).
    pub group_batch_writes: Option<bool>,
    /// Segment size, bytes.
    pub segment_bytes: Option<u64>,
    /// Write zeros over segments before use.
    pub warm_segments: Option<bool>,
    /// Bursty load: send for `burst_on_ms`...
    pub burst_on_ms: Option<u64>,
    /// ...then pause for `burst_off_ms`.
    pub burst_off_ms: Option<u64>,
    /// Time-series bucket, ms.
    pub timeseries_ms: Option<u64>,
    /// A messaging experiment (`[messaging]` table; see
    /// `crate::messaging`). Absent for plain store workloads.
    pub messaging: Option<crate::messaging::spec::MessagingSpec>,
}

impl SpecFile {
    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<SpecFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read spec {}", path.display()))?;
        let mut spec: SpecFile =
            toml::from_str(&text).with_context(|| format!("parse spec {}", path.display()))?;
        if spec.name.is_none() {
            spec.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(spec)
    }
}

/// A fully resolved workload: what `run` executes and summary.json records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    /// Run name.
    pub name: String,
    /// Flush strategy.
    pub flush: FlushKind,
    /// I/O backend.
    pub backend: BackendKind,
    /// Producer threads.
    pub producers: usize,
    /// Sender threads per producer (each with one put in flight).
    pub inflight: usize,
    /// Body size, bytes.
    pub msg_size: usize,
    /// Target rate over all senders, msgs/s; 0 = unlimited.
    pub rate: f64,
    /// Measured seconds after warmup (ignored when `messages` is set).
    pub duration_secs: f64,
    /// Stop after this many puts in all, warmup included.
    pub messages: Option<u64>,
    /// Warmup seconds excluded from the statistics.
    pub warmup_secs: f64,
    /// Queues of the topic.
    pub queues: u32,
    /// Unique key per message.
    pub keys: bool,
    /// Topic.
    pub topic: String,
    /// Async/pool flusher period, ms.
    pub flush_interval_ms: u64,
    /// Group commit: one write per batch (true) or per put (false).
    #[serde(default = "default_group_batch_writes")]
    pub group_batch_writes: bool,
    /// Commit-log segment size, bytes.
    pub segment_bytes: u64,
    /// Segments written with zeros before use.
    #[serde(default)]
    pub warm_segments: bool,
    /// Loss-window sampling period, ms.
    pub sample_ms: u64,
    /// Time-series bucket, ms.
    #[serde(default = "default_timeseries_ms")]
    pub timeseries_ms: u64,
    /// Bursty load: on/off phases in ms.
    pub burst_on_ms: Option<u64>,
    /// Small store files (tests).
    #[serde(default)]
    pub small_files: bool,
    /// Pause between bursts, ms.
    pub burst_off_ms: Option<u64>,
}

fn default_timeseries_ms() -> u64 {
    1000
}

fn default_group_batch_writes() -> bool {
    FlushConfig::default().group_batch_writes
}

/// Defaults of a `run`.
pub const DEFAULT_DURATION_SECS: f64 = 5.0;

/// At most this many sender threads (producers x inflight) in-process.
pub const MAX_SENDER_THREADS: usize = 1024;

impl Workload {
    /// Resolves flags over a spec over defaults.
    pub fn resolve(
        spec: &SpecFile,
        flush: Option<FlushKind>,
        backend: Option<BackendKind>,
        args: &Overrides,
        name: Option<&str>,
    ) -> Result<Workload> {
        Self::resolve_within(spec, flush, backend, args, name, MAX_SENDER_THREADS)
    }

    /// [`Workload::resolve`] for a run whose sends in flight are not a
    /// thread each (`run --target`): producers x inflight up to
    /// `max_in_flight` instead of [`MAX_SENDER_THREADS`].
    pub fn resolve_within(
        spec: &SpecFile,
        flush: Option<FlushKind>,
        backend: Option<BackendKind>,
        args: &Overrides,
        name: Option<&str>,
        max_in_flight: usize,
    ) -> Result<Workload> {
        let flush = flush
            .or(spec.flush)
            .unwrap_or_else(|| FlushConfig::default().kind);
        let backend = backend.or(spec.backend).unwrap_or(BackendKind::Pwrite);
        let messages = args.messages.or(spec.messages);
        let group_batch_writes = args
            .group_batch_writes
            .or(spec.group_batch_writes)
            .unwrap_or_else(default_group_batch_writes);
        let mut w = Workload {
            name: name
                .map(str::to_string)
                .or_else(|| spec.name.clone())
                .unwrap_or_else(|| {
                    let cfg = FlushConfig {
                        group_batch_writes,
                        ..FlushConfig::for_kind(flush)
                    };
                    format!("{}-{}", cfg.variant(), backend.name())
                }),
            flush,
            backend,
            producers: args.producers.or(spec.producers).unwrap_or(4),
            inflight: args.inflight.or(spec.inflight).unwrap_or(1),
            msg_size: args.msg_size.or(spec.msg_size).unwrap_or(1024),
            rate: args.rate.or(spec.rate).unwrap_or(0.0),
            duration_secs: args
                .duration
                .or(spec.duration_secs)
                .unwrap_or(DEFAULT_DURATION_SECS),
            messages,
            warmup_secs: args
                .warmup
                .or(spec.warmup_secs)
                .unwrap_or(if messages.is_some() { 0.0 } else { 1.0 }),
            queues: args.queues.or(spec.queues).unwrap_or(8),
            keys: args.keys.or(spec.keys).unwrap_or(true),
            topic: args
                .topic
                .clone()
                .or_else(|| spec.topic.clone())
                .unwrap_or_else(|| "mqlab".to_string()),
            flush_interval_ms: args
                .flush_interval_ms
                .or(spec.flush_interval_ms)
                .unwrap_or_else(|| FlushConfig::default().flush_interval_ms),
            group_batch_writes,
            segment_bytes: args.segment_bytes.or(spec.segment_bytes).unwrap_or(
                if args.small_files {
                    StoreConfig::small().segment_bytes
                } else {
                    mqlab_engine::config::DEFAULT_SEGMENT_BYTES
                },
            ),
            warm_segments: args.warm_segments.or(spec.warm_segments).unwrap_or(false),
            small_files: args.small_files,
            sample_ms: args.sample_ms.unwrap_or(5),
            timeseries_ms: args
                .timeseries_ms
                .or(spec.timeseries_ms)
                .unwrap_or(crate::recorder::LONG_RUN_BUCKET_MS),
            burst_on_ms: spec.burst_on_ms,
            burst_off_ms: spec.burst_off_ms,
        };
        if args.timeseries_ms.or(spec.timeseries_ms).is_none() {
            let run = w
                .messages
                .is_none()
                .then_some(w.duration_secs + w.warmup_secs);
            w.timeseries_ms = crate::recorder::default_timeseries_ms(run, w.senders());
        }
        w.validate_within(max_in_flight)?;
        Ok(w)
    }

    /// Rejects values that cannot run.
    pub fn validate(&self) -> Result<()> {
        self.validate_within(MAX_SENDER_THREADS)
    }

    /// [`Workload::validate`] with at most `max_in_flight` sends in flight
    /// (producers x inflight).
    pub fn validate_within(&self, max_in_flight: usize) -> Result<()> {
        if self.producers == 0 || self.inflight == 0 {
            bail!("--producers and --inflight must be at least 1");
        }
        if self.producers.saturating_mul(self.inflight) > max_in_flight {
            if max_in_flight == MAX_SENDER_THREADS {
                bail!("at most {MAX_SENDER_THREADS} sender threads (producers x inflight)");
            }
            bail!("at most {max_in_flight} sends in flight (producers x inflight)");
        }
        if self.queues == 0 {
            bail!("--queues must be at least 1");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be a finite number >= 0");
        }
        if !(self.duration_secs > 0.0 && self.duration_secs.is_finite()) && self.messages.is_none()
        {
            bail!("--duration must be > 0 seconds");
        }
        if !(self.warmup_secs >= 0.0 && self.warmup_secs.is_finite()) {
            bail!("--warmup must be >= 0 seconds");
        }
        if self.sample_ms == 0 || self.sample_ms > 10 {
            bail!("--sample-ms must be between 1 and 10");
        }
        if self.timeseries_ms == 0 {
            bail!("--timeseries-ms must be > 0");
        }
        if self.flush_interval_ms == 0 {
            bail!("--flush-interval-ms must be > 0");
        }
        if self.msg_size < 16 {
            bail!("--msg-size must be at least 16 bytes (the body carries the sender id and sequence)");
        }
        let cfg = self.store_config();
        if self.msg_size > cfg.max_message_bytes as usize {
            bail!(
                "--msg-size {} is over the store's maximum message size of {} bytes \
                 (max_message_bytes{})",
                self.msg_size,
                cfg.max_message_bytes,
                if self.small_files {
                    " with --small-files"
                } else {
                    ""
                }
            );
        }
        if let Err(why) = mqlab_engine::topic::validate(&self.topic) {
            bail!("--topic: {why}");
        }
        cfg.sanitize()
            .map_err(|e| anyhow::anyhow!("store configuration: {e}"))?;
        if matches!(self.burst_on_ms, Some(0)) {
            bail!("burst_on_ms must be > 0");
        }
        Ok(())
    }

    /// Total sender threads.
    pub fn senders(&self) -> usize {
        self.producers * self.inflight
    }

    /// The store configuration this workload runs with.
    pub fn store_config(&self) -> StoreConfig {
        let base = if self.small_files {
            StoreConfig::small()
        } else {
            StoreConfig::default()
        };
        StoreConfig {
            backend: self.backend,
            segment_bytes: self.segment_bytes,
            warm_segments: self.warm_segments,
            flush: self.flush_config(),
            ..base
        }
    }

    /// The flush settings this workload runs with (the engine's defaults
    /// for everything the workload does not name).
    pub fn flush_config(&self) -> FlushConfig {
        FlushConfig {
            flush_interval_ms: self.flush_interval_ms,
            group_batch_writes: self.group_batch_writes,
            ..FlushConfig::for_kind(self.flush)
        }
    }

    /// Label of the configuration in tables and legends.
    pub fn label(&self) -> String {
        format!("{}/{}", self.flush_config().label(), self.backend.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_spec_beat_defaults() {
        let spec = SpecFile {
            producers: Some(16),
            msg_size: Some(4096),
            flush: Some(FlushKind::Group),
            ..SpecFile::default()
        };
        let args = Overrides {
            producers: Some(2),
            ..Overrides::default()
        };
        let w = Workload::resolve(&spec, None, None, &args, None).unwrap();
        assert_eq!(w.producers, 2);
        assert_eq!(w.msg_size, 4096);
        assert_eq!(w.flush, FlushKind::Group);
        assert_eq!(w.backend, BackendKind::Pwrite);
        assert_eq!(w.queues, 8);
        assert_eq!(w.name, "group-pwrite");
    }

    #[test]
    fn names_and_labels_of_every_strategy() {
        let cases = [
            (FlushKind::Sync, true, "sync-mmap", "sync/mmap"),
            (FlushKind::Group, true, "group-mmap", "group/mmap"),
            (
                FlushKind::Group,
                false,
                "group-unbatched-mmap",
                "group-unbatched/mmap",
            ),
            (FlushKind::Async, false, "async-mmap", "async-40ms/mmap"),
            (FlushKind::Pool, true, "pool-mmap", "pool-40ms/mmap"),
        ];
        for (flush, batch, name, label) in cases {
            let args = Overrides {
                flush_interval_ms: Some(40),
                group_batch_writes: Some(batch),
                ..Overrides::default()
            };
            let spec = SpecFile::default();
            let w = Workload::resolve(&spec, Some(flush), Some(BackendKind::Mmap), &args, None)
                .unwrap();
            assert_eq!((w.name.as_str(), w.label()), (name, label.to_string()));
        }
    }

    #[test]
    fn shipped_specs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let spec = SpecFile::load(&path).unwrap();
                Workload::resolve(&spec, None, None, &Overrides::default(), None).unwrap();
                n += 1;
            }
        }
        assert!(n >= 5, "expected at least 5 specs, found {n}");
    }

    #[test]
    fn rejects_bad_values() {
        let args = Overrides {
            sample_ms: Some(50),
            ..Overrides::default()
        };
        assert!(Workload::resolve(&SpecFile::default(), None, None, &args, None).is_err());
    }

    #[test]
    fn message_size_is_checked_against_the_store_maximum() {
        let resolve = |msg_size: usize, small_files: bool| {
            let args = Overrides {
                msg_size: Some(msg_size),
                small_files,
                ..Overrides::default()
            };
            Workload::resolve(&SpecFile::default(), None, None, &args, None)
        };
        for small_files in [false, true] {
            let max = if small_files {
                StoreConfig::small()
            } else {
                StoreConfig::default()
            }
            .max_message_bytes as usize;
            assert!(resolve(max, small_files).is_ok());
            let e = resolve(max + 1, small_files).unwrap_err().to_string();
            assert!(e.contains(&max.to_string()), "{e}");
        }
        let spec = SpecFile {
            msg_size: Some(999_999_999),
            ..SpecFile::default()
        };
        assert!(Workload::resolve(&spec, None, None, &Overrides::default(), None).is_err());
    }

    #[test]
    fn illegal_topics_are_rejected() {
        for topic in ["", "a/b", "a b", "..", &"x".repeat(300)] {
            let args = Overrides {
                topic: Some(topic.to_string()),
                ..Overrides::default()
            };
            assert!(
                Workload::resolve(&SpecFile::default(), None, None, &args, None).is_err(),
                "{topic:?}"
            );
            let spec = SpecFile {
                topic: Some(topic.to_string()),
                ..SpecFile::default()
            };
            assert!(
                Workload::resolve(&spec, None, None, &Overrides::default(), None).is_err(),
                "spec topic {topic:?}"
            );
        }
        let args = Overrides {
            topic: Some("%RETRY%x-y_z|1".into()),
            ..Overrides::default()
        };
        assert!(Workload::resolve(&SpecFile::default(), None, None, &args, None).is_ok());
    }
}
