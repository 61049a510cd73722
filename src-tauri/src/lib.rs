//! The desktop app: a thin Tauri layer over `console-core`. The page (ui/) calls the commands in
//! `commands`, each a few lines over the core library; deployment progress reaches it as `engine`
//! events. Everything that touches the network runs here in Rust, never in the page.

use std::sync::Arc;

use tauri::{Builder, Emitter, Manager, Runtime};

pub mod command_names;
pub mod commands;
pub mod error;
pub mod settings;
pub mod state;

pub use error::{AppError, AppResult};

/// The event every engine progress message is sent as.
pub const ENGINE_EVENT: &str = "engine";

/// Opens the data directory, history and keychain, and hands them to the commands. The real app
/// calls it from its setup hook; the mock-runtime tests call it right after building.
pub fn init<R: Runtime>(app: &tauri::App<R>) -> AppResult<()> {
    let handle = app.handle().clone();
    let progress: console_core::engine::Progress = Arc::new(move |e| {
        let _ = handle.emit(ENGINE_EVENT, e);
    });
    app.manage(state::AppState::open(state::data_dir(), progress)?);
    // Looking for Docker and compose takes about half a second (docker-compose is a Python
    // program): start now, while the window loads, instead of when the page first asks.
    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        handle.state::<state::AppState>().sandbox_engine().await;
    });
    Ok(())
}

/// The command handlers, shared by the real app and the mock-runtime tests.
pub fn app_builder<R: Runtime>(b: Builder<R>) -> Builder<R> {
    use commands::*;
    b.invoke_handler(tauri::generate_handler![
        app::app_info,
        app::settings_save,
        credentials::credentials_list,
        credentials::credential_save,
        credentials::credential_delete,
        deploy::images_list,
        deploy::deploy,
        deploy::rollback,
        deploy::deploy_cancel,
        deploy::history_list,
        deploy::deployment_steps,
        monitoring::dashboard,
        monitoring::service_verify,
        cloud::provision_ec2,
        cloud::teardown_ec2,
        github::github_workflow_status,
        github::github_install_workflow,
        github::github_configure,
        github::deploy_github,
        traffic::traffic_start,
        traffic::traffic_stop,
        traffic::traffic_status,
        own_model::own_model_inspect,
        own_model::own_model_build,
        own_model::own_model_push,
        alerts::alerts,
        alerts::alert_webhook_save,
        alerts::alert_rules_save,
        fleet::fleet_status,
        fleet::fleet_deploy,
        fleet::fleet_scale,
    ])
}

pub fn run() {
    app_builder(tauri::Builder::default())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .setup(|app| Ok(init(app)?))
        .build(tauri::generate_context!())
        .expect("the console failed to start")
        .run(|app, event| {
            // The fleet's HAProxy is the console's child: it stops with the console (the hosts'
            // containers keep serving, as the sandbox's do).
            if let tauri::RunEvent::Exit = event {
                if let Some(state) = app.try_state::<state::AppState>() {
                    if let Ok(mut b) = state.fleet_balancer.try_lock() {
                        b.take();
                    }
                }
            }
        });
}
