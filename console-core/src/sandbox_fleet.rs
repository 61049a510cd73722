//! The sandbox's fleet: three hosts on this computer (1 to 10 as the user resizes it) behind Debian's HAProxy, to try rolling and
//! canary deploys and the merged fleet dashboard without a cloud account. Each host is a compose
//! project of the sandbox's image with a directory and a port of its own, deployed by the
//! single-host engine like the sandbox; HAProxy balances them and is driven through its runtime
//! API to drain and enable each host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::fleet::{Fleet, Member};
use crate::fleet_monitor::Replica;
use crate::history::{History, HistoryError};
use crate::local_balancer::LocalHaproxy;
use crate::sandbox;
use crate::secret::Secret;
use crate::service::ServiceClient;

/// The fleet's name in the history.
pub const NAME: &str = "sandbox-fleet";
/// Its size until the user resizes it, and the most hosts it can have (HAProxy is configured with
/// a server per possible host; those beyond the fleet's size wait in maintenance).
pub const DEFAULT_HOSTS: usize = 3;
pub const MAX_HOSTS: usize = 10;

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
    /// `MLOPS_SANDBOX_FLEET_PORT` moves the whole block of 30 ports (front, API, then hosts from
    /// +10).
    pub fn from_env() -> Ports {
        match std::env::var("MLOPS_SANDBOX_FLEET_PORT")
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p < u16::MAX - 30)
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

/// The names of a fleet of `hosts`, in order: h1, h2, h3...
pub fn host_names(hosts: usize) -> Vec<String> {
    (1..=hosts.min(MAX_HOSTS))
        .map(|i| format!("h{i}"))
        .collect()
}

/// Where the fleet's size is kept: in the history database, with its rollouts.
const SIZE_KEY: &str = "sandbox-fleet.hosts";

/// The fleet's size: what the last resize left, [`DEFAULT_HOSTS`] before any.
pub fn size(history: &History) -> Result<usize, HistoryError> {
    Ok(history
        .meta(SIZE_KEY)?
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| check_size(*n).is_ok())
        .unwrap_or(DEFAULT_HOSTS))
}

pub fn set_size(history: &History, hosts: usize) -> Result<(), HistoryError> {
    history.set_meta(SIZE_KEY, &hosts.to_string())
}

/// Whether the fleet can have `hosts` hosts, as a sentence when not.
pub fn check_size(hosts: usize) -> Result<(), String> {
    if (1..=MAX_HOSTS).contains(&hosts) {
        Ok(())
    } else {
        Err(format!(
            "a fleet of {hosts} hosts is not offered on this computer: 1 to {MAX_HOSTS}"
        ))
    }
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sandbox-fleet")
}

/// The fleet of `hosts`: one sandbox target per host, `project_prefix`-h1... as compose projects.
pub fn fleet(
    data_dir: &Path,
    ports: Ports,
    compose: &[String],
    project_prefix: &str,
    hosts: usize,
) -> Fleet {
    let members = host_names(hosts)
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

/// Starts the fleet's HAProxy with a server per possible host: the fleet's `hosts` in the pool
/// (those not deployed yet are DOWN until they are), the others in maintenance until the fleet
/// grows. Blocking: call it from a blocking context.
pub fn start_balancer(data_dir: &Path, ports: Ports, hosts: usize) -> Result<LocalHaproxy, String> {
    let servers: Vec<(String, u16)> = host_names(MAX_HOSTS)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, ports.host(i)))
        .collect();
    LocalHaproxy::start(
        &dir(data_dir).join("haproxy"),
        ports.front,
        ports.api,
        &servers,
        hosts,
    )
}

/// A monitoring client per host of a fleet of `hosts`, in order, with the token their service
/// requires.
pub fn replicas(ports: Ports, hosts: usize, token: Option<Secret>) -> Vec<Replica> {
    host_names(hosts)
        .into_iter()
        .enumerate()
        .map(|(i, name)| Replica {
            name,
            client: ServiceClient::new(SocketAddr::from(([127, 0, 0, 1], ports.host(i))))
                .with_token(token.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_kept_with_the_history_and_bounded() {
        let h = History::in_memory().unwrap();
        assert_eq!(size(&h).unwrap(), DEFAULT_HOSTS);
        set_size(&h, 5).unwrap();
        assert_eq!(size(&h).unwrap(), 5);
        assert_eq!(host_names(5).last().unwrap(), "h5");
        set_size(&h, 42).unwrap();
        assert_eq!(
            size(&h).unwrap(),
            DEFAULT_HOSTS,
            "a size out of range is not used"
        );
        assert!(check_size(0).unwrap_err().contains("1 to 10"));
        assert!(check_size(MAX_HOSTS).is_ok());
        // Every host's two ports stay inside the block that MLOPS_SANDBOX_FLEET_PORT moves.
        let p = Ports::default();
        assert!(p.host(MAX_HOSTS - 1) + 1 < p.front + 30);
        let f = fleet(Path::new("/data"), p, &["docker-compose".into()], "x", 4);
        let names: Vec<&str> = f.members.iter().map(|m| m.target.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sandbox-fleet/h1",
                "sandbox-fleet/h2",
                "sandbox-fleet/h3",
                "sandbox-fleet/h4"
            ]
        );
        assert_eq!(f.members[3].target.project, "x-h4");
    }
}
