//! A fleet of three hosts behind HAProxy, deployed batch by batch under steady load: three sshd
//! instances on loopback, each with its own compose directory and ports on this machine's Docker
//! engine, Debian's HAProxy in front (checks on `/readyz`, driven through its runtime API), and the
//! replay tool sending traffic through HAProxy the whole time. Every rollout must leave the replay
//! with zero failed requests.
//!
//! One test, in order: v1 to an empty fleet; v2 under load (every host moves, zero failures); the
//! broken image under load (stops at the first host, the fleet stays on v2, zero failures); v1 with
//! the third host unable to start a candidate (the first two move, the third fails, both are rolled
//! back host by host, zero failures); a canary of a release whose predictions moved (refused by the
//! comparison with the other hosts, figures kept, the canary returned to v2); a canary of v1
//! (promoted to every host); the fleet resized under load, a fourth host joining on v1 and two
//! leaving drained. scripts/test.sh runs this binary beside the rest of the suite.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use console_core::balancer::{Balancer, Haproxy};
use console_core::canary::Policy;
use console_core::fleet::{canary_deploy, rolling_deploy, Fleet, Member, RolloutReport};
use console_core::fleet_scale::{scale_down, scale_up};
use console_core::service::ServiceClient;
use console_core::Secret;
use support::bed::{answering, Bed};
use support::haproxy::Haproxy as HaproxyProcess;

const TOKEN: &str = "fleet-test-monitoring-token-0123456789";

fn docker_or_skip() -> bool {
    support::run_here_with_docker("fleet")
}

/// The replay tool: `$MLOPS_REPLAY_BIN`, else `target/<profile>/replay` beside this test.
fn replay_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MLOPS_REPLAY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("replay");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --release -p traffic-replay",
        bin.display()
    );
    bin
}

/// Steady traffic through the balancer until [`Load::finish`].
struct Load {
    child: Child,
}

