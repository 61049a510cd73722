//! The vault: credentials in the OS keychain (`keyring`: the Secret Service on Linux, Keychain on
//! macOS, Credential Manager on Windows) and nowhere else. Values are handed out as [`Secret`]s
//! (zeroized on drop, redacted in `Debug`); listing shows names, never values. Without a usable
//! keychain every call fails with a sentence saying how to fix it: there is no plaintext fallback.

use std::fmt;

use zeroize::Zeroizing;

use crate::secret::Secret;

/// The keychain service name every entry of the console is filed under.
pub const SERVICE: &str = "mlops-console";
/// A non-secret entry listing the names stored (the keychain API cannot enumerate).
const INDEX: &str = "index";

/// What a stored credential is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretName {
    AwsAccessKeyId,
    AwsSecretAccessKey,
    GithubToken,
    GhcrToken,
    /// The PEM private key for SSH to one host (by host name or address).
    SshKey(String),
    /// The bearer token a deploy target's service requires for monitoring (INFERENCE_API_TOKEN);
    /// the console makes it and hands it to the service at `docker-compose up`.
    ApiToken(String),
    /// Where a deploy target's service POSTs its alert events (INFERENCE_ALERT_WEBHOOK_URL): a
    /// Slack-style incoming webhook, whose URL is itself the credential.
    AlertWebhook(String),
}

impl SecretName {
    /// The keychain account name.
    pub fn account(&self) -> String {
        match self {
            SecretName::AwsAccessKeyId => "aws-access-key-id".into(),
            SecretName::AwsSecretAccessKey => "aws-secret-access-key".into(),
            SecretName::GithubToken => "github-token".into(),
            SecretName::GhcrToken => "ghcr-token".into(),
            SecretName::SshKey(host) => format!("ssh-key/{host}"),
            SecretName::ApiToken(target) => format!("api-token/{target}"),
            SecretName::AlertWebhook(target) => format!("alert-webhook/{target}"),
        }
    }

    pub fn parse(account: &str) -> Option<SecretName> {
        Some(match account {
            "aws-access-key-id" => SecretName::AwsAccessKeyId,
            "aws-secret-access-key" => SecretName::AwsSecretAccessKey,
            "github-token" => SecretName::GithubToken,
            "ghcr-token" => SecretName::GhcrToken,
            other => match other.split_once('/') {
                Some(("ssh-key", h)) if !h.is_empty() => SecretName::SshKey(h.to_string()),
                Some(("api-token", t)) if !t.is_empty() => SecretName::ApiToken(t.to_string()),
                Some(("alert-webhook", t)) if !t.is_empty() => {
                    SecretName::AlertWebhook(t.to_string())
                }
                _ => return None,
            },
        })
    }

    fn validate(&self, value: &Secret) -> Result<(), VaultError> {
        let v = value.expose();
        let bad = |why: &str| {
            Err(VaultError::Invalid {
                name: self.to_string(),
                why: why.into(),
            })
        };
        if v.trim().is_empty() {
            return bad("the value is empty");
        }
        match self {
            SecretName::SshKey(host) if host.trim().is_empty() => bad("the host name is empty"),
            SecretName::ApiToken(_) if v.trim().len() < 16 => {
                bad("a monitoring token has at least 16 characters")
            }
            SecretName::AlertWebhook(_) => match webhook_problem(v) {
                Some(why) => bad(why),
                None => Ok(()),
            },
            SecretName::SshKey(_)
                if !v.contains("-----BEGIN") || !v.contains("PRIVATE KEY-----") =>
            {
                bad("not a PEM private key (expected `-----BEGIN ... PRIVATE KEY-----`)")
            }
            SecretName::AwsAccessKeyId
                if !(16..=128).contains(&v.len())
                    || !v.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                bad("an access key id is 16 to 128 letters and digits, e.g. AKIA…")
            }
            _ => Ok(()),
        }
    }
}

/// Why a webhook URL would be refused by the service (which checks it again at start-up), or None.
/// The sentence never repeats the URL.
pub fn webhook_problem(url: &str) -> Option<&'static str> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Some("a webhook URL starts with https:// (or http://)");
    };
    if url.len() > 2048 {
        return Some("a webhook URL is at most 2048 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("a webhook URL has no spaces or line breaks");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Some("the webhook URL has no host");
    }
    if authority.contains('@') {
        return Some(
            "credentials in the webhook URL are not supported; put the secret in the path",
        );
    }
    None
}

