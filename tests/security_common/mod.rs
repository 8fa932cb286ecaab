//! Helpers of the security tests: raw TCP WebSocket clients that frame by hand (so they can
//! send what a well-behaved library never would, or stop reading), and a panic counter.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: OnceLock<()> = OnceLock::new();

/// Counts panics outside the test code on any thread from now on (the server's tasks
/// included), keeping the default report.
pub fn count_panics() {
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Test assertions (in tests/) are not the server panicking.
            let in_tests = info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/") || l.file().contains("/tests/"));
            if !in_tests {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Panics seen since [`count_panics`].
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// A client WebSocket frame, masked (clients must mask) with a fixed key.
pub fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let key = [0x12u8, 0x34, 0x56, 0x78];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A text frame.
pub fn text(s: &str) -> Vec<u8> {
    frame(1, true, s.as_bytes())
}

/// A raw WebSocket connection: handshake done, the Engine.IO open packet read.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read past the handshake, not parsed.
    pub pending: Vec<u8>,
}

impl RawWs {
    /// Opens `/socket.io/?EIO=4&transport=websocket` on `addr`, from `local` when given.
    pub async fn open(addr: SocketAddr) -> RawWs {
        Self::open_from(addr, None).await.expect("raw websocket")
    }

    pub async fn open_from(
        addr: SocketAddr,
        local: Option<std::net::IpAddr>,
    ) -> Result<RawWs, String> {
        let stream = match local {
            None => TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
            Some(ip) => {
                let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                sock.bind(SocketAddr::new(ip, 0))
                    .map_err(|e| e.to_string())?;
                sock.connect(addr).await.map_err(|e| e.to_string())?
            }
        };
        Self::handshake(stream, addr).await
    }

    async fn handshake(mut stream: TcpStream, addr: SocketAddr) -> Result<RawWs, String> {
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err(format!(
                        "closed during handshake: {}",
                        String::from_utf8_lossy(&buf)
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Ok(i + 4);
                }
            }
        })
        .await
        .map_err(|_| "handshake timed out".to_owned())??;
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head);
        }
        let mut ws = RawWs {
            stream,
            pending: buf[head_end..].to_vec(),
        };
        match ws.read_frame(Duration::from_secs(5)).await {
            Some((1, p)) if p.first() == Some(&b'0') => Ok(ws),
            other => Err(format!("no open packet: {other:?}")),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub async fn send_text(&mut self, s: &str) -> std::io::Result<()> {
        self.send(&text(s)).await
    }

    /// The next server frame as (opcode, payload); None on close, EOF, error or timeout.
    pub async fn read_frame(&mut self, within: Duration) -> Option<(u8, Vec<u8>)> {
        self.read_raw_frame(within).await.map(|(_, op, p)| (op, p))
    }

    /// The next server frame as (FIN bit, opcode, payload).
    pub async fn read_raw_frame(&mut self, within: Duration) -> Option<(bool, u8, Vec<u8>)> {
        tokio::time::timeout(within, async {
            loop {
                if let Some((op, payload, used)) = parse_server_frame(&self.pending) {
                    let fin = self.pending[0] & 0x80 != 0;
                    self.pending.drain(..used);
                    return Some((fin, op, payload));
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Next text frame's payload (skips pings `2` by answering them).
    pub async fn read_text(&mut self, within: Duration) -> Option<String> {
        loop {
            match self.read_frame(within).await? {
                (1, p) => {
                    let t = String::from_utf8_lossy(&p).to_string();
                    if t == "2" {
                        let _ = self.send_text("3").await;
                        continue;
                    }
                    return Some(t);
                }
                (8, _) => return None,
                _ => continue,
            }
        }
    }

    /// Reads and discards until the server closes (close frame or EOF) or `within` passes;
    /// true when it closed.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    while let Some((op, _, used)) = parse_server_frame(&self.pending) {
                        self.pending.drain(..used);
                        if op == 8 {
                            return true;
                        }
                    }
                }
                Err(_) => return false,
            }
        }
    }
}

/// Parses one unmasked server frame from the front of `buf`: (opcode, payload, bytes used).
fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let len7 = (buf[1] & 0x7f) as usize;
    let (len, mut pos): (usize, usize) = match len7 {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n, 2),
    };
    if buf[1] & 0x80 != 0 {
        pos += 4; // servers do not mask, but be lenient
    }
    let end = pos.checked_add(len)?;
    let payload = buf.get(pos..end)?.to_vec();
    Some((op, payload, end))
}
