//! A minimal HTTP/1.1 keep-alive client: enough for `POST /api/*` and health probes, with no
//! extra dependency and nothing the load generator does not need.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{BenchError, Result};

/// One keep-alive connection to one server.
pub struct HttpConn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

/// A response: status and body bytes.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

const MAX_BODY: usize = 4 * 1024 * 1024;

impl HttpConn {
    pub fn new(addr: SocketAddr) -> Self {
        HttpConn { addr, stream: None }
    }

    /// Sends one request; reconnects once if the kept-alive connection was closed under us.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let reused = self.stream.is_some();
        match self.try_request(method, path, bearer, body).await {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.stream = None;
                self.try_request(method, path, bearer, body).await
            }
            Err(e) => Err(e),
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::new(s));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(BenchError::Protocol("no connection".into()));
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if let Some(key) = bearer {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        let body = body.unwrap_or_default();
        if method != "GET" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        let result = read_response(stream, &out).await;
        match result {
            Ok((resp, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

async fn read_response(
    stream: &mut BufReader<TcpStream>,
    request: &[u8],
) -> Result<(Response, bool)> {
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(BenchError::Protocol(
            "connection closed before response".into(),
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Protocol(format!("bad status line {line:?}")))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = true;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(BenchError::Protocol("connection closed in headers".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            match name.as_str() {
                "content-length" => content_length = value.parse().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| BenchError::Protocol(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                line.clear();
                stream.read_line(&mut line).await?;
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(BenchError::Protocol("response too large".into()));
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream.read_exact(&mut body[start..]).await?;
            line.clear();
            stream.read_line(&mut line).await?;
        }
    } else if let Some(n) = content_length {
        if n > MAX_BODY {
            return Err(BenchError::Protocol("response too large".into()));
        }
        body.resize(n, 0);
        stream.read_exact(&mut body).await?;
    } else if status != 204 && status != 304 {
        (&mut *stream)
            .take(MAX_BODY as u64)
            .read_to_end(&mut body)
            .await?;
        keep_alive = false;
    }
    Ok((Response { status, body }, keep_alive))
}
