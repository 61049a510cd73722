//! The deploy workflow on GitHub Actions: dispatch with the image tag (asking for the run's id,
//! else finding the run by its creation time), follow the run and its jobs, fetch the logs of jobs
//! that did not succeed (GitHub answers with a redirect to a signed URL, which is fetched without
//! credentials), cancel on request. Plugs into the engine's GitHub path as a [`WorkflowRunner`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;

use crate::exec::{Sink, Stream};
use crate::github::{GitHub, GitHubError, Repo};
use crate::workflow::{Conclusion, WorkflowRunner};

const ACTIONS_NEEDS: &str = "the `repo` and `workflow` scopes (classic token) or the repository permission \"Actions: Read and write\" (fine-grained token)";
/// Log lines of a failed job handed to the caller.
const LOG_TAIL_LINES: usize = 60;

#[derive(Deserialize)]
struct Run {
    id: i64,
    status: String,
    conclusion: Option<String>,
    #[serde(default)]
    html_url: String,
}

#[derive(Deserialize)]
struct Runs {
    workflow_runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Job {
    id: i64,
    name: String,
    conclusion: Option<String>,
    #[serde(default)]
    steps: Vec<JobStep>,
}

#[derive(Deserialize)]
struct JobStep {
    name: String,
    number: i64,
    status: String,
    conclusion: Option<String>,
}

/// Reports each job step once per change of its state: `deploy › Deploy to EC2: in_progress`.
#[derive(Default)]
struct StepReporter {
    seen: std::collections::HashMap<(i64, i64), String>,
}

impl StepReporter {
    fn report(&mut self, jobs: &Jobs, sink: Sink<'_>) {
        for job in &jobs.jobs {
            for step in &job.steps {
                let state = match step.status.as_str() {
                    "completed" => step
                        .conclusion
                        .clone()
                        .unwrap_or_else(|| "completed".into()),
                    other => other.to_string(),
                };
                // Steps not started yet say nothing; skipped ones neither, unless seen running.
                let before = self.seen.get(&(job.id, step.number));
                if (state == "queued" || state == "pending" || state == "skipped")
                    && before.is_none()
                {
                    continue;
                }
                if before != Some(&state) {
                    sink(
                        Stream::Stdout,
                        &format!("{} › {}: {state}\n", job.name, step.name),
                    );
                    self.seen.insert((job.id, step.number), state);
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Jobs {
    jobs: Vec<Job>,
}

pub struct GitHubWorkflow {
    gh: Arc<GitHub>,
    pub repo: Repo,
    /// The workflow file name, e.g. `deploy.yml`.
    pub workflow: String,
    /// The branch the workflow runs from.
    pub git_ref: String,
    pub poll: Duration,
    /// Longest a run may take before `wait` gives up (the run goes on on GitHub).
    pub timeout: Duration,
}

impl GitHubWorkflow {
    pub fn new(gh: Arc<GitHub>, repo: Repo, workflow: &str, git_ref: &str) -> GitHubWorkflow {
        GitHubWorkflow {
            gh,
            repo,
            workflow: workflow.into(),
            git_ref: git_ref.into(),
            poll: Duration::from_secs(5),
            timeout: Duration::from_secs(30 * 60),
        }
    }

    fn base(&self) -> String {
        format!("/repos/{}/actions", self.repo)
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, GitHubError> {
        let (_, _, body) = self
            .gh
            .send(Method::GET, path, None, what, ACTIONS_NEEDS, &self.repo)
            .await?;
        serde_json::from_str(&body).map_err(|e| GitHubError::Rejected {
            what: what.into(),
            status: 200,
            message: format!("unexpected body: {e}"),
        })
    }

    /// Asks GitHub to cancel a run.
    pub async fn cancel_run(&self, run_id: i64) -> Result<(), GitHubError> {
        let what = format!("cancel workflow run {run_id}");
        self.gh
            .send(
                Method::POST,
                &format!("{}/runs/{run_id}/cancel", self.base()),
                None,
                &what,
                ACTIONS_NEEDS,
                &self.repo,
            )
            .await
            .map(|_| ())
    }

    /// The last lines of a job's log (GitHub redirects to a signed URL; no token goes there).
    pub async fn job_log_tail(&self, job_id: i64) -> Result<String, GitHubError> {
        let what = format!("fetch the log of job {job_id}");
        let (_, headers, _) = self
            .gh
            .send(
                Method::GET,
                &format!("{}/jobs/{job_id}/logs", self.base()),
                None,
                &what,
                ACTIONS_NEEDS,
                &self.repo,
            )
            .await?;
        let location = headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| GitHubError::Rejected {
                what: what.clone(),
                status: 302,
                message: "no Location header".into(),
            })?;
        let text = fetch_without_credentials(location)
            .await
            .map_err(|detail| GitHubError::Transport { what, detail })?;
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n"))
    }
}

/// GET `url` with a client that holds no GitHub token.
async fn fetch_without_credentials(url: &str) -> Result<String, String> {
    let anon = octocrab::Octocrab::builder()
        .build()
        .map_err(|e| format!("{e:?}"))?;
    let resp = anon._get(url).await.map_err(|e| format!("{e}"))?;
    let status = resp.status();
    let body = anon
        .body_to_string(resp)
        .await
        .map_err(|e| format!("{e}"))?;
    if !status.is_success() {
        return Err(format!("the log storage answered {status}"));
    }
    Ok(body)
}

#[async_trait]
impl WorkflowRunner for GitHubWorkflow {
    fn describe(&self) -> String {
        format!("{} .github/workflows/{}", self.repo, self.workflow)
    }

    async fn dispatch(&self, tag: &str) -> Result<i64, String> {
        let asked_at = unix_now();
        let body = serde_json::json!({"ref": self.git_ref, "inputs": {"tag": tag}, "return_run_details": true});
        let what = format!("start {} for tag {tag}", self.workflow);
        let path = format!("{}/workflows/{}/dispatches", self.base(), self.workflow);
        let (status, _, text) = self
            .gh
            .send(
                Method::POST,
                &path,
                Some(&body),
                &what,
                ACTIONS_NEEDS,
                &self.repo,
            )
            .await
            .map_err(|e| e.to_string())?;
        if status == http::StatusCode::OK {
            if let Some(id) = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["workflow_run_id"].as_i64())
            {
                return Ok(id);
            }
        }
        // 204 (no run details): the newest dispatch run on the ref created since we asked.
        let since = iso8601(asked_at.saturating_sub(5));
        let list = format!("{}/workflows/{}/runs?event=workflow_dispatch&branch={}&created=%3E%3D{since}&per_page=5", self.base(), self.workflow, self.git_ref);
        for _ in 0..30 {
            let runs: Runs = self
                .get(&list, "find the dispatched run")
                .await
                .map_err(|e| e.to_string())?;
            if let Some(r) = runs.workflow_runs.first() {
                return Ok(r.id);
            }
            tokio::time::sleep(self.poll).await;
        }
        Err(format!(
            "{} was dispatched, but no run of it appeared on {}",
            self.workflow, self.git_ref
        ))
    }

    async fn wait(&self, run_id: i64, sink: Sink<'_>) -> Result<Conclusion, String> {
        let start = tokio::time::Instant::now();
        let mut last = String::new();
        let mut steps = StepReporter::default();
        let jobs_url = format!("{}/runs/{run_id}/jobs", self.base());
        let run = loop {
            let r: Run = self
                .get(
                    &format!("{}/runs/{run_id}", self.base()),
                    "follow the workflow run",
                )
                .await
                .map_err(|e| e.to_string())?;
            if r.status != last {
                sink(Stream::Stdout, &format!("run {run_id}: {}\n", r.status));
                last = r.status.clone();
            }
            if r.status == "completed" {
                break r;
            }
            // While it runs, its jobs' steps as they start and end (GitHub serves a job's log
            // only once the job is over; the steps are what can be followed live).
            if r.status == "in_progress" {
                if let Ok(jobs) = self.get::<Jobs>(&jobs_url, "list the run's jobs").await {
                    steps.report(&jobs, sink);
                }
            }
            if start.elapsed() > self.timeout {
                return Err(format!(
                    "run {run_id} did not finish within {} min; it goes on on GitHub ({})",
                    self.timeout.as_secs() / 60,
                    r.html_url
                ));
            }
            tokio::time::sleep(self.poll).await;
        };
        let conclusion = run.conclusion.unwrap_or_else(|| "unknown".into());
        let jobs: Jobs = self
            .get(&jobs_url, "list the run's jobs")
            .await
            .map_err(|e| e.to_string())?;
        steps.report(&jobs, sink);
        // Each job that ran: its conclusion and the end of its log (on stderr when it failed).
        for job in &jobs.jobs {
            let c = job.conclusion.as_deref().unwrap_or("none");
            sink(Stream::Stdout, &format!("job {}: {c}\n", job.name));
            if c == "skipped" {
                continue;
            }
            let stream = if c == "success" {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            match self.job_log_tail(job.id).await {
                Ok(tail) => sink(stream, &format!("{tail}\n")),
                Err(e) => sink(
                    stream,
                    &format!("(log of job {} not available: {e})\n", job.name),
                ),
            }
        }
        Ok(Conclusion {
            success: conclusion == "success",
            detail: format!("{conclusion} ({})", run.html_url),
        })
    }

    async fn cancel(&self, run_id: i64) -> Result<(), String> {
        self.cancel_run(run_id).await.map_err(|e| e.to_string())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC).
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(steps: &[(&str, &str, Option<&str>)]) -> Jobs {
        Jobs {
            jobs: vec![Job {
                id: 7,
                name: "deploy".into(),
                conclusion: None,
                steps: steps
                    .iter()
                    .zip(1..)
                    .map(|((name, status, conclusion), number)| JobStep {
                        name: name.to_string(),
                        number,
                        status: status.to_string(),
                        conclusion: conclusion.map(str::to_string),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn job_steps_are_reported_once_per_change() {
        let mut out = String::new();
        let mut sink = |_: Stream, t: &str| out.push_str(t);
        let mut r = StepReporter::default();
        let running = jobs(&[
            ("Set up job", "completed", Some("success")),
            ("Deploy to EC2", "in_progress", None),
            ("Complete job", "queued", None),
        ]);
        r.report(&running, &mut sink);
        r.report(&running, &mut sink);
        r.report(
            &jobs(&[
                ("Set up job", "completed", Some("success")),
                ("Deploy to EC2", "completed", Some("failure")),
                ("Complete job", "completed", Some("skipped")),
            ]),
            &mut sink,
        );
        assert_eq!(
            out,
            "deploy › Set up job: success\ndeploy › Deploy to EC2: in_progress\ndeploy › Deploy to EC2: failure\n"
        );
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_953_600), "2026-11-29T12:00:00Z");
    }
}
