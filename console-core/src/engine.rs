//! The deploy engine: runs the steps of [`crate::steps`] on a target through an executor, records
//! everything in [`History`], gates each new version on `/readyz` and returns to the last healthy
//! version by itself when that fails. Rollback is one call and reuses the image already on the host.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::command::Command;
use crate::exec::{capture, ExecError, Executor, LocalExecutor, Stream};
use crate::health;
use crate::history::{Deployment, History, HistoryError, Trigger};
use crate::secret::{redact, Secret};
use crate::ssh::SshExecutor;
use crate::steps;
use crate::target::{validate_tag, Host, Target};
use crate::watch;
use crate::workflow::WorkflowRunner;

/// Step output kept in the history: the last this many bytes.
const OUTPUT_KEEP: usize = 32 * 1024;
/// How often a deploy that waits on a GitHub workflow run looks for a cancel from the user.
const CANCEL_POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    DeploymentStarted {
        id: i64,
        target: String,
        tag: String,
        trigger: Trigger,
    },
    StepStarted {
        id: i64,
        seq: i64,
        name: String,
        command: String,
    },
    Output {
        id: i64,
        seq: i64,
        stderr: bool,
        text: String,
    },
    StepFinished {
        id: i64,
        seq: i64,
        ok: bool,
        exit_code: Option<i32>,
        seconds: f64,
    },
    DeploymentFinished {
        id: i64,
        status: String,
        health: String,
        error: Option<String>,
    },
}

pub type Progress = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request was refused before anything ran (nothing recorded as a deployment).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    History(#[from] HistoryError),
}

pub struct Engine {
    history: Arc<History>,
    console_id: String,
    progress: Option<Progress>,
    active: Mutex<HashSet<String>>,
    /// Targets whose running deployment was asked to stop.
    cancelled: Mutex<HashSet<String>>,
}

/// Releases the in-process claim on a target.
struct Claim<'a> {
    engine: &'a Engine,
    target: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.engine.active.lock().unwrap().remove(&self.target);
    }
}

/// How a workflow run ended, as far as the deploy is concerned.
#[derive(Clone, Copy)]
struct WorkflowEnd {
    ok: bool,
    /// The user cancelled the deploy while the run went on, and the run was asked to stop.
    cancelled: bool,
}

/// Why a run stopped early.
enum Stop {
    /// A step failed; the message says which and why.
    Failed(String),
    /// The connection dropped: nothing more can run on the host now.
    Lost(String),
    History(HistoryError),
}

impl From<HistoryError> for Stop {
    fn from(e: HistoryError) -> Self {
        Stop::History(e)
    }
}

/// One deployment in progress: its record id, the target and the executor reaching it.
struct Run<'a> {
    engine: &'a Engine,
    target: &'a Target,
    id: i64,
    secrets: Vec<Secret>,
    /// This run holds the host's deploy lock.
    locked: AtomicBool,
}

impl Engine {
    /// An engine over `history`. Deployments a dead console left `running` are marked failed.
    pub fn new(history: Arc<History>) -> Result<Engine, EngineError> {
        let console_id = history.meta_or_init("console_id", random_id)?;
        for _ in 0..history.fail_abandoned()? {}
        Ok(Engine {
            history,
            console_id,
            progress: None,
            active: Mutex::new(HashSet::new()),
            cancelled: Mutex::new(HashSet::new()),
        })
    }

    pub fn with_progress(mut self, p: Progress) -> Self {
        self.progress = Some(p);
        self
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn console_id(&self) -> &str {
        &self.console_id
    }

    fn emit(&self, e: Event) {
        if let Some(p) = &self.progress {
            p(&e);
        }
    }

    /// Asks the deployment running on `target` to stop. It stops before its next step as long as
    /// the live version has not been touched (up to the switch); once `down` has run, it finishes
    /// the switch and its health gate (or automatic rollback) so the host is never left half-way.
    /// A deploy waiting on a GitHub workflow run asks GitHub to cancel that run, then checks
    /// whether the live version was touched. Returns false if nothing is running there.
    pub fn cancel(&self, target: &str) -> bool {
        if !self.active.lock().unwrap().contains(target) {
            return false;
        }
        self.cancelled.lock().unwrap().insert(target.to_string());
        true
    }

    fn claim(&self, target: &str) -> Result<Claim<'_>, EngineError> {
        self.cancelled.lock().unwrap().remove(target);
        if !self.active.lock().unwrap().insert(target.to_string()) {
            let running = self.history.deployments(target, 1)?.into_iter().next();
            let what = running
                .map(|d| format!(" (deployment #{}, {})", d.id, d.tag))
                .unwrap_or_default();
            return Err(EngineError::Refused(format!(
                "a deployment is already running on target `{target}`{what}; wait for it to finish"
            )));
        }
        Ok(Claim {
            engine: self,
            target: target.to_string(),
        })
    }

