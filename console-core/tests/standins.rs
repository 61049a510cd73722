//! Smoke tests of the test harness itself: each stand-in in `support/` starts, does the one thing
//! the deploy tests rely on, and goes away. Docker-dependent tests skip when no engine answers,
//! unless MLOPS_REQUIRE_DOCKER=1 (CI), where they fail with the reason.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};
use support::{docker_or_skip, http_get, pid_alive, Registry, Sshd, TcpProxy, TestImages};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sshd_accepts_both_client_keys_and_sets_docker_config() {
    let sshd = Sshd::start();
    assert!(
        sshd.host_fingerprint.starts_with("SHA256:"),
        "{}",
        sshd.host_fingerprint
    );
    assert!(sshd.host_public_key.starts_with("ssh-ed25519 "));
    assert!(sshd
        .ed25519_pem
        .starts_with(&support::pem_armour("BEGIN", "OPENSSH")));

    let out = sshd.ssh_command("echo $DOCKER_CONFIG; id -un");
    assert!(
        out.status.success(),
        "ssh failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(sshd.docker_config.to_str().unwrap()),
        "DOCKER_CONFIG in the session"
    );
    assert_eq!(lines.next(), Some(sshd.user.as_str()));
    assert!(sshd.docker_config.starts_with(&sshd.dir));

    // The EC2-style RSA key logs in too.
    let out = sshd.ssh_command_with_key(&sshd.rsa_key_file, "echo rsa-ok");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "rsa-ok");
}

#[test]
fn sshd_rsa_key_is_pkcs1_pem_like_ec2() {
    let sshd = Sshd::start();
    assert!(
        sshd.rsa_pem
            .starts_with(&support::pem_armour("BEGIN", "RSA")),
        "{}",
        sshd.rsa_pem.lines().next().unwrap_or_default()
    );
    assert!(sshd
        .rsa_pem
        .trim_end()
        .ends_with(&support::pem_armour("END", "RSA")));
    assert_eq!(
        std::fs::read_to_string(&sshd.rsa_key_file).unwrap(),
        sshd.rsa_pem
    );
}

