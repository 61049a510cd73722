//! Fixed bin layouts, chosen once from the model card, that every minute bucket counts into. Fixed
//! edges make buckets mergeable by adding counts, so memory per minute does not grow with traffic.

use crate::card::{FeatureStats, Histogram, ModelCard, Task};

/// Equal-width bins across a feature's training range widened by half a span on each side, plus
/// an open bin below and one above.
pub const FINE_BINS: usize = 32;

/// Latency bucket upper bounds in seconds (Prometheus-style; the last finite one is past 10 s).
pub const LATENCY_BOUNDS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Reconstruction-error bins: log-spaced from 1e-4 to 1e6, 8 per decade, plus open ends.
pub const SCORE_LOG_MIN: f64 = -4.0;
pub const SCORE_LOG_MAX: f64 = 6.0;
pub const SCORE_BINS_PER_DECADE: usize = 8;

/// A set of strictly increasing edges; values below the first or above the last fall in the open
/// outer bins, so there are `edges.len() + 1` counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    pub edges: Vec<f64>,
    /// How the edges are spaced, when `index` can compute a value's slot instead of searching for
    /// it (every scored value and every score is binned).
    spacing: Spacing,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Spacing {
    /// Edge i is `lo + i / inv_width`.
    Equal { lo: f64, inv_width: f64 },
    /// Edge i is `first * ratio^i` (all positive): equal steps in log2, `per_log2` of them per
    /// doubling, from `log2_first`.
    Geometric { log2_first: f64, per_log2: f64 },
    /// Anything else is searched.
    Irregular,
}

impl Bins {
    pub fn new(edges: Vec<f64>) -> Self {
        debug_assert!(edges.windows(2).all(|w| w[0] < w[1]));
        let spacing = Spacing::of(&edges);
        Self { edges, spacing }
    }

