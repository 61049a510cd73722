//! Short, bounded replays against the real inference service (real model, real ONNX Runtime),
//! started in-process on a loopback port. Needs ORT_DYLIB_PATH (scripts/env.sh sets it).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use inference::config::{Cli, Command};
use inference::http::AppState;
use replay::data::Dataset;
use replay::model::ModelInfo;
use replay::traffic::GarbageKind;
use replay::{CancelToken, Progress, ReplayConfig, ReplayError, RowFormat, Scenario, Summary};
use serde_json::Value;

struct Service {
    url: String,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Service {
    /// The service as `inference serve` would start it with these flags (parsed by its own command
    /// line, so the test keeps compiling as the service gains options), on a free loopback port.
    async fn start(extra: &[&str]) -> Service {
        Self::start_model(&replay::bundled_model_dir(), extra).await
    }

    /// The service serving the model in `model_dir`.
    async fn start_model(model_dir: &std::path::Path, extra: &[&str]) -> Service {
        let ort = std::env::var("ORT_DYLIB_PATH").expect(
            "ORT_DYLIB_PATH must point at libonnxruntime.so (source scripts/env.sh, or run scripts/test.sh)",
        );
        let mut argv = vec![
            "inference",
            "serve",
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
            "--ort-library",
            &ort,
            "--workers",
            "1",
            "--shutdown-grace-secs",
            "2",
        ];
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(&argv)
            .expect("valid serve flags")
            .command
        else {
            unreachable!("serve was asked for")
        };
        let state = inference::build_state(&args).await.expect("service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(inference::serve(
            listener,
            Arc::clone(&state),
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(2),
        ));
        Service {
            url,
            state,
            stop: Some(stop),
        }
    }

    /// A short replay at a high rate, bounded by a request count (and a 10 s safety net).
    fn config(&self, scenarios: &[Scenario], requests: u64) -> ReplayConfig {
        ReplayConfig {
            url: self.url.clone(),
            scenarios: scenarios.to_vec(),
            requests: Some(requests),
            duration: Some(Duration::from_secs(10)),
            rate: 200.0,
            progress_every: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            ..ReplayConfig::default()
        }
    }

