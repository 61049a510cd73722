//! Small statistics used to describe reference data: quantiles with numpy's default (linear)
//! interpolation, histograms with numpy's bin semantics, ROC-AUC by the rank statistic.

/// Quantile `q` in [0, 1] of `sorted` (ascending, non-empty), interpolating linearly like numpy.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Counts per bin like `numpy.histogram`: bins are [e_i, e_{i+1}), the last one closed; values
/// outside the edges are not counted.
pub fn histogram_counts(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len().saturating_sub(1)];
    if counts.is_empty() {
        return counts;
    }
    let last = edges[edges.len() - 1];
    for &v in values {
        if v < edges[0] || v > last || v.is_nan() {
            continue;
        }
        let bin = if v == last {
            counts.len() - 1
        } else {
            edges.partition_point(|&e| e <= v) - 1
        };
        counts[bin] += 1;
    }
    counts
}

/// Population mean and standard deviation (ddof = 0).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Area under the ROC curve of `scores` for `labels` (true = positive), ties counted as half.
/// `None` when either class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = pairs.iter().filter(|p| p.1).count() as f64;
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Sum of the positives' ranks, average rank for ties (Mann–Whitney U).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Mean absolute error, root mean squared error and R² (None when the truth is constant).
pub fn regression_metrics(truth: &[f64], predicted: &[f64]) -> (f64, f64, Option<f64>) {
    let n = truth.len().max(1) as f64;
    let mae = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).abs())
        .sum::<f64>()
        / n;
    let sse: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let mean = truth.iter().sum::<f64>() / n;
    let sst: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    (mae, (sse / n).sqrt(), (sst > 0.0).then(|| 1.0 - sse / sst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        // numpy.quantile([1,2,3,4], [0, .25, .5, .99, 1]) = 1, 1.75, 2.5, 3.97, 4
        for (q, want) in [
            (0.0, 1.0),
            (0.25, 1.75),
            (0.5, 2.5),
            (0.99, 3.97),
            (1.0, 4.0),
        ] {
            assert!((quantile_sorted(&v, q) - want).abs() < 1e-12, "q={q}");
        }
    }

    #[test]
    fn histogram_matches_numpy_semantics() {
        // numpy.histogram([0, 0.5, 1, 1.5, 2, 2, 3], bins=[0, 1, 2]) -> [2, 4]; 3 is outside.
        let counts = histogram_counts(&[0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 3.0], &[0.0, 1.0, 2.0]);
        assert_eq!(counts, vec![2, 4]);
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        // sklearn.metrics.roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75
        let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((auc - 0.75).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1], &[true]), None);
    }
}
