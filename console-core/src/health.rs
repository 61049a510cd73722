//! Readiness probe of the inference service: `GET /readyz` (a real forward pass) and `GET /v1/model`
//! (which image tag answers), over any byte stream to the service port — a direct TCP connection
//! or an SSH channel, so the host needs no public port and no curl.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exec::{ExecError, Executor, TcpStreamLike};
use crate::secret::Secret;

const MAX_RESPONSE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 GET with `Connection: close` over `stream`.
pub async fn http_get(stream: &mut dyn TcpStreamLike, path: &str) -> Result<HttpResponse, String> {
    http_get_auth(stream, path, None).await
}

/// [`http_get`] with an optional bearer token (the service's monitoring API needs one).
pub async fn http_get_auth(
    stream: &mut dyn TcpStreamLike,
    path: &str,
    bearer: Option<&Secret>,
) -> Result<HttpResponse, String> {
    http_request(stream, "GET", path, bearer, None).await
}

/// One HTTP/1.1 request with an optional bearer token and JSON body; reads the whole answer.
pub async fn http_request(
    stream: &mut dyn TcpStreamLike,
    method: &str,
    path: &str,
    bearer: Option<&Secret>,
    json_body: Option<&[u8]>,
) -> Result<HttpResponse, String> {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {}\r\n", t.expose()))
        .unwrap_or_default();
    let body_headers = json_body
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        })
        .unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n{auth}{body_headers}Connection: close\r\n\r\n").into_bytes();
    req.extend_from_slice(json_body.unwrap_or_default());
    stream
        .write_all(&req)
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
    }
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header end in the response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_txt = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_txt:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `/readyz` answered 200 and `/v1/model` reports this image tag.
    Ready { image_tag: String },
    /// Something answered, but not ready (or another tag).
    NotReady(String),
    /// Nothing listening, or the connection failed.
    Unreachable(String),
}

pub async fn probe(exec: &dyn Executor, port: u16, timeout: Duration) -> Probe {
    let once = async {
        let mut s = match exec.open_tcp(port).await {
            Ok(s) => s,
            Err(e) => return Probe::Unreachable(e.to_string()),
        };
        match http_get(&mut *s, "/readyz").await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                return Probe::NotReady(format!("/readyz answered {}: {}", r.status, r.body.trim()))
            }
            Err(e) => return Probe::Unreachable(e),
        }
        let mut s = match exec.open_tcp(port).await {
            Ok(s) => s,
            Err(e) => return Probe::Unreachable(e.to_string()),
        };
        match http_get(&mut *s, "/v1/model").await {
            Ok(r) if r.status == 200 => match serde_json::from_str::<serde_json::Value>(&r.body) {
                Ok(v) => Probe::Ready {
                    image_tag: v["image_tag"].as_str().unwrap_or("").to_string(),
                },
                Err(e) => Probe::NotReady(format!("/v1/model is not JSON: {e}")),
            },
            Ok(r) => Probe::NotReady(format!("/v1/model answered {}", r.status)),
            Err(e) => Probe::Unreachable(e),
        }
    };
    tokio::time::timeout(timeout, once)
        .await
        .unwrap_or_else(|_| Probe::Unreachable(format!("no answer within {timeout:?}")))
}

/// Polls until the service on `port` is ready and reports `tag`, or `deadline` passes.
/// Returns the seconds it took, or the last thing seen.
pub async fn wait_ready(
    exec: &dyn Executor,
    port: u16,
    tag: &str,
    deadline: Duration,
) -> Result<f64, String> {
    let start = tokio::time::Instant::now();
    let mut last = String::from("no probe ran");
    while start.elapsed() < deadline {
        match probe(exec, port, Duration::from_secs(3)).await {
            Probe::Ready { image_tag } if image_tag == tag => {
                return Ok(start.elapsed().as_secs_f64())
            }
            Probe::Ready { image_tag } => {
                last = format!("ready, but serving tag {image_tag:?} instead of {tag:?}")
            }
            Probe::NotReady(why) | Probe::Unreachable(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "not ready within {} s; last probe: {last}",
        deadline.as_secs()
    ))
}

/// An error opening the stream counts as unreachable, which callers map from `ExecError`.
impl From<ExecError> for Probe {
    fn from(e: ExecError) -> Self {
        Probe::Unreachable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 200,
                body: "ok".into()
            }
        );
        let r = parse_response(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n6\r\n ready\r\n0\r\n\r\n").unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 503,
                body: "not ready".into()
            }
        );
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