    /// Count slots: one open bin below, `edges.len() - 1` closed bins, one open bin above.
    pub fn len(&self) -> usize {
        self.edges.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// The slot of `v`: 0 below the first edge, then [e_i, e_{i+1}) → i + 1, last edge and above →
    /// the top closed bin or the open top bin.
    #[inline]
    pub fn index(&self, v: f64) -> usize {
        // The computed guess may be off where rounding meets an edge (or, for geometric edges, by
        // the error of the fast log2, under a third of a step); the edges decide. Truncating
        // instead of `floor` keeps this inline: without SSE4.1 `floor` is a libm call.
        let position = match self.spacing {
            Spacing::Irregular => return self.edges.partition_point(|&e| e <= v),
            _ if v.is_nan() => return 0,
            Spacing::Equal { lo, inv_width } => (v - lo) * inv_width,
            Spacing::Geometric { .. } if v <= 0.0 => return 0,
            Spacing::Geometric {
                log2_first,
                per_log2,
            } => (fast_log2(v) - log2_first) * per_log2,
        };
        let n = self.edges.len();
        let mut slot = ((position as i64).saturating_add(1)).clamp(0, n as i64) as usize;
        while slot < n && self.edges[slot] <= v {
            slot += 1;
        }
        while slot > 0 && self.edges[slot - 1] > v {
            slot -= 1;
        }
        slot
    }

    /// One representative point per slot: bin midpoints, and half a neighbouring bin width
    /// beyond the outer edges for the open bins.
    pub fn points(&self) -> Vec<f64> {
        let e = &self.edges;
        let n = e.len();
        let first_w = e[1] - e[0];
        let last_w = e[n - 1] - e[n - 2];
        let mut p = Vec::with_capacity(n + 1);
        p.push(e[0] - first_w / 2.0);
        p.extend(e.windows(2).map(|w| (w[0] + w[1]) / 2.0));
        p.push(e[n - 1] + last_w / 2.0);
        p
    }

    /// Spreads a histogram over these slots assuming values are uniform within each of its bins
    /// (how a card's decile histogram becomes a baseline on finer bins).
    pub fn spread(&self, h: &Histogram) -> Vec<f64> {
        let mut out = vec![0.0; self.len()];
        for (i, &count) in h.counts.iter().enumerate() {
            let (lo, hi) = (h.bin_edges[i], h.bin_edges[i + 1]);
            if count == 0 {
                continue;
            }
            let width = hi - lo;
            // Slot boundaries: -inf, edges..., +inf.
            for (slot, share) in out.iter_mut().enumerate() {
                let s_lo = if slot == 0 {
                    f64::NEG_INFINITY
                } else {
                    self.edges[slot - 1]
                };
                let s_hi = if slot == self.edges.len() {
                    f64::INFINITY
                } else {
                    self.edges[slot]
                };
                let overlap = hi.min(s_hi) - lo.max(s_lo);
                if width > 0.0 && overlap > 0.0 {
                    *share += count as f64 * overlap / width;
                } else if width == 0.0 && lo >= s_lo && lo < s_hi {
                    *share += count as f64;
                }
            }
        }
        out
    }
}

impl Spacing {
    fn of(edges: &[f64]) -> Self {
        if edges.len() < 3 {
            return Spacing::Irregular;
        }
        let n = (edges.len() - 1) as f64;
        let steady = |step: &dyn Fn(usize) -> f64, size: f64| {
            size > 0.0
                && size.is_finite()
                && (1..edges.len()).all(|i| (step(i) - size).abs() <= size * 1e-9)
        };
        let width = (edges[edges.len() - 1] - edges[0]) / n;
        if steady(&|i| edges[i] - edges[i - 1], width) {
            return Spacing::Equal {
                lo: edges[0],
                inv_width: 1.0 / width,
            };
        }
        if edges[0] > 0.0 {
            let log_step = (edges[edges.len() - 1].log2() - edges[0].log2()) / n;
            if steady(&|i| (edges[i] / edges[i - 1]).log2(), log_step) {
                return Spacing::Geometric {
                    log2_first: edges[0].log2(),
                    per_log2: 1.0 / log_step,
                };
            }
        }
        Spacing::Irregular
    }
}

/// log2 of a positive finite `v`, within 0.09 below the true value: the exponent bits plus the
/// mantissa read as a straight line (no libm call).
#[inline]
fn fast_log2(v: f64) -> f64 {
    v.to_bits() as f64 / (1u64 << 52) as f64 - 1023.0
}

/// Finds a value's slot on a coarse layout from its slot on a fine one, so a value that is counted
/// on both is only searched for once. For each fine slot it keeps the first coarse slot that slot's
/// values can fall in; the coarse edges inside the fine slot (usually none) decide the rest.
#[derive(Debug, Clone)]
pub struct Coarsening {
    first: Vec<u32>,
}

impl Coarsening {
    pub fn new(fine: &Bins, coarse: &Bins) -> Self {
        // Fine slot 0 starts at -inf; slot i >= 1 at fine edge i - 1.
        let first = std::iter::once(0)
            .chain(
                fine.edges
                    .iter()
                    .map(|&lo| coarse.edges.partition_point(|&e| e <= lo) as u32),
            )
            .collect();
        Self { first }
    }

