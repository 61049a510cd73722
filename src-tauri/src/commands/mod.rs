//! The commands the page calls, one module per domain. Each is a few lines over `console-core`.

pub mod alerts;
pub mod app;
pub mod cloud;
pub mod credentials;
pub mod deploy;
pub mod fleet;
pub mod github;
pub mod monitoring;
pub mod own_model;
pub mod traffic;
