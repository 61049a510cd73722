//! One dashboard refresh: fetch what the serving version reports (summary, series, model card),
//! draw every chart as SVG, and derive the drift table, data-quality table and alert badges.
//! The desktop app shows the result as is; the benchmark measures exactly this function.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::charts::{self, Histogram, Line, Marker, MarkerKind, TimeChart, Unit};
use crate::history::{Deployment, Trigger};
use crate::service::ServiceClient;
use crate::task_view::{self, ClassRow, Task, Tile};

/// Where a dashboard reads from: one service (`ServiceClient`) or a fleet's merged replicas
/// (`fleet_monitor::FleetView`). Both answer as `GET /v1/model`, `/v1/monitoring/summary` and
/// `/v1/monitoring/series` do.
#[async_trait::async_trait]
pub trait Source: Sync {
    async fn model(&self) -> Result<Value, String>;
    async fn summary(&self, window_s: i64) -> Result<Value, String>;
    async fn series(
        &self,
        metric: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(i64, Option<f64>)>, String>;
}

#[async_trait::async_trait]
impl Source for ServiceClient {
    async fn model(&self) -> Result<Value, String> {
        ServiceClient::model(self).await
    }
    async fn summary(&self, window_s: i64) -> Result<Value, String> {
        ServiceClient::summary(self, window_s).await
    }
    async fn series(
        &self,
        metric: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(i64, Option<f64>)>, String> {
        ServiceClient::series(self, metric, from, to, step).await
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    /// Seconds back from now: 900, 3600 or 86400 in the app.
    pub range_s: i64,
    /// The viewer's offset from UTC, for the time labels.
    pub utc_offset_s: i64,
    /// The feature whose distribution and drift are charted; None picks the most drifted one.
    pub feature: Option<String>,
    /// Unix seconds "now" (the end of the range).
    pub now: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    pub id: String,
    pub layer: &'static str,
    pub title: String,
    pub svg: String,
    /// The newest value, formatted (for a number beside the title).
    pub latest: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DriftRow {
    pub feature: String,
    pub rows: u64,
    pub psi: Option<f64>,
    pub ks_p_value: Option<f64>,
    pub wasserstein_scaled: Option<f64>,
    pub verdict: String,
    pub missing: u64,
    pub invalid: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// "warning" or "critical".
    pub level: &'static str,
    pub layer: &'static str,
    pub text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Dashboard {
    pub from: i64,
    pub to: i64,
    pub step: i64,
    pub model: Value,
    pub charts: Vec<Chart>,
    pub drift: Vec<DriftRow>,
    pub drift_verdict: String,
    pub feature: Option<String>,
    pub features: Vec<String>,
    pub alerts: Vec<Alert>,
    pub kpis: Value,
    /// What the model does (autoencoder, binary, multiclass, regressor): the page lays out for it.
    pub task: Task,
    /// The numbers under the toolbar, in order, for the task.
    pub tiles: Vec<Tile>,
    /// A classifier's classes: predicted now vs the baseline, and their ground truth.
    pub classes: Vec<ClassRow>,
    /// A classifier's calibration table from the labelled rows (confidence vs accuracy per bin).
    pub calibration: Value,
    pub fetch_ms: f64,
    pub draw_ms: f64,
}

/// Alert rules the console applies on top of the service's own drift verdicts.
pub const ERROR_RATE_WARN: f64 = 0.01;
pub const ERROR_RATE_CRIT: f64 = 0.05;
pub const P99_WARN_S: f64 = 0.25;
pub const CPU_WARN: f64 = 90.0;
pub const ANOMALY_RATE_WARN: f64 = 0.25;
/// Classes drawn as lines on the predicted-classes chart (the table lists them all).
const MAX_CLASS_LINES: usize = 8;

/// Resolution for a range: one-minute points up to a day (what the service keeps).
pub fn step_for(range_s: i64) -> i64 {
    if range_s <= 86_400 {
        60
    } else {
        300
    }
}

struct Spec {
    id: &'static str,
    layer: &'static str,
    title: &'static str,
    unit: Unit,
    y_floor: f64,
    lines: &'static [(&'static str, &'static str)],
    threshold: Option<(f64, &'static str)>,
}

const SPECS: &[Spec] = &[
    Spec {
        id: "cpu",
        layer: "system",
        title: "CPU",
        unit: Unit::Percent,
        y_floor: 100.0,
        lines: &[
            ("host_cpu_percent", "host"),
            ("process_cpu_percent", "service"),
        ],
        threshold: Some((CPU_WARN, "90%")),
    },
    Spec {
        id: "memory",
        layer: "system",
        title: "Memory",
        unit: Unit::Bytes,
        y_floor: 0.0,
        lines: &[
            ("memory_used_bytes", "host used"),
            ("process_rss_bytes", "service RSS"),
        ],
        threshold: None,
    },
    Spec {
        id: "disk",
        layer: "system",
        title: "Disk used (state volume)",
        unit: Unit::Bytes,
        y_floor: 0.0,
        lines: &[("disk_used_bytes", "")],
        threshold: None,
    },
    Spec {
        id: "network",
        layer: "system",
        title: "Network",
        unit: Unit::BytesPerSecond,
        y_floor: 0.0,
        lines: &[
            ("network_rx_bytes_per_second", "in"),
            ("network_tx_bytes_per_second", "out"),
        ],
        threshold: None,
    },
    Spec {
        id: "latency",
        layer: "system",
        title: "Predict latency",
        unit: Unit::Seconds,
        y_floor: 0.0,
        lines: &[
            ("latency_p50", "p50"),
            ("latency_p95", "p95"),
            ("latency_p99", "p99"),
        ],
        threshold: Some((P99_WARN_S, "p99 alert")),
    },
    Spec {
        id: "errors",
        layer: "system",
        title: "Error rate",
        unit: Unit::Ratio,
        y_floor: 0.02,
        lines: &[("error_rate", "4xx+5xx"), ("server_error_rate", "5xx")],
        threshold: Some((ERROR_RATE_CRIT, "5%")),
    },
    Spec {
        id: "requests",
        layer: "system",
        title: "Requests",
        unit: Unit::PerSecond,
        y_floor: 0.0,
        lines: &[("requests_per_second", "")],
        threshold: None,
    },
    Spec {
        id: "data_quality",
        layer: "data",
        title: "Data quality (per minute)",
        unit: Unit::Plain,
        y_floor: 1.0,
        lines: &[
            ("missing_per_minute", "missing cells"),
            ("imputed_per_minute", "imputed cells"),
            ("invalid_per_minute", "invalid cells"),
            ("refused_rows_per_minute", "rows refused"),
            ("rows_per_minute", "rows scored"),
        ],
        threshold: None,
    },
    Spec {
        id: "recon_error",
        layer: "model",
        title: "Reconstruction error",
        unit: Unit::Plain,
        y_floor: 0.0,
        lines: &[
            ("reconstruction_error_p50", "p50"),
            ("reconstruction_error_p95", "p95"),
            ("reconstruction_error_p99", "p99"),
        ],
        // Replaced by the model card's threshold.
        threshold: None,
    },
    Spec {
        id: "anomaly_rate",
        layer: "model",
        title: "Anomaly rate",
        unit: Unit::Ratio,
        y_floor: 0.1,
        lines: &[("anomaly_rate", "")],
        threshold: Some((ANOMALY_RATE_WARN, "25%")),
    },
    Spec {
        id: "ground_truth",
        layer: "model",
        title: "Ground truth (labelled rows)",
        unit: Unit::Ratio,
        y_floor: 1.0,
        lines: &[
            ("precision", "precision"),
            ("recall", "recall"),
            ("f1", "F1"),
        ],
        threshold: None,
    },
];

/// Deploy and rollback markers from the target's history, oldest first.
pub fn markers(deployments: &[Deployment]) -> Vec<Marker> {
    let mut m: Vec<Marker> = deployments
        .iter()
        .filter(|d| d.status != "running")
        .map(|d| {
            let t = d.finished_at_ms.unwrap_or(d.started_at_ms) / 1000;
            let kind = match (d.trigger, d.status.as_str()) {
                (_, "failed") => MarkerKind::Failed,
                (Trigger::Rollback | Trigger::AutoRollback, _) => MarkerKind::Rollback,
                _ => MarkerKind::Deploy,
            };
            let label = match kind {
                MarkerKind::Rollback => format!("↩ {}", d.tag),
                MarkerKind::Failed => format!("✗ {}", d.tag),
                MarkerKind::Deploy => d.tag.clone(),
            };
            Marker { t, label, kind }
        })
        .collect();
    m.sort_by_key(|x| x.t);
    m
}

/// Fetches and draws the whole dashboard.
pub async fn refresh(
    client: &dyn Source,
    markers: &[Marker],
    req: &Request,
) -> Result<Dashboard, String> {
    let t0 = Instant::now();
    let step = step_for(req.range_s);
    let to = req.now;
    let from = to - req.range_s;

    let (model, summary) = tokio::try_join!(client.model(), client.summary(req.range_s))?;
    let features: Vec<String> = summary["data"]["features"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let feature = pick_feature(&summary, req.feature.as_deref(), &features);

    // Every series at once: they are independent GETs on loopback.
    let mut wanted: Vec<String> = SPECS
        .iter()
        .flat_map(|s| s.lines.iter().map(|(m, _)| m.to_string()))
        .collect();
    if let Some(f) = &feature {
        wanted.push(format!("psi:{f}"));
    }
    wanted.push("score_psi".into());
    let task = Task::of(&summary);
    let classes: Vec<String> = summary["model"]["predicted_classes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["class"].as_str().map(str::to_string))
                .take(MAX_CLASS_LINES)
                .collect()
        })
        .unwrap_or_default();
    if task.is_classifier() {
        wanted.extend(classes.iter().map(|c| format!("class_share:{c}")));
        wanted.push("class_psi".into());
    }
    let fetched =
        futures_util::future::join_all(wanted.iter().map(|m| client.series(m, from, to, step)))
            .await;
    let mut series = std::collections::HashMap::new();
    for (m, r) in wanted.iter().zip(fetched) {
        series.insert(m.clone(), r?);
    }
    let fetch_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t1 = Instant::now();
    let threshold = model["card"]["score"]["threshold"].as_f64();
    let mut charts = Vec::new();
    for s in SPECS {
        // The model layer's charts follow the task: a score of its own, a rate only where a
        // threshold splits the rows, precision/recall only where there is a positive class.
        let title = match s.id {
            "recon_error" => task.score_title(),
            "anomaly_rate" => match task.rate_title() {
                Some(t) => t,
                None => continue,
            },
            "ground_truth" if !task.binary_truth() => continue,
            _ => s.title,
        };
        let lines: Vec<Line> = s
            .lines
            .iter()
            .map(|(m, label)| Line {
                label: label.to_string(),
                points: series.remove(*m).unwrap_or_default(),
            })
            .collect();
        let last = |l: Option<&Line>| l.and_then(|l| l.points.iter().rev().find_map(|p| p.1));
        let latest = match s.id {
            // Missing cells beside the rows still scored: imperfect data keeps flowing or not.
            "data_quality" => last(lines.first()).map(|m| {
                let scored = last(lines.last()).unwrap_or(0.0);
                format!(
                    "{} missing · {} scored /min",
                    s.unit.format(m),
                    s.unit.format(scored)
                )
            }),
            _ => last(lines.first()).map(|v| s.unit.format(v)),
        };
        let thr = if s.id == "recon_error" {
            threshold.map(|t| (t, "threshold".to_string()))
        } else {
            s.threshold.map(|(v, l)| (v, l.to_string()))
        };
        let svg = charts::time_chart_svg(&TimeChart {
            title: title.into(),
            unit: s.unit,
            from,
            to,
            utc_offset_s: req.utc_offset_s,
            lines,
            markers: markers.to_vec(),
            threshold: thr,
            y_floor: s.y_floor,
        })?;
        charts.push(Chart {
            id: s.id.into(),
            layer: s.layer,
            title: title.into(),
            svg,
            latest,
        });
    }
    if task.is_classifier() {
        let lines: Vec<Line> = classes
            .iter()
            .map(|c| Line {
                label: c.clone(),
                points: series
                    .remove(&format!("class_share:{c}"))
                    .unwrap_or_default(),
            })
            .collect();
        let svg = charts::time_chart_svg(&TimeChart {
            title: "Predicted classes (share of rows)".into(),
            unit: Unit::Ratio,
            from,
            to,
            utc_offset_s: req.utc_offset_s,
            lines,
            markers: markers.to_vec(),
            threshold: None,
            y_floor: 1.0,
        })?;
        charts.push(Chart {
            id: "predicted_classes".into(),
            layer: "model",
            title: "Predicted classes (share of rows)".into(),
            svg,
            latest: None,
        });
        charts.push(psi_chart(
            "class_psi",
            "model",
            "Predicted-class drift (PSI)".into(),
            series.remove("class_psi").unwrap_or_default(),
            from,
            to,
            req,
            markers,
        )?);
    }
    if let Some((edges, slots)) = task_view::residuals(&summary) {
        let rows: f64 = slots.iter().sum();
        let svg = charts::histogram_svg(&Histogram {
            title: "Residuals (true − predicted, labelled rows)".into(),
            baseline: vec![0.0; slots.len()],
            current: slots,
            edges,
            unit: Unit::Plain,
            threshold: Some((0.0, "0".into())),
        })?;
        charts.push(Chart {
            id: "residuals".into(),
            layer: "model",
            title: "Residuals (true − predicted, labelled rows)".into(),
            svg,
            latest: Some(format!("{rows:.0} rows")),
        });
    }
    charts.push(psi_chart(
        "score_psi",
        "model",
        "Score drift (PSI)".into(),
        series.remove("score_psi").unwrap_or_default(),
        from,
        to,
        req,
        markers,
    )?);
    if let Some(dist) = summary["model"].get("score_distribution") {
        charts.push(distribution_chart(
            "score_distribution",
            "model",
            format!("{}: live vs training", task.score_title()),
            dist,
            threshold.map(|t| (t, "threshold".into())),
        )?);
    }
    if let Some(f) = &feature {
        let row = summary["data"]["features"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"].as_str() == Some(f)));
        if let Some(dist) = row.and_then(|r| r.get("distribution")) {
            charts.push(distribution_chart(
                "feature_distribution",
                "data",
                format!("{f}: live vs training"),
                dist,
                None,
            )?);
        }
        charts.push(psi_chart(
            "feature_psi",
            "data",
            format!("{f}: drift (PSI)"),
            series.remove(&format!("psi:{f}")).unwrap_or_default(),
            from,
            to,
            req,
            markers,
        )?);
    }
    let draw_ms = t1.elapsed().as_secs_f64() * 1e3;

    Ok(Dashboard {
        from,
        to,
        step,
        drift: drift_rows(&summary),
        drift_verdict: summary["data"]["drift"]["verdict"]
            .as_str()
            .unwrap_or("insufficient_data")
            .to_string(),
        alerts: alerts(&summary),
        kpis: kpis(&summary),
        tiles: task_view::tiles(&summary, task),
        classes: task_view::class_rows(&summary),
        calibration: summary["model"]["ground_truth"]["calibration"].clone(),
        task,
        model,
        charts,
        feature,
        features,
        fetch_ms,
        draw_ms,
    })
}

#[allow(clippy::too_many_arguments)]
fn psi_chart(
    id: &str,
    layer: &'static str,
    title: String,
    points: Vec<(i64, Option<f64>)>,
    from: i64,
    to: i64,
    req: &Request,
    markers: &[Marker],
) -> Result<Chart, String> {
    let latest = points
        .iter()
        .rev()
        .find_map(|p| p.1)
        .map(|v| format!("{v:.3}"));
    let svg = charts::time_chart_svg(&TimeChart {
        title: title.clone(),
        unit: Unit::Plain,
        from,
        to,
        utc_offset_s: req.utc_offset_s,
        lines: vec![Line {
            label: String::new(),
            points,
        }],
        markers: markers.to_vec(),
        threshold: Some((0.25, "drift (PSI 0.25)".into())),
        y_floor: 0.3,
    })?;
    Ok(Chart {
        id: id.into(),
        layer,
        title,
        svg,
        latest,
    })
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect())
        .unwrap_or_default()
}

fn distribution_chart(
    id: &str,
    layer: &'static str,
    title: String,
    dist: &Value,
    threshold: Option<(f64, String)>,
) -> Result<Chart, String> {
    let current = numbers(&dist["current"]);
    let rows: f64 = current.iter().sum();
    let svg = charts::histogram_svg(&Histogram {
        title: title.clone(),
        edges: numbers(&dist["edges"]),
        baseline: numbers(&dist["baseline"]),
        current,
        unit: Unit::Plain,
        threshold,
    })?;
    Ok(Chart {
        id: id.into(),
        layer,
        title,
        svg,
        latest: Some(format!("{rows:.0} rows")),
    })
}

/// The requested feature if the model has it, else the most drifted one (by PSI), else the first.
fn pick_feature(summary: &Value, asked: Option<&str>, features: &[String]) -> Option<String> {
    if let Some(a) = asked {
        if features.iter().any(|f| f == a) {
            return Some(a.to_string());
        }
    }
    let rows = summary["data"]["features"].as_array()?;
    rows.iter()
        .filter_map(|r| Some((r["name"].as_str()?, r["drift"]["psi"].as_f64()?)))
        .filter(|(_, p)| p.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n.to_string())
        .or_else(|| features.first().cloned())
}

fn finite(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn drift_rows(summary: &Value) -> Vec<DriftRow> {
    summary["data"]["features"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| DriftRow {
                    feature: f["name"].as_str().unwrap_or("?").to_string(),
                    rows: f["rows"].as_u64().unwrap_or(0),
                    psi: finite(&f["drift"]["psi"]),
                    ks_p_value: finite(&f["drift"]["ks_p_value"]),
                    wasserstein_scaled: finite(&f["drift"]["wasserstein_scaled"]),
                    verdict: f["verdict"].as_str().unwrap_or("unknown").to_string(),
                    missing: f["missing"].as_u64().unwrap_or(0),
                    invalid: f["invalid"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Badges for every rule the window's summary breaks.
pub fn alerts(summary: &Value) -> Vec<Alert> {
    let mut out = Vec::new();
    let sys = &summary["system"];
    if let Some(r) = finite(&sys["error_rate"]) {
        if r >= ERROR_RATE_CRIT {
            out.push(Alert {
                level: "critical",
                layer: "system",
                text: format!("error rate {} (alert at 5%)", Unit::Ratio.format(r)),
            });
        } else if r >= ERROR_RATE_WARN {
            out.push(Alert {
                level: "warning",
                layer: "system",
                text: format!("error rate {} (warning at 1%)", Unit::Ratio.format(r)),
            });
        }
    }
    if let Some(p99) = finite(&sys["predict_latency_seconds"]["p99"]) {
        if p99 >= P99_WARN_S {
            out.push(Alert {
                level: "warning",
                layer: "system",
                text: format!(
                    "predict p99 {} (alert at 250 ms)",
                    Unit::Seconds.format(p99)
                ),
            });
        }
    }
    if let Some(cpu) = finite(&sys["resources"]["host_cpu_percent"]) {
        if cpu >= CPU_WARN {
            out.push(Alert {
                level: "warning",
                layer: "system",
                text: format!("host CPU {cpu:.0}%"),
            });
        }
    }
    let data = &summary["data"]["drift"];
    let drifted: Vec<&str> = data["drifted_features"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match data["verdict"].as_str() {
        Some("drift") => out.push(Alert {
            level: "critical",
            layer: "data",
            text: format!(
                "input drift: {} of the features drift ({})",
                drifted.len(),
                drifted.join(", ")
            ),
        }),
        _ if !drifted.is_empty() => out.push(Alert {
            level: "warning",
            layer: "data",
            text: format!("drift in {}", drifted.join(", ")),
        }),
        _ => {}
    }
    let model = &summary["model"];
    let task = Task::of(summary);
    if let Some(r) = finite(&model["anomaly_rate"]).filter(|_| task == Task::Autoencoder) {
        if r >= ANOMALY_RATE_WARN {
            out.push(Alert {
                level: "warning",
                layer: "model",
                text: format!("anomaly rate {} (warning at 25%)", Unit::Ratio.format(r)),
            });
        }
    }
    if model["score_drift"]["verdict"].as_str() == Some("drift") {
        out.push(Alert {
            level: "warning",
            layer: "model",
            text: format!(
                "{} distribution has drifted from training",
                task.score_title().to_lowercase()
            ),
        });
    }
    if let Some(v @ ("drift" | "warning")) = model["class_drift"]["verdict"].as_str() {
        out.push(Alert {
            level: if v == "drift" { "critical" } else { "warning" },
            layer: "model",
            text: format!(
                "predicted classes {} from the baseline (PSI {})",
                if v == "drift" {
                    "have drifted"
                } else {
                    "are moving away"
                },
                finite(&model["class_drift"]["psi"]).map_or("–".into(), |p| format!("{p:.3}"))
            ),
        });
    }
    out
}

fn kpis(summary: &Value) -> Value {
    let sys = &summary["system"];
    let model = &summary["model"];
    let fmt = |v: Option<f64>, u: Unit| v.map(|x| u.format(x));
    serde_json::json!({
        "requests": sys["requests"],
        "requests_per_second": fmt(finite(&sys["requests_per_second"]), Unit::PerSecond),
        "error_rate": fmt(finite(&sys["error_rate"]), Unit::Ratio),
        "p50": fmt(finite(&sys["predict_latency_seconds"]["p50"]), Unit::Seconds),
        "p99": fmt(finite(&sys["predict_latency_seconds"]["p99"]), Unit::Seconds),
        "rows": model["rows"],
        "anomaly_rate": fmt(finite(&model["anomaly_rate"]), Unit::Ratio),
        "labelled": model["ground_truth"]["labelled"],
        "precision": fmt(finite(&model["ground_truth"]["precision"]), Unit::Ratio),
        "recall": fmt(finite(&model["ground_truth"]["recall"]), Unit::Ratio),
        "roc_auc": finite(&model["ground_truth"]["roc_auc"]).map(|v| format!("{v:.3}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn alerts_follow_the_rules() {
        let s = json!({
            "system": {"error_rate": 0.06, "predict_latency_seconds": {"p99": 0.3},
                       "resources": {"host_cpu_percent": 12.0}},
            "data": {"drift": {"verdict": "drift", "drifted_features": ["a", "b"]}},
            "model": {"anomaly_rate": 0.1, "score_drift": {"verdict": "ok"}},
        });
        let a = alerts(&s);
        let texts: Vec<_> = a.iter().map(|x| (x.level, x.text.as_str())).collect();
        assert_eq!(
            texts,
            vec![
                ("critical", "error rate 6.0% (alert at 5%)"),
                ("warning", "predict p99 300 ms (alert at 250 ms)"),
                ("critical", "input drift: 2 of the features drift (a, b)"),
            ]
        );
        let quiet = json!({"system": {"error_rate": null}, "data": {"drift": {"verdict": "ok", "drifted_features": []}}, "model": {}});
        assert!(alerts(&quiet).is_empty());
    }

    #[test]
    fn picks_the_asked_feature_or_the_most_drifted() {
        let s = json!({"data": {"features": [
            {"name": "a", "drift": {"psi": 0.01}},
            {"name": "b", "drift": {"psi": 0.7}},
            {"name": "c", "drift": {"psi": null}},
        ]}});
        let f: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(pick_feature(&s, Some("c"), &f).as_deref(), Some("c"));
        assert_eq!(pick_feature(&s, Some("zz"), &f).as_deref(), Some("b"));
        assert_eq!(pick_feature(&s, None, &f).as_deref(), Some("b"));
    }

    #[test]
    fn step_is_a_minute_up_to_a_day() {
        assert_eq!(step_for(900), 60);
        assert_eq!(step_for(86_400), 60);
        assert_eq!(step_for(7 * 86_400), 300);
    }
}
