//! Alert rules as data: which value of the monitoring summary to watch, how to compare it, over
//! which window, and how bad it is when the comparison holds.
//!
//! A rule file (`--alert-rules FILE`, `INFERENCE_ALERT_RULES`) is a JSON list of
//!
//! ```json
//! {"id": "error-rate", "title": "Error rate above 5 %", "metric": "system.error_rate",
//!  "op": ">", "threshold": 0.05, "window_minutes": 5, "severity": "critical"}
//! ```
//!
//! `metric` is a dotted path into `GET /v1/monitoring/summary` (an array element is named by its
//! `name` or `class`, e.g. `data.features.mean_radius.drift.psi`); `op` is one of `>`, `>=`, `<`,
//! `<=` (numbers) or `is` (equality, for verdicts); `window_minutes` is 1 to 1440; `severity` is
//! `warning` or `critical`; `title` is optional (default: the id). The file replaces the defaults
//! ([`defaults`]); it is checked at start-up against the summary this model produces, and every
//! problem is reported with the rule and the field.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::card::{ModelCard, Task};

/// Longest window a rule may use, in minutes (the summary keeps 25 hours).
pub const MAX_WINDOW_MINUTES: u64 = 1440;

/// Verdict texts the summary uses (`data.drift.verdict`, `model.score_drift.verdict`, per-feature
/// verdicts, `model.class_drift.verdict`).
pub const VERDICTS: &[&str] = &["ok", "warning", "drift", "insufficient_data"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "is")]
    Is,
}

impl Op {
    pub fn parse(text: &str) -> Option<Op> {
        Some(match text.trim() {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "is" => Op::Is,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Is => "is",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub metric: String,
    pub op: Op,
    /// A number for `>`, `>=`, `<`, `<=`; a string, number or boolean for `is`.
    pub threshold: Value,
    pub window_minutes: u64,
    pub severity: Severity,
}

/// What a rule says about one window's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The condition holds: the rule should be firing.
    Breached,
    /// The condition does not hold: the rule should be ok.
    Clear,
    /// The metric is absent or null, or a verdict is `insufficient_data` (no traffic, no labels
    /// yet): the rule keeps its state.
    NoData,
}

impl Rule {
    /// Compares `value` (the metric in one window's summary; `None` when absent) with the threshold.
    pub fn check(&self, value: Option<&Value>) -> Check {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Check::NoData;
        };
        if value.as_str() == Some("insufficient_data") && self.threshold.is_string() {
            return Check::NoData;
        }
        let holds = match self.op {
            Op::Is => value == &self.threshold,
            op => {
                let (Some(v), Some(t)) = (value.as_f64(), self.threshold.as_f64()) else {
                    return Check::NoData;
                };
                if !v.is_finite() {
                    return Check::NoData;
                }
                match op {
                    Op::Gt => v > t,
                    Op::Ge => v >= t,
                    Op::Lt => v < t,
                    Op::Le => v <= t,
                    Op::Is => unreachable!("handled above"),
                }
            }
        };
        if holds {
            Check::Breached
        } else {
            Check::Clear
        }
    }
}

/// The value at a dotted `path` in a summary: objects by key, arrays by the element whose `name`
/// (a feature) or `class` (a class) is the segment. `None` when the path does not exist.
pub fn lookup<'a>(summary: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(summary, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items
            .iter()
            .find(|item| item["name"] == segment || item["class"] == segment),
        _ => None,
    })
}

