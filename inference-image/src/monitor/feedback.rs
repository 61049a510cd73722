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

#[derive(Default)]
pub struct Registry {
    ids: IdCodec,
    /// Sequence number of `requests[0]`.
    first_seq: u64,
    requests: VecDeque<Entry>,
    /// Global row index of `errors[0]`.
    first_row: u64,
    errors: VecDeque<f64>,
    labelled: VecDeque<bool>,
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
    /// Remembers the errors of one scored request and returns its request id.
    pub fn remember(&mut self, minute: i64, errors: &[f64]) -> Uuid {
        self.expire(minute);
        let seq = self.first_seq + self.requests.len() as u64;
        self.requests.push_back(Entry {
            minute,
            first_row: self.first_row + self.errors.len() as u64,
        });
        self.errors.extend(errors);
        self.labelled
            .extend(std::iter::repeat_n(false, errors.len()));
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
        let mut accepted: Vec<(usize, bool)> = Vec::with_capacity(req.feedback.len());
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
            .map(|(at, label)| {
                self.labelled[at] = true;
                Labelled {
                    error: self.errors[at],
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
        r.remember(99, &[0.7]);
        let id = r.remember(100, &[0.1, 0.9]);
        r.remember(100, &[0.3, 0.4, 0.5]);
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
        let old = r.remember(0, &[0.5]);
        let fresh = r.remember(RETENTION_MINUTES + 1, &[0.25]);
        let e = r.label(
            &request(serde_json::json!([{"request_id": old.to_string(), "label": 1}])),
            RETENTION_MINUTES + 1,
        );
        assert_eq!(e.unwrap_err()[0].refusal, Refusal::Unknown);
        assert_eq!(r.len_rows(), 1);
        let big = vec![0.0; MAX_ROWS];
        let last = r.remember(RETENTION_MINUTES + 2, &big);
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
