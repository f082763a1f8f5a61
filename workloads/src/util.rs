//! Small shared helpers: the Ctrl-C stop flag, timestamps, machine
//! information, scratch directories and JSON/text file writing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// Set by Ctrl-C: every loop checks it and winds down, results are still
/// written. A second Ctrl-C exits at once.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// True once Ctrl-C was pressed or SIGTERM arrived (the handler takes
/// both: ctrlc's `termination` feature).
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Installs the Ctrl-C handler (once per process).
pub fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nmqlab: second stop signal (Ctrl-C / SIGTERM), exiting now");
            std::process::exit(130);
        }
        eprintln!(
            "\nmqlab: stop signal (Ctrl-C / SIGTERM): stopping cleanly and writing results (again to abort)"
        );
    });
}

/// UTC time as `YYYYmmdd-HHMMSS`, for folder names.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = mqlab_engine::clock::civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where and on what a measurement ran.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct MachineInfo {
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// `uname -srvm`: system, release, version, machine.
    pub os: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Filesystem type of the data directory (its mount in /proc/self/mounts).
    pub filesystem: String,
    /// The data directory measured.
    pub data_dir: String,
}

/// Filesystem type of `dir`: the type of the mount that contains it in
/// `/proc/self/mounts` (by name: ext2, ext3 and ext4 share one statfs
/// magic number), else "unknown".
pub fn filesystem_type(dir: &Path) -> String {
    let path = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| mount_fstype(&m, &path))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The filesystem type of the mount containing `path` (absolute), from the
/// text of `/proc/mounts`: the longest mount point that is a prefix of
/// `path`, the last one listed when several are mounted on the same point.
fn mount_fstype(mounts: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(point), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let point = PathBuf::from(unescape_mount_field(point));
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, fstype.to_string()));
        }
    }
    best.map(|(_, t)| t)
}

/// Undoes the octal escapes of /proc/mounts (`\040` for a space, ...).
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl MachineInfo {
    /// Collects the machine's description, with the filesystem of `dir`.
    pub fn collect(dir: &Path) -> MachineInfo {
        let u = rustix::system::uname();
        let field = |f: &std::ffi::CStr| f.to_string_lossy().trim().to_string();
        let kernel = field(u.release());
        // As `uname -srvm` prints it.
        let os = format!(
            "{} {} {} {}",
            field(u.sysname()),
            kernel,
            field(u.version()),
            field(u.machine())
        );
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        let memory_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
            .unwrap_or(0.0);
        MachineInfo {
            kernel,
            os,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            memory_gib,
            filesystem: filesystem_type(dir),
            data_dir: dir.display().to_string(),
        }
    }
}

/// Parent directory for scratch data directories: `requested` if given,
/// else the system temporary directory. Warns when it is memory-backed
/// (fdatasync would measure nothing).
pub fn scratch_parent(requested: Option<&Path>) -> Result<PathBuf> {
    let dir = match requested {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir(),
    };
    fs::create_dir_all(&dir).with_context(|| format!("create data dir {}", dir.display()))?;
    let fs_type = filesystem_type(&dir);
    if matches!(fs_type.as_str(), "tmpfs" | "ramfs") {
        eprintln!(
            "mqlab: warning: {} is on {fs_type}: fdatasync costs nothing there; \
             give --data-dir on a real disk to measure it",
            dir.display()
        );
    }
    Ok(dir)
}

/// A fresh scratch directory under `parent`, removed on drop unless kept.
pub fn scratch_dir(parent: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| format!("create a scratch directory in {}", parent.display()))
}

/// Writes pretty JSON to `path`.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The exact command line of this process, shell-quoted.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Writes `command.txt` (the exact command line) into `dir`.
pub fn write_command(dir: &Path) -> Result<()> {
    let path = dir.join("command.txt");
    fs::write(&path, format!("{}\n", command_line()))
        .with_context(|| format!("write {}", path.display()))
}

