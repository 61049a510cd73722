//! The CloudWatch publisher against a real `moto_server` on loopback (the AWS stand-in; installed
//! into the venv by `scripts/setup.sh` from `scripts/requirements.txt`), and against a scripted
//! loopback HTTP server for retries and failures. Minutes are back-dated through `Monitor::apply`,
//! so nothing waits for the clock.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::config::Credentials;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StandardUnit};
use aws_sdk_cloudwatch::Client;
use common::{free_port, holdout, serve_args, Server};
use inference::card::ModelCard;
use inference::monitor::cloudwatch::{self, Backoff, CloudWatchArgs, Publisher};
use inference::monitor::system::SystemSample;
use inference::monitor::{now_secs, summary, Event, Monitor};
use inference::request::{Issue, IssueKind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-secret-never-logged";

fn test_credentials() -> Credentials {
    Credentials::new("testing", SECRET, None, None, "tests")
}

// ---------------------------------------------------------------------------------------------
// moto_server
// ---------------------------------------------------------------------------------------------

/// A `moto_server` child process on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn moto_executable() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(venv) = std::env::var_os("MLOPS_VENV") {
        candidates.push(PathBuf::from(venv).join("bin/moto_server"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("moto_server")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "moto_server not found (looked at $MOTO_SERVER, $MLOPS_VENV/bin and PATH): run \
             `bash scripts/setup.sh` (installs moto[server] from scripts/requirements.txt into the \
             venv) and `source scripts/env.sh` (puts the venv on PATH) before cargo test"
            )
        })
}

impl Moto {
    async fn start() -> Moto {
        let exe = moto_executable();
        let port = free_port();
        let log = std::env::temp_dir().join(format!("moto-{port}-{}.log", std::process::id()));
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}:\n{}", moto.log_text());
            }
            if moto.reset().await.is_ok() {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 60 s:\n{}",
                moto.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Clears every mocked resource (`POST /moto-api/reset`).
    async fn reset(&self) -> Result<(), String> {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.endpoint()))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("reset answered {}", r.status()))
        }
    }

    fn args(&self) -> CloudWatchArgs {
        CloudWatchArgs {
            namespace: Some("MLOps/Test".into()),
            service: None,
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
        }
    }

    async fn client(&self) -> Client {
        cloudwatch::client(&self.args(), Some(test_credentials()))
            .await
            .unwrap()
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------------------------------------
// Log capture (current-thread tests: everything they await logs on this thread)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

// ---------------------------------------------------------------------------------------------
// A scripted CloudWatch: answers each PutMetricData with the next scripted response
// ---------------------------------------------------------------------------------------------

const OK_BODY: &str = r#"<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><ResponseMetadata><RequestId>fake-ok</RequestId></ResponseMetadata></PutMetricDataResponse>"#;

fn error_body(kind: &str, code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake-err</RequestId></ErrorResponse>"#
    )
}

struct Fake {
    port: u16,
    requests: Arc<Mutex<usize>>,
}

impl Fake {
    /// Answers with `script` in order, then repeats its last entry.
    async fn start(script: Vec<(u16, String)>) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(0usize));
        let seen = Arc::clone(&requests);
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (seen, script) = (Arc::clone(&seen), Arc::clone(&script));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    // Read the head, then Content-Length bytes of body.
                    let (head_end, length) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    *seen.lock().unwrap() += 1;
                    let (status, body) = {
                        let mut s = script.lock().unwrap();
                        if s.len() > 1 {
                            s.pop_front().unwrap()
                        } else {
                            s.front().cloned().unwrap()
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Fake { port, requests }
    }

    fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    async fn client(&self) -> Client {
        let args = CloudWatchArgs {
            namespace: Some("MLOps/Test".into()),
            service: None,
            region: Some("us-east-1".into()),
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
        };
        cloudwatch::client(&args, Some(test_credentials()))
            .await
            .unwrap()
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        max_attempts: 4,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    }
}

// ---------------------------------------------------------------------------------------------
// Back-dated traffic
// ---------------------------------------------------------------------------------------------

