//! Ground truth arrives late: predictions are remembered (bounded by rows and age) so that
//! `POST /v1/feedback` can attach a true label to a scored row.
//!
//! Storage is two rings, with no per-request allocation: one entry per request (its minute and
//! first row) and one error and label flag per row. A request id encodes the request's sequence
//! number (`request_id`), so finding a prediction is arithmetic, not a hash lookup; a million rows
//! take about 9 MB plus 16 bytes per request.

use std::collections::VecDeque;

use serde::Deserialize;
use uuid::Uuid;

use super::bucket::Labelled;
use super::request_id::IdCodec;

/// Most scored rows remembered for feedback; the oldest predictions are forgotten first.
pub const MAX_ROWS: usize = 1_000_000;
/// Predictions older than this no longer accept feedback.
pub const RETENTION_MINUTES: i64 = 24 * 60;
/// Most items in one feedback request.
pub const MAX_ITEMS: usize = 10_000;

/// One remembered request: the minute it was scored and the global index of its first row.
#[derive(Clone, Copy)]
struct Entry {
    minute: i64,
    first_row: u64,
}

/// What a label is for the served model, and what is needed to turn it into a `Labelled` row.
#[derive(Debug, Clone, Default)]
pub enum LabelKind {
    /// Autoencoder: 1 (or true) is an anomaly.
    #[default]
    Anomaly,
    /// Classifier: a class, by name or by the same number; a binary one also takes true/false for
    /// its positive class.
    Class {
        classes: Vec<String>,
        /// Binary: the positive class and the decision threshold on its probability.
        binary: Option<(usize, f64)>,
    },
    /// Regressor: the true value.
    Value,
}

impl LabelKind {
    pub fn of(card: &crate::card::ModelCard) -> Self {
        match card.task {
            crate::card::Task::Autoencoder => LabelKind::Anomaly,
            crate::card::Task::Regressor => LabelKind::Value,
            crate::card::Task::Classifier => LabelKind::Class {
                classes: card
                    .classifier
                    .as_ref()
                    .map(|c| c.classes.clone())
                    .unwrap_or_default(),
                binary: card
                    .positive_class()
                    .map(|p| (p, card.score.threshold.unwrap_or(0.5))),
            },
        }
    }

    /// Multi-class: the probabilities remembered per row (a binary classifier's score is enough).
    fn remembered_probabilities(&self) -> usize {
        match self {
            LabelKind::Class {
                classes,
                binary: None,
            } => classes.len(),
            _ => 0,
        }
    }
}

