//! Small shared helpers: the Ctrl-C stop flag, timestamps, machine
//! information, scratch directories and JSON/text file writing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// Set by Ctrl-C: every loop checks it and winds down, results are still
/// written. A second Ctrl-C exits at once.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// True once Ctrl-C was pressed.
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Installs the Ctrl-C handler (once per process).
pub fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nmqlab: second Ctrl-C, exiting now");
            std::process::exit(130);
        }
        eprintln!("\nmqlab: Ctrl-C, stopping and writing results (Ctrl-C again to abort)");
    });
}

/// UTC time as `YYYYmmdd-HHMMSS`, for folder names.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where and on what a measurement ran.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct MachineInfo {
    /// `uname -r`.
    pub kernel: String,
    /// `uname -srvm`-like description.
    pub os: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Filesystem type of the data directory (`stat -f -c %T`).
    pub filesystem: String,
    /// The data directory measured.
    pub data_dir: String,
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Filesystem type of `dir` as `stat -f -c %T` names it.
pub fn filesystem_type(dir: &Path) -> String {
    command_output("stat", &["-f", "-c", "%T", &dir.to_string_lossy()])
        .unwrap_or_else(|| "unknown".to_string())
}

impl MachineInfo {
    /// Collects the machine's description, with the filesystem of `dir`.
    pub fn collect(dir: &Path) -> MachineInfo {
        let kernel = command_output("uname", &["-r"])
            .or_else(|| {
                fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let os = command_output("uname", &["-srvm"]).unwrap_or_else(|| std::env::consts::OS.into());
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
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
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
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))
}

/// Writes pretty JSON to `path`.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
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
    let mut f = fs::File::create(dir.join("command.txt"))?;
    writeln!(f, "{}", command_line())?;
    Ok(())
}

/// Points `results/latest` at `target` (a sibling folder): a relative
/// symlink, or where symlinks fail, a file naming the folder.
pub fn update_latest(target: &Path) -> Result<()> {
    let Some(parent) = target.parent() else {
        return Ok(());
    };
    let Some(name) = target.file_name() else {
        return Ok(());
    };
    let latest = parent.join("latest");
    if latest.symlink_metadata().is_ok() {
        if latest.is_dir() && !latest.symlink_metadata()?.file_type().is_symlink() {
            // A real folder named latest: leave it alone.
            return Ok(());
        }
        fs::remove_file(&latest).ok();
    }
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(name, &latest).is_ok() {
            return Ok(());
        }
    }
    fs::write(&latest, format!("{}\n", name.to_string_lossy()))?;
    Ok(())
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
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
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
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn quoting_and_thousands() {
        assert_eq!(shell_quote("--flush"), "--flush");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
    }
}