/// The default rules for `card`'s model, whose empty-window summary is `probe` (see
/// [`probe_summary`]): the system and drift rules for every task, the anomaly rate for an
/// autoencoder, class drift for a classifier whose card has a predicted-class baseline, a floor
/// under the ground-truth metric the card's holdout measured (recall at the threshold for an
/// autoencoder, accuracy for a classifier, MAE for a regressor), and the host's CPU (the window's
/// mean), memory and disk.
pub fn defaults(card: &ModelCard, probe: &Value) -> Vec<Rule> {
    let task = card.task;
    let rule = |id: &str, title: &str, metric: &str, op, threshold, window, severity| Rule {
        id: id.into(),
        title: title.into(),
        metric: metric.into(),
        op,
        threshold,
        window_minutes: window,
        severity,
    };
    let mut rules = vec![
        rule(
            "error-rate",
            "Error rate above 5 %",
            "system.error_rate",
            Op::Gt,
            json!(0.05),
            5,
            Severity::Critical,
        ),
        rule(
            "latency-p99",
            "Prediction latency p99 above 250 ms",
            "system.predict_latency_seconds.p99",
            Op::Gt,
            json!(0.25),
            5,
            Severity::Warning,
        ),
        rule(
            "overloaded",
            "Requests refused as overloaded (429)",
            "system.overloaded",
            Op::Gt,
            json!(0),
            5,
            Severity::Warning,
        ),
        rule(
            "input-drift",
            "Input drift",
            "data.drift.verdict",
            Op::Is,
            json!("drift"),
            15,
            Severity::Critical,
        ),
        rule(
            "score-drift",
            "Model score drift",
            "model.score_drift.verdict",
            Op::Is,
            json!("drift"),
            15,
            Severity::Warning,
        ),
    ];
    if task == Task::Autoencoder {
        rules.push(rule(
            "anomaly-rate",
            "Anomaly rate above 25 %",
            "model.anomaly_rate",
            Op::Gt,
            json!(0.25),
            15,
            Severity::Warning,
        ));
    }
    if task == Task::Classifier && lookup(probe, "model.class_drift.verdict").is_some() {
        rules.push(rule(
            "class-drift",
            "Predicted-class drift",
            "model.class_drift.verdict",
            Op::Is,
            json!("drift"),
            15,
            Severity::Warning,
        ));
    }
    if let Some(floor) = ground_truth_floor(card).filter(|f| lookup(probe, f.metric).is_some()) {
        rules.push(rule(
            floor.id,
            &floor.title,
            floor.metric,
            floor.op,
            json!(floor.threshold),
            60,
            Severity::Warning,
        ));
    }
    rules.extend([
        rule(
            "host-cpu",
            "Host CPU above 90 % for 10 minutes",
            "system.resources.host_cpu_percent_mean",
            Op::Gt,
            json!(90),
            10,
            Severity::Warning,
        ),
        rule(
            "host-memory",
            "Host memory above 90 % used",
            "system.resources.memory_used_fraction",
            Op::Gt,
            json!(0.9),
            5,
            Severity::Warning,
        ),
        rule(
            "host-disk",
            "State disk above 90 % full",
            "system.resources.disk_used_fraction",
            Op::Gt,
            json!(0.9),
            5,
            Severity::Critical,
        ),
    ]);
    rules
}

/// A default ground-truth rule: its id, title, metric, comparison and threshold.
struct Floor {
    id: &'static str,
    title: String,
    metric: &'static str,
    op: Op,
    threshold: f64,
}

