//! The matrix's `wire` family: listed by `--list-families`, and a tiny
//! run of it (one configuration, half a second each way) runs the
//! configuration in process and over loopback TCP against a `mqlab
//! broker` process the lab starts and stops, and reports both rows with
//! the wire row's ratios to the in-process one.

mod common;

#[test]
fn the_wire_family_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::mqlab_ok(dir.path(), &["matrix", "--list-families"]);
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["store", "wire"], "{out}");
    assert!(out.contains("loopback"), "{out}");
    let help = common::mqlab_ok(dir.path(), &["matrix", "--help"]);
    assert!(help.contains("--family <FAMILY>"), "{help}");
    let e = common::error_line(
        dir.path(),
        &[
            "matrix",
            "--family",
            "wire",
            "--small-files",
            "--no-baseline",
            "--out",
            "m",
        ],
    );
    assert!(
        e.contains("--family wire") && e.contains("--small-files"),
        "{e}"
    );
    assert!(
        !dir.path().join("m").exists(),
        "a failed matrix left its folder"
    );
}

#[test]
fn a_tiny_wire_family_run_has_both_rows_and_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = common::mqlab_ok(
        dir.path(),
        &[
            "matrix",
            "--family",
            "wire",
            "--quick",
            "--flush",
            "async",
            "--no-baseline",
            "--no-plot",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--producers",
            "2",
            "--msg-size",
            "256",
            "--out",
            "m",
        ],
    );
    let m = dir.path().join("m");
    let table = std::fs::read_to_string(m.join("table.md")).unwrap();
    let rows: Vec<Vec<String>> = table
        .lines()
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0][0], rows[1][0], "{table}");
    assert!(rows[0][0].starts_with("async"), "{table}");
    assert_eq!(
        (rows[0][1].as_str(), rows[1][1].as_str()),
        ("in-process", "wire (loopback)")
    );
    assert_eq!(rows[0][5], "-", "{table}");
    assert!(
        rows[1][5].ends_with('x') && rows[1][6].ends_with('x'),
        "{table}"
    );
    assert!(stdout.contains(&table), "{stdout}");
    let j = common::json(&m.join("matrix.json"));
    assert_eq!(j["family"], "wire");
    assert_eq!(
        j["runs"],
        serde_json::json!(["async-500ms-pwrite-inproc", "async-500ms-pwrite-wire"]),
        "{j}"
    );
    assert_eq!(j["skipped"], serde_json::json!([]), "{j}");
    let cost = &j["wire_cost"][0];
    let (inproc, wire) = (
        cost["inproc_msgs_per_s"].as_f64().unwrap(),
        cost["wire_msgs_per_s"].as_f64().unwrap(),
    );
    assert!(inproc > 0.0 && wire > 0.0, "{cost}");
    let ratio = cost["msgs_ratio"].as_f64().unwrap();
    assert!((ratio - wire / inproc).abs() < 0.01, "{cost}");
    assert!(rows[1][5] == format!("{ratio:.2}x"), "{table} {cost}");
    // Both runs are full run folders; the wire one went through a broker
    // on loopback.
    let i = common::json(&m.join("async-500ms-pwrite-inproc/summary.json"));
    let w = common::json(&m.join("async-500ms-pwrite-wire/summary.json"));
    assert!(i["messages_acked"].as_u64().unwrap() > 0);
    assert!(w["messages_acked"].as_u64().unwrap() > 0);
    assert!(
        w["label"]
            .as_str()
            .unwrap()
            .starts_with("rocketmq://127.0.0.1:"),
        "{w}"
    );
    assert_eq!(w["errors"], serde_json::json!({}), "{w}");
    assert_eq!(w["config"]["workload"]["producers"], 2);
    assert_eq!(i["config"]["workload"]["msg_size"], 256);
    assert_eq!(w["config"]["workload"]["msg_size"], 256);
}
