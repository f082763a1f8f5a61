//! Helpers shared by the wire tests: a loopback connection and one
//! request/answer exchange.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mqlab_protocol::{decode_frame, Limits, RemotingCommand};

/// A connection to `addr` whose reads give up after 10 s.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends raw bytes and reads one answer frame (requests the broker pushes
/// meanwhile are skipped).
pub fn roundtrip(s: &mut TcpStream, bytes: &[u8]) -> RemotingCommand {
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((cmd, used)) = decode_frame(&buf, &Limits::default()).unwrap() {
            buf.drain(..used);
            if cmd.is_response() {
                return cmd;
            }
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Runs a real client to completion, bounded by `secs` (killed and failed
/// past it), and returns its stdout; a non-zero exit fails the test with
/// both outputs. The outputs are drained while it runs, so a chatty client
/// cannot block on a full pipe.
pub fn run_client(mut cmd: std::process::Command, what: &str, secs: u64) -> String {
    use std::process::Stdio;
    use std::time::Instant;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{what} failed: {status}\n{out}\n{err}");
    out
}
