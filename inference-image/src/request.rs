//! Parsing and validating `POST /v1/predict` bodies. Every value is read without failing the whole
//! parse, so a bad cell is reported with its row and feature instead of a bare JSON error.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::card::{FeatureStats, MissingPolicy, ModelCard};

/// The most problems listed in one error response.
const MAX_ISSUES: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub rows: Vec<Row>,
}

/// One row as sent: an array in model-card order, or an object keyed by feature name.
#[derive(Debug)]
pub enum Row {
    /// An array of plain numbers (the common case, kept without per-cell tags).
    Numbers(Vec<f64>),
    /// An array with at least one cell that is not a number.
    Values(Vec<Cell>),
    Named(Vec<(String, Cell)>),
    Invalid(&'static str),
}

/// One JSON value where a number is expected.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Number(f64),
    Null,
    Text(String),
    Other(&'static str),
}

/// One problem with one value: which row, which feature, what is wrong.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Issue {
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    pub problem: String,
    /// How monitoring counts it.
    #[serde(skip)]
    pub kind: IssueKind,
}

/// What kind of problem an issue is, for the data-quality counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssueKind {
    /// A feature left out or sent as null.
    Missing,
    /// NaN, infinite, not a number, or outside the plausible range.
    Invalid,
    /// The row itself is malformed (wrong width, unknown or repeated feature names).
    #[default]
    Shape,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.feature {
            Some(feature) => write!(f, "row {}, feature {feature:?}: {}", self.row, self.problem),
            None => write!(f, "row {}: {}", self.row, self.problem),
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum RequestError {
    Empty,
    TooManyRows { rows: usize, limit: usize },
    Invalid(Vec<Issue>),
}

/// What validation needs from the card, prepared once at start-up.
#[derive(Debug, Clone)]
pub struct Schema {
    pub policy: MissingPolicy,
    /// Per feature: the graph takes it as an integer.
    integer: Vec<bool>,
    /// Per feature: the value a missing one becomes under `impute`.
    impute: Vec<f64>,
}

impl Schema {
    pub fn new(card: &ModelCard) -> Self {
        Self {
            policy: card.missing_values.policy,
            integer: card.integer_features(),
            impute: card.impute_values(),
        }
    }
}

/// A row refused under the per-row policy, with its problems.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRow {
    pub row: usize,
    pub issues: Vec<Issue>,
}

/// Exact per-feature data-quality counts of a request that had problems but was scored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quality {
    pub missing: Vec<u64>,
    pub invalid: Vec<u64>,
    pub imputed: Vec<u64>,
    /// Rows refused under the per-row policy.
    pub refused_rows: u64,
}

impl Quality {
    fn new(width: usize) -> Self {
        Self {
            missing: vec![0; width],
            invalid: vec![0; width],
            imputed: vec![0; width],
            refused_rows: 0,
        }
    }
}

/// The rows to score and what was done to get them.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The rows to score, row-major in model-card order.
    pub matrix: Vec<f64>,
    /// The request's index of each scored row, when some were refused (per-row policy).
    pub rows: Option<Vec<usize>>,
    /// Cells filled in under the impute policy: (scored row, feature).
    pub imputed: Vec<(usize, usize)>,
    /// Rows refused under the per-row policy.
    pub refused: Vec<RefusedRow>,
    /// Set when any value was missing, invalid or imputed.
    pub quality: Option<Quality>,
}

impl Parsed {
    pub fn scored_rows(&self, width: usize) -> usize {
        self.matrix.len() / width
    }

    /// The request's index of scored row `i`.
    pub fn request_row(&self, i: usize) -> usize {
        self.rows.as_ref().map_or(i, |r| r[i])
    }
}

/// The most problems listed for one refused row.
const MAX_ROW_ISSUES: usize = 10;

