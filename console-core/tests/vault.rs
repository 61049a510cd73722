//! The vault against a real OS keychain: gnome-keyring-daemon on a private D-Bus session bus
//! (`dbus-run-session`) with a temporary HOME, started by the outer tests below. The keyring crate
//! picks its store once per process, so each scenario runs the matching `inner_*` test in a child
//! process of this test binary inside the environment it needs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

mod support;

use console_core::vault::{SecretName, Vault, VaultError};
use console_core::Secret;

const INNER: &str = "MLOPS_VAULT_INNER";
/// The throw-away keyring's unlock password (a fixture, not a credential of anyone's).
const KEYRING_PASSWORD: &str = "fixture-keyring-password";

fn tools_or_skip() -> bool {
    support::tools_or_skip(&["dbus-run-session", "gnome-keyring-daemon", "secret-tool"])
}

/// Runs `inner` in a child process: `prelude` (a shell snippet) runs first inside a private
/// session bus when `bus` is true. The child's stdin carries the keyring password (first line, read
/// by the shell into `$KEYRING_PW`) and then the fixture values, so neither is in a file, an
/// environment variable or a command line.
fn run_inner(inner: &str, home: &Path, bus: bool, prelude: &str, fx: &Fixtures) -> Output {
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "IFS= read -r KEYRING_PW\n{prelude}\nexec \"$0\" --exact {inner} --ignored --nocapture --test-threads 1"
    );
    let mut cmd = if bus {
        let mut c = Command::new("dbus-run-session");
        c.args(["--", "sh", "-c", &script]).arg(&exe);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]).arg(&exe);
        // No session bus at all (and nothing to autolaunch one).
        c.env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/no-bus", home.display()),
        )
        .env_remove("DISPLAY");
        c
    };
    cmd.env("HOME", home)
        .env(INNER, "1")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        let mut stdin = child.stdin.take().expect("piped");
        let input = format!(
            "{KEYRING_PASSWORD}\n{}",
            serde_json::to_string(&fx.values).unwrap()
        );
        // The child may exit early (and the test then fails on its output); ignore a broken pipe.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{inner} failed:\n{text}"
    );
    out
}

fn unlock_prelude() -> String {
    // `printf` is a shell builtin: the password goes through a pipe, never into an argv.
    format!(
        "printf '%s' \"$KEYRING_PW\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1; {}",
        support::WAIT_FOR_SECRET_SERVICE
    )
}

fn is_inner() -> bool {
    std::env::var(INNER).as_deref() == Ok("1")
}

#[test]
fn stores_lists_replaces_and_deletes_in_the_os_keychain() {
    if !tools_or_skip() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let fx = Fixtures::new();
    run_inner(
        "inner_round_trip",
        home.path(),
        true,
        &unlock_prelude(),
        &fx,
    );
    // The keychain wrote its (encrypted) keyring under HOME; no value is there in plain text.
    let mut files = Vec::new();
    collect(home.path(), &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("keyrings")),
        "{files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for v in &fx.values {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{} holds a secret in plain text",
                f.display()
            );
        }
    }
}

#[test]
fn no_keychain_is_a_clear_error_and_nothing_is_written() {
    if !tools_or_skip() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let fx = Fixtures::new();
    run_inner("inner_no_keychain", home.path(), false, "", &fx);
    let mut files = Vec::new();
    collect(home.path(), &mut files);
    assert!(
        files.is_empty(),
        "nothing may be written without a keychain: {files:?}"
    );
}

#[test]
fn a_locked_keychain_is_a_clear_error() {
    if !tools_or_skip() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let fx = Fixtures::new();
    // First session creates the login keyring; the second starts the daemon without unlocking it.
    run_inner(
        "inner_round_trip",
        home.path(),
        true,
        &unlock_prelude(),
        &fx,
    );
    run_inner(
        "inner_locked",
        home.path(),
        true,
        &format!(
            "gnome-keyring-daemon --start --components=secrets >/dev/null || exit 1; {}",
            support::WAIT_FOR_SECRET_SERVICE
        ),
        &fx,
    );
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Values made fresh for one outer test, never written in the source: a GitHub token, its
/// replacement, a GHCR token, an AWS secret key, an ed25519 private key from ssh-keygen, and an
/// access key id. They reach the inner process on its stdin.
struct Fixtures {
    values: Vec<String>,
}

impl Fixtures {
    fn new() -> Fixtures {
        let values = vec![
            support::test_token("github-test-token"),
            support::test_token("github-test-token-replaced"),
            support::test_token("ghcr-test-token"),
            support::test_token("aws-test-secret"),
            support::fresh_ssh_key(false).0,
            support::test_key_id(),
        ];
        Fixtures { values }
    }
}

/// The inner process's view of the fixtures (the rest of its stdin).
fn fixtures() -> Vec<String> {
    static VALUES: OnceLock<Vec<String>> = OnceLock::new();
    VALUES
        .get_or_init(|| {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).unwrap();
            serde_json::from_str(&text).expect("the outer test writes the fixtures to stdin")
        })
        .clone()
}

