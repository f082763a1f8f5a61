//! The store directory's lock: `{dir}/lock`, as RocketMQ's broker keeps
//! one. A writable open holds an exclusive `flock` on it until the store
//! is shut down or dropped, and writes its pid into it; a second writer
//! (another process, or a second open in this one) is refused with the
//! directory and the holder's pid. Read-only opens (verify, inspect) take
//! a shared lock when they can, so no writer starts under them, and carry
//! on with a warning when a writer is active. The kernel releases a
//! `flock` when its holder dies, so a lock file left by a SIGKILLed
//! process never blocks the next open.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the lock file in the store directory.
pub const LOCK_FILE: &str = "lock";

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
    exclusive: bool,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // A writer leaves no pid behind (a refused writer then blames the
        // read-only opens that may hold the lock next); a kill leaves it,
        // and the holder check sees that pid is gone.
        if self.exclusive {
            let _ = self.file.set_len(0);
        }
    }
}

impl DirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the exclusive lock of a store directory (which must exist).
pub fn lock_exclusive(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
                holder: describe_holder(&mut file),
            })
        }
        Err(TryLockError::Error(e)) => return Err(Error::io("flock", &path, e)),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::io("write lock file", &path, e))?;
    Ok(DirLock {
        file,
        path,
        exclusive: true,
    })
}

/// What a read-only open found.
#[derive(Debug)]
pub enum SharedLock {
    /// Held until dropped: no writer can start meanwhile.
    Held(DirLock),
    /// A writer holds the directory; what is read may change under us.
    WriterActive(String),
    /// No lock file (nothing to lock without writing into the directory).
    NoLockFile,
}

/// Takes a shared lock for a read-only open, never blocking and never
/// creating anything.
pub fn lock_shared(dir: &Path) -> Result<SharedLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SharedLock::NoLockFile),
        Err(e) => return Err(Error::io("open lock file", &path, e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(SharedLock::Held(DirLock {
            file,
            path,
            exclusive: false,
        })),
        Err(TryLockError::WouldBlock) => Ok(SharedLock::WriterActive(describe_holder(&mut file))),
        Err(TryLockError::Error(e)) => Err(Error::io("flock", &path, e)),
    }
}

/// "pid N" from the lock file, or a description when it names none (a
/// read-only open holds the lock, or the writer has not written it yet).
fn describe_holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.take(32).read_to_string(&mut s);
    match s.trim().parse::<u32>() {
        Ok(pid) if pid == std::process::id() => format!("pid {pid} (this process)"),
        // The pid of a dead writer stays in the file: then a reader holds it.
        Ok(pid) if Path::new("/proc").join(pid.to_string()).exists() => format!("pid {pid}"),
        _ => "a read-only open (mqlab verify or inspect) in another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_exclusive(dir.path()).unwrap();
        let err = lock_exclusive(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(matches!(
            lock_shared(dir.path()).unwrap(),
            SharedLock::WriterActive(_)
        ));
        drop(first);
        let _again = lock_exclusive(dir.path()).unwrap();
    }

    #[test]
    fn readers_share_and_keep_writers_out() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            lock_shared(dir.path()).unwrap(),
            SharedLock::NoLockFile
        ));
        assert!(!dir.path().join(LOCK_FILE).exists());
        drop(lock_exclusive(dir.path()).unwrap());
        let r1 = lock_shared(dir.path()).unwrap();
        let r2 = lock_shared(dir.path()).unwrap();
        assert!(matches!(r1, SharedLock::Held(_)));
        assert!(matches!(r2, SharedLock::Held(_)));
        assert!(lock_exclusive(dir.path()).is_err());
        drop((r1, r2));
        assert!(lock_exclusive(dir.path()).is_ok());
    }
}
