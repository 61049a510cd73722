fn main() {
    // Every app command gets an `allow-<name>` permission; the window's capability
    // (capabilities/main.json) grants exactly the ones the page uses.
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(mlops_commands::ALL)),
    )
    .expect("tauri build script");
}

#[path = "src/command_names.rs"]
mod mlops_commands;
