//! Deploy benchmark on the local replica (sshd on loopback + this machine's Docker engine +
//! docker-registry), bounded: `CYCLES` rounds (default 3) of
//!   deploy v2 over v1 (direct, over SSH, with the preflight candidate), then rollback to v1.
//! Reports per round: deploy time in all, its pull (login + pull steps), the deploy without the pull,
//! rollback from call to ready, and how long the service did not answer during each (probed every
//! 50 ms). Targets (issue 4): rollback ≤ 10 s, deploy excluding pull ≤ 60 s.
//!
//!   source scripts/env.sh && cargo bench -p console-core --bench deploy

// The benchmark uses the harness's sshd, registry and images.
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use console_core::Deployment;
use support::bed::{Bed, Prober};

fn step_secs(b: &Bed, d: &Deployment, names: &[&str]) -> f64 {
    b.history()
        .steps(d.id)
        .unwrap()
        .iter()
        .filter(|s| names.contains(&s.name.as_str()))
        .map(|s| (s.finished_at_ms.unwrap_or(s.started_at_ms) - s.started_at_ms) as f64 / 1000.0)
        .sum()
}

fn ok(d: &Deployment) {
    assert_eq!(
        (d.status.as_str(), d.health.as_str()),
        ("succeeded", "ready"),
        "{d:#?}"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Err(why) = support::docker_available() {
        eprintln!("deploy benchmark skipped: {why}");
        return;
    }
    let cycles: usize = std::env::var("CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let b = Bed::new(true);
    rt.block_on(async {
        ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());
        println!("| round | deploy v2 in all (s) | of which login+pull (s) | deploy excl. pull (s) | unavailable during deploy (s) | rollback call→ready (s) | unavailable during rollback (s) |");
        println!("|---|---|---|---|---|---|---|");
        for round in 1..=cycles {
            let p = Prober::start(b.target.port);
            let t0 = Instant::now();
            let d = b.engine.deploy(&b.target, &b.images.v2).await.unwrap();
            let deploy_s = t0.elapsed().as_secs_f64();
            let (_, deploy_gaps) = p.finish();
            ok(&d);
            let pull_s = step_secs(&b, &d, &["registry login", "pull"]);

            let p = Prober::start(b.target.port);
            let t0 = Instant::now();
            let r = b.engine.rollback(&b.target, None).await.unwrap();
            let rollback_s = t0.elapsed().as_secs_f64();
            let (_, rollback_gaps) = p.finish();
            ok(&r);
            let gap = |g: &[f64]| g.iter().sum::<f64>();
            println!(
                "| {round} | {deploy_s:.1} | {pull_s:.1} | {:.1} | {:.2} | {rollback_s:.1} | {:.2} |",
                deploy_s - pull_s,
                gap(&deploy_gaps),
                gap(&rollback_gaps)
            );
        }
    });
}
