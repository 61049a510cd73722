//! `inference card`: bring your own model. Builds a model directory (model.onnx + model_card.json)
//! from a user's ONNX autoencoder, classifier or regressor and CSVs of reference rows: it inspects
//! the graph's inputs and outputs, refuses what it cannot serve with a sentence naming what it
//! found, and computes the same statistics as `model/train.py` does for the bundled model.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;

use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::card::{
    BaselineSource, ClassifierSpec, Evaluation, FeatureStats, Histogram, InputSpec, InputType,
    MissingValues, ModelCard, PredictedBaseline, ProbabilityLayout, ScoreBaseline, ScoreSpec, Task,
    CARD_FILE, ERROR_KIND, POSITIVE_PROBABILITY, PREDICTED_PROBABILITY, PREDICTION, SCHEMA_VERSION,
};
use crate::config::CardArgs;
use crate::scorer::{init_runtime, open_session, tensor_of, Outputs, Scorer};
use crate::stats::{histogram_counts, mean_std, quantile_sorted, regression_metrics, roc_auc};

pub const QUANTILES: [(&str, f64); 7] = [
    ("p01", 0.01),
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
];
const MODEL_FILE: &str = "model.onnx";

/// A CSV of numbers: its header and its rows.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

pub fn read_csv(path: &Path) -> anyhow::Result<Table> {
    let t = read_table(path, None)?;
    Ok(Table {
        header: t.header,
        rows: t.rows,
    })
}

/// A CSV of feature columns and one label column kept as text (class names or numbers).
pub struct Labelled {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
    pub labels: Vec<String>,
}

pub fn read_labelled(path: &Path, label_column: &str) -> anyhow::Result<Labelled> {
    read_table(path, Some(label_column))
}

/// Numbers in every column but the label column (if one is named), which is kept as text.
fn read_table(path: &Path, label_column: Option<&str>) -> anyhow::Result<Labelled> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut header: Vec<String> = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let label_at = match label_column {
        Some(label) => Some(
            header
                .iter()
                .position(|h| h == label)
                .with_context(|| format!("{} has no label column {label:?}", path.display()))?,
        ),
        None => None,
    };
    let columns = header.clone();
    if let Some(at) = label_at {
        header.remove(at);
    }
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record
            .with_context(|| format!("{}: cannot read data row {}", path.display(), i + 1))?;
        let mut row = Vec::with_capacity(header.len());
        for (j, (v, col)) in record.iter().zip(&columns).enumerate() {
            if Some(j) == label_at {
                labels.push(v.trim().to_string());
                continue;
            }
            row.push(
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .with_context(|| {
                        format!(
                            "{}: data row {}, column {col:?}: {v:?} is not a finite number",
                            path.display(),
                            i + 1
                        )
                    })?,
            );
        }
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{} has a header but no data rows", path.display());
    }
    Ok(Labelled {
        header,
        rows,
        labels,
    })
}

/// What the card builder found in the graph, before any statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub input_name: String,
    pub inputs: Vec<InputSpec>,
    pub output_name: String,
    pub probabilities: Option<ProbabilityLayout>,
    /// Classifier with a probability tensor: its number of columns; the label output, if any.
    pub tensor_classes: Option<usize>,
    pub label_output: Option<String>,
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| {
            if *d < 0 {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// An element type as ONNX tools print it.
pub fn element_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "float32".into(),
        TensorElementType::Float64 => "float64".into(),
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Int32 => "int32".into(),
        TensorElementType::String => "string".into(),
        TensorElementType::Bool => "bool".into(),
        other => other.to_string(),
    }
}

fn type_name(t: &ValueType) -> String {
    match t {
        ValueType::Tensor { ty, shape, .. } => {
            format!("{} {}", element_name(*ty), shape_text(shape))
        }
        ValueType::Sequence(inner) => format!("sequence of {}", type_name(inner)),
        ValueType::Map { key, value } => {
            format!("maps {} -> {}", element_name(*key), element_name(*value))
        }
        ValueType::Optional(inner) => format!("optional {}", type_name(inner)),
    }
}

fn describe_outlet(name: &str, t: &ValueType) -> String {
    format!("{name:?} ({})", type_name(t))
}

