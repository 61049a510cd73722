//! Core of the ML ops console: everything but the window. The desktop app (src-tauri) and the
//! command line are thin layers over this crate, so it has no GUI dependency and its tests run
//! headless against real stand-ins (sshd, a registry, the Docker engine).

pub mod alarms;
pub mod alb;
pub mod alert_rules;
pub mod alert_view;
pub mod aws;
pub mod balancer;
pub mod canary;
pub mod charts;
pub mod cloud_charts;
pub mod cloudwatch;
pub mod command;
pub mod dashboard;
pub mod ec2;
pub mod engine;
pub mod exec;
pub mod fleet;
pub mod fleet_hosts;
pub mod fleet_monitor;
pub mod fleet_scale;
pub mod github;
pub mod github_workflow;
pub mod health;
pub mod history;
pub mod image_push;
pub mod local_balancer;
pub mod own_model;
pub mod publisher_role;
pub mod registry;
pub mod repo_setup;
pub mod rollout_history;
pub mod sandbox;
pub mod sandbox_fleet;
pub mod secret;
pub mod service;
pub mod ssh;
pub mod steps;
pub mod target;
pub mod task_view;
pub mod vault;
pub mod watch;
pub mod workflow;
pub mod workflow_file;

pub use engine::{Engine, EngineError, Event};
pub use history::{Deployment, History, Trigger};
pub use secret::Secret;
pub use target::{Host, RegistryAuth, Target};
