//! The GitHub path: the engine dispatches the repository's deploy workflow and waits for its run;
//! the workflow's own deploy step does the host work (see `.github/workflows/deploy.yml`). The
//! GitHub client lives elsewhere (credentials issue); the engine only needs this trait.

use async_trait::async_trait;

use crate::exec::Sink;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conclusion {
    pub success: bool,
    /// e.g. `success`, `failure`, `cancelled`, with a short reason when known.
    pub detail: String,
}

#[async_trait]
pub trait WorkflowRunner: Send + Sync {
    /// What is being run, e.g. `acme/inference .github/workflows/deploy.yml`.
    fn describe(&self) -> String;
    /// Starts a run deploying `tag` (workflow_dispatch with input `tag`); returns the run id.
    async fn dispatch(&self, tag: &str) -> Result<i64, String>;
    /// Waits for the run to end, streaming what it logs.
    async fn wait(&self, run_id: i64, sink: Sink<'_>) -> Result<Conclusion, String>;
    /// Asks for the run to be stopped; `wait` then reports how it ended (e.g. `cancelled`).
    async fn cancel(&self, run_id: i64) -> Result<(), String>;
}
