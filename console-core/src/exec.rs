//! Executors run [`Command`]s on a deploy target: [`LocalExecutor`] on this computer (the sandbox
//! target, this machine's Docker engine) and `SshExecutor` (in [`crate::ssh`]) on a remote host.
//! Both stream stdout/stderr to a sink as it arrives and return the exit status.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::command::{Command, Stdin};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives a command's output as it arrives (text, lossily decoded).
pub type Sink<'a> = &'a mut (dyn FnMut(Stream, &str) + Send);

/// A byte stream to a TCP port on the target (direct, or tunnelled through SSH).
pub trait TcpStreamLike: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TcpStreamLike for T {}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("could not start `{program}` on {host}: {detail}")]
    Spawn {
        host: String,
        program: String,
        detail: String,
    },
    #[error("`{command}` on {host} did not finish within {secs} s")]
    Timeout {
        host: String,
        command: String,
        secs: u64,
    },
    #[error("the connection to {host} was lost: {detail}")]
    Disconnected { host: String, detail: String },
    #[error("could not reach port {port} on {host}: {detail}")]
    Tcp {
        host: String,
        port: u16,
        detail: String,
    },
}

impl ExecError {
    /// True when trying again later (after reconnecting) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExecError::Disconnected { .. } | ExecError::Timeout { .. } | ExecError::Tcp { .. }
        )
    }
}

#[async_trait]
pub trait Executor: Send + Sync {
    /// Where commands run, for messages: `this computer` or `user@host:port`.
    fn host(&self) -> String;

    /// Runs `cmd`, streaming its output to `sink`; returns its exit status (-1 if killed by a signal).
    async fn run(&self, cmd: &Command, timeout: Duration, sink: Sink<'_>)
        -> Result<i32, ExecError>;

    /// Opens a TCP connection to 127.0.0.1:`port` as seen from the target.
    async fn open_tcp(&self, port: u16) -> Result<Box<dyn TcpStreamLike>, ExecError>;
}

/// Runs a command and collects its output (for short queries such as `docker image inspect`).
pub async fn capture(
    exec: &dyn Executor,
    cmd: &Command,
    timeout: Duration,
) -> Result<(i32, String, String), ExecError> {
    let mut out = String::new();
    let mut err = String::new();
    let code = exec
        .run(cmd, timeout, &mut |s, t| match s {
            Stream::Stdout => out.push_str(t),
            Stream::Stderr => err.push_str(t),
        })
        .await?;
    Ok((code, out, err))
}

/// This computer: commands are spawned directly (no shell), with the command's cwd and env.
#[derive(Clone, Debug, Default)]
pub struct LocalExecutor;

#[async_trait]
impl Executor for LocalExecutor {
    fn host(&self) -> String {
        "this computer".into()
    }

    async fn run(
        &self,
        cmd: &Command,
        timeout: Duration,
        sink: Sink<'_>,
    ) -> Result<i32, ExecError> {
        let mut c = tokio::process::Command::new(&cmd.program);
        c.args(&cmd.args)
            .stdin(if matches!(cmd.stdin, Stdin::Null) {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &cmd.cwd {
            c.current_dir(dir);
        }
        for (k, v) in &cmd.env {
            c.env(k, v);
        }
        let mut child = c.spawn().map_err(|e| ExecError::Spawn {
            host: self.host(),
            program: cmd.program.clone(),
            detail: e.to_string(),
        })?;
        let input: Option<Vec<u8>> = match &cmd.stdin {
            Stdin::Null => None,
            Stdin::Data(d) => Some(d.clone()),
            Stdin::Secret(s) => Some(s.expose().as_bytes().to_vec()),
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let work = async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Stream, String)>();
            let out = tokio::spawn(pump(stdout, Stream::Stdout, tx.clone()));
            let err = tokio::spawn(pump(stderr, Stream::Stderr, tx));
            if let (Some(mut w), Some(data)) = (stdin, input) {
                // A command that exits without reading its input is not an error here.
                let _ = w.write_all(&data).await;
                let _ = w.shutdown().await;
            }
            while let Some((s, t)) = rx.recv().await {
                sink(s, &t);
            }
            let _ = (out.await, err.await);
            child.wait().await
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(status)) => Ok(status.code().unwrap_or(-1)),
            Ok(Err(e)) => Err(ExecError::Spawn {
                host: self.host(),
                program: cmd.program.clone(),
                detail: e.to_string(),
            }),
            Err(_) => Err(ExecError::Timeout {
                host: self.host(),
                command: cmd.to_string(),
                secs: timeout.as_secs(),
            }),
        }
    }

    async fn open_tcp(&self, port: u16) -> Result<Box<dyn TcpStreamLike>, ExecError> {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| ExecError::Tcp {
                host: self.host(),
                port,
                detail: e.to_string(),
            })?;
        Ok(Box::new(s))
    }
}

/// Forwards everything `r` produces to `tx` as text chunks until end of file.
async fn pump<R: AsyncRead + Unpin>(
    mut r: R,
    s: Stream,
    tx: tokio::sync::mpsc::UnboundedSender<(Stream, String)>,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = tx.send((s, String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
    }
}