/// A pasted PEM private key put back into its lines: surrounding whitespace goes, and a body whose
/// line breaks were lost or turned into spaces (as some forms, chat tools and terminals do) is
/// wrapped again, 70 columns for OpenSSH's own format and 64 for PEM, as `ssh-keygen` and OpenSSL
/// write them. None (keep the value as given) for anything else, including keys with header lines
/// such as an encrypted PKCS#1 key's `Proc-Type:`. Every copy is wiped when dropped.
pub fn tidy_pem(pasted: &str) -> Option<Secret> {
    let v = pasted.trim();
    let rest = v.strip_prefix("-----BEGIN ")?;
    let label = &rest[..rest.find("-----")?];
    if !label.ends_with("PRIVATE KEY") {
        return None;
    }
    let body = rest[label.len() + 5..].strip_suffix(&format!("-----END {label}-----"))?;
    let mut clean = Zeroizing::new(String::with_capacity(body.len()));
    for c in body.chars().filter(|c| !c.is_whitespace()) {
        if !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')) {
            return None;
        }
        clean.push(c);
    }
    if clean.is_empty() {
        return None;
    }
    let width = if label == "OPENSSH PRIVATE KEY" {
        70
    } else {
        64
    };
    let mut out = Zeroizing::new(String::with_capacity(
        clean.len() + clean.len() / width + 2 * label.len() + 40,
    ));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in clean.as_bytes().chunks(width) {
        // ASCII only (checked above), so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).ok()?);
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    Some(Secret::new(std::mem::take(&mut *out)))
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretName::AwsAccessKeyId => f.write_str("AWS access key id"),
            SecretName::AwsSecretAccessKey => f.write_str("AWS secret access key"),
            SecretName::GithubToken => f.write_str("GitHub token"),
            SecretName::GhcrToken => f.write_str("GHCR token"),
            SecretName::SshKey(h) => write!(f, "SSH key for {h}"),
            SecretName::ApiToken(t) => write!(f, "monitoring token of {t}"),
            SecretName::AlertWebhook(t) => write!(f, "alert webhook of {t}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no OS keychain is available ({detail}). On Linux the console needs a Secret Service on the session D-Bus: install and start gnome-keyring (or KeePassXC with Secret Service enabled) and log in to a desktop session; nothing is stored until then")]
    Unavailable { detail: String },
    #[error("the OS keychain is locked ({detail}). Unlock the login keyring (log in to the desktop, or open Passwords and Keys) and try again")]
    Locked { detail: String },
    #[error("{name}: {why}")]
    Invalid { name: String, why: String },
    #[error("the OS keychain failed: {detail}")]
    Platform { detail: String },
}

/// Maps a keyring error to one that says what to do, never carrying a secret's bytes.
fn map_err(e: keyring::Error) -> VaultError {
    use keyring::Error as E;
    match e {
        E::NoDefaultStore => VaultError::Unavailable {
            detail: match keyring::Entry::store_status() {
                Err(inner) => without_payload(inner),
                Ok(()) => "no default store".into(),
            },
        },
        E::NoStorageAccess(p) => VaultError::Locked {
            detail: p.to_string(),
        },
        E::PlatformFailure(p) => {
            let detail = p.to_string();
            // zbus reports a missing bus or service as a platform failure.
            if detail.contains("DBUS_SESSION_BUS_ADDRESS")
                || detail.contains("org.freedesktop.secrets")
                || detail.contains("No such file")
            {
                VaultError::Unavailable { detail }
            } else {
                VaultError::Platform { detail }
            }
        }
        other => VaultError::Platform {
            detail: without_payload(&other),
        },
    }
}

/// An error's description without any stored bytes it may carry (BadEncoding holds the secret).
fn without_payload(e: &keyring::Error) -> String {
    use keyring::Error as E;
    match e {
        E::BadEncoding(_) => "a stored value is not UTF-8".into(),
        E::BadDataFormat(_, p) => format!("a stored value has an unexpected format: {p}"),
        E::Ambiguous(v) => format!("{} entries match", v.len()),
        other => other.to_string(),
    }
}

