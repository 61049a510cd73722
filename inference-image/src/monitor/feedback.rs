//! Ground truth arrives late: predictions are remembered by request id (bounded by rows and age)
//! so that `POST /v1/feedback` can attach a true label to a scored row.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use uuid::Uuid;

use super::bucket::Labelled;

/// Most scored rows remembered for feedback; the oldest predictions are forgotten first.
pub const MAX_ROWS: usize = 1_000_000;
/// Predictions older than this no longer accept feedback.
pub const RETENTION_MINUTES: i64 = 24 * 60;
/// Most items in one feedback request.
pub const MAX_ITEMS: usize = 10_000;

struct Prediction {
    minute: i64,
    errors: Box<[f64]>,
    labelled: Box<[bool]>,
}

#[derive(Default)]
pub struct Registry {
    by_id: HashMap<Uuid, Prediction>,
    order: VecDeque<Uuid>,
    rows: usize,
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
    pub fn remember(&mut self, id: Uuid, minute: i64, errors: &[f64]) {
        self.expire(minute);
        self.rows += errors.len();
        self.by_id.insert(
            id,
            Prediction {
                minute,
                errors: errors.into(),
                labelled: vec![false; errors.len()].into(),
            },
        );
        self.order.push_back(id);
        while self.rows > MAX_ROWS {
            self.forget_oldest();
        }
    }

    fn expire(&mut self, now_minute: i64) {
        while let Some(id) = self.order.front() {
            match self.by_id.get(id) {
                Some(p) if now_minute - p.minute <= RETENTION_MINUTES => break,
                _ => self.forget_oldest(),
            }
        }
    }

    fn forget_oldest(&mut self) {
        if let Some(id) = self.order.pop_front() {
            if let Some(p) = self.by_id.remove(&id) {
                self.rows -= p.errors.len();
            }
        }
    }

    pub fn len_rows(&self) -> usize {
        self.rows
    }

    /// Validates every item first and records nothing unless all are acceptable.
    pub fn label(
        &mut self,
        req: &FeedbackRequest,
        now_minute: i64,
    ) -> Result<Vec<Labelled>, Vec<ItemProblem>> {
        self.expire(now_minute);
        let mut problems = Vec::new();
        let mut accepted: Vec<(Uuid, usize, bool)> = Vec::with_capacity(req.feedback.len());
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
            let label = match &item.label {
                serde_json::Value::Bool(b) => *b,
                v if v.as_u64() == Some(0) => false,
                v if v.as_u64() == Some(1) => true,
                v => {
                    refuse(
                        &mut problems,
                        i,
                        Refusal::Malformed,
                        format!("label {v} must be 0, 1, false or true"),
                    );
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
            let Some(p) = self.by_id.get(&id) else {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Unknown,
                    format!("request_id {id} is unknown or expired (predictions accept feedback for {} hours)", RETENTION_MINUTES / 60),
                );
                continue;
            };
            if row >= p.errors.len() {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Malformed,
                    format!(
                        "request {id} scored {} rows; row {row} does not exist",
                        p.errors.len()
                    ),
                );
                continue;
            }
            if p.labelled[row] || accepted.iter().any(|(a, r, _)| *a == id && *r == row) {
                refuse(
                    &mut problems,
                    i,
                    Refusal::Duplicate,
                    format!("row {row} of request {id} already has a label"),
                );
                continue;
            }
            accepted.push((id, row, label));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.refusal, p.item));
            return Err(problems);
        }
        Ok(accepted
            .into_iter()
            .map(|(id, row, label)| {
                let p = self.by_id.get_mut(&id).expect("checked above");
                p.labelled[row] = true;
                Labelled {
                    error: p.errors[row],
                    label,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(items: serde_json::Value) -> FeedbackRequest {
        serde_json::from_value(serde_json::json!({ "feedback": items })).unwrap()
    }

    #[test]
    fn labels_once_and_refuses_unknown_duplicate_and_malformed() {
        let mut r = Registry::default();
        let id = Uuid::new_v4();
        r.remember(id, 100, &[0.1, 0.9]);
        let ok = r.label(
            &request(serde_json::json!([{"request_id": id.to_string(), "row": 1, "label": 1}])),
            101,
        );
        assert_eq!(
            ok.unwrap(),
            vec![Labelled {
                error: 0.9,
                label: true
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
                label: false
            }]
        );
    }

    #[test]
    fn forgets_by_age_and_by_size() {
        let mut r = Registry::default();
        let old = Uuid::new_v4();
        r.remember(old, 0, &[0.5]);
        let fresh = Uuid::new_v4();
        r.remember(fresh, RETENTION_MINUTES + 1, &[0.5]);
        let e = r.label(
            &request(serde_json::json!([{"request_id": old.to_string(), "label": 1}])),
            RETENTION_MINUTES + 1,
        );
        assert_eq!(e.unwrap_err()[0].refusal, Refusal::Unknown);
        assert_eq!(r.len_rows(), 1);
        let big = vec![0.0; MAX_ROWS];
        r.remember(Uuid::new_v4(), RETENTION_MINUTES + 2, &big);
        assert_eq!(r.len_rows(), MAX_ROWS);
    }
}
