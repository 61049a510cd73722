//! A client for the inference service's read API (`/v1/model`, `/v1/monitoring/summary`,
//! `/v1/monitoring/series`) over a loopback address: the sandbox's published port, or the local end
//! of an SSH tunnel to a remote host (so the service never needs a public port).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;

use crate::health::http_request;
use crate::secret::Secret;

#[derive(Clone, Debug)]
pub struct ServiceClient {
    pub addr: SocketAddr,
    pub timeout: Duration,
    /// Bearer token for the monitoring API (INFERENCE_API_TOKEN of the deployed service).
    pub token: Option<Secret>,
}

impl ServiceClient {
    pub fn new(addr: SocketAddr) -> ServiceClient {
        ServiceClient {
            addr,
            timeout: Duration::from_secs(5),
            token: None,
        }
    }

    pub fn with_token(mut self, token: Option<Secret>) -> ServiceClient {
        self.token = token;
        self
    }

    /// GET `path` and parse the JSON body. Errors say what failed and where.
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        self.send_json("GET", path, None).await
    }

    /// GET `path` and read the JSON body as a `T`.
    pub async fn get_json_as<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
    ) -> Result<T, String> {
        let v = self.get_json(&path).await?;
        serde_json::from_value(v).map_err(|e| format!("GET {path}: unexpected answer ({e})"))
    }

    /// POST `body` as JSON to `path` and parse the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send_json("POST", path, Some(body.to_string().into_bytes()))
            .await
    }

    /// PUT `body` as JSON to `path` and parse the JSON answer.
    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send_json("PUT", path, Some(body.to_string().into_bytes()))
            .await
    }

    async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, String> {
        let addr = self.addr;
        let work = async {
            let mut s = TcpStream::connect(addr).await.map_err(|e| {
                format!("the service at {addr} is not answering ({e}); is it deployed and running?")
            })?;
            let r =
                http_request(&mut s, method, path, self.token.as_ref(), body.as_deref()).await?;
            if r.status != 200 {
                // The service's errors are {"error": "sentence", ...}.
                let detail = serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|v| {
                        v["error"]["message"]
                            .as_str()
                            .or(v["error"].as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| r.body.chars().take(200).collect());
                return Err(format!("{method} {path} answered {}: {detail}", r.status));
            }
            serde_json::from_str(&r.body)
                .map_err(|e| format!("{method} {path}: the answer is not JSON ({e})"))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                format!(
                    "{method} {path} on {addr} took longer than {:?}",
                    self.timeout
                )
            })?
    }

    /// Replaces the service's alert rules (`None`: its defaults); answers as
    /// `GET /v1/monitoring/alerts`. The service checks them against its model; its refusal names
    /// the rule and the field.
    pub async fn put_alert_rules(&self, rules: Option<&Value>) -> Result<Value, String> {
        self.put_json(
            "/v1/monitoring/alerts/rules",
            &serde_json::json!({ "rules": rules }),
        )
        .await
    }

    pub async fn model(&self) -> Result<Value, String> {
        self.get_json("/v1/model").await
    }

    /// `window_s` is rounded to whole minutes by the service (5m, 1h, 24h...).
    pub async fn summary(&self, window_s: i64) -> Result<Value, String> {
        self.get_json(&format!(
            "/v1/monitoring/summary?window={}m",
            (window_s / 60).max(1)
        ))
        .await
    }

    /// One metric's points between `from` and `to` (unix seconds) every `step` seconds.
    pub async fn series(
        &self,
        metric: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(i64, Option<f64>)>, String> {
        let v = self
            .get_json(&format!(
                "/v1/monitoring/series?metric={}&from={from}&to={to}&step={step}",
                encode(metric)
            ))
            .await?;
        if !v["points"].is_array() {
            return Err(format!("series {metric}: no `points` array in the answer"));
        }
        Ok(points(&v))
    }
}

/// A series answer's points as (t, value).
pub fn points(series: &Value) -> Vec<(i64, Option<f64>)> {
    series["points"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["t"].as_i64()?, p["value"].as_f64())))
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes a query value: RFC 3986's unreserved characters stay, anything else (`:`, `/`,
/// spaces) is escaped. Also used for the registry's token request (`registry`).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("psi:mean_radius"), "psi%3Amean_radius");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