    fn begin<'a>(
        &'a self,
        target: &'a Target,
        tag: &str,
        trigger: Trigger,
        rollback_of: Option<i64>,
    ) -> Result<Run<'a>, EngineError> {
        let id = self
            .history
            .begin(&target.name, &target.image, tag, trigger, rollback_of)?;
        self.emit(Event::DeploymentStarted {
            id,
            target: target.name.clone(),
            tag: tag.into(),
            trigger,
        });
        let secrets = target.secrets().into_iter().cloned().collect();
        Ok(Run {
            engine: self,
            target,
            id,
            secrets,
            locked: AtomicBool::new(false),
        })
    }

    /// Deploys `tag` directly: lock, login, pull, switch, health gate, prune, unlock. A version
    /// that does not become ready is replaced by the last healthy one (a second, `auto-rollback`
    /// record). Returns the deployment's final record (which may say `failed`).
    pub async fn deploy(&self, target: &Target, tag: &str) -> Result<Deployment, EngineError> {
        validate_tag(tag).map_err(EngineError::Refused)?;
        let _claim = self.claim(&target.name)?;
        let previous = self.history.serving(&target.name)?;
        let run = self.begin(target, tag, Trigger::Direct, None)?;
        self.audit(
            target,
            Some(run.id),
            &format!(
                "deploy {tag} directly on {} requested",
                describe_host(target)
            ),
        );
        let exec = match run.connect().await {
            Ok(e) => e,
            Err(stop) => return run.end(stop, None).await,
        };
        let result = run.deploy_on(&*exec, tag, previous.as_ref()).await;
        let record = run.end_with(result, &*exec, previous).await;
        record
    }

    /// Deploys `tag` through the GitHub workflow, then gates it from here over SSH like a direct
    /// deploy (and returns to the last healthy version if it is not ready).
    pub async fn deploy_via_workflow(
        &self,
        target: &Target,
        tag: &str,
        runner: &dyn WorkflowRunner,
    ) -> Result<Deployment, EngineError> {
        validate_tag(tag).map_err(EngineError::Refused)?;
        let _claim = self.claim(&target.name)?;
        let previous = self.history.serving(&target.name)?;
        let run = self.begin(target, tag, Trigger::Github, None)?;
        self.audit(
            target,
            Some(run.id),
            &format!("deploy {tag} through {} requested", runner.describe()),
        );
        // The workflow's script expects the compose file and the host's settings in place (a new
        // host has neither); set them up first, under the host's deploy lock.
        match run.connect().await {
            Ok(exec) => {
                if let Err(stop) = run.prepare_for_workflow(&*exec).await {
                    return run
                        .end_with(Outcome::Untouched(stop), &*exec, previous)
                        .await;
                }
            }
            Err(stop) => return run.end(stop, None).await,
        }
        let wf = run.through_workflow(runner, tag).await;
        let exec = match run.connect().await {
            Ok(e) => e,
            Err(stop) => return run.end(stop, None).await,
        };
        let result = match wf {
            Err(stop) => Outcome::Untouched(stop),
            Ok(ok) => run.after_workflow(&*exec, tag, ok, previous.as_ref()).await,
        };
        run.end_with(result, &*exec, previous).await
    }

    /// Rolls `target` back to deployment `to` (which must have been healthy) or, when None, to the
    /// newest healthy version other than the one serving. Uses the image on the host; no pull.
    pub async fn rollback(
        &self,
        target: &Target,
        to: Option<i64>,
    ) -> Result<Deployment, EngineError> {
        let _claim = self.claim(&target.name)?;
        let serving = self.history.serving(&target.name)?;
        let pick = match to {
            Some(id) => {
                let d = self
                    .history
                    .deployment(id)?
                    .filter(|d| d.target == target.name)
                    .ok_or_else(|| {
                        EngineError::Refused(format!(
                            "deployment #{id} is not in the history of target `{}`",
                            target.name
                        ))
                    })?;
                if d.health != "ready" {
                    return Err(EngineError::Refused(format!(
                        "deployment #{id} ({}) never passed its health gate; roll back only to a healthy version",
                        d.tag
                    )));
                }
                d
            }
            None => {
                let current = serving.as_ref().map(|s| s.tag.clone());
                self.history
                    .healthy_versions(&target.name)?
                    .into_iter()
                    .find(|d| Some(&d.tag) != current.as_ref())
                    .ok_or_else(|| {
                        EngineError::Refused(format!(
                            "target `{}` has no earlier healthy version to roll back to",
                            target.name
                        ))
                    })?
            }
        };
        let run = self.begin(
            target,
            &pick.tag,
            Trigger::Rollback,
            serving.as_ref().map(|s| s.id),
        )?;
        self.audit(
            target,
            Some(run.id),
            &format!(
                "rollback to {} (deployment #{}) requested",
                pick.tag, pick.id
            ),
        );
        let exec = match run.connect().await {
            Ok(e) => e,
            Err(stop) => return run.end(stop, None).await,
        };
        let result = run.rollback_on(&*exec, &pick.tag).await;
        run.end_with(result, &*exec, serving).await
    }

    /// Stops `target`'s service (`compose down` in its directory) when its host leaves a fleet.
    /// Its history stays as it was; deploying to it again starts it. The outer error is a refusal
    /// (another deployment runs there) or the history's; the inner one says why the service could
    /// not be stopped.
    pub async fn stop_service(&self, target: &Target) -> Result<Result<(), String>, EngineError> {
        let _claim = self.claim(&target.name)?;
        let host = describe_host(target);
        self.audit(
            target,
            None,
            &format!("stop the service on {host} (the host leaves its fleet)"),
        );
        let exec: Box<dyn Executor> = match &target.host {
            Host::Local => Box::new(LocalExecutor),
            Host::Ssh(t) => match SshExecutor::connect(t).await {
                Ok(e) => Box::new(e),
                Err(e) => return Ok(Err(format!("could not connect to {host}: {e}"))),
            },
        };
        let cmd = steps::down(target);
        let result = match capture(&*exec, &cmd, target.step_timeout).await {
            Ok((0, _, _)) => Ok(()),
            Ok((code, out, err)) => {
                let said = redact(
                    if err.trim().is_empty() { &out } else { &err },
                    &target.secrets(),
                );
                let tail: String = said.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
                Err(format!("`{cmd}` on {host} exited with {code}: {tail}"))
            }
            Err(e) => Err(format!("`{cmd}` on {host}: {e}")),
        };
        self.audit(
            target,
            None,
            &match &result {
                Ok(()) => format!("service stopped on {host}"),
                Err(e) => format!("the service on {host} could not be stopped: {e}"),
            },
        );
        Ok(result)
    }

    /// Appends `msg` to the audit log under the fleet's name (a rollout across its hosts).
    pub fn audit_fleet(&self, fleet: &str, msg: &str) {
        tracing::info!(fleet = %fleet, "{msg}");
        if let Err(e) = self.history.audit(fleet, None, msg) {
            tracing::warn!("could not append to the audit log: {e}");
        }
    }

    fn audit(&self, target: &Target, id: Option<i64>, msg: &str) {
        let line = match id {
            Some(id) => format!("#{id}: {msg}"),
            None => msg.to_string(),
        };
        tracing::info!(target = %target.name, "{line}");
        if let Err(e) = self.history.audit(&target.name, id, &line) {
            tracing::warn!("could not append to the audit log: {e}");
        }
    }
}

