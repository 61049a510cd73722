//! Turns the plan, the model's features and the data into a deterministic sequence of predict
//! requests: the same seed and settings always give the same bodies, whatever the service answers.

use serde::Serialize;
use serde_json::{json, Map, Number, Value};

use crate::config::{Plan, RowFormat};
use crate::data::Dataset;
use crate::error::ReplayError;
use crate::model::MissingPolicy;
use crate::model::ModelInfo;
use crate::rng::Rng;

/// The kinds of malformed request the garbage scenario sends, in the order it cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GarbageKind {
    /// A number sent as a string (`"12.5"`).
    QuotedNumber,
    /// The string `"NaN"`.
    NanString,
    /// The string `"Infinity"`.
    InfinityString,
    /// A row one value short.
    ShortRow,
    /// A row one value long.
    LongRow,
    /// An object row with a key that is not a feature.
    UnknownFeature,
    /// An object row lacking one feature.
    MissingFeature,
    /// A value no 32-bit float can hold (1e39).
    OutOfFloatRange,
    /// A row that is a bare number.
    RowNotArray,
    /// `{"rows": []}`.
    EmptyRows,
    /// `{"data": [...]}` instead of `{"rows": [...]}`.
    WrongShape,
    /// A body cut off in the middle.
    InvalidJson,
    /// The rows as CSV text, declared `text/csv`.
    WrongContentType,
    /// A JSON body without a Content-Type.
    NoContentType,
}

impl GarbageKind {
    pub const ALL: [GarbageKind; 14] = [
        GarbageKind::QuotedNumber,
        GarbageKind::NanString,
        GarbageKind::InfinityString,
        GarbageKind::ShortRow,
        GarbageKind::LongRow,
        GarbageKind::UnknownFeature,
        GarbageKind::MissingFeature,
        GarbageKind::OutOfFloatRange,
        GarbageKind::RowNotArray,
        GarbageKind::EmptyRows,
        GarbageKind::WrongShape,
        GarbageKind::InvalidJson,
        GarbageKind::WrongContentType,
        GarbageKind::NoContentType,
    ];

    /// The status the inference service answers (any 4xx counts as the expected rejection).
    pub fn expected_status(self) -> u16 {
        match self {
            GarbageKind::EmptyRows | GarbageKind::InvalidJson => 400,
            GarbageKind::WrongContentType | GarbageKind::NoContentType => 415,
            _ => 422,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "garbage")]
pub enum RequestKind {
    /// Well-formed rows (possibly drifted, possibly with nulls).
    Rows,
    Garbage(GarbageKind),
}

/// Where a sent row came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowMeta {
    /// The true label: 0 = normal, 1 = anomaly.
    pub label: u8,
    /// A classifier's or regressor's truth (the class, or the value), sent as feedback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<Value>,
    /// `file.csv:line`.
    pub source: String,
}

/// What the service should answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// 200 with one result per row.
    Scored,
    /// 200 with a result for every other row and an error for each of these (per-row policy).
    ScoredExcept(Vec<usize>),
    /// 422 naming one of these (row, feature) cells, which were sent as null.
    NullRejected(Vec<(usize, String)>),
    /// Any 4xx.
    ClientError,
}

#[derive(Debug, Clone)]
pub struct PlannedRequest {
    /// 0-based position in the replay.
    pub seq: u64,
    pub kind: RequestKind,
    /// `None` sends no Content-Type header.
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    /// One per row for [`RequestKind::Rows`]; empty for garbage.
    pub rows: Vec<RowMeta>,
    /// Cells sent as null: (row, feature name).
    pub nulls: Vec<(usize, String)>,
}

impl PlannedRequest {
    /// What a service refusing every null (the default policy) answers.
    pub fn expect(&self) -> Expect {
        self.expect_with(MissingPolicy::Reject)
    }

    /// What the service answers under the model's missing-value policy.
    pub fn expect_with(&self, policy: MissingPolicy) -> Expect {
        match (self.kind, policy) {
            (RequestKind::Garbage(_), _) => Expect::ClientError,
            (RequestKind::Rows, _) if self.nulls.is_empty() => Expect::Scored,
            (RequestKind::Rows, MissingPolicy::Reject) => Expect::NullRejected(self.nulls.clone()),
            (RequestKind::Rows, MissingPolicy::Impute) => Expect::Scored,
            (RequestKind::Rows, MissingPolicy::PerRow) => {
                let mut rows: Vec<usize> = self.nulls.iter().map(|(r, _)| *r).collect();
                rows.dedup();
                Expect::ScoredExcept(rows)
            }
        }
    }
}