    /// `coarse.index(v)`, given `fine_slot == fine.index(v)` on the layouts this was built from.
    #[inline]
    pub fn index(&self, coarse: &Bins, fine_slot: usize, v: f64) -> usize {
        let mut slot = self.first[fine_slot] as usize;
        while slot < coarse.edges.len() && coarse.edges[slot] <= v {
            slot += 1;
        }
        slot
    }
}

/// The fine bins of one feature.
pub fn feature_bins(f: &FeatureStats) -> Bins {
    let span = (f.max - f.min).max(f.std).max(f64::EPSILON);
    let (lo, hi) = (f.min - span / 2.0, f.max + span / 2.0);
    Bins::new(
        (0..=FINE_BINS)
            .map(|i| lo + (hi - lo) * i as f64 / FINE_BINS as f64)
            .collect(),
    )
}

/// The card's own decile bins (PSI is computed on these), with open outer slots.
pub fn decile_bins(h: &Histogram) -> Bins {
    Bins::new(h.bin_edges.clone())
}

/// The slot a card's histogram counted `v` in, given its slot on `decile_bins`: the card's last
/// bin is closed (numpy's convention), so a value on the last edge is in the top closed bin, not
/// in the open slot above it. Without this, a feature's training maximum seen again reads as a
/// value the training data never had.
#[inline]
pub fn closed_top(bins: &Bins, slot: usize, v: f64) -> usize {
    let n = bins.edges.len();
    if n >= 2 && slot == n && v == bins.edges[n - 1] {
        slot - 1
    } else {
        slot
    }
}

/// A feature's training rows on its fine slots: a feature of few values has each level's count in
/// the level's own slot; any other has the card's histogram spread evenly within each bin.
pub fn feature_baseline(fine: &Bins, f: &FeatureStats) -> Vec<f64> {
    if f.levels.is_empty() {
        return fine.spread(&f.histogram);
    }
    let mut out = vec![0.0; fine.len()];
    for (&level, &count) in f.levels.iter().zip(&f.histogram.counts) {
        out[fine.index(level)] += count as f64;
    }
    out
}

/// The card's decile counts laid on `decile_bins` slots (nothing in the open outer slots).
pub fn decile_baseline(h: &Histogram) -> Vec<f64> {
    let mut v = Vec::with_capacity(h.counts.len() + 2);
    v.push(0.0);
    v.extend(h.counts.iter().map(|&c| c as f64));
    v.push(0.0);
    v
}

/// Slots for the per-row score of the card's task: log-spaced for reconstruction errors, 50
/// equal-width slots over [0, 1] for class probabilities, and for a regressor's predictions equal
/// slots over the baseline predictions' range widened by half a span each side.
pub fn score_bins_for(card: &ModelCard) -> Bins {
    match card.task {
        Task::Autoencoder => score_bins(),
        Task::Classifier => Bins::new(
            (0..=PROBABILITY_BINS)
                .map(|i| i as f64 / PROBABILITY_BINS as f64)
                .collect(),
        ),
        Task::Regressor => {
            let edges = &card.score.baseline.histogram.bin_edges;
            let (min, max) = (edges[0], edges[edges.len() - 1]);
            let span = (max - min).max(f64::EPSILON);
            let (lo, hi) = (min - span / 2.0, max + span / 2.0);
            Bins::new(
                (0..=FINE_BINS)
                    .map(|i| lo + (hi - lo) * i as f64 / FINE_BINS as f64)
                    .collect(),
            )
        }
    }
}

/// Slots of a classifier's probability histogram.
pub const PROBABILITY_BINS: usize = 50;

pub fn score_bins() -> Bins {
    let n = ((SCORE_LOG_MAX - SCORE_LOG_MIN) as usize) * SCORE_BINS_PER_DECADE;
    Bins::new(
        (0..=n)
            .map(|i| 10f64.powf(SCORE_LOG_MIN + i as f64 / SCORE_BINS_PER_DECADE as f64))
            .collect(),
    )
}

pub fn latency_bins() -> Bins {
    Bins::new(LATENCY_BOUNDS.to_vec())
}

/// Quantile `q` from counts on `bins`, interpolating linearly inside the bin (open bins report
/// their finite edge).
pub fn quantile(bins: &Bins, counts: &[f64], q: f64) -> Option<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let target = q.clamp(0.0, 1.0) * total;
    let mut seen = 0.0;
    for (slot, &c) in counts.iter().enumerate() {
        if c > 0.0 && seen + c >= target {
            let e = &bins.edges;
            if slot == 0 {
                return Some(e[0]);
            }
            if slot == e.len() {
                return Some(e[e.len() - 1]);
            }
            let (lo, hi) = (e[slot - 1], e[slot]);
            return Some(lo + (hi - lo) * ((target - seen) / c).clamp(0.0, 1.0));
        }
        seen += c;
    }
    bins.edges.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random draws in [0, 1) (xorshift64), reproducible from `seed`.
    fn uniform_draws(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// `values` plus every edge, a hair to either side of each, and the awkward numbers.
    fn with_probes<'a>(mut values: Vec<f64>, edges: impl IntoIterator<Item = &'a f64>) -> Vec<f64> {
        for &e in edges {
            values.extend([e, e.next_down(), e.next_up()]);
        }
        values.extend([
            0.0,
            -0.0,
            -1.0,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MAX,
            f64::MIN,
        ]);
        values
    }

