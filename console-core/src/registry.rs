//! The tags an image has in its registry, so a remote host's versions can be picked rather than
//! typed: the Docker Registry HTTP API v2 (`GET /v2/<name>/tags/list`), as GHCR, Docker Hub and
//! Debian's docker-registry speak it. Credentials are the ones `docker login` uses on the host (the
//! registry user and the GHCR token), offered the way the registry asks in `WWW-Authenticate`:
//! HTTP Basic (docker-registry with htpasswd), or Basic to the named realm for a bearer token
//! (GHCR, Docker Hub). Like Docker, a registry on a loopback address is spoken to over plain HTTP.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, LINK, WWW_AUTHENTICATE};
use http::StatusCode;

use crate::secret::Secret;
use crate::service::encode;

/// Per request; a registry that does not answer in time is reported, not waited on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pages of 1,000 tags followed at most.
const MAX_PAGES: usize = 10;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

/// `ghcr.io/acme/inference` → registry `ghcr.io`, repository `acme/inference`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
}

impl ImageRef {
    /// Docker's rule: the first component is a registry when it has a `.` or `:` or is
    /// `localhost`; otherwise the image is on Docker Hub (`library/` for single names).
    pub fn parse(image: &str) -> Result<ImageRef, RegistryError> {
        let image = image.trim();
        let bad = || {
            RegistryError(format!(
                "`{image}` is not an image name such as ghcr.io/owner/name (no tag, no digest)"
            ))
        };
        if image.is_empty() || image.contains('@') || image.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let (first, rest) = match image.split_once('/') {
            Some((f, r)) if f.contains('.') || f.contains(':') || f == "localhost" => (f, r),
            Some(_) => ("registry-1.docker.io", image),
            None => ("registry-1.docker.io", image),
        };
        let repository = match (first, rest.contains('/')) {
            ("registry-1.docker.io", false) => format!("library/{rest}"),
            _ => rest.to_string(),
        };
        // A tag after the last component is not part of the repository.
        if repository
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
            || repository.split('/').any(str::is_empty)
        {
            return Err(bad());
        }
        Ok(ImageRef {
            registry: first.to_string(),
            repository: repository.to_ascii_lowercase(),
        })
    }

    fn base(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        let loopback = host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }
}

/// The tags of `image`, in the registry's order, with `user` and `token` when given.
pub async fn list_tags(
    image: &str,
    user: &str,
    token: Option<&Secret>,
) -> Result<Vec<String>, RegistryError> {
    let image = ImageRef::parse(image)?;
    let http = octocrab::Octocrab::builder()
        .build()
        .map_err(|e| RegistryError(format!("could not set up an HTTP client: {e}")))?;
    let client = Client {
        http,
        image: &image,
        basic: token.map(|t| basic(user, t)),
    };
    let mut url = format!("{}/v2/{}/tags/list?n=1000", image.base(), image.repository);
    // Basic credentials go with the first request (docker-registry takes them as they are); a
    // registry that wants a token says so in its 401, answered once.
    let mut auth = client.basic.clone();
    let mut challenged = false;
    let mut tags = Vec::new();
    // One more round than pages: the answer to the challenge, when there is one.
    for _ in 0..=MAX_PAGES {
        let (status, headers, body) = client.get(&url, auth.as_ref()).await?;
        if status == StatusCode::UNAUTHORIZED && !challenged {
            challenged = true;
            let challenge = headers
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            auth = Some(client.authorize(challenge).await?);
            continue;
        }
        if !client.page((status, headers, body), &mut tags, &mut url)? {
            break;
        }
    }
    Ok(tags)
}

type Answer = (StatusCode, HeaderMap, String);

struct Client<'a> {
    http: octocrab::Octocrab,
    image: &'a ImageRef,
    basic: Option<HeaderValue>,
}

