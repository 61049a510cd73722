//! Debian's HAProxy on loopback, standing in for a fleet's load balancer: the console's own
//! `LocalHaproxy` (the sandbox fleet's balancer) in a temporary directory, with the suite's
//! watchdog, so that it goes away with the test process even when that is killed.

use std::ops::Deref;
use std::process::Child;

use console_core::local_balancer::LocalHaproxy;

use super::{free_port, spawn_watchdog, stop_watchdog};

pub struct Haproxy {
    inner: Option<LocalHaproxy>,
    watchdog: Option<Child>,
    pub dir: tempfile::TempDir,
    /// Where clients send their requests.
    pub port: u16,
    /// The runtime API, `127.0.0.1:<port>`.
    pub api: String,
    pub backend: String,
}

impl Haproxy {
    /// Starts HAProxy in front of `servers` (name, loopback port) and waits until its runtime API
    /// answers. Servers that do not answer yet are simply DOWN until they do.
    pub fn start(servers: &[(&str, u16)]) -> Haproxy {
        Haproxy::start_with_pool(servers, servers.len())
    }

    /// As [`Haproxy::start`], with only the first `in_pool` servers in the pool and the others in
    /// maintenance (a fleet's free slots).
    pub fn start_with_pool(servers: &[(&str, u16)], in_pool: usize) -> Haproxy {
        let dir = tempfile::Builder::new()
            .prefix("mlops-haproxy-")
            .tempdir()
            .unwrap();
        let servers: Vec<(String, u16)> =
            servers.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        let inner = LocalHaproxy::start(dir.path(), free_port(), free_port(), &servers, in_pool)
            .unwrap_or_else(|e| panic!("{e}"));
        let watchdog = spawn_watchdog(inner.pid(), dir.path(), None);
        Haproxy {
            port: inner.port,
            api: inner.api.clone(),
            backend: console_core::local_balancer::BACKEND.into(),
            inner: Some(inner),
            watchdog,
            dir,
        }
    }
}

impl Deref for Haproxy {
    type Target = LocalHaproxy;
    fn deref(&self) -> &LocalHaproxy {
        self.inner.as_ref().expect("running")
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.inner.take();
        stop_watchdog(self.watchdog.take());
    }
}
