//! The replay loop: one task owns the schedule and the tallies; every HTTP exchange runs in its own
//! spawned task, so a slow answer (or a feedback delay) never holds the schedule back.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use crate::cancel::CancelToken;
use crate::client::{Answer, Client};
use crate::config::{Plan, ReplayConfig};
use crate::data::Dataset;
use crate::error::ReplayError;
use crate::model::{MissingPolicy, ModelInfo, Task};
use crate::report::{percentile_ms, ByLabel, Counts, Progress, Summary};
use crate::traffic::{Expect, Generator, PlannedRequest, RequestKind};

/// At most this many problems are kept, as examples, in the summary.
const MAX_PROBLEMS: usize = 10;

/// Runs one replay to its end: its bounds, or `cancel`. `progress` is called every
/// `cfg.progress_every` and once at the end, from the task running this future.
///
/// Fails only if the replay cannot start (bad settings, the service unreachable or refusing the
/// token, unreadable card or data); what happens during the run is in the [`Summary`].
pub async fn run(
    cfg: ReplayConfig,
    mut progress: impl FnMut(Progress) + Send,
    cancel: CancelToken,
) -> Result<Summary, ReplayError> {
    let plan = cfg.plan()?;
    let client = Client::new(&cfg.url, cfg.token.as_deref(), cfg.timeout)?;
    let answer = tokio::select! {
        answer = client.model() => answer?,
        _ = cancel.cancelled() => return Err(ReplayError::Cancelled),
    };
    let mut warnings = Vec::new();
    let served = ModelInfo::from_card_json(&answer, &client.url("/v1/model"));
    let model = match &cfg.model_dir {
        None => served?,
        Some(dir) => {
            let from_file = ModelInfo::from_model_dir(dir)?;
            if let Ok(served) = &served {
                if served
                    .features
                    .iter()
                    .map(|f| &f.name)
                    .ne(from_file.features.iter().map(|f| &f.name))
                {
                    warnings.push(format!(
                        "the card in {} lists other features than the model the service serves; leave out --model-dir to replay the served model's features",
                        dir.display()
                    ));
                }
            }
            from_file
        }
    };
    if let Some(max) = answer
        .pointer("/limits/max_batch_rows")
        .and_then(Value::as_u64)
    {
        if cfg.batch as u64 > max {
            return Err(ReplayError::config(format!(
                "--batch {} is more than the {max} rows per request this service accepts; use --batch {max} or less",
                cfg.batch
            )));
        }
    }
    let data = Dataset::load_for(&cfg.data, &model.features, &model.task, &cfg.label_column)?;
    let generator = Generator::new(plan.clone(), &model, data, &cfg.drift_features, cfg.seed)?;
    let recorder = cfg.record.as_deref().map(Recorder::create).transpose()?;
    let mut replay = Replay {
        client,
        generator,
        recorder,
        tally: Tally {
            warnings,
            ..Tally::default()
        },
        plan,
        start: Instant::now(),
        feedback_delay: cfg.feedback_delay,
        max_retries: cfg.max_retries,
        deadline: None,
        retries: Vec::new(),
        paused_until: None,
        feedback_queue: VecDeque::new(),
        feedback_in_flight_labels: 0,
        task: model.task.clone(),
        missing: model.missing,
    };
    replay.deadline = cfg.duration.map(|d| replay.start + d);
    let cancelled = replay.drive(&cfg, &mut progress, &cancel).await;
    let summary = replay.finish(&cfg, &model, cancelled);
    progress(summary_progress(&summary, &cfg));
    Ok(summary)
}

fn summary_progress(s: &Summary, cfg: &ReplayConfig) -> Progress {
    Progress {
        counts: s.counts.clone(),
        in_flight: 0,
        feedback_pending: 0,
        target_requests: cfg.requests,
        target_secs: cfg.duration.map(|d| d.as_secs_f64()),
        done: true,
    }
}

/// A predict request and how often it has been tried.
struct Pending {
    req: Arc<PlannedRequest>,
    attempts: u32,
}

struct FeedbackJob {
    seq: u64,
    request_id: String,
    /// (row in the request, its label as the service's feedback takes it).
    labels: Vec<(usize, Value)>,
    attempts: u32,
}

