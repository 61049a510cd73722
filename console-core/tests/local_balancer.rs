//! The local fleet's HAProxy (Debian's, as `scripts/setup.sh` installs it): one left running by a
//! console that died is stopped by the next start in the same directory, whose ports it holds.

mod support;

use console_core::local_balancer::{LocalHaproxy, PID_FILE};
use support::{free_port, pid_alive};

#[test]
fn a_haproxy_left_by_a_console_that_died_is_stopped_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (port, api) = (free_port(), free_port());
    let servers = vec![
        ("h1".to_string(), free_port()),
        ("h2".to_string(), free_port()),
    ];
    let first = LocalHaproxy::start(dir.path(), port, api, &servers, 1).unwrap();
    let pid = first.pid();
    let kept = std::fs::read_to_string(dir.path().join(PID_FILE)).unwrap();
    assert_eq!(kept.trim(), pid.to_string());
    // The console dies: nothing stops its HAProxy.
    std::mem::forget(first);
    assert!(pid_alive(pid));

    // The same ports again: without stopping the first, the bind would fail.
    let second = LocalHaproxy::start(dir.path(), port, api, &servers, 1)
        .unwrap_or_else(|e| panic!("the second start failed: {e}"));
    assert!(!pid_alive(pid), "the HAProxy left behind still runs");
    assert_ne!(second.pid(), pid);
    let config = std::fs::read_to_string(dir.path().join("haproxy.cfg")).unwrap();
    assert!(
        config.contains(&format!(
            "server h2 127.0.0.1:{} check disabled",
            servers[1].1
        )),
        "{config}"
    );
    drop(second);
    assert!(
        !dir.path().join(PID_FILE).exists(),
        "a clean stop leaves no pid behind"
    );

    // A pid file naming another program is left alone.
    let sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(dir.path().join(PID_FILE), sleeper.id().to_string()).unwrap();
    let third = LocalHaproxy::start(dir.path(), port, api, &servers, 2).unwrap();
    assert!(pid_alive(sleeper.id()));
    drop(third);
    let mut sleeper = sleeper;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}
