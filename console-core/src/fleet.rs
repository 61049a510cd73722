//! A fleet: several hosts running the same compose project behind a load balancer, deployed
//! batch by batch so that the service never stops answering.
//!
//! A rolling deploy takes at most `max_unavailable` hosts out of the pool at a time: drain each
//! (no new requests, wait for those in flight), deploy with the single-host engine (its steps,
//! candidate check and health gate), put it back and wait until the balancer's own health check
//! passes, then go on. A host that fails its gate is returned to its previous version by the
//! engine (automatic rollback) and put back; the rollout stops there and every host already on the
//! new version is rolled back the same way, one at a time. The history keeps one rollout with a
//! row per host action, each pointing at that host's deployment.
//!
//! A canary deploy moves the first host alone, keeps it in the pool for a watch period, compares
//! its monitoring with the other hosts' ([`crate::canary`]) and then promotes the version to the
//! rest the same way, or returns the canary to its previous version.

use std::time::Duration;

use serde::Serialize;

use crate::balancer::Balancer;
use crate::canary;
use crate::engine::{Engine, EngineError};
use crate::history::{Deployment, HistoryError};
use crate::rollout_history::{Rollout, RolloutHost};
use crate::service::ServiceClient;
use crate::target::Target;

/// One host of a fleet: its name in the balancer's pool and the single-host target that reaches it.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub target: Target,
}

#[derive(Clone, Debug)]
pub struct Fleet {
    /// The fleet's name in the history (each member's target has a name of its own).
    pub name: String,
    pub members: Vec<Member>,
    /// Hosts out of the pool at once (at least 1, fewer than the fleet's size unless it has one).
    pub max_unavailable: usize,
    /// How long a drained host may take to finish the requests it has.
    pub drain_timeout: Duration,
    /// How long a host put back may take to pass the balancer's health check.
    pub healthy_timeout: Duration,
}

impl Fleet {
    pub fn new(name: impl Into<String>, members: Vec<Member>) -> Fleet {
        Fleet {
            name: name.into(),
            members,
            max_unavailable: 1,
            drain_timeout: Duration::from_secs(30),
            healthy_timeout: Duration::from_secs(30),
        }
    }

    /// The fleet's settings make sense: 1 to 100 hosts with distinct names and targets, and at
    /// least one host left in the pool while a batch deploys.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.members.len();
        if n == 0 || n > 100 {
            return Err(format!(
                "fleet `{}` has {n} hosts; a fleet has 1 to 100",
                self.name
            ));
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].iter().any(|o| o.name == m.name) {
                return Err(format!(
                    "fleet `{}`: host name `{}` appears twice",
                    self.name, m.name
                ));
            }
            if self.members[..i]
                .iter()
                .any(|o| o.target.name == m.target.name)
            {
                return Err(format!(
                    "fleet `{}`: target `{}` appears twice",
                    self.name, m.target.name
                ));
            }
        }
        if self.max_unavailable == 0 || (n > 1 && self.max_unavailable >= n) {
            return Err(format!(
                "fleet `{}`: {} hosts out of the pool at once would leave {} serving; use 1 to {}",
                self.name,
                self.max_unavailable,
                n.saturating_sub(self.max_unavailable),
                n.saturating_sub(1).max(1)
            ));
        }
        Ok(())
    }
}

/// What a rollout did: its record and its host actions in order.
#[derive(Clone, Debug, Serialize)]
pub struct RolloutReport {
    pub rollout: Rollout,
    pub hosts: Vec<RolloutHost>,
}

/// Why one host's deploy failed; the engine returned it to its previous version, if it had one
/// (`serving`).
struct HostFailure {
    message: String,
    serving: bool,
}

/// Deploys `tag` to every host of `fleet`, `max_unavailable` at a time, through `balancer`.
/// Returns the rollout's record (`succeeded`, or `rolled-back` / `failed` with the reason).
pub async fn rolling_deploy(
    engine: &Engine,
    fleet: &Fleet,
    balancer: &dyn Balancer,
    tag: &str,
) -> Result<RolloutReport, EngineError> {
    let (id, before) = begin(engine, fleet, tag, "rolling")?;
    let mut p = Progress::default();
    let all: Vec<usize> = (0..fleet.members.len()).collect();
    roll(engine, fleet, balancer, id, tag, &all, &mut p).await?;
    finish(
        engine,
        fleet,
        balancer,
        id,
        tag,
        "rolling deploy",
        &before,
        p,
    )
    .await
}

