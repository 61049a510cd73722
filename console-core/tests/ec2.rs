//! EC2 provisioning against moto_server on loopback (one server per test, so state never leaks),
//! with Canonical-owned Ubuntu images loaded through MOTO_AMIS_PATH (moto's own list has only old
//! ones). moto gives no reachable instance and no cloud-init console output; the fingerprint parser
//! is tested on a realistic sample in the unit tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::types::Filter;
use console_core::ec2::{Ec2Error, HostSpec, KeySource, Provisioner, STACK_TAG};
use console_core::Secret;

mod support;

struct Moto {
    child: Child,
    port: u16,
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

const AMIS: &[(&str, &str)] = &[
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
const NEWEST_LTS: &str = "ami-0a1b2c3d4e5f60005";

impl Moto {
    fn start(extra_env: &[(&str, &str)]) -> Option<Moto> {
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
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
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
                if std::env::var("MLOPS_REQUIRE_DOCKER").as_deref() == Ok("1") {
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

    async fn client(&self, key_id: &str) -> aws_sdk_ec2::Client {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                key_id,
                "testing-secret",
                None,
                None,
                "static",
            ))
            .load()
            .await;
        aws_sdk_ec2::Client::new(&conf)
    }
}

const WAIT: Duration = Duration::from_secs(60);

fn spec(name: &str) -> HostSpec {
    HostSpec::new(name, "203.0.113.7/32")
}

#[tokio::test]
async fn provisions_a_tagged_host_and_a_second_run_finds_it() {
    let Some(moto) = Moto::start(&[]) else { return };
    let client = moto.client("testing").await;
    let p = Provisioner::new(client.clone());
    let stored: Mutex<Vec<Secret>> = Mutex::new(Vec::new());
    let store = |s: &Secret| -> Result<(), String> {
        stored.lock().unwrap().push(s.clone());
        Ok(())
    };
    let mut steps = Vec::new();
    let host = p
        .provision(
            &spec("inference-prod"),
            &store,
            &mut |s| steps.push(s.to_string()),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(host.ami, NEWEST_LTS, "the newest amd64 LTS image");
    assert_eq!(host.created.len(), 3, "{:?}", host.created);
    assert!(host.public_ip.is_some(), "{host:?}");
    assert!(
        steps.iter().any(|s| s.contains("status checks")),
        "{steps:?}"
    );
    // The private key went to the store (the keychain in the app) and is an OpenSSH ed25519 PEM.
    let keys = stored.lock().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert!(keys[0]
        .expose()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));

    // The instance: t3.micro, tagged, gp3 20 GiB encrypted root volume, Docker in the user-data.
    let d = client
        .describe_instances()
        .instance_ids(&host.instance_id)
        .send()
        .await
        .unwrap();
    let i = &d.reservations()[0].instances()[0];
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some("inference-prod")));
    assert_eq!(i.key_name(), Some("mlops-inference-prod"));
    let vols = client
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&host.instance_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v = &vols.volumes()[0];
    assert_eq!(
        (v.size(), v.volume_type().map(|t| t.as_str())),
        (Some(20), Some("gp3"))
    );
    let ud = client
        .describe_instance_attribute()
        .instance_id(&host.instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let ud = ud.user_data().and_then(|u| u.value()).unwrap_or_default();
    use base64::Engine as _;
    let ud = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ud)
            .unwrap(),
    )
    .unwrap();
    assert!(
        ud.contains("apt-get install -y -q docker.io docker-compose")
            && ud.contains("install -d -o ubuntu"),
        "{ud}"
    );
    // The security group: SSH from the caller's /32 only, nothing else.
    let g = client
        .describe_security_groups()
        .group_ids(&host.security_group_id)
        .send()
        .await
        .unwrap();
    let perms = g.security_groups()[0].ip_permissions();
    assert_eq!(perms.len(), 1);
    assert_eq!(
        (perms[0].from_port(), perms[0].to_port()),
        (Some(22), Some(22))
    );
    let cidrs: Vec<_> = perms[0]
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(cidrs, ["203.0.113.7/32"]);

    // Idempotent: the second run finds everything and creates nothing.
    let again = p
        .provision(&spec("inference-prod"), &store, &mut |_| {}, WAIT)
        .await
        .unwrap();
    assert_eq!(again.instance_id, host.instance_id);
    assert!(again.created.is_empty(), "{:?}", again.created);
    assert_eq!(stored.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_half_finished_run_resumes_and_teardown_removes_exactly_the_stack() {
    let Some(moto) = Moto::start(&[]) else { return };
    let client = moto.client("testing").await;
    let p = Provisioner::new(client.clone());
    let ok = |_: &Secret| -> Result<(), String> { Ok(()) };
    let mut imported = spec("staging");
    imported.key = KeySource::Import(support::fresh_ssh_key(false).1);
    let other = p
        .provision(&spec("other"), &ok, &mut |_| {}, WAIT)
        .await
        .unwrap();
    let first = p
        .provision(&imported, &ok, &mut |_| {}, WAIT)
        .await
        .unwrap();
    // The instance goes away (a crash between steps, a manual termination): the next run creates
    // only what is missing.
    client
        .terminate_instances()
        .instance_ids(&first.instance_id)
        .send()
        .await
        .unwrap();
    let resumed = p
        .provision(&imported, &ok, &mut |_| {}, WAIT)
        .await
        .unwrap();
    assert_eq!(resumed.created.len(), 1, "{:?}", resumed.created);
    assert!(resumed.created[0].starts_with("instance "));
    assert_eq!(resumed.security_group_id, first.security_group_id);

    let removed = p.teardown(&imported, &mut |_| {}, WAIT).await.unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert!(p.find_instance(&imported).await.unwrap().is_none());
    // The other stack is untouched.
    assert_eq!(
        p.find_instance(&spec("other"))
            .await
            .unwrap()
            .and_then(|i| i.instance_id().map(str::to_string)),
        Some(other.instance_id)
    );
    assert!(
        p.teardown(&imported, &mut |_| {}, WAIT)
            .await
            .unwrap()
            .is_empty(),
        "a second teardown has nothing left to remove"
    );
}

#[tokio::test]
async fn a_key_that_cannot_be_stored_is_not_left_behind() {
    let Some(moto) = Moto::start(&[]) else { return };
    let client = moto.client("testing").await;
    let p = Provisioner::new(client.clone());
    let failing = |_: &Secret| -> Result<(), String> { Err("the OS keychain is locked".into()) };
    let e = p
        .provision(&spec("k"), &failing, &mut |_| {}, WAIT)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("could not be stored") && e.to_string().contains("locked"),
        "{e}"
    );
    let keys = client.describe_key_pairs().send().await.unwrap();
    assert!(
        keys.key_pairs()
            .iter()
            .all(|k| k.key_name() != Some("mlops-k")),
        "the useless key pair must be deleted"
    );
}