/// The floor under the holdout's ground-truth metric, when the card measured one: recall 0.2 below
/// the holdout's (autoencoder), accuracy 0.1 below (classifier), MAE half as large again
/// (regressor). Wide enough that a window of ordinary labels does not cross it.
fn ground_truth_floor(card: &ModelCard) -> Option<Floor> {
    let eval = card.evaluation.as_ref()?;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let floor = match card.task {
        Task::Autoencoder => {
            let recall = eval.holdout_recall_at_threshold?;
            let t = round((recall - 0.2).max(0.0));
            Floor {
                id: "recall-floor",
                title: format!(
                    "Recall on labelled rows below {t} (holdout {})",
                    round(recall)
                ),
                metric: "model.ground_truth.recall",
                op: Op::Lt,
                threshold: t,
            }
        }
        Task::Classifier => {
            let accuracy = eval.holdout_accuracy?;
            let t = round((accuracy - 0.1).max(0.0));
            Floor {
                id: "accuracy-floor",
                title: format!(
                    "Accuracy on labelled rows below {t} (holdout {})",
                    round(accuracy)
                ),
                metric: "model.ground_truth.accuracy",
                op: Op::Lt,
                threshold: t,
            }
        }
        Task::Regressor => {
            let mae = eval.holdout_mae?;
            // Four significant digits, whatever the target's scale.
            let scale = 10f64.powi(3 - mae.abs().log10().floor() as i32);
            let t = (mae * 1.5 * scale).round() / scale;
            Floor {
                id: "mae-ceiling",
                title: format!("MAE on labelled rows above {t} (holdout {mae:.4})"),
                metric: "model.ground_truth.mae",
                op: Op::Gt,
                threshold: t,
            }
        }
    };
    (floor.threshold.is_finite() && floor.threshold > 0.0).then_some(floor)
}

/// The summary of an empty window with a system sample, so that every path a live summary can
/// have is present (values are null where no data makes them so).
pub fn probe_summary(monitor: &crate::monitor::Monitor) -> Value {
    let now = crate::monitor::now_secs();
    let mut bucket = monitor.layout.empty_bucket(now / 60);
    bucket.system = Some(crate::monitor::system::SystemSample::default());
    crate::monitor::summary::summarize(&monitor.view(), &bucket, 0, 60, now)
}

/// The first rule whose id (trimmed) an earlier rule already has, as the error to report.
pub fn duplicate_id(items: &[Value]) -> Option<String> {
    let mut seen = HashSet::new();
    items.iter().enumerate().find_map(|(i, item)| {
        let id = item.get("id")?.as_str()?.trim();
        (!id.is_empty() && !seen.insert(id)).then(|| {
            format!(
                "rule {} ({id:?}), field \"id\": duplicate id; every rule needs its own",
                i + 1
            )
        })
    })
}

/// Most rules in one list.
pub const MAX_RULES: usize = 100;

/// The metrics a rule can watch in a summary shaped like `probe`, by what they can be compared
/// with: numbers (and values null in an empty window) for `>`, `>=`, `<`, `<=`; verdicts for
/// `is` with one of [`VERDICTS`]; everything that is not a verdict for `is` with any threshold.
#[derive(Debug, Default, PartialEq)]
pub struct MetricPaths {
    pub numeric: Vec<String>,
    pub verdicts: Vec<String>,
    pub other: Vec<String>,
}

pub fn metric_paths(probe: &Value) -> MetricPaths {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut MetricPaths) {
        let name = || path.join(".");
        match v {
            Value::Object(map) => {
                for (k, child) in map
                    .iter()
                    .filter(|(k, _)| !k.is_empty() && !k.contains('.'))
                {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for item in items {
                    // Elements named by `name` or `class` (what `lookup` finds); the first of a
                    // name wins, as in `lookup`.
                    let Some(key) = item["name"].as_str().or(item["class"].as_str()) else {
                        continue;
                    };
                    let seen = items
                        .iter()
                        .position(|i| i["name"] == key || i["class"] == key);
                    if seen.map(|at| std::ptr::eq(&items[at], item)) != Some(true)
                        || key.contains('.')
                    {
                        continue;
                    }
                    path.push(key.to_string());
                    walk(item, path, out);
                    path.pop();
                }
            }
            Value::Null => {
                out.numeric.push(name());
                out.other.push(name());
            }
            Value::Number(_) => {
                out.numeric.push(name());
                out.other.push(name());
            }
            Value::String(_) if path.last().is_some_and(|l| l.ends_with("verdict")) => {
                out.verdicts.push(name())
            }
            Value::String(_) | Value::Bool(_) => out.other.push(name()),
        }
    }
    let mut out = MetricPaths::default();
    walk(probe, &mut Vec::new(), &mut out);
    out
}