#[derive(Default)]
struct Tally {
    counts: Counts,
    by_label: ByLabel,
    /// Seconds, of 200 predict answers.
    latencies: Vec<f64>,
    problems: Vec<String>,
    warnings: Vec<String>,
    /// New requests dispatched, and when the last one went.
    planned: u64,
    last_new_dispatch: Option<Instant>,
    cancelled_in_flight: u64,
    feedback_dropped: u64,
    feedback_404_noted: bool,
}

impl Tally {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }

    fn snapshot(&self, start: Instant) -> Counts {
        let mut c = self.counts.clone();
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        c.latency_p50_ms = percentile_ms(&sorted, 0.50);
        c.latency_p99_ms = percentile_ms(&sorted, 0.99);
        c.elapsed_secs = start.elapsed().as_secs_f64();
        c
    }

    /// Counts a request that got its final answer (or none).
    fn finished(&mut self, req: &PlannedRequest, status: Option<u16>) {
        self.counts.requests_sent += 1;
        if req.kind == RequestKind::Rows {
            self.counts.rows_sent += req.rows.len() as u64;
        }
        if let Some(s) = status.filter(|&s| s != 200) {
            *self.counts.rejected_by_status.entry(s).or_default() += 1;
        }
    }
}

struct Replay {
    client: Client,
    generator: Generator,
    recorder: Option<Recorder>,
    tally: Tally,
    plan: Plan,
    start: Instant,
    deadline: Option<Instant>,
    feedback_delay: Duration,
    max_retries: u32,
    /// Throttled requests waiting for their retry-after.
    retries: Vec<(Instant, Pending)>,
    /// No predict is sent before this (the last retry-after).
    paused_until: Option<Instant>,
    feedback_queue: VecDeque<(Instant, FeedbackJob)>,
    feedback_in_flight_labels: u64,
    /// What an answer's results hold and what a label is.
    task: Task,
    /// What a row with a null gets.
    missing: MissingPolicy,
}

type PredictDone = (Pending, Answer);
type FeedbackDone = (FeedbackJob, Answer);