#[derive(Default)]
pub struct Registry {
    kind: LabelKind,
    ids: IdCodec,
    /// Sequence number of `requests[0]`.
    first_seq: u64,
    requests: VecDeque<Entry>,
    /// Global row index of `errors[0]`.
    first_row: u64,
    errors: VecDeque<f64>,
    labelled: VecDeque<bool>,
    /// Multi-class: every class's probability, `kind.remembered_probabilities()` per row.
    probabilities: VecDeque<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    pub feedback: Vec<FeedbackItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackItem {
    pub request_id: serde_json::Value,
    #[serde(default)]
    pub row: Option<serde_json::Value>,
    pub label: serde_json::Value,
}

/// Why an item was refused, in order of precedence for the response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    Malformed,
    Unknown,
    Duplicate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemProblem {
    pub item: usize,
    pub refusal: Refusal,
    pub problem: String,
}

impl Registry {
    pub fn new(kind: LabelKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// Remembers the scores (and, for a multi-class classifier, the probabilities) of one scored
    /// request and returns its request id.
    pub fn remember(&mut self, minute: i64, errors: &[f64], probabilities: &[f32]) -> Uuid {
        self.expire(minute);
        let seq = self.first_seq + self.requests.len() as u64;
        self.requests.push_back(Entry {
            minute,
            first_row: self.first_row + self.errors.len() as u64,
        });
        self.errors.extend(errors);
        self.labelled
            .extend(std::iter::repeat_n(false, errors.len()));
        let k = self.kind.remembered_probabilities();
        if k > 0 {
            // Rows without probabilities (refused under the per-row policy) keep their slots.
            if probabilities.len() == errors.len() * k {
                self.probabilities.extend(probabilities);
            } else {
                self.probabilities
                    .extend(std::iter::repeat_n(f32::NAN, errors.len() * k));
            }
        }
        while self.errors.len() > MAX_ROWS {
            self.forget_oldest();
        }
        self.ids.encode(seq)
    }

    fn expire(&mut self, now_minute: i64) {
        while self
            .requests
            .front()
            .is_some_and(|p| now_minute - p.minute > RETENTION_MINUTES)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if self.requests.pop_front().is_none() {
            return;
        }
        self.first_seq += 1;
        let next_first = self
            .requests
            .front()
            .map_or(self.first_row + self.errors.len() as u64, |e| e.first_row);
        let rows = (next_first - self.first_row) as usize;
        self.errors.drain(..rows);
        self.labelled.drain(..rows);
        let k = self.kind.remembered_probabilities();
        self.probabilities.drain(..rows * k);
        self.first_row = next_first;
    }

    pub fn len_rows(&self) -> usize {
        self.errors.len()
    }

    /// The positions in the row rings of the request `id` scored, if it is still remembered.
    fn rows_of(&self, id: &Uuid) -> Option<std::ops::Range<usize>> {
        let seq = self.ids.decode(id)?;
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        let entry = self.requests.get(i)?;
        let end = self
            .requests
            .get(i + 1)
            .map_or(self.first_row + self.errors.len() as u64, |e| e.first_row);
        Some((entry.first_row - self.first_row) as usize..(end - self.first_row) as usize)
    }

    /// Validates every item first and records nothing unless all are acceptable.
    pub fn label(
        &mut self,
        req: &FeedbackRequest,
        now_minute: i64,
    ) -> Result<Vec<Labelled>, Vec<ItemProblem>> {
        self.expire(now_minute);
        let mut problems = Vec::new();
        // Positions in the row rings, with their labels.
        let mut accepted: Vec<(usize, Truth)> = Vec::with_capacity(req.feedback.len());
        let refuse = |problems: &mut Vec<ItemProblem>, item, refusal, problem: String| {
            if problems.len() < 50 {
                problems.push(ItemProblem {
                    item,
                    refusal,
                    problem,
                });
            }
        };
        if req.feedback.is_empty() {
            refuse(
                &mut problems,
                0,
                Refusal::Malformed,
                "feedback is empty; send at least one item".into(),
            );
        }
        if req.feedback.len() > MAX_ITEMS {
            refuse(
                &mut problems,
                0,
                Refusal::Malformed,
                format!(
                    "{} items; at most {MAX_ITEMS} per request",
                    req.feedback.len()
                ),
            );
            return Err(problems);
        }
        for (i, item) in req.feedback.iter().enumerate() {
            let Some(id) = item
                .request_id
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
            else {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Malformed,
                    format!("request_id {} is not a UUID", item.request_id),
                );
                continue;
            };
            let label = match self.kind.truth(&item.label) {
                Ok(t) => t,
                Err(problem) => {
                    refuse(&mut problems, i, Refusal::Malformed, problem);
                    continue;
                }
            };
            let row = match &item.row {
                None => 0,
                // JSON Schema counts 3.0 as an integer too.
                Some(v) => match v
                    .as_f64()
                    .filter(|r| *r >= 0.0 && r.fract() == 0.0 && *r < 1e15)
                {
                    Some(r) => r as usize,
                    None => {
                        refuse(
                            &mut problems,
                            i,
                            Refusal::Malformed,
                            format!("row {v} is not a row index"),
                        );
                        continue;
                    }
                },
            };
            let Some(rows) = self.rows_of(&id) else {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Unknown,
                    format!("request_id {id} is unknown or expired (predictions accept feedback for {} hours)", RETENTION_MINUTES / 60),
                );
                continue;
            };
            if row >= rows.len() {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Malformed,
                    format!(
                        "request {id} scored {} rows; row {row} does not exist",
                        rows.len()
                    ),
                );
                continue;
            }
            let at = rows.start + row;
            if self.errors[at].is_nan() {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Malformed,
                    format!(
                        "row {row} of request {id} was refused, so it has no prediction to label"
                    ),
                );
                continue;
            }
            if self.labelled[at] || accepted.iter().any(|(a, _)| *a == at) {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Duplicate,
                    format!("row {row} of request {id} already has a label"),
                );
                continue;
            }
            accepted.push((at, label));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.refusal, p.item));
            return Err(problems);
        }
        Ok(accepted
            .into_iter()
            .map(|(at, truth)| {
                self.labelled[at] = true;
                self.labelled_row(at, truth)
            })
            .collect())
    }

    /// The labelled row for the prediction at `at` in the rings.
    fn labelled_row(&self, at: usize, truth: Truth) -> Labelled {
        let score = self.errors[at];
        match (&self.kind, truth) {
            (LabelKind::Anomaly, Truth::Flag(label)) => Labelled {
                error: score,
                label,
                ..Labelled::default()
            },
            (
                LabelKind::Class {
                    binary: Some((positive, threshold)),
                    ..
                },
                Truth::Class(t),
            ) => {
                let predicted = if score > *threshold {
                    *positive
                } else {
                    1 - *positive
                };
                Labelled {
                    error: score,
                    label: t == *positive,
                    truth: t as f64,
                    predicted: predicted as u32,
                    p_true: (if t == *positive { score } else { 1.0 - score }) as f32,
                }
            }
            (LabelKind::Class { .. }, Truth::Class(t)) => {
                let k = self.kind.remembered_probabilities();
                let p: Vec<f32> = self
                    .probabilities
                    .range(at * k..(at + 1) * k)
                    .copied()
                    .collect();
                Labelled {
                    error: score,
                    label: false,
                    truth: t as f64,
                    predicted: crate::scorer::argmax(&p) as u32,
                    p_true: p[t],
                }
            }
            (_, Truth::Value(v)) => Labelled {
                error: score,
                label: false,
                truth: v,
                ..Labelled::default()
            },
            (_, Truth::Flag(_) | Truth::Class(_)) => Labelled {
                error: score,
                ..Labelled::default()
            },
        }
    }
}