fn system_sample(at: i64) -> SystemSample {
    SystemSample {
        at,
        process_cpu_percent: 12.5,
        process_rss_bytes: 123_456_789,
        host_cpu_percent: 40.0,
        memory_used_bytes: 2_000_000_000,
        memory_total_bytes: 8_000_000_000,
        disk_used_bytes: 5_000_000_000,
        disk_total_bytes: 50_000_000_000,
        network_rx_bytes: 1,
        network_tx_bytes: 2,
    }
}

/// What `feed_minute` puts in, for assertions that do not go through the summary.
const REQUESTS: u64 = 24;
const ROWS: usize = 60;
const ANOMALIES: usize = 15;
const SHIFTED: usize = 4;

/// One busy minute: 20 predict requests (15 × 200, 3 × 400, 1 × 500, 1 × 429), 4 health checks,
/// 60 scored rows with the first four features far off their training range and 15 errors above
/// the threshold, two rejected requests (2 missing values, 1 invalid), one system sample.
fn feed_minute(monitor: &Monitor, minute: i64) {
    let at = minute * 60 + 20;
    let mut events = Vec::new();
    let statuses = [200u16; 15]
        .into_iter()
        .chain([400, 400, 400, 500, 429])
        .enumerate();
    for (i, status) in statuses {
        events.push(Event::Request {
            at,
            route: "/v1/predict",
            status,
            seconds: 0.001 * (1 + i) as f64,
            in_flight: 1,
        });
    }
    for _ in 0..4 {
        events.push(Event::Request {
            at,
            route: "/healthz",
            status: 200,
            seconds: 0.000_2,
            in_flight: 1,
        });
    }
    let card = &monitor.card;
    let (rows, labels) = holdout();
    let benign: Vec<&Vec<f64>> = rows
        .iter()
        .zip(&labels)
        .filter(|(_, l)| !**l)
        .map(|(r, _)| r)
        .take(ROWS)
        .collect();
    assert_eq!(benign.len(), ROWS, "the holdout has enough benign rows");
    let mut flat = Vec::with_capacity(ROWS * card.width());
    for row in &benign {
        for (j, v) in row.iter().enumerate() {
            let f = &card.features[j];
            let v = if j < SHIFTED {
                f.max + 50.0 * f.std
            } else {
                *v
            };
            flat.push(v);
        }
    }
    let threshold = card.score.threshold.unwrap();
    let errors: Vec<f64> = (0..ROWS)
        .map(|i| {
            if i < ANOMALIES {
                threshold * 3.0
            } else {
                threshold * 0.3
            }
        })
        .collect();
    events.push(Event::Scored {
        at,
        rows: flat,
        scores: errors,
        classes: Vec::new(),
        quality: None,
    });
    let issue = |j: usize, kind| Issue {
        row: 0,
        feature: Some(card.features[j].name.clone()),
        problem: "test".into(),
        kind,
    };
    events.push(Event::Rejected {
        at,
        issues: vec![issue(0, IssueKind::Missing), issue(1, IssueKind::Missing)],
    });
    events.push(Event::Rejected {
        at,
        issues: vec![issue(2, IssueKind::Invalid)],
    });
    events.push(Event::System(system_sample(minute * 60 + 30)));
    monitor.apply(events.into_iter());
}

