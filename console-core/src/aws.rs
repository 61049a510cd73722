//! AWS configuration for the console: the normal credential chain (environment, profiles, SSO,
//! credential process) by default, a named profile, or an access key pair kept in the vault.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_ec2::config::Credentials;

use crate::secret::Secret;

#[derive(Clone, Debug)]
pub enum AwsAuth {
    /// The standard chain: AWS_* variables, ~/.aws profiles (incl. SSO), instance roles.
    DefaultChain,
    /// A named profile from ~/.aws/config and ~/.aws/credentials (nothing stored by the console).
    Profile(String),
    /// An access key pair from the vault.
    Keys {
        access_key_id: Secret,
        secret_access_key: Secret,
    },
}

/// Where to talk to AWS; `endpoint` is for a local stand-in (moto) or a VPC endpoint.
#[derive(Clone, Debug)]
pub struct AwsTarget {
    pub region: String,
    pub auth: AwsAuth,
    pub endpoint: Option<String>,
    /// Profile files to read instead of ~/.aws/config and ~/.aws/credentials.
    pub profile_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl AwsTarget {
    pub fn new(region: &str, auth: AwsAuth) -> AwsTarget {
        AwsTarget {
            region: region.into(),
            auth,
            endpoint: None,
            profile_files: None,
        }
    }

    pub async fn load(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()));
        if let Some(e) = &self.endpoint {
            loader = loader.endpoint_url(e);
        }
        let files = self.profile_files.as_ref().map(|(config, credentials)| {
            EnvConfigFiles::builder()
                .with_file(EnvConfigFileKind::Config, config)
                .with_file(EnvConfigFileKind::Credentials, credentials)
                .build()
        });
        if let Some(f) = &files {
            loader = loader.profile_files(f.clone());
        }
        match &self.auth {
            AwsAuth::DefaultChain => {}
            AwsAuth::Profile(name) => {
                // Exactly that profile: a missing one is an error, not a fall-through to the rest
                // of the chain (which would end at the instance metadata service).
                let mut p = aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_name(name);
                if let Some(f) = files {
                    p = p.profile_files(f);
                }
                loader = loader.profile_name(name).credentials_provider(p.build());
            }
            AwsAuth::Keys {
                access_key_id,
                secret_access_key,
            } => {
                loader = loader.credentials_provider(Credentials::new(
                    access_key_id.expose(),
                    secret_access_key.expose(),
                    None,
                    None,
                    "mlops-console vault",
                ));
            }
        }
        loader.load().await
    }
}
