//! `mqlab delay` output folders: a failed run leaves nothing behind and its
//! I/O errors name the operation and the path; the default folder is
//! claimed fresh (`delay-<ts>-2`, ... when taken), never written into.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{names, now, stamp};

/// A small, short delay run (one scheduler, 20 timers due 100 ms after
/// the start).
const SMALL_DELAY: &[&str] = &[
    "delay",
    "--scheduler",
    "wheel",
    "--timers",
    "20",
    "--precision-ms",
    "100",
    "--lead-ms",
    "100",
    "--burst-spread-ms",
    "0",
    "--grace-ms",
    "20000",
    "--no-preallocate",
    "--no-plot",
];

#[test]
fn a_failed_delay_run_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::write(cwd.join("f"), "x").unwrap();
    for out in [None, Some("a/b/c")] {
        let mut args: Vec<&str> = SMALL_DELAY.to_vec();
        args.extend(["--data-dir", "f"]);
        if let Some(o) = out {
            args.extend(["--out", o]);
        }
        let o = common::mqlab(cwd, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{err}");
        let line = err.lines().find(|l| l.starts_with("Error:")).unwrap_or("");
        assert!(
            line.contains("create data dir f: ") && line.contains("File exists"),
            "the error names the operation and the path: {err}"
        );
        // Neither results/delay-<ts> nor --out (nor its parents) remain.
        assert_eq!(names(cwd), ["f"], "--out {out:?}");
    }
    // An existing --out is never removed, nor what it holds.
    fs::create_dir(cwd.join("keep")).unwrap();
    fs::write(cwd.join("keep/notes.txt"), "mine").unwrap();
    let mut args: Vec<&str> = SMALL_DELAY.to_vec();
    args.extend(["--data-dir", "f", "--out", "keep"]);
    assert!(!common::mqlab(cwd, &args).status.success());
    assert_eq!(names(&cwd.join("keep")), ["notes.txt"]);
}

#[test]
fn delay_never_writes_into_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let results = cwd.join("results");
    // Folders of an earlier run for every second this test can take.
    let t0 = now();
    let taken: Vec<PathBuf> = (t0.saturating_sub(2)..t0 + 120)
        .map(|s| results.join(format!("delay-{}", stamp(s))))
        .collect();
    for t in &taken {
        fs::create_dir_all(t).unwrap();
        fs::write(t.join("summary.json"), "earlier run").unwrap();
    }
    let mut args: Vec<&str> = SMALL_DELAY.to_vec();
    args.extend(["--data-dir", "data"]);
    let stdout = common::mqlab_ok(cwd, &args);
    assert!(stdout.contains("wheel"), "{stdout}");
    assert!(now() < t0 + 110, "the run took too long for this test");
    for t in &taken {
        assert_eq!(
            fs::read_to_string(t.join("summary.json")).unwrap(),
            "earlier run",
            "{} was written into",
            t.display()
        );
        assert_eq!(names(t), ["summary.json"]);
    }
    let new: Vec<String> = names(&results)
        .into_iter()
        .filter(|n| !taken.iter().any(|t| t.ends_with(n)))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].starts_with("delay-") && new[0].ends_with("-2"),
        "{new:?}"
    );
    let s = common::json(&results.join(&new[0]).join("summary.json"));
    assert_eq!(s["runs"][0]["scheduler"], "wheel");
    assert_eq!(s["runs"][0]["delivered"], 20);
}
