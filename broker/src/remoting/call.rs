//! One request to a remote server and its answer, on a plain blocking
//! socket (a broker registering with name servers every 30 s needs
//! nothing more).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mqlab_protocol::{decode_frame, encode_frame, Limits, RemotingCommand};

/// Sends `req` to `addr` and waits up to `timeout` for the answer with the
/// same opaque.
pub fn call(
    addr: SocketAddr,
    req: &RemotingCommand,
    timeout: Duration,
) -> std::io::Result<RemotingCommand> {
    let bad = |e: mqlab_protocol::ProtocolError| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    };
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&encode_frame(req).map_err(bad)?)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some((cmd, used)) = decode_frame(&buf, &Limits::default()).map_err(bad)? {
            buf.drain(..used);
            if cmd.is_response() && cmd.opaque == req.opaque {
                return Ok(cmd);
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{addr} closed the connection before answering"),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