/// Matches the graph's inputs with the CSV's feature columns: one tensor [batch, n] (float32, as
/// most exporters write, or float64 / int64), or several inputs, each [batch, k] of them, that
/// take the columns in input order (one named input per feature is the case k = 1).
fn inspect_inputs(
    session: &Session,
    features: &[String],
) -> anyhow::Result<(String, Vec<InputSpec>)> {
    let graph = session.inputs();
    if graph.is_empty() {
        bail!("the model has no inputs");
    }
    let mut specs = Vec::new();
    let mut next = 0;
    for outlet in graph {
        let name = outlet.name();
        let Some((ty, shape)) = tensor_of(outlet.dtype()) else {
            bail!(
                "input {} is not a tensor; a tabular model takes numbers [batch, features]",
                describe_outlet(name, outlet.dtype())
            );
        };
        let dtype = match ty {
            TensorElementType::Float32 => InputType::Float32,
            TensorElementType::Float64 => InputType::Float64,
            TensorElementType::Int64 => InputType::Int64,
            other => bail!(
                "input {} takes {}; this service feeds numbers as float32, float64 or int64",
                describe_outlet(name, outlet.dtype()),
                element_name(other)
            ),
        };
        if shape.len() != 2 {
            bail!(
                "input {} is not a table: a tabular model takes [batch, features], and this service does not serve images or sequences",
                describe_outlet(name, outlet.dtype())
            );
        }
        if shape[1] < 0 {
            bail!(
                "input {} has a dynamic feature dimension; export it with a fixed number of features",
                describe_outlet(name, outlet.dtype())
            );
        }
        let k = shape[1] as usize;
        // One input per feature, named like the feature: the CSV's order does not matter.
        let taken: Vec<String> = if k == 1 && graph.len() > 1 && features.iter().any(|f| f == name)
        {
            vec![name.to_string()]
        } else {
            if next + k > features.len() {
                bail!(
                    "the model's inputs take {} features ({}) but the reference CSV has {} columns ({}); the CSV header must name exactly the model's features, in input order",
                    graph.iter().filter_map(|o| tensor_of(o.dtype())).map(|(_, s)| s.get(1).copied().unwrap_or(0).max(0)).sum::<i64>(),
                    graph.iter().map(|o| describe_outlet(o.name(), o.dtype())).collect::<Vec<_>>().join(", "),
                    features.len(),
                    features.join(", ")
                );
            }
            let cols = features[next..next + k].to_vec();
            next += k;
            cols
        };
        specs.push(InputSpec {
            name: name.to_string(),
            dtype,
            features: taken,
        });
    }
    let fed: usize = specs.iter().map(|s| s.features.len()).sum();
    let mut distinct: Vec<&String> = specs.iter().flat_map(|s| &s.features).collect();
    distinct.sort();
    distinct.dedup();
    if fed != features.len() || distinct.len() != fed {
        bail!(
            "the model's inputs ({}) take {fed} features but the reference CSV has {} columns ({}); the CSV header must name exactly the model's features, in input order",
            graph.iter().map(|o| describe_outlet(o.name(), o.dtype())).collect::<Vec<_>>().join(", "),
            features.len(),
            features.join(", ")
        );
    }
    let input_name = specs[0].name.clone();
    let plain = specs.len() == 1 && specs[0].dtype == InputType::Float32;
    Ok((input_name, if plain { Vec::new() } else { specs }))
}

