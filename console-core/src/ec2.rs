//! EC2 provisioning for one deploy host (`aws-sdk-ec2`): the newest Ubuntu LTS AMI, a key pair
//! (created, its PEM handed straight to the keychain, or imported from a public key), a security
//! group with SSH from the caller's /32 only, a t3/t2 instance with an encrypted gp3 root volume and
//! user-data that installs Docker and docker-compose, tags on everything. Idempotent: every
//! resource carries the tag `mlops-console:stack=<name>` and a second run finds it instead of
//! creating another. Teardown deletes exactly what carries that tag, in dependency order.

use std::time::Duration;

use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType, IpPermission,
    IpRange, KeyType, ResourceType, Tag, TagSpecification, VolumeType,
};
use aws_sdk_ec2::waiters::instance_running::WaitUntilInstanceRunningError as InstanceRunningError;
use aws_sdk_ec2::waiters::instance_status_ok::WaitUntilInstanceStatusOkError as InstanceStatusOkError;
use aws_sdk_ec2::waiters::instance_terminated::WaitUntilInstanceTerminatedError as InstanceTerminatedError;
use aws_sdk_ec2::Client;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::secret::Secret;
use crate::vault::{SecretName, Vault, VaultError};

/// Where a stack's key pair PEM is filed in the vault until (and after) its address is known.
pub fn stack_key(spec: &HostSpec) -> SecretName {
    SecretName::SshKey(format!("ec2-stack/{}", spec.name))
}

pub const STACK_TAG: &str = "mlops-console:stack";
/// How long RunInstances is retried while EC2 does not know a new instance profile yet.
const PROFILE_PROPAGATION: Duration = Duration::from_secs(60);

/// EC2's answer while IAM has not propagated a new instance profile to it.
fn profile_not_ready<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("InvalidParameterValue")
        && e.message()
            .is_some_and(|m| m.contains("iamInstanceProfile"))
}

/// Canonical's AWS account, the owner of the official Ubuntu AMIs.
pub const CANONICAL: &str = "099720109477";

#[derive(Clone, Debug)]
pub enum KeySource {
    /// EC2 creates the key pair; its private key goes to `store_key` and nowhere else.
    Create,
    /// Import this OpenSSH public key (`ssh-ed25519 AAAA…` or `ssh-rsa AAAA…`).
    Import(String),
}

#[derive(Clone, Debug)]
pub struct HostSpec {
    /// Stack name: names and tags every resource, e.g. `inference-prod`.
    pub name: String,
    pub instance_type: String,
    pub volume_gib: i32,
    /// An AMI id to use instead of the newest Ubuntu LTS.
    pub ami: Option<String>,
    /// Owner account of the Ubuntu AMIs searched (Canonical's by default).
    pub ami_owner: String,
    /// Who may SSH in: the caller's address as a /32 (or a typed CIDR).
    pub ssh_cidr: String,
    /// Confirms that `ssh_cidr` may be 0.0.0.0/0 (reported as a warning).
    pub allow_ssh_from_anywhere: bool,
    /// Also open this TCP port (the service) to `ssh_cidr`; None keeps it closed (the console
    /// reads the service through an SSH tunnel).
    pub open_service_port: Option<u16>,
    pub key: KeySource,
    /// Login user of the AMI and owner of the compose directory.
    pub user: String,
    pub compose_dir: String,
    /// The instance profile the instance runs with ([`crate::publisher_role`]: the service
    /// publishes to CloudWatch through it); None starts the instance without one.
    pub instance_profile: Option<String>,
}

impl HostSpec {
    pub fn new(name: &str, ssh_cidr: &str) -> HostSpec {
        HostSpec {
            name: name.into(),
            instance_type: "t3.micro".into(),
            volume_gib: 20,
            ami: None,
            ami_owner: CANONICAL.into(),
            ssh_cidr: ssh_cidr.into(),
            allow_ssh_from_anywhere: false,
            open_service_port: None,
            key: KeySource::Create,
            user: "ubuntu".into(),
            compose_dir: "/home/ubuntu/inference".into(),
            instance_profile: None,
        }
    }