/// Reads and checks a rule file against `probe`.
pub fn load(path: &Path, probe: &Value) -> Result<Vec<Rule>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the alert rules file {}: {e}", path.display()))?;
    parse(&text, probe).map_err(|e| format!("alert rules file {}: {e}", path.display()))
}

/// Parses and checks a JSON list of rules against `probe` (the summary's shape for this model).
pub fn parse(text: &str, probe: &Value) -> Result<Vec<Rule>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("must be a JSON list of rules ([{\"id\": ..., ...}, ...])".into());
    };
    if items.len() > MAX_RULES {
        return Err(format!(
            "{} rules is more than the {MAX_RULES} a service evaluates",
            items.len()
        ));
    }
    if let Some(e) = duplicate_id(&items) {
        return Err(e);
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let rule = parse_rule(item, probe).map_err(|(field, problem)| {
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty());
            let name = match id {
                Some(id) => format!("rule {} ({id:?})", i + 1),
                None => format!("rule {}", i + 1),
            };
            format!("{name}, field {field:?}: {problem}")
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

const FIELDS: &[&str] = &[
    "id",
    "title",
    "metric",
    "op",
    "threshold",
    "window_minutes",
    "severity",
];

fn parse_rule(item: &Value, probe: &Value) -> Result<Rule, (&'static str, String)> {
    let Value::Object(map) = item else {
        return Err(("id", "a rule must be a JSON object".into()));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err((
            "id",
            format!(
                "unknown field {unknown:?}; a rule has {}",
                FIELDS.join(", ")
            ),
        ));
    }
    let text = |field: &'static str| -> Result<String, (&'static str, String)> {
        match map.get(field) {
            None | Some(Value::Null) => Err((field, "missing".into())),
            Some(Value::String(s)) if s.trim().is_empty() => Err((field, "is empty".into())),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err((field, format!("must be a string, not {other}"))),
        }
    };
    let id = text("id")?;
    if id.chars().count() > 100 {
        return Err(("id", "is longer than 100 characters".into()));
    }
    let title = match map.get("title") {
        None | Some(Value::Null) => id.clone(),
        Some(_) => text("title")?,
    };
    let op_text = text("op")?;
    let op = Op::parse(&op_text).ok_or((
        "op",
        format!("unknown operator {op_text:?}; use one of >, >=, <, <=, is"),
    ))?;
    let threshold = match (map.get("threshold"), op) {
        (None | Some(Value::Null), _) => return Err(("threshold", "missing".into())),
        (Some(t), Op::Is) if t.is_string() || t.is_number() || t.is_boolean() => t.clone(),
        (Some(t), Op::Is) => {
            return Err((
                "threshold",
                format!("must be a string, number or boolean for \"is\", not {t}"),
            ))
        }
        (Some(t), _) if t.as_f64().is_some_and(f64::is_finite) => t.clone(),
        (Some(t), op) => {
            return Err((
                "threshold",
                format!(
                    "must be a number for {:?}, not {t} (compare text with \"is\")",
                    op.as_str()
                ),
            ))
        }
    };
    let window_minutes = match map.get("window_minutes") {
        None | Some(Value::Null) => return Err(("window_minutes", "missing".into())),
        // A whole number, also when written 10.0 (JSON Schema's integers include it).
        Some(w) => match w.as_u64().or_else(|| {
            w.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 1e6)
                .map(|f| f as u64)
        }) {
            Some(n) if (1..=MAX_WINDOW_MINUTES).contains(&n) => n,
            _ => {
                return Err((
                    "window_minutes",
                    format!(
                        "must be a whole number of minutes from 1 to {MAX_WINDOW_MINUTES}, not {w}"
                    ),
                ))
            }
        },
    };
    let severity = match text("severity")?.as_str() {
        "warning" => Severity::Warning,
        "critical" => Severity::Critical,
        other => {
            return Err((
                "severity",
                format!("unknown severity {other:?}; use warning or critical"),
            ))
        }
    };
    let metric = text("metric")?;
    check_metric(&metric, op, &threshold, probe).map_err(|e| ("metric", e))?;
    Ok(Rule {
        id,
        title,
        metric,
        op,
        threshold,
        window_minutes,
        severity,
    })
}

