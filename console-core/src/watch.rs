//! The post-switch watch: for a while after a new version takes over, the console checks that
//! version's own critical alert rules (`GET /v1/monitoring/alerts`) against its monitoring summary
//! over the whole minutes since the switch (see [`watch`]), every few seconds. A critical rule that
//! holds, once the window has enough requests to judge, or a service that stops answering, ends the
//! watch with a breach, and the engine rolls the deploy back like one that failed its health gate.
//!
//! The service evaluates the same rules itself every minute over their own windows (which still
//! hold the previous version's minutes right after a switch); the watch judges only what the new
//! version served, and within seconds.

use std::time::Duration;

use serde_json::Value;

use crate::exec::Executor;
use crate::health::http_get_auth;
use crate::secret::Secret;

/// Fewest requests since the switch before a rule can breach: a rollback is drastic, and one bad
/// request among three is not a 33 % error rate worth one.
pub const MIN_REQUESTS: u64 = 20;
/// Time between two polls.
pub const EVERY: Duration = Duration::from_secs(5);
/// Consecutive polls the service may miss before the watch calls it down.
pub const MISSES_ALLOWED: u32 = 3;

/// How the watch ran out.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// No critical rule held for the whole watch: `polls` judged polls over `judged_secs`.
    Passed { polls: u32, judged_secs: u64 },
    /// A critical rule held.
    Breached {
        rule: String,
        title: String,
        /// `system.error_rate is 0.4 (> 0.05) over 35 s, 40 requests`.
        detail: String,
    },
    /// The service stopped answering.
    Unreachable(String),
}

/// The value at a dotted path of the summary; an array element is named by its `name` or `class`
/// (the service's own rule paths: `data.features.mean_radius.drift.psi`).
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| match cur {
        Value::Object(m) => m.get(key),
        Value::Array(items) => items.iter().find(|i| i["name"] == key || i["class"] == key),
        _ => None,
    })
}

fn holds(op: &str, value: &Value, threshold: &Value) -> bool {
    if op == "is" {
        return value == threshold;
    }
    let (Some(v), Some(t)) = (value.as_f64(), threshold.as_f64()) else {
        return false;
    };
    match op {
        ">" => v > t,
        ">=" => v >= t,
        "<" => v < t,
        "<=" => v <= t,
        _ => false,
    }
}

/// The first critical rule of `alerts` (the service's answer) that holds on `summary`, or None.
/// Nothing breaches before [`MIN_REQUESTS`] requests.
pub fn breach(alerts: &Value, summary: &Value) -> Option<Verdict> {
    let requests = summary["system"]["requests"].as_u64().unwrap_or(0);
    if requests < MIN_REQUESTS {
        return None;
    }
    let seconds = summary["window"]["seconds"].as_i64().unwrap_or(0);
    alerts["rules"].as_array()?.iter().find_map(|r| {
        let metric = r["metric"].as_str()?;
        let op = r["op"].as_str()?;
        let value = lookup(summary, metric).filter(|v| !v.is_null())?;
        (r["severity"] == "critical" && holds(op, value, &r["threshold"])).then(|| {
            Verdict::Breached {
                rule: r["id"].as_str().unwrap_or_default().to_string(),
                title: r["title"].as_str().unwrap_or_default().to_string(),
                detail: format!(
                    "{metric} is {value} ({op} {}) over {seconds} s, {requests} requests",
                    r["threshold"]
                ),
            }
        })
    })
}

async fn get_json(
    exec: &dyn Executor,
    port: u16,
    path: &str,
    token: Option<&Secret>,
) -> Result<Value, String> {
    let mut s = exec.open_tcp(port).await.map_err(|e| e.to_string())?;
    let r = http_get_auth(&mut *s, path, token).await?;
    if r.status != 200 {
        return Err(format!("{path} answered {}", r.status));
    }
    serde_json::from_str(&r.body).map_err(|e| format!("{path} is not JSON: {e}"))
}

