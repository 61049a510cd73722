//! A fleet on AWS against moto_server (elbv2 and EC2): three hosts from the provisioning code, one
//! per availability zone (a fourth added, then removed); provisioning makes the load balancer
//! across availability zones, the target group checked on `/readyz`, the
//! listener(s) and the security groups (only the ALB reaches the hosts' service port), all tagged;
//! a second run finds them; the fleet's balancer deregisters and registers the hosts' instances; and
//! teardown (the ALB's, then the hosts') leaves nothing tagged behind.

mod support;

use std::io::{Read, Write};

use aws_sdk_ec2::types::Filter;
use aws_sdk_elasticloadbalancingv2::types::{ActionTypeEnum, ProtocolEnum};
use console_core::alb::{provision, teardown, AlbSpec, AlbTargets, DEREGISTRATION_DELAY_S};
use console_core::balancer::Balancer;
use console_core::ec2::{Host, HostSpec, Provisioner, STACK_TAG};
use std::time::Duration;
use support::moto::Moto;

const PORT: u16 = 8080;

const WAIT: Duration = Duration::from_secs(60);

fn host_spec(stack: &str) -> HostSpec {
    HostSpec::new(stack, "203.0.113.7/32")
}

/// The fleet's hosts from the provisioning code: `count` replicas of the stack.
async fn hosts(ec2: &aws_sdk_ec2::Client, stack: &str, count: usize) -> Vec<Host> {
    Provisioner::new(ec2.clone())
        .provision_fleet(&host_spec(stack), count, &|_| Ok(()), &mut |_| {}, WAIT)
        .await
        .unwrap()
}

/// The zones the stack's live instances run in, by replica.
async fn zones(ec2: &aws_sdk_ec2::Client, stack: &str) -> Vec<(usize, String)> {
    let mut z: Vec<(usize, String)> = Provisioner::new(ec2.clone())
        .replicas(&host_spec(stack))
        .await
        .unwrap()
        .into_iter()
        .map(|(n, i)| {
            let zone = i
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string();
            (n, zone)
        })
        .collect();
    z.sort();
    z
}

/// An ACM certificate in moto (moto checks that a listener's certificate exists there). No ACM
/// client in the project: one JSON call, with moto's unchecked signature naming the service.
fn acm_certificate(moto: &Moto) -> String {
    let body = r#"{"DomainName": "inference.example.com"}"#;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: CertificateManager.RequestCertificate\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20261206/us-east-1/acm/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len(),
        port = moto.port
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", moto.port)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("ACM's answer is not JSON ({e}): {answer}"));
    v["CertificateArn"].as_str().unwrap().to_string()
}

/// What the ALB left in moto tagged with `stack`: load balancers, target groups, security groups
/// other than the hosts' own.
async fn tagged(
    ec2: &aws_sdk_ec2::Client,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
) -> Vec<String> {
    let mut arns: Vec<String> = elb
        .describe_load_balancers()
        .send()
        .await
        .unwrap()
        .load_balancers()
        .iter()
        .filter_map(|l| l.load_balancer_arn().map(str::to_string))
        .collect();
    arns.extend(
        elb.describe_target_groups()
            .send()
            .await
            .unwrap()
            .target_groups()
            .iter()
            .filter_map(|t| t.target_group_arn().map(str::to_string)),
    );
    let mut found = Vec::new();
    if !arns.is_empty() {
        let tags = elb
            .describe_tags()
            .set_resource_arns(Some(arns))
            .send()
            .await
            .unwrap();
        for d in tags.tag_descriptions() {
            if d.tags()
                .iter()
                .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack))
            {
                found.push(d.resource_arn().unwrap_or_default().to_string());
            }
        }
    }
    let groups = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name(format!("tag:{STACK_TAG}"))
                .values(stack)
                .build(),
        )
        .send()
        .await
        .unwrap();
    found.extend(
        groups
            .security_groups()
            .iter()
            // The hosts' own group stays until the hosts' teardown.
            .filter(|g| g.group_name() != Some(host_spec(stack).group_name().as_str()))
            .filter_map(|g| g.group_id().map(str::to_string)),
    );
    found
}