    async fn readyz(&self) -> u16 {
        reqwest::get(format!("{}/readyz", self.url))
            .await
            .expect("the service still answers")
            .status()
            .as_u16()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn replay(cfg: ReplayConfig) -> Summary {
    let mut last: Option<Progress> = None;
    let summary = replay::run(cfg, |p| last = Some(p), CancelToken::new())
        .await
        .expect("the replay starts");
    let last = last.expect("progress is reported at least once, at the end");
    assert!(last.done);
    assert_eq!(last.counts, summary.counts);
    summary
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("replay-test-{}-{name}", std::process::id()))
}

fn read_record(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_traffic_is_all_accepted() {
    let svc = Service::start(&[]).await;
    let s = replay(svc.config(&[Scenario::Normal], 20)).await;
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!(
        (c.requests_sent, c.accepted, c.rows_sent, c.rows_scored),
        (20, 20, 160, 160)
    );
    assert_eq!((c.rejected, c.throttled, c.unexpected), (0, 0, 0));
    assert!(c.rejected_by_status.is_empty());
    assert_eq!(s.by_label.anomalous_scored, 0);
    assert!(
        s.by_label.normal_flagged * 4 <= s.by_label.normal_scored,
        "{:?}",
        s.by_label
    );
    assert!(c.latency_p50_ms.unwrap() > 0.0 && c.latency_p99_ms >= c.latency_p50_ms);
    // Target 200/s; loose, for busy machines.
    assert!(s.achieved_rate > 40.0, "{}", s.achieved_rate);
    assert_eq!(s.model_name.as_deref(), Some(svc.state.card.name.as_str()));
    assert!(!s.cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalous_rows_are_mostly_flagged() {
    let svc = Service::start(&[]).await;
    let s = replay(svc.config(&[Scenario::Anomalies], 20)).await;
    assert!(s.is_success(), "{}", s.to_table());
    let b = &s.by_label;
    assert_eq!((b.anomalous_scored, b.normal_scored), (160, 0));
    // The card reports a recall of 0.79 on these rows at the served threshold.
    assert!(
        b.anomalous_flagged as f64 >= 0.65 * b.anomalous_scored as f64,
        "{b:?}"
    );
    assert_eq!(s.counts.anomalies_flagged, b.anomalous_flagged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_cells_are_expected_422s_and_the_service_stays_ready() {
    let svc = Service::start(&[]).await;
    let s = replay(svc.config(&[Scenario::Missing], 20)).await;
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    // Alone, every request carries nulls: every answer is the 422 naming one of them.
    assert_eq!((c.rejected, c.expected_rejections, c.accepted), (20, 20, 0));
    assert_eq!(
        c.rejected_by_status.keys().copied().collect::<Vec<_>>(),
        vec![422]
    );
    assert_eq!(svc.readyz().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_only_4xx_and_the_service_stays_ready() {
    let svc = Service::start(&[]).await;
    let record = temp_file("garbage.jsonl");
    let n = 2 * GarbageKind::ALL.len() as u64;
    let mut cfg = svc.config(&[Scenario::Garbage], n);
    cfg.record = Some(record.clone());
    let s = replay(cfg).await;
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!((c.rejected, c.expected_rejections, c.accepted), (n, n, 0));
    assert_eq!((c.server_errors, c.connection_errors), (0, 0));
    let statuses: BTreeSet<u16> = c.rejected_by_status.keys().copied().collect();
    assert_eq!(statuses, BTreeSet::from([400, 415, 422]));
    // Each kind is refused with the status the service documents for it.
    let lines = read_record(&record);
    assert_eq!(lines.len() as u64, n);
    for line in &lines {
        let kind = GarbageKind::ALL
            .into_iter()
            .find(|k| serde_json::to_value(k).unwrap() == line["kind"]["garbage"])
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(line["status"], kind.expected_status(), "{kind:?}: {line}");
    }
    std::fs::remove_file(&record).unwrap();
    assert_eq!(svc.readyz().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_shifts_the_chosen_features_of_the_sent_rows() {
    let svc = Service::start(&[]).await;
    let record = temp_file("drift.jsonl");
    let mut cfg = svc.config(&[Scenario::Drift], 10);
    cfg.drift_features = vec!["mean_texture".into(), "worst_smoothness".into()];
    cfg.drift_k = 2.0;
    cfg.record = Some(record.clone());
    cfg.model_dir = Some(replay::bundled_model_dir());
    let s = replay(cfg).await;
    assert!(s.is_success(), "{}", s.to_table());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.counts.accepted, 10);

    let model = ModelInfo::from_model_dir(&replay::bundled_model_dir()).unwrap();
    let data = Dataset::load(&replay::bundled_model_dir(), &model.features, "label").unwrap();
    let drifted: Vec<usize> = ["mean_texture", "worst_smoothness"]
        .iter()
        .map(|n| model.features.iter().position(|f| f.name == *n).unwrap())
        .collect();
    assert_eq!(s.drift.iter().map(|d| d.index).collect::<Vec<_>>(), drifted);
    let lines = read_record(&record);
    assert_eq!(lines.len(), 10);
    let mut checked = 0;
    for line in &lines {
        assert_eq!(line["status"], 200);
        let rows = line["body"]["rows"].as_array().unwrap();
        let sources = line["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 8);
        for (row, meta) in rows.iter().zip(sources) {
            let source = data.find(meta["source"].as_str().unwrap()).unwrap();
            for (j, f) in model.features.iter().enumerate() {
                let sent = row[j].as_f64().unwrap();
                let want = if drifted.contains(&j) {
                    2.0 * f.std
                } else {
                    0.0
                };
                let got = sent - source.values[j];
                assert!(
                    (got - want).abs() <= 1e-9 * sent.abs().max(1.0),
                    "{}: sent {sent}, source {}, shift {got}, want {want}",
                    f.name,
                    source.values[j]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 10 * 8 * 30);
    std::fs::remove_file(&record).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_replay_with_object_rows_meets_every_expectation() {
    let svc = Service::start(&[]).await;
    use Scenario::*;
    let mut cfg = svc.config(&[Normal, Drift, Anomalies, Missing, Garbage], 40);
    cfg.row_format = RowFormat::Object;
    let s = replay(cfg).await;
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!(c.accepted + c.rejected, 40);
    assert!(c.accepted > 0 && c.rejected > 0, "{}", s.to_table());
    assert_eq!(c.rejected, c.expected_rejections);
    assert!(s.by_label.anomalous_scored > 0 && s.by_label.normal_scored > 0);
    assert_eq!(svc.readyz().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let svc = Service::start(&["--max-concurrent", "1"]).await;
    // Hold the service's only admission permit: every predict is answered 429 until it is released.
    let permit = svc.state.engine.admit().unwrap();
    let mut cfg = svc.config(&[Scenario::Normal], 3);
    cfg.max_retries = 3;
    // Far enough apart that, once the permit is back, one request never meets the previous one.
    cfg.rate = 20.0;
    let started = Instant::now();
    let run = tokio::spawn(replay(cfg));
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(permit);
    let s = run.await.unwrap();
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!((c.accepted, c.gave_up), (3, 0), "{}", s.to_table());
    assert!(
        c.throttled >= 1 && c.attempts == 3 + c.throttled,
        "{}",
        s.to_table()
    );
    // The service asks for retry-after: 1 (second).
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_still_throttled_after_the_last_retry_are_given_up() {
    let svc = Service::start(&["--max-concurrent", "1"]).await;
    let _permit = svc.state.engine.admit().unwrap();
    let mut cfg = svc.config(&[Scenario::Normal], 2);
    cfg.max_retries = 0;
    let s = replay(cfg).await;
    let c = &s.counts;
    assert_eq!((c.requests_sent, c.gave_up, c.throttled), (2, 2, 2));
    assert_eq!(c.rejected_by_status.get(&429), Some(&2));
    assert_eq!(c.accepted, 0);
    // Throttling is the service's polite answer, not a failure.
    assert!(s.is_success(), "{}", s.to_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_a_long_replay_promptly() {
    let svc = Service::start(&[]).await;
    let mut cfg = svc.config(&[Scenario::Normal], 1_000_000);
    cfg.rate = 20.0;
    cfg.duration = Some(Duration::from_secs(60));
    let cancel = CancelToken::new();
    let started = Instant::now();
    let run = tokio::spawn(replay::run(cfg, |_| {}, cancel.clone()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    cancel.cancel();
    let s = tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .expect("the replay stops within 3 s of cancel")
        .unwrap()
        .unwrap();
    assert!(s.cancelled);
    assert!(s.counts.requests_sent >= 3, "{}", s.to_table());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(svc.readyz().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_sent_after_the_delay_without_slowing_the_requests() {
    let svc = Service::start(&[]).await;
    let mut cfg = svc.config(&[Scenario::Normal, Scenario::Feedback], 10);
    cfg.rate = 100.0;
    cfg.feedback_delay = Duration::from_millis(500);
    let started = Instant::now();
    let s = replay(cfg).await;
    let c = &s.counts;
    assert_eq!(c.accepted, 10);
    // Feedback waiting inline would hold each request 0.5 s (2/s); loose, for busy machines.
    assert!(s.achieved_rate > 20.0, "{}", s.achieved_rate);
    assert_eq!((c.feedback_requests, c.feedback_sent), (10, 80));
    // The last request goes out at ~0.09 s; its labels 0.5 s after its answer.
    assert!(started.elapsed() >= Duration::from_millis(550));
    assert_eq!(c.feedback_accepted, 80, "{}", s.to_table());
    assert!(s.is_success(), "{}", s.to_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_labels_are_accepted_by_the_service() {
    let svc = Service::start(&[]).await;
    let mut cfg = svc.config(
        &[Scenario::Normal, Scenario::Anomalies, Scenario::Feedback],
        10,
    );
    cfg.feedback_delay = Duration::from_millis(200);
    let s = replay(cfg).await;
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!(
        (c.feedback_requests, c.feedback_sent, c.feedback_accepted),
        (10, 80, 80)
    );
    assert!(c.feedback_failed_by_status.is_empty());
}

#[tokio::test]
async fn an_unreachable_service_is_reported_as_a_sentence() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ReplayConfig {
        url: format!("http://127.0.0.1:{port}"),
        requests: Some(1),
        timeout: Duration::from_secs(2),
        ..ReplayConfig::default()
    };
    let e = replay::run(cfg, |_| {}, CancelToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, ReplayError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("Is it running?"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_service_limit_is_refused_before_sending() {
    let svc = Service::start(&[]).await;
    let mut cfg = svc.config(&[Scenario::Normal], 1);
    cfg.batch = 5000;
    let e = replay::run(cfg, |_| {}, CancelToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--batch 1024 or less"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_goes_with_every_request() {
    const TOKEN: &str = "replay-test-token-0123456789";
    let svc = Service::start(&["--api-token", TOKEN, "--protect-predict"]).await;
    let mut cfg = svc.config(&[Scenario::Normal, Scenario::Feedback], 5);
    cfg.feedback_delay = Duration::from_millis(100);
    cfg.token = Some(TOKEN.into());
    let s = replay(cfg.clone()).await;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!((s.counts.accepted, s.counts.feedback_accepted), (5, 40));

    // Without it, the refusals are counted and the summary says what to do.
    cfg.token = None;
    let s = replay(cfg).await;
    assert_eq!(
        s.counts.rejected_by_status.get(&401),
        Some(&5),
        "{}",
        s.to_table()
    );
    assert!(!s.is_success());
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("401") && w.contains("--token")),
        "{:?}",
        s.warnings
    );
}

/// The service's 10-minute summary once its recorder has taken `labelled` labels (at most 5 s).
async fn settled_summary(svc: &Service, labelled: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = svc.state.monitor.summary_json(600);
        if s["model"]["ground_truth"]["labelled"].as_u64() >= Some(labelled)
            || Instant::now() > deadline
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An example model's directory with its card's missing-value policy set to `policy`.
fn example_with_policy(name: &str, policy: &str) -> PathBuf {
    let src = replay::bundled_model_dir().join("..").join(name);
    let dir = temp_file(&format!("{name}-{policy}"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.onnx", "holdout.csv"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut card: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("model_card.json")).unwrap())
            .unwrap();
    card["missing_values"] = serde_json::json!({"policy": policy});
    std::fs::write(dir.join("model_card.json"), card.to_string()).unwrap();
    dir
}

/// A classifier whose card scores rows one by one: requests with nulls are answered 200 with an
/// error per refused row, the other rows are scored and labelled with their class, and the
/// service's monitoring counts what the replay sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifier_scoring_row_by_row_is_replayed_with_nulls_and_class_labels() {
    let dir = example_with_policy("wbc-gbt-classifier", "per_row");
    let svc = Service::start_model(&dir, &[]).await;
    let mut cfg = svc.config(
        &[Scenario::Normal, Scenario::Missing, Scenario::Feedback],
        30,
    );
    cfg.data = dir.clone();
    cfg.missing_requests = Some(0.5);
    cfg.feedback_delay = Duration::from_millis(100);
    let s = replay(cfg).await;
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!((c.accepted, c.unexpected, c.server_errors), (30, 0, 0));
    assert!(c.rows_refused > 0, "{}", s.to_table());
    assert_eq!(c.rows_scored + c.rows_refused, c.rows_sent);
    assert_eq!(c.feedback_accepted, c.rows_scored, "{}", s.to_table());
    let summary = settled_summary(&svc, c.rows_scored).await;
    assert_eq!(summary["data"]["rows"], c.rows_scored);
    assert_eq!(summary["data"]["refused_rows"], c.rows_refused);
    assert_eq!(summary["model"]["ground_truth"]["labelled"], c.rows_scored);
    assert!(
        summary["model"]["ground_truth"]["accuracy"]
            .as_f64()
            .unwrap()
            > 0.8
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A regressor that imputes: every row is scored, nulls included, and the true values go back as
/// feedback; the anomalies scenario is refused with a sentence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regressor_that_imputes_is_replayed_with_drift_nulls_and_true_values() {
    let dir = example_with_policy("diabetes-regressor", "impute");
    let svc = Service::start_model(&dir, &[]).await;
    let mut cfg = svc.config(
        &[Scenario::Drift, Scenario::Missing, Scenario::Feedback],
        20,
    );
    cfg.data = dir.clone();
    cfg.feedback_delay = Duration::from_millis(100);
    let s = replay(cfg).await;
    let c = &s.counts;
    assert!(s.is_success(), "{}", s.to_table());
    assert_eq!(
        (c.accepted, c.rows_scored, c.rows_refused),
        (20, c.rows_sent, 0)
    );
    assert_eq!(c.feedback_accepted, c.rows_sent);
    let summary = settled_summary(&svc, c.rows_sent).await;
    let imputed: u64 = summary["data"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["imputed"].as_u64().unwrap())
        .sum();
    assert!(imputed > 0, "{summary}");
    assert!(summary["model"]["ground_truth"]["mae"].as_f64().unwrap() > 0.0);

    let mut cfg = svc.config(&[Scenario::Anomalies], 5);
    cfg.data = dir.clone();
    let e = replay::run(cfg, |_| {}, CancelToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("only an autoencoder's data has"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}
