//! The sandbox's fleet: three hosts on this computer behind Debian's HAProxy, to try rolling and
//! canary deploys and the merged fleet dashboard without a cloud account. Each host is a compose
//! project of the sandbox's image with a directory and a port of its own, deployed by the
//! single-host engine like the sandbox; HAProxy balances them and is driven through its runtime
//! API to drain and enable each host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::fleet::{Fleet, Member};
use crate::fleet_monitor::Replica;
use crate::local_balancer::LocalHaproxy;
use crate::sandbox;
use crate::secret::Secret;
use crate::service::ServiceClient;

/// The fleet's name in the history.
pub const NAME: &str = "sandbox-fleet";
pub const HOSTS: usize = 3;

/// Where the fleet listens on loopback. Each host takes two ports: its own and the one beside it,
/// where a new version is tried before the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// HAProxy's frontend: where the fleet's clients (and the traffic tool) send requests.
    pub front: u16,
    /// HAProxy's runtime API.
    pub api: u16,
    /// The first host's port; host i has `first_host + 2 i`.
    pub first_host: u16,
}

impl Default for Ports {
    fn default() -> Ports {
        Ports {
            front: 8100,
            api: 8101,
            first_host: 8110,
        }
    }
}

impl Ports {
    /// `MLOPS_SANDBOX_FLEET_PORT` moves the whole block (front, API, then hosts from +10).
    pub fn from_env() -> Ports {
        match std::env::var("MLOPS_SANDBOX_FLEET_PORT")
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p < u16::MAX - 20)
        {
            Some(front) => Ports {
                front,
                api: front + 1,
                first_host: front + 10,
            },
            None => Ports::default(),
        }
    }

    pub fn host(&self, i: usize) -> u16 {
        self.first_host + 2 * i as u16
    }
}

/// The host names, in order: h1, h2, h3.
pub fn host_names() -> Vec<String> {
    (1..=HOSTS).map(|i| format!("h{i}")).collect()
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sandbox-fleet")
}

/// The fleet: one sandbox target per host, `project_prefix`-h1... as compose projects.
pub fn fleet(data_dir: &Path, ports: Ports, compose: &[String], project_prefix: &str) -> Fleet {
    let members = host_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let mut t = sandbox::target(data_dir, ports.host(i), compose.to_vec());
            t.name = format!("{NAME}/{name}");
            t.compose_dir = dir(data_dir).join(&name).to_string_lossy().into_owned();
            t.project = format!("{project_prefix}-{name}");
            // The hosts share this computer's images, which were built here and cannot be pulled
            // back: none is pruned.
            t.keep_images = usize::MAX;
            Member { name, target: t }
        })
        .collect();
    Fleet::new(NAME, members)
}

/// Starts the fleet's HAProxy in front of its hosts (those not deployed yet are DOWN until they
/// are). Blocking: call it from a blocking context.
pub fn start_balancer(data_dir: &Path, ports: Ports) -> Result<LocalHaproxy, String> {
    let servers: Vec<(String, u16)> = host_names()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, ports.host(i)))
        .collect();
    LocalHaproxy::start(
        &dir(data_dir).join("haproxy"),
        ports.front,
        ports.api,
        &servers,
    )
}

/// A monitoring client per host, in order, with the token their service requires.
pub fn replicas(ports: Ports, token: Option<Secret>) -> Vec<Replica> {
    host_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| Replica {
            name,
            client: ServiceClient::new(SocketAddr::from(([127, 0, 0, 1], ports.host(i))))
                .with_token(token.clone()),
        })
        .collect()
}
