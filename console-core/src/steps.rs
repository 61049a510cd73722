//! The deploy steps as data. Each builder returns the exact [`Command`] an executor runs; the same
//! sequence serves the direct path and mirrors the script in `.github/workflows/deploy.yml`:
//! lock → login → pull → switch (.env, down, up -d) → health gate → prune → unlock.

use crate::command::{Command, Stdin};
use crate::secret::Secret;
use crate::target::{RegistryAuth, Target};

/// The compose file the hosts run, shipped inside the console.
pub const COMPOSE_FILE: &str = include_str!("../../inference-image/docker-compose.yml");

/// Exit status of the lock step when another deploy holds the host.
pub const LOCK_HELD: i32 = 75;

pub fn lock_dir(t: &Target) -> String {
    format!("{}/.deploy-lock", t.compose_dir.trim_end_matches('/'))
}

fn sh(script: &str, args: &[&str]) -> Command {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args.iter().copied())
}

/// Takes the host's deploy lock (an atomic `mkdir`, shared with the GitHub workflow's script),
/// writing `owner` into it; exits [`LOCK_HELD`] printing the holder when it is taken.
pub fn lock(t: &Target, owner: &str) -> Command {
    sh(
        r#"mkdir -p "$(dirname "$1")" && if mkdir "$1" 2>/dev/null; then printf '%s\n' "$2" > "$1/owner"; else echo "held by: $(cat "$1/owner" 2>/dev/null || echo unknown)"; exit 75; fi"#,
        &[&lock_dir(t), owner],
    )
}