/// Turns validated rows into one row-major matrix in model-card order, applying the card's
/// missing-value policy: `reject` refuses the request for any problem; `impute` fills missing
/// values (and refuses the request for any other problem); `per-row` scores the rows without
/// problems and reports each other row.
pub fn to_matrix(
    req: &PredictRequest,
    card: &ModelCard,
    schema: &Schema,
    max_rows: usize,
) -> Result<Parsed, RequestError> {
    if req.rows.is_empty() {
        return Err(RequestError::Empty);
    }
    if req.rows.len() > max_rows {
        return Err(RequestError::TooManyRows {
            rows: req.rows.len(),
            limit: max_rows,
        });
    }
    let width = card.width();
    let mut out = Parsed {
        matrix: Vec::with_capacity(req.rows.len() * width),
        ..Parsed::default()
    };
    let mut issues = Vec::new();
    let mut row_issues: Vec<Issue> = Vec::new();
    // Only object rows need the name-to-slot table.
    let mut slots: Vec<Option<&Cell>> = Vec::new();
    for (i, row) in req.rows.iter().enumerate() {
        let start = out.matrix.len();
        row_issues.clear();
        let mut problem = |feature: Option<&str>, (kind, problem): (IssueKind, String)| {
            row_issues.push(Issue {
                row: i,
                feature: feature.map(str::to_string),
                problem,
                kind,
            });
        };
        let shape = |text: String| (IssueKind::Shape, text);
        // A missing value keeps its slot (NaN) so that imputing can fill it in place.
        let mut push = |j: usize, result: Result<f64, (IssueKind, String)>| match result
            .and_then(|v| integral(v, schema.integer[j]))
        {
            Ok(v) => {
                out.matrix.push(v);
                None
            }
            Err(p) => {
                out.matrix.push(f64::NAN);
                Some(p)
            }
        };
        match row {
            Row::Invalid(kind) => problem(
                None,
                shape(format!("is {kind}; expected an array of {width} numbers or an object keyed by feature name")),
            ),
            Row::Numbers(values) if values.len() == width => {
                for (j, (&x, feature)) in values.iter().zip(&card.features).enumerate() {
                    if let Some(p) = push(j, in_range(x, feature)) {
                        problem(Some(&feature.name), p);
                    }
                }
            }
            Row::Numbers(values) => problem(None, shape(wrong_width(values.len(), card))),
            Row::Values(cells) if cells.len() != width => {
                problem(None, shape(wrong_width(cells.len(), card)))
            }
            Row::Values(cells) => {
                for (j, (cell, feature)) in cells.iter().zip(&card.features).enumerate() {
                    if let Some(p) = push(j, value(cell, feature)) {
                        problem(Some(&feature.name), p);
                    }
                }
            }
            Row::Named(pairs) => {
                slots.clear();
                slots.resize(width, None);
                for (name, cell) in pairs {
                    match card.features.iter().position(|f| &f.name == name) {
                        None => problem(Some(name), shape("is not a feature of this model".to_string())),
                        Some(j) if slots[j].is_some() => {
                            problem(Some(name), shape("is given twice".to_string()))
                        }
                        Some(j) => slots[j] = Some(cell),
                    }
                }
                for (j, (slot, feature)) in slots.iter().zip(&card.features).enumerate() {
                    let result = match slot {
                        None => Err((IssueKind::Missing, "is missing".to_string())),
                        Some(cell) => value(cell, feature),
                    };
                    if let Some(p) = push(j, result) {
                        problem(Some(&feature.name), p);
                    }
                }
            }
        }
        if row_issues.is_empty() {
            if let Some(rows) = &mut out.rows {
                rows.push(i);
            }
            continue;
        }
        let quality = out.quality.get_or_insert_with(|| Quality::new(width));
        for issue in &row_issues {
            let j = issue
                .feature
                .as_ref()
                .and_then(|n| card.features.iter().position(|f| &f.name == n));
            match (issue.kind, j) {
                (IssueKind::Missing, Some(j)) => quality.missing[j] += 1,
                (IssueKind::Invalid, Some(j)) => quality.invalid[j] += 1,
                _ => {}
            }
        }
        let only_missing = row_issues.iter().all(|p| p.kind == IssueKind::Missing);
        match schema.policy {
            MissingPolicy::Impute if only_missing && out.matrix.len() == start + width => {
                let scored_row = start / width;
                for j in 0..width {
                    if out.matrix[start + j].is_nan() {
                        out.matrix[start + j] = schema.impute[j];
                        quality.imputed[j] += 1;
                        out.imputed.push((scored_row, j));
                    }
                }
                if let Some(rows) = &mut out.rows {
                    rows.push(i);
                }
            }
            MissingPolicy::PerRow => {
                out.matrix.truncate(start);
                quality.refused_rows += 1;
                // From the first refused row on, the scored rows' request indices are listed.
                out.rows.get_or_insert_with(|| (0..i).collect());
                row_issues.truncate(MAX_ROW_ISSUES);
                out.refused.push(RefusedRow {
                    row: i,
                    issues: std::mem::take(&mut row_issues),
                });
            }
            _ => {
                out.matrix.truncate(start);
                let room = MAX_ISSUES.saturating_sub(issues.len());
                issues.extend(row_issues.drain(..).take(room));
            }
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(RequestError::Invalid(issues))
    }
}

/// The value as the graph will take it: integers for int64 inputs.
fn integral(v: f64, integer: bool) -> Result<f64, (IssueKind, String)> {
    if integer && v.fract() != 0.0 {
        return Err((
            IssueKind::Invalid,
            format!("{v} is not a whole number; the model takes this feature as an integer"),
        ));
    }
    Ok(v)
}

fn wrong_width(n: usize, card: &ModelCard) -> String {
    format!(
        "has {n} values; the model takes {} features in this order: {}",
        card.width(),
        card.feature_names().collect::<Vec<_>>().join(", ")
    )
}

/// A cell's value if it is a number within the feature's plausible range (from the model card).
fn value(cell: &Cell, feature: &FeatureStats) -> Result<f64, (IssueKind, String)> {
    let invalid = |text: String| Err((IssueKind::Invalid, text));
    match cell {
        Cell::Number(x) => in_range(*x, feature),
        Cell::Null => Err((IssueKind::Missing, "is null (missing value)".to_string())),
        Cell::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "nan" => invalid("is NaN".to_string()),
            "inf" | "+inf" | "infinity" | "+infinity" | "-inf" | "-infinity" => {
                invalid(format!("is infinite ({t:?})"))
            }
            _ => invalid(format!(
                "is the string {:?}; expected a number",
                truncate(t, 40)
            )),
        },
        Cell::Other(kind) => invalid(format!("is {kind}; expected a number")),
    }
}

