//! GitHub: the repository secrets and variables the deploy workflow reads (`octocrab`, raw
//! requests so status codes and rate-limit headers are ours to read). Secret values are sealed
//! with the repository's public key (libsodium sealed box) before they leave this process.
//! Rate limits are honoured: `retry-after`, `x-ratelimit-remaining`/`x-ratelimit-reset`, and
//! back-off on secondary limits; 5xx answers are retried a bounded number of times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use crate::secret::Secret;

/// The secrets `.github/workflows/deploy.yml` reads.
pub const DEPLOY_SECRETS: [&str; 6] = [
    "EC2_HOST",
    "EC2_USER",
    "EC2_SSH_KEY",
    "DOCKER_COMPOSE_DIR",
    "GHCR_PAT",
    // The service's monitoring token: the workflow hands it to `docker-compose up`, so a version
    // deployed through GitHub can be watched by the console like one it deployed itself.
    "INFERENCE_API_TOKEN",
];
/// The variable it pins the host key with.
pub const FINGERPRINT_VARIABLE: &str = "EC2_HOST_FINGERPRINT";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    /// Parses `owner/name`.
    pub fn parse(s: &str) -> Result<Repo, GitHubError> {
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match s.trim().split_once('/') {
            Some((o, n)) if ok(o) && ok(n) => Ok(Repo {
                owner: o.into(),
                name: n.trim_end_matches(".git").into(),
            }),
            _ => Err(GitHubError::BadInput(format!(
                "`{s}` is not a repository: write it as owner/name"
            ))),
        }
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub refused the token (401 Bad credentials): it is wrong, expired or revoked. Create a new token and store it in the console again")]
    Unauthorized,
    #[error("GitHub refused to {what} (403: {message}). The token needs {needs}")]
    Forbidden {
        what: String,
        message: String,
        needs: String,
    },
    #[error("repository {repo} was not found, or the token cannot see it (404). Check the name, and give the token access to that repository")]
    NotFound { repo: String },
    #[error("GitHub's rate limit stopped `{what}` after {tries} attempt(s); it resets in {wait_s} s. Try again then")]
    RateLimited {
        what: String,
        wait_s: u64,
        tries: u32,
    },
    #[error("GitHub answered {status} to `{what}` {tries} time(s) ({message}); it may be having problems, try again later")]
    Server {
        what: String,
        status: u16,
        message: String,
        tries: u32,
    },
    #[error("GitHub rejected `{what}` ({status}: {message})")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
    #[error("could not reach GitHub for `{what}`: {detail}")]
    Transport { what: String, detail: String },
    #[error("{0}")]
    BadInput(String),
}

/// What a secret PUT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

#[derive(Deserialize)]
struct PublicKey {
    key_id: String,
    key: String,
}

pub struct GitHub {
    client: octocrab::Octocrab,
    /// Attempts for one request when GitHub says "later" (rate limits, 5xx).
    pub max_attempts: u32,
    /// Longest wait this client accepts before giving up on a rate limit.
    pub max_wait: Duration,
}

impl GitHub {
    /// A client for `base_uri` (`https://api.github.com`, or a GitHub Enterprise / test URL).
    pub fn new(base_uri: &str, token: &Secret) -> Result<GitHub, GitHubError> {
        let client = octocrab::Octocrab::builder()
            .base_uri(base_uri)
            .map_err(|e| {
                GitHubError::BadInput(format!("bad GitHub API address `{base_uri}`: {e}"))
            })?
            .personal_token(token.expose().to_string())
            .add_header(
                http::header::HeaderName::from_static("x-github-api-version"),
                "2022-11-28".into(),
            )
            .build()
            .map_err(|e| GitHubError::Transport {
                what: "set up the client".into(),
                detail: format!("{e:?}"),
            })?;
        Ok(GitHub {
            client,
            max_attempts: 4,
            max_wait: Duration::from_secs(60),
        })
    }