/// A label as the served task reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Truth {
    Flag(bool),
    Class(usize),
    Value(f64),
}

impl LabelKind {
    fn truth(&self, label: &serde_json::Value) -> Result<Truth, String> {
        use serde_json::Value;
        match self {
            LabelKind::Anomaly => match label {
                Value::Bool(b) => Ok(Truth::Flag(*b)),
                v if v.as_u64() == Some(0) => Ok(Truth::Flag(false)),
                v if v.as_u64() == Some(1) => Ok(Truth::Flag(true)),
                v => Err(format!("label {v} must be 0, 1, false or true")),
            },
            LabelKind::Value => label
                .as_f64()
                .filter(|v| v.is_finite())
                .map(Truth::Value)
                .ok_or_else(|| format!("label {label} must be a number (the true value)")),
            LabelKind::Class { classes, binary } => {
                let text = match label {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => {
                        if let Some((positive, _)) = binary {
                            return Ok(Truth::Class(if *b { *positive } else { 1 - *positive }));
                        }
                        None
                    }
                    _ => None,
                };
                text.as_deref()
                    .and_then(|t| crate::card_builder::class_index(classes, t))
                    .map(Truth::Class)
                    .ok_or_else(|| {
                        format!(
                            "label {label} is not one of the model's classes ({}){}",
                            classes.join(", "),
                            if binary.is_some() {
                                ", true or false"
                            } else {
                                ""
                            }
                        )
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(items: serde_json::Value) -> FeedbackRequest {
        serde_json::from_value(serde_json::json!({ "feedback": items })).unwrap()
    }

    #[test]
    fn a_multi_class_label_names_a_class_and_finds_its_probability() {
        let classes: Vec<String> = ["cat", "dog", "emu"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let mut r = Registry::new(LabelKind::Class {
            classes,
            binary: None,
        });
        let id = r.remember(5, &[0.6, 0.5], &[0.1, 0.6, 0.3, 0.5, 0.2, 0.3]);
        let got = r
            .label(
                &request(serde_json::json!([
                    {"request_id": id.to_string(), "row": 0, "label": "emu"},
                    {"request_id": id.to_string(), "row": 1, "label": "cat"},
                ])),
                5,
            )
            .unwrap();
        assert_eq!(
            (got[0].truth, got[0].predicted, got[0].p_true),
            (2.0, 1, 0.3)
        );
        assert_eq!(
            (got[1].truth, got[1].predicted, got[1].p_true),
            (0.0, 0, 0.5)
        );
        let id = r.remember(5, &[0.6], &[0.1, 0.6, 0.3]);
        let bad = r
            .label(
                &request(serde_json::json!([{"request_id": id.to_string(), "label": "cow"}])),
                5,
            )
            .unwrap_err();
        assert!(bad[0]
            .problem
            .contains("not one of the model's classes (cat, dog, emu)"));
    }

    #[test]
    fn a_binary_label_may_be_a_class_or_true_and_false() {
        let classes: Vec<String> = ["no", "yes"].iter().map(|c| c.to_string()).collect();
        let mut r = Registry::new(LabelKind::Class {
            classes,
            binary: Some((1, 0.5)),
        });
        let id = r.remember(5, &[0.8, 0.3], &[]);
        let got = r
            .label(
                &request(serde_json::json!([
                    {"request_id": id.to_string(), "row": 0, "label": "no"},
                    {"request_id": id.to_string(), "row": 1, "label": true},
                ])),
                5,
            )
            .unwrap();
        assert_eq!((got[0].label, got[0].predicted), (false, 1));
        assert!((got[0].p_true - 0.2).abs() < 1e-6);
        assert_eq!((got[1].label, got[1].predicted), (true, 0));
        assert!((got[1].p_true - 0.3).abs() < 1e-6);
    }

    #[test]
    fn a_regressor_label_is_the_true_value() {
        let mut r = Registry::new(LabelKind::Value);
        let id = r.remember(5, &[140.0], &[]);
        let got = r
            .label(
                &request(serde_json::json!([{"request_id": id.to_string(), "label": 151.5}])),
                5,
            )
            .unwrap();
        assert_eq!((got[0].error, got[0].truth), (140.0, 151.5));
        let id = r.remember(5, &[1.0], &[]);
        let bad = r
            .label(
                &request(serde_json::json!([{"request_id": id.to_string(), "label": "high"}])),
                5,
            )
            .unwrap_err();
        assert!(bad[0].problem.contains("must be a number"));
    }

    #[test]
    fn labels_once_and_refuses_unknown_duplicate_and_malformed() {
        let mut r = Registry::default();
        r.remember(99, &[0.7], &[]);
        let id = r.remember(100, &[0.1, 0.9], &[]);
        r.remember(100, &[0.3, 0.4, 0.5], &[]);
        let ok = r.label(
            &request(serde_json::json!([{"request_id": id.to_string(), "row": 1, "label": 1}])),
            101,
        );
        assert_eq!(
            ok.unwrap(),
            vec![Labelled {
                error: 0.9,
                label: true,
                ..Labelled::default()
            }]
        );
        let dup = r
            .label(
                &request(serde_json::json!([{"request_id": id.to_string(), "row": 1, "label": 0}])),
                101,
            )
            .unwrap_err();
        assert_eq!(dup[0].refusal, Refusal::Duplicate);
        let unknown = r
            .label(
                &request(
                    serde_json::json!([{"request_id": Uuid::new_v4().to_string(), "label": 0}]),
                ),
                101,
            )
            .unwrap_err();
        assert_eq!(unknown[0].refusal, Refusal::Unknown);
        let bad = r
            .label(
                &request(
                    serde_json::json!([{"request_id": id.to_string(), "row": 0, "label": "yes"}]),
                ),
                101,
            )
            .unwrap_err();
        assert_eq!(bad[0].refusal, Refusal::Malformed);
        // All or nothing: row 0 was not labelled by the refused request.
        let ok = r.label(
            &request(serde_json::json!([{"request_id": id.to_string(), "row": 0, "label": false}])),
            101,
        );
        assert_eq!(
            ok.unwrap(),
            vec![Labelled {
                error: 0.1,
                label: false,
                ..Labelled::default()
            }]
        );
    }

    #[test]
    fn forgets_by_age_and_by_size() {
        let mut r = Registry::default();
        let old = r.remember(0, &[0.5], &[]);
        let fresh = r.remember(RETENTION_MINUTES + 1, &[0.25], &[]);
        let e = r.label(
            &request(serde_json::json!([{"request_id": old.to_string(), "label": 1}])),
            RETENTION_MINUTES + 1,
        );
        assert_eq!(e.unwrap_err()[0].refusal, Refusal::Unknown);
        assert_eq!(r.len_rows(), 1);
        let big = vec![0.0; MAX_ROWS];
        let last = r.remember(RETENTION_MINUTES + 2, &big, &[]);
        assert_eq!(r.len_rows(), MAX_ROWS);
        // The fresh prediction made room for the big one; the big one is still there.
        let gone = r.label(
            &request(serde_json::json!([{"request_id": fresh.to_string(), "label": 1}])),
            RETENTION_MINUTES + 2,
        );
        assert_eq!(gone.unwrap_err()[0].refusal, Refusal::Unknown);
        let kept = r.label(
            &request(serde_json::json!([{"request_id": last.to_string(), "row": MAX_ROWS - 1, "label": 1}])),
            RETENTION_MINUTES + 2,
        );
        assert_eq!(kept.unwrap().len(), 1);
    }
}