/// A number as sent, if it fits a 32-bit float and the feature's plausible range. The bounds are
/// compared on the value as sent (f64), not its float32 rounding, so the documented bounds hold
/// exactly.
fn in_range(x: f64, feature: &FeatureStats) -> Result<f64, (IssueKind, String)> {
    if !(x as f32).is_finite() {
        return Err((
            IssueKind::Invalid,
            format!("{x} is outside the range of a 32-bit float"),
        ));
    }
    if x < feature.valid_min || x > feature.valid_max {
        return Err((
            IssueKind::Invalid,
            format!(
                "{x} is outside the plausible range {} to {} (model card)",
                feature.valid_min, feature.valid_max
            ),
        ));
    }
    Ok(x)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row (array of numbers or object of feature: number)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
                let hint = seq.size_hint().unwrap_or(32);
                let mut numbers = Vec::with_capacity(hint);
                while let Some(c) = seq.next_element::<Cell>()? {
                    if let Cell::Number(x) = c {
                        numbers.push(x);
                        continue;
                    }
                    // Something other than a number: keep every cell as sent, for the report.
                    let mut cells: Vec<Cell> = numbers.into_iter().map(Cell::Number).collect();
                    cells.push(c);
                    while let Some(c) = seq.next_element::<Cell>()? {
                        cells.push(c);
                    }
                    return Ok(Row::Values(cells));
                }
                Ok(Row::Numbers(numbers))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(32));
                while let Some((k, v)) = map.next_entry::<String, Cell>()? {
                    pairs.push((k, v));
                }
                Ok(Row::Named(pairs))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Row, E> {
                Ok(Row::Invalid("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Row, E> {
                Ok(Row::Invalid("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Row, E> {
                Ok(Row::Invalid("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Row, E> {
                Ok(Row::Invalid("a number"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Row, E> {
                Ok(Row::Invalid("a string"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Row, E> {
                Ok(Row::Invalid("null"))
            }
        }
        d.deserialize_any(RowVisitor)
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
                Ok(Cell::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell::Number(v as f64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Cell, E> {
                Ok(Cell::Other("a boolean"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell::Text(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Cell::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Cell::Other("an object"))
            }
        }
        d.deserialize_any(CellVisitor)
    }
}

/// Issues for rows whose reconstruction overflowed (non-finite error): such a row lies so far from
/// the training data that the model cannot score it. Names the feature farthest from its training
/// mean, in standard deviations.
pub fn overflow_issues(errors: &[f64], matrix: &[f64], card: &ModelCard) -> Vec<Issue> {
    let width = card.width();
    errors
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_finite())
        .take(MAX_ISSUES)
        .map(|(i, _)| {
            let row = &matrix[i * width..(i + 1) * width];
            let (value, feature, z) = row
                .iter()
                .zip(&card.features)
                .map(|(&v, f)| (v, f, ((v - f.mean) / f.std).abs()))
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .expect("rows are not empty");
            Issue {
                row: i,
                kind: IssueKind::Invalid,
                feature: Some(feature.name.clone()),
                problem: format!(
                    "{value} is {z:.3e} standard deviations from the training mean, so far that the model's output overflows (plausible range {} to {})",
                    feature.valid_min, feature.valid_max
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> ModelCard {
        ModelCard::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/model/wbc-autoencoder"
        )))
        .unwrap()
    }

    #[test]
    fn an_overflowing_row_names_the_feature_farthest_from_training() {
        let card = card();
        let mut matrix: Vec<f64> = card.features.iter().map(|f| f.mean).collect();
        matrix.extend(matrix.clone());
        matrix[card.width() + 7] = 1e30;
        let issues = overflow_issues(&[0.1, f64::INFINITY], &matrix, &card);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].row, 1);
        assert_eq!(
            issues[0].feature.as_deref(),
            Some(card.features[7].name.as_str())
        );
        assert!(issues[0].problem.contains("overflows"));
        assert!(overflow_issues(&[0.1, 0.2], &matrix, &card).is_empty());
    }

    fn parse(card: &ModelCard, body: &str) -> Result<Parsed, RequestError> {
        let req: PredictRequest = serde_json::from_str(body).unwrap();
        to_matrix(&req, card, &Schema::new(card), 1024)
    }

    /// Three rows as JSON: the training means, with row 1's feature 2 null and row 2's feature 0
    /// left out (named row).
    fn rows_with_gaps(card: &ModelCard) -> String {
        let means: Vec<f64> = card.features.iter().map(|f| f.mean).collect();
        let mut with_null: Vec<serde_json::Value> = means.iter().map(|&m| m.into()).collect();
        with_null[2] = serde_json::Value::Null;
        let named: serde_json::Map<String, serde_json::Value> = card
            .features
            .iter()
            .skip(1)
            .map(|f| (f.name.clone(), f.mean.into()))
            .collect();
        serde_json::json!({"rows": [means, with_null, named]}).to_string()
    }

    #[test]
    fn reject_refuses_the_request_for_one_missing_value() {
        let card = card();
        match parse(&card, &rows_with_gaps(&card)) {
            Err(RequestError::Invalid(issues)) => {
                assert_eq!(issues.len(), 2);
                assert_eq!((issues[0].row, issues[0].kind), (1, IssueKind::Missing));
                assert_eq!(
                    issues[1].feature.as_deref(),
                    Some(card.features[0].name.as_str())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn impute_fills_missing_values_and_counts_them() {
        let mut card = card();
        card.missing_values.policy = MissingPolicy::Impute;
        card.missing_values.impute_with = crate::card::ImputeWith::Median;
        let parsed = parse(&card, &rows_with_gaps(&card)).unwrap();
        let w = card.width();
        assert_eq!(parsed.matrix.len(), 3 * w);
        assert_eq!(parsed.matrix[w + 2], card.features[2].quantiles["p50"]);
        assert_eq!(parsed.matrix[2 * w], card.features[0].quantiles["p50"]);
        assert_eq!(parsed.imputed, vec![(1, 2), (2, 0)]);
        assert!(parsed.rows.is_none() && parsed.refused.is_empty());
        let q = parsed.quality.unwrap();
        assert_eq!(
            (q.missing[2], q.imputed[2], q.missing[0], q.imputed[0]),
            (1, 1, 1, 1)
        );
        assert_eq!(q.missing.iter().sum::<u64>(), 2);

        // Anything other than a missing value still refuses the request.
        let body = rows_with_gaps(&card).replacen("null", "\"12,5\"", 1);
        assert!(
            matches!(parse(&card, &body), Err(RequestError::Invalid(i)) if i[0].kind == IssueKind::Invalid)
        );
    }

    #[test]
    fn per_row_scores_the_complete_rows_and_lists_the_others() {
        let mut card = card();
        card.missing_values.policy = MissingPolicy::PerRow;
        let parsed = parse(&card, &rows_with_gaps(&card)).unwrap();
        assert_eq!(parsed.matrix.len(), card.width());
        assert_eq!(parsed.rows, Some(vec![0]));
        assert_eq!(parsed.request_row(0), 0);
        assert_eq!(
            parsed.refused.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(parsed
            .refused
            .iter()
            .all(|r| r.issues.iter().all(|i| i.row == r.row)));
        let q = parsed.quality.unwrap();
        assert_eq!((q.refused_rows, q.imputed.iter().sum::<u64>()), (2, 0));

        // A refused first row: the scored row keeps its request index.
        let mut body: serde_json::Value = serde_json::from_str(&rows_with_gaps(&card)).unwrap();
        body["rows"].as_array_mut().unwrap().swap(0, 1);
        let parsed = parse(&card, &body.to_string()).unwrap();
        assert_eq!(parsed.rows, Some(vec![1]));
        assert_eq!(parsed.request_row(0), 1);
    }

    #[test]
    fn an_integer_feature_refuses_a_fraction() {
        let mut card = card();
        card.inputs = vec![
            crate::card::InputSpec {
                name: "counts".into(),
                dtype: crate::card::InputType::Int64,
                features: vec![card.features[0].name.clone()],
            },
            crate::card::InputSpec {
                name: "rest".into(),
                dtype: crate::card::InputType::Float32,
                features: card.features[1..].iter().map(|f| f.name.clone()).collect(),
            },
        ];
        card.check().unwrap();
        let mut row: Vec<f64> = card.features.iter().map(|f| f.mean.round()).collect();
        assert!(parse(
            &card,
            &serde_json::json!({"rows": [row.clone()]}).to_string()
        )
        .is_ok());
        row[0] += 0.5;
        match parse(&card, &serde_json::json!({"rows": [row]}).to_string()) {
            Err(RequestError::Invalid(i)) => {
                assert!(i[0].problem.contains("not a whole number"), "{i:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_parse_without_failing_on_bad_cells() {
        let req: PredictRequest = serde_json::from_str(
            r#"{"rows": [[1, null, "x", true, [1], {"a": 1}], {"f": 2.5}, 7]}"#,
        )
        .unwrap();
        match &req.rows[0] {
            Row::Values(cells) => assert_eq!(
                cells,
                &vec![
                    Cell::Number(1.0),
                    Cell::Null,
                    Cell::Text("x".into()),
                    Cell::Other("a boolean"),
                    Cell::Other("an array"),
                    Cell::Other("an object"),
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&req.rows[1], Row::Named(p) if p == &vec![("f".to_string(), Cell::Number(2.5))])
        );
        assert!(matches!(req.rows[2], Row::Invalid("a number")));
    }
}
