//! A fleet's hosts on EC2: N instances of one stack spread over the region's availability zones,
//! from the same provisioning code as a single host (one key pair, one security group, the same
//! user-data and volume), each tagged with its replica number (`mlops-console:replica`). Running it
//! again with a larger N adds replicas; [`Provisioner::scale_down`] removes the highest-numbered
//! ones (drain them at the balancer first); the stack's teardown terminates them all.

use std::time::Duration;

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{Filter, Instance};

use crate::ec2::{api_err, Ec2Error, Host, HostSpec, Provisioner};
use crate::secret::Secret;

/// The tag holding a fleet instance's replica number (0, 1, ...).
pub const REPLICA_TAG: &str = "mlops-console:replica";
/// Most replicas a fleet may have.
pub const MAX_REPLICAS: usize = 20;

/// The region's default VPC.
pub(crate) async fn default_vpc(ec2: &aws_sdk_ec2::Client) -> Result<String, Ec2Error> {
    ec2.describe_vpcs()
        .filters(Filter::builder().name("isDefault").values("true").build())
        .send()
        .await
        .map_err(|e| api_err("look for the default VPC", &e))?
        .vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .map(str::to_string)
        .ok_or_else(|| {
            Ec2Error::BadInput(
                "this region has no default VPC; name the VPC the fleet runs in".into(),
            )
        })
}

/// One subnet per availability zone of `vpc`, by zone name.
pub(crate) async fn subnets_by_zone(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
) -> Result<Vec<(String, String)>, Ec2Error> {
    let out = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .map_err(|e| api_err("list the VPC's subnets", &e))?;
    let mut by_zone: Vec<(String, String)> = out
        .subnets()
        .iter()
        .filter_map(|s| {
            Some((
                s.availability_zone()?.to_string(),
                s.subnet_id()?.to_string(),
            ))
        })
        .collect();
    by_zone.sort();
    by_zone.dedup_by(|a, b| a.0 == b.0);
    Ok(by_zone)
}

/// The replica number an instance carries.
pub fn replica_of(i: &Instance) -> Option<usize> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(REPLICA_TAG))
        .and_then(|t| t.value()?.parse().ok())
}

fn host_of(i: &Instance, spec: &HostSpec, sg: &str) -> Host {
    Host {
        instance_id: i.instance_id().unwrap_or_default().to_string(),
        public_ip: i.public_ip_address().map(str::to_string),
        public_dns: i
            .public_dns_name()
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        ami: i.image_id().unwrap_or_default().to_string(),
        key_name: spec.key_name(),
        security_group_id: sg.to_string(),
        created: Vec::new(),
        warnings: Vec::new(),
    }
}

impl Provisioner {
    /// The stack's replicas by number (instances without a replica tag are not counted).
    pub async fn replicas(&self, spec: &HostSpec) -> Result<Vec<(usize, Instance)>, Ec2Error> {
        let mut r: Vec<(usize, Instance)> = self
            .stack_instances(spec)
            .await?
            .into_iter()
            .filter_map(|i| Some((replica_of(&i)?, i)))
            .collect();
        r.sort_by_key(|(n, _)| *n);
        Ok(r)
    }

