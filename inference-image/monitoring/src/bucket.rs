//! One minute of observations. Every field is a count or a sum over fixed bins, so two buckets
//! merge by addition and a bucket's size does not depend on traffic (ground-truth pairs are capped).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sample::SystemSample;

/// Labelled predictions kept per minute for exact ground-truth metrics; more are counted as dropped.
pub const FEEDBACK_PER_MINUTE: usize = 20_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RouteStats {
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 5],
    /// Counts per latency slot (see `bins::latency_bins`).
    pub latency: Vec<u64>,
    pub latency_sum_seconds: f64,
}

impl RouteStats {
    pub fn requests(&self) -> u64 {
        self.status.iter().sum()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FeatureCounts {
    /// Accepted values per fine slot.
    pub fine: Vec<u64>,
    /// Accepted values per decile slot of the card's histogram.
    pub deciles: Vec<u64>,
    /// Values sent as null or left out.
    pub missing: u64,
    /// NaN, infinite, non-numeric or outside the plausible range.
    pub invalid: u64,
    /// Missing values replaced by the training mean or median (also counted as missing; the
    /// histograms hold observed values only).
    #[serde(default)]
    pub imputed: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

/// A prediction whose true label arrived.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Labelled {
    /// The row's score (reconstruction error, class probability, prediction).
    pub error: f64,
    /// Autoencoder: the row is an anomaly. Binary classifier: the true class is the positive one.
    pub label: bool,
    /// Classifier: the true class's index. Regressor: the true value.
    #[serde(default)]
    pub truth: f64,
    /// Classifier: the predicted class's index.
    #[serde(default)]
    pub predicted: u32,
    /// Classifier: the probability the model gave the true class.
    #[serde(default)]
    pub p_true: f32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub routes: BTreeMap<String, RouteStats>,
    /// Most requests in flight at once during the minute.
    pub in_flight_max: u64,
    /// Requests refused with 429 (overloaded).
    #[serde(default)]
    pub overloaded: u64,
    /// Predict requests refused for their content (4xx other than 429).
    pub rejected_requests: u64,
    /// Rows scored.
    pub rows: u64,
    /// Rows refused one by one under the per-row missing-value policy (their requests answered 200).
    #[serde(default)]
    pub refused_rows: u64,
    /// Classifier: rows per predicted class, in the card's class order.
    #[serde(default)]
    pub predicted: Vec<u64>,
    pub features: Vec<FeatureCounts>,
    /// Scores per score slot (reconstruction error, class probability or prediction).
    pub scores: Vec<u64>,
    /// Autoencoder: rows above the threshold. Binary classifier: rows predicted positive.
    pub anomalies: u64,
    pub error_sum: f64,
    pub feedback: Vec<Labelled>,
    pub feedback_dropped: u64,
    /// The last system sample taken in this minute.
    pub system: Option<SystemSample>,
    /// Host CPU percent summed over every system sample of the minute, and how many there were:
    /// the window's mean is their quotient (the last sample alone says little about ten minutes).
    #[serde(default)]
    pub host_cpu_percent_sum: f64,
    #[serde(default)]
    pub system_samples: u64,
}

impl Bucket {
    pub fn new(
        minute: i64,
        features: usize,
        fine: usize,
        deciles: &[usize],
        score_slots: usize,
    ) -> Self {
        Self {
            minute,
            features: (0..features)
                .map(|j| FeatureCounts {
                    fine: vec![0; fine],
                    deciles: vec![0; deciles[j]],
                    ..FeatureCounts::default()
                })
                .collect(),
            scores: vec![0; score_slots],
            ..Self::default()
        }
    }

    /// Adds `other` into `self` (the minute of `self` is kept; the later system sample wins).
    pub fn merge(&mut self, other: &Bucket) {
        for (route, stats) in &other.routes {
            let mine = self.routes.entry(route.clone()).or_default();
            for (a, b) in mine.status.iter_mut().zip(stats.status) {
                *a += b;
            }
            add(&mut mine.latency, &stats.latency);
            mine.latency_sum_seconds += stats.latency_sum_seconds;
        }
        self.in_flight_max = self.in_flight_max.max(other.in_flight_max);
        self.overloaded += other.overloaded;
        self.rejected_requests += other.rejected_requests;
        self.rows += other.rows;
        self.refused_rows += other.refused_rows;
        add(&mut self.predicted, &other.predicted);
        if self.features.len() < other.features.len() {
            self.features
                .resize(other.features.len(), FeatureCounts::default());
        }
        for (a, b) in self.features.iter_mut().zip(&other.features) {
            add(&mut a.fine, &b.fine);
            add(&mut a.deciles, &b.deciles);
            a.missing += b.missing;
            a.invalid += b.invalid;
            a.imputed += b.imputed;
            a.sum += b.sum;
            a.sum_sq += b.sum_sq;
        }
        add(&mut self.scores, &other.scores);
        self.anomalies += other.anomalies;
        self.error_sum += other.error_sum;
        self.feedback.extend_from_slice(&other.feedback);
        self.feedback_dropped += other.feedback_dropped;
        if other.system.is_some() && other.minute >= self.minute {
            self.system = other.system.clone();
        }
        self.host_cpu_percent_sum += other.host_cpu_percent_sum;
        self.system_samples += other.system_samples;
    }
}

fn add(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(minute: i64, seed: u64) -> Bucket {
        let mut b = Bucket::new(minute, 2, 4, &[3, 3], 5);
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % 100
        };
        b.routes.entry("/v1/predict".into()).or_default().status = [0, next(), 0, next(), next()];
        b.routes.get_mut("/v1/predict").unwrap().latency = vec![next(), next(), next()];
        b.rows = next();
        b.refused_rows = next();
        b.predicted = vec![next(), next(), next()];
        for f in &mut b.features {
            f.fine = (0..4).map(|_| next()).collect();
            f.deciles = (0..3).map(|_| next()).collect();
            f.missing = next();
            f.invalid = next();
            f.imputed = next();
            f.sum = next() as f64;
        }
        b.scores = (0..5).map(|_| next()).collect();
        b.anomalies = next();
        b.in_flight_max = next();
        b
    }

    #[test]
    fn merging_is_commutative_and_associative() {
        for seed in 1..50u64 {
            let (a, b, c) = (
                sample(1, seed),
                sample(2, seed * 7 + 3),
                sample(3, seed * 13 + 5),
            );
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            assert_eq!(ab.routes, ba.routes);
            assert_eq!(ab.features, ba.features);
            assert_eq!(
                (ab.rows, ab.scores.clone(), ab.in_flight_max),
                (ba.rows, ba.scores.clone(), ba.in_flight_max)
            );
            let mut ab_c = ab.clone();
            ab_c.merge(&c);
            let mut bc = b.clone();
            bc.merge(&c);
            let mut a_bc = a.clone();
            a_bc.merge(&bc);
            assert_eq!(ab_c.features, a_bc.features);
            assert_eq!(ab_c.routes, a_bc.routes);
            assert_eq!(ab_c.rows, a.rows + b.rows + c.rows);
            assert_eq!(ab_c.predicted, a_bc.predicted);
            assert_eq!(
                ab_c.refused_rows,
                a.refused_rows + b.refused_rows + c.refused_rows
            );
        }
    }
}
