//! The GitHub client against the local GitHub double (`tests/doubles/github_double.py`), which
//! answers with GitHub's documented shapes and decrypts every sealed box it receives with PyNaCl.
//! (`tests/test_github_contract.py` holds the double against GitHub's OpenAPI description.)

use std::time::{Duration, Instant};

use console_core::github::{
    GitHub, GitHubError, Repo, Written, DEPLOY_SECRETS, FINGERPRINT_VARIABLE,
};
use console_core::Secret;
use serde_json::json;

mod support;

use support::github_double::{token, Double};

fn client(d: &Double, token: &str) -> GitHub {
    let mut g = GitHub::new(&d.url(), &Secret::new(token)).unwrap();
    g.max_wait = Duration::from_secs(5);
    g
}

fn repo() -> Repo {
    Repo::parse("acme/inference").unwrap()
}

fn deploy_secrets() -> Vec<(&'static str, Secret)> {
    let values = [
        "ec2-3-120-1-2.eu-central-1.compute.amazonaws.com".to_string(),
        "ubuntu".to_string(),
        support::fresh_ssh_key(true).0,
        "/home/ubuntu/inference".to_string(),
        support::test_token("ghcr-test-token"),
        support::test_token("api-test-token"),
    ];
    DEPLOY_SECRETS
        .iter()
        .copied()
        .zip(values.map(Secret::new))
        .collect()
}

#[tokio::test]
async fn sets_the_deploy_secrets_sealed_so_github_can_read_them() {
    let Some(d) = Double::start() else { return };
    let g = client(&d, token());
    g.check_secrets_access(&repo()).await.unwrap();
    let secrets = deploy_secrets();
    let refs: Vec<(&str, &Secret)> = secrets.iter().map(|(n, s)| (*n, s)).collect();
    let first = g.set_secrets(&repo(), &refs).await.unwrap();
    assert!(
        first.iter().all(|(_, w)| *w == Written::Created),
        "{first:?}"
    );
    let again = g.set_secrets(&repo(), &refs).await.unwrap();
    assert!(
        again.iter().all(|(_, w)| *w == Written::Updated),
        "{again:?}"
    );
    assert_eq!(
        g.set_variable(&repo(), FINGERPRINT_VARIABLE, "SHA256:abc")
            .await
            .unwrap(),
        Written::Created
    );
    assert_eq!(
        g.set_variable(&repo(), FINGERPRINT_VARIABLE, "SHA256:def")
            .await
            .unwrap(),
        Written::Updated
    );

    let st = d.state();
    let stored = &st["repos"]["acme/inference"];
    for (name, value) in &secrets {
        // Decrypted by the double with PyNaCl from what the client sent.
        assert_eq!(
            stored["secrets"][name].as_str(),
            Some(value.expose()),
            "{name}"
        );
    }
    assert_eq!(stored["variables"][FINGERPRINT_VARIABLE], "SHA256:def");
    // On the wire: the token only in the Authorization header, no secret value in any body.
    let requests = st["requests"].as_array().unwrap();
    for r in requests {
        assert_eq!(r["authorization"], format!("Bearer {}", token()));
        assert_eq!(r["api_version"], "2022-11-28");
        let body = r["body"].to_string();
        for (_, v) in &secrets {
            assert!(
                !body.contains(v.expose().lines().nth(1).unwrap_or(v.expose())),
                "plaintext in {body}"
            );
        }
    }
    let puts = requests.iter().filter(|r| r["method"] == "put").count();
    assert_eq!(puts, 2 * DEPLOY_SECRETS.len());
}