/// The values the summary reports for `minute` alone, under the publisher's names and units.
fn expected_from_summary(monitor: &Monitor, minute: i64) -> Vec<(&'static str, StandardUnit, f64)> {
    let bucket = monitor
        .buckets(minute, minute)
        .pop()
        .expect("the minute has a bucket");
    let s = summary::summarize(&monitor.view(), &bucket, 1, 60, (minute + 1) * 60);
    let num = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    let sys = &s["system"];
    let res = &sys["resources"];
    let sum_over = |key: &str| -> f64 {
        s["data"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| num(&f[key]))
            .sum()
    };
    use StandardUnit::{Bytes, Count, Percent, Seconds};
    vec![
        ("RequestCount", Count, num(&sys["requests"])),
        ("ErrorRate", Percent, 100.0 * num(&sys["error_rate"])),
        ("ServerErrorCount", Count, num(&sys["by_status"]["5xx"])),
        ("OverloadedCount", Count, num(&sys["overloaded"])),
        (
            "LatencyP50",
            Seconds,
            num(&sys["predict_latency_seconds"]["p50"]),
        ),
        (
            "LatencyP95",
            Seconds,
            num(&sys["predict_latency_seconds"]["p95"]),
        ),
        (
            "LatencyP99",
            Seconds,
            num(&sys["predict_latency_seconds"]["p99"]),
        ),
        ("RowsScored", Count, num(&s["data"]["rows"])),
        (
            "RejectedRequests",
            Count,
            num(&s["data"]["rejected_requests"]),
        ),
        ("MissingValues", Count, sum_over("missing")),
        ("InvalidValues", Count, sum_over("invalid")),
        (
            "AnomalyRate",
            Percent,
            100.0 * num(&s["model"]["anomaly_rate"]),
        ),
        (
            "ReconstructionErrorP95",
            StandardUnit::None,
            num(&s["model"]["reconstruction_error"]["p95"]),
        ),
        (
            "DriftedFeatures",
            Count,
            s["data"]["drift"]["drifted_features"]
                .as_array()
                .unwrap()
                .len() as f64,
        ),
        (
            "ProcessCpuPercent",
            Percent,
            num(&res["process_cpu_percent"]),
        ),
        ("ProcessRssBytes", Bytes, num(&res["process_rss_bytes"])),
        ("HostMemoryUsedBytes", Bytes, num(&res["memory_used_bytes"])),
        ("StateDiskUsedBytes", Bytes, num(&res["disk_used_bytes"])),
        (
            "HostMemoryUsedPercent",
            Percent,
            100.0 * num(&res["memory_used_fraction"]),
        ),
        (
            "StateDiskUsedPercent",
            Percent,
            100.0 * num(&res["disk_used_fraction"]),
        ),
    ]
}

fn dimensions(card: &ModelCard) -> Vec<Dimension> {
    vec![
        Dimension::builder()
            .name("Service")
            .value(&card.name)
            .build(),
        Dimension::builder()
            .name("ModelVersion")
            .value(&card.version)
            .build(),
    ]
}