#[tokio::test]
async fn an_alb_is_provisioned_drives_its_targets_and_is_torn_down() {
    let Some(moto) = Moto::start(&[]) else { return };
    let config = moto.config("testing").await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    // Three hosts from the provisioning code, one per availability zone.
    let fleet = hosts(&ec2, "prod", 3).await;
    assert_eq!(fleet.len(), 3);
    assert!(
        fleet[0].created.iter().any(|c| c.contains("replica 2")),
        "{:?}",
        fleet[0].created
    );
    let placed = zones(&ec2, "prod").await;
    assert_eq!(
        placed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let mut distinct: Vec<&String> = placed.iter().map(|(_, z)| z).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{placed:?}");
    let host_sg = fleet[0].security_group_id.clone();
    assert!(fleet.iter().all(|h| h.security_group_id == host_sg));
    let instances: Vec<String> = fleet.iter().map(|h| h.instance_id.clone()).collect();
    // Run again: nothing new; a fourth replica when asked; then back down to two.
    let again = hosts(&ec2, "prod", 3).await;
    assert!(again[0].created.is_empty(), "{:?}", again[0].created);
    assert_eq!(hosts(&ec2, "prod", 4).await.len(), 4);
    let gone = Provisioner::new(ec2.clone())
        .scale_down(&host_spec("prod"), 3, &mut |_| {}, WAIT)
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(zones(&ec2, "prod").await.len(), 3);
    let spec = AlbSpec {
        stack: "prod".into(),
        service_port: PORT,
        host_security_group: host_sg.clone(),
        ingress_cidr: "0.0.0.0/0".into(),
        certificate_arn: None,
        vpc_id: None,
    };
    let mut steps = Vec::new();
    let alb = provision(&ec2, &elb, &spec, &mut |s| steps.push(s.to_string()))
        .await
        .unwrap();
    assert_eq!(alb.created.len(), 5, "{:?}", alb.created);
    assert!(alb.subnets.len() >= 2, "{alb:?}");

    // The load balancer: internet-facing, application, in every zone's subnet, behind its group.
    let lb = elb
        .describe_load_balancers()
        .names("mlops-prod")
        .send()
        .await
        .unwrap();
    let lb = &lb.load_balancers()[0];
    assert_eq!(lb.scheme().unwrap().as_str(), "internet-facing");
    assert_eq!(lb.r#type().unwrap().as_str(), "application");
    assert_eq!(
        lb.security_groups(),
        std::slice::from_ref(&alb.security_group_id)
    );
    assert_eq!(lb.availability_zones().len(), alb.subnets.len());
    assert_eq!(lb.dns_name(), Some(alb.dns_name.as_str()));

    // The target group: HTTP to the service port, checked on /readyz, 30 s to drain.
    let tg = elb
        .describe_target_groups()
        .names("mlops-prod")
        .send()
        .await
        .unwrap();
    let tg = &tg.target_groups()[0];
    assert_eq!(tg.port(), Some(i32::from(PORT)));
    assert_eq!(tg.protocol(), Some(&ProtocolEnum::Http));
    assert_eq!(tg.health_check_path(), Some("/readyz"));
    assert_eq!(tg.matcher().and_then(|m| m.http_code()), Some("200"));
    let attrs = elb
        .describe_target_group_attributes()
        .target_group_arn(&alb.target_group_arn)
        .send()
        .await
        .unwrap();
    assert!(attrs
        .attributes()
        .iter()
        .any(|a| a.key() == Some("deregistration_delay.timeout_seconds")
            && a.value() == Some(&DEREGISTRATION_DELAY_S.to_string())));

    // One listener on 80, forwarding to the target group.
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&alb.load_balancer_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1);
    let l = &listeners.listeners()[0];
    assert_eq!(l.port(), Some(80));
    let action = &l.default_actions()[0];
    assert_eq!(action.r#type(), Some(&ActionTypeEnum::Forward));
    assert_eq!(
        action.target_group_arn(),
        Some(alb.target_group_arn.as_str())
    );

    // Security groups: 80 from anywhere into the ALB; the service port from the ALB only.
    let groups = ec2
        .describe_security_groups()
        .group_ids(&alb.security_group_id)
        .group_ids(&host_sg)
        .send()
        .await
        .unwrap();
    let group = |id: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
            .unwrap()
            .clone()
    };
    let alb_rules = group(&alb.security_group_id);
    assert_eq!(alb_rules.ip_permissions().len(), 1);
    let p = &alb_rules.ip_permissions()[0];
    assert_eq!((p.from_port(), p.to_port()), (Some(80), Some(80)));
    assert_eq!(p.ip_ranges()[0].cidr_ip(), Some("0.0.0.0/0"));
    let host_rules = group(&host_sg);
    let service: Vec<_> = host_rules
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(i32::from(PORT)))
        .collect();
    assert_eq!(service.len(), 1, "{host_rules:?}");
    assert!(
        service[0].ip_ranges().is_empty(),
        "no address range reaches the service port"
    );
    assert_eq!(
        service[0].user_id_group_pairs()[0].group_id(),
        Some(alb.security_group_id.as_str())
    );
    assert!(tagged(&ec2, &elb, "prod").await.len() >= 3);

    // A second run finds everything.
    let again = provision(&ec2, &elb, &spec, &mut |_| {}).await.unwrap();
    assert!(again.created.is_empty(), "{:?}", again.created);
    assert_eq!(again.load_balancer_arn, alb.load_balancer_arn);

    // The fleet's balancer: hosts in, one drained, back.
    let lb = AlbTargets {
        client: elb.clone(),
        target_group_arn: alb.target_group_arn.clone(),
        port: PORT,
        members: ["h1", "h2", "h3"]
            .iter()
            .zip(&instances)
            .map(|(n, i)| (n.to_string(), i.clone()))
            .collect(),
        poll: Duration::from_millis(50),
    };
    for h in ["h1", "h2", "h3"] {
        lb.enable(h, Duration::from_secs(10)).await.unwrap();
    }
    assert!(lb.members().await.unwrap().iter().all(|m| m.is_up()));
    lb.drain("h2", Duration::from_secs(10)).await.unwrap();
    let states: Vec<(String, bool)> = lb
        .members()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name.clone(), m.is_up()))
        .collect();
    assert_eq!(
        states,
        [
            ("h1".into(), true),
            ("h2".into(), false),
            ("h3".into(), true)
        ]
    );
    lb.enable("h2", Duration::from_secs(10)).await.unwrap();
    let e = lb.drain("h9", Duration::from_secs(1)).await.unwrap_err();
    assert!(e.to_string().contains("h1, h2, h3"), "{e}");

    // HTTPS with the user's certificate: 443 forwards, 80 redirects to it.
    let cert = acm_certificate(&moto);
    let tls = AlbSpec {
        stack: "prod-tls".into(),
        certificate_arn: Some(cert.clone()),
        ..spec.clone()
    };
    let secure = provision(&ec2, &elb, &tls, &mut |_| {}).await.unwrap();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&secure.load_balancer_arn)
        .send()
        .await
        .unwrap();
    let by_port = |port: i32| {
        listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(port))
            .unwrap()
            .clone()
    };
    let https = by_port(443);
    assert_eq!(https.protocol(), Some(&ProtocolEnum::Https));
    assert_eq!(
        https.certificates()[0].certificate_arn(),
        Some(cert.as_str())
    );
    let redirect = by_port(80).default_actions()[0].clone();
    assert_eq!(redirect.r#type(), Some(&ActionTypeEnum::Redirect));
    assert_eq!(
        redirect.redirect_config().and_then(|r| r.port()),
        Some("443")
    );

    // Teardown, in dependency order; nothing tagged is left, the hosts' group keeps no rule for it.
    let removed = teardown(&ec2, &elb, &spec, &mut |_| {}).await.unwrap();
    assert_eq!(removed.len(), 5, "{removed:?}");
    assert!(removed[0].starts_with("listener"), "{removed:?}");
    assert!(tagged(&ec2, &elb, "prod").await.is_empty());
    teardown(&ec2, &elb, &tls, &mut |_| {}).await.unwrap();
    assert!(tagged(&ec2, &elb, "prod-tls").await.is_empty());
    let host_rules = ec2
        .describe_security_groups()
        .group_ids(&host_sg)
        .send()
        .await
        .unwrap();
    assert!(host_rules.security_groups()[0]
        .ip_permissions()
        .iter()
        .all(|p| p.user_id_group_pairs().is_empty()));
    // A second teardown finds nothing to do.
    assert!(teardown(&ec2, &elb, &spec, &mut |_| {})
        .await
        .unwrap()
        .is_empty());
    // The hosts' own teardown: every replica, their group and key pair; nothing tagged is left.
    let removed = Provisioner::new(ec2.clone())
        .teardown(&host_spec("prod"), &mut |_| {}, WAIT)
        .await
        .unwrap();
    assert_eq!(
        removed
            .iter()
            .filter(|r| r.starts_with("instance "))
            .count(),
        3,
        "{removed:?}"
    );
    assert!(zones(&ec2, "prod").await.is_empty());
    let left = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name(format!("tag:{STACK_TAG}"))
                .values("prod")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(left.security_groups().is_empty());
}
