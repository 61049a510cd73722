//! EC2 provisioning against moto_server on loopback (one server per test, so state never leaks),
//! with Canonical-owned Ubuntu images loaded through MOTO_AMIS_PATH (moto's own list has only old
//! ones). moto gives no reachable instance and no cloud-init console output; the fingerprint parser
//! is tested on a realistic sample in the unit tests. Throttling and expired credentials come from a
//! proxy in front of moto that answers chosen calls with EC2's own error documents
//! (`support/aws_faults.rs`); those tests configure the SDK exactly as the app does (`AwsTarget`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use console_core::ec2::{Ec2Error, HostSpec, KeySource, Provisioner, STACK_TAG};
use console_core::Secret;

mod support;

use support::aws_faults::{Ec2FaultProxy, Fault};
use support::moto::{Moto, NEWEST_LTS};

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
        .starts_with(&support::pem_armour("BEGIN", "OPENSSH")));

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
async fn the_publishing_role_is_made_once_handed_to_the_instance_and_removed_by_the_teardown() {
    use console_core::publisher_role::{self, PublisherRole};
    let Some(moto) = Moto::start(&[]) else { return };
    let conf = moto.config("testing").await;
    let role = PublisherRole::for_config(&conf);
    let (profile, created) = role.ensure("metrics").await.unwrap();
    assert_eq!(profile, "mlops-metrics-publisher");
    assert_eq!(
        created,
        [
            "IAM role mlops-metrics-publisher",
            "instance profile mlops-metrics-publisher"
        ]
    );
    let (again, nothing) = role.ensure("metrics").await.unwrap();
    assert_eq!((again.as_str(), nothing.len()), (profile.as_str(), 0));
    // Its one permission: PutMetricData, into the service's namespace only; EC2 may assume it.
    let iam = aws_sdk_iam::Client::new(&conf);
    let r = iam.get_role().role_name(&profile).send().await.unwrap();
    let r = r.role().unwrap();
    let trust = decode(r.assume_role_policy_document().unwrap());
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "ec2.amazonaws.com"
    );
    assert!(r
        .tags()
        .iter()
        .any(|t| t.key() == "mlops-console:stack" && t.value() == "metrics"));
    let policy = iam
        .get_role_policy()
        .role_name(&profile)
        .policy_name("publish-monitoring-metrics")
        .send()
        .await
        .unwrap();
    let policy = decode(policy.policy_document());
    assert_eq!(
        policy,
        serde_json::from_str::<serde_json::Value>(&publisher_role::publish_policy(
            "MLOps/Inference"
        ))
        .unwrap()
    );
    assert_eq!(policy["Statement"][0]["Action"], "cloudwatch:PutMetricData");
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringEquals"]["cloudwatch:namespace"],
        "MLOps/Inference"
    );

    // The instance runs with it, IMDSv2 only, reachable from a container (hop limit 2).
    let mut s = spec("metrics");
    s.instance_profile = Some(profile.clone());
    let p = Provisioner::new(moto.client("testing").await);
    let ok = |_: &Secret| -> Result<(), String> { Ok(()) };
    p.provision(&s, &ok, &mut |_| {}, WAIT).await.unwrap();
    let i = p.find_instance(&s).await.unwrap().unwrap();
    assert!(
        i.iam_instance_profile()
            .and_then(|p| p.arn())
            .is_some_and(|a| a.ends_with(":instance-profile/mlops-metrics-publisher")),
        "{:?}",
        i.iam_instance_profile()
    );
    let md = i.metadata_options().unwrap();
    assert_eq!(
        (
            md.http_tokens().map(|t| t.as_str()),
            md.http_put_response_hop_limit()
        ),
        (Some("required"), Some(2))
    );

    p.teardown(&s, &mut |_| {}, WAIT).await.unwrap();
    assert_eq!(
        role.remove("metrics").await.unwrap(),
        [
            "instance profile mlops-metrics-publisher",
            "IAM role mlops-metrics-publisher"
        ]
    );
    assert!(iam.list_roles().send().await.unwrap().roles().is_empty());
    assert!(iam
        .list_instance_profiles()
        .send()
        .await
        .unwrap()
        .instance_profiles()
        .is_empty());
    assert!(
        role.remove("metrics").await.unwrap().is_empty(),
        "a second teardown finds nothing"
    );
}

