//! `mqlab crash` crashes the simulated disk on purpose: the puts that fail
//! because of it are not reported as a store failure ("1000 failed puts in
//! a row ... the disk is gone").

mod common;

#[test]
fn a_deliberate_crash_raises_no_failed_puts_alarm() {
    let dir = tempfile::tempdir().unwrap();
    // Big messages roll the 1 MiB segments often; a roll on the dead disk
    // makes the store refuse every later put at once, which is what raced
    // the crash mark.
    let out = common::mqlab(
        dir.path(),
        &[
            "crash",
            "--crashes",
            "4",
            "--msg-size",
            "4096",
            "--min-ms",
            "20",
            "--max-ms",
            "120",
            "--out",
            "c",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !stderr.contains("failed puts in a row"),
        "a deliberate crash reported as a failure:\n{stderr}"
    );
    let s = common::json(&dir.path().join("c/crash_summary.json"));
    assert_eq!(s["crashes"], 4);
    assert!(s["acked"].as_u64().unwrap() > 0);
}
