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