#[tokio::test]
async fn refused_credentials_are_a_sentence_that_says_what_to_do() {
    // moto checks signatures once IAM enforcement starts (after 0 free actions here).
    let Some(moto) = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]) else {
        return;
    };
    let p = Provisioner::new(moto.client(&support::test_key_id()).await);
    let e = p
        .provision(&spec("x"), &|_: &Secret| Ok(()), &mut |_| {}, WAIT)
        .await
        .unwrap_err();
    assert!(matches!(e, Ec2Error::Credentials { .. }), "{e:?}");
    assert!(e.to_string().contains("Check the access key"), "{e}");
}

#[tokio::test]
async fn the_cloudwatch_reader_returns_the_host_and_service_series() {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    use console_core::cloudwatch::{host_queries, service_queries, Reader};

    let Some(moto) = Moto::start(&[]) else { return };
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{}", moto.port))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing-secret",
            None,
            None,
            "static",
        ))
        .load()
        .await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    // EC2 publishes no datapoints in moto: put a realistic hour of them, one a minute.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60
        * 60;
    let dim = |k: &str, v: &str| Dimension::builder().name(k).value(v).build();
    for m in 1..=30i64 {
        let t = DateTime::from_secs(now - m * 60);
        cw.put_metric_data()
            .namespace("AWS/EC2")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("CPUUtilization")
                    .dimensions(dim("InstanceId", "i-0abc"))
                    .timestamp(t)
                    .value(10.0 + m as f64)
                    .unit(StandardUnit::Percent)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        cw.put_metric_data()
            .namespace("MLOps/Inference")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("RequestCount")
                    .dimensions(dim("Service", "inference"))
                    .dimensions(dim("ModelVersion", "v1"))
                    .timestamp(t)
                    .value(100.0)
                    .unit(StandardUnit::Count)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let reader = Reader::new(cw);
    let host = reader
        .last(&host_queries("i-0abc"), Duration::from_secs(3600))
        .await
        .unwrap();
    let cpu = host.iter().find(|s| s.id == "cpu").unwrap();
    assert_eq!(cpu.points.len(), 30, "{cpu:?}");
    assert!(
        cpu.points.windows(2).all(|w| w[0].0 < w[1].0),
        "oldest first"
    );
    assert_eq!(cpu.points.last().unwrap().1, 11.0);
    assert!(
        host.iter()
            .find(|s| s.id == "mem_used")
            .unwrap()
            .points
            .is_empty(),
        "no agent, no memory series"
    );
    let svc = reader
        .last(
            &service_queries("MLOps/Inference", "inference", "v1"),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let req = svc.iter().find(|s| s.id == "requests").unwrap();
    assert_eq!(req.points.len(), 30);
    assert!(req.points.iter().all(|p| p.1 == 100.0));
    let e = reader
        .read(&host_queries("i-0abc"), now, now - 60)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ends before it starts"), "{e}");
}

/// A one-shot HTTP server on loopback answering `body` (standing in for checkip.amazonaws.com).
fn echo_server(body: &'static str) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/")
}

#[tokio::test]
async fn the_callers_address_becomes_a_32_block() {
    use console_core::ec2::detect_caller_cidr;
    assert_eq!(
        detect_caller_cidr(&echo_server("203.0.113.9\n"))
            .await
            .unwrap(),
        "203.0.113.9/32"
    );
    let e = detect_caller_cidr(&echo_server("<html>captive portal</html>"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not an IPv4 address") && e.to_string().contains("type it instead"),
        "{e}"
    );
    let e = detect_caller_cidr(&echo_server("10.0.0.7"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a public address"), "{e}");
}

#[tokio::test]
async fn credentials_come_from_a_profile_or_the_vault_keys() {
    use aws_credential_types::provider::ProvideCredentials;
    use console_core::aws::{AwsAuth, AwsTarget};
    let dir = tempfile::tempdir().unwrap();
    let (config, creds) = (dir.path().join("config"), dir.path().join("credentials"));
    std::fs::write(&config, "[profile staging]\nregion = eu-central-1\n").unwrap();
    let (profile_key, vault_key) = (support::test_key_id(), support::test_key_id());
    std::fs::write(
        &creds,
        format!(
            "[staging]\naws_access_key_id = {profile_key}\naws_secret_access_key = {}\n",
            support::test_token("aws-test-secret")
        ),
    )
    .unwrap();
    let target = |auth| AwsTarget {
        region: "us-east-1".into(),
        auth,
        endpoint: None,
        profile_files: Some((config.clone(), creds.clone())),
    };
    let key_of = |conf: aws_config::SdkConfig| async move {
        conf.credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .map(|c| c.access_key_id().to_string())
    };
    assert_eq!(
        key_of(target(AwsAuth::Profile("staging".into())).load().await)
            .await
            .unwrap(),
        profile_key
    );
    let keys = AwsAuth::Keys {
        access_key_id: Secret::new(vault_key.clone()),
        secret_access_key: Secret::new(support::test_token("aws-test-secret")),
    };
    assert_eq!(key_of(target(keys).load().await).await.unwrap(), vault_key);
    let e = key_of(target(AwsAuth::Profile("missing".into())).load().await)
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("missing"), "{e:?}");
}