impl Run<'_> {
    fn secrets(&self) -> Vec<&Secret> {
        self.secrets.iter().collect()
    }

    fn audit(&self, msg: &str) {
        self.engine.audit(self.target, Some(self.id), msg);
    }

    /// Records a step as started and tells the UI; returns its number and start time.
    fn open_step(&self, name: &str, command: &str) -> Result<(i64, Instant), HistoryError> {
        let seq = self.engine.history.step_started(self.id, name, command)?;
        self.engine.emit(Event::StepStarted {
            id: self.id,
            seq,
            name: name.into(),
            command: command.into(),
        });
        Ok((seq, Instant::now()))
    }

    /// Records how a step ended and tells the UI.
    fn close_step(
        &self,
        (seq, start): (i64, Instant),
        ok: bool,
        exit_code: Option<i32>,
        output: &str,
    ) -> Result<(), HistoryError> {
        self.engine
            .history
            .step_finished(self.id, seq, ok, exit_code, output)?;
        self.engine.emit(Event::StepFinished {
            id: self.id,
            seq,
            ok,
            exit_code,
            seconds: start.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    async fn connect(&self) -> Result<Box<dyn Executor>, Stop> {
        match &self.target.host {
            Host::Local => Ok(Box::new(LocalExecutor)),
            Host::Ssh(t) => {
                let step = self.open_step("connect", &format!("ssh {}", t.label()))?;
                let r = SshExecutor::connect(t).await;
                let msg = match &r {
                    Ok(_) => format!("connected, host key {}", t.host_fingerprint),
                    Err(e) => e.to_string(),
                };
                self.close_step(step, r.is_ok(), None, &msg)?;
                match r {
                    Ok(e) => Ok(Box::new(e)),
                    Err(e) => Err(Stop::Failed(format!("could not connect: {e}"))),
                }
            }
        }
    }

    /// Runs one command as a recorded step; a lost connection is `Stop::Lost`.
    async fn step(&self, exec: &dyn Executor, name: &str, cmd: &Command) -> Result<StepRun, Stop> {
        let step = self.open_step(name, &cmd.to_string())?;
        let seq = step.0;
        let mut all = String::new();
        let mut stdout = String::new();
        let secrets = self.secrets();
        let r = exec
            .run(cmd, self.target.step_timeout, &mut |s, text| {
                let text = redact(text, &secrets);
                if s == Stream::Stdout {
                    stdout.push_str(&text);
                }
                all.push_str(&text);
                self.engine.emit(Event::Output {
                    id: self.id,
                    seq,
                    stderr: s == Stream::Stderr,
                    text,
                });
            })
            .await;
        let kept = tail(&all, OUTPUT_KEEP);
        match r {
            Ok(code) => {
                self.close_step(step, code == 0, Some(code), &kept)?;
                let last_line = all
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string);
                Ok(StepRun {
                    code,
                    stdout,
                    last_line,
                })
            }
            Err(e) => {
                let msg = format!("{kept}{}{e}", if kept.is_empty() { "" } else { "\n" });
                self.close_step(step, false, None, &msg)?;
                Err(match e {
                    ExecError::Disconnected { .. } => Stop::Lost(format!("step `{name}`: {e}")),
                    other => Stop::Failed(format!("step `{name}`: {other}")),
                })
            }
        }
    }

    /// A step that must exit 0.
    async fn must(&self, exec: &dyn Executor, name: &str, cmd: &Command) -> Result<String, Stop> {
        let StepRun {
            code,
            stdout,
            last_line,
        } = self.step(exec, name, cmd).await?;
        if code != 0 {
            // The error quotes the last line the command printed.
            return Err(Stop::Failed(match last_line {
                Some(line) => format!("step `{name}` failed (exit status {code}): {line}"),
                None => format!("step `{name}` failed (exit status {code})"),
            }));
        }
        Ok(stdout)
    }

    /// Whether the user asked this target's run to stop (and forgets the request).
    fn take_cancel(&self) -> bool {
        self.engine
            .cancelled
            .lock()
            .unwrap()
            .remove(&self.target.name)
    }

    /// Stops the run before `next` if the user cancelled it.
    fn check_cancel(&self, next: &str) -> Result<(), Stop> {
        if self.take_cancel() {
            self.audit(&format!("cancelled by the user before `{next}`"));
            return Err(Stop::Failed(format!("cancelled before `{next}`")));
        }
        Ok(())
    }

    async fn upload_compose_file(&self, exec: &dyn Executor) -> Result<(), Stop> {
        let cmd = steps::upload_compose_file(self.target);
        self.must(exec, "compose file", &cmd).await.map(|_| ())
    }

    /// Before a GitHub workflow deploys: the compose file and the host's .env settings, written
    /// under the deploy lock, which is then handed back for the workflow's script to take.
    async fn prepare_for_workflow(&self, exec: &dyn Executor) -> Result<(), Stop> {
        self.take_lock(exec).await?;
        self.upload_compose_file(exec).await?;
        self.must(
            exec,
            "host settings",
            &steps::write_env_settings(self.target),
        )
        .await?;
        self.must(exec, "unlock", &steps::unlock(self.target))
            .await?;
        self.locked.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn take_lock(&self, exec: &dyn Executor) -> Result<(), Stop> {
        let owner = format!("console {} deployment {}", self.engine.console_id, self.id);
        let StepRun {
            code, stdout: out, ..
        } = self
            .step(exec, "lock", &steps::lock(self.target, &owner))
            .await?;
        match code {
            0 => {
                self.locked.store(true, Ordering::SeqCst);
                return Ok(());
            }
            steps::LOCK_HELD => {}
            c => {
                return Err(Stop::Failed(format!(
                    "step `lock` failed (exit status {c})"
                )))
            }
        }
        // Held: break it only if this console left it behind (its deployment is no longer running).
        let holder = out.trim().trim_start_matches("held by: ").to_string();
        let mut words = holder.split_whitespace();
        let stale = match (
            words.next(),
            words.next(),
            words.next(),
            words.next().and_then(|d| d.parse::<i64>().ok()),
        ) {
            (Some("console"), Some(c), Some("deployment"), Some(d))
                if c == self.engine.console_id =>
            {
                self.engine
                    .history
                    .deployment(d)?
                    .is_some_and(|d| d.status != "running")
            }
            _ => false,
        };
        if !stale {
            return Err(Stop::Failed(format!(
                "another deployment holds the host's deploy lock ({holder}); wait for it, or remove {} on the host if it is gone",
                steps::lock_dir(self.target)
            )));
        }
        self.audit(&format!("breaking a stale deploy lock left by {holder}"));
        self.must(exec, "break stale lock", &steps::break_lock(self.target))
            .await?;
        self.must(exec, "lock", &steps::lock(self.target, &owner))
            .await?;
        self.locked.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn record_digest(&self, exec: &dyn Executor, tag: &str) -> Result<(), Stop> {
        let StepRun {
            code, stdout: out, ..
        } = self
            .step(
                exec,
                "image digest",
                &steps::inspect_digest(self.target, tag),
            )
            .await?;
        if code != 0 {
            return Err(Stop::Failed(format!(
                "image {} is not on the host",
                steps::image_ref(self.target, tag)
            )));
        }
        if let Some(d) = out
            .split_whitespace()
            .find_map(|r| r.split_once('@').map(|(_, d)| d.to_string()))
        {
            self.engine.history.set_digest(self.id, &d)?;
        }
        Ok(())
    }

    /// .env → down → up -d → health gate. Err means the host is no longer serving the old version.
    async fn switch_to(&self, exec: &dyn Executor, tag: &str) -> Result<f64, Stop> {
        self.must(exec, "set image tag", &steps::write_env(self.target, tag))
            .await?;
        self.must(exec, "compose down", &steps::down(self.target))
            .await?;
        self.must(exec, "compose up", &steps::up(self.target))
            .await?;
        self.gate(exec, tag).await
    }

    /// Polls /readyz and /v1/model on `port` until `tag` answers, as a recorded step.
    async fn gate_on(
        &self,
        exec: &dyn Executor,
        name: &str,
        port: u16,
        tag: &str,
    ) -> Result<f64, Stop> {
        let what = format!("GET /readyz and /v1/model on 127.0.0.1:{port} until it serves {tag}");
        let step = self.open_step(name, &what)?;
        let r = health::wait_ready(exec, port, tag, self.target.ready_timeout).await;
        let msg = match &r {
            Ok(s) => format!("ready after {s:.1} s"),
            Err(e) => e.clone(),
        };
        self.close_step(step, r.is_ok(), None, &msg)?;
        r.map_err(|e| Stop::Failed(format!("{tag} failed its health gate: {e}")))
    }

    /// The health gate of the live service; records the deployment's health.
    async fn gate(&self, exec: &dyn Executor, tag: &str) -> Result<f64, Stop> {
        let r = self
            .gate_on(exec, "health gate", self.target.port, tag)
            .await;
        let health = if r.is_ok() { "ready" } else { "unready" };
        self.engine.history.set_health(self.id, health)?;
        r
    }

    /// Starts `tag` beside the live service (its own compose project and state volume, on
    /// `candidate_port`, loopback only), gates it, and removes it again. The live version keeps
    /// serving throughout; only a version that passes here is switched to.
    async fn preflight(&self, exec: &dyn Executor, tag: &str, port: u16) -> Result<(), Stop> {
        let gated = async {
            self.must(
                exec,
                "candidate up",
                &steps::candidate_up(self.target, tag, port),
            )
            .await?;
            self.gate_on(exec, "candidate health gate", port, tag).await
        }
        .await;
        let removed = self
            .must(
                exec,
                "candidate down",
                &steps::candidate_down(self.target, tag, port),
            )
            .await;
        match (gated, removed) {
            (Err(Stop::Failed(m)), _) => {
                self.engine.history.set_health(self.id, "unready")?;
                Err(Stop::Failed(format!(
                    "{m} (tried beside the live version, which kept serving)"
                )))
            }
            (Err(other), _) | (Ok(_), Err(other)) => Err(other),
            (Ok(_), Ok(_)) => Ok(()),
        }
    }

    async fn deploy_on(
        &self,
        exec: &dyn Executor,
        tag: &str,
        _previous: Option<&Deployment>,
    ) -> Outcome {
        if let Err(s) = self.take_lock(exec).await {
            return Outcome::Untouched(s);
        }
        let before = async {
            // The compose file first: `pull` reads it.
            self.upload_compose_file(exec).await?;
            if let Some(r) = &self.target.registry {
                self.check_cancel("registry login")?;
                self.must(exec, "registry login", &steps::login(r)).await?;
                self.check_cancel("pull")?;
                self.must(exec, "pull", &steps::pull(self.target, tag))
                    .await?;
            }
            self.check_cancel("image digest")?;
            self.record_digest(exec, tag).await?;
            if let Some(port) = self.target.candidate_port {
                self.check_cancel("candidate up")?;
                self.preflight(exec, tag, port).await?;
            }
            self.check_cancel("switch")
        };
        if let Err(s) = before.await {
            return Outcome::Untouched(s);
        }
        match self.switch_to(exec, tag).await {
            Ok(secs) => match self.watch_after_switch(exec, tag).await {
                Ok(()) => Outcome::Ready(secs),
                Err(s) => Outcome::Broken(s),
            },
            Err(s) => Outcome::Broken(s),
        }
    }

    /// With `target.watch`, the new version's critical alert rules are checked against what it
    /// served since the switch, as a recorded step; a breach is a failure after the switch, which
    /// `end_with` answers with an automatic rollback naming the rule.
    async fn watch_after_switch(&self, exec: &dyn Executor, tag: &str) -> Result<(), Stop> {
        let Some(duration) = self.target.watch else {
            return Ok(());
        };
        let step = self.open_step(
            "alert watch",
            &format!(
                "the critical alert rules of {tag} on 127.0.0.1:{} over what it served from the next whole minute, every {} s for {} s",
                self.target.port,
                watch::EVERY.as_secs(),
                duration.as_secs()
            ),
        )?;
        let kept = self
            .engine
            .history
            .alert_rules(&self.target.name)?
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok());
        let v = watch::watch(
            exec,
            self.target.port,
            self.target.api_token.as_ref(),
            duration,
            watch::EVERY,
            kept.as_ref(),
        )
        .await;
        let (ok, msg) = match &v {
            watch::Verdict::Passed { polls, judged_secs } => (
                true,
                format!("no critical rule held over {judged_secs} s ({polls} polls)"),
            ),
            watch::Verdict::Breached {
                rule,
                title,
                detail,
            } => (
                false,
                format!("critical alert `{rule}` ({title}) fired: {detail}"),
            ),
            watch::Verdict::Unreachable(e) => {
                (false, format!("the service stopped answering: {e}"))
            }
        };
        self.close_step(step, ok, None, &msg)?;
        if ok {
            Ok(())
        } else {
            Err(Stop::Failed(format!(
                "{tag} was switched to, then {msg} during the watch after the switch"
            )))
        }
    }

    async fn rollback_on(&self, exec: &dyn Executor, tag: &str) -> Outcome {
        if let Err(s) = self.take_lock(exec).await {
            return Outcome::Untouched(s);
        }
        if let Err(s) = self.upload_compose_file(exec).await {
            return Outcome::Untouched(s);
        }
        if let Err(s) = self.record_digest(exec, tag).await {
            let s = match s {
                Stop::Failed(m) => {
                    Stop::Failed(format!("{m} (pruned?); deploy it instead, which pulls it"))
                }
                other => other,
            };
            return Outcome::Untouched(s);
        }
        match self.switch_to(exec, tag).await {
            Ok(secs) => Outcome::Ready(secs),
            Err(s) => Outcome::Broken(s),
        }
    }

    async fn through_workflow(
        &self,
        runner: &dyn WorkflowRunner,
        tag: &str,
    ) -> Result<WorkflowEnd, Stop> {
        let step = self.open_step(
            "dispatch workflow",
            &format!("{} tag={tag}", runner.describe()),
        )?;
        let run_id = runner.dispatch(tag).await;
        let msg = match &run_id {
            Ok(id) => format!("run {id}"),
            Err(e) => e.clone(),
        };
        self.close_step(step, run_id.is_ok(), None, &msg)?;
        let run_id =
            run_id.map_err(|e| Stop::Failed(format!("could not start the workflow: {e}")))?;
        self.engine.history.set_github_run(self.id, run_id)?;
        let step = self.open_step("workflow run", &format!("run {run_id}"))?;
        let seq = step.0;
        let mut log = String::new();
        let secrets = self.secrets();
        // A cancel from the user is passed on to the run itself; the run then ends as cancelled
        // and `after_workflow` finds out whether the live version was touched.
        let mut cancel_note = String::new();
        let r = {
            let mut sink = |s, t: &str| {
                let t = redact(t, &secrets);
                log.push_str(&t);
                self.engine.emit(Event::Output {
                    id: self.id,
                    seq,
                    stderr: s == Stream::Stderr,
                    text: t,
                });
            };
            let wait = runner.wait(run_id, &mut sink);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    r = &mut wait => break r,
                    () = tokio::time::sleep(CANCEL_POLL), if cancel_note.is_empty() => {
                        if self.take_cancel() {
                            cancel_note = match runner.cancel(run_id).await {
                                Ok(()) => format!("cancelled by the user: asked {} to cancel run {run_id}", runner.describe()),
                                Err(e) => format!("cancelled by the user, but run {run_id} could not be cancelled: {e}"),
                            };
                            self.audit(&cancel_note);
                            self.engine.emit(Event::Output {
                                id: self.id,
                                seq,
                                stderr: false,
                                text: format!("{cancel_note}\n"),
                            });
                        }
                    }
                }
            }
        };
        let cancelled = !cancel_note.is_empty();
        let ok = matches!(&r, Ok(c) if c.success);
        let detail = match &r {
            Ok(c) => format!("concluded: {}", c.detail),
            Err(e) => e.clone(),
        };
        self.close_step(
            step,
            ok,
            None,
            &format!("{}\n{cancel_note}\n{detail}", tail(&log, OUTPUT_KEEP)),
        )?;
        self.audit(&format!("workflow run {run_id} {detail}"));
        Ok(WorkflowEnd { ok, cancelled })
    }

    async fn after_workflow(
        &self,
        exec: &dyn Executor,
        tag: &str,
        workflow: WorkflowEnd,
        previous: Option<&Deployment>,
    ) -> Outcome {
        if workflow.ok {
            // What the run pulled; a failed run may have pulled nothing to inspect.
            let _ = self.record_digest(exec, tag).await;
        }
        if !workflow.ok {
            let how = if workflow.cancelled {
                "the workflow run was cancelled"
            } else {
                "the workflow run failed"
            };
            // If the run stopped before `down`, the previous version still answers: nothing to undo.
            if let Some(p) = previous {
                if let health::Probe::Ready { image_tag } =
                    health::probe(exec, self.target.port, Duration::from_secs(3)).await
                {
                    if image_tag == p.tag {
                        // `end_with` adds that nothing changed and what still serves.
                        return Outcome::Untouched(Stop::Failed(how.to_string()));
                    }
                }
            }
            return Outcome::Broken(Stop::Failed(format!(
                "{how} and the previous version is not answering"
            )));
        }
        match self.gate(exec, tag).await {
            Ok(s) => Outcome::Ready(s),
            Err(s) => Outcome::Broken(s),
        }
    }

    /// Records the end of a run that stopped before an executor existed.
    async fn end(
        &self,
        stop: Stop,
        _exec: Option<&dyn Executor>,
    ) -> Result<Deployment, EngineError> {
        let msg = match stop {
            Stop::Failed(m) | Stop::Lost(m) => m,
            Stop::History(e) => return Err(e.into()),
        };
        self.finish(false, Some(&msg))
    }

    fn finish(&self, ok: bool, error: Option<&str>) -> Result<Deployment, EngineError> {
        self.engine.history.finish(self.id, ok, error)?;
        let d = self
            .engine
            .history
            .deployment(self.id)?
            .expect("deployment just recorded");
        self.audit(&match error {
            None => format!("{} {} is serving", d.trigger.as_str(), d.tag),
            Some(e) => format!("failed: {e}"),
        });
        self.engine.emit(Event::DeploymentFinished {
            id: d.id,
            status: d.status.clone(),
            health: d.health.clone(),
            error: d.error.clone(),
        });
        Ok(d)
    }

    /// Finishes the record from the outcome: prunes and unlocks on success; on a broken switch,
    /// returns to `previous` as a separate auto-rollback deployment.
    async fn end_with(
        &self,
        outcome: Outcome,
        exec: &dyn Executor,
        previous: Option<Deployment>,
    ) -> Result<Deployment, EngineError> {
        let record = match outcome {
            Outcome::Ready(secs) => {
                if let Err(Stop::Lost(m)) = self.prune(exec).await {
                    return self.finish(
                        false,
                        Some(&format!(
                            "{} was ready after {secs:.1} s, then {m}",
                            self.tag()?
                        )),
                    );
                }
                self.finish(true, None)?
            }
            Outcome::Untouched(Stop::History(e)) | Outcome::Broken(Stop::History(e)) => {
                return Err(e.into())
            }
            Outcome::Untouched(Stop::Lost(m)) | Outcome::Broken(Stop::Lost(m)) => {
                // Nothing more can run on the host; the lock stays and is broken by the next deploy.
                return self.finish(false, Some(&format!("{m}; the host is unreachable now — check it, then deploy or roll back again")));
            }
            Outcome::Untouched(Stop::Failed(m)) => {
                let note = match self.engine.history.serving(&self.target.name)? {
                    Some(s) => format!(
                        "{m}; nothing was changed on the host, {} is still serving",
                        s.tag
                    ),
                    None => format!("{m}; nothing was changed on the host"),
                };
                self.finish(false, Some(&note))?
            }
            Outcome::Broken(Stop::Failed(m)) => {
                let back = previous
                    .filter(|p| Some(p.tag.as_str()) != self.tag().ok().as_deref())
                    .or(previous_any(self)?);
                match back {
                    None => self.finish(
                        false,
                        Some(&format!("{m}; no earlier healthy version to return to")),
                    )?,
                    Some(p) => {
                        let failed = self.finish(
                            false,
                            Some(&format!(
                                "{m}; returning to {} (deployment #{})",
                                p.tag, p.id
                            )),
                        )?;
                        self.auto_rollback(exec, &p, failed.id).await?;
                        let _ = self.engine.history.deployment(failed.id)?;
                        failed
                    }
                }
            }
        };
        if self.locked.load(Ordering::SeqCst) {
            // Best effort: a failure here is in the step record; the next deploy breaks a stale lock.
            let _ = self.step(exec, "unlock", &steps::unlock(self.target)).await;
        }
        Ok(self.engine.history.deployment(record.id)?.unwrap_or(record))
    }

    fn tag(&self) -> Result<String, EngineError> {
        Ok(self
            .engine
            .history
            .deployment(self.id)?
            .map(|d| d.tag)
            .unwrap_or_default())
    }

    /// Runs the switch back to `p` as its own `auto-rollback` deployment (the lock stays held).
    async fn auto_rollback(
        &self,
        exec: &dyn Executor,
        p: &Deployment,
        failed_id: i64,
    ) -> Result<(), EngineError> {
        let back =
            self.engine
                .begin(self.target, &p.tag, Trigger::AutoRollback, Some(failed_id))?;
        back.audit(&format!(
            "automatic rollback to {} after deployment #{failed_id} failed",
            p.tag
        ));
        let r = async {
            // A direct deploy still holds the host lock; after a workflow run, take it here.
            if !self.locked.load(Ordering::SeqCst) {
                back.take_lock(exec).await?;
            }
            back.record_digest(exec, &p.tag).await?;
            back.switch_to(exec, &p.tag).await
        }
        .await;
        match r {
            Ok(_) => back.finish(true, None)?,
            Err(Stop::History(e)) => return Err(e.into()),
            Err(Stop::Failed(m)) | Err(Stop::Lost(m)) => {
                back.finish(false, Some(&format!("automatic rollback failed: {m}")))?
            }
        };
        if back.locked.load(Ordering::SeqCst) {
            let _ = back.step(exec, "unlock", &steps::unlock(self.target)).await;
        }
        Ok(())
    }

    /// Removes images of versions this target ran that are not among its newest `keep_images`
    /// healthy ones (images in use by a container are refused by Docker and stay).
    async fn prune(&self, exec: &dyn Executor) -> Result<(), Stop> {
        let keep: HashSet<String> = self
            .engine
            .history
            .healthy_versions(&self.target.name)?
            .into_iter()
            .take(self.target.keep_images.max(1))
            .map(|d| d.tag)
            .chain(self.engine.history.deployment(self.id)?.map(|d| d.tag))
            .collect();
        let (code, out, _) = capture(
            exec,
            &steps::list_tags(self.target),
            self.target.step_timeout,
        )
        .await
        .map_err(|e| Stop::Lost(e.to_string()))?;
        if code != 0 {
            return Ok(());
        }
        // Only versions this target ran before: an image someone else put on the host stays.
        let ours = self.engine.history.deployed_tags(&self.target.name)?;
        for tag in out
            .lines()
            .map(str::trim)
            .filter(|t| ours.contains(*t) && !keep.contains(*t))
        {
            let code = self
                .step(exec, "prune image", &steps::remove_image(self.target, tag))
                .await?
                .code;
            if code == 0 {
                self.audit(&format!("pruned {}", steps::image_ref(self.target, tag)));
            }
        }
        Ok(())
    }
}

/// The newest healthy version other than the run's own tag (when the caller knew none).
fn previous_any(run: &Run<'_>) -> Result<Option<Deployment>, EngineError> {
    let own = run.tag()?;
    Ok(run
        .engine
        .history
        .healthy_versions(&run.target.name)?
        .into_iter()
        .find(|d| d.tag != own))
}

/// What a command step returned.
struct StepRun {
    code: i32,
    stdout: String,
    /// The last non-empty line it printed (stdout or stderr), redacted.
    last_line: Option<String>,
}

/// How the host work went.
enum Outcome {
    /// The new version passed its health gate after this many seconds.
    Ready(f64),
    /// Stopped before the running version was touched.
    Untouched(Stop),
    /// Stopped after `down` (or the new version is not ready): the old version is no longer serving.
    Broken(Stop),
}

fn describe_host(t: &Target) -> String {
    match &t.host {
        Host::Local => "this computer".into(),
        Host::Ssh(s) => s.label(),
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    if b == [0u8; 8] {
        b = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(1) as u64)
            .to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