    /// Checks the spec before anything is created.
    pub fn validate(&self) -> Result<Vec<String>, Ec2Error> {
        let bad = |m: String| Err(Ec2Error::BadInput(m));
        if self.name.is_empty()
            || self.name.len() > 40
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad(format!(
                "stack name `{}`: use 1 to 40 letters, digits or `-`",
                self.name
            ));
        }
        let family = self.instance_type.split('.').next().unwrap_or("");
        if !["t3", "t3a", "t2"].contains(&family)
            || InstanceType::from(self.instance_type.as_str()).as_str() != self.instance_type
        {
            return bad(format!(
                "instance type `{}`: choose a t3 (t3.micro, t3.small, …) or t2 type",
                self.instance_type
            ));
        }
        if !(8..=16_384).contains(&self.volume_gib) {
            return bad(format!(
                "root volume of {} GiB: choose 8 to 16384",
                self.volume_gib
            ));
        }
        let bits = match parse_cidr(&self.ssh_cidr) {
            Ok(bits) => bits,
            Err(e) => return bad(e),
        };
        let mut warnings = Vec::new();
        if bits == 0 {
            if !self.allow_ssh_from_anywhere {
                return bad("opening SSH (port 22) to 0.0.0.0/0 lets the whole internet try to log in; confirm it explicitly, or give your address /32".into());
            }
            warnings.push("SSH (port 22) is open to the whole internet (0.0.0.0/0)".into());
        }
        if let KeySource::Import(k) = &self.key {
            if !(k.starts_with("ssh-ed25519 ") || k.starts_with("ssh-rsa ")) {
                return bad("the public key to import must be an OpenSSH public key (ssh-ed25519 … or ssh-rsa …)".into());
            }
        }
        Ok(warnings)
    }

    pub fn key_name(&self) -> String {
        format!("mlops-{}", self.name)
    }

    pub fn group_name(&self) -> String {
        format!("mlops-{}-ssh", self.name)
    }

    /// cloud-init user-data: Docker and docker-compose from Ubuntu's archive, the user in the
    /// docker group, the compose directory owned by the user.
    pub fn user_data(&self) -> String {
        format!(
            "#!/bin/bash\nset -euxo pipefail\nexport DEBIAN_FRONTEND=noninteractive\napt-get update -q\n\
             apt-get install -y -q docker.io docker-compose\nsystemctl enable --now docker\n\
             usermod -aG docker {user}\ninstall -d -o {user} -g {user} -m 0750 {dir}\n",
            user = self.user,
            dir = self.compose_dir
        )
    }
}

