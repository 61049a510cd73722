//! The app's command names, shared by the build script (which makes an `allow-<name>` permission
//! for each) and the tests (which check the handler list and the window's capability agree).

pub const ALL: &[&str] = &[
    "app_info",
    "settings_save",
    "credentials_list",
    "credential_save",
    "credential_delete",
    "images_list",
    "deploy",
    "rollback",
    "deploy_cancel",
    "history_list",
    "deployment_steps",
    "dashboard",
    "service_verify",
    "provision_ec2",
    "github_workflow_status",
    "github_install_workflow",
    "github_configure",
    "deploy_github",
    "traffic_start",
    "traffic_stop",
    "traffic_status",
    "own_model_inspect",
    "own_model_build",
];
