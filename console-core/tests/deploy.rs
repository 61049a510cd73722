//! The deploy engine against real stand-ins: an sshd on loopback standing in for the EC2 host (its
//! commands run on this machine's Docker engine), Debian's docker-registry with htpasswd standing
//! in for GHCR, and the real inference image. Every fault the issue names is exercised here.
//!
//! The tests share one Docker engine and one image repository (pruning touches it), so they run one
//! at a time under a process-wide lock.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use console_core::engine::Progress;
use console_core::exec::{Executor, Sink, Stream};
use console_core::ssh::{SshExecutor, SshSession, SshTarget};
use console_core::workflow::{Conclusion, WorkflowRunner};
use console_core::{Deployment, EngineError, Event, Host, Secret, Trigger};
use support::bed::{answering, new_engine, Bed, Prober, SecretWatch};
use support::TcpProxy;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn docker_or_skip() -> bool {
    support::run_here_with_docker("deploy")
}

fn assert_ok(d: &Deployment) {
    assert_eq!(
        (d.status.as_str(), d.health.as_str()),
        ("succeeded", "ready"),
        "{d:#?}"
    );
}

/// Everything the history database file holds, as text (for the secrets check).
fn db_bytes(b: &Bed) -> String {
    let mut all = Vec::new();
    for e in std::fs::read_dir(b.db.path()).unwrap() {
        all.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_upgrade_and_rollback_over_ssh() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Bed::new(true);
    let v1 = b.engine.deploy(&b.target, &b.images.v1).await.unwrap();
    assert_ok(&v1);
    assert_eq!(v1.trigger, Trigger::Direct);
    assert!(
        v1.digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{v1:?}"
    );
    assert_eq!(b.answering().as_deref(), Some(b.images.v1.as_str()));

    let prober = Prober::start(b.target.port);
    let watch = SecretWatch::start(&b.registry.password);
    let v2 = b.engine.deploy(&b.target, &b.images.v2).await.unwrap();
    let (scans, exposed) = watch.finish();
    let (seen, windows) = prober.finish();
    assert!(
        scans > 10 && exposed.is_empty(),
        "the registry token was visible: {exposed:#?}"
    );
    assert_ok(&v2);
    assert_ne!(v1.digest, v2.digest);
    assert_eq!(
        b.step_names(&v2),
        [
            "connect",
            "lock",
            "compose file",
            "registry login",
            "pull",
            "image digest",
            "candidate up",
            "candidate health gate",
            "candidate down",
            "set image tag",
            "compose down",
            "compose up",
            "health gate",
            "unlock"
        ]
    );
    // Only the two versions ever answered, v1 then v2.
    let tags: Vec<&str> = seen.iter().filter_map(|(_, a)| a.as_deref()).collect();
    assert!(tags.iter().all(|t| *t == "v1" || *t == "v2"), "{tags:?}");
    assert_eq!(tags.first(), Some(&"v1"));
    assert_eq!(tags.last(), Some(&"v2"));
    let v2_start = tags.iter().position(|t| *t == "v2").unwrap();
    assert!(
        tags[v2_start..].iter().all(|t| *t == "v2"),
        "v1 answered after v2: {tags:?}"
    );
    eprintln!("deploy v1→v2: unavailable {:?} s", windows);

    // One call back to the previous healthy version, with the image already on the host.
    let t0 = Instant::now();
    let back = b.engine.rollback(&b.target, None).await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_ok(&back);
    assert_eq!(
        (back.trigger, back.tag.as_str(), back.rollback_of),
        (Trigger::Rollback, "v1", Some(v2.id))
    );
    assert_eq!(back.digest, v1.digest);
    let names = b.step_names(&back);
    assert!(
        !names.iter().any(|n| n == "pull" || n == "registry login"),
        "rollback must not pull: {names:?}"
    );
    assert_eq!(b.answering().as_deref(), Some("v1"));
    eprintln!("rollback call→ready: {secs:.1} s");

    // Rolling back to a picked version: v2.
    let again = b.engine.rollback(&b.target, Some(v2.id)).await.unwrap();
    assert_ok(&again);
    assert_eq!(b.answering().as_deref(), Some("v2"));

    // The record a person reads, and no secret anywhere in it.
    let audit: Vec<String> = b
        .history()
        .audit_log(&b.target.name)
        .unwrap()
        .into_iter()
        .map(|a| a.message)
        .collect();
    assert!(
        audit.iter().any(|m| m.contains("rollback to v1")),
        "{audit:#?}"
    );
    let events = format!("{:?}", b.events.lock().unwrap());
    let db = db_bytes(&b);
    for secret in [
        b.registry.password.as_str(),
        b.sshd.rsa_pem.lines().nth(1).unwrap(),
    ] {
        assert!(
            !db.contains(secret),
            "a secret reached the history database"
        );
        assert!(
            !events.contains(secret),
            "a secret reached the progress events"
        );
        assert!(!audit.concat().contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_never_becomes_ready_never_replaces_the_live_one() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut b = Bed::new(false);
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());
    b.target.ready_timeout = Duration::from_secs(15);
    let prober = Prober::start(b.target.port);
    let t0 = Instant::now();
    let bad = b.engine.deploy(&b.target, &b.images.broken).await.unwrap();
    let total = t0.elapsed().as_secs_f64();
    let (seen, windows) = prober.finish();
    assert_eq!(
        (bad.status.as_str(), bad.health.as_str()),
        ("failed", "unready"),
        "{bad:#?}"
    );
    let err = bad.error.clone().unwrap();
    assert!(
        err.contains("failed its health gate") && err.contains("v1 is still serving"),
        "{err}"
    );
    let names = b.step_names(&bad);
    assert!(
        names.iter().any(|n| n == "candidate down") && !names.iter().any(|n| n == "compose down"),
        "{names:?}"
    );
    // v1 answered every probe: no downtime at all.
    assert!(windows.is_empty(), "unavailable {windows:?}");
    assert!(seen.iter().all(|(_, a)| a.as_deref() == Some("v1")));
    assert_eq!(
        b.history().deployments(&b.target.name, 10).unwrap().len(),
        2
    );
    eprintln!(
        "broken version tried beside v1 and refused: {total:.1} s, v1 unavailable {windows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_candidate_port_a_bad_version_is_rolled_back_automatically() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut b = Bed::new(false);
    b.target.candidate_port = None;
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());
    b.target.ready_timeout = Duration::from_secs(15);
    let prober = Prober::start(b.target.port);
    let t0 = Instant::now();
    let bad = b.engine.deploy(&b.target, &b.images.broken).await.unwrap();
    let total = t0.elapsed().as_secs_f64();
    let (seen, windows) = prober.finish();
    assert_eq!(
        (bad.status.as_str(), bad.health.as_str()),
        ("failed", "unready"),
        "{bad:#?}"
    );
    let err = bad.error.clone().unwrap();
    assert!(
        err.contains("failed its health gate") && err.contains("returning to v1"),
        "{err}"
    );
    let all = b.history().deployments(&b.target.name, 10).unwrap();
    let auto = &all[0];
    assert_eq!(
        (auto.trigger, auto.tag.as_str(), auto.rollback_of),
        (Trigger::AutoRollback, "v1", Some(bad.id))
    );
    assert_ok(auto);
    assert_eq!(b.answering().as_deref(), Some("v1"));
    // Only v1 ever answered; it was away for one window: from `down` until it was back.
    assert!(seen
        .iter()
        .all(|(_, a)| a.as_deref().is_none_or(|t| t == "v1")));
    assert_eq!(windows.len(), 1, "{windows:?}");
    eprintln!("broken version switched to, then automatic rollback: {total:.1} s in all; v1 unavailable {windows:?} s");
    // The host lock was released: another deploy goes through.
    b.target.ready_timeout = Duration::from_secs(45);
    assert_ok(&b.engine.deploy(&b.target, &b.images.v2).await.unwrap());
}

/// Sends a predict request the service refuses (422) every 50 ms until stopped: a client sending
/// garbage after a release, which the service counts in its error rate.
fn refused_requests(
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let body = br#"{"rows": "not rows"}"#;
                let head = format!("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                if s.write_all(head.as_bytes())
                    .and_then(|_| s.write_all(body))
                    .is_ok()
                {
                    let _ = s.read_to_end(&mut Vec::new());
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_after_the_switch_rolls_back_a_version_whose_critical_rule_fires() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut b = Bed::new(false);
    b.target.api_token = Some(Secret::random_hex(16).unwrap());
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());

    // The watch judges the rules the console keeps for the target (the new version may not have
    // them yet): a critical rule of the user's own, on the error rate.
    b.history()
        .set_alert_rules(
            &b.target.name,
            Some(
                &serde_json::json!([{"id": "errors-strict", "title": "Any error above 1 %",
                    "metric": "system.error_rate", "op": ">", "threshold": 0.01,
                    "window_minutes": 5, "severity": "critical"}])
                .to_string(),
            ),
        )
        .unwrap();
    // v2 goes live while a client sends garbage: its error rate passes the critical rule.
    b.target.watch = Some(Duration::from_secs(20));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = refused_requests(b.target.port, stop.clone());
    let t0 = Instant::now();
    let bad = b.engine.deploy(&b.target, &b.images.v2).await.unwrap();
    let took = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = sender.join().unwrap();
    assert_eq!(bad.status, "failed", "{bad:#?}");
    let err = bad.error.clone().unwrap();
    assert!(
        err.contains(
            "critical alert `errors-strict` (Any error above 1 %) fired: system.error_rate is"
        ) && err.contains("returning to v1"),
        "{err}"
    );
    let steps = b.history().steps(bad.id).unwrap();
    let w = steps.iter().find(|s| s.name == "alert watch").unwrap();
    assert_eq!(w.status, "failed", "{w:#?}");
    assert!(w.output.contains("errors-strict"), "{w:#?}");
    let auto = &b.history().deployments(&b.target.name, 10).unwrap()[0];
    assert_eq!(
        (auto.trigger, auto.tag.as_str(), auto.rollback_of),
        (Trigger::AutoRollback, "v1", Some(bad.id))
    );
    assert_ok(auto);
    assert_eq!(b.answering().as_deref(), Some("v1"));
    // Caught at the first judged poll: judging starts at the next whole minute after the switch.
    assert!(took < 85.0, "{took:.1} s");
    eprintln!(
        "watch: v2 rolled back {took:.1} s after the deploy began ({sent} refused requests sent)"
    );

    // Quiet traffic: the same watch passes, and v2 stays.
    b.target.watch = Some(Duration::from_secs(5));
    let good = b.engine.deploy(&b.target, &b.images.v2).await.unwrap();
    assert_ok(&good);
    let steps = b.history().steps(good.id).unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.name == "alert watch" && s.status == "ok"),
        "{steps:#?}"
    );
    assert_eq!(b.answering().as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_login_and_missing_tag_leave_the_running_version_alone() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Bed::new(true);
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());

    let mut wrong = b.target.clone();
    wrong.registry.as_mut().unwrap().token = Secret::new("not-the-password-at-all");
    let d = b.engine.deploy(&wrong, &b.images.v2).await.unwrap();
    assert_eq!(d.status, "failed");
    let err = d.error.clone().unwrap();
    assert!(
        err.contains("step `registry login` failed") && err.contains("v1 is still serving"),
        "{err}"
    );
    assert_eq!(b.step_names(&d).last().map(String::as_str), Some("unlock"));
    assert!(!b.step_names(&d).iter().any(|n| n == "compose down"));
    assert_eq!(b.answering().as_deref(), Some("v1"));

    let d = b.engine.deploy(&b.target, "v404").await.unwrap();
    assert_eq!(d.status, "failed");
    assert!(
        d.error.as_deref().unwrap().contains("step `pull` failed"),
        "{d:?}"
    );
    let pull = b.step(&d, "pull");
    assert!(
        pull.output.contains("v404")
            || pull.output.contains("manifest unknown")
            || pull.output.contains("not found"),
        "{}",
        pull.output
    );
    assert_eq!(b.answering().as_deref(), Some("v1"));

    // A tag docker would reject never reaches the host, and nothing is recorded.
    let e = b
        .engine
        .deploy(&b.target, "v1; rm -rf /")
        .await
        .unwrap_err();
    assert!(
        matches!(e, EngineError::Refused(ref m) if m.contains("not a valid image tag")),
        "{e}"
    );
    assert_eq!(
        b.history().serving(&b.target.name).unwrap().unwrap().tag,
        "v1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_mismatch_is_refused_with_both_fingerprints() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut b = Bed::new(false);
    let Host::Ssh(ssh) = &mut b.target.host else {
        unreachable!()
    };
    let real = ssh.host_fingerprint.clone();
    ssh.host_fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    let d = b.engine.deploy(&b.target, &b.images.v1).await.unwrap();
    assert_eq!(d.status, "failed");
    let err = d.error.unwrap();
    assert!(
        err.contains("does not match the pinned fingerprint"),
        "{err}"
    );
    assert!(
        err.contains("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") && err.contains(&real),
        "{err}"
    );
    assert_eq!(
        b.step_names(&b.history().deployment(d.id).unwrap().unwrap()),
        ["connect"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deploy_while_one_runs_is_refused() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Arc::new(Bed::new(true));
    // Holds the first deploy inside its pull until released.
    let first_locked = Arc::new(tokio::sync::Notify::new());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let notify = first_locked.clone();
    let hook: Progress = Arc::new(move |e: &Event| {
        if let Event::StepStarted { name, .. } = e {
            if name == "pull" {
                notify.notify_one();
                // Off the async worker, so the runtime keeps serving the other deploys meanwhile.
                tokio::task::block_in_place(|| {
                    let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(60));
                });
            }
        }
    });
    let db = tempfile::tempdir().unwrap();
    let engine = Arc::new(new_engine(&db, Arc::default(), Some(hook)));
    let (e2, b2) = (engine.clone(), b.clone());
    let first = tokio::spawn(async move { e2.deploy(&b2.target, &b2.images.v1).await });
    first_locked.notified().await;

    // Same console: refused at once, nothing recorded.
    let e = engine.deploy(&b.target, &b.images.v2).await.unwrap_err();
    assert!(e.to_string().contains("already running on target"), "{e}");
    // Another console (its own history) reaching the same host: stopped by the host's lock.
    let other = b.engine.deploy(&b.target, &b.images.v2).await.unwrap();
    assert_eq!(other.status, "failed");
    let err = other.error.unwrap();
    assert!(
        err.contains("holds the host's deploy lock") && err.contains(engine.console_id()),
        "{err}"
    );
    assert!(!b
        .step_names(&b.history().deployment(other.id).unwrap().unwrap())
        .iter()
        .any(|n| n == "unlock"));

    tx.send(()).unwrap();
    let d = first.await.unwrap().unwrap();
    assert_ok(&d);
    assert_eq!(
        engine
            .history()
            .deployments(&b.target.name, 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(answering(b.target.port).as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_dropped_mid_deploy_is_recorded_and_the_next_deploy_recovers() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Bed::new(true);
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());

    let proxy = Arc::new(TcpProxy::start(([127, 0, 0, 1], b.sshd.port).into()));
    let mut via_proxy = b.target.clone();
    let Host::Ssh(ssh) = &mut via_proxy.host else {
        unreachable!()
    };
    ssh.port = proxy.port;
    let p = proxy.clone();
    let hook: Progress = Arc::new(move |e: &Event| {
        if matches!(e, Event::StepStarted { name, .. } if name == "pull") {
            p.cut();
        }
    });
    let engine = new_engine(&b.db, Arc::default(), Some(hook));
    let t0 = Instant::now();
    let d = engine.deploy(&via_proxy, &b.images.v2).await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(d.status, "failed", "{d:#?}");
    let err = d.error.clone().unwrap();
    assert!(
        err.contains("step `pull`") && err.contains("connection to") && err.contains("lost"),
        "{err}"
    );
    assert!(
        secs < 30.0,
        "a dropped connection must fail fast, took {secs:.1} s"
    );
    let steps = engine.history().steps(d.id).unwrap();
    assert_eq!(
        steps.last().map(|s| (s.name.as_str(), s.status.as_str())),
        Some(("pull", "failed"))
    );
    assert_eq!(
        answering(b.target.port).as_deref(),
        Some("v1"),
        "the pull had not touched the running version"
    );
    drop(engine);

    // The link is back: the lock that deployment left is recognised as stale and broken.
    proxy.restore();
    let engine = new_engine(&b.db, Arc::default(), None);
    let d = engine.deploy(&via_proxy, &b.images.v2).await.unwrap();
    assert_ok(&d);
    assert!(engine
        .history()
        .steps(d.id)
        .unwrap()
        .iter()
        .any(|s| s.name == "break stale lock"));
    assert_eq!(answering(b.target.port).as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_session_streams_output_and_forwards_a_port() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Bed::new(false);
    let Host::Ssh(ssh) = &b.target.host else {
        unreachable!()
    };
    let exec = SshExecutor::connect(ssh).await.unwrap();
    let mut chunks: Vec<(Stream, String)> = Vec::new();
    let cmd = console_core::command::Command::new("sh")
        .args(["-c", "echo out; echo err >&2; cat; exit 3"])
        .stdin(console_core::command::Stdin::Data(b"from stdin\n".to_vec()));
    let code = exec
        .run(&cmd, Duration::from_secs(10), &mut |s, t| {
            chunks.push((s, t.to_string()))
        })
        .await
        .unwrap();
    assert_eq!(code, 3);
    let out: String = chunks
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, t)| t.as_str())
        .collect();
    let err: String = chunks
        .iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!((out.as_str(), err.as_str()), ("out\nfrom stdin\n", "err\n"));

    // A command that outlives its timeout is an error, not a hang.
    let slow = console_core::command::Command::new("sleep").arg("30");
    let t0 = Instant::now();
    let e = exec
        .run(&slow, Duration::from_secs(1), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        e.is_retryable() && t0.elapsed() < Duration::from_secs(5),
        "{e}"
    );

    // A link that goes silent mid-command (no FIN, no RST) is noticed by the keepalives and
    // becomes a retryable error instead of a hang (the step timeout here is 10 minutes).
    let proxy = TcpProxy::start(([127, 0, 0, 1], b.sshd.port).into());
    let mut quick = ssh.clone();
    quick.port = proxy.port;
    quick.keepalive = Duration::from_secs(1);
    let dark = SshExecutor::connect(&quick).await.unwrap();
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.freeze();
    };
    let t0 = Instant::now();
    let long = console_core::command::Command::new("sleep").arg("60");
    let mut ignore = |_: Stream, _: &str| {};
    let (r, _) = tokio::join!(
        dark.run(&long, Duration::from_secs(600), &mut ignore),
        freeze
    );
    let e = r.unwrap_err();
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        matches!(e, console_core::exec::ExecError::Disconnected { .. }) && e.is_retryable(),
        "{e}"
    );
    assert!(
        secs < 15.0,
        "keepalives took {secs:.1} s to notice a dead link"
    );
    eprintln!("silent link noticed after {secs:.1} s (keepalive 1 s, 3 missed)");

    // A local port forward reaches the service, which listens on the host's loopback only.
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());
    let session = SshSession::connect(ssh).await.unwrap();
    let fwd = session.forward_local(b.target.port).await.unwrap();
    assert_ne!(fwd.local_port, b.target.port);
    assert_eq!(answering(fwd.local_port).as_deref(), Some("v1"));
    drop(fwd);
}

/// The GitHub side of the seed's pipeline without GitHub: a runner that does what the workflow's
/// deploy step does — it takes the `script:` of `.github/workflows/deploy.yml`, prepends the
/// `envs` as `export` lines (as appleboy/ssh-action does) and runs it on the host over SSH.
struct WorkflowScriptRunner {
    ssh: SshTarget,
    env: Vec<(String, String)>,
    tag: Mutex<Option<String>>,
    pat: Secret,
}

impl WorkflowScriptRunner {
    fn deploy_step() -> (String, Vec<String>) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.github/workflows/deploy.yml"
        );
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let steps = doc["jobs"]["deploy"]["steps"].as_sequence().unwrap();
        let step = steps
            .iter()
            .find(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("appleboy/ssh-action@"))
            })
            .unwrap();
        let script = step["with"]["script"].as_str().unwrap().to_string();
        let envs = step["with"]["envs"]
            .as_str()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        (script, envs)
    }
}

