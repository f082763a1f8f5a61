//! The machine information names the filesystem as the mount table does:
//! ext4 is not "ext2/ext3" (the three share a magic number in statfs).

mod common;

use std::path::Path;

/// Filesystem type of the mount containing `path`, from /proc/self/mounts
/// (longest mount point; the last of several on one point).
fn mount_type(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let point = Path::new(f[1]);
        if path.starts_with(point) {
            let depth = point.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, f[2].to_string()));
            }
        }
    }
    best.map(|(_, t)| t)
}

#[test]
fn filesystem_is_the_mount_type() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::mqlab_ok(
        dir.path(),
        &common::tiny_run("20", &["--data-dir", data.to_str().unwrap(), "--out", "r"]),
    );
    let s = common::json(&dir.path().join("r/summary.json"));
    let fs = s["machine"]["filesystem"].as_str().unwrap().to_string();
    assert_ne!(fs, "ext2/ext3", "statfs's name, not the filesystem's");
    let canon = std::fs::canonicalize(&data).unwrap();
    match mount_type(&canon) {
        Some(t) => assert_eq!(fs, t),
        None => eprintln!("no /proc/self/mounts: filesystem reported as {fs}"),
    }
}