/// Which output carries the task's answer; refuses graphs whose outputs do not say.
pub fn inspect(
    session: &Session,
    task: Task,
    features: &[String],
    output: Option<&str>,
) -> anyhow::Result<Inspection> {
    let (input_name, inputs) = inspect_inputs(session, features)?;
    let outlets: Vec<(String, ValueType)> = session
        .outputs()
        .iter()
        .map(|o| (o.name().to_string(), o.dtype().clone()))
        .collect();
    if outlets.is_empty() {
        bail!("the model has no outputs");
    }
    let all = || {
        outlets
            .iter()
            .map(|(n, t)| describe_outlet(n, t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = output {
        if !outlets.iter().any(|(n, _)| n == name) {
            bail!(
                "the model has no output {name:?}; its outputs are {}",
                all()
            );
        }
    }
    let float_cols = |t: &ValueType| match tensor_of(t) {
        Some((TensorElementType::Float32 | TensorElementType::Float64, shape)) => match shape.len()
        {
            1 => Some(1),
            2 => Some(shape[1]),
            _ => None,
        },
        _ => None,
    };
    let width = features.len() as i64;
    let mut found = Inspection {
        input_name,
        inputs,
        output_name: String::new(),
        probabilities: None,
        tensor_classes: None,
        label_output: None,
    };
    let pick = |candidates: Vec<&(String, ValueType)>, what: &str| -> anyhow::Result<String> {
        match (output, candidates.as_slice()) {
            (Some(name), _) => Ok(name.to_string()),
            (None, [one]) => Ok(one.0.clone()),
            (None, []) => bail!("the model has no output that can be {what}; its outputs are {}", all()),
            (None, _) => bail!(
                "the model has {} outputs that could be {what} and nothing says which: {}; name it with --output-name",
                candidates.len(),
                candidates.iter().map(|(n, t)| describe_outlet(n, t)).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    match task {
        Task::Autoencoder => {
            let name = pick(
                outlets
                    .iter()
                    .filter(|(_, t)| float_cols(t) == Some(width))
                    .collect(),
                format!("a reconstruction of the {width} features").as_str(),
            )?;
            let t = &outlets.iter().find(|(n, _)| *n == name).expect("exists").1;
            if float_cols(t) != Some(width) {
                bail!("output {} is not a reconstruction: an autoencoder's output must be float [batch, {width}], like its input", describe_outlet(&name, t));
            }
            found.output_name = name;
        }
        Task::Regressor => {
            let name = pick(
                outlets
                    .iter()
                    .filter(|(_, t)| float_cols(t) == Some(1))
                    .collect(),
                "the prediction (a float [batch, 1] or [batch])",
            )?;
            let t = &outlets.iter().find(|(n, _)| *n == name).expect("exists").1;
            if float_cols(t) != Some(1) {
                bail!("output {} is not one number per row; a regressor's prediction must be float [batch, 1] or [batch]", describe_outlet(&name, t));
            }
            found.output_name = name;
        }
        Task::Classifier => {
            let layout_of = |t: &ValueType| -> Option<ProbabilityLayout> {
                match t {
                    ValueType::Sequence(inner) => match **inner {
                        ValueType::Map {
                            key: TensorElementType::Int64,
                            value: TensorElementType::Float32,
                        } => Some(ProbabilityLayout::MapInt64),
                        ValueType::Map {
                            key: TensorElementType::String,
                            value: TensorElementType::Float32,
                        } => Some(ProbabilityLayout::MapString),
                        _ => None,
                    },
                    t => match float_cols(t) {
                        Some(c) if !(0..2).contains(&c) => Some(ProbabilityLayout::Tensor),
                        _ => None,
                    },
                }
            };
            let candidates: Vec<&(String, ValueType)> = outlets
                .iter()
                .filter(|(_, t)| layout_of(t).is_some())
                .collect();
            if candidates.is_empty() {
                bail!(
                    "none of the model's outputs ({}) is per-class probabilities; a classifier must output them as a float tensor [batch, classes] or a sequence of maps (ZipMap), as skl2onnx and onnxmltools do for predict_proba",
                    all()
                );
            }
            let name = pick(candidates, "the class probabilities")?;
            let t = &outlets.iter().find(|(n, _)| *n == name).expect("exists").1;
            let layout = layout_of(t).with_context(|| {
                format!("output {} is not per-class probabilities (a float tensor [batch, classes] or a sequence of maps)", describe_outlet(&name, t))
            })?;
            if layout == ProbabilityLayout::Tensor {
                let cols = float_cols(t).unwrap_or(-1);
                found.tensor_classes = (cols > 0).then_some(cols as usize);
            }
            found.probabilities = Some(layout);
            found.label_output = outlets
                .iter()
                .find(|(n, t)| *n != name && matches!(tensor_of(t), Some((TensorElementType::Int64 | TensorElementType::String, s)) if s.len() == 1))
                .map(|(n, _)| n.clone());
            found.output_name = name;
        }
    }
    Ok(found)
}

/// The classes in probability-column order: given, read from ZipMap's keys, or learned from the
/// label output on the reference rows.
fn find_classes(
    session: &mut Session,
    found: &Inspection,
    rows: &[Vec<f64>],
    given: Option<&[String]>,
) -> anyhow::Result<Vec<String>> {
    let layout = found.probabilities.expect("a classifier");
    let sample: Vec<Vec<f64>> = rows.iter().take(2048).cloned().collect();
    let feed = raw_feed(found, &sample)?;
    let outputs = session
        .run(feed)
        .context("the model failed on the reference rows")?;
    let out = &outputs[found.output_name.as_str()];
    let from_graph: Option<Vec<String>> = match layout {
        ProbabilityLayout::MapInt64 | ProbabilityLayout::MapString => {
            let maps = out.try_extract_sequence::<ort::value::DynMapValueType>()?;
            let first = maps
                .first()
                .context("the model returned no probabilities")?;
            let mut keys: Vec<String> = if layout == ProbabilityLayout::MapInt64 {
                let mut k: Vec<i64> = first
                    .try_extract_key_values::<i64, f32>()?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                k.sort_unstable();
                k.into_iter().map(|k| k.to_string()).collect()
            } else {
                first
                    .try_extract_key_values::<String, f32>()?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect()
            };
            if layout == ProbabilityLayout::MapString {
                keys.sort();
            }
            Some(keys)
        }
        ProbabilityLayout::Tensor => {
            let (shape, p) = out
                .try_extract_tensor::<f32>()
                .map(|(s, p)| (s.to_vec(), p.to_vec()))
                .or_else(|_| {
                    out.try_extract_tensor::<f64>()
                        .map(|(s, p)| (s.to_vec(), p.iter().map(|&x| x as f32).collect()))
                })?;
            let k = *shape.last().unwrap_or(&0) as usize;
            probabilities_or_refuse(&found.output_name, &shape, &p, k)?;
            let labels: Option<Vec<String>> = match &found.label_output {
                Some(name) => {
                    let v = &outputs[name.as_str()];
                    if let Ok((_, l)) = v.try_extract_tensor::<i64>() {
                        Some(l.iter().map(|x| x.to_string()).collect())
                    } else {
                        v.try_extract_strings().ok().map(|(_, l)| l)
                    }
                }
                None => None,
            };
            let mut column: Vec<Option<String>> = vec![None; k];
            if let Some(labels) = &labels {
                for (row, label) in p.chunks_exact(k.max(1)).zip(labels) {
                    let j = crate::scorer::argmax(row);
                    match &column[j] {
                        Some(seen) if seen != label => bail!(
                            "the label output {:?} says {label:?} where column {j} of the probabilities was largest, and {seen:?} elsewhere; name the classes with --classes",
                            found.label_output.as_deref().unwrap_or_default()
                        ),
                        _ => column[j] = Some(label.clone()),
                    }
                }
            }
            let identity = column
                .iter()
                .enumerate()
                .all(|(j, c)| c.as_deref().is_none_or(|c| c == j.to_string()));
            if column.iter().all(Option::is_some) {
                Some(column.into_iter().map(Option::unwrap).collect())
            } else if identity {
                Some((0..k).map(|j| j.to_string()).collect())
            } else if given.is_none() {
                bail!(
                    "the reference rows never predicted class column(s) {:?}, so their names are unknown; name the classes with --classes",
                    column.iter().enumerate().filter(|(_, c)| c.is_none()).map(|(j, _)| j).collect::<Vec<_>>()
                );
            } else {
                None
            }
        }
    };
    match (given, from_graph) {
        (Some(given), Some(graph)) if given.len() != graph.len() => bail!(
            "--classes names {} classes but the model has {}: {}",
            given.len(),
            graph.len(),
            graph.join(", ")
        ),
        (Some(given), Some(graph))
            if layout != ProbabilityLayout::Tensor && given != graph.as_slice() =>
        {
            bail!(
            "--classes {} does not match the classes the model's probability maps are keyed by: {}",
            given.join(","),
            graph.join(", ")
        )
        }
        (Some(given), _) => Ok(given.to_vec()),
        (None, Some(graph)) => Ok(graph),
        (None, None) => bail!("cannot tell the classes; name them with --classes"),
    }
}

/// Refuses a probability tensor whose rows are not probabilities on the reference rows: a value
/// outside [0, 1] or a row that does not sum to 1 (logits without a softmax, or an autoencoder's
/// reconstruction picked with `--task classifier`). The monitoring reads these numbers as
/// probabilities, so serving anything else would draw wrong charts.
fn probabilities_or_refuse(output: &str, shape: &[i64], p: &[f32], k: usize) -> anyhow::Result<()> {
    const TOLERANCE: f64 = 1e-3;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut worst_sum: Option<f64> = None;
    for row in p.chunks_exact(k.max(1)) {
        let sum: f64 = row.iter().map(|&x| f64::from(x)).sum();
        for &x in row {
            lo = lo.min(f64::from(x));
            hi = hi.max(f64::from(x));
        }
        if worst_sum.is_none_or(|w| (sum - 1.0).abs() > (w - 1.0).abs()) {
            worst_sum = Some(sum);
        }
    }
    let Some(worst_sum) = worst_sum else {
        return Ok(());
    };
    if lo < -TOLERANCE || hi > 1.0 + TOLERANCE || (worst_sum - 1.0).abs() > 10.0 * TOLERANCE {
        let dims: Vec<String> = shape
            .iter()
            .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
            .collect();
        bail!(
            "output {output:?} [{}] is not probabilities: on the reference rows its values run from {lo:.4} to {hi:.4} and a row sums to {worst_sum:.4}, not 1; export the model with its softmax (predict_proba), or pick the task that matches it (an autoencoder's reconstruction looks like this)",
            dims.join(", ")
        );
    }
    Ok(())
}

/// The raw feed of `rows` for `found`'s inputs, for inspection runs.
fn raw_feed(found: &Inspection, rows: &[Vec<f64>]) -> anyhow::Result<Vec<(String, DynValue)>> {
    let specs = if found.inputs.is_empty() {
        vec![InputSpec {
            name: found.input_name.clone(),
            dtype: InputType::Float32,
            features: Vec::new(),
        }]
    } else {
        found.inputs.clone()
    };
    let width = rows.first().map_or(0, Vec::len);
    let n = rows.len();
    let mut offset = 0;
    let mut feeds = Vec::new();
    for spec in &specs {
        let k = if spec.features.is_empty() {
            width
        } else {
            spec.features.len()
        };
        let cols = offset..offset + k;
        offset += k;
        let cells = rows.iter().flat_map(|r| r[cols.clone()].iter().copied());
        let value: DynValue = match spec.dtype {
            InputType::Float32 => {
                Tensor::from_array(([n, k], cells.map(|v| v as f32).collect::<Vec<_>>()))?
                    .into_dyn()
            }
            InputType::Float64 => {
                Tensor::from_array(([n, k], cells.collect::<Vec<_>>()))?.into_dyn()
            }
            InputType::Int64 => {
                Tensor::from_array(([n, k], cells.map(|v| v as i64).collect::<Vec<_>>()))?
                    .into_dyn()
            }
        };
        feeds.push((spec.name.clone(), value));
    }
    Ok(feeds)
}

pub fn build(args: &CardArgs) -> anyhow::Result<String> {
    let env = init_runtime(&args.runtime.ort_library)?;
    let mut session = open_session(&env, &args.model)?;
    let reference = read_csv(&args.reference)?;
    if let Some(name) = &args.input_name {
        if !session.inputs().iter().any(|i| i.name() == name) {
            bail!("the model has no input {name:?}");
        }
    }
    let found = inspect(
        &session,
        args.task,
        &reference.header,
        args.output_name.as_deref(),
    )?;
    // Features fed by name (one input per feature) are kept in the CSV's order.
    let features = reference
        .header
        .iter()
        .enumerate()
        .map(|(j, name)| {
            feature_stats(
                name,
                &reference.rows.iter().map(|r| r[j]).collect::<Vec<_>>(),
            )
        })
        .collect::<Vec<_>>();
    let classes = match args.task {
        Task::Classifier => {
            let given: Option<Vec<String>> = args
                .classes
                .as_ref()
                .map(|c| c.split(',').map(|s| s.trim().to_string()).collect());
            Some(find_classes(
                &mut session,
                &found,
                &reference.rows,
                given.as_deref(),
            )?)
        }
        _ => None,
    };
    drop(session);
    let binary = classes.as_ref().is_some_and(|c| c.len() == 2);
    if let (Some(p), Some(c)) = (&args.positive_class, &classes) {
        if !binary {
            bail!(
                "--positive-class is only for binary classifiers; this one has {} classes",
                c.len()
            );
        }
        if !c.contains(p) {
            bail!(
                "--positive-class {p:?} is not one of the model's classes: {}",
                c.join(", ")
            );
        }
    }
    let threshold = match args.task {
        Task::Autoencoder => Some(1.0),
        Task::Classifier if binary => {
            let t = args.decision_threshold;
            if !(t > 0.0 && t < 1.0) {
                bail!("--decision-threshold must be between 0 and 1, got {t}");
            }
            Some(t)
        }
        _ => None,
    };
    let score_kind = match (args.task, binary) {
        (Task::Autoencoder, _) => ERROR_KIND,
        (Task::Classifier, true) => POSITIVE_PROBABILITY,
        (Task::Classifier, false) => PREDICTED_PROBABILITY,
        (Task::Regressor, _) => PREDICTION,
    };
    let kind_phrase = match args.task {
        Task::Autoencoder => format!("Autoencoder {}", args.name),
        Task::Classifier => format!(
            "{} {} over {}",
            if binary {
                "Binary classifier".to_string()
            } else {
                format!("{}-class classifier", classes.as_ref().map_or(0, Vec::len))
            },
            args.name,
            classes.as_ref().map(|c| c.join(", ")).unwrap_or_default()
        ),
        Task::Regressor => format!("Regressor {}", args.name),
    };
    let mut card = ModelCard {
        schema_version: SCHEMA_VERSION,
        name: args.name.clone(),
        version: args.version.clone(),
        description: format!("{kind_phrase} with a card built by `inference card`"),
        task: args.task,
        model_file: MODEL_FILE.to_string(),
        input_name: found.input_name.clone(),
        output_name: found.output_name.clone(),
        inputs: found.inputs.clone(),
        classifier: classes.map(|classes| ClassifierSpec {
            classes,
            probabilities: found.probabilities.expect("a classifier"),
            positive_class: args.positive_class.clone(),
            predicted_baseline: None,
        }),
        missing_values: MissingValues {
            policy: args.missing,
            impute_with: args.impute_with,
        },
        features,
        score: ScoreSpec {
            error: score_kind.to_string(),
            threshold,
            threshold_rule: String::new(),
            baseline: ScoreBaseline {
                quantiles: BTreeMap::new(),
                histogram: Histogram {
                    bin_edges: vec![0.0, 1.0],
                    counts: vec![0],
                },
            },
        },
        evaluation: None,
        training: None,
    };
    card.check()
        .map_err(|e| anyhow::anyhow!("the card built is inconsistent: {e}"))?;
    let mut scorer = Scorer::open(&env, &args.model, &card)?;

    let (calibration, calibration_name) = match &args.calibration {
        Some(path) => {
            let t = read_csv(path)?;
            same_header(&t.header, &reference.header, path)?;
            (t.rows, "calibration")
        }
        None => (reference.rows.clone(), "reference"),
    };
    let calibration_outputs = scorer.score(&flatten(&calibration))?;
    let mut scores = calibration_outputs.scores.clone();
    if let Some(bad) = scores.iter().position(|s| !s.is_finite()) {
        bail!(
            "the model's score for {calibration_name} row {} is not a finite number",
            bad + 1
        );
    }
    scores.sort_by(f64::total_cmp);
    match args.task {
        Task::Autoencoder => {
            card.score.threshold = Some(quantile_sorted(&scores, args.threshold_quantile));
            card.score.threshold_rule = format!(
                "p{} of reconstruction error on the {} rows",
                args.threshold_quantile * 100.0,
                calibration_name
            );
        }
        Task::Classifier if binary => {
            card.score.threshold_rule = format!(
                "the positive class {:?} is predicted when its probability is above {}",
                card.positive_class()
                    .and_then(|p| card.classifier.as_ref().map(|c| c.classes[p].clone()))
                    .unwrap_or_default(),
                args.decision_threshold
            );
        }
        _ => {}
    }
    card.score.baseline = ScoreBaseline {
        quantiles: quantiles(&scores),
        histogram: decile_histogram(&scores),
    };
    // The classes predicted on the held-out rows, else on the reference rows: the baseline of the
    // live predicted-class distribution.
    let mut predicted: Option<(BaselineSource, Vec<u32>)> = None;
    if let Some(path) = &args.holdout {
        let t = read_labelled(path, &args.label_column)?;
        same_header(&t.header, &reference.header, path)?;
        let outputs = scorer.score(&flatten(&t.rows))?;
        card.evaluation = Some(evaluate(&card, &t.labels, &outputs, path)?);
        predicted = Some((BaselineSource::Holdout, outputs.classes));
    }
    if let Some(spec) = card.classifier.as_mut() {
        let (source, classes) = match predicted {
            Some(p) => p,
            None if args.calibration.is_none() => {
                (BaselineSource::Reference, calibration_outputs.classes)
            }
            None => (
                BaselineSource::Reference,
                scorer.score(&flatten(&reference.rows))?.classes,
            ),
        };
        spec.predicted_baseline = Some(PredictedBaseline {
            source,
            counts: class_counts(&classes, spec.classes.len()),
        });
    }
    card.training = Some(json!({
        "source": format!("built by `inference card` from {}", file_name(&args.reference)),
        "train_rows": reference.rows.len(),
        "calibration_rows": calibration.len(),
    }));
    card.check()
        .map_err(|e| anyhow::anyhow!("the card built is inconsistent: {e}"))?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::copy(&args.model, args.out.join(MODEL_FILE))
        .with_context(|| format!("cannot copy the model into {}", args.out.display()))?;
    let text = serde_json::to_string_pretty(&card)? + "\n";
    std::fs::write(args.out.join(CARD_FILE), text)
        .with_context(|| format!("cannot write the card into {}", args.out.display()))?;
    Ok(format!(
        "wrote {}: {}",
        args.out.display(),
        summary_line(&card)
    ))
}

/// One line on what the card holds, for the person who built it.
pub fn summary_line(card: &ModelCard) -> String {
    let e = card.evaluation.clone().unwrap_or_default();
    let held = |name: &str, v: Option<f64>| {
        v.map(|v| format!(", held-out {name} {v:.4}"))
            .unwrap_or_default()
    };
    match card.task {
        Task::Autoencoder => format!(
            "autoencoder, {} features, threshold {:.6}, held-out ROC-AUC {}",
            card.width(),
            card.score.threshold.unwrap_or_default(),
            e.holdout_roc_auc.map_or_else(
                || "not measured (no --holdout)".to_string(),
                |a| format!("{a:.4}")
            )
        ),
        Task::Classifier => format!(
            "{}, {} features, classes {}{}{}{}{}",
            card.task_phrase(),
            card.width(),
            card.classifier
                .as_ref()
                .map(|c| c.classes.join(", "))
                .unwrap_or_default(),
            card.score
                .threshold
                .map(|t| format!(", decision threshold {t}"))
                .unwrap_or_default(),
            held("accuracy", e.holdout_accuracy),
            held("ROC-AUC", e.holdout_roc_auc),
            held("log loss", e.holdout_log_loss),
        ),
        Task::Regressor => format!(
            "regressor, {} features{}{}{}",
            card.width(),
            held("MAE", e.holdout_mae),
            held("RMSE", e.holdout_rmse),
            held("R²", e.holdout_r2),
        ),
    }
}

/// Held-out metrics of the task: ROC-AUC, recall and false-positive rate at the threshold
/// (autoencoder, binary classifier), accuracy and log loss (classifier), MAE, RMSE and R²
/// (regressor).
fn evaluate(
    card: &ModelCard,
    labels: &[String],
    outputs: &Outputs,
    path: &Path,
) -> anyhow::Result<Evaluation> {
    let n = labels.len();
    let mut e = Evaluation {
        holdout_rows: Some(n as u64),
        ..Evaluation::default()
    };
    let number = |i: usize, l: &str| -> anyhow::Result<f64> {
        l.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .with_context(|| {
                format!(
                    "{}: data row {}: label {l:?} is not a number",
                    path.display(),
                    i + 1
                )
            })
    };
    match card.task {
        Task::Autoencoder => {
            let truth: Vec<bool> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| number(i, l).map(|v| v != 0.0))
                .collect::<anyhow::Result<_>>()?;
            binary_rates(
                &mut e,
                &outputs.scores,
                &truth,
                card.score.threshold.unwrap_or(f64::INFINITY),
            );
            e.holdout_benign_rows = Some(truth.iter().filter(|&&t| !t).count() as u64);
            e.holdout_malignant_rows = Some(truth.iter().filter(|&&t| t).count() as u64);
        }
        Task::Regressor => {
            let truth: Vec<f64> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| number(i, l))
                .collect::<anyhow::Result<_>>()?;
            let (mae, rmse, r2) = regression_metrics(&truth, &outputs.scores);
            e.holdout_mae = Some(mae);
            e.holdout_rmse = Some(rmse);
            e.holdout_r2 = r2;
        }
        Task::Classifier => {
            let classes = &card.classifier.as_ref().expect("a classifier").classes;
            let truth: Vec<usize> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    class_index(classes, l).with_context(|| {
                        format!(
                            "{}: data row {}: label {l:?} is not one of the model's classes ({})",
                            path.display(),
                            i + 1,
                            classes.join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            let correct = truth
                .iter()
                .zip(&outputs.classes)
                .filter(|(t, p)| **t == **p as usize)
                .count();
            e.holdout_accuracy = Some(correct as f64 / n.max(1) as f64);
            e.holdout_log_loss = Some(log_loss(&truth, &outputs.probabilities, classes.len()));
            if let Some(positive) = card.positive_class() {
                let truth: Vec<bool> = truth.iter().map(|&t| t == positive).collect();
                binary_rates(
                    &mut e,
                    &outputs.scores,
                    &truth,
                    card.score.threshold.unwrap_or(0.5),
                );
            }
        }
    }
    Ok(e)
}

/// Rows per predicted class index, for `k` classes.
pub fn class_counts(predicted: &[u32], k: usize) -> Vec<u64> {
    let mut counts = vec![0; k];
    for &c in predicted {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1;
        }
    }
    counts
}

/// The index of the class a label names: the class as written, or the same number ("1" and "1.0").
pub fn class_index(classes: &[String], label: &str) -> Option<usize> {
    let label = label.trim();
    classes.iter().position(|c| c == label).or_else(|| {
        let v = label.parse::<f64>().ok()?;
        classes
            .iter()
            .position(|c| c.parse::<f64>().ok() == Some(v))
    })
}

fn binary_rates(e: &mut Evaluation, scores: &[f64], truth: &[bool], threshold: f64) {
    let flagged = |want: bool| {
        scores
            .iter()
            .zip(truth)
            .filter(|(s, &l)| l == want && **s > threshold)
            .count() as f64
    };
    let positives = truth.iter().filter(|&&l| l).count();
    let negatives = truth.len() - positives;
    e.holdout_roc_auc = roc_auc(scores, truth);
    e.holdout_recall_at_threshold = (positives > 0).then(|| flagged(true) / positives as f64);
    e.holdout_false_positive_rate = (negatives > 0).then(|| flagged(false) / negatives as f64);
}

/// Mean negative log-likelihood of the true classes, probabilities clipped to [1e-15, 1 - 1e-15]
/// and each row renormalised (scikit-learn's `log_loss`).
pub fn log_loss(truth: &[usize], probabilities: &[f32], k: usize) -> f64 {
    let eps = 1e-15;
    let mut total = 0.0;
    for (t, row) in truth.iter().zip(probabilities.chunks_exact(k)) {
        let clipped: Vec<f64> = row
            .iter()
            .map(|&p| f64::from(p).clamp(eps, 1.0 - eps))
            .collect();
        let sum: f64 = clipped.iter().sum();
        total -= (clipped[*t] / sum).ln();
    }
    total / truth.len().max(1) as f64
}

fn feature_stats(name: &str, values: &[f64]) -> FeatureStats {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (mean, std) = mean_std(values);
    let std = if std > 0.0 { std } else { 1.0 };
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    let (histogram, levels) = distinct_levels(&sorted)
        .and_then(|levels| Some((level_histogram(&sorted, &levels)?, levels)))
        .unwrap_or_else(|| (decile_histogram(&sorted), Vec::new()));
    FeatureStats {
        name: name.to_string(),
        mean,
        std,
        min,
        max,
        // A bound for gross errors (units, signs, sentinels), not for anomalies.
        valid_min: if min >= 0.0 {
            0.0
        } else {
            min - 100.0 * (max - min)
        },
        valid_max: max + 100.0 * (max - min),
        quantiles: quantiles(&sorted),
        histogram,
        levels,
    }
}

/// Most distinct values a reference column may have for its baseline to count each value on its
/// own (a 0/1 flag, a category code, a small count). Deciles would merge such values into a few
/// wide bins whose rows the service can only spread evenly, which reads as drift on normal traffic.
pub const MAX_LEVELS: usize = 20;

/// Fewest reference rows per distinct value, on average, for a column to be read as levels: a
/// short reference of a continuous column has few distinct values too, but seen once each.
pub const MIN_ROWS_PER_LEVEL: usize = 5;

/// The column's distinct values when there are at most [`MAX_LEVELS`] of them, each seen
/// [`MIN_ROWS_PER_LEVEL`] times on average.
fn distinct_levels(sorted: &[f64]) -> Option<Vec<f64>> {
    let mut levels = sorted.to_vec();
    levels.dedup();
    (levels.len() <= MAX_LEVELS && sorted.len() >= MIN_ROWS_PER_LEVEL * levels.len())
        .then_some(levels)
}

/// One bin per level with the level inside it: edges halfway between neighbouring levels and half
/// the nearest gap beyond the outer ones (±0.5 around a single level). A value between two levels
/// counts with the nearer one, and no level sits on an edge, so the card and the service bin the
/// same value the same way whatever their conventions at the edges. None when the levels are too
/// close (neighbouring floats) or too large for edges strictly between them.
fn level_histogram(sorted: &[f64], levels: &[f64]) -> Option<Histogram> {
    let n = levels.len();
    let (below, above) = if n == 1 {
        (0.5, 0.5)
    } else {
        (
            (levels[1] - levels[0]) / 2.0,
            (levels[n - 1] - levels[n - 2]) / 2.0,
        )
    };
    let mut edges = Vec::with_capacity(n + 1);
    edges.push(levels[0] - below);
    edges.extend(levels.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0));
    edges.push(levels[n - 1] + above);
    let separated = edges.iter().all(|e| e.is_finite())
        && levels
            .iter()
            .enumerate()
            .all(|(i, &l)| edges[i] < l && l < edges[i + 1]);
    if !separated {
        return None;
    }
    let counts = levels
        .iter()
        .map(|&l| sorted.iter().filter(|&&v| v == l).count() as u64)
        .collect();
    Some(Histogram {
        bin_edges: edges,
        counts,
    })
}

/// The drift baseline: bins between the deciles of `sorted` (repeated edges merged).
fn decile_histogram(sorted: &[f64]) -> Histogram {
    let mut edges: Vec<f64> = (0..=10)
        .map(|i| quantile_sorted(sorted, i as f64 / 10.0))
        .collect();
    edges.dedup();
    if edges.len() < 2 {
        edges = vec![sorted[0] - 0.5, sorted[0] + 0.5];
    }
    Histogram {
        counts: histogram_counts(sorted, &edges),
        bin_edges: edges,
    }
}

fn quantiles(sorted: &[f64]) -> BTreeMap<String, f64> {
    QUANTILES
        .iter()
        .map(|(k, q)| (k.to_string(), quantile_sorted(sorted, *q)))
        .collect()
}

fn flatten(rows: &[Vec<f64>]) -> Vec<f64> {
    rows.iter().flatten().copied().collect()
}

fn same_header(got: &[String], want: &[String], path: &Path) -> anyhow::Result<()> {
    if got != want {
        bail!(
            "{} has columns ({}) but the reference CSV has ({}); they must match",
            path.display(),
            got.join(", "),
            want.join(", ")
        );
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_of_few_values_counts_each_value_in_a_bin_around_it() {
        // A 1/2 flag, as diabetes' `sex`: deciles would give one bin [1, 2].
        let values: Vec<f64> = [1.0; 161].iter().chain(&[2.0; 148]).copied().collect();
        let f = feature_stats("sex", &values);
        assert_eq!(f.levels, vec![1.0, 2.0]);
        assert_eq!(f.histogram.bin_edges, vec![0.5, 1.5, 2.5]);
        assert_eq!(f.histogram.counts, vec![161, 148]);
        // Uneven gaps: edges halfway, outer ones half the nearest gap out.
        let counts: Vec<f64> = [0.0, 0.0, 1.0, 3.0, 3.0, 3.0].repeat(5);
        let f = feature_stats("visits", &counts);
        assert_eq!(f.levels, vec![0.0, 1.0, 3.0]);
        assert_eq!(f.histogram.bin_edges, vec![-0.5, 0.5, 2.0, 4.0]);
        assert_eq!(f.histogram.counts, vec![10, 5, 15]);
    }

    #[test]
    fn a_continuous_column_or_a_short_one_keeps_decile_bins() {
        let many: Vec<f64> = (0..300).map(|i| f64::from(i) * 0.37).collect();
        let f = feature_stats("x", &many);
        assert!(f.levels.is_empty());
        assert_eq!(f.histogram.counts.len(), 10);
        // 12 rows, 12 values: seen once each is not a level.
        let short: Vec<f64> = (0..12).map(f64::from).collect();
        assert!(feature_stats("x", &short).levels.is_empty());
        // 21 distinct values is past MAX_LEVELS however often each is seen.
        let wide: Vec<f64> = (0..21).map(f64::from).collect::<Vec<_>>().repeat(10);
        assert!(feature_stats("x", &wide).levels.is_empty());
    }

    #[test]
    fn levels_too_close_for_an_edge_between_them_fall_back_to_deciles() {
        let a = 1.0_f64;
        let b = f64::from_bits(a.to_bits() + 1);
        let values: Vec<f64> = [a, b].repeat(10);
        let f = feature_stats("x", &values);
        assert!(f.levels.is_empty());
    }

    #[test]
    fn a_label_names_its_class_as_written_or_as_the_same_number() {
        let classes: Vec<String> = ["0", "1", "2"].iter().map(|c| c.to_string()).collect();
        assert_eq!(class_index(&classes, "2"), Some(2));
        assert_eq!(class_index(&classes, "1.0"), Some(1));
        assert_eq!(class_index(&classes, " 0 "), Some(0));
        assert_eq!(class_index(&classes, "3"), None);
        let named: Vec<String> = ["setosa", "virginica"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(class_index(&named, "virginica"), Some(1));
        assert_eq!(class_index(&named, "1"), None);
    }

    #[test]
    fn class_counts_count_each_predicted_index() {
        assert_eq!(class_counts(&[2, 0, 2, 2], 3), vec![1, 0, 3]);
        assert_eq!(class_counts(&[], 2), vec![0, 0]);
    }

    /// Hand-computed cases (scikit-learn gives the same: mean_absolute_error, mean_squared_error,
    /// r2_score, log_loss).
    #[test]
    fn a_probability_tensor_must_hold_probabilities() {
        let shape = [-1, 3];
        assert!(probabilities_or_refuse("p", &shape, &[0.2, 0.3, 0.5, 1.0, 0.0, 0.0], 3).is_ok());
        let logits = probabilities_or_refuse("scores", &shape, &[2.0, -1.0, 0.5], 3).unwrap_err();
        let text = logits.to_string();
        assert!(
            text.contains("\"scores\" [?, 3] is not probabilities"),
            "{text}"
        );
        assert!(text.contains("from -1.0000 to 2.0000"), "{text}");
        // In [0, 1] but not summing to 1 (a reconstruction of scaled features).
        assert!(probabilities_or_refuse("r", &shape, &[0.9, 0.8, 0.7], 3).is_err());
    }

    #[test]
    fn regression_metrics_and_log_loss_on_fixed_cases() {
        let (mae, rmse, r2) = regression_metrics(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]);
        assert!((mae - 0.5).abs() < 1e-12);
        assert!((rmse - 0.375f64.sqrt()).abs() < 1e-12);
        assert!((r2.unwrap() - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert_eq!(regression_metrics(&[1.0, 1.0], &[1.0, 2.0]).2, None);
        // log_loss([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]) = 0.2283...
        let p = [0.9f32, 0.1, 0.2, 0.8, 0.3, 0.7];
        let want = -((0.9f64).ln() + (0.8f64).ln() + (0.7f64).ln()) / 3.0;
        assert!((log_loss(&[0, 1, 1], &p, 2) - want).abs() < 1e-6);
        // A zero probability for the true class is clipped, not infinite.
        assert!(log_loss(&[1], &[1.0, 0.0], 2).is_finite());
    }
}
