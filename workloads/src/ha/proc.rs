//! `mqlab broker` processes for `mqlab ha`: started with every port
//! chosen by the system, their addresses read from the lines they print,
//! their store offsets read from their metrics endpoint, killed with
//! SIGKILL or stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A running `mqlab` process (a broker, a controller, a name server).
pub struct BrokerProc {
    pub name: String,
    child: Child,
    /// Client address.
    pub addr: SocketAddr,
    /// A master's HA address.
    pub ha: Option<SocketAddr>,
    /// Metrics endpoint.
    metrics: Option<SocketAddr>,
    stderr: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

fn after(line: &str, marker: &str) -> Option<SocketAddr> {
    line.split(marker)
        .nth(1)?
        .split([';', ' ', '/'])
        .next()?
        .parse()
        .ok()
}

impl BrokerProc {
    /// Starts `bin broker` with its data in `dir/name`, on loopback ports
    /// the system picks (an embedded name server unless `extra` names
    /// one), plus `extra` options; waits (15 s at most) for its addresses.
    pub fn start(bin: &Path, dir: &Path, name: &str, extra: &[String]) -> Result<BrokerProc> {
        Self::start_as(bin, dir, name, name, extra)
    }

    /// As [`BrokerProc::start`] with its data in `dir/data` and its
    /// output named `name` (a restarted broker: the same data, another
    /// log).
    pub fn start_as(
        bin: &Path,
        dir: &Path,
        data: &str,
        name: &str,
        extra: &[String],
    ) -> Result<BrokerProc> {
        let data = dir.join(data);
        let mut args: Vec<String> = vec!["broker".into(), "--data-dir".into()];
        args.push(data.to_string_lossy().into_owned());
        for a in [
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--status-secs",
            "0",
            "--duration",
            "3600",
        ] {
            args.push(a.into());
        }
        if !extra.iter().any(|a| a == "--namesrv") {
            args.push("--namesrv-listen".into());
            args.push("127.0.0.1:0".into());
        }
        args.extend(extra.iter().cloned());
        let mut p = BrokerProc::spawn(bin, dir, name, &args, &|l| {
            l.contains("HA listening on ")
                || l.contains("replicating from master")
                || l.contains("controller mode")
        })?;
        // The metrics line may come after the role line.
        let t = Instant::now();
        while !p.printed().iter().any(|l| l.starts_with("metrics"))
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let seen = p.printed();
        let find = |marker: &str| seen.iter().find_map(|l| after(l, marker));
        p.ha = seen
            .iter()
            .find_map(|l| {
                l.contains("HA listening on ")
                    .then(|| after(l, "HA listening on "))
            })
            .flatten();
        p.metrics = find("http://");
        if p.metrics.is_none() {
            bail!("{name} printed no metrics address");
        }
        Ok(p)
    }

    /// Starts `bin args...` (any mqlab command), its stderr in
    /// `dir/name.stderr`; waits (15 s at most) for a line `until` accepts
    /// and takes the first "listening on ADDR" as its address.
    pub fn spawn(
        bin: &Path,
        dir: &Path,
        name: &str,
        args: &[String],
        until: &dyn Fn(&str) -> bool,
    ) -> Result<BrokerProc> {
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("start {} {}", bin.display(), args.join(" ")))?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let keep = lines.clone();
        std::thread::Builder::new()
            .name(format!("ha-{name}-stdout"))
            .spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    keep.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(l.clone());
                    let _ = tx.send(l);
                }
            })?;
        let (mut addr, mut ready) = (None, false);
        let end = Instant::now() + Duration::from_secs(15);
        while addr.is_none() || !ready {
            let left = end.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "{name} did not start: {}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    );
                }
            };
            if addr.is_none() && !line.starts_with("metrics") {
                addr = after(&line, "listening on ");
            }
            ready |= until(&line);
        }
        Ok(BrokerProc {
            name: name.into(),
            child,
            addr: addr.ok_or_else(|| anyhow!("no address"))?,
            ha: None,
            metrics: None,
            stderr,
            lines,
        })
    }

    /// Lines printed on stdout so far.
    pub fn printed(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its metrics endpoint (every broker started by [`BrokerProc::start`]
    /// has one).
    pub fn metrics(&self) -> SocketAddr {
        self.metrics
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)))
    }

    /// SIGKILL, reaped.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then a clean exit ("shut down cleanly") within 30 s.
    pub fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if t.elapsed() > Duration::from_secs(30) {
                self.kill9();
                bail!("{} did not stop within 30 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The stdout thread ends at EOF; give it a moment for the last line.
        let t = Instant::now();
        loop {
            let clean = self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|l| l.contains("shut down cleanly"));
            if clean && status.success() {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(2) {
                let printed = self.printed();
                let tail = &printed[printed.len().saturating_sub(5)..];
                bail!(
                    "{} exited {status} without a clean shutdown: stdout ends {:?}, stderr: {}",
                    self.name,
                    tail,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// The store offsets a broker exports (`mqlab_store_offset_bytes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offsets {
    pub written: u64,
    pub committed: u64,
    pub flushed: u64,
}

/// Reads `GET /metrics` at `addr` (1 s timeouts) for the store offsets.
pub fn offsets(addr: SocketAddr) -> Result<Offsets> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.take(4 << 20).read_to_string(&mut body)?;
    let mut o = Offsets::default();
    let mut seen = 0;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("mqlab_store_offset_bytes{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let v = v.max(0.0) as u64;
        if labels.contains("offset=\"written\"") {
            o.written = v;
            seen += 1;
        } else if labels.contains("offset=\"committed\"") {
            o.committed = v;
            seen += 1;
        } else if labels.contains("offset=\"flushed\"") {
            o.flushed = v;
            seen += 1;
        }
    }
    if seen < 3 {
        bail!("no mqlab_store_offset_bytes at {addr}");
    }
    Ok(o)
}