/// Deploys `tag` to the fleet's first host only and keeps it in the pool for `watch` from the next
/// whole minute; then compares those minutes of its monitoring with the other hosts' (`monitors`:
/// one client per host, in the fleet's order)
/// and either promotes the version to the rest, `max_unavailable` at a time, or returns the canary
/// to its previous version. The verdict and its figures are kept with the rollout.
pub async fn canary_deploy(
    engine: &Engine,
    fleet: &Fleet,
    balancer: &dyn Balancer,
    tag: &str,
    monitors: &[ServiceClient],
    watch: Duration,
    policy: &canary::Policy,
) -> Result<CanaryReport, EngineError> {
    if fleet.members.len() < 2 {
        return Err(EngineError::Refused(format!(
            "fleet `{}` has one host: a canary needs others to be compared with",
            fleet.name
        )));
    }
    if monitors.len() != fleet.members.len() {
        return Err(EngineError::Refused(format!(
            "{} monitoring clients for {} hosts",
            monitors.len(),
            fleet.members.len()
        )));
    }
    let (id, before) = begin(engine, fleet, tag, "canary")?;
    let mut p = Progress::default();
    roll(engine, fleet, balancer, id, tag, &[0], &mut p).await?;
    let mut verdict = None;
    if p.failure.is_none() {
        // The service keeps minute buckets and the canary's host served the old version until
        // now: the watch starts at the next whole minute, so that the minutes compared hold the
        // new version's requests only.
        let first_minute = crate::history::now_ms() / 60_000 + 1;
        let until_ms = first_minute * 60_000 + watch.as_millis() as i64;
        let wait = (until_ms - crate::history::now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let minutes = crate::history::now_ms() / 60_000 - first_minute + 1;
        let window = minutes.max(1) * 60;
        let read = futures_util::future::join_all(monitors.iter().map(|m| m.summary(window))).await;
        let v = match read.into_iter().collect::<Result<Vec<_>, String>>() {
            Ok(summaries) => canary::compare(&summaries[0], &summaries[1..], policy),
            Err(e) => canary::Verdict {
                promote: false,
                figures: Vec::new(),
                reason: Some(format!("the hosts' monitoring could not be read: {e}")),
            },
        };
        engine.history().set_rollout_verdict(
            id,
            &serde_json::to_string(&v).expect("a verdict serializes"),
        )?;
        engine.audit_fleet(
            &fleet.name,
            &format!(
                "canary of {tag} on {}: {}",
                fleet.members[0].name,
                match &v.reason {
                    None => "promoted".to_string(),
                    Some(r) => format!("refused: {r}"),
                }
            ),
        );
        if let Some(reason) = &v.reason {
            p.failure = Some(format!("canary refused: {reason}"));
        } else {
            let rest: Vec<usize> = (1..fleet.members.len()).collect();
            roll(engine, fleet, balancer, id, tag, &rest, &mut p).await?;
        }
        verdict = Some(v);
    }
    let report = finish(engine, fleet, balancer, id, tag, "canary", &before, p).await?;
    Ok(CanaryReport { report, verdict })
}

/// A canary's rollout and the comparison it ended on (None when the canary's own deploy failed).
#[derive(Clone, Debug, Serialize)]
pub struct CanaryReport {
    pub report: RolloutReport,
    pub verdict: Option<canary::Verdict>,
}

/// Where a rollout stands: hosts on the new version, whether any host was deployed to (so
/// something may have had to be returned), and why it stopped.
#[derive(Default)]
struct Progress {
    updated: Vec<usize>,
    touched: bool,
    failure: Option<String>,
}

/// Checks the request and records the rollout; returns its id and what each host serves now (the
/// version to return to if the rollout stops).
fn begin(
    engine: &Engine,
    fleet: &Fleet,
    tag: &str,
    strategy: &str,
) -> Result<(i64, Vec<Option<Deployment>>), EngineError> {
    fleet.validate().map_err(EngineError::Refused)?;
    crate::target::validate_tag(tag).map_err(EngineError::Refused)?;
    let history = engine.history();
    let mut before = Vec::with_capacity(fleet.members.len());
    for m in &fleet.members {
        before.push(history.serving(&m.target.name)?);
    }
    let id = history
        .begin_rollout(&fleet.name, tag, strategy)
        .map_err(busy_fleet)?;
    Ok((id, before))
}

/// Deploys `tag` to the hosts `indices`, `max_unavailable` at a time; stops at the first failure.
async fn roll(
    engine: &Engine,
    fleet: &Fleet,
    balancer: &dyn Balancer,
    id: i64,
    tag: &str,
    indices: &[usize],
    p: &mut Progress,
) -> Result<(), EngineError> {
    for batch in indices.chunks(fleet.max_unavailable.max(1)) {
        // Out of the pool first, all of the batch, so its hosts deploy side by side.
        let mut drained = Vec::new();
        for &i in batch {
            let m = &fleet.members[i];
            match balancer.drain(&m.name, fleet.drain_timeout).await {
                Ok(()) => drained.push(i),
                Err(e) => {
                    p.failure = Some(format!("{}: {e}", m.name));
                    // Back in the pool as it was (best effort: the error above is the one told).
                    let _ = balancer.enable(&m.name, fleet.healthy_timeout).await;
                    break;
                }
            }
        }
        if let Some(f) = &mut p.failure {
            for &i in &drained {
                let m = &fleet.members[i];
                if let Err(e) = balancer.enable(&m.name, fleet.healthy_timeout).await {
                    f.push_str(&format!("; {}: {e}", m.name));
                }
            }
            return Ok(());
        }
        p.touched = true;
        let turns = futures_util::future::join_all(
            drained
                .iter()
                .map(|&i| deploy_host(engine, id, &fleet.members[i], tag)),
        )
        .await;
        for (&i, turn) in drained.iter().zip(turns) {
            let m = &fleet.members[i];
            let back = match turn? {
                Ok(()) => {
                    p.updated.push(i);
                    true
                }
                Err(HostFailure { message, serving }) => {
                    p.failure.get_or_insert(format!("{}: {message}", m.name));
                    serving
                }
            };
            // A host with no version left (its first deploy failed) stays out of the pool.
            if back {
                if let Err(e) = balancer.enable(&m.name, fleet.healthy_timeout).await {
                    p.failure.get_or_insert(format!("{}: {e}", m.name));
                }
            }
        }
        if p.failure.is_some() {
            return Ok(());
        }
    }
    Ok(())
}

/// Ends rollout `id`: when it stopped, returns every host it moved to what it served before, host
/// by host; records the outcome and an audit line.
#[allow(clippy::too_many_arguments)]
async fn finish(
    engine: &Engine,
    fleet: &Fleet,
    balancer: &dyn Balancer,
    id: i64,
    tag: &str,
    what: &str,
    before: &[Option<Deployment>],
    p: Progress,
) -> Result<RolloutReport, EngineError> {
    let history = engine.history();
    let (status, error) = match p.failure {
        None => ("succeeded", None),
        Some(reason) => {
            let mut left = Vec::new();
            for &i in &p.updated {
                let m = &fleet.members[i];
                let Some(prev) = &before[i] else {
                    left.push(format!("{} (no earlier version)", m.name));
                    continue;
                };
                if let Err(e) = rollback_host(engine, balancer, fleet, id, m, prev).await? {
                    left.push(format!("{} ({e})", m.name));
                }
            }
            match (left.is_empty(), p.touched) {
                (true, true) => ("rolled-back", Some(reason)),
                (true, false) => ("failed", Some(format!("{reason}; no host was changed"))),
                (false, _) => (
                    "failed",
                    Some(format!(
                        "{reason}; not returned to its previous version: {}",
                        left.join(", ")
                    )),
                ),
            }
        }
    };
    history.finish_rollout(id, status, error.as_deref())?;
    engine.audit_fleet(
        &fleet.name,
        &format!(
            "{what} of {tag} across {} hosts: {status}{}",
            fleet.members.len(),
            error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    );
    Ok(RolloutReport {
        rollout: history.rollout(id)?.expect("the rollout was just recorded"),
        hosts: history.rollout_hosts(id)?,
    })
}

/// One host's deploy inside rollout `id` (the host is already out of the pool).
async fn deploy_host(
    engine: &Engine,
    id: i64,
    m: &Member,
    tag: &str,
) -> Result<Result<(), HostFailure>, EngineError> {
    let history = engine.history();
    let seq = history.rollout_host_started(id, &m.name, "deploy")?;
    let d = match engine.deploy(&m.target, tag).await {
        Ok(d) => d,
        Err(EngineError::Refused(why)) => {
            history.rollout_host_finished(id, seq, None, false, Some(&why))?;
            let serving = history.serving(&m.target.name)?.is_some();
            return Ok(Err(HostFailure {
                message: why,
                serving,
            }));
        }
        Err(e) => return Err(e),
    };
    let ok = d.status == "succeeded";
    let detail = d.error.clone();
    history.rollout_host_finished(id, seq, Some(d.id), ok, detail.as_deref())?;
    if ok {
        return Ok(Ok(()));
    }
    let serving = history.serving(&m.target.name)?.is_some();
    Ok(Err(HostFailure {
        message: detail.unwrap_or_else(|| format!("deployment #{} failed", d.id)),
        serving,
    }))
}

/// Returns one host to `prev`: out of the pool, rollback, back in. The outer error is the
/// history's; the inner one says why this host could not be returned.
async fn rollback_host(
    engine: &Engine,
    balancer: &dyn Balancer,
    fleet: &Fleet,
    id: i64,
    m: &Member,
    prev: &Deployment,
) -> Result<Result<(), String>, EngineError> {
    let history = engine.history();
    let seq = history.rollout_host_started(id, &m.name, "rollback")?;
    let turn = async {
        balancer
            .drain(&m.name, fleet.drain_timeout)
            .await
            .map_err(|e| (None, e.to_string()))?;
        let d = match engine.rollback(&m.target, Some(prev.id)).await {
            Ok(d) => d,
            Err(EngineError::Refused(why)) => return Err((None, why)),
            Err(e) => return Err((None, e.to_string())),
        };
        if d.status != "succeeded" {
            return Err((
                Some(d.id),
                d.error.unwrap_or_else(|| "rollback failed".into()),
            ));
        }
        balancer
            .enable(&m.name, fleet.healthy_timeout)
            .await
            .map_err(|e| (Some(d.id), e.to_string()))?;
        Ok(d.id)
    };
    let result: Result<i64, (Option<i64>, String)> = turn.await;
    match result {
        Ok(dep) => {
            history.rollout_host_finished(id, seq, Some(dep), true, None)?;
            Ok(Ok(()))
        }
        Err((dep, why)) => {
            history.rollout_host_finished(id, seq, dep, false, Some(&why))?;
            Ok(Err(why))
        }
    }
}

pub(crate) fn busy_fleet(e: HistoryError) -> EngineError {
    match e {
        HistoryError::Busy { target, id, tag } => EngineError::Refused(format!(
            "a rollout is already running on fleet `{target}` (rollout #{id}, {tag}); wait for it to finish"
        )),
        e => EngineError::History(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Host;

    fn member(i: usize) -> Member {
        Member {
            name: format!("h{i}"),
            target: Target::new(format!("fleet/h{i}"), Host::Local, "/tmp/x", "img", 8000),
        }
    }

    #[test]
    fn a_fleet_keeps_a_host_serving_and_names_hosts_once() {
        let mut f = Fleet::new("prod", (1..=3).map(member).collect());
        f.validate().unwrap();
        f.max_unavailable = 3;
        assert!(f.validate().unwrap_err().contains("would leave 0 serving"));
        f.max_unavailable = 0;
        assert!(f.validate().is_err());
        f.max_unavailable = 2;
        f.validate().unwrap();
        f.members.push(member(1));
        assert!(f.validate().unwrap_err().contains("`h1` appears twice"));
        let one = Fleet::new("solo", vec![member(1)]);
        one.validate().unwrap();
        assert!(Fleet::new("none", vec![]).validate().is_err());
    }

    use crate::balancer::Recording as Stuck;

    /// A host that cannot be drained stops the rollout before anything is deployed, and every
    /// host taken out of the pool for it goes back.
    #[tokio::test]
    async fn a_host_that_will_not_drain_stops_the_rollout_untouched() {
        let engine = Engine::new(std::sync::Arc::new(
            crate::history::History::in_memory().unwrap(),
        ))
        .unwrap();
        let mut fleet = Fleet::new("prod", (1..=3).map(member).collect());
        fleet.max_unavailable = 2;
        let lb = Stuck {
            stuck: vec!["h2"],
            ..Stuck::default()
        };
        let r = rolling_deploy(&engine, &fleet, &lb, "v2").await.unwrap();
        assert_eq!(r.rollout.status, "failed");
        let error = r.rollout.error.unwrap();
        assert!(
            error.starts_with("h2: requests still in flight after 30 s")
                && error.ends_with("no host was changed"),
            "{error}"
        );
        assert!(r.hosts.is_empty());
        assert_eq!(
            *lb.calls.lock().unwrap(),
            ["drain h1", "drain h2", "enable h2", "enable h1"]
        );
        // Nothing is left running: the next rollout may start.
        assert!(engine
            .history()
            .begin_rollout("prod", "v3", "rolling")
            .is_ok());
        let bad = rolling_deploy(&engine, &Fleet::new("x", vec![]), &lb, "v2").await;
        assert!(matches!(bad, Err(EngineError::Refused(m)) if m.contains("1 to 100")));
    }
}
