//! Pushes an image from this computer's Docker engine to a registry (an own-model image built here,
//! to the registry a remote host pulls from) through the Engine API, `POST /images/{name}/push`,
//! with the credentials in that one request's `X-Registry-Auth` header on the engine's Unix socket.
//! Unlike `docker login` + `docker push`, nothing is written to `~/.docker/config.json` and the
//! token is on no command line.
//!
//! The request is HTTP/1.0, so the engine streams its progress (one JSON object per line) and
//! closes the connection at the end; a line with `error` is the registry's or the engine's refusal.

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::registry::ImageRef;
use crate::secret::Secret;

/// A push of one model image's new layer takes seconds on a LAN; allow a slow uplink.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(900);
/// Progress kept from the engine's answer: more is a broken engine, not a push.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Where `image:tag` goes, and who may put it there.
pub struct PushTarget<'a> {
    /// Repository without tag, e.g. `ghcr.io/acme/inference`.
    pub image: &'a str,
    pub tag: &'a str,
    pub user: &'a str,
    pub token: &'a Secret,
}

/// The Docker engine's Unix socket: `DOCKER_HOST` when it is `unix://…`, else the default.
pub fn engine_socket() -> Result<PathBuf, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h
            .strip_prefix("unix://")
            .map(PathBuf::from)
            .ok_or_else(|| format!("DOCKER_HOST is {h}, not a Unix socket; the console pushes through the local engine's socket only")),
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// `true` for a tag Docker accepts: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Tags the local image `local` as `target.image:target.tag` and pushes it; returns the digest the
/// registry gave it. `progress` gets the engine's status lines as they come.
pub async fn push(
    local: &str,
    target: &PushTarget<'_>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, String> {
    let reference = ImageRef::parse(target.image).map_err(|e| e.to_string())?;
    if !valid_tag(target.tag) {
        return Err(format!("{:?} is not an image tag", target.tag));
    }
    let remote = format!("{}:{}", target.image.trim(), target.tag);
    let tagged = tokio::process::Command::new("docker")
        .args(["tag", local, remote.as_str()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("could not start docker: {e}"))?;
    if !tagged.status.success() {
        return Err(format!(
            "docker tag {local} {remote} failed: {}",
            String::from_utf8_lossy(&tagged.stderr).trim()
        ));
    }
    let auth = Zeroizing::new(
        serde_json::json!({
            "username": target.user,
            "password": target.token.expose(),
            "serveraddress": reference.registry,
        })
        .to_string(),
    );
    let header = Zeroizing::new(URL_SAFE.encode(auth.as_bytes()));
    let request = Zeroizing::new(format!(
        "POST /images/{}/push?tag={} HTTP/1.0\r\nHost: docker\r\nX-Registry-Auth: {}\r\nContent-Length: 0\r\n\r\n",
        target.image.trim(),
        target.tag,
        header.as_str()
    ));
    let socket = engine_socket()?;
    let answer = tokio::time::timeout(PUSH_TIMEOUT, async {
        let mut s = tokio::net::UnixStream::connect(&socket)
            .await
            .map_err(|e| format!("no Docker engine answers on {}: {e}", socket.display()))?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("the Docker engine closed the connection: {e}"))?;
        read_answer(&mut s, progress).await
    })
    .await
    .map_err(|_| {
        format!(
            "pushing {remote} did not finish within {} s",
            PUSH_TIMEOUT.as_secs()
        )
    })??;
    judge(&remote, &answer)
}

/// Reads the engine's answer to the end, handing each complete progress line's status on.
async fn read_answer(
    s: &mut tokio::net::UnixStream,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, String> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let mut shown = 0;
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the Docker engine's answer: {e}"))?;
        if n == 0 {
            return Ok(String::from_utf8_lossy(&all).into_owned());
        }
        all.extend_from_slice(&buf[..n]);
        if all.len() > MAX_ANSWER_BYTES {
            return Err("the Docker engine's answer to the push is over 8 MiB".into());
        }
        while let Some(end) = all[shown..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&all[shown..shown + end]).into_owned();
            shown += end + 1;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) {
                if let Some(st) = v["status"].as_str() {
                    match v["id"].as_str() {
                        Some(id) => progress(&format!("{id}: {st}")),
                        None => progress(st),
                    }
                }
            }
        }
    }
}

/// The outcome of a push from the engine's whole answer: the digest, or the refusal in a sentence.
pub fn judge(remote: &str, answer: &str) -> Result<String, String> {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let lines: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect();
    if status != 200 {
        let why = lines
            .first()
            .and_then(|v| v["message"].as_str())
            .unwrap_or(body.trim());
        return Err(match status {
            404 => format!("there is no local image to push as {remote}: {why}"),
            0 => format!("the Docker engine gave no HTTP answer to the push of {remote}"),
            s => format!("the Docker engine refused to push {remote} ({s}): {why}"),
        });
    }
    if let Some(e) = lines.iter().find_map(|v| v["error"].as_str()) {
        return Err(format!("pushing {remote} failed: {e}"));
    }
    lines
        .iter()
        .filter_map(|v| v["aux"]["Digest"].as_str())
        .next_back()
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "the push of {remote} ended without a digest: {}",
                body.trim()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_answer_is_a_digest_or_a_sentence() {
        let ok = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n\
            {\"status\":\"The push refers to repository [127.0.0.1:5000/acme/inference]\"}\n\
            {\"status\":\"Pushed\",\"progressDetail\":{},\"id\":\"5f70bf18a086\"}\n\
            {\"status\":\"m1: digest: sha256:ab12 size: 528\"}\n\
            {\"progressDetail\":{},\"aux\":{\"Tag\":\"m1\",\"Digest\":\"sha256:ab12\",\"Size\":528}}\n";
        assert_eq!(judge("r:m1", ok).unwrap(), "sha256:ab12");
        let refused = "HTTP/1.0 200 OK\r\n\r\n{\"status\":\"Preparing\",\"id\":\"5f70\"}\n\
            {\"errorDetail\":{\"message\":\"unauthorized: authentication required\"},\"error\":\"unauthorized: authentication required\"}\n";
        assert_eq!(
            judge("r:m1", refused).unwrap_err(),
            "pushing r:m1 failed: unauthorized: authentication required"
        );
        let missing = "HTTP/1.0 404 Not Found\r\n\r\n{\"message\":\"An image does not exist locally with the tag: r\"}\n";
        assert!(judge("r:m1", missing)
            .unwrap_err()
            .starts_with("there is no local image to push as r:m1: An image does not exist"));
        assert!(judge("r:m1", "").unwrap_err().contains("no HTTP answer"));
    }

    #[test]
    fn tags_are_checked() {
        assert!(valid_tag("churn-2.1-0123456789ab"));
        for t in ["", "-x", ".x", "a b", "a:b", &"x".repeat(129)] {
            assert!(!valid_tag(t), "{t:?}");
        }
    }
}