#[async_trait::async_trait]
impl WorkflowRunner for WorkflowScriptRunner {
    fn describe(&self) -> String {
        ".github/workflows/deploy.yml (deploy step run over SSH by the test)".into()
    }

    async fn dispatch(&self, tag: &str) -> Result<i64, String> {
        *self.tag.lock().unwrap() = Some(tag.to_string());
        Ok(4242)
    }

    async fn wait(&self, run_id: i64, sink: Sink<'_>) -> Result<Conclusion, String> {
        let (script, envs) = Self::deploy_step();
        let tag = self.tag.lock().unwrap().clone().unwrap();
        let mut exports = String::new();
        for name in envs {
            let value = match name.as_str() {
                "GHCR_PAT" => self.pat.expose().to_string(),
                "IMAGE_TAG" => tag.clone(),
                "RUN_ID" => run_id.to_string(),
                other => self
                    .env
                    .iter()
                    .find(|(k, _)| k == other)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("the test does not know the env {other}")),
            };
            exports.push_str(&format!(
                "export {name}={}\n",
                console_core::command::quote(&value)
            ));
        }
        // The script (with the token) travels on stdin, never on a command line.
        let cmd = console_core::command::Command::new("sh").arg("-s").stdin(
            console_core::command::Stdin::Secret(Secret::new(exports + &script)),
        );
        let exec = SshExecutor::connect(&self.ssh)
            .await
            .map_err(|e| e.to_string())?;
        let code = exec
            .run(&cmd, Duration::from_secs(300), sink)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Conclusion {
            success: code == 0,
            detail: if code == 0 {
                "success".into()
            } else {
                format!("failure (deploy step exited {code})")
            },
        })
    }

    async fn cancel(&self, _run_id: i64) -> Result<(), String> {
        Err("the test's runner plays the deploy step to its end; it cannot cancel".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_deploy_script_deploys_and_its_failures_are_recorded() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Bed::new(true);
    let Host::Ssh(ssh) = &b.target.host else {
        unreachable!()
    };
    let runner = WorkflowScriptRunner {
        ssh: ssh.clone(),
        env: vec![
            ("GHCR_USER".into(), b.registry.user.clone()),
            ("REGISTRY".into(), b.registry.addr.clone()),
            ("IMAGE_NAME".into(), b.images.repo.clone()),
            ("COMPOSE_DIR".into(), b.target.compose_dir.clone()),
            ("READY_TIMEOUT_S".into(), "20".into()),
            // The repository secret is not set here: the service starts without a token.
            ("INFERENCE_API_TOKEN".into(), String::new()),
        ],
        tag: Mutex::new(None),
        pat: Secret::new(b.registry.password.clone()),
    };
    // A new host: the console writes the compose file and the host's settings (.env), then the
    // workflow's script deploys into them.
    let d = b
        .engine
        .deploy_via_workflow(&b.target, &b.images.v1, &runner)
        .await
        .unwrap();
    assert_ok(&d);
    let steps: Vec<String> = b
        .history()
        .steps(d.id)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        steps[..7],
        [
            "connect",
            "lock",
            "compose file",
            "host settings",
            "unlock",
            "dispatch workflow",
            "workflow run"
        ],
        "{steps:?}"
    );
    assert_eq!(b.answering().as_deref(), Some("v1"));

    let watch = SecretWatch::start(&b.registry.password);
    let d = b
        .engine
        .deploy_via_workflow(&b.target, &b.images.v2, &runner)
        .await
        .unwrap();
    let (scans, exposed) = watch.finish();
    assert!(
        scans > 10 && exposed.is_empty(),
        "the registry token was visible: {exposed:#?}"
    );
    assert_ok(&d);
    assert_eq!((d.trigger, d.github_run_id), (Trigger::Github, Some(4242)));
    assert!(d.digest.is_some());
    assert_eq!(b.answering().as_deref(), Some("v2"));
    let run = b.step(&d, "workflow run");
    assert!(run.output.contains("v2 is ready after"), "{}", run.output);
    assert!(!run.output.contains(&b.registry.password));

    // A tag that is not in the registry: the script stops at pull, v2 keeps serving.
    let d = b
        .engine
        .deploy_via_workflow(&b.target, "v404", &runner)
        .await
        .unwrap();
    assert_eq!(d.status, "failed");
    assert!(
        d.error.as_deref().unwrap().contains("v2 is still serving"),
        "{d:?}"
    );
    assert_eq!(b.answering().as_deref(), Some("v2"));
    // A version that never becomes healthy: the script gives up after READY_TIMEOUT_S (it ran
    // `down` and `up -d`), the run fails, nothing answers, so the engine rolls back to v2 itself.
    let d = b
        .engine
        .deploy_via_workflow(&b.target, &b.images.broken, &runner)
        .await
        .unwrap();
    assert_eq!(d.status, "failed");
    assert!(
        d.error.as_deref().unwrap().contains("returning to v2"),
        "{d:?}"
    );
    let auto = &b.history().deployments(&b.target.name, 1).unwrap()[0];
    assert_eq!(
        (auto.trigger, auto.tag.as_str(), auto.rollback_of),
        (Trigger::AutoRollback, "v2", Some(d.id))
    );
    assert_ok(auto);
    assert_eq!(b.answering().as_deref(), Some("v2"));
    // The script released the host lock on its way out (trap EXIT): a direct deploy goes through.
    assert_ok(&b.engine.rollback(&b.target, None).await.unwrap());
    assert_eq!(b.answering().as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_target_runs_on_this_computer() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Bed::new(false);
    // The sandbox has no registry: the image must already be here, as the console's sandbox builds it.
    let cfg = tempfile::tempdir().unwrap();
    b.registry.docker_login(cfg.path()).unwrap();
    for tag in [&b.images.v1, &b.images.v2] {
        let st = std::process::Command::new("docker")
            .args([
                "--config",
                cfg.path().to_str().unwrap(),
                "pull",
                "-q",
                &format!("{}:{tag}", b.images.repo),
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let mut local = b.target.clone();
    local.host = Host::Local;
    local.registry = None;
    let d = b.engine.deploy(&local, &b.images.v1).await.unwrap();
    assert_ok(&d);
    assert!(!b
        .step_names(&d)
        .iter()
        .any(|n| n == "connect" || n == "pull"));
    assert_ok(&b.engine.deploy(&local, &b.images.v2).await.unwrap());
    let back = b.engine.rollback(&local, None).await.unwrap();
    assert_ok(&back);
    assert_eq!(b.answering().as_deref(), Some("v1"));
    // No earlier healthy version than the first: nothing to roll back to from a fresh target.
    let mut fresh = local.clone();
    fresh.name = format!("{}-fresh", local.name);
    let e = b.engine.rollback(&fresh, None).await.unwrap_err();
    assert!(e.to_string().contains("no earlier healthy version"), "{e}");
    let _ = Executor::host(&console_core::exec::LocalExecutor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_cancelled_before_the_switch_changes_nothing() {
    if !docker_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let b = Bed::new(true);
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());
    // Cancel as soon as the pull starts; the engine stops before its next step.
    let engine = Arc::new(std::sync::OnceLock::<std::sync::Weak<console_core::Engine>>::new());
    let (slot, name) = (engine.clone(), b.target.name.clone());
    let once = std::sync::atomic::AtomicBool::new(false);
    let hook: Progress = Arc::new(move |e: &Event| {
        if matches!(e, Event::StepStarted { name: step, .. } if step == "pull")
            && !once.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            if let Some(engine) = slot.get().and_then(|w| w.upgrade()) {
                assert!(engine.cancel(&name));
            }
        }
    });
    let e2 = Arc::new(new_engine(&b.db, Arc::default(), Some(hook)));
    engine.set(Arc::downgrade(&e2)).unwrap();
    let d = e2.deploy(&b.target, &b.images.v2).await.unwrap();
    assert_eq!(d.status, "failed");
    let err = d.error.unwrap();
    assert!(
        err.contains("cancelled before `image digest`") && err.contains("v1 is still serving"),
        "{err}"
    );
    assert_eq!(answering(b.target.port).as_deref(), Some("v1"));
    assert!(!e2.cancel(&b.target.name), "nothing is running any more");
    // The lock was released: the next deploy goes through.
    assert_ok(&e2.deploy(&b.target, &b.images.v2).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_deploy_through_github_cancels_the_run_and_v1_keeps_serving() {
    use console_core::github::{GitHub, Repo};
    use console_core::github_workflow::GitHubWorkflow;
    use support::github_double::{token, Double};

    if !docker_or_skip() {
        return;
    }
    let Some(gh) = Double::start() else { return };
    let _serial = SERIAL.lock().await;
    let b = Bed::new(true);
    assert_ok(&b.engine.deploy(&b.target, &b.images.v1).await.unwrap());
    // A run that stays in progress until somebody cancels it.
    gh.post(
        "/_double/next_run",
        serde_json::json!({"conclusion": "success", "log": "", "details": true, "polls_to_finish": 1_000_000}),
    );
    let mut runner = GitHubWorkflow::new(
        Arc::new(GitHub::new(&gh.url(), &Secret::new(token())).unwrap()),
        Repo::parse("acme/inference").unwrap(),
        "deploy.yml",
        "main",
    );
    runner.poll = Duration::from_millis(50);
    let deploy = b
        .engine
        .deploy_via_workflow(&b.target, &b.images.v2, &runner);
    let cancel = async {
        // Once the run is in progress on "GitHub", the user presses Cancel.
        let started = Instant::now();
        loop {
            let runs = gh.state()["runs"].clone();
            let in_progress = runs
                .as_object()
                .is_some_and(|r| r.values().any(|run| run["status"] == "in_progress"));
            if in_progress {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no run started: {runs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(b.engine.cancel(&b.target.name));
    };
    let (d, ()) = tokio::join!(deploy, cancel);
    let d = d.unwrap();
    assert_eq!(d.status, "failed", "{d:#?}");
    assert_eq!(
        d.error.as_deref(),
        Some(
            "the workflow run was cancelled; nothing was changed on the host, v1 is still serving"
        ),
        "{d:#?}"
    );
    let st = gh.state();
    let id = d.github_run_id.expect("the run id is recorded").to_string();
    assert_eq!(
        (
            st["runs"][&id]["cancelled"].as_bool(),
            st["runs"][&id]["status"].as_str()
        ),
        (Some(true), Some("completed"))
    );
    let cancels: Vec<_> = st["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["method"] == "post"
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!("/runs/{id}/cancel")))
        })
        .collect();
    assert_eq!(cancels.len(), 1, "exactly one cancel request: {cancels:#?}");
    let run = b.step(&d, "workflow run");
    assert!(
        run.output.contains("asked acme/inference") && run.output.contains("cancelled"),
        "{}",
        run.output
    );
    assert_eq!(answering(b.target.port).as_deref(), Some("v1"));
    assert!(
        !b.engine.cancel(&b.target.name),
        "nothing is running any more"
    );
}

/// A remote host's versions come from its registry: the tags pushed, read with the user and token
/// `docker login` uses on the host (docker-registry with htpasswd asks for HTTP Basic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_lists_the_pushed_tags_with_the_hosts_credentials() {
    use console_core::registry::list_tags;
    if !docker_or_skip() {
        return;
    }
    let b = Bed::new(false);
    let (repo, user) = (&b.images.repo, &b.registry.user);
    let pat = Secret::new(b.registry.password.clone());
    let tags = list_tags(repo, user, Some(&pat)).await.unwrap();
    for t in [&b.images.v1, &b.images.v2, &b.images.broken] {
        assert!(tags.contains(t), "{t} not in {tags:?}");
    }
    // Refused credentials, none at all, an image never pushed, a registry not there: sentences.
    let wrong = list_tags(repo, user, Some(&Secret::new("not-the-token")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("refused to list") && wrong.contains("GHCR token"),
        "{wrong}"
    );
    let none = list_tags(repo, user, None).await.unwrap_err().to_string();
    assert!(none.contains("refused to list"), "{none}");
    let missing = format!("{}/nobody/nothing", b.registry.addr);
    let e = list_tags(&missing, user, Some(&pat))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no image nobody/nothing"), "{e}");
    let closed = format!("127.0.0.1:{}/a/b", support::free_port());
    let e = list_tags(&closed, user, Some(&pat))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("could not reach the registry"), "{e}");
    assert!(!format!("{wrong}{none}{e}").contains(&b.registry.password));
}
