//! A fleet's load balancer on AWS: an Application Load Balancer across the region's availability
//! zones, a target group whose health check is the service's `/readyz`, a listener on 80 (443 with
//! the user's ACM certificate, 80 then redirecting), and security groups so that only the ALB
//! reaches the service port of the hosts. Everything is tagged with the stack and removed by
//! [`teardown`] in dependency order. [`AlbTargets`] is the fleet's [`Balancer`] on it: deregister
//! and wait for the target to drain, register and wait until the target group calls it healthy.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, Tag as Ec2Tag, TagSpecification, UserIdGroupPair,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, Matcher,
    ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum, Tag, TargetDescription,
    TargetGroupAttribute, TargetHealthStateEnum, TargetTypeEnum,
};

use crate::balancer::{poll_until, Balancer, BalancerError, MemberState};
use crate::ec2::{api_err, Ec2Error, STACK_TAG};
use crate::fleet_hosts::{default_vpc, subnets_by_zone};

/// How long a deregistered target keeps its requests in flight (the target group's default is 300 s;
/// the service answers within seconds).
pub const DEREGISTRATION_DELAY_S: u32 = 30;
/// TLS policy of the HTTPS listener: TLS 1.3 and 1.2 only.
pub const SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/// What the fleet's load balancer is for.
#[derive(Clone, Debug)]
pub struct AlbSpec {
    /// The stack's name (as for its hosts): names and tags derive from it.
    pub stack: String,
    /// The service port on the hosts (INFERENCE_PORT), which the target group forwards to.
    pub service_port: u16,
    /// The hosts' security group, which gets the one rule letting the ALB reach the service port.
    pub host_security_group: String,
    /// Who may reach the ALB's listeners (`0.0.0.0/0` for a public service).
    pub ingress_cidr: String,
    /// An ACM certificate's ARN: HTTPS on 443, and 80 redirecting to it.
    pub certificate_arn: Option<String>,
    /// None: the region's default VPC.
    pub vpc_id: Option<String>,
}

impl AlbSpec {
    /// The load balancer's and the target group's name (AWS allows 32 characters).
    pub fn name(&self) -> String {
        let n = format!("mlops-{}", self.stack);
        n.chars()
            .take(32)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }

    pub fn security_group_name(&self) -> String {
        format!("mlops-{}-alb", self.stack)
    }

    pub fn validate(&self) -> Result<(), Ec2Error> {
        let ok_name = !self.stack.is_empty()
            && self.stack.len() <= 26
            && self
                .stack
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !self.stack.starts_with('-')
            && !self.stack.ends_with('-');
        if !ok_name {
            return Err(Ec2Error::BadInput(format!(
                "stack name {:?}: a load balancer's name takes 1 to 26 letters, digits or inner hyphens after `mlops-`",
                self.stack
            )));
        }
        if self.service_port == 0 {
            return Err(Ec2Error::BadInput("the service port cannot be 0".into()));
        }
        crate::ec2::parse_cidr(&self.ingress_cidr).map_err(Ec2Error::BadInput)?;
        if let Some(arn) = &self.certificate_arn {
            if !arn.starts_with("arn:aws") || !arn.contains(":acm:") {
                return Err(Ec2Error::BadInput(format!(
                    "{arn:?} is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"
                )));
            }
        }
        Ok(())
    }
}

/// What [`provision`] made (or found).
#[derive(Clone, Debug, PartialEq)]
pub struct Alb {
    pub load_balancer_arn: String,
    pub dns_name: String,
    pub target_group_arn: String,
    pub security_group_id: String,
    pub subnets: Vec<String>,
    pub listener_arns: Vec<String>,
    /// Resources created by this run.
    pub created: Vec<String>,
}

fn elb_tags(stack: &str) -> Vec<Tag> {
    vec![
        Tag::builder().key(STACK_TAG).value(stack).build(),
        Tag::builder()
            .key("Name")
            .value(format!("mlops-{stack}"))
            .build(),
    ]
}