/// GetMetricData for each `(name, unit)` over [from, to) seconds, 60 s periods, one `stat`:
/// name → (timestamps, values). The unit is part of the query, so a wrong unit reads nothing.
async fn read_back(
    client: &Client,
    dims: &[Dimension],
    metrics: &[(&str, StandardUnit)],
    stat: &str,
    from: i64,
    to: i64,
) -> BTreeMap<String, (Vec<i64>, Vec<f64>)> {
    let mut req = client
        .get_metric_data()
        .start_time(DateTime::from_secs(from))
        .end_time(DateTime::from_secs(to));
    for (i, (name, unit)) in metrics.iter().enumerate() {
        req = req.metric_data_queries(
            MetricDataQuery::builder()
                .id(format!("m{i}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace("MLOps/Test")
                                .metric_name(*name)
                                .set_dimensions(Some(dims.to_vec()))
                                .build(),
                        )
                        .period(60)
                        .stat(stat)
                        .unit(unit.clone())
                        .build(),
                )
                .build(),
        );
    }
    let out = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_cloudwatch::error::DisplayErrorContext(&e)));
    out.metric_data_results()
        .iter()
        .map(|r| {
            let i: usize = r.id().unwrap()[1..].parse().unwrap();
            // Newest first by default (ScanBy=TimestampDescending): sort by time.
            let mut points: Vec<(i64, f64)> = r
                .timestamps()
                .iter()
                .map(DateTime::secs)
                .zip(r.values().iter().copied())
                .collect();
            points.sort_by_key(|p| p.0);
            (metrics[i].0.to_string(), points.into_iter().unzip())
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_published_minute_reads_back_from_moto_as_the_summary_reports_it() {
    let moto = Moto::start().await;
    moto.reset().await.unwrap();
    let server = Server::start(serve_args()).await;
    let monitor = Arc::clone(&server.state.monitor);
    let card = Arc::clone(&monitor.card);
    let minute = now_secs() / 60 - 3;
    feed_minute(&monitor, minute);

    let client = moto.client().await;
    let publisher = Publisher::new(
        client.clone(),
        Arc::clone(&monitor),
        "MLOps/Test",
        None,
        minute,
    )
    .unwrap();
    let outcome = publisher.publish_once(now_secs()).await;
    assert_eq!(outcome.minutes.first(), Some(&minute), "{outcome:?}");
    assert!(outcome.dropped_minutes.is_empty(), "{outcome:?}");
    assert_eq!(outcome.attempts, outcome.calls, "no retries against moto");

    let expected = expected_from_summary(&monitor, minute);
    // The minute as constructed, independently of the summary.
    let want: BTreeMap<&str, f64> = expected.iter().map(|(n, _, v)| (*n, *v)).collect();
    assert_eq!(want["RequestCount"], REQUESTS as f64);
    assert_eq!(want["RowsScored"], ROWS as f64);
    assert_eq!(want["ServerErrorCount"], 1.0);
    assert_eq!(want["OverloadedCount"], 1.0);
    assert!(close(want["ErrorRate"], 100.0 * 5.0 / 24.0));
    assert!(close(
        want["AnomalyRate"],
        100.0 * ANOMALIES as f64 / ROWS as f64
    ));
    assert_eq!(want["RejectedRequests"], 2.0);
    assert_eq!(want["MissingValues"], 2.0);
    assert_eq!(want["InvalidValues"], 1.0);
    assert!(want["DriftedFeatures"] >= SHIFTED as f64, "{want:?}");
    assert_eq!(want["ProcessRssBytes"], 123_456_789.0);
    assert!(want["LatencyP50"] < want["LatencyP99"]);
    // Every metric exists for this minute (other minutes, if the clock moved on, add theirs).
    assert_eq!(expected.len(), 20);
    assert!(outcome.datums_sent >= expected.len(), "{outcome:?}");

    let dims = dimensions(&card);
    let names: Vec<(&str, StandardUnit)> =
        expected.iter().map(|(n, u, _)| (*n, u.clone())).collect();
    let (from, to) = (minute * 60, minute * 60 + 60);
    let averages = read_back(&client, &dims, &names, "Average", from, to).await;
    let counts = read_back(&client, &dims, &names, "SampleCount", from, to).await;
    for (name, unit, value) in &expected {
        let (ts, got) = &averages[*name];
        assert_eq!(
            ts,
            &vec![minute * 60],
            "{name} ({unit:?}): timestamps {ts:?}"
        );
        assert!(
            close(got[0], *value),
            "{name}: CloudWatch has {got:?}, the summary {value}"
        );
        assert_eq!(counts[*name].1, vec![1.0], "{name} published once");
    }

    // Exactly these metrics, each with exactly the two dimensions.
    let listed = client
        .list_metrics()
        .namespace("MLOps/Test")
        .send()
        .await
        .unwrap();
    let listed_names: BTreeSet<&str> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    let expected_names: BTreeSet<&str> = expected.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(listed_names, expected_names);
    for m in listed.metrics() {
        let got: BTreeMap<&str, &str> = m
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap(), d.value().unwrap()))
            .collect();
        let want = BTreeMap::from([
            ("ModelVersion", card.version.as_str()),
            ("Service", card.name.as_str()),
        ]);
        assert_eq!(got, want, "{:?}", m.metric_name());
    }
    // Another model version reads nothing.
    let other = vec![
        dims[0].clone(),
        Dimension::builder()
            .name("ModelVersion")
            .value("0.0.0-other")
            .build(),
    ];
    let none = read_back(&client, &other, &names[..1], "Average", from, to).await;
    assert!(none["RequestCount"].1.is_empty());

    // A second publish does not send the minute again.
    let again = publisher.publish_once(now_secs()).await;
    assert!(!again.minutes.contains(&minute), "{again:?}");
    let counts = read_back(&client, &dims, &names, "SampleCount", from, to).await;
    assert!(counts.values().all(|(_, v)| v == &vec![1.0]), "{counts:?}");
}