/// IAM hands policy documents back URL-encoded (as its API reference says); moto may not.
fn decode(doc: &str) -> serde_json::Value {
    let mut out = Vec::new();
    let b = doc.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&doc[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{doc}: {e}"))
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
    use console_core::charts::Unit;
    use console_core::cloud_charts;
    use console_core::cloudwatch::{host_queries, service_queries, Reader};

    let Some(moto) = Moto::start(&[]) else { return };
    let conf = moto.config("testing").await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    // EC2 publishes no datapoints in moto: put a realistic hour of them, one a minute.
    let now = this_minute();
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

    // The dashboard's CloudWatch row: the host's charts, and a failing status check as a badge.
    for (metric, value) in [("StatusCheckFailed", 1.0), ("NetworkIn", 6_000_000.0)] {
        cw_put(&conf, metric, "i-0abc", now - 120, value).await;
    }
    let req = console_core::dashboard::Request {
        range_s: 3600,
        utc_offset_s: 0,
        feature: None,
        now,
    };
    let (charts, alerts) = cloud_charts::host_charts(&reader, "i-0abc", &[], &req).await;
    let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["ec2_cpu", "ec2_network"], "{alerts:?}");
    assert_eq!(charts[0].latest.as_deref(), Some("11%"));
    // 6 MB in a one-minute period.
    assert_eq!(
        charts[1].latest.as_deref(),
        Some(Unit::BytesPerSecond.format(100_000.0).as_str())
    );
    assert!(charts[0].svg.contains("<polyline"), "no line drawn");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].level, "critical");
    assert!(alerts[0].text.contains("status check"), "{alerts:?}");

    // AWS out of reach: a warning badge that says so, no charts, no error for the dashboard.
    drop(moto);
    let (charts, alerts) = cloud_charts::host_charts(&reader, "i-0abc", &[], &req).await;
    assert!(charts.is_empty());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].level, "warning");
    assert!(
        alerts[0].text.starts_with("CloudWatch metrics unavailable"),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn a_fleets_cloudwatch_row_reads_the_load_balancer_and_each_host() {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use console_core::cloud_charts;
    use console_core::cloudwatch::{fleet_queries, AlbDimensions, Reader};

    let Some(moto) = Moto::start(&[]) else { return };
    let conf = moto.config("testing").await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let now = this_minute();
    let alb = AlbDimensions::from_arns(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/mlops-demo/50dc6c495c0c9188",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/mlops-demo/73e2d6bc24d8a067",
    )
    .unwrap();
    let dim = |k: &str, v: &str| Dimension::builder().name(k).value(v).build();
    // What the ALB publishes: per target group (with its load balancer), and per load balancer.
    for m in 1..=10i64 {
        let t = DateTime::from_secs(now - m * 60);
        let tg = |metric: &str, v: f64| {
            MetricDatum::builder()
                .metric_name(metric)
                .dimensions(dim("TargetGroup", &alb.target_group))
                .dimensions(dim("LoadBalancer", &alb.load_balancer))
                .timestamp(t)
                .value(v)
                .build()
        };
        cw.put_metric_data()
            .namespace("AWS/ApplicationELB")
            .metric_data(tg("RequestCount", 600.0))
            .metric_data(tg("TargetResponseTime", 0.02))
            .metric_data(tg("HealthyHostCount", 3.0))
            .metric_data(tg("UnHealthyHostCount", 0.0))
            .send()
            .await
            .unwrap();
        // A datum of another target group on the same balancer is not the fleet's.
        cw.put_metric_data()
            .namespace("AWS/ApplicationELB")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("RequestCount")
                    .dimensions(dim("TargetGroup", "targetgroup/other/1"))
                    .dimensions(dim("LoadBalancer", &alb.load_balancer))
                    .timestamp(t)
                    .value(99_999.0)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    for (i, host) in ["i-0a", "i-0b", "i-0c"].iter().enumerate() {
        cw_put(
            &conf,
            "CPUUtilization",
            host,
            now - 60,
            10.0 * (i + 1) as f64,
        )
        .await;
    }
    let hosts: Vec<(String, String)> = [("h1", "i-0a"), ("h2", "i-0b"), ("h3", "i-0c")]
        .iter()
        .map(|(n, i)| (n.to_string(), i.to_string()))
        .collect();
    let reader = Reader::new(cw);
    let ids: Vec<String> = hosts.iter().map(|h| h.1.clone()).collect();
    let series = reader
        .last(&fleet_queries(&alb, &ids), Duration::from_secs(3600))
        .await
        .unwrap();
    let get = |id: &str| series.iter().find(|s| s.id == id).unwrap().points.clone();
    let requests = get("alb_requests");
    assert_eq!(requests.len(), 10, "{requests:?}");
    assert!(requests.iter().all(|p| p.1 == 600.0), "{requests:?}");
    assert_eq!(get("alb_healthy").last().unwrap().1, 3.0);
    // (moto's periods start at the range's start, not on the minute.)
    let cpu: Vec<f64> = get("cpu_2").iter().map(|p| p.1).collect();
    assert_eq!(cpu, [30.0]);
    assert!(get("alb_elb_5xx").is_empty());

    let req = console_core::dashboard::Request {
        range_s: 3600,
        utc_offset_s: 0,
        feature: None,
        now,
    };
    let (charts, alerts) = cloud_charts::fleet_charts(&reader, &alb, &hosts, &[], &req).await;
    assert!(alerts.is_empty(), "{alerts:?}");
    let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "alb_requests",
            "alb_latency",
            "alb_5xx",
            "alb_hosts",
            "ec2_cpu_fleet"
        ]
    );
    // 600 requests in a one-minute period.
    assert_eq!(
        charts[0].latest.as_deref(),
        Some(console_core::charts::Unit::PerSecond.format(10.0).as_str())
    );
    assert!(charts[4].svg.contains("h3"), "a line per host");

    drop(moto);
    let (charts, alerts) = cloud_charts::fleet_charts(&reader, &alb, &hosts, &[], &req).await;
    assert!(charts.is_empty());
    assert!(
        alerts[0].text.starts_with("CloudWatch metrics unavailable"),
        "{alerts:?}"
    );
}

