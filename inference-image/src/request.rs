//! Parsing and validating `POST /v1/predict` bodies. Every value is read without failing the whole
//! parse, so a bad cell is reported with its row and feature instead of a bare JSON error.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::card::{FeatureStats, ModelCard};

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

/// Turns validated rows into one row-major matrix in model-card order.
pub fn to_matrix(
    req: &PredictRequest,
    card: &ModelCard,
    max_rows: usize,
) -> Result<Vec<f32>, RequestError> {
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
    let mut matrix = Vec::with_capacity(req.rows.len() * width);
    let mut issues = Vec::new();
    // Only object rows need the name-to-slot table.
    let mut slots: Vec<Option<&Cell>> = Vec::new();
    for (i, row) in req.rows.iter().enumerate() {
        let mut problem = |feature: Option<&str>, (kind, problem): (IssueKind, String)| {
            if issues.len() < MAX_ISSUES {
                issues.push(Issue {
                    row: i,
                    feature: feature.map(str::to_string),
                    problem,
                    kind,
                });
            }
        };
        let shape = |text: String| (IssueKind::Shape, text);
        match row {
            Row::Invalid(kind) => problem(
                None,
                shape(format!("is {kind}; expected an array of {width} numbers or an object keyed by feature name")),
            ),
            Row::Numbers(values) if values.len() == width => {
                for (&x, feature) in values.iter().zip(&card.features) {
                    match in_range(x, feature) {
                        Ok(v) => matrix.push(v),
                        Err(p) => problem(Some(&feature.name), p),
                    }
                }
            }
            Row::Numbers(values) => problem(None, shape(wrong_width(values.len(), card))),
            Row::Values(cells) => {
                if cells.len() != width {
                    problem(None, shape(wrong_width(cells.len(), card)));
                    continue;
                }
                for (cell, feature) in cells.iter().zip(&card.features) {
                    match value(cell, feature) {
                        Ok(v) => matrix.push(v),
                        Err(p) => problem(Some(&feature.name), p),
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
                for (slot, feature) in slots.iter().zip(&card.features) {
                    match slot {
                        None => problem(Some(&feature.name), (IssueKind::Missing, "is missing".to_string())),
                        Some(cell) => match value(cell, feature) {
                            Ok(v) => matrix.push(v),
                            Err(p) => problem(Some(&feature.name), p),
                        },
                    }
                }
            }
        }
    }
    if issues.is_empty() {
        Ok(matrix)
    } else {
        Err(RequestError::Invalid(issues))
    }
}

fn wrong_width(n: usize, card: &ModelCard) -> String {
    format!(
        "has {n} values; the model takes {} features in this order: {}",
        card.width(),
        card.feature_names().collect::<Vec<_>>().join(", ")
    )
}

/// A cell's value if it is a number within the feature's plausible range (from the model card).
fn value(cell: &Cell, feature: &FeatureStats) -> Result<f32, (IssueKind, String)> {
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
fn in_range(x: f64, feature: &FeatureStats) -> Result<f32, (IssueKind, String)> {
    let v = x as f32;
    if !v.is_finite() {
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
    Ok(v)
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
pub fn overflow_issues(errors: &[f64], matrix: &[f32], card: &ModelCard) -> Vec<Issue> {
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
                .map(|(&v, f)| (v, f, ((f64::from(v) - f.mean) / f.std).abs()))
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .expect("rows are not empty");
            Issue {
                row: i,
                kind: IssueKind::Invalid,
                feature: Some(feature.name.clone()),
                problem: format!(
                    "{value} is {z:.3e} standard deviations from the training mean, so far that the model's reconstruction overflows (plausible range {} to {})",
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
        let mut matrix: Vec<f32> = card.features.iter().map(|f| f.mean as f32).collect();
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