/// Points `results/latest` at `target` (a sibling folder): a relative
/// symlink, or where symlinks fail, a file naming the folder. The new link
/// replaces the old one in one rename, so `latest` never dangles or
/// vanishes in between. Call it only once the run succeeded.
pub fn update_latest(target: &Path) -> Result<()> {
    let Some(parent) = target.parent() else {
        return Ok(());
    };
    let Some(name) = target.file_name() else {
        return Ok(());
    };
    let latest = parent.join("latest");
    if let Ok(meta) = latest.symlink_metadata() {
        if meta.is_dir() {
            // A real folder named latest: leave it alone.
            return Ok(());
        }
    }
    let tmp = parent.join(format!(".latest.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(name, &tmp).is_ok();
    #[cfg(not(unix))]
    let linked = false;
    if !linked {
        fs::write(&tmp, format!("{}\n", name.to_string_lossy()))
            .with_context(|| format!("write {}", tmp.display()))?;
    }
    fs::rename(&tmp, &latest).with_context(|| {
        let _ = fs::remove_file(&tmp);
        format!("rename {} to {}", tmp.display(), latest.display())
    })
}

/// A directory a run writes into, removed again (with everything in it)
/// when the run fails, but only as far as this run created it: a folder
/// that existed before is never removed, and missing parents created on
/// the way are removed only while empty. Call [`OutDir::keep`] once the run
/// succeeded; dropping it without that is the failure path.
#[derive(Debug)]
pub struct OutDir {
    path: PathBuf,
    /// True when this run created `path` itself.
    created: bool,
    /// Parents that were missing and created on the way, deepest first.
    created_parents: Vec<PathBuf>,
    kept: bool,
}

/// The missing ancestors of `path` (not `path` itself), deepest first.
fn missing_ancestors(path: &Path) -> Vec<PathBuf> {
    path.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| a.symlink_metadata().is_err())
        .map(Path::to_path_buf)
        .collect()
}

impl OutDir {
    /// A new folder named `base`, or `base-2`, `base-3`, ... when that
    /// name is taken: each candidate is claimed with one `create_dir`, so
    /// two runs started in the same second never share (or overwrite) a
    /// folder. `what` names the folder in errors ("results folder").
    pub fn unique(base: &Path, what: &str) -> Result<OutDir> {
        let mut dir = OutDir::unclaimed(base);
        dir.create_parent(what)?;
        for n in 1u32.. {
            let candidate = if n == 1 {
                base.to_path_buf()
            } else {
                let mut name = base.as_os_str().to_os_string();
                name.push(format!("-{n}"));
                PathBuf::from(name)
            };
            match fs::create_dir(&candidate) {
                Ok(()) => {
                    dir.path = candidate;
                    dir.created = true;
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("create {what} {}", candidate.display()))
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// The folder the user named: created (with its parents) when missing,
    /// used as it is when it exists; only what this call created is removed
    /// on failure.
    pub fn given(path: &Path, what: &str) -> Result<OutDir> {
        let mut dir = OutDir::unclaimed(path);
        dir.create_parent(what)?;
        match fs::create_dir(path) {
            Ok(()) => dir.created = true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e).with_context(|| format!("create {what} {}", path.display())),
        }
        Ok(dir)
    }

    /// `path`, not created yet, with the record of its missing parents.
    fn unclaimed(path: &Path) -> OutDir {
        OutDir {
            path: path.to_path_buf(),
            created: false,
            created_parents: missing_ancestors(path),
            kept: false,
        }
    }

    fn create_parent(&self, what: &str) -> Result<()> {
        match self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => fs::create_dir_all(parent)
                .with_context(|| format!("create {what} {}", self.path.display())),
            None => Ok(()),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run succeeded: keep the folder.
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        std::mem::take(&mut self.path)
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if self.created {
            let _ = fs::remove_dir_all(&self.path);
        }
        for p in &self.created_parents {
            // Only while empty: another run may have put its folder there.
            if fs::remove_dir(p).is_err() {
                break;
            }
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`mqlab inspect | head`) is not
/// an error worth a panic.
pub fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Human-friendly number: 12345.6 -> "12,346".
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    // Digits left before the next comma.
    let mut group = match s.len() % 3 {
        0 => 3,
        r => r,
    };
    for c in s.chars() {
        if group == 0 {
            out.push(',');
            group = 3;
        }
        out.push(c);
        group -= 1;
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_name_folders() {
        let t = timestamp();
        assert_eq!(t.len(), "20240229-235959".len(), "{t}");
        assert_eq!(&t[8..9], "-", "{t}");
        assert!(t.starts_with("20"), "{t}");
    }

    #[test]
    fn filesystem_from_the_containing_mount() {
        let mounts = "/dev/vda / ext4 rw,relatime 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n\
                      /dev/vdb /data xfs rw 0 0\n\
                      /dev/vdc /data/old ext3 rw 0 0\n\
                      /dev/vdd /mnt/with\\040space ext2 rw 0 0\n\
                      overlay /tmp overlay rw 0 0\n";
        let t = |p: &str| mount_fstype(mounts, Path::new(p));
        assert_eq!(t("/home/x").as_deref(), Some("ext4"));
        assert_eq!(t("/").as_deref(), Some("ext4"));
        assert_eq!(t("/data/x").as_deref(), Some("xfs"));
        assert_eq!(t("/data/old/y").as_deref(), Some("ext3"));
        assert_eq!(t("/data/older").as_deref(), Some("xfs"));
        assert_eq!(t("/mnt/with space/z").as_deref(), Some("ext2"));
        // The last mount on a point hides the earlier ones.
        assert_eq!(t("/tmp/a").as_deref(), Some("overlay"));
        assert_eq!(mount_fstype("", Path::new("/x")), None);
    }

    #[test]
    fn out_dirs_never_reuse_a_folder_and_clean_up_only_their_own() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("results").join("20250101-000000-x");
        let a = OutDir::unique(&base, "results folder").unwrap();
        let b = OutDir::unique(&base, "results folder").unwrap();
        let c = OutDir::unique(&base, "results folder").unwrap();
        assert_eq!(a.path(), base);
        assert_eq!(b.path(), root.path().join("results/20250101-000000-x-2"));
        assert_eq!(c.path(), root.path().join("results/20250101-000000-x-3"));
        let a = a.keep();
        drop(b);
        assert!(a.is_dir());
        assert!(!root.path().join("results/20250101-000000-x-2").exists());
        // `results` holds a kept folder: it stays when c fails.
        drop(c);
        assert!(root.path().join("results").is_dir());

        // A failed run removes the folder and the parents it created...
        let deep = root.path().join("p/q/out");
        let d = OutDir::given(&deep, "output folder").unwrap();
        fs::write(deep.join("command.txt"), "x").unwrap();
        drop(d);
        assert!(!root.path().join("p").exists());
        // ...but never a folder that existed, nor what is in it.
        let existing = root.path().join("mine");
        fs::create_dir(&existing).unwrap();
        fs::write(existing.join("keep.txt"), "x").unwrap();
        drop(OutDir::given(&existing, "output folder").unwrap());
        assert!(existing.join("keep.txt").is_file());
        // A regular file is not a folder.
        let file = root.path().join("file");
        fs::write(&file, "x").unwrap();
        let e = OutDir::given(&file, "output folder").unwrap_err();
        assert!(
            format!("{e:#}").contains(&file.display().to_string()),
            "{e:#}"
        );
    }

    #[test]
    fn latest_points_at_the_last_success() {
        let root = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            let dir = root.path().join(name);
            fs::create_dir(&dir).unwrap();
            update_latest(&dir).unwrap();
            let latest = root.path().join("latest");
            assert_eq!(fs::read_link(&latest).unwrap(), Path::new(name));
        }
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 3);
    }

    #[test]
    fn quoting_and_thousands() {
        assert_eq!(shell_quote("--flush"), "--flush");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(thousands(123456.0), "123,456");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}
