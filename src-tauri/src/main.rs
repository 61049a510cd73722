// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    // The page is static HTML with SVG images: WebKitGTK's accelerated compositing buys nothing
    // here and, on machines without a GPU (software GL), costs about 90 MiB in the web process
    // (src-tauri/bench/startup.py). Set before any thread or GTK exists; a user's own choice wins.
    #[cfg(target_os = "linux")]
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
    mlops_console::run();
}
