//! The canary's verdict: the new version on one host, compared after a watch period with the rest
//! of the fleet on what users and the model's consumers would notice (error rate, p99 latency, the
//! distribution of the model's scores), from each replica's own monitoring summary.
//!
//! The figures the verdict rests on are kept with it: each says the canary's value, the fleet's,
//! the limit and whether it passed, so a refusal is explained by numbers rather than a word.

use serde::Serialize;
use serde_json::Value;

/// How different the canary may be from the rest of the fleet.
#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    /// The canary's error rate may exceed the fleet's by this much (absolute, 0.01 = 1 point).
    pub max_error_rate_increase: f64,
    /// The canary's p99 may be this many times the slowest other host's, plus `p99_slack_s`.
    pub max_p99_ratio: f64,
    pub p99_slack_s: f64,
    /// PSI of the canary's scores against the fleet's, on the fleet's deciles.
    pub max_score_psi: f64,
    /// Fewest rows the canary must have scored for the scores to be judged.
    pub min_rows: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_error_rate_increase: 0.01,
            max_p99_ratio: 1.5,
            p99_slack_s: 0.01,
            max_score_psi: 0.25,
            min_rows: 50,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    pub canary: Option<f64>,
    pub fleet: Option<f64>,
    /// The limit as a sentence, e.g. "≤ fleet + 0.010".
    pub limit: String,
    pub ok: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub promote: bool,
    pub figures: Vec<Figure>,
    /// Why not, when not: the failing figures named.
    pub reason: Option<String>,
}

/// Compares the canary's summary with the other hosts' summaries over the same window.
pub fn compare(canary: &Value, rest: &[Value], policy: &Policy) -> Verdict {
    let mut figures = Vec::new();

    // Error rate: the fleet's is pooled over its requests, not an average of rates.
    let errors = |s: &Value| -> (f64, f64) {
        let by = &s["system"]["by_status"];
        let n = |k: &str| by[k].as_f64().unwrap_or(0.0);
        (
            n("4xx") + n("5xx"),
            s["system"]["requests"].as_f64().unwrap_or(0.0),
        )
    };
    let (ce, cr) = errors(canary);
    let (fe, fr) = rest
        .iter()
        .map(errors)
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let rate = |e: f64, r: f64| (r > 0.0).then(|| e / r);
    let (c_rate, f_rate) = (rate(ce, cr), rate(fe, fr));
    figures.push(Figure {
        name: "error rate".into(),
        canary: c_rate,
        fleet: f_rate,
        limit: format!("≤ fleet + {:.3}", policy.max_error_rate_increase),
        ok: match (c_rate, f_rate) {
            (Some(c), Some(f)) => c <= f + policy.max_error_rate_increase,
            // No traffic on the canary: nothing shows it works.
            (None, _) => false,
            (Some(c), None) => c <= policy.max_error_rate_increase,
        },
    });

    // p99 latency against the slowest other host.
    let p99 = |s: &Value| s["system"]["predict_latency_seconds"]["p99"].as_f64();
    let c_p99 = p99(canary);
    let f_p99 = rest
        .iter()
        .filter_map(p99)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    figures.push(Figure {
        name: "p99 latency (s)".into(),
        canary: c_p99,
        fleet: f_p99,
        limit: format!(
            "≤ {} × the slowest other host + {} s",
            policy.max_p99_ratio, policy.p99_slack_s
        ),
        ok: match (c_p99, f_p99) {
            (Some(c), Some(f)) => c <= f * policy.max_p99_ratio + policy.p99_slack_s,
            (None, _) => false,
            (Some(_), None) => true,
        },
    });

    // The scores' distribution, on the same bins (same model card) or not comparable.
    let c_rows = canary["data"]["rows"].as_u64().unwrap_or(0);
    let hist = |s: &Value| -> Option<(Vec<f64>, Vec<f64>)> {
        let d = &s["model"]["score_distribution"];
        let edges = d["edges"]
            .as_array()?
            .iter()
            .map(Value::as_f64)
            .collect::<Option<_>>()?;
        let counts = d["current"]
            .as_array()?
            .iter()
            .map(Value::as_f64)
            .collect::<Option<_>>()?;
        Some((edges, counts))
    };
    let mut fleet_counts: Option<Vec<f64>> = None;
    let mut same_bins = true;
    let canary_hist = hist(canary);
    for s in rest {
        match (hist(s), &canary_hist) {
            (Some((edges, counts)), Some((c_edges, _))) if edges == *c_edges => {
                let acc = fleet_counts.get_or_insert_with(|| vec![0.0; counts.len()]);
                for (a, c) in acc.iter_mut().zip(&counts) {
                    *a += c;
                }
            }
            _ => same_bins = false,
        }
    }
    let psi = match (&canary_hist, &fleet_counts, same_bins) {
        (Some((_, c)), Some(f), true) if c_rows >= policy.min_rows => decile_psi(f, c),
        _ => None,
    };
    figures.push(Figure {
        name: "score PSI vs the fleet".into(),
        canary: psi,
        fleet: Some(0.0),
        limit: format!(
            "≤ {} (on the fleet's deciles; needs {} canary rows and the same model card bins)",
            policy.max_score_psi, policy.min_rows
        ),
        ok: psi.is_some_and(|p| p <= policy.max_score_psi),
    });

    let failing: Vec<String> = figures
        .iter()
        .filter(|f| !f.ok)
        .map(|f| {
            let show = |v: Option<f64>| v.map_or("no data".to_string(), |v| format!("{v:.4}"));
            format!(
                "{} {} (fleet {}, limit {})",
                f.name,
                show(f.canary),
                show(f.fleet),
                f.limit
            )
        })
        .collect();
    Verdict {
        promote: failing.is_empty(),
        reason: (!failing.is_empty()).then(|| failing.join("; ")),
        figures,
    }
}

