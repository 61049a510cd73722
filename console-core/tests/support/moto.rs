//! moto_server on loopback standing in for AWS: one server per test (so state never leaks), with
//! Canonical-owned Ubuntu images loaded through MOTO_AMIS_PATH (moto's own list has only old ones).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_ec2::config::{Credentials, Region};

pub struct Moto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_bin() -> String {
    match std::env::var("MLOPS_VENV") {
        Ok(v) if !v.is_empty() => format!("{v}/bin/moto_server"),
        _ => "moto_server".into(),
    }
}

pub const AMIS: &[(&str, &str)] = &[
    (
        "ami-0a1b2c3d4e5f60001",
        "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-20191107",
    ),
    (
        "ami-0a1b2c3d4e5f60002",
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20250601",
    ),
    (
        "ami-0a1b2c3d4e5f60003",
        "ubuntu/images/hvm-ssd/ubuntu-mantic-23.10-amd64-server-20240701",
    ),
    (
        "ami-0a1b2c3d4e5f60004",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115",
    ),
    (
        "ami-0a1b2c3d4e5f60005",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20251020",
    ),
    (
        "ami-0a1b2c3d4e5f60006",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20251101",
    ),
];
pub const NEWEST_LTS: &str = "ami-0a1b2c3d4e5f60005";

impl Moto {
    /// Starts moto_server on 127.0.0.1:<free port> with `extra_env`. `None` (after printing why)
    /// when it cannot be started and MLOPS_REQUIRE_DOCKER is not 1; panics when it is.
    pub fn start(extra_env: &[(&str, &str)]) -> Option<Moto> {
        let dir = tempfile::tempdir().unwrap();
        let amis: Vec<serde_json::Value> = AMIS
            .iter()
            .map(|(id, name)| {
                serde_json::json!({"ami_id": id, "name": name, "description": "Canonical, Ubuntu", "owner_id": "099720109477",
                    "public": true, "virtualization_type": "hvm", "architecture": if name.contains("arm64") { "arm64" } else { "x86_64" },
                    "state": "available", "platform": null, "image_type": "machine", "hypervisor": "xen",
                    "root_device_name": "/dev/sda1", "root_device_type": "ebs", "sriov": "simple"})
            })
            .collect();
        let amis_path = dir.path().join("amis.json");
        std::fs::write(&amis_path, serde_json::to_string(&amis).unwrap()).unwrap();
        let port = super::free_port();
        let mut cmd = Command::new(moto_bin());
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_AMIS_PATH", &amis_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let why = format!(
                    "cannot start {}: {e} (scripts/setup.sh installs moto[server])",
                    moto_bin()
                );
                if std::env::var(super::REQUIRE_DOCKER_ENV).as_deref() == Ok("1") {
                    panic!("{why}");
                }
                eprintln!("skipped: {why}");
                return None;
            }
        };
        // Ready when it says it is listening (it logs to stderr).
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Running on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("moto_server did not start within 30 s");
        Some(Moto {
            child,
            port,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn client(&self, key_id: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config(key_id).await)
    }

    /// An SDK configuration for this server in us-east-1 with moto's test credentials.
    pub async fn config(&self, key_id: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.url())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                key_id,
                "testing-secret",
                None,
                None,
                "static",
            ))
            .load()
            .await
    }
}