/// The port rule that lets the ALB's security group reach the hosts' service port.
fn from_alb(port: u16, alb_group: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(i32::from(port))
        .to_port(i32::from(port))
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(alb_group).build())
        .build()
}

/// Creates what is missing of the stack's ALB (a second run finds what the first made).
pub async fn provision(
    ec2: &aws_sdk_ec2::Client,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    spec: &AlbSpec,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Alb, Ec2Error> {
    spec.validate()?;
    let mut created = Vec::new();
    let vpc = match &spec.vpc_id {
        Some(v) => v.clone(),
        None => default_vpc(ec2).await?,
    };
    // One subnet per availability zone (an ALB needs two zones at least).
    let by_zone = subnets_by_zone(ec2, &vpc).await?;
    if by_zone.len() < 2 {
        return Err(Ec2Error::BadInput(format!(
            "VPC {vpc} has subnets in {} availability zone(s); an Application Load Balancer needs two",
            by_zone.len()
        )));
    }
    let subnets: Vec<String> = by_zone.into_iter().map(|(_, s)| s).collect();

    // The ALB's security group: the listeners' ports from the allowed range.
    let existing = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values(spec.security_group_name())
                .build(),
        )
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .map_err(|e| api_err("look for the load balancer's security group", &e))?;
    let sg = match existing
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
    {
        Some(id) => id.to_string(),
        None => {
            progress("creating the load balancer's security group");
            let id = ec2
                .create_security_group()
                .group_name(spec.security_group_name())
                .description(format!(
                    "mlops-console: the load balancer of {}",
                    spec.stack
                ))
                .vpc_id(&vpc)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::SecurityGroup)
                        .tags(Ec2Tag::builder().key(STACK_TAG).value(&spec.stack).build())
                        .tags(
                            Ec2Tag::builder()
                                .key("Name")
                                .value(spec.security_group_name())
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| api_err("create the load balancer's security group", &e))?
                .group_id()
                .unwrap_or_default()
                .to_string();
            let ports: &[i32] = if spec.certificate_arn.is_some() {
                &[80, 443]
            } else {
                &[80]
            };
            for &p in ports {
                ec2.authorize_security_group_ingress()
                    .group_id(&id)
                    .ip_permissions(
                        IpPermission::builder()
                            .ip_protocol("tcp")
                            .from_port(p)
                            .to_port(p)
                            .ip_ranges(IpRange::builder().cidr_ip(&spec.ingress_cidr).build())
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| api_err("open the load balancer's listener port", &e))?;
            }
            created.push(format!("security group {id}"));
            id
        }
    };
    // The hosts' service port, from the ALB only.
    let host_group = ec2
        .describe_security_groups()
        .group_ids(&spec.host_security_group)
        .send()
        .await
        .map_err(|e| api_err("read the hosts' security group", &e))?;
    let has_rule = host_group
        .security_groups()
        .iter()
        .flat_map(|g| g.ip_permissions())
        .any(|p| {
            p.from_port() == Some(i32::from(spec.service_port))
                && p.user_id_group_pairs()
                    .iter()
                    .any(|u| u.group_id() == Some(sg.as_str()))
        });
    if !has_rule {
        ec2.authorize_security_group_ingress()
            .group_id(&spec.host_security_group)
            .ip_permissions(from_alb(spec.service_port, &sg))
            .send()
            .await
            .map_err(|e| api_err("let the load balancer reach the service port", &e))?;
        created.push(format!(
            "rule: {} port {} from {sg}",
            spec.host_security_group, spec.service_port
        ));
    }

    // The target group, checked on /readyz.
    let tg = match find_target_group(elb, &spec.name()).await? {
        Some(arn) => arn,
        None => {
            progress("creating the target group (health check /readyz)");
            let arn = elb
                .create_target_group()
                .name(spec.name())
                .protocol(ProtocolEnum::Http)
                .port(i32::from(spec.service_port))
                .vpc_id(&vpc)
                .target_type(TargetTypeEnum::Instance)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_path("/readyz")
                .health_check_interval_seconds(10)
                .health_check_timeout_seconds(5)
                .healthy_threshold_count(2)
                .unhealthy_threshold_count(2)
                .matcher(Matcher::builder().http_code("200").build())
                .set_tags(Some(elb_tags(&spec.stack)))
                .send()
                .await
                .map_err(|e| api_err("create the target group", &e))?
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .unwrap_or_default()
                .to_string();
            created.push(format!("target group {}", spec.name()));
            arn
        }
    };
    elb.modify_target_group_attributes()
        .target_group_arn(&tg)
        .attributes(
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(DEREGISTRATION_DELAY_S.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| api_err("set the target group's deregistration delay", &e))?;

    // The load balancer.
    let (lb_arn, dns) = match find_load_balancer(elb, &spec.name()).await? {
        Some(found) => found,
        None => {
            progress("creating the Application Load Balancer");
            let out = elb
                .create_load_balancer()
                .name(spec.name())
                .r#type(LoadBalancerTypeEnum::Application)
                .scheme(LoadBalancerSchemeEnum::InternetFacing)
                .set_subnets(Some(subnets.clone()))
                .security_groups(&sg)
                .set_tags(Some(elb_tags(&spec.stack)))
                .send()
                .await
                .map_err(|e| api_err("create the load balancer", &e))?;
            let lb = out.load_balancers().first();
            let found = (
                lb.and_then(|l| l.load_balancer_arn())
                    .unwrap_or_default()
                    .to_string(),
                lb.and_then(|l| l.dns_name())
                    .unwrap_or_default()
                    .to_string(),
            );
            created.push(format!("load balancer {}", spec.name()));
            found
        }
    };

    // Listeners: 80 forwards (or redirects to 443, which forwards).
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .map_err(|e| api_err("list the load balancer's listeners", &e))?;
    let mut listener_arns: Vec<String> = listeners
        .listeners()
        .iter()
        .filter_map(|l| l.listener_arn().map(str::to_string))
        .collect();
    let has = |port: i32| listeners.listeners().iter().any(|l| l.port() == Some(port));
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(&tg)
        .build();
    let mut wanted = Vec::new();
    match &spec.certificate_arn {
        None => wanted.push((80, ProtocolEnum::Http, forward.clone(), None)),
        Some(cert) => {
            let redirect = Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol("HTTPS")
                        .port("443")
                        .status_code(RedirectActionStatusCodeEnum::Http301)
                        .build(),
                )
                .build();
            wanted.push((80, ProtocolEnum::Http, redirect, None));
            wanted.push((
                443,
                ProtocolEnum::Https,
                forward.clone(),
                Some(cert.clone()),
            ));
        }
    }
    for (port, protocol, action, cert) in wanted {
        if has(port) {
            continue;
        }
        progress(&format!("creating the listener on port {port}"));
        let mut req = elb
            .create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(protocol)
            .port(port)
            .default_actions(action);
        if let Some(cert) = cert {
            req = req
                .certificates(Certificate::builder().certificate_arn(cert).build())
                .ssl_policy(SSL_POLICY);
        }
        let arn = req
            .send()
            .await
            .map_err(|e| api_err("create a listener", &e))?
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .unwrap_or_default()
            .to_string();
        created.push(format!("listener {port}"));
        listener_arns.push(arn);
    }
    Ok(Alb {
        load_balancer_arn: lb_arn,
        dns_name: dns,
        target_group_arn: tg,
        security_group_id: sg,
        subnets,
        listener_arns,
        created,
    })
}