/// Whether the summary has `metric` as a single value this `op` can compare.
fn check_metric(metric: &str, op: Op, threshold: &Value, probe: &Value) -> Result<(), String> {
    let mut at = probe;
    let mut walked = Vec::new();
    for segment in metric.split('.') {
        let next = match at {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => items
                .iter()
                .find(|item| item["name"] == segment || item["class"] == segment),
            _ => None,
        };
        let Some(next) = next else {
            let parent = if walked.is_empty() {
                "the summary".to_string()
            } else {
                walked.join(".")
            };
            let choices: Vec<String> = match at {
                Value::Object(map) => map.keys().cloned().collect(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i["name"].as_str().or(i["class"].as_str()))
                    .map(str::to_string)
                    .collect(),
                Value::Null => {
                    return Err(format!(
                        "{metric:?} is not in this model's monitoring summary: {parent} is always null for it"
                    ))
                }
                _ => Vec::new(),
            };
            return Err(format!(
                "{metric:?} is not in this model's monitoring summary: {parent} has no {segment:?}{}",
                if choices.is_empty() {
                    String::new()
                } else {
                    format!(" (it has {})", choices.join(", "))
                }
            ));
        };
        walked.push(segment);
        at = next;
    }
    match (at, op) {
        (Value::Object(_) | Value::Array(_), _) => Err(format!(
            "{metric:?} is a group of values in the summary, not one value; name one inside it"
        )),
        (Value::String(_), Op::Is) if metric.ends_with("verdict") => match threshold.as_str() {
            Some(t) if VERDICTS.contains(&t) => Ok(()),
            _ => Err(format!(
                "{metric:?} is a verdict; compare it with one of {} (threshold {threshold})",
                VERDICTS.join(", ")
            )),
        },
        (Value::String(_) | Value::Bool(_), op) if op != Op::Is => Err(format!(
            "{metric:?} is not a number; compare it with \"is\""
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::card::ModelCard;
    use crate::monitor::Monitor;

    fn card() -> ModelCard {
        ModelCard::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/model/wbc-autoencoder"
        )))
        .unwrap()
    }

    fn probe() -> Value {
        probe_summary(&Monitor::new(Arc::new(card()), None))
    }

    fn one(fields: Value) -> String {
        let text = serde_json::to_string(&json!([fields])).unwrap();
        parse(&text, &probe()).unwrap_err()
    }

    fn good() -> Value {
        json!({"id": "errors", "title": "Errors", "metric": "system.error_rate", "op": ">",
               "threshold": 0.05, "window_minutes": 5, "severity": "critical"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut g = good();
        g[key] = value;
        g
    }

    #[test]
    fn a_good_rule_parses_and_title_defaults_to_id() {
        let mut g = good();
        g.as_object_mut().unwrap().remove("title");
        let rules = parse(&json!([g]).to_string(), &probe()).unwrap();
        assert_eq!(rules[0].title, "errors");
        assert_eq!(rules[0].op, Op::Gt);
        assert_eq!(rules[0].severity, Severity::Critical);
        assert!(parse("[]", &probe()).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_rule_and_the_field() {
        let e = one(with("op", json!("=>")));
        assert!(
            e.contains("rule 1 (\"errors\")") && e.contains("field \"op\""),
            "{e}"
        );
        assert!(e.contains("unknown operator \"=>\""), "{e}");

        for w in [json!(0), json!(1441), json!(2.5), json!("5")] {
            let e = one(with("window_minutes", w));
            assert!(
                e.contains("field \"window_minutes\"") && e.contains("1 to 1440"),
                "{e}"
            );
        }
        let e = one(with("id", json!("  ")));
        assert!(e.starts_with("rule 1, field \"id\": is empty"), "{e}");
        let e = one(with("severity", json!("page")));
        assert!(
            e.contains("field \"severity\"") && e.contains("\"page\""),
            "{e}"
        );
        let e = one(with("threshold", json!("high")));
        assert!(
            e.contains("field \"threshold\"") && e.contains("number"),
            "{e}"
        );
        let e = one(with("metric", json!("system.error_rat")));
        assert!(e.contains("field \"metric\""), "{e}");
        assert!(
            e.contains("system has no \"error_rat\"") && e.contains("error_rate"),
            "{e}"
        );
        let e = one(with("metric", json!("model.class_drift.verdict")));
        assert!(e.contains("always null"), "{e}");
        let e = one(with("metric", json!("system.predict_latency_seconds")));
        assert!(e.contains("group of values"), "{e}");
        let e = one(with("windows_minutes", json!(5)));
        assert!(e.contains("unknown field \"windows_minutes\""), "{e}");
        let e = one(
            json!({"id": "v", "metric": "data.drift.verdict", "op": "is",
                           "threshold": "drifted", "window_minutes": 15, "severity": "warning"}),
        );
        assert!(e.contains("is a verdict") && e.contains("drift"), "{e}");
        let e = one(json!({"id": "v", "metric": "data.drift.verdict", "op": ">",
                           "threshold": 1, "window_minutes": 15, "severity": "warning"}));
        assert!(e.contains("not a number"), "{e}");

        let e = parse(&json!([good(), good()]).to_string(), &probe()).unwrap_err();
        assert!(
            e.contains("rule 2 (\"errors\")") && e.contains("duplicate id"),
            "{e}"
        );
        assert!(parse("{}", &probe()).unwrap_err().contains("JSON list"));
        assert!(parse("[", &probe()).unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn paths_reach_features_resources_and_ground_truth() {
        let p = probe();
        for metric in [
            "data.features.mean_radius.drift.psi",
            "system.resources.process_rss_bytes",
            "model.ground_truth.f1",
            "model.anomaly_rate",
            "system.overloaded",
        ] {
            let r = parse(&json!([with("metric", json!(metric))]).to_string(), &p);
            assert!(r.is_ok(), "{metric}: {r:?}");
        }
    }

    #[test]
    fn defaults_suit_the_task_and_pass_validation() {
        let p = probe();
        let card = card();
        let rules = defaults(&card, &p);
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "error-rate",
                "latency-p99",
                "overloaded",
                "input-drift",
                "score-drift",
                "anomaly-rate",
                "recall-floor",
                "host-cpu",
                "host-memory",
                "host-disk"
            ]
        );
        // The recall floor sits 0.2 under the holdout's recall at the threshold.
        let recall = card
            .evaluation
            .as_ref()
            .unwrap()
            .holdout_recall_at_threshold
            .unwrap();
        let floor = &rules[6];
        assert_eq!(floor.op, Op::Lt);
        assert!(
            (floor.threshold.as_f64().unwrap() - (recall - 0.2)).abs() < 1e-3,
            "{floor:?}"
        );
        // The defaults as a file are accepted as they are.
        let text = serde_json::to_string(&rules).unwrap();
        assert_eq!(parse(&text, &p).unwrap(), rules);

        // A card without a holdout has no ground-truth rule; other tasks get their own metric.
        let mut bare = card.clone();
        bare.evaluation = None;
        assert!(!defaults(&bare, &p).iter().any(|r| r.id == "recall-floor"));
        let mut regressor = card.clone();
        regressor.task = Task::Regressor;
        regressor.evaluation = Some(crate::card::Evaluation {
            holdout_mae: Some(0.012345),
            ..Default::default()
        });
        let floor = ground_truth_floor(&regressor).unwrap();
        assert_eq!(
            (floor.id, floor.op, floor.threshold),
            ("mae-ceiling", Op::Gt, 0.01852)
        );
        let mut classifier = card.clone();
        classifier.task = Task::Classifier;
        classifier.evaluation = Some(crate::card::Evaluation {
            holdout_accuracy: Some(0.9561),
            ..Default::default()
        });
        let floor = ground_truth_floor(&classifier).unwrap();
        assert_eq!((floor.id, floor.threshold), ("accuracy-floor", 0.856));
        assert!(!defaults(&regressor, &p)
            .iter()
            .any(|r| r.id == "anomaly-rate" || r.id == "class-drift"));
    }

    #[test]
    fn checks_compare_and_treat_null_and_insufficient_data_as_no_data() {
        let r = parse(&json!([good()]).to_string(), &probe())
            .unwrap()
            .remove(0);
        assert_eq!(r.check(Some(&json!(0.5))), Check::Breached);
        assert_eq!(r.check(Some(&json!(0.05))), Check::Clear);
        assert_eq!(r.check(Some(&Value::Null)), Check::NoData);
        assert_eq!(r.check(None), Check::NoData);
        let v = &defaults(&card(), &probe())[3];
        assert_eq!(v.check(Some(&json!("drift"))), Check::Breached);
        assert_eq!(v.check(Some(&json!("warning"))), Check::Clear);
        assert_eq!(v.check(Some(&json!("insufficient_data"))), Check::NoData);
    }

    #[test]
    fn lookup_walks_objects_and_named_array_elements() {
        let s = json!({"a": {"b": [{"name": "x", "v": 1}, {"class": "y", "v": 2}]}});
        assert_eq!(lookup(&s, "a.b.x.v"), Some(&json!(1)));
        assert_eq!(lookup(&s, "a.b.y.v"), Some(&json!(2)));
        assert_eq!(lookup(&s, "a.b.z.v"), None);
        assert_eq!(lookup(&s, "a.c"), None);
    }

    /// The paths the published schema offers are exactly what the parser accepts: every numeric
    /// path with `>`, every verdict with `is "drift"`, every other value with `is`.
    #[test]
    fn every_offered_metric_is_accepted_with_its_operators() {
        let probe = probe();
        let paths = metric_paths(&probe);
        assert!(paths.numeric.contains(&"system.error_rate".to_string()));
        assert!(paths
            .numeric
            .contains(&"data.features.mean_radius.drift.psi".to_string()));
        assert!(paths.verdicts.contains(&"data.drift.verdict".to_string()));
        assert!(paths.other.contains(&"model.task".to_string()));
        assert!(paths.numeric.len() > 50, "{}", paths.numeric.len());
        let try_rule = |metric: &str, op: &str, threshold: Value| {
            let rule = json!([{"id": "r", "metric": metric, "op": op, "threshold": threshold,
                               "window_minutes": 5, "severity": "warning"}]);
            parse(&rule.to_string(), &probe)
        };
        for m in &paths.numeric {
            try_rule(m, ">", json!(1.5)).unwrap();
        }
        for m in &paths.verdicts {
            try_rule(m, "is", json!("drift")).unwrap();
            assert!(try_rule(m, ">", json!(1)).is_err(), "{m}");
            assert!(try_rule(m, "is", json!("maybe")).is_err(), "{m}");
        }
        for m in &paths.other {
            try_rule(m, "is", json!(true)).unwrap();
        }
        let too_many: Vec<Value> = (0..=MAX_RULES)
            .map(|i| {
                json!({"id": format!("r{i}"), "metric": "system.error_rate", "op": ">",
                            "threshold": 1, "window_minutes": 5, "severity": "warning"})
            })
            .collect();
        let err = parse(&Value::from(too_many).to_string(), &probe).unwrap_err();
        assert!(err.contains("more than the 100"), "{err}");
    }
}
