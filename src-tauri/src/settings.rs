//! What the console remembers between runs, none of it secret: the wizard's step and choices, the
//! remote host's public facts, the dashboard's view. Kept as JSON in the data directory and written
//! atomically; unknown fields are refused so nothing else (a token pasted in the wrong field) can
//! end up in the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// 0 credentials, 1 platform, 2 provision, 3 GitHub, 4 deploy, 5 verify; 6 = done.
    pub wizard_step: u8,
    /// "sandbox", "fleet" (the sandbox's three hosts behind HAProxy), "ssh" (a host you already
    /// have) or "ec2"; other platforms only advise.
    pub platform: Option<String>,
    pub aws: AwsSettings,
    pub ec2: Ec2Settings,
    /// The remote host, once known (typed for "ssh", filled in by provisioning for "ec2").
    pub remote: Option<RemoteHost>,
    pub github: GithubSettings,
    pub dashboard: DashboardSettings,
    /// Minutes to watch a new version's critical alert rules after a deploy's switch (0: no
    /// watch); a rule that fires meanwhile rolls the deploy back.
    pub watch_minutes: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSettings {
    /// "default" (the AWS credential chain), "profile" or "keys" (stored in the keychain).
    pub mode: String,
    pub profile: Option<String>,
    pub region: String,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            mode: "default".into(),
            profile: None,
            region: "eu-west-1".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ec2Settings {
    pub name: String,
    pub instance_type: String,
    pub disk_gib: i32,
    /// Who may SSH in: an address/32 (detected or typed).
    pub ssh_cidr: Option<String>,
    pub open_service_port: bool,
    pub instance_id: Option<String>,
    /// Who CloudWatch's alarms mail (through the stack's SNS topic).
    pub alert_emails: Vec<String>,
    /// The model version the stack's alarms watch (the service's `ModelVersion` dimension), once a
    /// version serves; None: only the host's alarms are in place.
    pub alarms_for: Option<String>,
}

impl Default for Ec2Settings {
    fn default() -> Self {
        Ec2Settings {
            name: "mlops-inference".into(),
            instance_type: "t3.small".into(),
            disk_gib: 20,
            ssh_cidr: None,
            open_service_port: false,
            instance_id: None,
            alert_emails: Vec::new(),
            alarms_for: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteHost {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// `SHA256:…` of the host key, pinned.
    pub fingerprint: String,
    pub compose_dir: String,
    /// Image repository without tag, e.g. ghcr.io/owner/repo.
    pub image: String,
    /// GHCR user for `docker login` on the host (the token is in the keychain).
    pub registry_user: String,
    pub service_port: u16,
}

impl Default for RemoteHost {
    fn default() -> Self {
        RemoteHost {
            host: String::new(),
            port: 22,
            user: "ubuntu".into(),
            fingerprint: String::new(),
            compose_dir: "/opt/inference".into(),
            image: String::new(),
            registry_user: String::new(),
            service_port: 8080,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubSettings {
    /// owner/name
    pub repo: Option<String>,
    pub branch: String,
    pub configured: bool,
}

impl Default for GithubSettings {
    fn default() -> Self {
        GithubSettings {
            repo: None,
            branch: "main".into(),
            configured: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSettings {
    pub range_s: i64,
    pub paused: bool,
    pub feature: Option<String>,
    /// "sandbox", "sandbox-fleet" or "remote".
    pub target: String,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            range_s: 3600,
            paused: false,
            feature: None,
            target: "sandbox".into(),
        }
    }
}

impl Settings {
    /// Checks every field a user typed; the error names the field and the fix.
    pub fn validate(&self) -> AppResult<()> {
        if self.watch_minutes > 60 {
            return Err(AppError::invalid(format!(
                "a watch of {} minutes after the switch is too long (0 to 60)",
                self.watch_minutes
            )));
        }
        if self.wizard_step > 6 {
            return Err(AppError::invalid(format!(
                "wizard step {} does not exist (0 to 6)",
                self.wizard_step
            )));
        }
        if let Some(p) = &self.platform {
            if ![
                "sandbox",
                "fleet",
                "ssh",
                "ec2",
                "cloud-run",
                "azure",
                "render",
            ]
            .contains(&p.as_str())
            {
                return Err(AppError::invalid(format!("unknown platform `{p}`")));
            }
        }
        if !["default", "profile", "keys"].contains(&self.aws.mode.as_str()) {
            return Err(AppError::invalid(format!(
                "AWS credentials mode `{}` must be default, profile or keys",
                self.aws.mode
            )));
        }
        if self.aws.mode == "profile" && self.aws.profile.as_deref().unwrap_or("").is_empty() {
            return Err(AppError::invalid("name the AWS profile to use"));
        }
        let region_ok = self.aws.region.len() <= 32
            && self.aws.region.split('-').count() >= 3
            && self
                .aws
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(AppError::invalid(format!(
                "`{}` is not an AWS region name (like eu-west-1)",
                self.aws.region
            )));
        }
        if let Some(r) = &self.github.repo {
            let parts: Vec<&str> = r.split('/').collect();
            let ok = parts.len() == 2
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                });
            if !ok {
                return Err(AppError::invalid(format!(
                    "`{r}` is not a GitHub repository; write it as owner/name"
                )));
            }
        }
        if let Some(h) = &self.remote {
            if h.host.is_empty() || h.host.contains(char::is_whitespace) {
                return Err(AppError::invalid("the host needs a name or an address"));
            }
            if h.port == 0 || h.service_port == 0 {
                return Err(AppError::invalid("ports must be between 1 and 65535"));
            }
            if !h.fingerprint.is_empty() && !h.fingerprint.starts_with("SHA256:") {
                return Err(AppError::invalid(format!(
                    "`{}` is not a host key fingerprint; it starts with SHA256: (ssh-keygen -lf prints it)",
                    h.fingerprint
                )));
            }
            if !h.compose_dir.starts_with('/') {
                return Err(AppError::invalid(format!(
                    "the compose directory `{}` must be an absolute path",
                    h.compose_dir
                )));
            }
        }
        if let Err(e) = console_core::alarms::validate("stack", &[], &self.ec2.alert_emails) {
            return Err(AppError::invalid(format!("alert e-mail: {e}")));
        }
        if ![900, 3600, 86_400].contains(&self.dashboard.range_s) {
            return Err(AppError::invalid(format!(
                "time range {} s is not offered (15 min, 1 h or 24 h)",
                self.dashboard.range_s
            )));
        }
        Ok(())
    }

    pub fn load(path: &Path) -> AppResult<Settings> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                AppError::new(
                    "settings",
                    format!(
                        "{} is not valid ({e}); fix or delete it to start the wizard again",
                        path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(AppError::new(
                "settings",
                format!("reading {}: {e}", path.display()),
            )),
        }
    }

    /// Writes to a temporary file beside `path`, then renames it over.
    pub fn save(&self, path: &Path) -> AppResult<()> {
        self.validate()?;
        let io = |e: std::io::Error| {
            AppError::new("settings", format!("saving {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp: PathBuf = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).expect("settings serialize");
        std::fs::write(&tmp, body).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.json");
        assert_eq!(Settings::load(&p).unwrap(), Settings::default());
        let s = Settings {
            wizard_step: 3,
            platform: Some("sandbox".into()),
            ..Settings::default()
        };
        s.save(&p).unwrap();
        assert_eq!(Settings::load(&p).unwrap(), s);
    }

    #[test]
    fn refuses_unknown_fields_and_bad_values() {
        let e = serde_json::from_str::<Settings>(r#"{"github_token": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let mut s = Settings::default();
        s.github.repo = Some("just-a-name".into());
        assert!(s.validate().unwrap_err().message.contains("owner/name"));
        let mut s = Settings::default();
        s.aws.region = "Europe".into();
        assert!(s.validate().unwrap_err().message.contains("region"));
        let s = Settings {
            remote: Some(RemoteHost {
                host: "h".into(),
                fingerprint: "MD5:aa".into(),
                ..RemoteHost::default()
            }),
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().message.contains("SHA256"));
        let mut s = Settings::default();
        s.ec2.alert_emails = vec!["oncall@example.com".into(), "ops example.com".into()];
        let e = s.validate().unwrap_err().message;
        assert!(
            e.contains("\"ops example.com\" is not an e-mail address"),
            "{e}"
        );
        s.ec2.alert_emails.pop();
        s.validate().unwrap();
    }
}