/// The start of the current minute, in Unix seconds.
fn this_minute() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    secs / 60 * 60
}

async fn cw_put(conf: &aws_config::SdkConfig, metric: &str, instance: &str, at: i64, value: f64) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    aws_sdk_cloudwatch::Client::new(conf)
        .put_metric_data()
        .namespace("AWS/EC2")
        .metric_data(
            MetricDatum::builder()
                .metric_name(metric)
                .dimensions(
                    Dimension::builder()
                        .name("InstanceId")
                        .value(instance)
                        .build(),
                )
                .timestamp(DateTime::from_secs(at))
                .value(value)
                .build(),
        )
        .send()
        .await
        .unwrap();
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

/// moto behind the fault proxy, and a provisioner configured exactly as the app configures it
/// (`AwsTarget::load` with an access key pair from the vault), pointed at the proxy.
async fn behind_faults() -> Option<(Moto, Ec2FaultProxy, Provisioner, String)> {
    use console_core::aws::{AwsAuth, AwsTarget};
    let moto = Moto::start(&[])?;
    let proxy = Ec2FaultProxy::start(([127, 0, 0, 1], moto.port).into());
    let key_id = support::test_key_id();
    let mut target = AwsTarget::new(
        "us-east-1",
        AwsAuth::Keys {
            access_key_id: Secret::new(key_id.clone()),
            secret_access_key: Secret::new(support::test_token("aws-test-secret")),
        },
    );
    target.endpoint = Some(proxy.url());
    let p = Provisioner::for_config(&target.load().await);
    Some((moto, proxy, p, key_id))
}

/// The `ClientToken=` of a RunInstances form body.
fn client_token(body: &str) -> Option<&str> {
    body.split('&')
        .find_map(|kv| kv.strip_prefix("ClientToken="))
}

#[tokio::test]
async fn throttled_calls_are_retried_and_provisioning_goes_through() {
    let Some((moto, proxy, p, key_id)) = behind_faults().await else {
        return;
    };
    // Two throttled answers, then EC2 lets the call through: the SDK's own retries absorb them.
    proxy.fail(Some("DescribeImages"), Fault::Throttle, 2);
    let t0 = Instant::now();
    let ami = p
        .latest_ubuntu_lts(console_core::ec2::CANONICAL)
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(ami, NEWEST_LTS);
    let tries = proxy.seen_action("DescribeImages");
    let statuses: Vec<u16> = tries.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [503, 503, 200], "{tries:#?}");
    // Backed off between attempts (the SDK's standard mode: jittered exponential backoff).
    assert!(tries[2].at > tries[0].at, "{tries:#?}");
    eprintln!("DescribeImages throttled twice, third attempt answered: {took:.2?}");

    // A whole provisioning run with a throttled answer at every kind of step, the launch included.
    proxy.reset_log();
    for action in [
        "DescribeKeyPairs",
        "CreateKeyPair",
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "RunInstances",
        "DescribeInstanceStatus",
    ] {
        proxy.fail(Some(action), Fault::Throttle, 1);
    }
    let stored: Mutex<Vec<Secret>> = Mutex::new(Vec::new());
    let store = |s: &Secret| -> Result<(), String> {
        stored.lock().unwrap().push(s.clone());
        Ok(())
    };
    let t0 = Instant::now();
    let host = p
        .provision(&spec("throttled"), &store, &mut |_| {}, WAIT)
        .await
        .unwrap();
    eprintln!(
        "provisioning with 6 throttled answers: {:.1?}",
        t0.elapsed()
    );
    assert_eq!(host.created.len(), 3, "{:?}", host.created);
    let seen = proxy.seen();
    let faults = seen
        .iter()
        .filter(|s| s.fault == Some(Fault::Throttle))
        .count();
    assert_eq!(faults, 6, "every injected fault was hit once");
    // Each throttled call was sent again and then answered by moto.
    for action in ["CreateKeyPair", "RunInstances", "DescribeInstanceStatus"] {
        let tries = proxy.seen_action(action);
        assert_eq!(
            tries.iter().map(|s| s.status).collect::<Vec<_>>(),
            [503, 200],
            "{action}: {tries:#?}"
        );
    }
    // The launch was retried with the same idempotency token, so a throttled (or lost) answer can
    // never start a second instance; exactly one instance and one key pair exist.
    let launches = proxy.seen_action("RunInstances");
    let tokens: Vec<Option<&str>> = launches.iter().map(|s| client_token(&s.body)).collect();
    assert!(
        tokens[0].is_some_and(|t| !t.is_empty()) && tokens[0] == tokens[1],
        "{tokens:?}"
    );
    let direct = moto.client("testing").await;
    let running = direct
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{STACK_TAG}"))
                .values("throttled")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let n: usize = running
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(n, 1);
    assert_eq!(stored.lock().unwrap().len(), 1, "one key pair, stored once");
    // Every request was signed with the configured key, none with anything else.
    assert!(seen.iter().all(|s| s.key_id == key_id), "{seen:#?}");
}

