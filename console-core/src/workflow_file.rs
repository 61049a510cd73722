//! The deploy workflow in the user's repository: compared with the one this console ships
//! (`.github/workflows/deploy.yml`), shown as a line diff, and installed or updated through the
//! contents API only with the blob sha the user saw (so a file changed meanwhile is not overwritten).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::{Method, StatusCode};

use crate::github::{GitHub, GitHubError, Repo, Written};

pub const WORKFLOW_PATH: &str = ".github/workflows/deploy.yml";
/// The workflow this console ships and its tests run.
pub const WORKFLOW: &str = include_str!("../../.github/workflows/deploy.yml");
const CONTENTS_NEEDS: &str = "the `repo` and `workflow` scopes (classic token) or the repository permissions \"Contents: Read and write\" and \"Workflows: Read and write\" (fine-grained token)";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkflowState {
    Missing,
    UpToDate,
    /// The repository has another version: `diff` turns it into ours; `sha` is its blob id.
    Outdated {
        diff: String,
        sha: String,
    },
}

impl GitHub {
    /// How the repository's deploy workflow on `branch` compares with the console's.
    pub async fn workflow_state(
        &self,
        repo: &Repo,
        branch: &str,
    ) -> Result<WorkflowState, GitHubError> {
        let path = format!("/repos/{repo}/contents/{WORKFLOW_PATH}?ref={branch}");
        let body = match self
            .send(
                Method::GET,
                &path,
                None,
                "read the deploy workflow",
                CONTENTS_NEEDS,
                repo,
            )
            .await
        {
            Ok((_, _, body)) => body,
            Err(GitHubError::NotFound { .. }) => return Ok(WorkflowState::Missing),
            Err(e) => return Err(e),
        };
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| bad(format!("unexpected body: {e}")))?;
        let encoded: String = v["content"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let theirs = B64
            .decode(encoded)
            .map_err(|_| bad("the file content is not base64".into()))?;
        let theirs = String::from_utf8_lossy(&theirs);
        if theirs == WORKFLOW {
            return Ok(WorkflowState::UpToDate);
        }
        Ok(WorkflowState::Outdated {
            diff: line_diff(&theirs, WORKFLOW),
            sha: v["sha"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Creates the workflow (`sha` None) or replaces the version whose blob sha the caller was shown.
    pub async fn install_workflow(
        &self,
        repo: &Repo,
        branch: &str,
        sha: Option<&str>,
    ) -> Result<Written, GitHubError> {
        let mut body = serde_json::json!({
            "message": "Deploy workflow from the ML ops console",
            "content": B64.encode(WORKFLOW),
            "branch": branch,
        });
        if let Some(s) = sha {
            body["sha"] = s.into();
        }
        let path = format!("/repos/{repo}/contents/{WORKFLOW_PATH}");
        match self.send(Method::PUT, &path, Some(&body), "write the deploy workflow", CONTENTS_NEEDS, repo).await {
            Ok((StatusCode::CREATED, _, _)) => Ok(Written::Created),
            Ok(_) => Ok(Written::Updated),
            Err(GitHubError::Rejected { status: 409, .. }) => Err(GitHubError::BadInput(format!(
                "{WORKFLOW_PATH} in {repo} changed since it was compared; compare again before replacing it"
            ))),
            Err(e) => Err(e),
        }
    }
}

fn bad(message: String) -> GitHubError {
    GitHubError::Rejected {
        what: "read the deploy workflow".into(),
        status: 200,
        message,
    }
}

/// A line diff from `old` to `new`: unchanged lines start with two spaces, removed with `- `,
/// added with `+ ` (longest common subsequence; workflow files are small).
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines: Vec<(char, &str)> = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions, as unified diffs show them.
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    // Changes with DIFF_CONTEXT unchanged lines around them; longer unchanged stretches are one line.
    let near_change = |k: usize| {
        let lo = k.saturating_sub(DIFF_CONTEXT);
        let hi = (k + DIFF_CONTEXT + 1).min(lines.len());
        lines[lo..hi].iter().any(|(m, _)| *m != ' ')
    };
    let mut out = String::new();
    let mut skipped = 0;
    for (k, (mark, line)) in lines.iter().enumerate() {
        if *mark == ' ' && !near_change(k) {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            out.push_str(&format!(
                "  ⋯ {skipped} unchanged line{}\n",
                if skipped == 1 { "" } else { "s" }
            ));
            skipped = 0;
        }
        out.push_str(&format!("{mark} {line}\n"));
    }
    if skipped > 0 {
        out.push_str(&format!(
            "  ⋯ {skipped} unchanged line{}\n",
            if skipped == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Unchanged lines shown before and after each change.
const DIFF_CONTEXT: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_removed_and_added_lines() {
        assert_eq!(
            line_diff("a\nb\nc\n", "a\nx\nc\nd\n"),
            "  a\n- b\n+ x\n  c\n+ d\n"
        );
        assert_eq!(line_diff("", "a\n"), "+ a\n");
        assert_eq!(line_diff("same\n", "same\n"), "  ⋯ 1 unchanged line\n");
        // Far from a change, unchanged lines are counted, not shown.
        let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let new = old.replace("\n10\n", "\nten\n");
        assert_eq!(
            line_diff(&old, &new),
            "  ⋯ 6 unchanged lines\n  7\n  8\n  9\n- 10\n+ ten\n  11\n  12\n  13\n  ⋯ 7 unchanged lines\n"
        );
    }

    #[test]
    fn ships_the_repository_workflow() {
        assert!(WORKFLOW.contains("appleboy/ssh-action@"));
    }
}