impl Client<'_> {
    async fn get(&self, url: &str, auth: Option<&HeaderValue>) -> Result<Answer, RegistryError> {
        let mut headers = HeaderMap::new();
        if let Some(a) = auth {
            headers.insert(AUTHORIZATION, a.clone());
        }
        let reach = |e: String| {
            RegistryError(format!(
                "could not reach the registry {}: {e}",
                self.image.registry
            ))
        };
        let resp = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.http._get_with_headers(url, Some(headers)),
        )
        .await
        .map_err(|_| reach(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
        .map_err(|e| reach(e.to_string()))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = self
            .http
            .body_to_string(resp)
            .await
            .map_err(|e| reach(e.to_string()))?;
        Ok((status, headers, body))
    }

    /// Answers a `WWW-Authenticate` challenge: Basic credentials as they are, or a bearer token
    /// from the realm (asked with the Basic credentials, or anonymously for a public image).
    async fn authorize(&self, challenge: &str) -> Result<HeaderValue, RegistryError> {
        let (scheme, params) = parse_challenge(challenge);
        let refused = || self.refused();
        match scheme.as_str() {
            "basic" => self.basic.clone().ok_or_else(refused),
            "bearer" => {
                let realm = params
                    .iter()
                    .find(|(k, _)| k == "realm")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        RegistryError(format!(
                            "the registry {} asked for a token without saying where to get it",
                            self.image.registry
                        ))
                    })?;
                let mut query: Vec<String> = params
                    .iter()
                    .filter(|(k, _)| k == "service" || k == "scope")
                    .map(|(k, v)| format!("{k}={}", encode(v)))
                    .collect();
                if !params.iter().any(|(k, _)| k == "scope") {
                    query.push(format!(
                        "scope={}",
                        encode(&format!("repository:{}:pull", self.image.repository))
                    ));
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{}", query.join("&"));
                let (status, _, body) = self.get(&url, self.basic.as_ref()).await?;
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(refused());
                }
                let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
                    RegistryError(format!(
                        "the registry's token service answered {status} without a token"
                    ))
                })?;
                let token = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| {
                        RegistryError(format!(
                            "the registry's token service answered {status} without a token"
                        ))
                    })?;
                let mut h = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    RegistryError("the registry's token is not a valid header value".into())
                })?;
                h.set_sensitive(true);
                Ok(h)
            }
            _ => Err(RegistryError(format!(
                "the registry {} asks for credentials in a way the console does not speak (`{}`)",
                self.image.registry,
                challenge.split_whitespace().next().unwrap_or("none")
            ))),
        }
    }

    fn refused(&self) -> RegistryError {
        RegistryError(format!(
            "the registry {} refused to list {}: check the registry user and the GHCR token (read:packages) in the Credentials step",
            self.image.registry, self.image.repository
        ))
    }

    /// Takes one page's tags; true when a `Link: <…>; rel="next"` names another (now in `url`).
    fn page(
        &self,
        (status, headers, body): Answer,
        tags: &mut Vec<String>,
        url: &mut String,
    ) -> Result<bool, RegistryError> {
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.refused()),
            StatusCode::NOT_FOUND => {
                return Err(RegistryError(format!(
                    "the registry {} has no image {} (push one first, or check the image name)",
                    self.image.registry, self.image.repository
                )))
            }
            s => {
                return Err(RegistryError(format!(
                    "the registry {} answered {s} when asked for the tags of {}",
                    self.image.registry, self.image.repository
                )))
            }
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
            RegistryError(format!(
                "the registry {} answered with something that is not a tag list",
                self.image.registry
            ))
        })?;
        tags.extend(
            v["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string)),
        );
        let next = headers
            .get(LINK)
            .and_then(|l| l.to_str().ok())
            .and_then(next_link);
        match next {
            Some(path) if path.starts_with('/') => {
                *url = format!("{}{path}", self.image.base());
                Ok(true)
            }
            Some(full) if full.starts_with(&self.image.base()) => {
                *url = full;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn basic(user: &str, token: &Secret) -> HeaderValue {
    use base64::Engine as _;
    let raw = zeroize::Zeroizing::new(format!("{user}:{}", token.expose()));
    let encoded =
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()));
    let mut h = HeaderValue::from_str(&format!("Basic {}", encoded.as_str()))
        .expect("base64 is a valid header value");
    h.set_sensitive(true);
    h
}

/// `Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"` →
/// ("bearer", [(realm, …), (service, …), (scope, …)]).
pub fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while let Some((key, after)) = s.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.push((key, value.to_string()));
        s = remaining.trim_start_matches(',').trim();
    }
    (scheme.to_ascii_lowercase(), params)
}

/// The target of `rel="next"` in a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_as_docker_reads_them() {
        let r = |s: &str| ImageRef::parse(s).map(|i| (i.registry, i.repository));
        assert_eq!(
            r("ghcr.io/Acme/inference").unwrap(),
            ("ghcr.io".into(), "acme/inference".into())
        );
        assert_eq!(
            r("127.0.0.1:5000/acme/inference").unwrap(),
            ("127.0.0.1:5000".into(), "acme/inference".into())
        );
        assert_eq!(r("localhost/x").unwrap(), ("localhost".into(), "x".into()));
        assert_eq!(
            r("acme/inference").unwrap(),
            ("registry-1.docker.io".into(), "acme/inference".into())
        );
        assert_eq!(
            r("nginx").unwrap(),
            ("registry-1.docker.io".into(), "library/nginx".into())
        );
        for bad in [
            "",
            "ghcr.io/acme/inference:v1",
            "ghcr.io/a@sha256:00",
            "ghcr.io//x",
            "a b",
        ] {
            let e = r(bad).unwrap_err().to_string();
            assert!(e.contains("not an image name"), "{bad}: {e}");
        }
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        let base = |s: &str| ImageRef::parse(s).unwrap().base();
        assert_eq!(base("127.0.0.1:5000/a/b"), "http://127.0.0.1:5000");
        assert_eq!(base("localhost:5000/a/b"), "http://localhost:5000");
        assert_eq!(base("ghcr.io/a/b"), "https://ghcr.io");
        assert_eq!(base("10.0.0.5:5000/a/b"), "https://10.0.0.5:5000");
    }

    #[test]
    fn challenges_and_links() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/inference:pull""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(
            p,
            [
                ("realm".to_string(), "https://ghcr.io/token".to_string()),
                ("service".into(), "ghcr.io".into()),
                ("scope".into(), "repository:acme/inference:pull".into())
            ]
        );
        assert_eq!(parse_challenge(r#"Basic realm="mlops-e2e""#).0, "basic");
        assert_eq!(
            next_link(r#"</v2/a/b/tags/list?last=v9&n=1000>; rel="next""#).as_deref(),
            Some("/v2/a/b/tags/list?last=v9&n=1000")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
