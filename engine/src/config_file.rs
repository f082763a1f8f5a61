//! The one crash-safe writer of small JSON files beside the store: the
//! delay levels' `config/delayOffset.json`, and the broker's
//! `config/consumerOffset.json`, `config/topics.json` and a broadcasting
//! consumer's local offsets. Written through the store's [`Env`] so the
//! simulator sees and crashes them too.
//!
//! The `Env` has no rename, so a file is replaced in two synced steps:
//! first its companion `<name><suffix>` gets the whole new content, then
//! `<name>` is rewritten. At any instant one of the two holds a complete
//! copy; loading prefers `<name>` and falls back to the companion when
//! `<name>` does not parse (a write torn by a crash). The companion's
//! suffix is part of the on-disk layout (FORMAT.md): `.tmp` for the
//! broker's files, `.bak` for the delay levels' progress.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{Env, OpenOptions};

/// One JSON file with a crash-safe replace.
#[derive(Clone)]
pub struct ConfigFile {
    env: Arc<dyn Env>,
    path: PathBuf,
    suffix: &'static str,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .finish()
    }
}

impl ConfigFile {
    /// The file at `path` with the companion `<path>.tmp` (its directory
    /// is created on the first write).
    pub fn new(env: Arc<dyn Env>, path: impl Into<PathBuf>) -> ConfigFile {
        Self::with_companion(env, path, ".tmp")
    }

    /// The file at `path` with the companion `<path><suffix>`.
    pub fn with_companion(
        env: Arc<dyn Env>,
        path: impl Into<PathBuf>,
        suffix: &'static str,
    ) -> ConfigFile {
        ConfigFile {
            env,
            path: path.into(),
            suffix,
        }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tmp_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_os_string();
        name.push(self.suffix);
        PathBuf::from(name)
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        if !self.env.exists(path) {
            return Ok(None);
        }
        let f = self
            .env
            .open(path, OpenOptions::read_only())
            .map_err(|e| Error::io("open", path, e))?;
        let mut buf = vec![0u8; f.len() as usize];
        let n = f
            .read_at(0, &mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        buf.truncate(n);
        Ok(Some(buf))
    }

    /// The first of the file and its companion that `parse` accepts; `None`
    /// when neither exists or parses.
    pub fn load_with<T>(&self, parse: impl Fn(&[u8]) -> Option<T>) -> Result<Option<T>> {
        for path in [self.path.clone(), self.tmp_path()] {
            if let Some(v) = self.read(&path)?.and_then(|b| parse(&b)) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Loads and parses the newest complete copy; `None` when neither the
    /// file nor its companion exists. Fails when both exist and neither
    /// parses.
    pub fn load<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        let mut last_err = None;
        for path in [self.path.clone(), self.tmp_path()] {
            match self.read(&path)? {
                None => continue,
                Some(bytes) => match serde_json::from_slice::<T>(&bytes) {
                    Ok(v) => return Ok(Some(v)),
                    Err(e) => last_err = Some((path, e)),
                },
            }
        }
        match last_err {
            None => Ok(None),
            Some((path, e)) => Err(Error::Corrupt {
                path,
                offset: 0,
                reason: format!("not valid JSON: {e}"),
            }),
        }
    }

    fn write_synced(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let f = self
            .env
            .open(
                path,
                OpenOptions {
                    create: true,
                    ..OpenOptions::default()
                },
            )
            .map_err(|e| Error::io("open", path, e))?;
        f.set_len(0)
            .and_then(|_| f.write_at(0, bytes))
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io("write", path, e))
    }

    /// Replaces the file's content with `value` as pretty JSON, durably.
    pub fn store<T: serde::Serialize>(&self, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
            path: self.path.clone(),
            offset: 0,
            reason: format!("cannot encode: {e}"),
        })?;
        self.store_bytes(&bytes)
    }

    /// Replaces the file's content with `bytes`, durably.
    pub fn store_bytes(&self, bytes: &[u8]) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            self.env
                .create_dir_all(dir)
                .map_err(|e| Error::io("create dir", dir, e))?;
        }
        let tmp = self.tmp_path();
        self.write_synced(&tmp, bytes)?;
        self.write_synced(&self.path, bytes)?;
        if let Some(dir) = self.path.parent() {
            self.env
                .sync_dir(dir)
                .map_err(|e| Error::io("sync dir", dir, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimEnv;
    use std::collections::BTreeMap;

    #[test]
    fn round_trips_and_falls_back_to_tmp() {
        let env: Arc<dyn Env> = Arc::new(SimEnv::new(7));
        let f = ConfigFile::new(env.clone(), "/s/config/x.json");
        assert_eq!(f.load::<BTreeMap<String, u64>>().unwrap(), None);
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), 1u64);
        f.store(&m).unwrap();
        assert_eq!(f.load::<BTreeMap<String, u64>>().unwrap(), Some(m.clone()));
        // A torn main file: the .tmp copy still parses.
        let main = env
            .open(Path::new("/s/config/x.json"), OpenOptions::default())
            .unwrap();
        main.set_len(3).unwrap();
        assert_eq!(f.load::<BTreeMap<String, u64>>().unwrap(), Some(m));
    }

    #[test]
    fn load_with_falls_back_to_bak() {
        let env: Arc<dyn Env> = Arc::new(SimEnv::new(1));
        let p = Path::new("/x/config/a.json");
        let f = ConfigFile::with_companion(env.clone(), p, ".bak");
        f.store_bytes(b"{\"a\":1}").unwrap();
        let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
        assert!(f.load_with(parse).unwrap().is_some());
        // A torn main file: the .bak still parses.
        let main = env.open(p, OpenOptions::default()).unwrap();
        main.write_at(0, b"{{{").unwrap();
        assert_eq!(
            f.load_with(parse).unwrap().unwrap()["a"],
            serde_json::json!(1)
        );
        assert!(env.exists(Path::new("/x/config/a.json.bak")));
    }
}