    /// Sends one request, retrying what GitHub says to retry. Returns the status, headers and body
    /// of a 2xx or 3xx answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
        needs: &str,
        repo: &Repo,
    ) -> Result<(StatusCode, HeaderMap, String), GitHubError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = match method {
                Method::GET => self.client._get(path).await,
                Method::PUT => self.client._put(path, body).await,
                Method::PATCH => self.client._patch(path, body).await,
                Method::POST => self.client._post(path, body).await,
                _ => self.client._delete(path, body).await,
            };
            let resp = r.map_err(|e| GitHubError::Transport {
                what: what.into(),
                detail: format!("{e}"),
            })?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = self.client.body_to_string(resp).await.unwrap_or_default();
            if status.is_success() || status.is_redirection() {
                return Ok((status, headers, text));
            }
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.chars().take(200).collect());
            if let Some(wait) = rate_limit_wait(status, &headers, &message, attempt) {
                if attempt < self.max_attempts && wait <= self.max_wait {
                    tracing::warn!(
                        "GitHub rate limit on `{what}`: waiting {} s",
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(GitHubError::RateLimited {
                    what: what.into(),
                    wait_s: wait.as_secs(),
                    tries: attempt,
                });
            }
            if status.is_server_error() {
                if attempt < self.max_attempts {
                    tokio::time::sleep(Duration::from_millis(500 << (attempt - 1).min(4))).await;
                    continue;
                }
                return Err(GitHubError::Server {
                    what: what.into(),
                    status: status.as_u16(),
                    message,
                    tries: attempt,
                });
            }
            return Err(match status.as_u16() {
                401 => GitHubError::Unauthorized,
                403 => GitHubError::Forbidden {
                    what: what.into(),
                    message,
                    needs: needs.into(),
                },
                404 => GitHubError::NotFound {
                    repo: repo.to_string(),
                },
                s => GitHubError::Rejected {
                    what: what.into(),
                    status: s,
                    message,
                },
            });
        }
    }

    /// Checks the token can manage the repository's Actions secrets (the call the deploy set-up
    /// needs first); the error names what is missing.
    pub async fn check_secrets_access(&self, repo: &Repo) -> Result<(), GitHubError> {
        self.public_key(repo).await.map(|_| ())
    }

    async fn public_key(
        &self,
        repo: &Repo,
    ) -> Result<(String, crypto_box::PublicKey), GitHubError> {
        let (_, _, body) = self
            .send(
                Method::GET,
                &format!("/repos/{repo}/actions/secrets/public-key"),
                None,
                "read the repository's Actions public key",
                SECRETS_NEEDS,
                repo,
            )
            .await?;
        let k: PublicKey = serde_json::from_str(&body).map_err(|e| GitHubError::Rejected {
            what: "read the repository's Actions public key".into(),
            status: 200,
            message: format!("unexpected body: {e}"),
        })?;
        let bytes: [u8; 32] = B64
            .decode(k.key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| GitHubError::Rejected {
                what: "read the repository's Actions public key".into(),
                status: 200,
                message: "the key is not 32 bytes of base64".into(),
            })?;
        Ok((k.key_id, crypto_box::PublicKey::from(bytes)))
    }

    /// Sets each secret (sealed with the repository's public key); returns what each PUT did.
    pub async fn set_secrets(
        &self,
        repo: &Repo,
        secrets: &[(&str, &Secret)],
    ) -> Result<Vec<(String, Written)>, GitHubError> {
        for (name, value) in secrets {
            validate_name(name)?;
            if value.is_empty() {
                return Err(GitHubError::BadInput(format!("secret {name} is empty")));
            }
        }
        let (key_id, key) = self.public_key(repo).await?;
        let mut done = Vec::new();
        for (name, value) in secrets {
            let sealed = key
                .seal(&mut crypto_box::aead::OsRng, value.expose().as_bytes())
                .map_err(|_| GitHubError::BadInput(format!("could not encrypt secret {name}")))?;
            let body =
                serde_json::json!({ "encrypted_value": B64.encode(sealed), "key_id": key_id });
            let what = format!("set the secret {name}");
            let (status, _, _) = self
                .send(
                    Method::PUT,
                    &format!("/repos/{repo}/actions/secrets/{name}"),
                    Some(&body),
                    &what,
                    SECRETS_NEEDS,
                    repo,
                )
                .await?;
            done.push((
                name.to_string(),
                if status == StatusCode::CREATED {
                    Written::Created
                } else {
                    Written::Updated
                },
            ));
        }
        Ok(done)
    }

    /// Sets a (non-secret) Actions variable: update it, or create it if it does not exist.
    pub async fn set_variable(
        &self,
        repo: &Repo,
        name: &str,
        value: &str,
    ) -> Result<Written, GitHubError> {
        validate_name(name)?;
        let what = format!("set the variable {name}");
        let body = serde_json::json!({ "name": name, "value": value });
        match self
            .send(
                Method::PATCH,
                &format!("/repos/{repo}/actions/variables/{name}"),
                Some(&body),
                &what,
                VARIABLES_NEEDS,
                repo,
            )
            .await
        {
            Ok(_) => Ok(Written::Updated),
            Err(GitHubError::NotFound { .. }) => {
                self.send(
                    Method::POST,
                    &format!("/repos/{repo}/actions/variables"),
                    Some(&body),
                    &what,
                    VARIABLES_NEEDS,
                    repo,
                )
                .await?;
                Ok(Written::Created)
            }
            Err(e) => Err(e),
        }
    }
}