#[tokio::test]
async fn each_refusal_is_a_sentence_that_says_what_to_do() {
    let Some(d) = Double::start() else { return };
    let e = client(&d, "wrong-token")
        .check_secrets_access(&repo())
        .await
        .unwrap_err();
    assert!(
        matches!(e, GitHubError::Unauthorized) && e.to_string().contains("Create a new token"),
        "{e}"
    );
    let e = client(&d, token())
        .check_secrets_access(&Repo::parse("acme/missing").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(e, GitHubError::NotFound { .. }) && e.to_string().contains("acme/missing"),
        "{e}"
    );
    let e = client(&d, token())
        .check_secrets_access(&Repo::parse("acme/read-only").unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Secrets: Read and write"), "{e}");
    let e = client(&d, token())
        .set_secrets(&repo(), &[("GITHUB_TOKEN", &Secret::new("x"))])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not a valid secret or variable name"),
        "{e}"
    );
    // Nothing was sent for the invalid name.
    assert!(!d.state()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["path"].as_str().unwrap().ends_with("/GITHUB_TOKEN")));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_within_bounds() {
    let Some(d) = Double::start() else { return };
    let g = client(&d, token());
    // 429 with retry-after: 1 → one wait, then success.
    d.fault("get", "public-key$", 429, json!({"retry-after": "1"}), 1);
    let t0 = Instant::now();
    g.check_secrets_access(&repo()).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(1));
    // Primary limit exhausted for an hour: reported at once with the wait, not slept through.
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    d.fault(
        "get",
        "public-key$",
        403,
        json!({"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset.to_string()}),
        1,
    );
    let t0 = Instant::now();
    let e = g.check_secrets_access(&repo()).await.unwrap_err();
    assert!(
        matches!(e, GitHubError::RateLimited { wait_s, .. } if (3590..=3601).contains(&wait_s)),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Two 502s, then GitHub recovers.
    d.fault("get", "public-key$", 502, json!({}), 2);
    g.check_secrets_access(&repo()).await.unwrap();
    // A 503 that does not go away: bounded attempts, then an error saying so.
    d.fault("get", "public-key$", 503, json!({}), -1);
    let e = g.check_secrets_access(&repo()).await.unwrap_err();
    assert!(
        matches!(
            e,
            GitHubError::Server {
                status: 503,
                tries: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("try again later"), "{e}");
}

fn workflow(d: &Double) -> console_core::github_workflow::GitHubWorkflow {
    let mut w = console_core::github_workflow::GitHubWorkflow::new(
        std::sync::Arc::new(client(d, token())),
        repo(),
        "deploy.yml",
        "main",
    );
    w.poll = Duration::from_millis(50);
    w
}

async fn follow(
    w: &console_core::github_workflow::GitHubWorkflow,
    tag: &str,
) -> (i64, console_core::workflow::Conclusion, String) {
    use console_core::workflow::WorkflowRunner;
    let id = w.dispatch(tag).await.unwrap();
    let mut seen = String::new();
    let c = w.wait(id, &mut |_, t| seen.push_str(t)).await.unwrap();
    (id, c, seen)
}

#[tokio::test]
async fn dispatches_the_deploy_workflow_and_follows_the_run() {
    let Some(d) = Double::start() else { return };
    let w = workflow(&d);
    let (id, c, seen) = follow(&w, "sha-abc123").await;
    assert!(c.success, "{c:?}");
    assert!(
        seen.contains("queued") && seen.contains("in_progress") && seen.contains("completed"),
        "{seen}"
    );
    let st = d.state();
    let run = &st["runs"][id.to_string()];
    assert_eq!(
        (
            run["inputs"]["tag"].as_str(),
            run["ref"].as_str(),
            run["workflow"].as_str()
        ),
        (Some("sha-abc123"), Some("main"), Some("deploy.yml"))
    );

    // Without run details (a 204), the run is found by its creation time.
    d.post(
        "/_double/next_run",
        json!({"conclusion": "success", "log": "", "details": false}),
    );
    let (id2, c, _) = follow(&w, "sha-def456").await;
    assert!(c.success && id2 != id, "{c:?}");
    assert_eq!(
        d.state()["runs"][id2.to_string()]["inputs"]["tag"],
        "sha-def456"
    );
}

#[tokio::test]
async fn a_failed_run_brings_its_log_and_a_run_can_be_cancelled() {
    let Some(d) = Double::start() else { return };
    let w = workflow(&d);
    d.post("/_double/next_run", json!({"conclusion": "failure", "details": true,
        "log": "2026-11-29T12:00:00Z Deploy to EC2\nError response from daemon: manifest for ghcr.io/acme/inference:v9 not found\n"}));
    let (_, c, seen) = follow(&w, "v9").await;
    assert!(!c.success && c.detail.starts_with("failure"), "{c:?}");
    // The log came through the redirect to the signed URL, which refuses credentials.
    assert!(
        seen.contains("manifest for ghcr.io/acme/inference:v9 not found"),
        "{seen}"
    );

    use console_core::workflow::WorkflowRunner;
    d.post(
        "/_double/next_run",
        json!({"conclusion": "success", "log": "", "details": true}),
    );
    let id = w.dispatch("v10").await.unwrap();
    w.cancel_run(id).await.unwrap();
    let c = w.wait(id, &mut |_, _| {}).await.unwrap();
    assert!(!c.success && c.detail.starts_with("cancelled"), "{c:?}");
    // Cancelling a finished run is GitHub's 409, reported as such.
    let e = w.cancel_run(id).await.unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");
}

#[tokio::test]
async fn installs_the_deploy_workflow_and_shows_the_difference_first() {
    use console_core::workflow_file::{WorkflowState, WORKFLOW, WORKFLOW_PATH};
    let Some(d) = Double::start() else { return };
    let g = client(&d, token());
    assert_eq!(
        g.workflow_state(&repo(), "main").await.unwrap(),
        WorkflowState::Missing
    );
    assert_eq!(
        g.install_workflow(&repo(), "main", None).await.unwrap(),
        Written::Created
    );
    assert_eq!(
        d.state()["repos"]["acme/inference"]["files"][WORKFLOW_PATH],
        WORKFLOW
    );
    assert_eq!(
        g.workflow_state(&repo(), "main").await.unwrap(),
        WorkflowState::UpToDate
    );

    // Someone edited it: the diff shows their line going and ours coming back.
    let theirs = WORKFLOW.replace("command_timeout: 10m", "command_timeout: 30m");
    d.post(
        "/_double/file",
        json!({"full_name": "acme/inference", "path": WORKFLOW_PATH, "text": theirs}),
    );
    let WorkflowState::Outdated { diff, sha } = g.workflow_state(&repo(), "main").await.unwrap()
    else {
        panic!("expected outdated")
    };
    assert!(
        diff.contains("- ")
            && diff.contains("command_timeout: 30m")
            && diff.contains("+ ")
            && diff.contains("command_timeout: 10m"),
        "{diff}"
    );
    assert_eq!(
        diff.lines()
            .filter(|l| l.starts_with("- ") || l.starts_with("+ "))
            .count(),
        2,
        "{diff}"
    );
    // It changes again before the user confirms: the stale sha is refused, nothing is overwritten.
    let newer = theirs.replace("timeout-minutes: 15", "timeout-minutes: 20");
    d.post(
        "/_double/file",
        json!({"full_name": "acme/inference", "path": WORKFLOW_PATH, "text": newer}),
    );
    let e = g
        .install_workflow(&repo(), "main", Some(&sha))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("changed since it was compared"),
        "{e}"
    );
    assert_eq!(
        d.state()["repos"]["acme/inference"]["files"][WORKFLOW_PATH],
        newer.as_str()
    );
    let WorkflowState::Outdated { sha, .. } = g.workflow_state(&repo(), "main").await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        g.install_workflow(&repo(), "main", Some(&sha))
            .await
            .unwrap(),
        Written::Updated
    );
    assert_eq!(
        g.workflow_state(&repo(), "main").await.unwrap(),
        WorkflowState::UpToDate
    );
}
