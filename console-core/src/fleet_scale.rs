//! Resizing a fleet. A host joins already serving the fleet's version: it is deployed by the
//! single-host engine (steps, candidate check, health gate) while the balancer keeps it out of the
//! pool, then put in and must pass the balancer's health check. A host leaves drained: no new
//! requests, those in flight finish, then its service stops. Hosts are added after the last one and
//! removed from the last one back, so a fleet of N is always its first N hosts. Each resize is one
//! rollout (`scale`) in the history with a row per host (`add` or `remove`).

use crate::balancer::Balancer;
use crate::engine::{Engine, EngineError};
use crate::fleet::{Fleet, Member, RolloutReport};

/// What a resize did, and the fleet's size after it (the hosts that joined or are still in).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScaleReport {
    pub report: RolloutReport,
    pub hosts: usize,
}

fn check(fleet: &Fleet, size: usize, what: &str) -> Result<(), EngineError> {
    fleet.validate().map_err(EngineError::Refused)?;
    let n = fleet.members.len();
    if size == 0 || size >= n {
        return Err(EngineError::Refused(format!(
            "fleet `{}` has {n} hosts: {what} needs 1 to {} of them as they are now",
            fleet.name,
            n.saturating_sub(1)
        )));
    }
    Ok(())
}

/// Adds `fleet.members[from..]` (each already a server of the balancer, out of the pool) with
/// `tag`, one at a time. Stops at the first host that cannot join: its service is stopped and it
/// stays out; the hosts that joined before it stay.
pub async fn scale_up(
    engine: &Engine,
    fleet: &Fleet,
    balancer: &dyn Balancer,
    from: usize,
    tag: &str,
) -> Result<ScaleReport, EngineError> {
    check(fleet, from, "adding hosts")?;
    crate::target::validate_tag(tag).map_err(EngineError::Refused)?;
    let history = engine.history();
    let id = begin(engine, fleet, tag)?;
    let mut size = from;
    let mut failure = None;
    for m in &fleet.members[from..] {
        let seq = history.rollout_host_started(id, &m.name, "add")?;
        let (deployment, outcome) = join(engine, fleet, balancer, m, tag).await?;
        history.rollout_host_finished(
            id,
            seq,
            deployment,
            outcome.is_ok(),
            outcome.as_ref().err().map(String::as_str),
        )?;
        match outcome {
            Ok(()) => size += 1,
            Err(e) => {
                failure = Some(format!("{}: {e}", m.name));
                break;
            }
        }
    }
    end(engine, fleet, id, tag, "add", size, failure)
}

/// One new host: deployed out of the pool, then in. The deployment's id, and why it did not join.
async fn join(
    engine: &Engine,
    fleet: &Fleet,
    balancer: &dyn Balancer,
    m: &Member,
    tag: &str,
) -> Result<(Option<i64>, Result<(), String>), EngineError> {
    let d = match engine.deploy(&m.target, tag).await {
        Ok(d) => d,
        Err(EngineError::Refused(why)) => return Ok((None, Err(why))),
        Err(e) => return Err(e),
    };
    let joined = if d.status == "succeeded" {
        balancer
            .enable(&m.name, fleet.healthy_timeout)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err(d
            .error
            .clone()
            .unwrap_or_else(|| format!("deployment #{} failed", d.id)))
    };
    if let Err(why) = joined {
        // Out of the pool again and stopped, whatever the engine left running (best effort: the
        // reason above is the one told).
        let _ = balancer.drain(&m.name, fleet.drain_timeout).await;
        let _ = engine.stop_service(&m.target).await;
        return Ok((Some(d.id), Err(why)));
    }
    Ok((Some(d.id), Ok(())))
}

/// Removes the hosts after the first `keep`, the last one first: drained, then stopped. Stops at
/// the first host that cannot leave (it stays in the pool if it could not be drained).
pub async fn scale_down(
    engine: &Engine,
    fleet: &Fleet,
    balancer: &dyn Balancer,
    keep: usize,
) -> Result<ScaleReport, EngineError> {
    check(fleet, keep, "keeping hosts")?;
    let history = engine.history();
    // The rollout names the version the fleet serves (its first host's), for the history.
    let tag = history
        .serving(&fleet.members[0].target.name)?
        .map_or_else(|| "none".to_string(), |d| d.tag);
    let id = begin(engine, fleet, &tag)?;
    let mut size = fleet.members.len();
    let mut failure = None;
    for m in fleet.members[keep..].iter().rev() {
        let seq = history.rollout_host_started(id, &m.name, "remove")?;
        let outcome = match balancer.drain(&m.name, fleet.drain_timeout).await {
            Err(e) => {
                let _ = balancer.enable(&m.name, fleet.healthy_timeout).await;
                Err(format!("not drained, left in the pool: {e}"))
            }
            Ok(()) => engine.stop_service(&m.target).await?.map(|()| size -= 1),
        };
        history.rollout_host_finished(
            id,
            seq,
            None,
            outcome.is_ok(),
            outcome.as_ref().err().map(String::as_str),
        )?;
        if let Err(e) = outcome {
            failure = Some(format!("{}: {e}", m.name));
            break;
        }
    }
    end(engine, fleet, id, &tag, "remove", size, failure)
}

