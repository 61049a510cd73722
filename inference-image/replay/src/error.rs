//! Why a replay could not start. Every message is a sentence that says what to do about it.
//! (Problems *during* a run — rejections, 5xx, dropped connections — are not errors: they are
//! counted in the [`Summary`](crate::Summary).)

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration cannot work (no bound, a fraction outside 0..1, an unknown feature, ...).
    #[error("{0}")]
    Config(String),
    /// Nothing answers at the URL.
    #[error("the service is not reachable at {url}: {reason}. Is it running? Start it (e.g. `bash scripts/run.sh`) or pass its address with --url")]
    Unreachable { url: String, reason: String },
    /// Something answers at the URL, but not the way the inference service does.
    #[error("{0}")]
    Service(String),
    /// The service refused the token (or asked for one).
    #[error("the service at {url} answered {status} to {path}: {hint}")]
    Auth {
        url: String,
        path: String,
        status: u16,
        hint: &'static str,
    },
    /// The model card could not be read or lacks the fields the replay needs.
    #[error("{0}")]
    Card(String),
    /// The traffic data could not be read or does not fit the model.
    #[error("{0}")]
    Data(String),
    /// Cancelled while still checking the service (a cancelled *run* returns its summary instead).
    #[error("the replay was cancelled before it started")]
    Cancelled,
    /// The `record` file could not be created.
    #[error("cannot create the record file {path}: {reason}; choose a writable path")]
    Record { path: String, reason: String },
}

impl ReplayError {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        ReplayError::Config(msg.into())
    }
}

/// The innermost cause of an error, which is where reqwest and io keep the useful part
/// ("Connection refused (os error 111)").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
