//! The load balancer in front of a fleet, as a rolling deploy needs it: take one host out of the
//! pool and wait until its requests in flight are done, put it back and wait until the balancer's
//! own health check (the service's `/readyz`) passes.
//!
//! [`Haproxy`] drives HAProxy through its runtime API (`stats socket ... level admin`, on a Unix
//! socket or a loopback TCP port): `set server <backend>/<server> state drain|maint|ready` and
//! `show stat` (CSV) for the sessions and the check state. One command per connection, as the API
//! answers in its non-interactive mode.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How often a wait looks at the balancer again.
const POLL: Duration = Duration::from_millis(100);
/// The longest answer read from the runtime API (`show stat` of a large config is a few kB).
const MAX_ANSWER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error("the load balancer's runtime API at {at} cannot be reached: {detail}")]
    Unreachable { at: String, detail: String },
    #[error("the load balancer refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    #[error("the load balancer has no server {member:?} in backend {backend:?} (it has {known})")]
    UnknownMember {
        backend: String,
        member: String,
        known: String,
    },
    /// (`member` is for callers; the message leaves it to them to name the host.)
    #[error("{what} after {seconds:.0} s ({state})")]
    Timeout {
        member: String,
        what: &'static str,
        seconds: f64,
        state: String,
    },
}

/// One server of the pool as the balancer sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberState {
    pub name: String,
    /// HAProxy's status: `UP`, `DOWN`, `MAINT`, `DRAIN`, `UP 1/2` (going down), `no check`...
    pub status: String,
    /// Requests being served now (current sessions) and waiting in its queue.
    pub sessions: u64,
    pub queued: u64,
    /// Sessions since the balancer started.
    pub total_sessions: u64,
}

impl MemberState {
    /// Taking requests and passing its health check.
    pub fn is_up(&self) -> bool {
        self.status == "UP"
    }
}

#[async_trait::async_trait]
pub trait Balancer: Send + Sync {
    /// For messages: `HAProxy 127.0.0.1:9000 backend inference`.
    fn describe(&self) -> String;

    /// Every server of the pool.
    async fn members(&self) -> Result<Vec<MemberState>, BalancerError>;

    /// Sends no new request to `member` and waits (up to `timeout`) until none is in flight or
    /// queued; then keeps it out of the pool (its health check failing during the deploy does not
    /// matter).
    async fn drain(&self, member: &str, timeout: Duration) -> Result<(), BalancerError>;

    /// Puts `member` back and waits (up to `timeout`) until its health check passes.
    async fn enable(&self, member: &str, timeout: Duration) -> Result<(), BalancerError>;
}

/// HAProxy's runtime API.
pub struct Haproxy {
    /// `unix:/run/haproxy/admin.sock` or `127.0.0.1:9999`.
    pub api: String,
    pub backend: String,
}

impl Haproxy {
    pub fn new(api: impl Into<String>, backend: impl Into<String>) -> Haproxy {
        Haproxy {
            api: api.into(),
            backend: backend.into(),
        }
    }

