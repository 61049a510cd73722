//! Credentials in the OS keychain: what is stored (never the values), save or replace, delete.

use std::sync::atomic::Ordering;

use console_core::vault::SecretName;
use console_core::Secret;
use serde::Serialize;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Serialize)]
pub struct Stored {
    /// The keychain account name (`github-token`, `ssh-key/<host>`...).
    pub name: String,
    /// What it is, for people.
    pub label: String,
}

fn parse(name: &str) -> AppResult<SecretName> {
    SecretName::parse(name).ok_or_else(|| {
        AppError::invalid(format!(
            "`{name}` is not a credential the console keeps (aws-access-key-id, aws-secret-access-key, github-token, ghcr-token, ssh-key/<host>, api-token/<target>, alert-webhook/<target>)"
        ))
    })
}

#[tauri::command]
pub fn credentials_list(state: State<'_, AppState>) -> AppResult<Vec<Stored>> {
    Ok(state
        .vault
        .list()?
        .into_iter()
        .map(|n| Stored {
            name: n.account(),
            label: n.to_string(),
        })
        .collect())
}

/// Stores `value` under `name`, replacing what was there. The value is checked for its kind
/// (a PEM key for ssh-key/…, a token's shape) and never echoed back.
#[tauri::command]
pub fn credential_save(
    state: State<'_, AppState>,
    name: String,
    value: String,
) -> AppResult<Stored> {
    let n = parse(&name)?;
    let secret = Secret::new(value);
    state.vault.put(&n, &secret)?;
    state.credentials_changed.fetch_add(1, Ordering::AcqRel);
    Ok(Stored {
        name: n.account(),
        label: n.to_string(),
    })
}

#[tauri::command]
pub fn credential_delete(state: State<'_, AppState>, name: String) -> AppResult<bool> {
    let n = parse(&name)?;
    let deleted = state.vault.delete(&n)?;
    state.credentials_changed.fetch_add(1, Ordering::AcqRel);
    Ok(deleted)
}