impl Load {
    fn start(port: u16) -> Load {
        let child = Command::new(replay_binary())
            .args(["--url", &format!("http://127.0.0.1:{port}")])
            .args(["--scenario", "normal", "--rate", "40", "--concurrency", "4"])
            .args(["--duration", "15m", "--progress-every", "60s", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the replay tool");
        Load { child }
    }

    /// Stops the replay (SIGINT: it abandons what is in flight and prints its summary).
    fn finish(self) -> serde_json::Value {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success(), "kill -INT {pid}");
        let out = self.child.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "the replay's summary is not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// Every predict request answered 200 (no 5xx, no connection error, nothing unexpected).
fn assert_no_failures(summary: &serde_json::Value, what: &str) -> u64 {
    let n = |k: &str| summary[k].as_u64().unwrap_or(0);
    let failed = n("server_errors") + n("connection_errors") + n("unexpected") + n("rejected");
    assert_eq!(
        failed,
        0,
        "{what}: failed requests under load: {}",
        serde_json::to_string_pretty(summary).unwrap()
    );
    assert!(
        n("accepted") >= 100,
        "{what}: too little traffic: {summary}"
    );
    n("accepted")
}

fn report_rows(r: &RolloutReport) -> Vec<(String, String, String)> {
    r.hosts
        .iter()
        .map(|h| (h.host.clone(), h.action.clone(), h.status.clone()))
        .collect()
}

fn row(host: &str, action: &str, status: &str) -> (String, String, String) {
    (host.into(), action.into(), status.into())
}

/// Whether every host named is UP in the balancer.
async fn all_up(lb: &Haproxy, hosts: &[&str]) -> bool {
    let m = lb.members().await.unwrap();
    hosts
        .iter()
        .all(|h| m.iter().any(|m| m.name == *h && m.is_up()))
}

/// Every server's sessions since the balancer started, in the pool's order.
async fn sessions(lb: &Haproxy) -> Vec<u64> {
    lb.members()
        .await
        .unwrap()
        .iter()
        .map(|m| m.total_sessions)
        .collect()
}

/// Waits until the load has gone through every host in the pool at least once (`past`: what
/// [`sessions`] said before).
async fn wait_for_traffic(lb: &Haproxy, past: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = lb.members().await.unwrap();
        if m.iter()
            .zip(past)
            .filter(|(m, _)| m.status != "MAINT")
            .all(|(m, before)| m.total_sessions > *before + 5)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no traffic reached every host: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_deploys_keep_every_request_answered() {
    if !docker_or_skip() {
        return;
    }
    // Three hosts, and a fourth that joins when the fleet grows (in maintenance until then).
    let beds: Vec<Bed> = (0..4).map(|_| Bed::new(false)).collect();
    let all_names = ["h1", "h2", "h3", "h4"];
    let names = &all_names[..3];
    let haproxy = HaproxyProcess::start_with_pool(
        &all_names
            .iter()
            .zip(&beds)
            .map(|(n, b)| (*n, b.target.port))
            .collect::<Vec<_>>(),
        3,
    );
    let lb = Haproxy::new(haproxy.api.clone(), haproxy.backend.clone());
    let engine = &beds[0].engine;
    let mut fleet = Fleet::new(
        "fleet-test",
        names
            .iter()
            .zip(&beds)
            .map(|(n, b)| {
                let mut target = b.target.clone();
                // The canary reads each host's monitoring, which wants the token off loopback.
                target.api_token = Some(Secret::new(TOKEN.to_string()));
                Member {
                    name: n.to_string(),
                    target,
                }
            })
            .collect(),
    );
    let monitors: Vec<ServiceClient> = fleet
        .members
        .iter()
        .map(|m| {
            ServiceClient::new(([127, 0, 0, 1], m.target.port).into())
                .with_token(m.target.api_token.clone())
        })
        .collect();
    fleet.healthy_timeout = Duration::from_secs(30);
    let images = beds[0].images;
    let all_serve = |tag: &str| {
        for b in &beds[..3] {
            assert_eq!(
                answering(b.target.port).as_deref(),
                Some(tag),
                "{}",
                b.target.name
            );
        }
    };

    // --- v1 on an empty fleet.
    let t = Instant::now();
    let r = rolling_deploy(engine, &fleet, &lb, &images.v1)
        .await
        .unwrap();
    assert_eq!(r.rollout.status, "succeeded", "{r:#?}");
    all_serve(&images.v1);
    assert!(all_up(&lb, names).await);
    eprintln!("v1 to 3 hosts: {:.1} s", t.elapsed().as_secs_f64());

    // --- v2 under load: every host moves, every request is answered.
    let past = sessions(&lb).await;
    let load = Load::start(haproxy.port);
    wait_for_traffic(&lb, &past).await;
    let t = Instant::now();
    let r = rolling_deploy(engine, &fleet, &lb, &images.v2)
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let summary = load.finish();
    assert_eq!(r.rollout.status, "succeeded", "{r:#?}");
    assert_eq!(
        report_rows(&r),
        [
            row("h1", "deploy", "succeeded"),
            row("h2", "deploy", "succeeded"),
            row("h3", "deploy", "succeeded")
        ]
    );
    all_serve(&images.v2);
    let answered = assert_no_failures(&summary, "rolling deploy of v2");
    eprintln!(
        "v2 across 3 hosts under load: {secs:.1} s, {answered} requests answered, 0 failed, p99 {} ms",
        summary["latency_p99_ms"]
    );
    // Each host's own deployment is in the history under its own target.
    for (h, b) in r.hosts.iter().zip(&beds) {
        let d = engine
            .history()
            .deployment(h.deployment_id.unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.target.as_str(), d.tag.as_str()),
            (b.target.name.as_str(), images.v2.as_str())
        );
    }

    // --- the broken image: stops at the first host, the fleet stays on v2.
    let load = Load::start(haproxy.port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = rolling_deploy(engine, &fleet, &lb, &images.broken)
        .await
        .unwrap();
    let summary = load.finish();
    assert_eq!(r.rollout.status, "rolled-back", "{r:#?}");
    assert_eq!(report_rows(&r), [row("h1", "deploy", "failed")]);
    assert!(
        r.rollout.error.as_deref().unwrap().starts_with("h1: "),
        "{r:#?}"
    );
    all_serve(&images.v2);
    assert!(all_up(&lb, names).await);
    let answered = assert_no_failures(&summary, "rolling deploy of the broken image");
    eprintln!("broken image stopped at h1 under load: {answered} requests answered, 0 failed");

    // --- a host that fails after two have moved: they are rolled back, one at a time.
    let blocker = TcpListener::bind(("127.0.0.1", fleet.members[2].target.candidate_port.unwrap()))
        .expect("hold h3's candidate port");
    let load = Load::start(haproxy.port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = rolling_deploy(engine, &fleet, &lb, &images.v1)
        .await
        .unwrap();
    let summary = load.finish();
    drop(blocker);
    assert_eq!(r.rollout.status, "rolled-back", "{r:#?}");
    assert_eq!(
        report_rows(&r),
        [
            row("h1", "deploy", "succeeded"),
            row("h2", "deploy", "succeeded"),
            row("h3", "deploy", "failed"),
            row("h1", "rollback", "succeeded"),
            row("h2", "rollback", "succeeded"),
        ]
    );
    all_serve(&images.v2);
    assert!(all_up(&lb, names).await);
    let answered = assert_no_failures(&summary, "rolling deploy rolled back");
    eprintln!(
        "h3 failed, h1 and h2 rolled back under load: {answered} requests answered, 0 failed"
    );

    // --- a canary whose predictions moved: refused by the comparison, with the figures.
    // Latency limits are loose here: two cores run this machine's whole test suite meanwhile.
    let policy = Policy {
        max_p99_ratio: 4.0,
        p99_slack_s: 0.1,
        ..Policy::default()
    };
    let load = Load::start(haproxy.port);
    let t = Instant::now();
    let c = canary_deploy(
        engine,
        &fleet,
        &lb,
        &images.shifted,
        &monitors,
        Duration::from_secs(30),
        &policy,
    )
    .await
    .unwrap();
    let summary = load.finish();
    let verdict = c.verdict.expect("a verdict");
    assert!(!verdict.promote, "{verdict:#?}");
    let psi = &verdict.figures[2];
    assert!(psi.canary.unwrap() > policy.max_score_psi, "{verdict:#?}");
    assert!(
        verdict.figures[0].ok,
        "no more errors on the canary: {verdict:#?}"
    );
    assert_eq!(c.report.rollout.status, "rolled-back");
    assert!(
        c.report
            .rollout
            .error
            .as_deref()
            .unwrap()
            .starts_with("canary refused: score PSI"),
        "{:?}",
        c.report.rollout.error
    );
    assert!(c
        .report
        .rollout
        .verdict
        .as_deref()
        .unwrap()
        .contains("score PSI vs the fleet"));
    assert_eq!(
        report_rows(&c.report),
        [
            row("h1", "deploy", "succeeded"),
            row("h1", "rollback", "succeeded")
        ]
    );
    all_serve(&images.v2);
    let answered = assert_no_failures(&summary, "canary refused");
    eprintln!("canary refused under load: {answered} requests answered, 0 failed");
    eprintln!(
        "canary of shifted scores refused in {:.1} s: score PSI {:.3} (limit {})",
        t.elapsed().as_secs_f64(),
        psi.canary.unwrap(),
        policy.max_score_psi
    );

    // --- a canary like the fleet: promoted to every host.
    let load = Load::start(haproxy.port);
    let c = canary_deploy(
        engine,
        &fleet,
        &lb,
        &images.v1,
        &monitors,
        Duration::from_secs(20),
        &policy,
    )
    .await
    .unwrap();
    let summary = load.finish();
    let verdict = c.verdict.expect("a verdict");
    assert!(verdict.promote, "{verdict:#?}");
    assert_eq!(c.report.rollout.status, "succeeded", "{:#?}", c.report);
    assert_eq!(
        report_rows(&c.report),
        [
            row("h1", "deploy", "succeeded"),
            row("h2", "deploy", "succeeded"),
            row("h3", "deploy", "succeeded")
        ]
    );
    all_serve(&images.v1);
    let answered = assert_no_failures(&summary, "canary promoted");
    eprintln!(
        "canary of v1 promoted to 3 hosts: {answered} requests answered, 0 failed; figures {:?}",
        verdict
            .figures
            .iter()
            .map(|f| (f.name.as_str(), f.canary, f.fleet))
            .collect::<Vec<_>>()
    );

    // --- resized under load: h4 joins serving v1, then h4 and h3 leave drained.
    let mut grown = fleet.clone();
    let mut h4 = beds[3].target.clone();
    h4.api_token = Some(Secret::new(TOKEN.to_string()));
    grown.members.push(Member {
        name: "h4".into(),
        target: h4,
    });
    let load = Load::start(haproxy.port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    let up = scale_up(engine, &grown, &lb, 3, &images.v1).await.unwrap();
    let up_s = t.elapsed().as_secs_f64();
    assert_eq!(up.report.rollout.status, "succeeded", "{up:#?}");
    assert_eq!(
        (up.hosts, report_rows(&up.report)),
        (4, vec![row("h4", "add", "succeeded")])
    );
    assert_eq!(
        answering(beds[3].target.port).as_deref(),
        Some(images.v1.as_str())
    );
    assert!(all_up(&lb, &all_names).await);
    let past = sessions(&lb).await;
    wait_for_traffic(&lb, &past).await;
    let t = Instant::now();
    let down = scale_down(engine, &grown, &lb, 2).await.unwrap();
    let down_s = t.elapsed().as_secs_f64();
    let summary = load.finish();
    assert_eq!(down.report.rollout.status, "succeeded", "{down:#?}");
    assert_eq!(
        (down.hosts, report_rows(&down.report)),
        (
            2,
            vec![
                row("h4", "remove", "succeeded"),
                row("h3", "remove", "succeeded")
            ]
        )
    );
    for b in &beds[2..] {
        assert_eq!(
            answering(b.target.port),
            None,
            "{} still answers",
            b.target.name
        );
    }
    assert!(all_up(&lb, &all_names[..2]).await);
    let left: Vec<String> = lb
        .members()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.name == "h3" || m.name == "h4")
        .map(|m| m.status)
        .collect();
    assert_eq!(left, ["MAINT", "MAINT"]);
    let answered = assert_no_failures(&summary, "resize");
    eprintln!(
        "resized 3 -> 4 -> 2 hosts under load: h4 joined in {up_s:.1} s, h4 and h3 left in {down_s:.1} s; {answered} requests answered, 0 failed"
    );

    // One rollout per deploy or resize across the fleet, newest first; none left running.
    let statuses: Vec<String> = engine
        .history()
        .rollouts("fleet-test", 10)
        .unwrap()
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [
            "succeeded",
            "succeeded",
            "succeeded",
            "rolled-back",
            "rolled-back",
            "rolled-back",
            "succeeded",
            "succeeded"
        ]
    );
}