/// Checks an IPv4 CIDR block (`203.0.113.7/32`); returns its prefix length.
pub fn parse_cidr(cidr: &str) -> Result<u8, String> {
    let Some((ip, bits)) = cidr.split_once('/') else {
        return Err(format!(
            "`{cidr}` is not a CIDR block such as 203.0.113.7/32"
        ));
    };
    match (ip.parse::<std::net::Ipv4Addr>(), bits.parse::<u8>()) {
        (Ok(_), Ok(b)) if b <= 32 => Ok(b),
        _ => Err(format!(
            "`{cidr}` is not an IPv4 CIDR block such as 203.0.113.7/32"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("{0}")]
    BadInput(String),
    #[error("AWS refused the credentials ({code}: {message}). Check the access key in the console, or refresh the session of your AWS profile (e.g. `aws sso login`)")]
    Credentials { code: String, message: String },
    #[error("the AWS credentials have expired ({code}: {message}) during `{what}`. Refresh them: store a new access key pair in the console (Credentials step), or renew your AWS profile's session (`aws sso login --profile <name>`, or new temporary keys); then run it again, it resumes where it stopped. If they are fresh, this computer's clock may be more than 5 minutes off: set it right")]
    Expired {
        what: String,
        code: String,
        message: String,
    },
    #[error("AWS is throttling requests ({code}) during `{what}`; wait a minute and run it again, it resumes where it stopped")]
    Throttled { what: String, code: String },
    #[error("`{what}` failed: {code}: {message}")]
    Aws {
        what: String,
        code: String,
        message: String,
    },
    #[error("no Ubuntu LTS image found for owner {owner} in this region; give an AMI id instead")]
    NoAmi { owner: String },
    #[error("`{what}` did not finish within {secs} s")]
    Timeout { what: String, secs: u64 },
}

fn aws_err<E: ProvideErrorMetadata + std::fmt::Debug>(
    what: &str,
    e: aws_sdk_ec2::error::SdkError<E>,
) -> Ec2Error {
    api_err(what, &e)
}

/// Maps an AWS error (a call's, or a waiter's while it polls) to one that says what to do. The
/// SDK has already retried what is worth retrying (throttling, 5xx) by the time this runs.
pub(crate) fn api_err(what: &str, e: &(impl ProvideErrorMetadata + std::fmt::Debug)) -> Ec2Error {
    let code = e.code().unwrap_or("").to_string();
    let message = e.message().unwrap_or("").to_string();
    match code.as_str() {
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => Ec2Error::Expired {
            what: what.into(),
            code,
            message,
        },
        "AuthFailure"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => Ec2Error::Credentials { code, message },
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => Ec2Error::Throttled {
            what: what.into(),
            code,
        },
        "" => Ec2Error::Aws {
            what: what.into(),
            code: "no response".into(),
            message: format!("{e:?}").chars().take(300).collect(),
        },
        _ => Ec2Error::Aws {
            what: what.into(),
            code,
            message,
        },
    }
}

/// What a provisioning run produced (or found).
#[derive(Clone, Debug)]
pub struct Host {
    pub instance_id: String,
    pub public_ip: Option<String>,
    pub public_dns: Option<String>,
    pub ami: String,
    pub key_name: String,
    pub security_group_id: String,
    /// Resources created by this run (empty when everything already existed).
    pub created: Vec<String>,
    pub warnings: Vec<String>,
}

pub struct Provisioner {
    client: Client,
}

impl Provisioner {
    pub fn new(client: Client) -> Provisioner {
        Provisioner { client }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// A provisioner for a loaded AWS configuration (see [`crate::aws::AwsTarget::load`]).
    pub fn for_config(config: &aws_config::SdkConfig) -> Provisioner {
        Provisioner::new(Client::new(config))
    }

    pub(crate) fn tags(&self, spec: &HostSpec, kind: ResourceType) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(kind)
            .tags(Tag::builder().key(STACK_TAG).value(&spec.name).build())
            .tags(
                Tag::builder()
                    .key("Name")
                    .value(format!("mlops-{}", spec.name))
                    .build(),
            )
            .build()
    }

    pub(crate) fn stack_filter(spec: &HostSpec) -> Filter {
        Filter::builder()
            .name(format!("tag:{STACK_TAG}"))
            .values(&spec.name)
            .build()
    }

    /// The newest Ubuntu LTS (even year, `.04`) server image for amd64 from `owner`.
    pub async fn latest_ubuntu_lts(&self, owner: &str) -> Result<String, Ec2Error> {
        let out = self
            .client
            .describe_images()
            .owners(owner)
            .filters(
                Filter::builder()
                    .name("name")
                    .values("ubuntu/images/*ubuntu-*-amd64-server-*")
                    .build(),
            )
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| aws_err("find the Ubuntu image", e))?;
        let mut best: Option<(String, String, String)> = None; // (version, date, id)
        for img in out.images() {
            let (Some(name), Some(id)) = (img.name(), img.image_id()) else {
                continue;
            };
            let Some(version) = lts_version(name) else {
                continue;
            };
            let date = name.rsplit('-').next().unwrap_or("").to_string();
            let key = (version, date, id.to_string());
            if best
                .as_ref()
                .is_none_or(|b| (&key.0, &key.1) > (&b.0, &b.1))
            {
                best = Some(key);
            }
        }
        best.map(|b| b.2).ok_or_else(|| Ec2Error::NoAmi {
            owner: owner.into(),
        })
    }

    async fn ensure_key_pair(
        &self,
        spec: &HostSpec,
        store_key: &(dyn Fn(&Secret) -> Result<(), String> + Sync),
        created: &mut Vec<String>,
    ) -> Result<(), Ec2Error> {
        let name = spec.key_name();
        let found = self
            .client
            .describe_key_pairs()
            .filters(Filter::builder().name("key-name").values(&name).build())
            .send()
            .await
            .map_err(|e| aws_err("look for the key pair", e))?;
        if !found.key_pairs().is_empty() {
            return Ok(());
        }
        match &spec.key {
            KeySource::Create => {
                let out = self
                    .client
                    .create_key_pair()
                    .key_name(&name)
                    .key_type(KeyType::Ed25519)
                    .tag_specifications(self.tags(spec, ResourceType::KeyPair))
                    .send()
                    .await
                    .map_err(|e| aws_err("create the key pair", e))?;
                let pem = Secret::new(out.key_material().unwrap_or_default());
                if let Err(e) = store_key(&pem) {
                    // Without the private key the pair is useless: remove it so a rerun creates a new one.
                    let _ = self.client.delete_key_pair().key_name(&name).send().await;
                    return Err(Ec2Error::BadInput(format!("the new key pair's private key could not be stored, so it was deleted again: {e}")));
                }
            }
            KeySource::Import(public) => {
                self.client
                    .import_key_pair()
                    .key_name(&name)
                    .public_key_material(Blob::new(public.trim().as_bytes()))
                    .tag_specifications(self.tags(spec, ResourceType::KeyPair))
                    .send()
                    .await
                    .map_err(|e| aws_err("import the public key", e))?;
            }
        }
        created.push(format!("key pair {name}"));
        Ok(())
    }

    async fn ensure_security_group(
        &self,
        spec: &HostSpec,
        created: &mut Vec<String>,
    ) -> Result<String, Ec2Error> {
        let found = self
            .client
            .describe_security_groups()
            .filters(Self::stack_filter(spec))
            .filters(
                Filter::builder()
                    .name("group-name")
                    .values(spec.group_name())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("look for the security group", e))?;
        if let Some(id) = found.security_groups().first().and_then(|g| g.group_id()) {
            return Ok(id.to_string());
        }
        let out = self
            .client
            .create_security_group()
            .group_name(spec.group_name())
            .description(format!(
                "mlops-console {}: SSH from the console's address",
                spec.name
            ))
            .tag_specifications(self.tags(spec, ResourceType::SecurityGroup))
            .send()
            .await
            .map_err(|e| aws_err("create the security group", e))?;
        let id = out.group_id().unwrap_or_default().to_string();
        let rule = |port: i32, what: &str| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port)
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip(&spec.ssh_cidr)
                        .description(what)
                        .build(),
                )
                .build()
        };
        let mut req = self
            .client
            .authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(rule(22, "SSH from the console"));
        if let Some(p) = spec.open_service_port {
            req = req.ip_permissions(rule(p as i32, "inference service"));
        }
        req.send()
            .await
            .map_err(|e| aws_err("open SSH in the security group", e))?;
        created.push(format!("security group {id}"));
        Ok(id)
    }

    /// RunInstances for the stack. IMDSv2 only, with a hop limit of 2 so that the service's
    /// container (one hop behind the host) reaches the instance profile's credentials. A new
    /// instance profile takes a few seconds to be usable by EC2 (IAM is eventually consistent), so
    /// EC2 calling it invalid is retried for up to [`PROFILE_PROPAGATION`].
    pub(crate) async fn run_instance(
        &self,
        spec: &HostSpec,
        ami: &str,
        sg: &str,
        placement: Option<(&str, usize)>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<aws_sdk_ec2::operation::run_instances::RunInstancesOutput, Ec2Error> {
        let started = std::time::Instant::now();
        loop {
            let mut req = self
                .client
                .run_instances()
                .image_id(ami)
                .instance_type(InstanceType::from(spec.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .key_name(spec.key_name())
                .security_group_ids(sg)
                .user_data(B64.encode(spec.user_data()))
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_endpoint(InstanceMetadataEndpointState::Enabled)
                        .http_tokens(HttpTokensState::Required)
                        .http_put_response_hop_limit(2)
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name("/dev/sda1")
                        .ebs(
                            EbsBlockDevice::builder()
                                .volume_size(spec.volume_gib)
                                .volume_type(VolumeType::Gp3)
                                .encrypted(true)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(self.tags(spec, ResourceType::Volume));
            req = match placement {
                // A fleet's replica: its subnet (and so its availability zone) and its number.
                Some((subnet, replica)) => {
                    let mut tags = self.tags(spec, ResourceType::Instance);
                    tags.tags.get_or_insert_with(Vec::new).push(
                        Tag::builder()
                            .key(crate::fleet_hosts::REPLICA_TAG)
                            .value(replica.to_string())
                            .build(),
                    );
                    req.subnet_id(subnet).tag_specifications(tags)
                }
                None => req.tag_specifications(self.tags(spec, ResourceType::Instance)),
            };
            if let Some(profile) = &spec.instance_profile {
                req = req.iam_instance_profile(
                    IamInstanceProfileSpecification::builder()
                        .name(profile)
                        .build(),
                );
            }
            match req.send().await {
                Ok(out) => return Ok(out),
                Err(e)
                    if spec.instance_profile.is_some()
                        && profile_not_ready(&e)
                        && started.elapsed() < PROFILE_PROPAGATION =>
                {
                    progress("waiting for IAM to hand out the new instance profile");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Err(e) => return Err(aws_err("start the instance", e)),
            }
        }
    }

    /// The stack's instance that is not terminated (or shutting down), if any.
    pub async fn find_instance(
        &self,
        spec: &HostSpec,
    ) -> Result<Option<aws_sdk_ec2::types::Instance>, Ec2Error> {
        Ok(self.stack_instances(spec).await?.into_iter().next())
    }

    /// Every instance of the stack that is not terminated (or shutting down).
    pub async fn stack_instances(
        &self,
        spec: &HostSpec,
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>, Ec2Error> {
        let out = self
            .client
            .describe_instances()
            .filters(Self::stack_filter(spec))
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("look for the instance", e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .cloned()
            .collect())
    }

    /// [`Provisioner::provision`] with the key pair's PEM filed in `vault`: under the stack's name
    /// the moment EC2 returns it (the address is not known yet, and a run that fails later must not
    /// lose it), then also under the host's public address, which is the name deploys look it up
    /// by. Returns the host and that address.
    pub async fn provision_into_vault(
        &self,
        spec: &HostSpec,
        vault: &Vault,
        progress: &mut (dyn FnMut(&str) + Send),
        wait: Duration,
    ) -> Result<(Host, String), Ec2Error> {
        let stack_key = stack_key(spec);
        let store = |pem: &Secret| vault.put(&stack_key, pem).map_err(|e| e.to_string());
        let host = self.provision(spec, &store, progress, wait).await?;
        let address = host
            .public_dns
            .clone()
            .filter(|d| !d.is_empty())
            .or(host.public_ip.clone())
            .ok_or_else(|| {
                Ec2Error::BadInput(format!(
                    "instance {} has no public address; check that its subnet gives public IPs",
                    host.instance_id
                ))
            })?;
        let vault_err = |e: VaultError| Ec2Error::BadInput(format!("the keychain: {e}"));
        if let Some(pem) = vault.get(&stack_key).map_err(vault_err)? {
            vault
                .put(&SecretName::SshKey(address.clone()), &pem)
                .map_err(vault_err)?;
        }
        Ok((host, address))
    }

    /// What every host of the stack shares, checked and made if missing: the spec's warnings (told
    /// to `progress`), what was created, and the security group's id.
    pub(crate) async fn prepare(
        &self,
        spec: &HostSpec,
        store_key: &(dyn Fn(&Secret) -> Result<(), String> + Sync),
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(Vec<String>, Vec<String>, String), Ec2Error> {
        let warnings = spec.validate()?;
        for w in &warnings {
            progress(&format!("warning: {w}"));
        }
        let mut created = Vec::new();
        progress("key pair");
        self.ensure_key_pair(spec, store_key, &mut created).await?;
        progress("security group");
        let sg = self.ensure_security_group(spec, &mut created).await?;
        Ok((warnings, created, sg))
    }

    /// Creates what is missing, waits for the instance to run and pass its status checks.
    pub async fn provision(
        &self,
        spec: &HostSpec,
        store_key: &(dyn Fn(&Secret) -> Result<(), String> + Sync),
        progress: &mut (dyn FnMut(&str) + Send),
        wait: Duration,
    ) -> Result<Host, Ec2Error> {
        let (warnings, mut created, sg) = self.prepare(spec, store_key, progress).await?;
        let instance = match self.find_instance(spec).await? {
            Some(i) => {
                progress(&format!(
                    "instance {} already exists",
                    i.instance_id().unwrap_or("")
                ));
                i
            }
            None => {
                let ami = match &spec.ami {
                    Some(a) => a.clone(),
                    None => {
                        progress("finding the newest Ubuntu LTS image");
                        self.latest_ubuntu_lts(&spec.ami_owner).await?
                    }
                };
                progress(&format!("starting a {} from {ami}", spec.instance_type));
                let out = self.run_instance(spec, &ami, &sg, None, progress).await?;
                let i = out
                    .instances()
                    .first()
                    .cloned()
                    .ok_or_else(|| Ec2Error::Aws {
                        what: "start the instance".into(),
                        code: "empty".into(),
                        message: "RunInstances returned no instance".into(),
                    })?;
                created.push(format!("instance {}", i.instance_id().unwrap_or("")));
                i
            }
        };
        let id = instance.instance_id().unwrap_or_default().to_string();
        progress("waiting for the instance to run");
        self.client
            .wait_until_instance_running()
            .instance_ids(&id)
            .wait(wait)
            .await
            .map_err(|e| match e {
                InstanceRunningError::ExceededMaxWait(_) => Ec2Error::Timeout {
                    what: format!("instance {id} running"),
                    secs: wait.as_secs(),
                },
                InstanceRunningError::FailureState(_) => Ec2Error::Aws {
                    what: "wait for the instance to run".into(),
                    code: "instance state".into(),
                    message: "it is shutting down, stopping or terminated instead of running; its state reason in the EC2 console says why".into(),
                },
                e => api_err("wait for the instance to run", &e),
            })?;
        progress("waiting for the status checks");
        self.client
            .wait_until_instance_status_ok()
            .instance_ids(&id)
            .wait(wait)
            .await
            .map_err(|e| match e {
                InstanceStatusOkError::ExceededMaxWait(_) => Ec2Error::Timeout {
                    what: format!("instance {id} status checks"),
                    secs: wait.as_secs(),
                },
                e => api_err("wait for the status checks", &e),
            })?;
        let now = self.find_instance(spec).await?.unwrap_or(instance);
        progress("ready");
        Ok(Host {
            instance_id: id,
            public_ip: now.public_ip_address().map(str::to_string),
            public_dns: now
                .public_dns_name()
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            ami: now.image_id().unwrap_or_default().to_string(),
            key_name: spec.key_name(),
            security_group_id: sg,
            created,
            warnings,
        })
    }

    /// Deletes the stack's instance, security group and key pair (in that order); returns what was removed.
    pub async fn teardown(
        &self,
        spec: &HostSpec,
        progress: &mut (dyn FnMut(&str) + Send),
        wait: Duration,
    ) -> Result<Vec<String>, Ec2Error> {
        let mut removed = Vec::new();
        // Every instance of the stack: one host, or a fleet's replicas.
        let ids: Vec<String> = self
            .stack_instances(spec)
            .await?
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if !ids.is_empty() {
            let id = ids.join(", ");
            progress(&format!("terminating {id}"));
            self.client
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| aws_err("terminate the instance", e))?;
            self.client
                .wait_until_instance_terminated()
                .set_instance_ids(Some(ids.clone()))
                .wait(wait)
                .await
                .map_err(|e| match e {
                    InstanceTerminatedError::ExceededMaxWait(_) => Ec2Error::Timeout {
                        what: format!("instance {id} terminated"),
                        secs: wait.as_secs(),
                    },
                    InstanceTerminatedError::FailureState(_) => Ec2Error::Aws {
                        what: "wait for the instance to terminate".into(),
                        code: "instance state".into(),
                        message:
                            "it is pending or stopping; run the teardown again once it has settled"
                                .into(),
                    },
                    e => api_err("wait for the instance to terminate", &e),
                })?;
            removed.extend(ids.iter().map(|id| format!("instance {id}")));
        }
        let groups = self
            .client
            .describe_security_groups()
            .filters(Self::stack_filter(spec))
            .send()
            .await
            .map_err(|e| aws_err("look for the security group", e))?;
        for g in groups.security_groups() {
            let id = g.group_id().unwrap_or_default();
            self.client
                .delete_security_group()
                .group_id(id)
                .send()
                .await
                .map_err(|e| aws_err("delete the security group", e))?;
            removed.push(format!("security group {id}"));
        }
        let keys = self
            .client
            .describe_key_pairs()
            .filters(
                Filter::builder()
                    .name("key-name")
                    .values(spec.key_name())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("look for the key pair", e))?;
        for k in keys.key_pairs() {
            let name = k.key_name().unwrap_or_default();
            self.client
                .delete_key_pair()
                .key_name(name)
                .send()
                .await
                .map_err(|e| aws_err("delete the key pair", e))?;
            removed.push(format!("key pair {name}"));
        }
        Ok(removed)
    }

    /// The SSH host key fingerprints cloud-init printed to the instance's console, once it has.
    pub async fn host_key_fingerprints(
        &self,
        instance_id: &str,
    ) -> Result<Vec<(String, String)>, Ec2Error> {
        let out = self
            .client
            .get_console_output()
            .instance_id(instance_id)
            .latest(true)
            .send()
            .await
            .map_err(|e| aws_err("read the console output", e))?;
        let raw = out.output().unwrap_or_default();
        let text = B64
            .decode(raw.trim())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| raw.to_string());
        Ok(parse_host_key_fingerprints(&text))
    }
}

/// `Some("24.04")` for an LTS server image name such as
/// `ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115`.
fn lts_version(name: &str) -> Option<String> {
    let v = name
        .split('-')
        .find(|p| p.len() == 5 && p.as_bytes()[2] == b'.' && p.ends_with(".04"))?;
    let year: u32 = v[..2].parse().ok()?;
    (year % 2 == 0).then(|| v.to_string())
}

/// Parses cloud-init's block
/// `-----BEGIN SSH HOST KEY FINGERPRINTS----- … 256 SHA256:… root@host (ED25519) … -----END …`
/// (lines may carry an `ec2: ` prefix) into (key type, `SHA256:…`) pairs, ED25519 first.
pub fn parse_host_key_fingerprints(console: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in console.lines() {
        let l = line.trim().trim_start_matches("ec2:").trim();
        if l.contains("BEGIN SSH HOST KEY FINGERPRINTS") {
            inside = true;
            out.clear();
            continue;
        }
        if l.contains("END SSH HOST KEY FINGERPRINTS") {
            inside = false;
            continue;
        }
        if !inside {
            continue;
        }
        let fp = l.split_whitespace().find(|w| w.starts_with("SHA256:"));
        let kind = l.rsplit_once('(').and_then(|(_, k)| k.strip_suffix(')'));
        if let (Some(fp), Some(kind)) = (fp, kind) {
            out.push((kind.to_string(), fp.to_string()));
        }
    }
    out.sort_by_key(|(k, _)| {
        if k == "ED25519" {
            0
        } else if k == "ECDSA" {
            1
        } else {
            2
        }
    });
    out
}

/// Where the caller's public address is asked for (AWS's own echo service).
pub const CHECKIP_URL: &str = "https://checkip.amazonaws.com/";

/// The caller's public IPv4 address as a /32 block, from an echo service such as [`CHECKIP_URL`]
/// (the user can always type the address instead).
pub async fn detect_caller_cidr(url: &str) -> Result<String, Ec2Error> {
    let fail = |m: String| {
        Ec2Error::BadInput(format!("could not detect your public address from {url}: {m}; type it instead (e.g. 203.0.113.7/32)"))
    };
    let client = octocrab::Octocrab::builder()
        .build()
        .map_err(|e| fail(format!("{e:?}")))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client._get(url))
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("it answered {}", resp.status())));
    }
    let body = client
        .body_to_string(resp)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let ip: std::net::Ipv4Addr = body.trim().parse().map_err(|_| {
        fail(format!(
            "the answer {:?} is not an IPv4 address",
            body.trim().chars().take(40).collect::<String>()
        ))
    })?;
    if ip.is_private() || ip.is_loopback() || ip.is_unspecified() {
        return Err(fail(format!("{ip} is not a public address")));
    }
    Ok(format!("{ip}/32"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape cloud-init (22.x/23.x on Ubuntu) writes to the serial console.
    const CONSOLE: &str = "[   12.3] cloud-init[712]: Cloud-init v. 24.1.3 running 'modules:final'\n\
ci-info: no authorized SSH keys fingerprints found for user ubuntu.\n\
<14>Nov 29 12:00:01 ec2: \n\
<14>Nov 29 12:00:01 ec2: #############################################################\n\
<14>Nov 29 12:00:01 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
<14>Nov 29 12:00:01 ec2: 256 SHA256:x4gOGAbL0v7I1oQvD0+3k4nV4N8v0mKzG8S8kTRq6cE root@ip-172-31-9-20 (ECDSA)\n\
<14>Nov 29 12:00:01 ec2: 256 SHA256:Qm9vYmFyYmF6cXV4cXV1eHF1dXhmb29iYXJiYXp4eHg root@ip-172-31-9-20 (ED25519)\n\
<14>Nov 29 12:00:01 ec2: 3072 SHA256:R3u0b3NzaC1yc2EAAAADAQABAAABgQC7dGVzdHRlc3Q root@ip-172-31-9-20 (RSA)\n\
<14>Nov 29 12:00:01 ec2: -----END SSH HOST KEY FINGERPRINTS-----\n\
<14>Nov 29 12:00:01 ec2: #############################################################\n\
-----BEGIN SSH HOST KEY KEYS-----\necdsa-sha2-nistp256 AAAAE2VjZHNh root@ip-172-31-9-20\n-----END SSH HOST KEY KEYS-----\n";

    #[test]
    fn fingerprints_from_cloud_init_console_output() {
        let syslog_prefixed: String = CONSOLE
            .lines()
            .map(|l| {
                l.split_once(" ec2: ")
                    .map_or(l.to_string(), |(_, r)| format!("ec2: {r}"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        for text in [CONSOLE.to_string(), syslog_prefixed] {
            let fps = parse_host_key_fingerprints(&text);
            assert_eq!(fps.len(), 3, "{fps:?}");
            assert_eq!(
                fps[0],
                (
                    "ED25519".to_string(),
                    "SHA256:Qm9vYmFyYmF6cXV4cXV1eHF1dXhmb29iYXJiYXp4eHg".to_string()
                )
            );
        }
        assert!(parse_host_key_fingerprints("booting…\nno block yet\n").is_empty());
    }

    #[test]
    fn lts_names() {
        assert_eq!(
            lts_version("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115")
                .as_deref(),
            Some("24.04")
        );
        assert_eq!(
            lts_version("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301")
                .as_deref(),
            Some("22.04")
        );
        assert_eq!(
            lts_version("ubuntu/images/hvm-ssd/ubuntu-mantic-23.10-amd64-server-20240301"),
            None
        );
        assert_eq!(
            lts_version("ubuntu/images/hvm-ssd/ubuntu-lunar-23.04-amd64-server-20230601"),
            None
        );
    }

    #[test]
    fn specs_are_checked() {
        let ok = HostSpec::new("inference-prod", "203.0.113.7/32");
        assert!(ok.validate().unwrap().is_empty());
        let mut s = ok.clone();
        s.instance_type = "m5.large".into();
        assert!(s.validate().unwrap_err().to_string().contains("t3"));
        let mut s = ok.clone();
        s.ssh_cidr = "0.0.0.0/0".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("confirm it explicitly"));
        s.allow_ssh_from_anywhere = true;
        assert_eq!(s.validate().unwrap().len(), 1);
        let mut s = ok.clone();
        s.ssh_cidr = "203.0.113.7".into();
        assert!(s.validate().is_err());
        let mut s = ok;
        s.key = KeySource::Import("-----BEGIN".into());
        assert!(s.validate().is_err());
    }
}
