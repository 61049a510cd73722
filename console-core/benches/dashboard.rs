//! One dashboard refresh over 24 hours at one-minute resolution: fetch the summary, the model card
//! and every series from a live inference service, and draw every chart (issue 6: ≤ 150 ms).
//!
//! The service gets a full day of history first: real traffic (drift, anomalies, labels) fills one
//! minute bucket, which is copied into each of the 1,440 minutes before now in the service's own
//! SQLite store; the service is then restarted on that store, so every series has 1,440 points.
//!
//!   source scripts/env.sh && cargo bench -p console-core --bench dashboard
//!   (INFERENCE_BIN / MLOPS_REPLAY_BIN override $CARGO_TARGET_DIR/release/{inference,replay})

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use console_core::charts::{Marker, MarkerKind};
use console_core::dashboard::{refresh, Request};
use console_core::service::ServiceClient;

const ROUNDS: usize = 20;

fn binary(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let t = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        t.join("release").join(name)
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(bin: &Path, port: u16, state: &Path) -> Child {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference-image/model/wbc-autoencoder");
    let c = Command::new(bin)
        .arg("serve")
        .arg("--model-dir")
        .arg(model)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(state)
        .env("INFERENCE_STATE_FLUSH_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the service");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the service did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

fn stop(mut c: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let _ = c.wait();
}

/// Copies the newest stored minute into each of the `minutes` minutes up to now.
fn fill_day(state: &Path, minutes: i64) -> usize {
    let db = rusqlite::Connection::open(state.join("monitor.sqlite")).unwrap();
    let (minute, data): (i64, String) = db
        .query_row(
            "SELECT minute, data FROM buckets ORDER BY minute DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the service stored a bucket");
    let mut bucket: serde_json::Value = serde_json::from_str(&data).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60;
    let tx = db.unchecked_transaction().unwrap();
    for m in now - minutes + 1..=now {
        bucket["minute"] = m.into();
        if let Some(s) = bucket.get_mut("system").filter(|s| s.is_object()) {
            s["at"] = (m * 60 + 30).into();
        }
        tx.execute(
            "INSERT INTO buckets (minute, data) VALUES (?1, ?2) ON CONFLICT(minute) DO UPDATE SET data = excluded.data",
            rusqlite::params![m, bucket.to_string()],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let _ = minute;
    data.len()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (inference, replay) = (
        binary("INFERENCE_BIN", "inference"),
        binary("MLOPS_REPLAY_BIN", "replay"),
    );
    for b in [&inference, &replay] {
        assert!(
            b.is_file(),
            "{} is missing: cargo build --release -p inference-image -p traffic-replay",
            b.display()
        );
    }
    let state = tempfile::tempdir().unwrap();
    let port = free_port();

    // 1. Real traffic fills the current minute, and the service stores it.
    let svc = serve(&inference, port, state.path());
    let out = Command::new(&replay)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args([
            "--scenario",
            "normal,anomalies,feedback,drift",
            "--rate",
            "200",
            "--requests",
            "400",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(2));
    stop(svc);
    let bucket_bytes = fill_day(state.path(), 1440);

    // 2. The service restarts on a full day.
    let svc = serve(&inference, port, state.path());
    let client = ServiceClient::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let markers: Vec<Marker> = (0..8)
        .map(|i| Marker {
            t: now - 86_400 + i * 10_000,
            label: format!("v{i}"),
            kind: if i % 3 == 2 {
                MarkerKind::Rollback
            } else {
                MarkerKind::Deploy
            },
        })
        .collect();
    let req = Request {
        range_s: 86_400,
        utc_offset_s: 0,
        feature: None,
        now,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Warm-up, and a check that the day really is full.
    let first = rt.block_on(refresh(&client, &markers, &req)).unwrap();
    let points = rt
        .block_on(client.series("requests", now - 86_400, now, 60))
        .unwrap();
    let filled = points.iter().filter(|p| p.1.is_some()).count();
    assert!(
        filled >= 1430,
        "only {filled} of {} minutes have data",
        points.len()
    );

    let (mut total, mut fetch, mut draw) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let d = rt.block_on(refresh(&client, &markers, &req)).unwrap();
        total.push(t.elapsed().as_secs_f64() * 1e3);
        fetch.push(d.fetch_ms);
        draw.push(d.draw_ms);
    }
    stop(svc);
    let svg_kb: usize = first.charts.iter().map(|c| c.svg.len()).sum::<usize>() / 1024;
    println!(
        "dashboard refresh, 24 h at 1 min ({} charts, {filled}/{} minutes with data, bucket {} KiB, SVG {svg_kb} KiB), {ROUNDS} rounds:",
        first.charts.len(),
        points.len(),
        bucket_bytes / 1024
    );
    for (name, v) in [
        ("total", &mut total),
        ("fetch", &mut fetch),
        ("draw", &mut draw),
    ] {
        println!(
            "  {name:<5} median {:>6.1} ms   p90 {:>6.1} ms   max {:>6.1} ms",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 1.0)
        );
    }
}