/// A feature the drift scenario shifts, and by how much.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftShift {
    pub feature: String,
    /// Position in the model's input.
    pub index: usize,
    /// The card's training mean and standard deviation.
    pub mean: f64,
    pub std: f64,
    /// Added to every sent value: k × std.
    pub shift: f64,
}

pub struct Generator {
    rng: Rng,
    plan: Plan,
    names: Vec<String>,
    data: Dataset,
    drift: Vec<DriftShift>,
    next_seq: u64,
    garbage_sent: usize,
}

impl Generator {
    /// `drift_features` empty = the card's first three features; `["all"]` = every feature.
    pub fn new(
        plan: Plan,
        model: &ModelInfo,
        data: Dataset,
        drift_features: &[String],
        seed: u64,
    ) -> Result<Generator, ReplayError> {
        let names: Vec<String> = model.features.iter().map(|f| f.name.clone()).collect();
        let mut drift = Vec::new();
        if plan.drift {
            let chosen: Vec<String> = if drift_features.is_empty() {
                names.iter().take(3).cloned().collect()
            } else if drift_features.len() == 1 && drift_features[0].trim() == "all" {
                names.clone()
            } else {
                drift_features
                    .iter()
                    .map(|s| s.trim().to_string())
                    .collect()
            };
            for name in chosen {
                let index = names.iter().position(|n| *n == name).ok_or_else(|| {
                    ReplayError::config(format!(
                        "--drift-features names {name:?}, which is not a feature of this model; choose from {}",
                        names.join(",")
                    ))
                })?;
                if drift.iter().any(|d: &DriftShift| d.index == index) {
                    continue;
                }
                let f = &model.features[index];
                drift.push(DriftShift {
                    feature: name,
                    index,
                    mean: f.mean,
                    std: f.std,
                    shift: plan.drift_k * f.std,
                });
            }
        }
        let files = data
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if plan.anomaly_fraction > 0.0 && model.task != crate::model::Task::Autoencoder {
            return Err(ReplayError::config(
                "the anomalies scenario sends rows labelled as anomalies, which only an autoencoder's data has; this model is a classifier or a regressor: use normal, drift, missing, garbage and feedback".to_string(),
            ));
        }
        if plan.anomaly_fraction > 0.0 && data.anomalous.is_empty() {
            return Err(ReplayError::Data(format!(
                "the anomalies scenario needs rows labelled 1, and {files} has none; pass a labelled CSV with --data (and --label-column if the label is not in \"label\")"
            )));
        }
        if plan.anomaly_fraction < 1.0 && data.normal.is_empty() {
            return Err(ReplayError::Data(format!(
                "{files} has no normal rows (label 0) to send; pass a CSV with normal rows with --data, or use only --scenario anomalies"
            )));
        }
        Ok(Generator {
            rng: Rng::seed_from_u64(seed),
            plan,
            names,
            data,
            drift,
            next_seq: 0,
            garbage_sent: 0,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn drift(&self) -> &[DriftShift] {
        &self.drift
    }

    pub fn data(&self) -> &Dataset {
        &self.data
    }

    /// The next request of the replay.
    pub fn next_request(&mut self) -> PlannedRequest {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.rng.chance(self.plan.garbage_fraction) {
            let kind = GarbageKind::ALL[self.garbage_sent % GarbageKind::ALL.len()];
            self.garbage_sent += 1;
            return self.garbage(seq, kind);
        }
        let with_missing = self.rng.chance(self.plan.missing_requests);
        let mut table = Vec::with_capacity(self.plan.batch);
        let mut metas = Vec::with_capacity(self.plan.batch);
        let mut nulls = Vec::new();
        for i in 0..self.plan.batch {
            let (values, meta) = self.draw_row();
            let mut cells: Vec<Value> = values.iter().map(|&v| number(v)).collect();
            if with_missing {
                for (j, cell) in cells.iter_mut().enumerate() {
                    if self.rng.chance(self.plan.missing_fraction) {
                        *cell = Value::Null;
                        nulls.push((i, self.names[j].clone()));
                    }
                }
            }
            table.push(cells);
            metas.push(meta);
        }
        if with_missing && nulls.is_empty() {
            // A request chosen for missing values has at least one.
            let (i, j) = (
                self.rng.below(table.len()),
                self.rng.below(self.names.len()),
            );
            table[i][j] = Value::Null;
            nulls.push((i, self.names[j].clone()));
        }
        let rows: Vec<Value> = table
            .into_iter()
            .map(|cells| self.encode_row(cells))
            .collect();
        PlannedRequest {
            seq,
            kind: RequestKind::Rows,
            content_type: Some("application/json"),
            body: serde_json::to_vec(&json!({ "rows": rows })).expect("serializable"),
            rows: metas,
            nulls,
        }
    }

    /// One row drawn from the data (anomalous with the plan's probability), drift applied.
    fn draw_row(&mut self) -> (Vec<f64>, RowMeta) {
        let anomalous = self.rng.chance(self.plan.anomaly_fraction);
        let pool = if anomalous {
            &self.data.anomalous
        } else {
            &self.data.normal
        };
        let source = &pool[self.rng.below(pool.len())];
        let mut values = source.values.clone();
        for d in &self.drift {
            values[d.index] += d.shift;
        }
        let meta = RowMeta {
            label: source.label,
            truth: source.truth.clone(),
            source: source.origin.clone(),
        };
        (values, meta)
    }

    fn encode_row(&self, cells: Vec<Value>) -> Value {
        match self.plan.row_format {
            RowFormat::Array => Value::Array(cells),
            RowFormat::Object => Value::Object(named(&self.names, cells)),
        }
    }

    fn garbage(&mut self, seq: u64, kind: GarbageKind) -> PlannedRequest {
        let (values, _) = self.draw_row();
        let width = values.len();
        let at = self.rng.below(width);
        let mut cells: Vec<Value> = values.iter().map(|&v| number(v)).collect();
        let rows_body =
            |rows: Value| serde_json::to_vec(&json!({ "rows": [rows] })).expect("serializable");
        let mut content_type = Some("application/json");
        let body = match kind {
            GarbageKind::QuotedNumber => {
                cells[at] = Value::String(values[at].to_string());
                rows_body(Value::Array(cells))
            }
            GarbageKind::NanString => {
                cells[at] = json!("NaN");
                rows_body(Value::Array(cells))
            }
            GarbageKind::InfinityString => {
                cells[at] = json!("Infinity");
                rows_body(Value::Array(cells))
            }
            GarbageKind::ShortRow => {
                cells.pop();
                rows_body(Value::Array(cells))
            }
            GarbageKind::LongRow => {
                cells.push(cells[at].clone());
                rows_body(Value::Array(cells))
            }
            GarbageKind::UnknownFeature => {
                let mut row = named(&self.names, cells);
                row.insert("not_a_feature".into(), json!(1.0));
                rows_body(Value::Object(row))
            }
            GarbageKind::MissingFeature => {
                let mut row = named(&self.names, cells);
                row.remove(&self.names[at]);
                rows_body(Value::Object(row))
            }
            GarbageKind::OutOfFloatRange => {
                cells[at] = json!(1e39);
                rows_body(Value::Array(cells))
            }
            GarbageKind::RowNotArray => rows_body(cells[at].clone()),
            GarbageKind::EmptyRows => b"{\"rows\": []}".to_vec(),
            GarbageKind::WrongShape => {
                serde_json::to_vec(&json!({ "data": [cells] })).expect("serializable")
            }
            GarbageKind::InvalidJson => {
                let mut body = rows_body(Value::Array(cells));
                body.truncate(body.len() / 2);
                body
            }
            GarbageKind::WrongContentType => {
                content_type = Some("text/csv");
                let values: Vec<String> = values.iter().map(f64::to_string).collect();
                format!("{}\n{}\n", self.names.join(","), values.join(",")).into_bytes()
            }
            GarbageKind::NoContentType => {
                content_type = None;
                rows_body(Value::Array(cells))
            }
        };
        PlannedRequest {
            seq,
            kind: RequestKind::Garbage(kind),
            content_type,
            body,
            rows: Vec::new(),
            nulls: Vec::new(),
        }
    }
}

fn number(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn named(names: &[String], cells: Vec<Value>) -> Map<String, Value> {
    names.iter().cloned().zip(cells).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ReplayConfig, Scenario};
    use crate::model::ModelInfo;

    fn bundled() -> (ModelInfo, Dataset) {
        let dir = crate::bundled_model_dir();
        let model = ModelInfo::from_model_dir(&dir).unwrap();
        let data = Dataset::load(&dir, &model.features, "label").unwrap();
        (model, data)
    }

    fn generator(cfg: ReplayConfig) -> Generator {
        let (model, data) = bundled();
        let plan = cfg.plan().unwrap();
        Generator::new(plan, &model, data, &cfg.drift_features, cfg.seed).unwrap()
    }

    fn config(scenarios: &[Scenario], seed: u64) -> ReplayConfig {
        ReplayConfig {
            scenarios: scenarios.to_vec(),
            requests: Some(10),
            seed,
            ..ReplayConfig::default()
        }
    }

    fn bodies(g: &mut Generator, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| g.next_request().body).collect()
    }

    fn rows_of(req: &PlannedRequest) -> Vec<Vec<Value>> {
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().clone())
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_requests() {
        use Scenario::*;
        let all = [Normal, Drift, Anomalies, Missing, Garbage];
        let a = bodies(&mut generator(config(&all, 42)), 40);
        let b = bodies(&mut generator(config(&all, 42)), 40);
        let c = bodies(&mut generator(config(&all, 43)), 40);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn normal_rows_are_unchanged_normal_rows() {
        let mut g = generator(config(&[Scenario::Normal], 5));
        let (_, data) = bundled();
        let req = g.next_request();
        assert_eq!(req.expect(), Expect::Scored);
        assert_eq!(req.rows.len(), 8);
        for (row, meta) in rows_of(&req).iter().zip(&req.rows) {
            assert_eq!(meta.label, 0);
            assert!(!meta.source.starts_with("reference"));
            let source = data.find(&meta.source).unwrap();
            let sent: Vec<f64> = row.iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(sent, source.values);
        }
    }

    #[test]
    fn drift_of_all_features_shifts_every_one() {
        let (model, _) = bundled();
        let mut cfg = config(&[Scenario::Drift], 9);
        cfg.drift_features = vec!["all".into()];
        let g = generator(cfg);
        let chosen: Vec<usize> = g.drift().iter().map(|d| d.index).collect();
        assert_eq!(chosen, (0..model.features.len()).collect::<Vec<_>>());
    }

    #[test]
    fn drift_shifts_exactly_k_std_on_the_chosen_features_only() {
        let (model, data) = bundled();
        let mut cfg = config(&[Scenario::Drift], 9);
        cfg.drift_features = vec!["mean_texture".into(), "worst_area".into()];
        cfg.drift_k = 2.5;
        let mut g = generator(cfg);
        let chosen: Vec<usize> = g.drift().iter().map(|d| d.index).collect();
        assert_eq!(chosen, vec![1, 23]);
        for _ in 0..5 {
            let req = g.next_request();
            for (row, meta) in rows_of(&req).iter().zip(&req.rows) {
                let source = data.find(&meta.source).unwrap();
                for (j, f) in model.features.iter().enumerate() {
                    let sent = row[j].as_f64().unwrap();
                    let expected_shift = if chosen.contains(&j) {
                        2.5 * f.std
                    } else {
                        0.0
                    };
                    let shift = sent - source.values[j];
                    assert!(
                        (shift - expected_shift).abs() <= 1e-9 * sent.abs().max(1.0),
                        "{}: sent {sent}, source {}, shift {shift}, want {expected_shift}",
                        f.name,
                        source.values[j]
                    );
                }
            }
        }
        // Default: the card's first three features, k = 1.5.
        let g = generator(config(&[Scenario::Drift], 9));
        let d: Vec<(&str, f64)> = g
            .drift()
            .iter()
            .map(|d| (d.feature.as_str(), d.shift))
            .collect();
        assert_eq!(d.len(), 3);
        for (i, (name, shift)) in d.into_iter().enumerate() {
            assert_eq!(name, model.features[i].name);
            assert_eq!(shift, 1.5 * model.features[i].std);
        }
    }

    #[test]
    fn an_unknown_drift_feature_is_refused_with_the_valid_names() {
        let (model, data) = bundled();
        let cfg = config(&[Scenario::Drift], 1);
        let e = Generator::new(cfg.plan().unwrap(), &model, data, &["radius".into()], 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"radius\"") && e.contains("mean_radius"), "{e}");
    }

    #[test]
    fn anomaly_fraction_sets_the_share_of_anomalous_rows() {
        let mut g = generator(config(&[Scenario::Anomalies], 2));
        let labels: Vec<u8> = (0..10)
            .flat_map(|_| g.next_request().rows)
            .map(|m| m.label)
            .collect();
        assert!(labels.iter().all(|&l| l == 1));
        let mut g = generator(config(&[Scenario::Normal, Scenario::Anomalies], 2));
        let labels: Vec<u8> = (0..100)
            .flat_map(|_| g.next_request().rows)
            .map(|m| m.label)
            .collect();
        let share = labels.iter().filter(|&&l| l == 1).count() as f64 / labels.len() as f64;
        assert!((0.15..0.25).contains(&share), "{share}");
    }

    #[test]
    fn missing_cells_are_null_and_listed() {
        let mut cfg = config(&[Scenario::Missing], 4);
        cfg.missing_fraction = 0.1;
        let mut g = generator(cfg);
        let (model, _) = bundled();
        let mut total = 0;
        for _ in 0..20 {
            let req = g.next_request();
            assert!(
                !req.nulls.is_empty(),
                "missing alone: every request has a null"
            );
            let rows = rows_of(&req);
            let nulls: Vec<(usize, String)> = rows
                .iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    r.iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_null())
                        .map(move |(j, _)| (i, j))
                })
                .map(|(i, j)| (i, model.features[j].name.clone()))
                .collect();
            assert_eq!(nulls, req.nulls);
            total += nulls.len();
        }
        let share = total as f64 / (20.0 * 8.0 * 30.0);
        assert!((0.07..0.13).contains(&share), "{share}");
    }

    #[test]
    fn combined_with_normal_traffic_some_requests_carry_nulls() {
        let mut g = generator(config(&[Scenario::Normal, Scenario::Missing], 4));
        let with_nulls = (0..200)
            .filter(|_| !g.next_request().nulls.is_empty())
            .count();
        assert!((25..55).contains(&with_nulls), "{with_nulls} of 200");
        // However few cells the fraction hits, a request chosen for missing values has one.
        let mut cfg = config(&[Scenario::Missing], 4);
        cfg.missing_fraction = 0.0001;
        let mut g = generator(cfg);
        assert!((0..20).all(|_| g.next_request().nulls.len() == 1));
    }

    #[test]
    fn garbage_cycles_through_every_kind() {
        let mut g = generator(config(&[Scenario::Garbage], 3));
        let reqs: Vec<PlannedRequest> = (0..GarbageKind::ALL.len())
            .map(|_| g.next_request())
            .collect();
        let kinds: Vec<RequestKind> = reqs.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, GarbageKind::ALL.map(RequestKind::Garbage).to_vec());
        for r in &reqs {
            assert_eq!(r.expect(), Expect::ClientError);
            let RequestKind::Garbage(kind) = r.kind else {
                unreachable!()
            };
            let parsed = serde_json::from_slice::<Value>(&r.body);
            match kind {
                GarbageKind::InvalidJson | GarbageKind::WrongContentType => {
                    assert!(parsed.is_err(), "{kind:?}")
                }
                _ => assert!(parsed.is_ok(), "{kind:?}"),
            }
            match kind {
                GarbageKind::NoContentType => assert_eq!(r.content_type, None),
                GarbageKind::WrongContentType => assert_eq!(r.content_type, Some("text/csv")),
                _ => assert_eq!(r.content_type, Some("application/json")),
            }
        }
        let short = rows_of(&reqs[3]);
        assert_eq!(short[0].len(), 29);
        let long = rows_of(&reqs[4]);
        assert_eq!(long[0].len(), 31);
    }

    #[test]
    fn object_rows_are_keyed_by_feature_name() {
        let mut cfg = config(&[Scenario::Normal], 1);
        cfg.row_format = RowFormat::Object;
        let mut g = generator(cfg);
        let v: Value = serde_json::from_slice(&g.next_request().body).unwrap();
        let row = v["rows"][0].as_object().unwrap();
        assert_eq!(row.len(), 30);
        assert!(row["mean_radius"].is_f64());
    }
}