#[test]
fn sshd_host_key_is_checked_strictly() {
    let sshd = Sshd::start();
    // A known_hosts entry with another key must make the client refuse the server.
    let other = Sshd::start();
    std::fs::write(
        &sshd.known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, other.host_public_key),
    )
    .unwrap();
    let out = sshd.ssh_command("true");
    assert!(!out.status.success(), "a wrong host key was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sshd_kill_sessions_drops_connections_but_keeps_listening() {
    let sshd = Sshd::start();
    let mut long = sshd
        .ssh_client_command(&sshd.ed25519_key_file, "echo started; sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the session runs.
    let mut first = [0u8; 8];
    long.stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"started\n");
    assert!(sshd.session_count() >= 1);

    let t = Instant::now();
    sshd.kill_sessions();
    let status = loop {
        if let Some(s) = long.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "ssh client still connected"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "the cut session exited with {status}");
    eprintln!(
        "kill_sessions: client saw the drop after {:?} ({status})",
        t.elapsed()
    );
    assert!(pid_alive(sshd.pid()), "the listener must survive");

    let out = sshd.ssh_command("echo again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "again");

    // The remote `sleep 60` outlived its connection (as after a real drop); drop kills it.
    let remote = sshd.remote_processes();
    assert!(
        remote
            .iter()
            .any(|&p| support::proc_info(p).is_some_and(|i| i.comm == "sleep")),
        "remote command not found: {remote:?}"
    );
    drop(sshd);
    assert!(
        remote.iter().all(|&p| !pid_alive(p)),
        "left running: {remote:?}"
    );
}

#[test]
fn sshd_reaches_the_docker_engine() {
    if !docker_or_skip("sshd_reaches_the_docker_engine") {
        return;
    }
    let sshd = Sshd::start();
    let out = sshd.ssh_command("docker version --format '{{.Server.Version}}'");
    assert!(
        out.status.success(),
        "docker over ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = stdout(&out);
    assert!(!version.is_empty());
    eprintln!("docker engine over ssh: {version}");
}

#[test]
fn sshd_drop_stops_everything() {
    let sshd = Sshd::start();
    let (pid, dir, port) = (sshd.pid(), sshd.dir.clone(), sshd.port);
    drop(sshd);
    assert!(!pid_alive(pid), "sshd still running");
    assert!(!dir.exists(), "temp dir left behind");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn registry_requires_auth() {
    let registry = Registry::start();
    let anon = http_get(&registry.addr, "/v2/", None, &[]).unwrap();
    assert_eq!(anon.status, 401);
    assert!(anon.header("www-authenticate").is_some(), "{anon:?}");
    let good = registry.get("/v2/", &[]).unwrap();
    assert_eq!(good.status, 200, "{}", good.text());
    let bad = http_get(
        &registry.addr,
        "/v2/",
        Some((&registry.user, "wrong-password")),
        &[],
    )
    .unwrap();
    assert_eq!(bad.status, 401);

    if !docker_or_skip("registry_requires_auth (docker login)") {
        return;
    }
    let config = tempfile::tempdir().unwrap();
    registry
        .docker_login(config.path())
        .unwrap_or_else(|e| panic!("{e}\n--- registry log\n{}", registry.log()));
    let saved = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    assert!(saved.contains(&registry.addr), "{saved}");

    let other = tempfile::tempdir().unwrap();
    let refused = support::registry::docker_login_as(
        &registry.addr,
        other.path(),
        &registry.user,
        "wrong-password",
    );
    let err = refused.expect_err("docker login with a wrong password succeeded");
    assert!(
        err.contains("unauthorized") || err.contains("401"),
        "unexpected refusal: {err}"
    );

    let (pid, dir) = (registry_pid(&registry), registry.dir.clone());
    drop(registry);
    assert!(!pid_alive(pid));
    assert!(!dir.exists());
}

fn registry_pid(registry: &Registry) -> u32 {
    // The registry is the only docker-registry process serving this instance's config.
    let config = registry.dir.join("config.yml");
    support::processes()
        .into_iter()
        .find(|p| {
            p.comm.starts_with("docker-registry")
                && std::fs::read(format!("/proc/{}/cmdline", p.pid))
                    .map(|c| String::from_utf8_lossy(&c).contains(config.to_str().unwrap()))
                    .unwrap_or(false)
        })
        .map(|p| p.pid)
        .expect("docker-registry process")
}

#[test]
fn test_images_are_pushed_with_three_distinct_tags() {
    if !docker_or_skip("test_images_are_pushed_with_three_distinct_tags") {
        return;
    }
    let registry = support::shared_registry();
    let images = TestImages::ensure(registry);
    eprintln!(
        "TestImages::ensure took {:.1} s ({})",
        images.build_seconds, images.repo
    );
    assert_eq!(images.repo, format!("{}/acme/inference", registry.addr));
    assert_eq!(
        (
            images.v1.as_str(),
            images.v2.as_str(),
            images.broken.as_str()
        ),
        ("v1", "v2", "broken")
    );
    // Second call: same value, no rebuild.
    assert!(std::ptr::eq(images, TestImages::ensure(registry)));

    let anon = http_get(&registry.addr, "/v2/acme/inference/tags/list", None, &[]).unwrap();
    assert_eq!(anon.status, 401);
    let list = registry.get("/v2/acme/inference/tags/list", &[]).unwrap();
    assert_eq!(list.status, 200, "{}", list.text());
    let json: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let mut tags: Vec<&str> = json["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    tags.sort();
    assert_eq!(tags, ["broken", "shifted", "v1", "v2"]);

    let digest = |tag: &str| {
        let r = registry
            .get(
                &format!("/v2/acme/inference/manifests/{tag}"),
                &[(
                    "Accept",
                    "application/vnd.docker.distribution.manifest.v2+json",
                )],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.header("docker-content-digest").unwrap().to_string()
    };
    let (d1, d2, d3, d4) = (
        digest("v1"),
        digest("v2"),
        digest("broken"),
        digest("shifted"),
    );
    let all = [&d1, &d2, &d3, &d4];
    for (i, d) in all.iter().enumerate() {
        assert!(!all[i + 1..].contains(d), "{d1} {d2} {d3} {d4}");
    }

    // The registry-tagged images are gone locally, so a pull really pulls.
    for tag in ["v1", "v2", "broken", "shifted"] {
        let out = std::process::Command::new("docker")
            .args(["image", "inspect", &images.image(tag)])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{} still exists locally",
            images.image(tag)
        );
    }
}

#[test]
fn proxy_forwards_and_cut_breaks_live_connections() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = echo.local_addr().unwrap();
    thread::spawn(move || {
        for conn in echo.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });

    let proxy = TcpProxy::start(target);
    let roundtrip = |s: &mut TcpStream, msg: &[u8]| -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    };
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };

    let mut a = connect();
    assert_eq!(roundtrip(&mut a, b"hello").unwrap(), b"hello");
    assert_eq!(proxy.live_connections(), 1);

    proxy.cut();
    // The live connection is closed: a read sees EOF (or a reset), never an echo.
    let mut buf = [0u8; 16];
    let _ = a.write_all(b"after cut");
    match a.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!(
            "read {:?} through a cut connection",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    // New connections are accepted and closed at once.
    let mut b = connect();
    assert!(roundtrip(&mut b, b"x").is_err(), "forwarded while cut");

    proxy.restore();
    let mut c = connect();
    assert_eq!(roundtrip(&mut c, b"back").unwrap(), b"back");
    assert_eq!(proxy.connections(), 3);

    let port = proxy.port;
    drop(proxy);
    let mut d = TcpStream::connect(("127.0.0.1", port));
    if let Ok(d) = d.as_mut() {
        d.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert!(roundtrip(d, b"gone").is_err(), "forwarded after drop");
    }
}