#[tokio::test]
async fn persistent_throttling_ends_in_bounded_time_with_a_sentence() {
    let Some((_moto, proxy, p, _)) = behind_faults().await else {
        return;
    };
    proxy.fail_always(None, Fault::Throttle);
    let t0 = Instant::now();
    let e = p
        .latest_ubuntu_lts(console_core::ec2::CANONICAL)
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, Ec2Error::Throttled { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("AWS is throttling requests (RequestLimitExceeded)")
            && msg.contains("find the Ubuntu image")
            && msg.contains("wait a minute and run it again"),
        "{msg}"
    );
    // Bounded: the SDK's standard retry mode makes 3 attempts in all, then gives up.
    assert_eq!(proxy.seen().len(), 3, "{:#?}", proxy.seen());
    assert!(took < Duration::from_secs(20), "{took:?}");
    eprintln!("persistent throttling → error after 3 attempts in {took:.2?}: {msg}");

    // Throttled while waiting for the instance: the waiter's error is the throttling, said so at
    // once, not "did not finish within 600 s" after the wait it was given.
    proxy.clear();
    proxy.reset_log();
    proxy.fail_always(Some("DescribeInstanceStatus"), Fault::Throttle);
    let t0 = Instant::now();
    let e = p
        .provision(
            &spec("slowed"),
            &|_: &Secret| Ok(()),
            &mut |_| {},
            Duration::from_secs(600),
        )
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(&e, Ec2Error::Throttled { what, .. } if what == "wait for the status checks"),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_eq!(proxy.seen_action("DescribeInstanceStatus").len(), 3);
    // It resumes where it stopped once AWS lets it: the second run creates nothing.
    proxy.clear();
    let again = p
        .provision(&spec("slowed"), &|_: &Secret| Ok(()), &mut |_| {}, WAIT)
        .await
        .unwrap();
    assert!(again.created.is_empty(), "{:?}", again.created);
    eprintln!("throttled status checks → error in {took:.2?}: {e}");
}

#[tokio::test]
async fn expired_credentials_are_a_sentence_that_says_how_to_refresh_them() {
    let Some((moto, proxy, p, _)) = behind_faults().await else {
        return;
    };
    // EC2's answer to a request signed with expired temporary credentials.
    proxy.fail(None, Fault::RequestExpired, 1);
    let e = p
        .latest_ubuntu_lts(console_core::ec2::CANONICAL)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Ec2Error::Expired { code, .. } if code == "RequestExpired"),
        "{e:?}"
    );
    let msg = e.to_string();
    for what in [
        "credentials have expired",
        "Request has expired.",
        "store a new access key pair",
        "aws sso login",
        "clock",
    ] {
        assert!(msg.contains(what), "{what:?} missing from: {msg}");
    }
    // Not retried: another attempt with the same credentials cannot succeed.
    assert_eq!(proxy.seen().len(), 1, "{:#?}", proxy.seen());

    // The other spelling (ExpiredToken) at the first step of provisioning: nothing is created.
    proxy.reset_log();
    proxy.fail(Some("DescribeKeyPairs"), Fault::ExpiredToken, 1);
    let e = p
        .provision(&spec("expired"), &|_: &Secret| Ok(()), &mut |_| {}, WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Ec2Error::Expired { code, what, .. } if code == "ExpiredToken" && what == "look for the key pair"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("security token included in the request is expired"),
        "{e}"
    );
    assert_eq!(proxy.seen().len(), 1, "{:#?}", proxy.seen());
    let keys = moto
        .client("testing")
        .await
        .describe_key_pairs()
        .send()
        .await
        .unwrap();
    assert!(keys.key_pairs().is_empty(), "nothing was created");
    eprintln!("expired credentials: {e}");
}