#[tokio::test]
async fn more_than_a_thousand_datums_go_out_in_several_calls() {
    let moto = Moto::start().await;
    moto.reset().await.unwrap();
    let card = Arc::new(ModelCard::load(&common::model_dir()).unwrap());
    let monitor = Monitor::new(Arc::clone(&card), None);
    // 100 quiet minutes with a system sample each: 7 counts + 6 system values = 13 datums a minute.
    let first = now_secs() / 60 - 110;
    monitor.apply((0..100).map(|k| Event::System(system_sample((first + k) * 60 + 5))));
    let client = moto.client().await;
    let publisher = Publisher::new(
        client.clone(),
        Arc::clone(&monitor),
        "MLOps/Test",
        None,
        first,
    )
    .unwrap();
    let outcome = publisher.publish_once(now_secs()).await;
    assert_eq!(outcome.minutes.len(), 100, "{outcome:?}");
    assert_eq!(outcome.datums_sent, 1300);
    assert_eq!(
        outcome.calls, 2,
        "1300 datums need two calls of at most 1000"
    );
    assert!(outcome.dropped_minutes.is_empty());

    let dims = dimensions(&card);
    let got = read_back(
        &client,
        &dims,
        &[
            ("RequestCount", StandardUnit::Count),
            ("ProcessRssBytes", StandardUnit::Bytes),
        ],
        "SampleCount",
        first * 60,
        (first + 100) * 60,
    )
    .await;
    for (name, (ts, values)) in &got {
        assert_eq!(ts.len(), 100, "{name}");
        assert!(values.iter().all(|v| *v == 1.0), "{name}: {values:?}");
        assert_eq!(ts[0], first * 60);
    }
}