fn pem(values: &[String]) -> Secret {
    Secret::new(values[4].clone())
}

#[test]
#[ignore = "run by stores_lists_replaces_and_deletes_in_the_os_keychain inside a private keychain"]
fn inner_round_trip() {
    if !is_inner() {
        return;
    }
    let values = fixtures();
    let v = Vault::with_service("mlops-console-test");
    v.check().unwrap();
    // A second run in the same HOME (the locked test's first session) starts from what is there.
    for n in v.list().unwrap() {
        v.delete(&n).unwrap();
    }
    assert!(v.list().unwrap().is_empty());
    let host = SecretName::SshKey("ec2-3-120-1-2.eu-central-1.compute.amazonaws.com".into());
    v.put(&SecretName::GithubToken, &Secret::new(values[0].clone()))
        .unwrap();
    v.put(&SecretName::GhcrToken, &Secret::new(values[2].clone()))
        .unwrap();
    v.put(&SecretName::AwsAccessKeyId, &Secret::new(values[5].clone()))
        .unwrap();
    v.put(
        &SecretName::AwsSecretAccessKey,
        &Secret::new(values[3].clone()),
    )
    .unwrap();
    v.put(&host, &pem(&values)).unwrap();
    assert_eq!(
        v.list().unwrap(),
        [
            SecretName::AwsAccessKeyId,
            SecretName::AwsSecretAccessKey,
            SecretName::GithubToken,
            SecretName::GhcrToken,
            host.clone()
        ]
    );
    assert_eq!(
        v.get(&SecretName::GithubToken).unwrap().unwrap().expose(),
        values[0]
    );
    assert_eq!(
        v.get(&host).unwrap().unwrap().expose(),
        pem(&values).expose()
    );
    // Listing and errors show names only.
    let shown = format!(
        "{:?} {:?}",
        v.list().unwrap(),
        v.get(&SecretName::GithubToken).unwrap()
    );
    assert!(!values.iter().any(|s| shown.contains(s)), "{shown}");

    // Another program reading the Secret Service sees the same entry: it really is in the keychain.
    let out = Command::new("secret-tool")
        .args([
            "lookup",
            "service",
            "mlops-console-test",
            "username",
            "github-token",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        values[0],
        "secret-tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Replace, delete, and a bad value that is refused without touching the stored one.
    v.put(&SecretName::GithubToken, &Secret::new(values[1].clone()))
        .unwrap();
    assert_eq!(
        v.get(&SecretName::GithubToken).unwrap().unwrap().expose(),
        values[1]
    );
    let e = v
        .put(
            &host,
            &Secret::new("ssh-ed25519 public-key-not-a-private-one"),
        )
        .unwrap_err();
    assert!(
        matches!(e, VaultError::Invalid { .. }) && e.to_string().contains("not a PEM private key"),
        "{e}"
    );
    assert_eq!(
        v.get(&host).unwrap().unwrap().expose(),
        pem(&values).expose()
    );
    assert!(v.delete(&host).unwrap());
    assert!(!v.delete(&host).unwrap());
    assert_eq!(v.get(&host).unwrap().map(|s| s.expose().to_string()), None);
    assert_eq!(v.list().unwrap().len(), 4);
}

#[test]
#[ignore = "run by no_keychain_is_a_clear_error_and_nothing_is_written without a session bus"]
fn inner_no_keychain() {
    if !is_inner() {
        return;
    }
    let values = fixtures();
    let v = Vault::with_service("mlops-console-test");
    let e = v
        .put(&SecretName::GithubToken, &Secret::new(values[0].clone()))
        .unwrap_err();
    assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("no OS keychain is available") && msg.contains("gnome-keyring"),
        "{msg}"
    );
    assert!(!msg.contains(&values[0]) && !format!("{e:?}").contains(&values[0]));
    assert!(matches!(
        v.get(&SecretName::GithubToken),
        Err(VaultError::Unavailable { .. })
    ));
    assert!(matches!(v.check(), Err(VaultError::Unavailable { .. })));
}

#[test]
#[ignore = "run by a_locked_keychain_is_a_clear_error with the keyring locked"]
fn inner_locked() {
    if !is_inner() {
        return;
    }
    let values = fixtures();
    let v = Vault::with_service("mlops-console-test");
    let e = v
        .put(&SecretName::GhcrToken, &Secret::new(values[2].clone()))
        .unwrap_err();
    assert!(matches!(e, VaultError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("Unlock the login keyring"), "{e}");
}

#[test]
fn configures_the_repository_from_the_vault() {
    if !tools_or_skip() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let fx = Fixtures::new();
    run_inner(
        "inner_configure_repository",
        home.path(),
        true,
        &unlock_prelude(),
        &fx,
    );
}

#[test]
#[ignore = "run by configures_the_repository_from_the_vault inside a private keychain"]
fn inner_configure_repository() {
    use console_core::github::{GitHub, Repo, Written};
    use console_core::repo_setup::{configure_repository, HostFacts, SetupError};
    use console_core::workflow_file::{WorkflowState, WORKFLOW, WORKFLOW_PATH};
    if !is_inner() {
        return;
    }
    let values = fixtures();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _runtime = rt.enter(); // octocrab's client starts a task when it is built
    let Some(d) = support::github_double::Double::start() else {
        return;
    };
    let gh = GitHub::new(&d.url(), &Secret::new(support::github_double::token())).unwrap();
    let repo = Repo::parse("acme/inference").unwrap();
    let v = Vault::with_service("mlops-console-test");
    let host = HostFacts {
        host: "ec2-3-120-1-2.eu-central-1.compute.amazonaws.com".into(),
        user: "ubuntu".into(),
        compose_dir: "/home/ubuntu/inference".into(),
        fingerprint: "SHA256:Qm9vYmFyYmF6cXV4cXV1eHF1dXhmb29iYXJiYXp4eHg".into(),
    };
    v.put(&SecretName::SshKey(host.host.clone()), &pem(&values))
        .unwrap();
    // No GHCR token yet: refused before anything is sent.
    let e = rt
        .block_on(configure_repository(&gh, &v, &repo, "main", &host))
        .unwrap_err();
    assert!(
        matches!(e, SetupError::Missing(_)) && e.to_string().contains("GHCR token"),
        "{e}"
    );
    assert!(d.state()["requests"].as_array().unwrap().is_empty());

    v.put(&SecretName::GhcrToken, &Secret::new(values[2].clone()))
        .unwrap();
    let r = rt
        .block_on(configure_repository(&gh, &v, &repo, "main", &host))
        .unwrap();
    assert_eq!(r.secrets.len(), 6);
    assert_eq!(
        (r.variable, r.workflow_before.clone(), r.workflow_written),
        (
            Written::Created,
            WorkflowState::Missing,
            Some(Written::Created)
        )
    );
    let st = d.state();
    let got = &st["repos"]["acme/inference"];
    // What GitHub decrypted is what the keychain holds.
    assert_eq!(
        got["secrets"]["EC2_SSH_KEY"].as_str(),
        Some(pem(&values).expose())
    );
    assert_eq!(
        got["secrets"]["GHCR_PAT"].as_str(),
        Some(values[2].as_str())
    );
    // The monitoring token was made in the keychain and sent sealed.
    let api = v
        .get(&SecretName::ApiToken(host.host.clone()))
        .unwrap()
        .expect("a monitoring token in the keychain");
    assert_eq!(api.expose().len(), 48);
    assert_eq!(
        got["secrets"]["INFERENCE_API_TOKEN"].as_str(),
        Some(api.expose())
    );
    assert_eq!(
        got["secrets"]["EC2_HOST"].as_str(),
        Some(host.host.as_str())
    );
    assert_eq!(
        got["variables"]["EC2_HOST_FINGERPRINT"].as_str(),
        Some(host.fingerprint.as_str())
    );
    assert_eq!(got["files"][WORKFLOW_PATH].as_str(), Some(WORKFLOW));
    // A second run updates the secrets and leaves the (current) workflow alone.
    let again = rt
        .block_on(configure_repository(&gh, &v, &repo, "main", &host))
        .unwrap();
    assert!(again.secrets.iter().all(|(_, w)| *w == Written::Updated));
    assert_eq!(
        (again.workflow_before, again.workflow_written),
        (WorkflowState::UpToDate, None)
    );
}