pub struct Vault {
    service: String,
}

impl Vault {
    /// The console's vault.
    pub fn new() -> Vault {
        Vault::with_service(SERVICE)
    }

    /// A vault under another service name (tests, several profiles).
    pub fn with_service(service: &str) -> Vault {
        Vault {
            service: service.into(),
        }
    }

    fn entry(&self, account: &str) -> Result<keyring::Entry, VaultError> {
        keyring::Entry::new(&self.service, account).map_err(map_err)
    }

    /// Checks that the keychain answers (reads the index), for a clear error before any flow starts.
    pub fn check(&self) -> Result<(), VaultError> {
        self.list().map(|_| ())
    }

    /// Stores or replaces `name`. An SSH key is stored as a tidy PEM (see [`tidy_pem`]).
    pub fn put(&self, name: &SecretName, value: &Secret) -> Result<(), VaultError> {
        let tidied = match name {
            SecretName::SshKey(_) => tidy_pem(value.expose()),
            _ => None,
        };
        let value = tidied.as_ref().unwrap_or(value);
        name.validate(value)?;
        self.entry(&name.account())?
            .set_password(value.expose())
            .map_err(map_err)?;
        let mut names = self.list()?;
        if !names.contains(name) {
            names.push(name.clone());
            self.write_index(&names)?;
        }
        Ok(())
    }

    /// The stored token `name`, or a new random one (24 bytes as hex) stored under it first.
    pub fn get_or_create_token(&self, name: &SecretName) -> Result<Secret, VaultError> {
        if let Some(t) = self.get(name)? {
            return Ok(t);
        }
        let t = Secret::random_hex(24).map_err(|e| VaultError::Platform {
            detail: format!("no random source for a new token: {e}"),
        })?;
        self.put(name, &t)?;
        Ok(t)
    }

