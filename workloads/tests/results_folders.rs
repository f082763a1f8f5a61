//! Results folders: a run never writes into an existing timestamped folder
//! (runs in the same second get `-2`, `-3`, ...), a failed run or matrix
//! removes the folder it created and leaves `results/latest` alone, a
//! successful matrix moves `latest`, and git ignores the run folders.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{names, now, stamp};

/// Three runs with this name may start in one second.
fn small_run() -> Vec<&'static str> {
    common::tiny_run("20", &["--name", "same"])
}

#[test]
fn runs_never_share_or_overwrite_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let results = cwd.join("results");
    // Folders of an earlier run for every second this test can take.
    let t0 = now();
    let taken: Vec<PathBuf> = (t0.saturating_sub(2)..t0 + 120)
        .map(|s| results.join(format!("{}-same", stamp(s))))
        .collect();
    for t in &taken {
        fs::create_dir_all(t).unwrap();
        fs::write(t.join("mine.txt"), "earlier run").unwrap();
    }
    // Three runs with the same name, each finding its folder taken.
    for _ in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_mqlab"))
            .args(small_run())
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(now() < t0 + 110, "the runs took too long for this test");
    for t in &taken {
        assert_eq!(names(t), ["mine.txt"], "{} was written into", t.display());
    }
    let new: Vec<String> = names(&results)
        .into_iter()
        .filter(|n| !taken.iter().any(|t| t.ends_with(n)))
        .collect();
    assert_eq!(new.len(), 3, "three runs, three new folders: {new:?}");
    for n in &new {
        assert!(n.contains("-same-"), "suffixed name: {n}");
        assert!(results.join(n).join("summary.json").is_file(), "{n}");
    }
}

#[test]
fn concurrent_runs_get_their_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_mqlab"))
                .args(small_run())
                .current_dir(cwd)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let runs = names(&cwd.join("results"));
    assert_eq!(runs.len(), 3, "{runs:?}");
    for n in &runs {
        assert!(cwd.join("results").join(n).join("summary.json").is_file());
    }
}

#[test]
fn a_failed_run_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::write(cwd.join("file"), "x").unwrap();
    let fails = |extra: &[&str]| {
        let args: Vec<&str> = ["run", "--no-baseline", "--small-files"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        assert!(!common::mqlab(cwd, &args).status.success(), "{args:?}");
    };
    // Fails after its results folder was created (the data dir is a file).
    fails(&["--data-dir", "file"]);
    assert_eq!(names(cwd), ["file"]);
    // A --out (and parents) the run created is removed too...
    fails(&["--data-dir", "file", "--out", "a/b/c"]);
    assert_eq!(names(cwd), ["file"]);
    // ...but an existing --out is never removed, nor what it holds.
    fs::create_dir(cwd.join("keep")).unwrap();
    fs::write(cwd.join("keep/notes.txt"), "mine").unwrap();
    fails(&["--data-dir", "file", "--out", "keep"]);
    assert!(cwd.join("keep/notes.txt").is_file());
    // A run that acknowledged nothing failed as well.
    fails(&["--messages", "0", "--data-dir", "data"]);
    assert_eq!(names(cwd), ["file", "keep"]);
}

/// Where `results/latest` points.
fn latest(cwd: &Path) -> Option<PathBuf> {
    fs::read_link(cwd.join("results/latest")).ok()
}

const QUICK_MATRIX: &[&str] = &[
    "matrix",
    "--quick",
    "--no-baseline",
    "--no-plot",
    "--small-files",
    "--flush",
    "async",
    "--backend",
    "pwrite",
    "--intervals",
    "",
    "--duration",
    "0.2",
    "--warmup",
    "0",
];

fn matrix(cwd: &Path, extra: &[&str]) -> std::process::Output {
    let args: Vec<&str> = QUICK_MATRIX.iter().chain(extra).copied().collect();
    common::mqlab(cwd, &args)
}

#[test]
fn latest_moves_only_when_a_matrix_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::write(cwd.join("file"), "x").unwrap();
    fs::create_dir_all(cwd.join("results/earlier")).unwrap();
    std::os::unix::fs::symlink("earlier", cwd.join("results/latest")).unwrap();

    // Fails before any configuration ran (its data dir is a file).
    let out = matrix(cwd, &["--data-dir", "file"]);
    assert!(!out.status.success());
    assert_eq!(latest(cwd), Some(PathBuf::from("earlier")));
    assert_eq!(names(&cwd.join("results")), ["earlier", "latest"]);

    // Every configuration failed (nothing acknowledged).
    let out = matrix(cwd, &["--messages", "0"]);
    assert!(!out.status.success());
    assert_eq!(latest(cwd), Some(PathBuf::from("earlier")));
    assert_eq!(names(&cwd.join("results")), ["earlier", "latest"]);

    // A matrix that ran moves latest to its folder.
    let out = matrix(cwd, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now_latest = latest(cwd).unwrap();
    assert_ne!(now_latest, PathBuf::from("earlier"));
    assert!(cwd
        .join("results")
        .join(&now_latest)
        .join("matrix.json")
        .is_file());
}

#[test]
fn git_ignores_run_folders_but_not_reference_results() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let ignored = |p: &str| {
        Command::new("git")
            .args(["check-ignore", "-q", "--no-index", p])
            .current_dir(repo)
            .status()
            .ok()
            .map(|s| s.success())
    };
    let Some(_) = ignored("results/latest") else {
        eprintln!("git not available: skipped");
        return;
    };
    let t = stamp(now());
    for p in [
        format!("results/{t}"),
        format!("results/{t}-2"),
        format!("results/{t}-async-pwrite"),
        format!("results/{t}-crash-async-power-3"),
        format!("results/delay-{t}"),
        "results/latest".to_string(),
    ] {
        assert_eq!(ignored(&p), Some(true), "{p} is not ignored by git");
    }
    for p in ["results/matrix-reference/summary.json", "results/peers"] {
        assert_eq!(ignored(p), Some(false), "{p} must stay tracked");
    }
}