    #[test]
    fn index_puts_values_in_open_and_closed_slots() {
        let b = Bins::new(vec![0.0, 1.0, 2.0]);
        assert_eq!(b.len(), 4);
        assert_eq!(b.index(-0.1), 0);
        assert_eq!(b.index(0.0), 1);
        assert_eq!(b.index(0.99), 1);
        assert_eq!(b.index(1.0), 2);
        assert_eq!(b.index(2.0), 3);
        assert_eq!(b.index(5.0), 3);
    }

    #[test]
    fn computed_slots_equal_searched_slots() {
        let mut next = uniform_draws(0x2545_f491_4f6c_dd1du64);
        for (lo, hi) in [(0.0, 1.0), (-3.7, 12.25), (1e-6, 2e-6), (-1e5, 1e5)] {
            let edges: Vec<f64> = (0..=FINE_BINS)
                .map(|i| lo + (hi - lo) * i as f64 / FINE_BINS as f64)
                .collect();
            let b = Bins::new(edges.clone());
            assert!(matches!(b.spacing, Spacing::Equal { .. }));
            let span = hi - lo;
            let drawn = (0..20_000)
                .map(|_| lo - span + 3.0 * span * next())
                .collect();
            for v in with_probes(drawn, &edges) {
                let searched = edges.partition_point(|&e| e <= v);
                assert_eq!(b.index(v), searched, "value {v} in [{lo}, {hi}]");
            }
        }
        // Unequal edges are searched.
        assert_eq!(Bins::new(vec![0.0, 1.0, 3.0]).spacing, Spacing::Irregular);
    }

    #[test]
    fn computed_geometric_slots_equal_searched_slots() {
        let mut next = uniform_draws(0x853c_49e6_748f_ea9bu64);
        let layouts = [
            score_bins().edges,
            (0..=40).map(|i| 2f64.powi(i - 20)).collect(),
            (0..=500).map(|i| 1e-3 * 1.01f64.powi(i)).collect(),
            (0..=20)
                .map(|i| 10f64.powi(30 * i - 300))
                .collect::<Vec<f64>>(),
        ];
        for edges in layouts {
            let b = Bins::new(edges.clone());
            assert!(matches!(b.spacing, Spacing::Geometric { .. }), "{edges:?}");
            let (lo, hi) = (edges[0].log10(), edges[edges.len() - 1].log10());
            let span = hi - lo;
            let drawn = (0..20_000)
                .map(|_| 10f64.powf(lo - span + 3.0 * span * next()))
                .collect();
            for v in with_probes(drawn, &edges) {
                let searched = edges.partition_point(|&e| e <= v);
                assert_eq!(b.index(v), searched, "value {v} on {} edges", edges.len());
            }
        }
    }

    #[test]
    fn coarse_slots_from_fine_slots_equal_searched_slots() {
        let mut next = uniform_draws(0x9e37_79b9_7f4a_7c15u64);
        let fine = Bins::new((0..=FINE_BINS).map(|i| -4.0 + 0.5 * i as f64).collect());
        let layouts = [
            // Deciles bunched inside one fine bin, spread out, and reaching past the fine range.
            vec![0.0, 0.01, 0.02, 0.03, 0.04, 0.05],
            vec![-3.0, -1.0, 0.5, 2.0, 7.5],
            vec![-100.0, -3.9, 11.0, 12.0, 500.0],
            vec![1.0],
        ];
        for edges in layouts {
            let coarse = Bins::new(edges.clone());
            let map = Coarsening::new(&fine, &coarse);
            let mut drawn: Vec<f64> = (0..20_000).map(|_| -150.0 + 700.0 * next()).collect();
            drawn.extend((0..20_000).map(|_| -5.0 + 22.0 * next()));
            for v in with_probes(drawn, edges.iter().chain(&fine.edges)) {
                let slot = map.index(&coarse, fine.index(v), v);
                assert_eq!(slot, coarse.index(v), "value {v} on {edges:?}");
            }
        }
    }