    pub fn get(&self, name: &SecretName) -> Result<Option<Secret>, VaultError> {
        match self.entry(&name.account())?.get_password() {
            Ok(v) => Ok(Some(Secret::new(v))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    /// Deletes `name`; false if it was not stored.
    pub fn delete(&self, name: &SecretName) -> Result<bool, VaultError> {
        let existed = match self.entry(&name.account())?.delete_credential() {
            Ok(()) => true,
            Err(keyring::Error::NoEntry) => false,
            Err(e) => return Err(map_err(e)),
        };
        let mut names = self.list()?;
        let before = names.len();
        names.retain(|n| n != name);
        if names.len() != before {
            self.write_index(&names)?;
        }
        Ok(existed)
    }

    /// The names stored, sorted; no values.
    pub fn list(&self) -> Result<Vec<SecretName>, VaultError> {
        let raw = match self.entry(INDEX)?.get_password() {
            Ok(v) => v,
            Err(keyring::Error::NoEntry) => return Ok(Vec::new()),
            Err(e) => return Err(map_err(e)),
        };
        let mut names: Vec<SecretName> = raw.lines().filter_map(SecretName::parse).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn write_index(&self, names: &[SecretName]) -> Result<(), VaultError> {
        let mut sorted = names.to_vec();
        sorted.sort();
        let text: Vec<String> = sorted.iter().map(SecretName::account).collect();
        self.entry(INDEX)?
            .set_password(&text.join("\n"))
            .map_err(map_err)
    }
}

impl Default for Vault {
    fn default() -> Self {
        Vault::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_url_is_checked_like_the_service_checks_it() {
        for ok in [
            "https://hooks.slack.com/services/T0/B0/abc",
            "http://127.0.0.1:9000/hook",
            "https://example.test",
        ] {
            assert_eq!(webhook_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("hooks.slack.com/services/x", "starts with https://"),
            ("ftp://example.test/x", "starts with https://"),
            ("https:///path", "no host"),
            ("https://user:pw@example.test/x", "credentials"),
            ("https://example.test/a b", "no spaces"),
        ] {
            let got = webhook_problem(bad).unwrap_or("");
            assert!(got.contains(why), "{bad}: {got}");
            assert!(
                !got.contains("example.test"),
                "the sentence repeats the URL: {got}"
            );
        }
        let name = SecretName::AlertWebhook("sandbox".into());
        assert_eq!(name.account(), "alert-webhook/sandbox");
        assert_eq!(
            SecretName::parse("alert-webhook/sandbox"),
            Some(name.clone())
        );
        assert!(name.validate(&Secret::new("nope")).is_err());
        assert!(name
            .validate(&Secret::new("https://example.test/h"))
            .is_ok());
    }

    #[test]
    fn account_names_round_trip() {
        for n in [
            SecretName::AwsAccessKeyId,
            SecretName::AwsSecretAccessKey,
            SecretName::GithubToken,
            SecretName::GhcrToken,
            SecretName::SshKey("ec2-1-2-3-4.compute.amazonaws.com".into()),
        ] {
            assert_eq!(SecretName::parse(&n.account()), Some(n));
        }
        assert_eq!(SecretName::parse("ssh-key/"), None);
        assert_eq!(SecretName::parse("index"), None);
    }

    /// A PEM-shaped value made here (random base64-alphabet body, not a key), wrapped at `width`.
    fn pem_like(label: &str, width: usize) -> String {
        let body = Secret::random_hex(150).unwrap().expose().to_string() + "+/AB==";
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn pasted_keys_get_their_lines_back() {
        let openssh = ["OPENSSH", "PRIVATE", "KEY"].join(" ");
        let rsa = ["RSA", "PRIVATE", "KEY"].join(" ");
        for (label, width) in [(openssh.as_str(), 70), (rsa.as_str(), 64)] {
            let key = pem_like(label, width);
            let tidy = |v: &str| tidy_pem(v).map(|s| s.expose().to_string());
            assert_eq!(tidy(&key).as_deref(), Some(key.as_str()), "already tidy");
            let flat = key.replace('\n', "");
            assert_eq!(
                tidy(&flat).as_deref(),
                Some(key.as_str()),
                "line breaks lost"
            );
            let spaced = key.trim_end().replace('\n', " ");
            assert_eq!(
                tidy(&spaced).as_deref(),
                Some(key.as_str()),
                "breaks as spaces"
            );
            let crlf = format!("  {}\r\n\n", key.trim_end().replace('\n', "\r\n"));
            assert_eq!(
                tidy(&crlf).as_deref(),
                Some(key.as_str()),
                "CRLF and blanks"
            );
            let rewrapped = pem_like(label, 40);
            let wrapped_ok = tidy(&rewrapped).unwrap();
            assert!(wrapped_ok.lines().skip(1).all(|l| l.len() <= width));
        }
        // Left alone: header lines (an encrypted PKCS#1 key), other armour, stray characters.
        let encrypted = pem_like(&rsa, 64).replacen('\n', "\nProc-Type: 4,ENCRYPTED\n\n", 1);
        assert!(tidy_pem(&encrypted).is_none());
        assert!(tidy_pem(&pem_like("CERTIFICATE", 64)).is_none());
        assert!(tidy_pem(&pem_like(&openssh, 70).replace("+/AB", "+/A*")).is_none());
        assert!(tidy_pem("ssh-ed25519 AAAA").is_none());
        let empty = format!("-----BEGIN {openssh}----- -----END {openssh}-----");
        assert!(tidy_pem(&empty).is_none());
    }

    #[test]
    fn values_are_checked_before_they_are_stored() {
        // PEM-shaped, made here: the body is random bytes, not a key.
        let label = ["OPENSSH", "PRIVATE", "KEY"].join(" ");
        let body = Secret::random_hex(32).unwrap();
        let pem = Secret::new(format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            body.expose()
        ));
        assert!(SecretName::SshKey("h".into()).validate(&pem).is_ok());
        let e = SecretName::SshKey("h".into())
            .validate(&Secret::new("ssh-ed25519 AAAA"))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("SSH key for h: not a PEM private key"),
            "{e}"
        );
        assert!(SecretName::GithubToken
            .validate(&Secret::new("  "))
            .is_err());
        assert!(SecretName::AwsAccessKeyId
            .validate(&Secret::new("TESTACCESSKEYID00001"))
            .is_ok());
        assert!(SecretName::AwsAccessKeyId
            .validate(&Secret::new("not a key"))
            .is_err());
    }
}
