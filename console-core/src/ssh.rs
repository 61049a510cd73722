//! SSH to a deploy host with `russh`: a PEM private key (EC2's PKCS#1 RSA or OpenSSH ed25519), a
//! pinned host-key fingerprint, commands with streamed output and exit status, and local port
//! forwards. Keepalives turn a dead peer into an error within `keepalive * 3`, never a hang.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{decode_secret_key, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::command::{Command, Stdin};
use crate::exec::{ExecError, Executor, Sink, Stream, TcpStreamLike};
use crate::secret::Secret;

/// Everything needed to reach one host. The key is a secret (from the keychain); the fingerprint is
/// the host key's `SHA256:…` text as `ssh-keygen -lf` prints it.
#[derive(Clone, Debug)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key_pem: Secret,
    pub host_fingerprint: String,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
}

impl SshTarget {
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        key_pem: Secret,
        fingerprint: impl Into<String>,
    ) -> Self {
        SshTarget {
            host: host.into(),
            port,
            user: user.into(),
            key_pem,
            host_fingerprint: fingerprint.into(),
            connect_timeout: Duration::from_secs(15),
            keepalive: Duration::from_secs(5),
        }
    }

    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("the SSH private key could not be read ({0}); expected a PEM key: `BEGIN RSA PRIVATE KEY` (EC2) or `BEGIN OPENSSH PRIVATE KEY`")]
    Key(String),
    #[error("host key of {host} does not match the pinned fingerprint: expected {expected}, the server presented {actual}. If the host was rebuilt, re-pin its fingerprint; otherwise do not connect")]
    HostKeyMismatch {
        host: String,
        expected: String,
        actual: String,
    },
    #[error("could not connect to {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("no SSH handshake with {host} within {secs} s")]
    Timeout { host: String, secs: u64 },
    #[error(
        "{host} refused the key for user `{user}` (is its public key in ~/.ssh/authorized_keys?)"
    )]
    AuthRefused { host: String, user: String },
    #[error("SSH error with {host}: {detail}")]
    Protocol { host: String, detail: String },
}

impl SshError {
    /// Connection-level failures that may go away (a host still booting, a dropped link).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SshError::Connect { .. } | SshError::Timeout { .. })
    }
}

/// Checks the server key against the pinned fingerprint and remembers what was presented.
struct Verifier {
    expected: String,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let public = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => c.public_key().clone().into(),
        };
        let fp = public.fingerprint(HashAlg::Sha256).to_string();
        let ok = fp == self.expected.trim();
        *self.presented.lock().unwrap() = Some(fp);
        Ok(ok)
    }
}

/// One authenticated SSH connection. Cheap to share (`Arc`); every command opens its own channel.
pub struct SshSession {
    handle: Arc<Handle<Verifier>>,
    label: String,
}