impl Replay {
    /// The loop. Returns whether it was cancelled.
    async fn drive(
        &mut self,
        cfg: &ReplayConfig,
        progress: &mut (impl FnMut(Progress) + Send),
        cancel: &CancelToken,
    ) -> bool {
        let period = Duration::from_secs_f64(1.0 / cfg.rate);
        let mut next_send = self.start;
        let mut next_progress = self.start + cfg.progress_every;
        let mut predicts: JoinSet<PredictDone> = JoinSet::new();
        let mut feedbacks: JoinSet<FeedbackDone> = JoinSet::new();
        loop {
            let now = Instant::now();
            let past_deadline = self.deadline.is_some_and(|d| now >= d);
            if past_deadline {
                // Retries that would go out after the end are abandoned.
                for (_, p) in std::mem::take(&mut self.retries) {
                    self.tally.counts.gave_up += 1;
                    self.tally.finished(&p.req, Some(429));
                    self.record(&p, Some(429), None);
                }
            }
            let new_allowed = !past_deadline && cfg.requests.is_none_or(|n| self.tally.planned < n);
            let paused = self.paused_until.is_some_and(|p| now < p);

            // Send one predict if one is due: a retry first, else a new request.
            if predicts.len() < cfg.concurrency && !paused && now >= next_send {
                let retry = self
                    .retries
                    .iter()
                    .enumerate()
                    .filter(|(_, (due, _))| *due <= now)
                    .min_by_key(|(_, (due, _))| *due)
                    .map(|(i, _)| i);
                let pending = match retry {
                    Some(i) => Some(self.retries.swap_remove(i).1),
                    None if new_allowed => {
                        self.tally.planned += 1;
                        self.tally.last_new_dispatch = Some(now);
                        Some(Pending {
                            req: Arc::new(self.generator.next_request()),
                            attempts: 0,
                        })
                    }
                    None => None,
                };
                if let Some(mut p) = pending {
                    p.attempts += 1;
                    self.tally.counts.attempts += 1;
                    let client = self.client.clone();
                    predicts.spawn(async move {
                        let answer = client
                            .post("/v1/predict", p.req.content_type, p.req.body.clone())
                            .await;
                        (p, answer)
                    });
                    next_send += period;
                    if next_send < now {
                        // More than a period behind (capacity, or a retry-after pause): resume the
                        // schedule from here instead of bursting to catch up.
                        next_send = now + period;
                    }
                    continue;
                }
            }

            // Feedback whose delay is over.
            while self
                .feedback_queue
                .front()
                .is_some_and(|(due, _)| *due <= now)
            {
                let (_, job) = self.feedback_queue.pop_front().expect("checked");
                self.feedback_in_flight_labels += job.labels.len() as u64;
                let client = self.client.clone();
                feedbacks.spawn(async move {
                    let answer = client
                        .post(
                            "/v1/feedback",
                            Some("application/json"),
                            feedback_body(&job),
                        )
                        .await;
                    (job, answer)
                });
            }

            if now >= next_progress {
                progress(self.progress(&predicts, cfg));
                next_progress += cfg.progress_every;
                if next_progress <= now {
                    next_progress = now + cfg.progress_every;
                }
            }

            let more_predicts = new_allowed || !self.retries.is_empty();
            if !more_predicts
                && predicts.is_empty()
                && self.feedback_queue.is_empty()
                && feedbacks.is_empty()
            {
                return false;
            }

            // Sleep until the next thing to do, or an answer arrives.
            let mut wake = next_progress;
            if let Some(d) = self.deadline.filter(|_| !past_deadline) {
                wake = wake.min(d);
            }
            if predicts.len() < cfg.concurrency {
                let gate = self.paused_until.map_or(next_send, |p| p.max(next_send));
                if new_allowed {
                    wake = wake.min(gate);
                }
                if let Some(due) = self.retries.iter().map(|(due, _)| *due).min() {
                    wake = wake.min(due.max(gate));
                }
            }
            if let Some((due, _)) = self.feedback_queue.front() {
                wake = wake.min(*due);
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.abandon(&mut predicts, &mut feedbacks).await;
                    return true;
                }
                Some(done) = predicts.join_next(), if !predicts.is_empty() => self.on_predict(done),
                Some(done) = feedbacks.join_next(), if !feedbacks.is_empty() => self.on_feedback(done),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn progress(&self, predicts: &JoinSet<PredictDone>, cfg: &ReplayConfig) -> Progress {
        Progress {
            counts: self.tally.snapshot(self.start),
            in_flight: predicts.len(),
            feedback_pending: self
                .feedback_queue
                .iter()
                .map(|(_, j)| j.labels.len())
                .sum(),
            target_requests: cfg.requests,
            target_secs: cfg.duration.map(|d| d.as_secs_f64()),
            done: false,
        }
    }

    async fn abandon(
        &mut self,
        predicts: &mut JoinSet<PredictDone>,
        feedbacks: &mut JoinSet<FeedbackDone>,
    ) {
        self.tally.cancelled_in_flight = (predicts.len() + self.retries.len()) as u64;
        self.retries.clear();
        self.tally.feedback_dropped = self.feedback_in_flight_labels
            + self
                .feedback_queue
                .iter()
                .map(|(_, j)| j.labels.len() as u64)
                .sum::<u64>();
        self.feedback_queue.clear();
        predicts.abort_all();
        feedbacks.abort_all();
        while predicts.join_next().await.is_some() {}
        while feedbacks.join_next().await.is_some() {}
    }

    fn on_predict(&mut self, done: Result<PredictDone, JoinError>) {
        let (pending, answer) = match done {
            Ok(done) => done,
            Err(e) => {
                // Only a panic gets here (nothing else aborts these tasks while the loop runs).
                self.tally.counts.requests_sent += 1;
                self.tally.counts.connection_errors += 1;
                self.tally.problem(format!("a request task failed: {e}"));
                return;
            }
        };
        let req = Arc::clone(&pending.req);
        let seq = req.seq;
        let (status, latency, body, retry_after) = match answer {
            Answer::Transport(reason) => {
                self.tally.counts.connection_errors += 1;
                self.tally.finished(&req, None);
                self.tally.problem(format!(
                    "request {seq}: no answer from {}: {reason}",
                    self.client.base()
                ));
                self.record(&pending, None, None);
                return;
            }
            Answer::Response {
                status,
                latency,
                body,
                retry_after,
            } => (status, latency, body, retry_after),
        };
        if status == 429 {
            self.tally.counts.throttled += 1;
            let wait = retry_after.unwrap_or(Duration::from_secs(1));
            let due = Instant::now() + wait;
            self.paused_until = Some(self.paused_until.map_or(due, |p| p.max(due)));
            let in_time = self.deadline.is_none_or(|d| due < d);
            if pending.attempts <= self.max_retries && in_time {
                self.retries.push((due, pending));
            } else {
                self.tally.counts.gave_up += 1;
                self.tally.finished(&req, Some(429));
                self.record(&pending, Some(429), None);
            }
            return;
        }
        self.tally.finished(&req, Some(status));
        let error = body
            .as_ref()
            .and_then(|b| b.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("(no error message)")
            .to_string();
        let what = match req.kind {
            RequestKind::Rows if req.nulls.is_empty() => {
                format!("request {seq} ({} valid rows)", req.rows.len())
            }
            RequestKind::Rows => format!("request {seq} ({} null cells)", req.nulls.len()),
            RequestKind::Garbage(kind) => format!("request {seq} (garbage: {kind:?})"),
        };
        let mut request_id = None;
        match status {
            500..=599 => {
                self.tally.counts.server_errors += 1;
                self.tally
                    .problem(format!("{what}: server error {status}: {error}"));
            }
            400..=499 => {
                self.tally.counts.rejected += 1;
                if matches!(status, 401 | 403) {
                    self.note_auth(status, "/v1/predict");
                }
                match req.expect_with(self.missing) {
                    Expect::ClientError => self.tally.counts.expected_rejections += 1,
                    Expect::NullRejected(nulls) => {
                        let named = body.as_ref().and_then(|b| {
                            let row = b.get("row")?.as_u64()? as usize;
                            let feature = b.get("feature")?.as_str()?.to_string();
                            Some((row, feature))
                        });
                        match named {
                            Some(cell) if status == 422 && nulls.contains(&cell) => {
                                self.tally.counts.expected_rejections += 1;
                            }
                            _ => {
                                self.tally.counts.unexpected += 1;
                                self.tally.problem(format!(
                                    "{what}: expected 422 naming a null cell, got {status}: {error}"
                                ));
                            }
                        }
                    }
                    Expect::Scored | Expect::ScoredExcept(_) => {
                        self.tally.counts.unexpected += 1;
                        self.tally
                            .problem(format!("{what}: rejected with {status}: {error}"));
                    }
                }
            }
            200 => {
                self.tally.counts.accepted += 1;
                let refused = match req.expect_with(self.missing) {
                    Expect::Scored => Some(Vec::new()),
                    Expect::ScoredExcept(rows) => Some(rows),
                    _ => None,
                };
                match refused {
                    Some(refused) => match self.on_scored(&req, body.as_ref(), &refused) {
                        Ok(id) => {
                            self.tally.latencies.push(latency.as_secs_f64());
                            request_id = id;
                        }
                        Err(p) => {
                            self.tally.counts.unexpected += 1;
                            self.tally.problem(format!("{what}: answered 200 but {p}"));
                        }
                    },
                    None => {
                        self.tally.counts.unexpected += 1;
                        self.tally.problem(format!(
                            "{what}: accepted (200), but the service should have refused it"
                        ));
                    }
                }
            }
            other => {
                self.tally.counts.unexpected += 1;
                self.tally
                    .problem(format!("{what}: unexpected status {other}"));
            }
        }
        self.record(&pending, Some(status), request_id.as_deref());
        if let (true, Some(id)) = (self.plan.feedback, request_id) {
            self.feedback_queue.push_back((
                Instant::now() + self.feedback_delay,
                FeedbackJob {
                    seq,
                    request_id: id,
                    labels: self.labels(&req),
                    attempts: 0,
                },
            ));
        }
    }

    /// The labels feedback sends for a scored request: every row's (anomaly flag, class or value),
    /// but for rows refused under the per-row policy and rows whose truth is unknown.
    fn labels(&self, req: &PlannedRequest) -> Vec<(usize, Value)> {
        let refused = match req.expect_with(self.missing) {
            Expect::ScoredExcept(rows) => rows,
            _ => Vec::new(),
        };
        req.rows
            .iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .filter_map(|(i, meta)| match self.task {
                Task::Autoencoder => Some((i, Value::from(meta.label))),
                _ => meta.truth.clone().map(|t| (i, t)),
            })
            .collect()
    }

    /// Counts the results of a 200 (a result for every row but `refused`, and an error for each of
    /// those); returns its request_id. Err describes a malformed answer.
    fn on_scored(
        &mut self,
        req: &PlannedRequest,
        body: Option<&Value>,
        refused: &[usize],
    ) -> Result<Option<String>, String> {
        let body = body.ok_or("the body is not JSON")?;
        let results = body
            .get("results")
            .and_then(Value::as_array)
            .ok_or("the body has no results array")?;
        let expected = req.rows.len() - refused.len();
        if results.len() != expected {
            return Err(format!(
                "with {} results for {expected} rows",
                results.len(),
            ));
        }
        let errors: Vec<u64> = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(|e| e.get("row").and_then(Value::as_u64))
                    .collect()
            })
            .unwrap_or_default();
        if errors
            .iter()
            .map(|&r| r as usize)
            .ne(refused.iter().copied())
        {
            return Err(format!(
                "with errors for rows {errors:?}, expected for the rows with nulls {refused:?}"
            ));
        }
        let mut flags = vec![None; req.rows.len()];
        for r in results {
            let row = r.get("row").and_then(Value::as_u64).map(|i| i as usize);
            // What each task answers: the anomaly verdict, a class, or a value.
            let flag = match &self.task {
                Task::Autoencoder => r.get("is_anomaly").and_then(Value::as_bool),
                Task::Classifier { classes } => r
                    .get("label")
                    .and_then(Value::as_str)
                    .filter(|l| classes.iter().any(|c| c == l))
                    .map(|_| false),
                Task::Regressor => r.get("value").and_then(Value::as_f64).map(|_| false),
            };
            match (row, flag) {
                (Some(i), Some(f)) if i < flags.len() && !refused.contains(&i) => {
                    flags[i] = Some(f)
                }
                _ => return Err(format!("with a malformed result {r}")),
            }
        }
        self.tally.counts.rows_refused += refused.len() as u64;
        let c = &mut self.tally.counts;
        let b = &mut self.tally.by_label;
        for (i, (meta, flag)) in req.rows.iter().zip(flags).enumerate() {
            if refused.contains(&i) {
                continue;
            }
            let flagged = flag.ok_or("without a result for every row")?;
            c.rows_scored += 1;
            c.anomalies_flagged += u64::from(flagged);
            if meta.label == 1 {
                b.anomalous_scored += 1;
                b.anomalous_flagged += u64::from(flagged);
            } else {
                b.normal_scored += 1;
                b.normal_flagged += u64::from(flagged);
            }
        }
        Ok(body
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    fn on_feedback(&mut self, done: Result<FeedbackDone, JoinError>) {
        let (mut job, answer) = match done {
            Ok(done) => done,
            Err(e) => {
                *self
                    .tally
                    .counts
                    .feedback_failed_by_status
                    .entry(0)
                    .or_default() += 1;
                self.tally.problem(format!("a feedback task failed: {e}"));
                return;
            }
        };
        self.feedback_in_flight_labels -= job.labels.len() as u64;
        job.attempts += 1;
        let n = job.labels.len() as u64;
        let seq = job.seq;
        let failed = |t: &mut Tally, status: u16| {
            *t.counts
                .feedback_failed_by_status
                .entry(status)
                .or_default() += 1;
        };
        match answer {
            Answer::Response {
                status: 429,
                retry_after,
                ..
            } if job.attempts <= self.max_retries => {
                self.tally.counts.throttled += 1;
                let due = Instant::now() + retry_after.unwrap_or(Duration::from_secs(1));
                self.feedback_queue.push_back((due, job));
                self.feedback_queue
                    .make_contiguous()
                    .sort_by_key(|(due, _)| *due);
            }
            Answer::Response { status, body, .. } => {
                self.tally.counts.feedback_requests += 1;
                self.tally.counts.feedback_sent += n;
                let accepted = body
                    .as_ref()
                    .and_then(|b| b.get("accepted"))
                    .and_then(Value::as_u64);
                match (status, accepted) {
                    (200, Some(a)) => self.tally.counts.feedback_accepted += a,
                    (200, None) => {
                        failed(&mut self.tally, 200);
                        self.tally.problem(format!(
                            "feedback for request {seq}: answered 200 without {{\"accepted\": n}}"
                        ));
                    }
                    (401 | 403, _) => {
                        failed(&mut self.tally, status);
                        self.note_auth(status, "/v1/feedback");
                    }
                    (404, _) => {
                        failed(&mut self.tally, 404);
                        if !self.tally.feedback_404_noted {
                            self.tally.feedback_404_noted = true;
                            self.tally.warnings.push(format!(
                                "{} has no /v1/feedback (404): this version of the service does not take labels yet",
                                self.client.base()
                            ));
                        }
                    }
                    (status, _) => {
                        failed(&mut self.tally, status);
                        let error = body
                            .as_ref()
                            .and_then(|b| b.get("error"))
                            .and_then(Value::as_str)
                            .unwrap_or("(no error message)");
                        self.tally.problem(format!(
                            "feedback for request {seq}: answered {status}: {error}"
                        ));
                    }
                }
            }
            Answer::Transport(reason) => {
                self.tally.counts.feedback_requests += 1;
                self.tally.counts.feedback_sent += n;
                failed(&mut self.tally, 0);
                self.tally
                    .problem(format!("feedback for request {seq}: no answer: {reason}"));
            }
        }
    }

    /// Says once per path that the service wants a (different) token.
    fn note_auth(&mut self, status: u16, path: &str) {
        let note = format!(
            "the service answered {status} to {path}: {}",
            if self.client.has_token() {
                "it refused the token; pass the service's API token with --token or INFERENCE_TOKEN"
            } else {
                "it requires a token; pass it with --token or INFERENCE_TOKEN"
            }
        );
        if !self.tally.warnings.contains(&note) {
            self.tally.warnings.push(note);
        }
    }

    fn record(&mut self, p: &Pending, status: Option<u16>, request_id: Option<&str>) {
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        if let Err(e) = recorder.write(p, status, request_id) {
            self.tally
                .warnings
                .push(format!("stopped writing {}: {e}", recorder.path.display()));
            self.recorder = None;
        }
    }

    fn finish(mut self, cfg: &ReplayConfig, model: &ModelInfo, cancelled: bool) -> Summary {
        if let Some(mut r) = self.recorder.take() {
            if let Err(e) = r.out.flush() {
                self.tally
                    .warnings
                    .push(format!("cannot finish writing {}: {e}", r.path.display()));
            }
        }
        let counts = self.tally.snapshot(self.start);
        let period = 1.0 / cfg.rate;
        let window = self
            .tally
            .last_new_dispatch
            .map_or(0.0, |t| (t - self.start).as_secs_f64())
            + period;
        Summary {
            achieved_rate: if self.tally.planned == 0 {
                0.0
            } else {
                self.tally.planned as f64 / window
            },
            counts,
            by_label: self.tally.by_label,
            url: self.client.base().to_string(),
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            drift: self.generator.drift().to_vec(),
            plan: self.plan,
            seed: cfg.seed,
            target_rate: cfg.rate,
            cancelled,
            cancelled_in_flight: self.tally.cancelled_in_flight,
            feedback_dropped: self.tally.feedback_dropped,
            problems: self.tally.problems,
            warnings: self.tally.warnings,
        }
    }
}

/// `{"feedback": [{"request_id", "row", "label"}, ...]}`: the true label of every row of one
/// scored request.
fn feedback_body(job: &FeedbackJob) -> Vec<u8> {
    let items: Vec<Value> = job
        .labels
        .iter()
        .map(|(row, label)| json!({"request_id": job.request_id, "row": row, "label": label}))
        .collect();
    serde_json::to_vec(&json!({ "feedback": items })).expect("serializable")
}

/// Writes every predict request, with its answer's status, as one JSON line.
struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Recorder {
    fn create(path: &Path) -> Result<Recorder, ReplayError> {
        let file = File::create(path).map_err(|e| ReplayError::Record {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    fn write(
        &mut self,
        p: &Pending,
        status: Option<u16>,
        request_id: Option<&str>,
    ) -> std::io::Result<()> {
        let req = &p.req;
        let body = serde_json::from_slice::<Value>(&req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
        let line = json!({
            "seq": req.seq,
            "kind": req.kind,
            "content_type": req.content_type,
            "attempts": p.attempts,
            "status": status,
            "request_id": request_id,
            "rows": req.rows,
            "nulls": req.nulls,
            "body": body,
        });
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_has_the_documented_shape() {
        let job = FeedbackJob {
            seq: 0,
            request_id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            labels: vec![(0, json!(0)), (1, json!(1))],
            attempts: 0,
        };
        let v: Value = serde_json::from_slice(&feedback_body(&job)).unwrap();
        assert_eq!(
            v,
            json!({"feedback": [
                {"request_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "row": 0, "label": 0},
                {"request_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "row": 1, "label": 1},
            ]})
        );
    }

    #[test]
    fn the_replay_future_can_be_spawned() {
        fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
        spawnable(run(ReplayConfig::default(), |_| {}, CancelToken::new()));
    }
}