    /// Creates what is missing for a fleet of `count` replicas (key pair, security group, one
    /// instance per missing replica number, replica `n` in the `n`-th availability zone round
    /// robin) and waits until every replica runs and passes its status checks. Returns the hosts
    /// in replica order; what this run created is in the first host's `created`.
    pub async fn provision_fleet(
        &self,
        spec: &HostSpec,
        count: usize,
        store_key: &(dyn Fn(&Secret) -> Result<(), String> + Sync),
        progress: &mut (dyn FnMut(&str) + Send),
        wait: Duration,
    ) -> Result<Vec<Host>, Ec2Error> {
        if count == 0 || count > MAX_REPLICAS {
            return Err(Ec2Error::BadInput(format!(
                "a fleet has 1 to {MAX_REPLICAS} hosts, not {count}"
            )));
        }
        let (warnings, mut created, sg) = self.prepare(spec, store_key, progress).await?;
        let vpc = default_vpc(self.client()).await?;
        let zones = subnets_by_zone(self.client(), &vpc).await?;
        if zones.is_empty() {
            return Err(Ec2Error::BadInput(format!("VPC {vpc} has no subnet")));
        }
        let have: Vec<usize> = self.replicas(spec).await?.iter().map(|(n, _)| *n).collect();
        let missing: Vec<usize> = (0..count).filter(|n| !have.contains(n)).collect();
        if !missing.is_empty() {
            let ami = match &spec.ami {
                Some(a) => a.clone(),
                None => {
                    progress("finding the newest Ubuntu LTS image");
                    self.latest_ubuntu_lts(&spec.ami_owner).await?
                }
            };
            for n in missing {
                let (zone, subnet) = &zones[n % zones.len()];
                progress(&format!(
                    "starting replica {n} ({}) in {zone}",
                    spec.instance_type
                ));
                let out = self
                    .run_instance(spec, &ami, &sg, Some((subnet, n)), progress)
                    .await?;
                for i in out.instances() {
                    created.push(format!(
                        "instance {} (replica {n}, {zone})",
                        i.instance_id().unwrap_or_default()
                    ));
                }
            }
        }
        let mut replicas: Vec<(usize, Instance)> = self
            .replicas(spec)
            .await?
            .into_iter()
            .filter(|(n, _)| *n < count)
            .collect();
        let ids: Vec<String> = replicas
            .iter()
            .filter_map(|(_, i)| i.instance_id().map(str::to_string))
            .collect();
        progress(&format!("waiting for {} instances to run", ids.len()));
        self.client()
            .wait_until_instance_running()
            .set_instance_ids(Some(ids.clone()))
            .wait(wait)
            .await
            .map_err(|e| api_err("wait for the instances to run", &e))?;
        progress("waiting for the status checks");
        self.client()
            .wait_until_instance_status_ok()
            .set_instance_ids(Some(ids))
            .wait(wait)
            .await
            .map_err(|e| api_err("wait for the status checks", &e))?;
        // Addresses are known once they run.
        let now = self.replicas(spec).await?;
        for (n, i) in replicas.iter_mut() {
            if let Some((_, fresh)) = now.iter().find(|(m, _)| m == n) {
                *i = fresh.clone();
            }
        }
        let mut hosts: Vec<Host> = replicas
            .iter()
            .map(|(_, i)| host_of(i, spec, &sg))
            .collect();
        if let Some(first) = hosts.first_mut() {
            first.created = created;
            first.warnings = warnings;
        }
        progress("ready");
        Ok(hosts)
    }

    /// Terminates the replicas numbered `keep` and above (take them out of the balancer first);
    /// returns the instances removed.
    pub async fn scale_down(
        &self,
        spec: &HostSpec,
        keep: usize,
        progress: &mut (dyn FnMut(&str) + Send),
        wait: Duration,
    ) -> Result<Vec<String>, Ec2Error> {
        if keep == 0 {
            return Err(Ec2Error::BadInput(
                "a fleet keeps at least one host; tear the stack down to remove them all".into(),
            ));
        }
        let ids: Vec<String> = self
            .replicas(spec)
            .await?
            .iter()
            .filter(|(n, _)| *n >= keep)
            .filter_map(|(_, i)| i.instance_id().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        progress(&format!("terminating {}", ids.join(", ")));
        self.client()
            .terminate_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
            .map_err(|e| api_err("terminate the instances", &e))?;
        self.client()
            .wait_until_instance_terminated()
            .set_instance_ids(Some(ids.clone()))
            .wait(wait)
            .await
            .map_err(|e| api_err("wait for the instances to terminate", &e))?;
        Ok(ids)
    }
}
