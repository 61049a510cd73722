//! The IAM role an EC2 host's service publishes its monitoring minutes to CloudWatch with: the
//! service asks the instance metadata service for credentials (the SDK's standard chain), so no
//! AWS key ever reaches the host. One role and one instance profile per stack, both named
//! `mlops-<stack>-publisher` and tagged with the stack; the role's only permission is
//! `cloudwatch:PutMetricData` into the service's namespace.
//!
//! [`PublisherRole::ensure`] is idempotent (a second run finds both and re-puts the policy);
//! [`PublisherRole::remove`] undoes it for the teardown, after the instance is gone.

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::Tag;
use aws_sdk_iam::Client;

use crate::ec2::{Ec2Error, STACK_TAG};

/// The namespace the service publishes to on a console-provisioned host (its
/// `INFERENCE_CLOUDWATCH_NAMESPACE`); the role may write nowhere else.
pub const NAMESPACE: &str = "MLOps/Inference";
const POLICY_NAME: &str = "publish-monitoring-metrics";

/// EC2 may hand the role to the instance.
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The role's one permission: PutMetricData, only into `namespace`.
pub fn publish_policy(namespace: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}}
        }]
    })
    .to_string()
}

/// The role's and the instance profile's name for `stack`.
pub fn name(stack: &str) -> String {
    format!("mlops-{stack}-publisher")
}

fn iam_err(what: &str, e: &(impl ProvideErrorMetadata + std::fmt::Debug)) -> Ec2Error {
    crate::ec2::api_err(what, e)
}

fn not_found<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("NoSuchEntity")
}

pub struct PublisherRole {
    client: Client,
}

impl PublisherRole {
    pub fn new(client: Client) -> PublisherRole {
        PublisherRole { client }
    }

    pub fn for_config(config: &aws_config::SdkConfig) -> PublisherRole {
        PublisherRole::new(Client::new(config))
    }

    fn tag(stack: &str) -> Tag {
        Tag::builder()
            .key(STACK_TAG)
            .value(stack)
            .build()
            .expect("key and value are set")
    }

    /// Creates what is missing of the role, its policy and the instance profile holding it;
    /// returns the instance profile's name (for `RunInstances`) and what was created.
    pub async fn ensure(&self, stack: &str) -> Result<(String, Vec<String>), Ec2Error> {
        let name = name(stack);
        let mut created = Vec::new();
        match self.client.get_role().role_name(&name).send().await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {
                self.client
                    .create_role()
                    .role_name(&name)
                    .assume_role_policy_document(TRUST_POLICY)
                    .description(format!(
                        "mlops-console {stack}: the inference service publishes its monitoring to CloudWatch"
                    ))
                    .tags(Self::tag(stack))
                    .send()
                    .await
                    .map_err(|e| iam_err("create the publishing role", &e))?;
                created.push(format!("IAM role {name}"));
            }
            Err(e) => return Err(iam_err("look for the publishing role", &e)),
        }
        self.client
            .put_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .policy_document(publish_policy(NAMESPACE))
            .send()
            .await
            .map_err(|e| iam_err("give the publishing role its permission", &e))?;
        let profile = match self
            .client
            .get_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await
        {
            Ok(out) => out.instance_profile,
            Err(e) if not_found(&e) => {
                let out = self
                    .client
                    .create_instance_profile()
                    .instance_profile_name(&name)
                    .tags(Self::tag(stack))
                    .send()
                    .await
                    .map_err(|e| iam_err("create the instance profile", &e))?;
                created.push(format!("instance profile {name}"));
                out.instance_profile
            }
            Err(e) => return Err(iam_err("look for the instance profile", &e)),
        };
        let has_role = profile
            .as_ref()
            .is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name));
        if !has_role {
            self.client
                .add_role_to_instance_profile()
                .instance_profile_name(&name)
                .role_name(&name)
                .send()
                .await
                .map_err(|e| iam_err("put the role in the instance profile", &e))?;
        }
        Ok((name, created))
    }

    /// Deletes the stack's instance profile and role (with its inline policies); returns what was
    /// removed. Run it after the instance is terminated.
    pub async fn remove(&self, stack: &str) -> Result<Vec<String>, Ec2Error> {
        let name = name(stack);
        let mut removed = Vec::new();
        match self
            .client
            .get_instance_profile()
            .instance_profile_name(&name)
            .send()
            .await
        {
            Ok(out) => {
                let roles: Vec<String> = out
                    .instance_profile()
                    .map(|p| {
                        p.roles()
                            .iter()
                            .map(|r| r.role_name().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                for role in roles {
                    self.client
                        .remove_role_from_instance_profile()
                        .instance_profile_name(&name)
                        .role_name(role)
                        .send()
                        .await
                        .map_err(|e| iam_err("take the role out of the instance profile", &e))?;
                }
                self.client
                    .delete_instance_profile()
                    .instance_profile_name(&name)
                    .send()
                    .await
                    .map_err(|e| iam_err("delete the instance profile", &e))?;
                removed.push(format!("instance profile {name}"));
            }
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(iam_err("look for the instance profile", &e)),
        }
        let policies = match self
            .client
            .list_role_policies()
            .role_name(&name)
            .send()
            .await
        {
            Ok(out) => out.policy_names,
            Err(e) if not_found(&e) => return Ok(removed),
            Err(e) => return Err(iam_err("look for the publishing role", &e)),
        };
        for policy in policies {
            self.client
                .delete_role_policy()
                .role_name(&name)
                .policy_name(policy)
                .send()
                .await
                .map_err(|e| iam_err("delete the publishing role's policy", &e))?;
        }
        self.client
            .delete_role()
            .role_name(&name)
            .send()
            .await
            .map_err(|e| iam_err("delete the publishing role", &e))?;
        removed.push(format!("IAM role {name}"));
        Ok(removed)
    }
}
