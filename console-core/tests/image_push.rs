//! Pushing an image built on this computer to a registry through the Docker Engine API
//! (`console_core::image_push`), against Debian's docker-registry with htpasswd auth on loopback
//! (the stand-in for GHCR): the tag arrives, a wrong token is a sentence, no login is left on disk.

mod support;

use std::process::{Command, Stdio};

use console_core::image_push::{push, PushTarget};
use console_core::Secret;
use support::{docker_or_skip, random_hex, Registry};

/// A one-file image, imported from a tar made here (no base image, no registry needed).
fn tiny_image(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.txt"), random_hex(8)).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"tar -C "$1" -c probe.txt | docker import - "$2" >/dev/null"#)
        .args(["sh", dir.path().to_str().unwrap(), name])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "docker import of {name}");
}

fn docker_config_mentions(addr: &str) -> bool {
    let home = std::env::var("HOME").unwrap_or_default();
    std::fs::read_to_string(format!("{home}/.docker/config.json")).is_ok_and(|c| c.contains(addr))
}

#[test]
fn an_image_is_pushed_with_the_token_in_the_request_only() {
    if !docker_or_skip("an_image_is_pushed_with_the_token_in_the_request_only") {
        return;
    }
    let registry = Registry::start();
    let local = format!("mlops-test/push-probe:{}", random_hex(4));
    tiny_image(&local);
    let image = format!("{}/acme/own-model", registry.addr);
    let token = Secret::new(registry.password.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let user = registry.user.as_str();
    let target = |tag: &'static str, token| PushTarget {
        image: &image,
        tag,
        user,
        token,
    };

    let mut lines = Vec::new();
    let digest = rt
        .block_on(push(&local, &target("churn-1", &token), &mut |l| {
            lines.push(l.to_string())
        }))
        .unwrap_or_else(|e| panic!("{e}\n--- registry log\n{}", registry.log()));
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(lines.iter().any(|l| l.contains("Pushed")), "{lines:?}");
    let tags = rt
        .block_on(console_core::registry::list_tags(
            &image,
            &registry.user,
            Some(&token),
        ))
        .unwrap();
    assert_eq!(tags, ["churn-1"]);

    // A wrong token is refused by the registry, in a sentence naming the image.
    let wrong = Secret::new("wrong-password-0123");
    let e = rt
        .block_on(push(&local, &target("churn-2", &wrong), &mut |_| {}))
        .unwrap_err();
    assert!(
        e.starts_with(&format!("pushing {image}:churn-2 failed: ")) && e.contains("auth"),
        "{e}"
    );
    // An image that was never built is named.
    let e = rt
        .block_on(push(
            "mlops-test/never-built:x",
            &target("churn-3", &token),
            &mut |_| {},
        ))
        .unwrap_err();
    assert!(e.starts_with("docker tag mlops-test/never-built:x"), "{e}");
    // Nothing logged in: no credentials for this registry in Docker's config file.
    assert!(!docker_config_mentions(&registry.addr));

    for i in [
        local.clone(),
        format!("{image}:churn-1"),
        format!("{image}:churn-2"),
    ] {
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