    #[test]
    fn spread_keeps_the_total_and_splits_by_overlap() {
        let b = Bins::new(vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let h = Histogram {
            bin_edges: vec![0.0, 2.0, 4.0],
            counts: vec![10, 30],
        };
        let s = b.spread(&h);
        assert_eq!(s, vec![0.0, 5.0, 5.0, 15.0, 15.0, 0.0]);
    }

    #[test]
    fn the_last_edge_counts_in_the_top_closed_bin_like_the_card() {
        let deciles = Bins::new(vec![1.0, 2.0, 4.0]);
        let slot = |v: f64| closed_top(&deciles, deciles.index(v), v);
        assert_eq!(slot(4.0), 2);
        assert_eq!(slot(4.0_f64.next_up()), 3);
        assert_eq!(slot(2.0), 2);
        assert_eq!(slot(1.0), 1);
        assert_eq!(slot(0.5), 0);
        // With the card's own numpy-style counts, the same values land in the same closed bins.
        let values = [1.0, 1.5, 2.0, 3.0, 4.0, 4.0];
        let card = crate::stats::histogram_counts(&values, &deciles.edges);
        let mut here = vec![0u64; deciles.len()];
        for v in values {
            here[slot(v)] += 1;
        }
        assert_eq!(here[1..3], card[..]);
        assert_eq!((here[0], here[3]), (0, 0));
        // A single edge has no closed bin to fold into.
        let one = Bins::new(vec![1.0]);
        assert_eq!(closed_top(&one, one.index(1.0), 1.0), 1);
    }

    #[test]
    fn a_feature_of_few_values_has_its_baseline_on_the_levels_slots() {
        let f = FeatureStats {
            name: "sex".into(),
            mean: 1.48,
            std: 0.5,
            min: 1.0,
            max: 2.0,
            valid_min: 0.0,
            valid_max: 102.0,
            quantiles: Default::default(),
            histogram: Histogram {
                bin_edges: vec![0.5, 1.5, 2.5],
                counts: vec![161, 148],
            },
            levels: vec![1.0, 2.0],
        };
        let fine = feature_bins(&f);
        let b = feature_baseline(&fine, &f);
        let mut want = vec![0.0; fine.len()];
        want[fine.index(1.0)] = 161.0;
        want[fine.index(2.0)] = 148.0;
        assert_eq!(b, want);
        // The same card without levels spreads each bin evenly over its width.
        let spread = feature_baseline(
            &fine,
            &FeatureStats {
                levels: vec![],
                ..f
            },
        );
        assert_eq!(spread.iter().filter(|&&c| c > 0.0).count(), FINE_BINS);
        assert!((spread.iter().sum::<f64>() - 309.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_interpolate_within_bins() {
        let b = Bins::new(vec![0.0, 1.0, 2.0]);
        let counts = [0.0, 2.0, 2.0, 0.0];
        assert_eq!(quantile(&b, &counts, 0.5), Some(1.0));
        assert_eq!(quantile(&b, &counts, 0.75), Some(1.5));
        assert_eq!(quantile(&b, &[0.0; 4], 0.5), None);
    }

    #[test]
    fn score_bins_cover_ten_decades() {
        let b = score_bins();
        assert_eq!(b.edges.len(), 81);
        assert!((b.edges[0] - 1e-4).abs() < 1e-12 && (b.edges[80] - 1e6).abs() < 1e-3);
    }
}