/// PSI of `current` against `baseline` (counts on the same slots) after grouping the slots into
/// the baseline's deciles, so that sparse fine bins do not inflate it. None when either is empty.
pub fn decile_psi(baseline: &[f64], current: &[f64]) -> Option<f64> {
    let total_b: f64 = baseline.iter().sum();
    let total_c: f64 = current.iter().sum();
    if total_b <= 0.0 || total_c <= 0.0 || baseline.len() != current.len() {
        return None;
    }
    // Slots → groups: a new group starts once the baseline's running share passes the next tenth.
    let mut groups_b = vec![0.0];
    let mut groups_c = vec![0.0];
    let mut seen = 0.0;
    for (b, c) in baseline.iter().zip(current) {
        *groups_b.last_mut().unwrap() += b;
        *groups_c.last_mut().unwrap() += c;
        seen += b;
        let tenth = (groups_b.len() as f64) * total_b / 10.0;
        if seen >= tenth && groups_b.len() < 10 {
            groups_b.push(0.0);
            groups_c.push(0.0);
        }
    }
    const EPS: f64 = 1e-4;
    Some(
        groups_b
            .iter()
            .zip(&groups_c)
            .filter(|(b, c)| **b > 0.0 || **c > 0.0)
            .map(|(b, c)| {
                let b = (b / total_b).max(EPS);
                let c = (c / total_c).max(EPS);
                (c - b) * (c / b).ln()
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(requests: u64, errors: u64, p99: f64, scores: &[u64]) -> Value {
        json!({
            "system": {"requests": requests, "by_status": {"2xx": requests - errors, "4xx": errors, "5xx": 0},
                       "predict_latency_seconds": {"p99": p99}},
            "data": {"rows": scores.iter().sum::<u64>()},
            "model": {"score_distribution": {"edges": (0..=scores.len()).map(|i| i as f64).collect::<Vec<_>>(),
                                             "current": scores}},
        })
    }

    const SAME: [u64; 8] = [10, 20, 30, 40, 40, 30, 20, 10];

    #[test]
    fn a_canary_like_the_fleet_is_promoted() {
        let rest = [
            summary(1000, 2, 0.010, &SAME),
            summary(900, 1, 0.012, &SAME),
        ];
        let v = compare(&summary(950, 2, 0.011, &SAME), &rest, &Policy::default());
        assert!(v.promote, "{v:#?}");
        assert_eq!(v.figures.len(), 3);
        assert!((v.figures[0].fleet.unwrap() - 3.0 / 1900.0).abs() < 1e-12);
        assert_eq!(v.figures[1].fleet, Some(0.012));
        assert!(v.figures[2].canary.unwrap() < 1e-9);
    }

    #[test]
    fn shifted_scores_errors_or_latency_are_refused_with_the_figures() {
        let rest = [
            summary(1000, 2, 0.010, &SAME),
            summary(900, 1, 0.012, &SAME),
        ];
        let shifted = [0, 0, 0, 10, 20, 40, 60, 70];
        let v = compare(&summary(950, 2, 0.011, &shifted), &rest, &Policy::default());
        assert!(!v.promote);
        let reason = v.reason.unwrap();
        assert!(reason.starts_with("score PSI vs the fleet "), "{reason}");
        assert!(v.figures[2].canary.unwrap() > 0.25, "{:?}", v.figures[2]);

        let v = compare(&summary(950, 60, 0.011, &SAME), &rest, &Policy::default());
        assert!(v
            .reason
            .unwrap()
            .starts_with("error rate 0.0632 (fleet 0.0016"));
        let v = compare(&summary(950, 2, 0.040, &SAME), &rest, &Policy::default());
        assert!(v.reason.unwrap().starts_with("p99 latency (s) 0.0400"));
        // No traffic on the canary: nothing shows that it works.
        let v = compare(&summary(0, 0, f64::NAN, &[0; 8]), &rest, &Policy::default());
        assert!(!v.promote && v.figures.iter().all(|f| !f.ok), "{v:#?}");
        // Another model card's bins: the scores cannot be compared, and that is said.
        let mut other = summary(950, 2, 0.011, &SAME);
        other["model"]["score_distribution"]["edges"] = json!([0, 2, 4, 6, 8, 10, 12, 14, 16]);
        let v = compare(&other, &rest, &Policy::default());
        assert_eq!((v.promote, v.figures[2].canary), (false, None));
    }

    #[test]
    fn decile_psi_groups_sparse_slots() {
        // Identical shapes: 0 whatever the totals.
        assert!(
            decile_psi(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0])
                .unwrap()
                .abs()
                < 1e-12
        );
        assert_eq!(decile_psi(&[0.0, 0.0], &[1.0, 1.0]), None);
        // Everything in one slot against everything spread: large.
        assert!(decile_psi(&[1.0; 20], &[[20.0].as_slice(), &[0.0; 19]].concat()).unwrap() > 1.0);
    }
}
