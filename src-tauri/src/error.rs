//! The one error type every command returns. It reaches the page as `{code, message}`: `code` is
//! stable for the UI to branch on, `message` is a sentence that says what to do.

use serde::Serialize;

#[derive(Debug, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: &'static str,
    pub message: String,
}

impl AppError {
    pub fn new(code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
        }
    }

    /// The request itself is wrong (a field the page should have checked).
    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::new("invalid", message)
    }
}

pub type AppResult<T> = Result<T, AppError>;

impl From<console_core::vault::VaultError> for AppError {
    fn from(e: console_core::vault::VaultError) -> Self {
        use console_core::vault::VaultError as V;
        let code = match e {
            V::Unavailable { .. } => "keychain-unavailable",
            V::Locked { .. } => "keychain-locked",
            V::Invalid { .. } => "invalid",
            V::Platform { .. } => "keychain",
        };
        AppError::new(code, e.to_string())
    }
}

impl From<console_core::EngineError> for AppError {
    fn from(e: console_core::EngineError) -> Self {
        let code = match e {
            console_core::EngineError::Refused(_) => "refused",
            console_core::EngineError::History(_) => "history",
        };
        AppError::new(code, e.to_string())
    }
}

impl From<console_core::history::HistoryError> for AppError {
    fn from(e: console_core::history::HistoryError) -> Self {
        AppError::new("history", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaches_the_page_as_code_and_message() {
        let e = AppError::invalid("port 0 is not a port");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "invalid", "message": "port 0 is not a port"})
        );
    }
}
