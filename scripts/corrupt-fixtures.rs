//! Regenerates `engine/tests/fixtures/corrupt/`: a clean store of small
//! messages over two segments, copied once per case with its `abort`
//! marker restored and one corruption applied, plus the `case.json` saying
//! what was done and what recovery must report (read by
//! `engine/tests/corruption.rs`). Built as an example of mqlab-engine
//! (it uses the integration tests' helpers); run it with
//! `scripts/gen-corrupt-fixtures.sh [OUT_DIR]`.

#[path = "../engine/tests/common/mod.rs"]
mod common;
#[path = "../engine/tests/corrupt_fixture/mod.rs"]
mod corrupt_fixture;

use std::path::{Path, PathBuf};

use common::{copy_tree, small_message};
use corrupt_fixture::{
    fixtures_root, put_recorded, seg_file, small_config, Case, Cut, Expect, Mutation, Rec,
    BODY_POS, FIXTURE_MESSAGES, SEGMENT_BYTES,
};
use mqlab_engine::Store;

fn zero_file_range(path: &Path, offset: u64, len: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize..(offset + len) as usize].fill(0);
    std::fs::write(path, b).unwrap();
}

fn flip_file_bit(path: &Path, offset: u64, bit: u8) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 1 << bit;
    std::fs::write(path, b).unwrap();
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let store = Store::open(&clean, small_config()).unwrap();
    let records: Vec<Rec> = (0..FIXTURE_MESSAGES)
        .map(|i| put_recorded(&store, i))
        .collect();
    let end = store.offsets().written;
    store.shutdown().unwrap();

    let s = SEGMENT_BYTES;
    let last_base = (end - 1) / s * s;
    assert!(last_base >= s, "the fixture store must span two segments");
    let in_last: Vec<usize> = (0..records.len())
        .filter(|&k| records[k].phys >= last_base)
        .collect();
    assert!(in_last.len() >= 8, "too few records in the last segment");
    let n = records.len();

    // Where to write: the checked-in fixtures, or a directory given as the
    // only argument (to compare a fresh set with them).
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(fixtures_root);
    if root.exists() {
        std::fs::remove_dir_all(&root).unwrap();
    }
    let write_case = |name: &str,
                      description: &str,
                      mutation: Mutation,
                      expect: Expect,
                      apply: &dyn Fn(&Path)| {
        let dir = root.join(name);
        copy_tree(&clean, &dir);
        // The directory lock of the generating store is no part of a
        // fixture (a checked-in store looks cleanly unlocked).
        let _ = std::fs::remove_file(dir.join("lock"));
        // The marker makes the next open run abnormal recovery.
        std::fs::write(dir.join("abort"), b"").unwrap();
        apply(&dir);
        let case = Case {
            case: name.into(),
            description: description.into(),
            segment_bytes: s,
            mutation,
            expect,
            records: Vec::new(),
        };
        // One line per record: pretty-printed, they would triple the file.
        let recs: Vec<String> = records
            .iter()
            .map(|r| format!("    {}", serde_json::to_string(r).unwrap()))
            .collect();
        let json = serde_json::to_string_pretty(&case).unwrap().replace(
            "\"records\": []",
            &format!("\"records\": [\n{}\n  ]", recs.join(",\n")),
        ) + "\n";
        std::fs::write(dir.join("case.json"), json).unwrap();
    };
    let body_len = |r: &Rec| small_message(r.i).body.len() as u64;

    // torn-tail: the last record cut in half, the rest of its segment zero.
    let r = &records[n - 1];
    let half = r.phys + r.size as u64 / 2;
    // The header survives, the zeroed topic and property lengths do not.
    assert!(
        half >= r.phys + BODY_POS,
        "the header must survive the tear"
    );
    let m = Mutation {
        file: seg_file(r.phys),
        offset: half - last_base,
        len: s - (half - last_base),
        action: "zero".into(),
    };
    write_case(
        "torn-tail",
        "The last record is cut in half: from the middle of its body to the end of \
         its segment every byte is zero, as after a torn write. The zeroed topic and \
         property lengths make its fields end before TOTALSIZE.",
        m.clone(),
        Expect {
            abnormal: true,
            end_offset: r.phys,
            intact: n - 1,
            commitlog_cut: Some(Cut {
                file: seg_file(r.phys),
                offset: r.phys,
                reason_contains: "bad length".into(),
            }),
            queue_units_cut: true,
        },
        &|dir| zero_file_range(&dir.join(&m.file), m.offset, m.len),
    );

    // header-bitflip: bit 14 of TOTALSIZE of a record mid-segment.
    let k = in_last[in_last.len() / 2];
    let r = &records[k];
    let m = Mutation {
        file: seg_file(r.phys),
        offset: r.phys - last_base + 2,
        len: 1,
        action: "flip bit 6 (TOTALSIZE +/- 16384)".into(),
    };
    write_case(
        "header-bitflip",
        "One bit of the TOTALSIZE field of a record in the middle of the last segment \
         is flipped, so the record's fields no longer end at TOTALSIZE.",
        m.clone(),
        Expect {
            abnormal: true,
            end_offset: r.phys,
            intact: k,
            commitlog_cut: Some(Cut {
                file: seg_file(r.phys),
                offset: r.phys,
                reason_contains: "bad length".into(),
            }),
            queue_units_cut: true,
        },
        &|dir| flip_file_bit(&dir.join(&m.file), m.offset, 6),
    );

    // body-bitflip: one bit in the middle of a body.
    let k = in_last[in_last.len() / 3];
    let r = &records[k];
    let m = Mutation {
        file: seg_file(r.phys),
        offset: r.phys - last_base + BODY_POS + body_len(r) / 2,
        len: 1,
        action: "flip bit 3".into(),
    };
    write_case(
        "body-bitflip",
        "One bit in the body of a record in the last segment is flipped.",
        m.clone(),
        Expect {
            abnormal: true,
            end_offset: r.phys,
            intact: k,
            commitlog_cut: Some(Cut {
                file: seg_file(r.phys),
                offset: r.phys,
                reason_contains: "body CRC mismatch".into(),
            }),
            queue_units_cut: true,
        },
        &|dir| flip_file_bit(&dir.join(&m.file), m.offset, 3),
    );

    // zero-tail: the last three records zeroed.
    let r = &records[n - 3];
    let m = Mutation {
        file: seg_file(r.phys),
        offset: r.phys - last_base,
        len: end - r.phys,
        action: "zero".into(),
    };
    write_case(
        "zero-tail",
        "The last three records are zeroed. Zeros read as the end of data, so the \
         commit log has no cut to report, but their consume-queue units do.",
        m.clone(),
        Expect {
            abnormal: true,
            end_offset: r.phys,
            intact: n - 3,
            commitlog_cut: None,
            queue_units_cut: true,
        },
        &|dir| zero_file_range(&dir.join(&m.file), m.offset, m.len),
    );

    // truncated-cq cases: a queue file cut short, not at a unit boundary.
    let queue_of = |topic: &str, qid: u32| -> Vec<&Rec> {
        records
            .iter()
            .filter(|r| r.topic == topic && r.queue_id == qid)
            .collect()
    };
    let cq_case = |name: &str, description: &str, topic: &str, qid: u32, keep: u64, tail: u64| {
        let units = queue_of(topic, qid).len() as u64;
        assert!(keep < units);
        let m = Mutation {
            file: format!("consumequeue/{topic}/{qid}/{:020}", 0),
            offset: keep * 20 + tail,
            len: units * 20 - (keep * 20 + tail),
            action: "truncate".into(),
        };
        write_case(
            name,
            description,
            m.clone(),
            Expect {
                abnormal: true,
                end_offset: end,
                intact: n,
                commitlog_cut: None,
                queue_units_cut: false,
            },
            &|dir| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join(&m.file))
                    .unwrap();
                f.set_len(m.offset).unwrap();
            },
        );
    };
    // The missing units point into the last segment, which abnormal
    // recovery re-dispatches.
    let units = queue_of("TopicA", 1);
    let keep = units.len() - 2;
    assert!(units[keep..].iter().all(|r| r.phys >= last_base));
    cq_case(
        "truncated-cq",
        "The consume queue TopicA/1 is cut to 2 units short of its end plus 7 bytes \
         of a unit. The missing units point into the last segment, which recovery \
         re-dispatches, so the queue must come back whole.",
        "TopicA",
        1,
        keep as u64,
        7,
    );
    // Most missing units point before the segment abnormal recovery starts
    // at (the checkpointed dispatch offset).
    let units = queue_of("TopicB", 0);
    assert!(units[3].phys < last_base);
    cq_case(
        "truncated-cq-deep",
        "The consume queue TopicB/0 is cut to 3 units plus 11 bytes. Most missing \
         units point into the first segment, before the checkpointed dispatch \
         offset; the commit log still holds every record, so the queue must come \
         back whole.",
        "TopicB",
        0,
        3,
        11,
    );
}