const SECRETS_NEEDS: &str = "the `repo` scope (classic token) or the repository permission \"Secrets: Read and write\" (fine-grained token)";
const VARIABLES_NEEDS: &str = "the `repo` scope (classic token) or the repository permission \"Variables: Read and write\" (fine-grained token)";

/// GitHub's rule: letters, digits and `_`, not starting with a digit or `GITHUB_`.
fn validate_name(name: &str) -> Result<(), GitHubError> {
    let ok = !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.to_ascii_uppercase().starts_with("GITHUB_");
    if ok {
        Ok(())
    } else {
        Err(GitHubError::BadInput(format!("`{name}` is not a valid secret or variable name: use letters, digits and _, not starting with a digit or GITHUB_")))
    }
}

/// How long GitHub asks us to wait, if this answer is a rate limit.
fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    attempt: u32,
) -> Option<Duration> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (header("retry-after").is_some()
                || header("x-ratelimit-remaining") == Some("0")
                || message.to_ascii_lowercase().contains("rate limit")));
    if !limited {
        return None;
    }
    if let Some(s) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(s));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
        }
    }
    // Secondary limit without a hint: GitHub asks for at least a minute; back off exponentially.
    Some(Duration::from_secs(60u64 << (attempt - 1).min(4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        assert_eq!(
            Repo::parse("acme/inference.git").unwrap(),
            Repo {
                owner: "acme".into(),
                name: "inference".into()
            }
        );
        for bad in ["acme", "/x", "a/b/c", "a b/c", ""] {
            assert!(Repo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_names() {
        assert!(validate_name("EC2_SSH_KEY").is_ok());
        for bad in ["", "1X", "GITHUB_TOKEN", "A-B", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limit_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &h, "Resource not accessible", 1),
            None
        );
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &h, "", 1),
            Some(Duration::from_secs(7))
        );
        let mut h = HeaderMap::new();
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        let w = rate_limit_wait(StatusCode::FORBIDDEN, &h, "API rate limit exceeded", 1).unwrap();
        assert!((29..=31).contains(&w.as_secs()), "{w:?}");
        let h = HeaderMap::new();
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &h,
                "You have exceeded a secondary rate limit",
                2
            ),
            Some(Duration::from_secs(120))
        );
    }
}