impl SshSession {
    pub async fn connect(t: &SshTarget) -> Result<SshSession, SshError> {
        let label = t.label();
        let key = decode_secret_key(t.key_pem.expose(), None)
            .map_err(|e| SshError::Key(e.to_string()))?;
        let config = Arc::new(client::Config {
            keepalive_interval: Some(t.keepalive),
            keepalive_max: 3,
            inactivity_timeout: None,
            ..Default::default()
        });
        let presented = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            expected: t.host_fingerprint.clone(),
            presented: presented.clone(),
        };
        let addr = (t.host.clone(), t.port);
        let connected =
            tokio::time::timeout(t.connect_timeout, client::connect(config, addr, verifier)).await;
        let mut handle = match connected {
            Err(_) => {
                return Err(SshError::Timeout {
                    host: label,
                    secs: t.connect_timeout.as_secs(),
                })
            }
            Ok(Err(russh::Error::UnknownKey)) => {
                let actual = presented
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| "(none)".into());
                return Err(SshError::HostKeyMismatch {
                    host: label,
                    expected: t.host_fingerprint.clone(),
                    actual,
                });
            }
            Ok(Err(russh::Error::IO(e))) => {
                return Err(SshError::Connect {
                    host: label,
                    detail: e.to_string(),
                })
            }
            Ok(Err(e)) => {
                return Err(SshError::Connect {
                    host: label,
                    detail: format!("{e}"),
                })
            }
            Ok(Ok(h)) => h,
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| SshError::Protocol {
                host: label.clone(),
                detail: e.to_string(),
            })?
            .flatten();
        let auth = tokio::time::timeout(
            t.connect_timeout,
            handle.authenticate_publickey(
                t.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            ),
        )
        .await
        .map_err(|_| SshError::Timeout {
            host: label.clone(),
            secs: t.connect_timeout.as_secs(),
        })?
        .map_err(|e| SshError::Protocol {
            host: label.clone(),
            detail: e.to_string(),
        })?;
        if !auth.success() {
            return Err(SshError::AuthRefused {
                host: label,
                user: t.user.clone(),
            });
        }
        Ok(SshSession {
            handle: Arc::new(handle),
            label,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    fn lost(&self, e: impl std::fmt::Display) -> ExecError {
        ExecError::Disconnected {
            host: self.label.clone(),
            detail: e.to_string(),
        }
    }

    /// Forwards 127.0.0.1:<returned port> on this computer to 127.0.0.1:`remote_port` on the host
    /// (one SSH channel per accepted connection) until the returned [`Forward`] is dropped.
    pub async fn forward_local(&self, remote_port: u16) -> Result<Forward, ExecError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| ExecError::Tcp {
                host: "this computer".into(),
                port: 0,
                detail: e.to_string(),
            })?;
        let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let handle = self.handle.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, peer)) = listener.accept().await {
                let handle = handle.clone();
                tokio::spawn(async move {
                    let Ok(ch) = handle
                        .channel_open_direct_tcpip(
                            "127.0.0.1",
                            remote_port as u32,
                            peer.ip().to_string(),
                            peer.port() as u32,
                        )
                        .await
                    else {
                        return;
                    };
                    let mut stream = ch.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut sock, &mut stream).await;
                });
            }
        });
        Ok(Forward { local_port, task })
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A running local port forward; dropping it stops accepting new connections.
pub struct Forward {
    pub local_port: u16,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs commands on a host over one [`SshSession`].
pub struct SshExecutor {
    session: SshSession,
}

impl SshExecutor {
    pub async fn connect(t: &SshTarget) -> Result<Self, SshError> {
        Ok(SshExecutor {
            session: SshSession::connect(t).await?,
        })
    }

    pub fn session(&self) -> &SshSession {
        &self.session
    }
}

#[async_trait]
impl Executor for SshExecutor {
    fn host(&self) -> String {
        self.session.label.clone()
    }

    async fn run(
        &self,
        cmd: &Command,
        timeout: Duration,
        sink: Sink<'_>,
    ) -> Result<i32, ExecError> {
        let s = &self.session;
        let work = async {
            let mut ch = s
                .handle
                .channel_open_session()
                .await
                .map_err(|e| s.lost(e))?;
            ch.exec(true, cmd.to_shell()).await.map_err(|e| s.lost(e))?;
            match &cmd.stdin {
                Stdin::Null => {}
                Stdin::Data(d) => ch.data(&d[..]).await.map_err(|e| s.lost(e))?,
                Stdin::Secret(x) => ch
                    .data(x.expose().as_bytes())
                    .await
                    .map_err(|e| s.lost(e))?,
            }
            ch.eof().await.map_err(|e| s.lost(e))?;
            let mut status = None;
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        sink(Stream::Stdout, &String::from_utf8_lossy(&data))
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        sink(Stream::Stderr, &String::from_utf8_lossy(&data))
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status as i32),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        sink(
                            Stream::Stderr,
                            &format!("killed by signal {signal_name:?}\n"),
                        );
                        status = Some(-1);
                    }
                    _ => {}
                }
            }
            status.ok_or_else(|| {
                s.lost("the channel closed before the command reported an exit status")
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ExecError::Timeout {
                host: s.label.clone(),
                command: cmd.to_string(),
                secs: timeout.as_secs(),
            }),
        }
    }

    async fn open_tcp(&self, port: u16) -> Result<Box<dyn TcpStreamLike>, ExecError> {
        let s = &self.session;
        if s.is_closed() {
            return Err(s.lost("the SSH connection is closed"));
        }
        let ch = s
            .handle
            .channel_open_direct_tcpip("127.0.0.1", port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| ExecError::Tcp {
                host: s.label.clone(),
                port,
                detail: e.to_string(),
            })?;
        Ok(Box::new(ch.into_stream()))
    }
}