/// Watches the service on `port` for `duration` of judged time, polling `every`.
///
/// The service keeps minute buckets and restores the previous version's minutes from its state
/// volume, so the minute of the switch also holds what the previous version served. Judging starts
/// at the first whole minute after the switch, by the service's own clock (read from its first
/// answer), and each poll asks for exactly the seconds since then; `duration` counts from there.
pub async fn watch(
    exec: &dyn Executor,
    port: u16,
    token: Option<&Secret>,
    duration: Duration,
    every: Duration,
    kept_rules: Option<&Value>,
) -> Verdict {
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    // (the first judged second by the service's clock, the service's clock minus ours)
    let mut clock: Option<(i64, i64)> = None;
    let (mut polls, mut misses) = (0u32, 0u32);
    loop {
        tokio::time::sleep(every).await;
        let seen = async {
            let Some((boundary, offset)) = clock else {
                let s = get_json(exec, port, "/v1/monitoring/summary?window=60s", token).await?;
                let to = s["window"]["to"]
                    .as_i64()
                    .ok_or("the summary has no window.to")?;
                clock = Some(((to / 60 + 1) * 60, to - unix()));
                return Ok(None);
            };
            // The service's windows are whole minute buckets, the current one included: ask for
            // the minutes from the boundary's on.
            let now = unix() + offset;
            if now < boundary {
                return Ok(None);
            }
            let minutes = now / 60 - boundary / 60 + 1;
            // The rules the console keeps for the target (the new version may not have them yet),
            // else the version's own.
            let alerts = match kept_rules {
                Some(rules) => serde_json::json!({ "rules": rules }),
                None => get_json(exec, port, "/v1/monitoring/alerts", token).await?,
            };
            let summary = get_json(
                exec,
                port,
                &format!("/v1/monitoring/summary?window={}s", minutes * 60),
                token,
            )
            .await?;
            // A window reaching back past the boundary (the clocks moved) is not judged.
            let to = summary["window"]["to"].as_i64().unwrap_or(0);
            if to / 60 - minutes + 1 < boundary / 60 {
                return Ok(None);
            }
            let since = to - boundary;
            polls += 1;
            Ok::<_, String>(breach(&alerts, &summary).map(|b| (b, since)))
        }
        .await;
        match seen {
            Ok(Some((b, _))) => return b,
            Ok(None) => misses = 0,
            Err(e) => {
                misses += 1;
                if misses >= MISSES_ALLOWED {
                    return Verdict::Unreachable(format!(
                        "{misses} polls in a row failed, the last: {e}"
                    ));
                }
            }
        }
        if let Some((boundary, offset)) = clock {
            let judged = unix() + offset - boundary;
            if judged >= duration.as_secs() as i64 {
                return Verdict::Passed {
                    polls,
                    judged_secs: judged as u64,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alerts() -> Value {
        json!({"rules": [
            {"id": "latency-p99", "title": "p99", "metric": "system.predict_latency_seconds.p99",
             "op": ">", "threshold": 0.25, "severity": "warning"},
            {"id": "error-rate", "title": "Error rate above 5 %", "metric": "system.error_rate",
             "op": ">", "threshold": 0.05, "severity": "critical"},
            {"id": "radius-psi", "title": "radius", "metric": "data.features.mean_radius.drift.verdict",
             "op": "is", "threshold": "drift", "severity": "critical"}
        ]})
    }

    fn summary(requests: u64, error_rate: f64, verdict: &str) -> Value {
        json!({"window": {"seconds": 35},
               "system": {"requests": requests, "error_rate": error_rate,
                          "predict_latency_seconds": {"p99": 9.0}},
               "data": {"features": [{"name": "mean_texture", "drift": {"verdict": "drift"}},
                                     {"name": "mean_radius", "drift": {"verdict": verdict}}]}})
    }

    #[test]
    fn a_critical_rule_that_holds_breaches_and_names_itself() {
        let b = breach(&alerts(), &summary(40, 0.4, "ok")).unwrap();
        assert_eq!(
            b,
            Verdict::Breached {
                rule: "error-rate".into(),
                title: "Error rate above 5 %".into(),
                detail: "system.error_rate is 0.4 (> 0.05) over 35 s, 40 requests".into(),
            }
        );
        // Array elements by name; `is` compares verdicts.
        let Some(Verdict::Breached { rule, .. }) = breach(&alerts(), &summary(40, 0.0, "drift"))
        else {
            panic!("no breach")
        };
        assert_eq!(rule, "radius-psi");
    }

    #[test]
    fn warnings_small_windows_and_missing_values_never_breach() {
        // p99 of 9 s breaks a warning rule only.
        assert_eq!(breach(&alerts(), &summary(40, 0.01, "ok")), None);
        assert_eq!(
            breach(&alerts(), &summary(MIN_REQUESTS - 1, 1.0, "drift")),
            None
        );
        let no_rate = json!({"system": {"requests": 100, "error_rate": null}});
        assert_eq!(breach(&alerts(), &no_rate), None);
        assert_eq!(breach(&json!({}), &summary(40, 1.0, "drift")), None);
    }

    #[test]
    fn lookup_follows_objects_and_named_array_elements() {
        let s = summary(1, 0.5, "warning");
        assert_eq!(lookup(&s, "system.error_rate"), Some(&json!(0.5)));
        assert_eq!(
            lookup(&s, "data.features.mean_radius.drift.verdict"),
            Some(&json!("warning"))
        );
        assert_eq!(lookup(&s, "data.features.nope.drift"), None);
        assert_eq!(lookup(&s, "system.error_rate.deeper"), None);
    }
}