/// A monitor with one quiet minute (a system sample) three minutes ago.
fn quiet_monitor() -> (Arc<Monitor>, i64) {
    let card = Arc::new(ModelCard::load(&common::model_dir()).unwrap());
    let monitor = Monitor::new(card, None);
    let minute = now_secs() / 60 - 3;
    monitor.apply(std::iter::once(Event::System(system_sample(
        minute * 60 + 5,
    ))));
    (monitor, minute)
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_with_backoff() {
    let fake = Fake::start(vec![
        (
            500,
            error_body("Receiver", "InternalFailure", "fake outage"),
        ),
        (400, error_body("Sender", "Throttling", "Rate exceeded")),
        (200, OK_BODY.to_string()),
    ])
    .await;
    let (monitor, minute) = quiet_monitor();
    let publisher = Publisher::new(fake.client().await, monitor, "MLOps/Test", None, minute)
        .unwrap()
        .with_backoff(fast_backoff());
    let started = Instant::now();
    let outcome = publisher.publish_once(now_secs()).await;
    assert_eq!(outcome.minutes, vec![minute]);
    assert_eq!((outcome.calls, outcome.attempts), (1, 3), "{outcome:?}");
    assert_eq!(outcome.datums_sent, 13);
    assert!(outcome.dropped_minutes.is_empty());
    assert_eq!(fake.requests(), 3);
    // Two waits of at least base/2 and base.
    assert!(started.elapsed() >= Duration::from_millis(10 + 20));
}

#[tokio::test]
async fn a_minute_that_keeps_failing_is_dropped_with_a_warning_and_not_resent() {
    let (logs, _guard) = capture_logs();
    let fake = Fake::start(vec![(
        500,
        error_body("Receiver", "InternalFailure", "fake outage"),
    )])
    .await;
    let (monitor, minute) = quiet_monitor();
    let publisher = Publisher::new(fake.client().await, monitor, "MLOps/Test", None, minute)
        .unwrap()
        .with_backoff(fast_backoff());
    let outcome = publisher.publish_once(now_secs()).await;
    assert_eq!(outcome.attempts, 4, "bounded attempts: {outcome:?}");
    assert_eq!(outcome.dropped_minutes, vec![minute]);
    assert_eq!(outcome.datums_sent, 0);
    assert_eq!(fake.requests(), 4);
    let text = logs.text();
    assert!(
        text.contains("WARN")
            && text.contains("could not publish monitoring metrics to CloudWatch"),
        "{text}"
    );
    assert!(
        text.contains("InternalFailure") && text.contains("fake outage"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "credentials in the log:\n{text}");

    // The minute is gone for good: the next publish sends nothing.
    let again = publisher.publish_once(now_secs()).await;
    assert!(again.minutes.is_empty(), "{again:?}");
    assert_eq!(fake.requests(), 4);
}

#[tokio::test]
async fn a_request_cloudwatch_refuses_is_not_retried() {
    let (logs, _guard) = capture_logs();
    let fake = Fake::start(vec![(
        400,
        error_body("Sender", "InvalidParameterValue", "bad value"),
    )])
    .await;
    let (monitor, minute) = quiet_monitor();
    let publisher = Publisher::new(fake.client().await, monitor, "MLOps/Test", None, minute)
        .unwrap()
        .with_backoff(fast_backoff());
    let outcome = publisher.publish_once(now_secs()).await;
    assert_eq!(outcome.attempts, 1, "{outcome:?}");
    assert_eq!(outcome.dropped_minutes, vec![minute]);
    let text = logs.text();
    assert!(
        text.contains("not retryable") && text.contains("InvalidParameterValue"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_warns_while_predictions_keep_being_served() {
    let (logs, _guard) = capture_logs();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut args = serve_args();
    args.cloudwatch = CloudWatchArgs {
        namespace: Some("MLOps/Test".into()),
        service: Some("inference-test".into()),
        region: Some("us-east-1".into()),
        endpoint: Some(dead.clone()),
    };
    // build_state starts the publisher when a namespace is set.
    let server = Server::start(args.clone()).await;
    assert!(
        logs.text()
            .contains("publishing monitoring metrics to CloudWatch every minute"),
        "{}",
        logs.text()
    );
    let monitor = Arc::clone(&server.state.monitor);
    let minute = now_secs() / 60 - 3;
    feed_minute(&monitor, minute);
    let client = cloudwatch::client(&args.cloudwatch, Some(test_credentials()))
        .await
        .unwrap();
    let publisher = Publisher::new(
        client,
        monitor,
        "MLOps/Test",
        Some("inference-test"),
        minute,
    )
    .unwrap()
    .with_backoff(Backoff {
        max_attempts: 3,
        base: Duration::from_millis(300),
        cap: Duration::from_secs(1),
    });
    let (rows, _) = holdout();
    let publishing = async {
        let outcome = publisher.publish_once(now_secs()).await;
        (outcome, Instant::now())
    };
    let predictions = async {
        let mut answered = 0;
        for chunk in rows.chunks(8).take(20) {
            let (status, body) = server
                .post_json("/v1/predict", &json!({ "rows": chunk }))
                .await;
            assert_eq!(status, 200, "{body}");
            answered += 1;
        }
        (answered, Instant::now())
    };
    let ((outcome, published_at), (answered, answered_at)) = tokio::join!(publishing, predictions);
    assert_eq!(answered, 20);
    assert!(
        answered_at < published_at,
        "predictions were answered while the publisher was backing off"
    );
    assert_eq!(outcome.attempts, 3, "{outcome:?}");
    assert_eq!(outcome.dropped_minutes.first(), Some(&minute));
    let text = logs.text();
    assert!(
        text.contains("could not publish monitoring metrics to CloudWatch"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "credentials in the log:\n{text}");
    // Still serving after the publisher gave up.
    let (status, _) = server.get_json("/readyz").await;
    assert_eq!(status, 200);
}
