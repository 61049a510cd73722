//! An HTTP proxy on 127.0.0.1 in front of moto_server that answers chosen EC2 Query API requests
//! with the errors real EC2 sends (throttling, expired credentials) and forwards the rest. It
//! records every request it saw (action, signing key id, fault answered), so a test can count the
//! SDK's retries. Thread-based like [`super::TcpProxy`]: one request per client connection (every
//! answer says `Connection: close`), so counts are exact and no pooled connection is reused.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// An error answer in EC2's shape: `<Response><Errors><Error><Code>…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 RequestLimitExceeded, what EC2 answers a caller over its request rate.
    Throttle,
    /// 400 RequestExpired, what EC2 answers a request signed with expired temporary credentials
    /// (or with a timestamp more than 5 minutes off).
    RequestExpired,
    /// 400 ExpiredToken, the "security token included in the request is expired" answer.
    ExpiredToken,
}

impl Fault {
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Fault::Throttle => (503, "Service Unavailable"),
            Fault::RequestExpired | Fault::ExpiredToken => (400, "Bad Request"),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Fault::Throttle => "RequestLimitExceeded",
            Fault::RequestExpired => "RequestExpired",
            Fault::ExpiredToken => "ExpiredToken",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Fault::Throttle => "Request limit exceeded.",
            Fault::RequestExpired => "Request has expired.",
            Fault::ExpiredToken => "The security token included in the request is expired",
        }
    }
}

/// Answer `fault` to the next `times` requests for `action` (None: any action); `times` None: all.
#[derive(Clone, Debug)]
pub struct Rule {
    pub action: Option<String>,
    pub times: Option<usize>,
    pub fault: Fault,
}

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `Action=` of the form body, e.g. `DescribeImages`.
    pub action: String,
    /// The access key id from the SigV4 `Authorization` header (`Credential=<id>/…`).
    pub key_id: String,
    /// The form body as sent (no credential is ever in it; the signature is in a header).
    pub body: String,
    /// The whole request head (request line and headers).
    pub head: String,
    /// The error answered instead of forwarding, if any.
    pub fault: Option<Fault>,
    /// Status sent back (the fault's, or moto's).
    pub status: u16,
    pub at: Instant,
}

pub struct Ec2FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

impl Ec2FaultProxy {
    /// Listens on 127.0.0.1:<free port> and forwards to `upstream` (moto_server).
    pub fn start(upstream: SocketAddr) -> Ec2FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("Ec2FaultProxy: bind");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("ec2-fault-proxy-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let s = s.clone();
                    thread::spawn(move || serve(client, &s));
                }
            })
            .expect("spawn proxy thread");
        Ec2FaultProxy {
            port,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// The endpoint URL to give the SDK.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn add(&self, rule: Rule) {
        self.shared.rules.lock().unwrap().push(rule);
    }

    /// Answers `fault` to the next `times` requests of `action` (None: any), then forwards again.
    pub fn fail(&self, action: Option<&str>, fault: Fault, times: usize) {
        self.add(Rule {
            action: action.map(str::to_string),
            times: Some(times),
            fault,
        });
    }

    /// Answers `fault` to every request of `action` (None: any) until [`Ec2FaultProxy::clear`].
    pub fn fail_always(&self, action: Option<&str>, fault: Fault) {
        self.add(Rule {
            action: action.map(str::to_string),
            times: None,
            fault,
        });
    }

    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The requests for `action` so far.
    pub fn seen_action(&self, action: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.action == action)
            .collect()
    }

    pub fn reset_log(&self) {
        self.shared.seen.lock().unwrap().clear();
    }
}

impl Drop for Ec2FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP/1.1 request: (head without the blank line, body).
fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The head with every `Connection` header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        })
        .collect();
    lines.push("Connection: close");
    lines.join("\r\n")
}

fn serve(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    let form = String::from_utf8_lossy(&body).into_owned();
    let action = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("")
        .to_string();
    let key_id = header(&head, "authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or("")
        .to_string();
    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        let hit = rules.iter_mut().find(|r| {
            r.action.as_deref().is_none_or(|a| a == action) && r.times.is_none_or(|n| n > 0)
        });
        hit.map(|r| {
            if let Some(n) = r.times.as_mut() {
                *n -= 1;
            }
            r.fault
        })
    };
    let (status, response) = match fault {
        Some(f) => {
            let (status, reason) = f.status();
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
                f.code(),
                f.message(),
                request_id()
            );
            let r = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            (status, r.into_bytes())
        }
        None => match forward(shared.upstream, &head, &body) {
            Some(r) => r,
            None => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
        },
    };
    shared.seen.lock().unwrap().push(Seen {
        action,
        key_id,
        body: form,
        head: head.clone(),
        fault,
        status,
        at: Instant::now(),
    });
    let _ = client.write_all(&response);
    let _ = client.shutdown(Shutdown::Both);
}

/// Sends the request to moto with `Connection: close` and returns (status, response) with
/// `Connection: close` in its head too.
fn forward(upstream: SocketAddr, head: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)).ok()?;
    let _ = up.set_read_timeout(Some(Duration::from_secs(60)));
    let mut req = closing(head).into_bytes();
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(body);
    up.write_all(&req).ok()?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let resp_head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = resp_head.split_whitespace().nth(1)?.parse().ok()?;
    let mut out = closing(&resp_head).into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&raw[end + 4..]);
    Some((status, out))
}

/// A request id shaped like EC2's (a UUID), made fresh.
fn request_id() -> String {
    let h = super::random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