pub fn unlock(t: &Target) -> Command {
    sh(r#"rm -f "$1/owner" && rmdir "$1""#, &[&lock_dir(t)])
}

/// Breaks a stale lock (its owner is known to be gone).
pub fn break_lock(t: &Target) -> Command {
    sh(r#"rm -rf "$1""#, &[&lock_dir(t)])
}

/// Writes `contents` to `path` atomically with mode 600 (the data travels on stdin).
pub fn write_file(path: &str, contents: &[u8]) -> Command {
    sh(
        r#"umask 077 && mkdir -p "$(dirname "$1")" && cat > "$1.tmp" && mv "$1.tmp" "$1""#,
        &[path],
    )
    .stdin(Stdin::Data(contents.to_vec()))
}

pub fn upload_compose_file(t: &Target) -> Command {
    write_file(
        &format!("{}/docker-compose.yml", t.compose_dir.trim_end_matches('/')),
        COMPOSE_FILE.as_bytes(),
    )
}

/// The .env docker-compose reads from the compose directory: which image and tag run, where.
pub fn env_file(t: &Target, tag: &str) -> String {
    format!(
        "COMPOSE_PROJECT_NAME={}\nIMAGE_NAME={}\nIMAGE_TAG={tag}\nINFERENCE_PORT={}\nINFERENCE_HOST_IP={}\n{}",
        t.project,
        t.image,
        t.port,
        t.publish_ip,
        cloudwatch_lines(t)
    )
}

/// The CloudWatch publishing settings as .env lines (none when the target publishes nothing).
fn cloudwatch_lines(t: &Target) -> String {
    t.cloudwatch.as_ref().map_or(String::new(), |c| {
        format!(
            "INFERENCE_CLOUDWATCH_NAMESPACE={}\nINFERENCE_CLOUDWATCH_SERVICE={}\nINFERENCE_CLOUDWATCH_REGION={}\n",
            c.namespace, c.service, c.region
        )
    })
}

/// The host's settings in .env — project, port, address, CloudWatch publishing — for a deploy the
/// GitHub workflow makes: the workflow's script rewrites only IMAGE_NAME and IMAGE_TAG and keeps
/// the rest, so these must be there before its first run. The image lines already there (what
/// serves now) stay.
pub fn write_env_settings(t: &Target) -> Command {
    let settings = format!(
        "COMPOSE_PROJECT_NAME={}\nINFERENCE_PORT={}\nINFERENCE_HOST_IP={}\n{}",
        t.project,
        t.port,
        t.publish_ip,
        cloudwatch_lines(t)
    );
    sh(
        r#"umask 077 && mkdir -p "$1" && cd "$1" && { grep -E '^(IMAGE_NAME|IMAGE_TAG)=' .env 2>/dev/null || true; cat; } > .env.tmp && mv .env.tmp .env"#,
        &[t.compose_dir.trim_end_matches('/')],
    )
    .stdin(Stdin::Data(settings.into_bytes()))
}

pub fn write_env(t: &Target, tag: &str) -> Command {
    write_file(
        &format!("{}/.env", t.compose_dir.trim_end_matches('/')),
        env_file(t, tag).as_bytes(),
    )
}

/// `docker login` with the token on stdin (never on the command line).
pub fn login(r: &RegistryAuth) -> Command {
    Command::new("docker")
        .args([
            "login",
            &r.server,
            "--username",
            &r.user,
            "--password-stdin",
        ])
        .stdin(Stdin::Secret(r.token.clone()))
}

fn compose(t: &Target, args: &[&str]) -> Command {
    let mut c = Command::new(&t.compose[0])
        .args(t.compose[1..].iter().cloned())
        .args(args.iter().copied());
    c.cwd = Some(t.compose_dir.clone());
    c
}

/// Pulls `tag` without touching .env, so a failed pull leaves the running version's files as they were.
pub fn pull(t: &Target, tag: &str) -> Command {
    compose(t, &["pull"])
        .env("COMPOSE_PROJECT_NAME", &t.project)
        .env("IMAGE_NAME", &t.image)
        .env("IMAGE_TAG", tag)
}

/// The compose project a new version is tried in before the switch (see `Target::candidate_port`).
pub fn candidate_project(t: &Target) -> String {
    format!("{}-candidate", t.project)
}

/// Environment that points compose at the candidate project; it overrides the values in .env.
fn candidate(t: &Target, tag: &str, port: u16, args: &[&str]) -> Command {
    compose(t, args)
        .env("COMPOSE_PROJECT_NAME", candidate_project(t))
        .env("IMAGE_NAME", &t.image)
        .env("IMAGE_TAG", tag)
        .env("INFERENCE_PORT", port.to_string())
        .env("INFERENCE_HOST_IP", "127.0.0.1")
        // The candidate answers only the gate's probes: its minutes are not the service's.
        .env("INFERENCE_CLOUDWATCH_NAMESPACE", "")
}

pub fn candidate_up(t: &Target, tag: &str, port: u16) -> Command {
    with_service_secrets(t, candidate(t, tag, port, &["up", "-d"]))
}

/// Runs `c` with the service's secrets in its environment, read from stdin by a `sh` wrapper: the
/// monitoring token on the first line (INFERENCE_API_TOKEN) and, when the target has one, the alert
/// webhook URL on the second (INFERENCE_ALERT_WEBHOOK_URL). Neither is in a file nor in any
/// process's arguments (compose substitutes them into the container's environment).
fn with_service_secrets(t: &Target, c: Command) -> Command {
    let Some(token) = &t.api_token else {
        return c;
    };
    let (script, input) = match &t.alert_webhook {
        None => (
            r#"IFS= read -r INFERENCE_API_TOKEN || [ -n "$INFERENCE_API_TOKEN" ] || exit 64; export INFERENCE_API_TOKEN; exec "$@""#,
            token.clone(),
        ),
        Some(url) => (
            r#"IFS= read -r INFERENCE_API_TOKEN || exit 64; IFS= read -r INFERENCE_ALERT_WEBHOOK_URL || [ -n "$INFERENCE_ALERT_WEBHOOK_URL" ] || exit 64; export INFERENCE_API_TOKEN INFERENCE_ALERT_WEBHOOK_URL; exec "$@""#,
            Secret::new(format!("{}\n{}", token.expose(), url.expose())),
        ),
    };
    let mut w = sh(script, &[])
        .arg(c.program)
        .args(c.args)
        .stdin(Stdin::Secret(input));
    w.cwd = c.cwd;
    w.env = c.env;
    w
}

/// Removes the candidate with its own state volume (`-v`); the live project's volume is another one.
pub fn candidate_down(t: &Target, tag: &str, port: u16) -> Command {
    candidate(t, tag, port, &["down", "-v"])
}

pub fn down(t: &Target) -> Command {
    compose(t, &["down"])
}

pub fn up(t: &Target) -> Command {
    with_service_secrets(t, compose(t, &["up", "-d"]))
}

pub fn image_ref(t: &Target, tag: &str) -> String {
    format!("{}:{tag}", t.image)
}

/// Prints the repo digest (`repo@sha256:…`) of a local image, or exits 1 if it is not on the host.
pub fn inspect_digest(t: &Target, tag: &str) -> Command {
    Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{join .RepoDigests \" \"}}",
        &image_ref(t, tag),
    ])
}

/// Lists the tags of the target's repository present on the host, one per line.
pub fn list_tags(t: &Target) -> Command {
    Command::new("docker").args(["image", "ls", "--format", "{{.Tag}}", &t.image])
}

pub fn remove_image(t: &Target, tag: &str) -> Command {
    Command::new("docker").args(["image", "rm", &image_ref(t, tag)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::target::Host;

    fn target() -> Target {
        let mut t = Target::new(
            "prod",
            Host::Local,
            "/home/ubuntu/inference",
            "ghcr.io/acme/inference",
            8080,
        );
        t.registry = Some(RegistryAuth {
            server: "ghcr.io".into(),
            user: "octocat".into(),
            token: Secret::new("token-under-test"),
        });
        t
    }

    /// What `probe` prints when run here with `input` on its stdin (it must succeed).
    fn printed(probe: &Command, input: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new(&probe.program)
            .args(&probe.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_api_token_travels_on_stdin_only() {
        let mut t = target();
        let token = Secret::random_hex(16).unwrap();
        t.api_token = Some(token.clone());
        for c in [up(&t), candidate_up(&t, "v2", 8081)] {
            assert_eq!(c.program, "sh");
            assert!(
                !c.argv().iter().any(|a| a.contains(token.expose())),
                "{:?}",
                c.argv()
            );
            assert!(c.argv().ends_with(&["up", "-d"]));
            assert!(matches!(&c.stdin, Stdin::Secret(s) if s.expose() == token.expose()));
            assert!(!c.to_shell().contains(token.expose()));
        }
        // The wrapper really exports what it read, with or without a final newline.
        let probe = with_service_secrets(
            &t,
            Command::new("sh").args(["-c", r#"printf '%s' "$INFERENCE_API_TOKEN""#]),
        );
        for input in [token.expose().to_string(), format!("{}\n", token.expose())] {
            assert_eq!(printed(&probe, &input), token.expose());
        }
    }

    #[test]
    fn the_alert_webhook_travels_on_stdin_after_the_token() {
        let mut t = target();
        let token = Secret::random_hex(16).unwrap();
        let url = Secret::new("https://hooks.example.test/services/T000/B000/secret-part");
        t.api_token = Some(token.clone());
        t.alert_webhook = Some(url.clone());
        for c in [up(&t), candidate_up(&t, "v2", 8081)] {
            assert!(
                !c.argv().iter().any(|a| a.contains("secret-part")),
                "{:?}",
                c.argv()
            );
            assert!(!c.to_shell().contains("secret-part"));
            assert!(c.argv().ends_with(&["up", "-d"]));
        }
        let probe = with_service_secrets(
            &t,
            Command::new("sh").args([
                "-c",
                r#"printf '%s|%s' "$INFERENCE_API_TOKEN" "$INFERENCE_ALERT_WEBHOOK_URL""#,
            ]),
        );
        let Stdin::Secret(input) = &probe.stdin else {
            panic!("no secret on stdin")
        };
        for input in [input.expose().to_string(), format!("{}\n", input.expose())] {
            assert_eq!(
                printed(&probe, &input),
                format!("{}|{}", token.expose(), url.expose())
            );
        }
    }

    #[test]
    fn exact_commands() {
        let t = target();
        assert_eq!(
            pull(&t, "v2").to_shell(),
            "cd /home/ubuntu/inference && env COMPOSE_PROJECT_NAME=inference IMAGE_NAME=ghcr.io/acme/inference IMAGE_TAG=v2 docker-compose pull"
        );
        assert_eq!(down(&t).argv(), ["docker-compose", "down"]);
        assert_eq!(up(&t).argv(), ["docker-compose", "up", "-d"]);
        assert_eq!(up(&t).cwd.as_deref(), Some("/home/ubuntu/inference"));
        let l = login(t.registry.as_ref().unwrap());
        assert_eq!(
            l.argv(),
            [
                "docker",
                "login",
                "ghcr.io",
                "--username",
                "octocat",
                "--password-stdin"
            ]
        );
        assert!(matches!(&l.stdin, Stdin::Secret(s) if s.expose() == "token-under-test"));
        assert!(!l.to_string().contains("token-under-test"));
        assert_eq!(
            inspect_digest(&t, "v2").argv(),
            [
                "docker",
                "image",
                "inspect",
                "--format",
                "{{join .RepoDigests \" \"}}",
                "ghcr.io/acme/inference:v2"
            ]
        );
        assert_eq!(
            remove_image(&t, "v0").argv(),
            ["docker", "image", "rm", "ghcr.io/acme/inference:v0"]
        );
        assert_eq!(
            list_tags(&t).argv(),
            [
                "docker",
                "image",
                "ls",
                "--format",
                "{{.Tag}}",
                "ghcr.io/acme/inference"
            ]
        );
    }

    #[test]
    fn candidate_runs_as_its_own_project_on_loopback() {
        let t = target();
        assert_eq!(
            candidate_up(&t, "v2", 8081).to_shell(),
            "cd /home/ubuntu/inference && env COMPOSE_PROJECT_NAME=inference-candidate \
             IMAGE_NAME=ghcr.io/acme/inference IMAGE_TAG=v2 INFERENCE_PORT=8081 \
             INFERENCE_HOST_IP=127.0.0.1 INFERENCE_CLOUDWATCH_NAMESPACE='' docker-compose up -d"
        );
        assert_eq!(candidate_down(&t, "v2", 8081).args, ["down", "-v"]);
    }

    #[test]
    fn compose_v2_plugin() {
        let mut t = target();
        t.compose = vec!["docker".into(), "compose".into()];
        assert_eq!(up(&t).argv(), ["docker", "compose", "up", "-d"]);
    }

    #[test]
    fn env_file_names_image_tag_and_port() {
        assert_eq!(
            env_file(&target(), "v7"),
            "COMPOSE_PROJECT_NAME=inference\nIMAGE_NAME=ghcr.io/acme/inference\nIMAGE_TAG=v7\nINFERENCE_PORT=8080\nINFERENCE_HOST_IP=127.0.0.1\n"
        );
        let w = write_env(&target(), "v7");
        assert_eq!(
            w.args.last().map(String::as_str),
            Some("/home/ubuntu/inference/.env")
        );
        assert!(
            matches!(&w.stdin, Stdin::Data(d) if d.starts_with(b"COMPOSE_PROJECT_NAME=inference\n"))
        );
    }

    #[test]
    fn a_publishing_host_gets_its_cloudwatch_settings_in_env_but_not_its_candidate() {
        let mut t = target();
        t.cloudwatch = Some(crate::target::CloudWatchPublishing {
            namespace: "MLOps/Inference".into(),
            service: "prod".into(),
            region: "eu-west-1".into(),
        });
        let lines = "INFERENCE_CLOUDWATCH_NAMESPACE=MLOps/Inference\nINFERENCE_CLOUDWATCH_SERVICE=prod\nINFERENCE_CLOUDWATCH_REGION=eu-west-1\n";
        assert!(env_file(&t, "v7").ends_with(&format!("INFERENCE_HOST_IP=127.0.0.1\n{lines}")));
        assert!(
            matches!(&write_env_settings(&t).stdin, Stdin::Data(d) if d.ends_with(lines.as_bytes()))
        );
        // The compose file hands them to the container.
        for v in ["NAMESPACE", "SERVICE", "REGION"] {
            assert!(COMPOSE_FILE.contains(&format!(
                "INFERENCE_CLOUDWATCH_{v}: \"${{INFERENCE_CLOUDWATCH_{v}:-}}\""
            )));
        }
        let c = candidate_up(&t, "v8", 8081);
        assert!(c
            .env
            .iter()
            .any(|(k, v)| k == "INFERENCE_CLOUDWATCH_NAMESPACE" && v.is_empty()));
    }

    #[test]
    fn host_settings_keep_the_serving_image_and_replace_the_rest() {
        let dir = std::env::temp_dir().join(format!("steps-env-{}", std::process::id()));
        let mut t = target();
        t.compose_dir = dir.join("inference").to_string_lossy().into_owned();
        let run = |t: &Target| {
            let c = write_env_settings(t);
            let argv = c.argv();
            let mut child = std::process::Command::new(argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let Stdin::Data(d) = &c.stdin else { panic!() };
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), d).unwrap();
            drop(child.stdin.take());
            assert!(child.wait().unwrap().success());
            std::fs::read_to_string(dir.join("inference/.env")).unwrap()
        };
        // A new host: the directory is made, the settings written, no image yet.
        assert_eq!(
            run(&t),
            "COMPOSE_PROJECT_NAME=inference\nINFERENCE_PORT=8080\nINFERENCE_HOST_IP=127.0.0.1\n"
        );
        // A host serving v3 whose port changes: the image stays, the settings are the new ones.
        std::fs::write(
            dir.join("inference/.env"),
            "COMPOSE_PROJECT_NAME=old\nIMAGE_NAME=ghcr.io/acme/inference\nIMAGE_TAG=v3\nINFERENCE_PORT=9999\n",
        )
        .unwrap();
        t.port = 8181;
        assert_eq!(
            run(&t),
            "IMAGE_NAME=ghcr.io/acme/inference\nIMAGE_TAG=v3\nCOMPOSE_PROJECT_NAME=inference\nINFERENCE_PORT=8181\nINFERENCE_HOST_IP=127.0.0.1\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lock_commands_use_one_directory() {
        let t = target();
        assert_eq!(
            lock(&t, "console x, deployment 4")
                .args
                .last()
                .map(String::as_str),
            Some("console x, deployment 4")
        );
        assert_eq!(lock(&t, "o").args[3], "/home/ubuntu/inference/.deploy-lock");
        assert_eq!(unlock(&t).args[3], "/home/ubuntu/inference/.deploy-lock");
    }

    #[test]
    fn compose_file_is_the_one_in_the_repository() {
        assert!(COMPOSE_FILE.contains("${IMAGE_NAME:?"));
        assert!(COMPOSE_FILE.contains("${IMAGE_TAG:?"));
    }
}