    /// Sends one command and returns the whole answer.
    pub async fn command(&self, command: &str) -> Result<String, BalancerError> {
        let unreachable = |detail: String| BalancerError::Unreachable {
            at: self.api.clone(),
            detail,
        };
        let line = format!("{command}\n");
        let mut answer = Vec::new();
        let io = async {
            if let Some(path) = self.api.strip_prefix("unix:") {
                let mut s = tokio::net::UnixStream::connect(path).await?;
                s.write_all(line.as_bytes()).await?;
                (&mut s)
                    .take(MAX_ANSWER as u64)
                    .read_to_end(&mut answer)
                    .await?;
            } else {
                let mut s = tokio::net::TcpStream::connect(&self.api).await?;
                s.write_all(line.as_bytes()).await?;
                (&mut s)
                    .take(MAX_ANSWER as u64)
                    .read_to_end(&mut answer)
                    .await?;
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .map_err(|_| unreachable("no answer within 10 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        // Commands that change state answer nothing when they worked, a sentence when not.
        let refused = [
            "No such",
            "Unknown command",
            "Permission denied",
            "Require ",
        ]
        .iter()
        .any(|p| answer.contains(p));
        if refused {
            return Err(BalancerError::Refused {
                command: command.into(),
                answer: answer.trim().into(),
            });
        }
        Ok(answer)
    }

    async fn set_state(&self, member: &str, state: &str) -> Result<(), BalancerError> {
        self.member(member).await?;
        self.command(&format!(
            "set server {}/{member} state {state}",
            self.backend
        ))
        .await
        .map(|_| ())
    }

    async fn member(&self, member: &str) -> Result<MemberState, BalancerError> {
        let all = self.members().await?;
        all.iter()
            .find(|m| m.name == member)
            .cloned()
            .ok_or_else(|| BalancerError::UnknownMember {
                backend: self.backend.clone(),
                member: member.into(),
                known: all
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Polls `member` until `done` holds for it, or `timeout`.
    async fn wait(
        &self,
        member: &str,
        what: &'static str,
        timeout: Duration,
        done: impl Fn(&MemberState) -> bool,
    ) -> Result<(), BalancerError> {
        let done = &done;
        poll_until(member, what, timeout, POLL, || async move {
            let m = self.member(member).await?;
            let state = format!(
                "{}, {} in flight, {} queued",
                m.status, m.sessions, m.queued
            );
            Ok((done(&m), state))
        })
        .await
    }
}

/// Asks `probe` every `every` until it answers done, or `timeout` passes; the timeout's error
/// carries the last state it described.
pub(crate) async fn poll_until<F, Fut>(
    member: &str,
    what: &'static str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<(), BalancerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(bool, String), BalancerError>>,
{
    let start = Instant::now();
    loop {
        let (done, state) = probe().await?;
        if done {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(BalancerError::Timeout {
                member: member.into(),
                what,
                seconds: timeout.as_secs_f64(),
                state,
            });
        }
        tokio::time::sleep(every).await;
    }
}

#[async_trait::async_trait]
impl Balancer for Haproxy {
    fn describe(&self) -> String {
        format!("HAProxy {} backend {}", self.api, self.backend)
    }

    async fn members(&self) -> Result<Vec<MemberState>, BalancerError> {
        let csv = self.command("show stat").await?;
        Ok(parse_stat(&csv, &self.backend))
    }

    async fn drain(&self, member: &str, timeout: Duration) -> Result<(), BalancerError> {
        self.set_state(member, "drain").await?;
        self.wait(member, "requests still in flight", timeout, |m| {
            m.sessions == 0 && m.queued == 0
        })
        .await?;
        self.set_state(member, "maint").await
    }

    async fn enable(&self, member: &str, timeout: Duration) -> Result<(), BalancerError> {
        self.set_state(member, "ready").await?;
        self.wait(member, "not healthy", timeout, MemberState::is_up)
            .await
    }
}

/// The servers of `backend` in `show stat`'s CSV (columns found by the header's names).
pub fn parse_stat(csv: &str, backend: &str) -> Vec<MemberState> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(scur), Some(qcur), Some(stot), Some(status)) = (
        at("pxname"),
        at("svname"),
        at("scur"),
        at("qcur"),
        at("stot"),
        at("status"),
    ) else {
        return Vec::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&backend))
        .filter(|f| !matches!(f.get(sv).copied(), Some("BACKEND" | "FRONTEND") | None))
        .map(|f| {
            let num = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            MemberState {
                name: f[sv].to_string(),
                status: f.get(status).unwrap_or(&"").to_string(),
                sessions: num(scur),
                queued: num(qcur),
                total_sessions: num(stot),
            }
        })
        .collect()
}

/// For the fleet's unit tests: a balancer that records every call and cannot drain the hosts named
/// in `stuck` (their requests stay in flight).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recording {
    pub stuck: Vec<&'static str>,
    pub calls: std::sync::Mutex<Vec<String>>,
}

#[cfg(test)]
#[async_trait::async_trait]
impl Balancer for Recording {
    fn describe(&self) -> String {
        "recording balancer".into()
    }
    async fn members(&self) -> Result<Vec<MemberState>, BalancerError> {
        Ok(Vec::new())
    }
    async fn drain(&self, member: &str, _: Duration) -> Result<(), BalancerError> {
        self.calls.lock().unwrap().push(format!("drain {member}"));
        if self.stuck.contains(&member) {
            return Err(BalancerError::Timeout {
                member: member.into(),
                what: "requests still in flight",
                seconds: 30.0,
                state: "DRAIN, 3 in flight, 0 queued".into(),
            });
        }
        Ok(())
    }
    async fn enable(&self, member: &str, _: Duration) -> Result<(), BalancerError> {
        self.calls.lock().unwrap().push(format!("enable {member}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_of_one_backend() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
                   web,FRONTEND,,,3,5,2000,100,0,0,0,0,0,,,,,OPEN,\n\
                   inference,h1,0,0,2,4,,40,0,0,,0,,0,0,0,0,UP,1\n\
                   inference,h2,1,1,0,3,,35,0,0,,0,,0,0,0,0,MAINT,1\n\
                   inference,h3,0,0,0,3,,35,0,0,,0,,0,0,0,0,UP 1/2,1\n\
                   inference,BACKEND,0,0,2,5,200,110,0,0,0,0,,0,0,0,0,UP,3\n\
                   other,h1,0,0,9,9,,9,0,0,,0,,0,0,0,0,DOWN,1\n";
        let m = parse_stat(csv, "inference");
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            MemberState {
                name: "h1".into(),
                status: "UP".into(),
                sessions: 2,
                queued: 0,
                total_sessions: 40
            }
        );
        assert_eq!((m[1].queued, m[1].status.as_str()), (1, "MAINT"));
        assert!(m[0].is_up() && !m[1].is_up() && !m[2].is_up());
        assert!(parse_stat("garbage", "inference").is_empty());
        assert!(parse_stat("# pxname,svname\nx,y\n", "x").is_empty());
    }
}