fn begin(engine: &Engine, fleet: &Fleet, tag: &str) -> Result<i64, EngineError> {
    engine
        .history()
        .begin_rollout(&fleet.name, tag, "scale")
        .map_err(crate::fleet::busy_fleet)
}

fn end(
    engine: &Engine,
    fleet: &Fleet,
    id: i64,
    tag: &str,
    what: &str,
    size: usize,
    failure: Option<String>,
) -> Result<ScaleReport, EngineError> {
    let history = engine.history();
    let status = if failure.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    history.finish_rollout(id, status, failure.as_deref())?;
    engine.audit_fleet(
        &fleet.name,
        &format!(
            "{what} hosts ({tag}): {status}, the fleet has {size} host(s){}",
            failure
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    );
    Ok(ScaleReport {
        report: RolloutReport {
            rollout: history.rollout(id)?.expect("the rollout was just recorded"),
            hosts: history.rollout_hosts(id)?,
        },
        hosts: size,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::balancer::Recording as Recorder;
    use crate::history::History;
    use crate::target::{Host, Target};

    /// A fleet of `n` local hosts whose "compose" is `compose` (a real program run in a real
    /// directory: `true` stops a service successfully, `false` fails to).
    fn fleet(dir: &std::path::Path, n: usize, compose: &str) -> Fleet {
        let members = (1..=n)
            .map(|i| {
                let mut t = Target::new(
                    format!("f/h{i}"),
                    Host::Local,
                    dir.to_string_lossy(),
                    "mlops-test/absent",
                    20_000 + 2 * i as u16,
                );
                t.compose = vec![compose.into()];
                t.ready_timeout = Duration::from_secs(1);
                Member {
                    name: format!("h{i}"),
                    target: t,
                }
            })
            .collect();
        Fleet::new("f", members)
    }

    fn engine() -> Engine {
        Engine::new(Arc::new(History::in_memory().unwrap())).unwrap()
    }

    fn actions(r: &ScaleReport) -> Vec<(String, String, String)> {
        r.report
            .hosts
            .iter()
            .map(|h| (h.host.clone(), h.action.clone(), h.status.clone()))
            .collect()
    }

    #[tokio::test]
    async fn hosts_leave_drained_last_first_and_a_stuck_one_stays_in_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine();
        let b = Recorder::default();
        let r = scale_down(&e, &fleet(dir.path(), 4, "true"), &b, 2)
            .await
            .unwrap();
        assert_eq!(r.hosts, 2);
        assert_eq!(r.report.rollout.strategy, "scale");
        assert_eq!(r.report.rollout.status, "succeeded");
        assert_eq!(
            actions(&r),
            [
                ("h4".into(), "remove".into(), "succeeded".into()),
                ("h3".into(), "remove".into(), "succeeded".into())
            ]
        );
        assert_eq!(*b.calls.lock().unwrap(), ["drain h4", "drain h3"]);

        // h3 cannot be drained: it goes back into the pool, and the fleet keeps three hosts.
        let b = Recorder {
            stuck: vec!["h3"],
            ..Recorder::default()
        };
        let r = scale_down(&e, &fleet(dir.path(), 4, "true"), &b, 1)
            .await
            .unwrap();
        assert_eq!(r.hosts, 3);
        assert_eq!(r.report.rollout.status, "failed");
        assert!(r
            .report
            .rollout
            .error
            .as_deref()
            .unwrap()
            .starts_with("h3: not drained"));
        assert_eq!(
            *b.calls.lock().unwrap(),
            ["drain h4", "drain h3", "enable h3"]
        );

        // A service that cannot be stopped is named with the command's exit.
        let r = scale_down(&e, &fleet(dir.path(), 2, "false"), &Recorder::default(), 1)
            .await
            .unwrap();
        assert_eq!(r.hosts, 2);
        assert!(
            r.report
                .rollout
                .error
                .as_deref()
                .unwrap()
                .contains("exited with 1"),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_host_that_fails_its_deploy_never_joins_and_the_size_stays() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine();
        let b = Recorder::default();
        // The image does not exist here: the new host's deploy fails.
        let r = scale_up(&e, &fleet(dir.path(), 3, "true"), &b, 2, "v1")
            .await
            .unwrap();
        assert_eq!(r.hosts, 2);
        assert_eq!(r.report.rollout.status, "failed");
        assert_eq!(actions(&r), [("h3".into(), "add".into(), "failed".into())]);
        let calls = b.calls.lock().unwrap().clone();
        assert!(!calls.iter().any(|c| c.starts_with("enable")), "{calls:?}");
    }

    #[tokio::test]
    async fn sizes_outside_the_fleet_are_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine();
        let f = fleet(dir.path(), 3, "true");
        let b = Recorder::default();
        for keep in [0, 3, 4] {
            let err = scale_down(&e, &f, &b, keep).await.unwrap_err();
            assert!(err.to_string().contains("1 to 2"), "{err}");
        }
        assert!(scale_up(&e, &f, &b, 3, "v1").await.is_err());
        assert!(scale_up(&e, &f, &b, 1, "bad tag!").await.is_err());
        assert!(b.calls.lock().unwrap().is_empty());
        assert!(e.history().rollouts("f", 10).unwrap().is_empty());
    }
}