async fn find_target_group(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
) -> Result<Option<String>, Ec2Error> {
    match elb.describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .map(str::to_string)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_target_group_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(api_err("look for the target group", &e)),
    }
}

async fn find_load_balancer(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
) -> Result<Option<(String, String)>, Ec2Error> {
    match elb.describe_load_balancers().names(name).send().await {
        Ok(out) => Ok(out.load_balancers().first().map(|l| {
            (
                l.load_balancer_arn().unwrap_or_default().to_string(),
                l.dns_name().unwrap_or_default().to_string(),
            )
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_load_balancer_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(api_err("look for the load balancer", &e)),
    }
}

/// Removes the stack's ALB in dependency order: listeners, the load balancer, the target group,
/// the hosts' rule naming the ALB's security group, that group. Returns what was removed.
pub async fn teardown(
    ec2: &aws_sdk_ec2::Client,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    spec: &AlbSpec,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<String>, Ec2Error> {
    let mut removed = Vec::new();
    if let Some((lb, _)) = find_load_balancer(elb, &spec.name()).await? {
        let listeners = elb
            .describe_listeners()
            .load_balancer_arn(&lb)
            .send()
            .await
            .map_err(|e| api_err("list the load balancer's listeners", &e))?;
        for l in listeners.listeners() {
            if let Some(arn) = l.listener_arn() {
                elb.delete_listener()
                    .listener_arn(arn)
                    .send()
                    .await
                    .map_err(|e| api_err("delete a listener", &e))?;
                removed.push(format!("listener {}", l.port().unwrap_or_default()));
            }
        }
        progress("deleting the load balancer");
        elb.delete_load_balancer()
            .load_balancer_arn(&lb)
            .send()
            .await
            .map_err(|e| api_err("delete the load balancer", &e))?;
        // The target group and the security group stay in use until it is gone.
        let deadline = Instant::now() + Duration::from_secs(300);
        while find_load_balancer(elb, &spec.name()).await?.is_some() {
            if Instant::now() > deadline {
                return Err(Ec2Error::Timeout {
                    what: "the load balancer deleted".into(),
                    secs: 300,
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        removed.push(format!("load balancer {}", spec.name()));
    }
    if let Some(tg) = find_target_group(elb, &spec.name()).await? {
        elb.delete_target_group()
            .target_group_arn(&tg)
            .send()
            .await
            .map_err(|e| api_err("delete the target group", &e))?;
        removed.push(format!("target group {}", spec.name()));
    }
    let groups = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values(spec.security_group_name())
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:{STACK_TAG}"))
                .values(&spec.stack)
                .build(),
        )
        .send()
        .await
        .map_err(|e| api_err("look for the load balancer's security group", &e))?;
    for g in groups.security_groups() {
        let Some(id) = g.group_id() else { continue };
        // The hosts' rule naming this group goes first (or the group cannot be deleted).
        let hosts = ec2
            .describe_security_groups()
            .group_ids(&spec.host_security_group)
            .send()
            .await;
        if let Ok(hosts) = hosts {
            let refers = hosts
                .security_groups()
                .iter()
                .flat_map(|h| h.ip_permissions())
                .any(|p| {
                    p.user_id_group_pairs()
                        .iter()
                        .any(|u| u.group_id() == Some(id))
                });
            if refers {
                ec2.revoke_security_group_ingress()
                    .group_id(&spec.host_security_group)
                    .ip_permissions(from_alb(spec.service_port, id))
                    .send()
                    .await
                    .map_err(|e| api_err("remove the hosts' rule for the load balancer", &e))?;
                removed.push(format!(
                    "rule: {} port {} from {id}",
                    spec.host_security_group, spec.service_port
                ));
            }
        }
        ec2.delete_security_group()
            .group_id(id)
            .send()
            .await
            .map_err(|e| api_err("delete the load balancer's security group", &e))?;
        removed.push(format!("security group {id}"));
    }
    Ok(removed)
}

/// The fleet's balancer on an ALB's target group: each member is an instance.
pub struct AlbTargets {
    pub client: aws_sdk_elasticloadbalancingv2::Client,
    pub target_group_arn: String,
    pub port: u16,
    /// (member name, instance id)
    pub members: Vec<(String, String)>,
    /// How often the target group is asked again while waiting.
    pub poll: Duration,
}

impl AlbTargets {
    fn instance(&self, member: &str) -> Result<&str, BalancerError> {
        self.members
            .iter()
            .find(|(n, _)| n == member)
            .map(|(_, i)| i.as_str())
            .ok_or_else(|| BalancerError::UnknownMember {
                backend: self.target_group_arn.clone(),
                member: member.into(),
                known: self
                    .members
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn target(&self, instance: &str) -> TargetDescription {
        TargetDescription::builder()
            .id(instance)
            .port(i32::from(self.port))
            .build()
    }

    fn refused(what: &str, e: impl std::fmt::Display) -> BalancerError {
        BalancerError::Refused {
            command: what.into(),
            answer: e.to_string(),
        }
    }

    /// The target group's state of `instance` (`healthy`, `draining`, `unused`...).
    async fn state(&self, instance: &str) -> Result<String, BalancerError> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(&self.target_group_arn)
            .targets(self.target(instance))
            .send()
            .await
            .map_err(|e| {
                Self::refused("DescribeTargetHealth", api_err("read target health", &e))
            })?;
        Ok(out
            .target_health_descriptions()
            .first()
            .and_then(|d| d.target_health())
            .and_then(|h| h.state())
            .map_or("unused".to_string(), |s| s.as_str().to_string()))
    }

    /// Registers (`true`) or deregisters `member`, then waits until the target group reports
    /// `until` for it.
    async fn change(
        &self,
        member: &str,
        register: bool,
        until: TargetHealthStateEnum,
        what: &'static str,
        timeout: Duration,
    ) -> Result<(), BalancerError> {
        let instance = self.instance(member)?;
        let sent = if register {
            self.client
                .register_targets()
                .target_group_arn(&self.target_group_arn)
                .targets(self.target(instance))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Self::refused("RegisterTargets", api_err("register", &e)))
        } else {
            self.client
                .deregister_targets()
                .target_group_arn(&self.target_group_arn)
                .targets(self.target(instance))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Self::refused("DeregisterTargets", api_err("deregister", &e)))
        };
        sent?;
        let until = until.as_str();
        poll_until(member, what, timeout, self.poll, || async move {
            let s = self.state(instance).await?;
            Ok((s == until, s))
        })
        .await
    }
}

#[async_trait::async_trait]
impl Balancer for AlbTargets {
    fn describe(&self) -> String {
        format!("target group {}", self.target_group_arn)
    }

    async fn members(&self) -> Result<Vec<MemberState>, BalancerError> {
        let mut out = Vec::new();
        for (name, instance) in &self.members {
            let s = self.state(instance).await?;
            out.push(MemberState {
                name: name.clone(),
                status: if s == TargetHealthStateEnum::Healthy.as_str() {
                    "UP".into()
                } else {
                    s
                },
                sessions: 0,
                queued: 0,
                total_sessions: 0,
            });
        }
        Ok(out)
    }

    async fn drain(&self, member: &str, timeout: Duration) -> Result<(), BalancerError> {
        // Draining ends once the deregistration delay has passed or the last request is answered.
        self.change(
            member,
            false,
            TargetHealthStateEnum::Unused,
            "still draining",
            timeout,
        )
        .await
    }

    async fn enable(&self, member: &str, timeout: Duration) -> Result<(), BalancerError> {
        self.change(
            member,
            true,
            TargetHealthStateEnum::Healthy,
            "not healthy",
            timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(stack: &str) -> AlbSpec {
        AlbSpec {
            stack: stack.into(),
            service_port: 8080,
            host_security_group: "sg-1".into(),
            ingress_cidr: "0.0.0.0/0".into(),
            certificate_arn: None,
            vpc_id: None,
        }
    }

    #[test]
    fn names_fit_aws_limits_and_bad_input_is_named() {
        assert_eq!(spec("prod").name(), "mlops-prod");
        spec("prod-eu-2").validate().unwrap();
        for bad in ["", "-x", "x-", "a_b", &"x".repeat(27)] {
            assert!(spec(bad).validate().is_err(), "{bad}");
        }
        let mut s = spec("prod");
        s.certificate_arn = Some("arn:aws:iam::1:server-certificate/x".into());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ACM certificate ARN"));
        s.certificate_arn = Some("arn:aws:acm:eu-west-1:123456789012:certificate/abc".into());
        s.validate().unwrap();
        s.ingress_cidr = "everyone".into();
        assert!(s.validate().is_err());
    }
}
