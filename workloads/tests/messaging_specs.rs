//! Every shipped messaging spec runs (briefly) through `mqlab run --spec`
//! and writes, per variant, a summary.json with the messaging figures at
//! the top level, messaging.csv and e2e_latency.hgrm, plus the charts.

mod common;

#[test]
fn messaging_specs_run_and_record_their_figures() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let specs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    for (exp, variants) in [
        ("peak-shaving", &["push", "pull"][..]),
        (
            "ordered",
            &["concurrent", "orderly", "orderly-no-pq-lock"][..],
        ),
        ("transactions", &["plain", "txn", "txn-unanswered"][..]),
        ("retry", &["fail-10", "fail-50"][..]),
        ("broadcast", &["clustering", "broadcasting"][..]),
    ] {
        // The shipped spec (its [messaging] table comes last, so a line
        // appended lands in it).
        let mut text = std::fs::read_to_string(specs.join(format!("{exp}.toml"))).unwrap();
        // Shorter waits than the shipped values, so the whole test stays
        // within seconds.
        match exp {
            "ordered" => {
                text = text.replace("churn_ms = 500", "churn_ms = 200");
                text.push_str("capacity_messages = 500\n");
            }
            "transactions" => {
                text = text
                    .replace("check_interval_ms = 500", "check_interval_ms = 100")
                    .replace("txn_timeout_ms = 300", "txn_timeout_ms = 100");
            }
            "retry" => text.push_str("retry_levels = \"10ms 20ms 30ms 40ms 50ms 60ms\"\n"),
            _ => {}
        }
        let spec = cwd.join(format!("{exp}.toml"));
        std::fs::write(&spec, text).unwrap();
        let stdout = common::mqlab_ok(
            cwd,
            &[
                "run",
                "--spec",
                spec.to_str().unwrap(),
                "--duration",
                "0.4",
                "--small-files",
                "--out",
                exp,
            ],
        );
        assert!(stdout.contains("e2e p99 ms"), "{stdout}");
        for v in variants {
            let s = common::json(&cwd.join(exp).join(v).join("summary.json"));
            assert_eq!(s["experiment"], exp);
            assert_eq!(s["variant"], *v);
            for key in [
                "e2e_latency_us",
                "backlog_max",
                "duplicates",
                "out_of_order",
                "dlq_messages",
                "produced",
                "consumed",
            ] {
                assert!(!s[key].is_null(), "{exp}/{v}: {key} missing");
            }
            assert!(s["produced"].as_u64().unwrap() > 0, "{exp}/{v}");
            assert!(s["consumed"].as_u64().unwrap() > 0, "{exp}/{v}");
            assert!(cwd.join(exp).join(v).join("messaging.csv").is_file());
            assert!(cwd.join(exp).join(v).join("e2e_latency.hgrm").is_file());
        }
        assert!(cwd.join(exp).join("backlog.png").is_file());
        assert!(cwd.join(exp).join("e2e_latency.svg").is_file());
    }
    let txn = common::json(&cwd.join("transactions/txn/summary.json"));
    assert!(txn["txn_resolution_ms"]["count"].as_u64().unwrap() > 0);
    let push = common::json(&cwd.join("peak-shaving/push/summary.json"));
    assert_eq!(push["duplicates"], 0);
}
