//! Data-drift statistics over binned data: pure functions of two count vectors over the same bins
//! (a training baseline and a current window; per-minute histograms merged with [`add_counts`]),
//! plus, where a statistic needs positions, one representative point per bin.
//!
//! Every function here equals a SciPy reference on the samples "expanded" from the counts (each
//! bin's count repeated at its point); `tests/drift_scipy.rs` checks that against
//! `tests/fixtures/drift_cases.json`, which `tests/fixtures/gen_drift_fixtures.py` writes with
//! SciPy 1.17:
//!
//! | function        | SciPy                                                          |
//! |-----------------|----------------------------------------------------------------|
//! | [`ks`]          | `scipy.stats.ks_2samp(a, b, method='asymp')`                   |
//! | [`kstwo_sf`]    | `scipy.stats.kstwo.sf(d, n)`                                   |
//! | [`wasserstein`] | `scipy.stats.wasserstein_distance(points, points, b, c)`       |
//! | [`js_distance`] | `scipy.spatial.distance.jensenshannon(b, c)`                   |
//!
//! [`psi`] has no SciPy counterpart; its definition is below and the fixture spells it out in numpy.
//!
//! A window with no rows on either side has no distribution: every statistic is then NaN (which
//! serde_json writes as `null`) and [`verdict`] says `insufficient_data`.

use serde::Serialize;

/// Floor applied to every bin proportion in [`psi`], so that a bin empty on one side contributes a
/// large but finite term instead of an infinite one.
pub const PSI_EPSILON: f64 = 1e-4;

/// Fewest rows the current window needs before [`verdict`] judges it; fewer give
/// `insufficient_data`.
pub const MIN_SAMPLES: u32 = 30;

/// PSI from which a feature is `warning` (when the p-value gate [`P_VALUE_WARNING`] also passes).
pub const PSI_WARNING: f64 = 0.1;
/// PSI from which a feature is `drift` (when the p-value gate [`P_VALUE_DRIFT`] also passes).
pub const PSI_DRIFT: f64 = 0.25;
/// Wasserstein distance in baseline standard deviations from which a feature is `warning`.
pub const WASSERSTEIN_WARNING: f64 = 0.25;
/// Wasserstein distance in baseline standard deviations from which a feature is `drift`.
pub const WASSERSTEIN_DRIFT: f64 = 0.5;
/// KS p-value below which a `warning`-sized effect counts.
pub const P_VALUE_WARNING: f64 = 0.05;
/// KS p-value below which a `drift`-sized effect counts.
pub const P_VALUE_DRIFT: f64 = 0.01;
/// Share of the judged features that must be `drift` for [`overall`] to say `drift` (Evidently's
/// dataset-drift preset uses the same 0.5).
pub const DRIFT_SHARE: f64 = 0.5;

/// Adds the counts of `from` to `into`, bin by bin (merging per-minute histograms into a window).
///
/// # Panics
/// If the two vectors do not have the same number of bins.
pub fn add_counts(into: &mut [f64], from: &[f64]) {
    assert_eq!(into.len(), from.len(), "count vectors over different bins");
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

fn check_bins(baseline: &[f64], current: &[f64]) {
    assert_eq!(
        baseline.len(),
        current.len(),
        "baseline and current have different numbers of bins"
    );
}

fn check_points(points: &[f64], baseline: &[f64], current: &[f64]) {
    check_bins(baseline, current);
    assert_eq!(points.len(), baseline.len(), "one point per bin is needed");
    debug_assert!(
        points.windows(2).all(|w| w[0] < w[1]),
        "points must be strictly increasing"
    );
}

/// Both totals, or `None` when either side is empty.
fn totals(baseline: &[f64], current: &[f64]) -> Option<(f64, f64)> {
    let tb: f64 = baseline.iter().sum();
    let tc: f64 = current.iter().sum();
    (tb > 0.0 && tc > 0.0).then_some((tb, tc))
}

/// Population Stability Index: Σ (c_i − b_i)·ln(c_i / b_i), where b_i and c_i are the bins'
/// proportions of the baseline and current totals.
///
/// Each proportion is floored at [`PSI_EPSILON`] and the floored proportions are **not**
/// renormalized (so with empty bins they sum to slightly more than 1); a bin empty on both sides
/// contributes 0. NaN when either side is empty.
pub fn psi(baseline: &[f64], current: &[f64]) -> f64 {
    check_bins(baseline, current);
    let Some((tb, tc)) = totals(baseline, current) else {
        return f64::NAN;
    };
    baseline
        .iter()
        .zip(current)
        .map(|(b, c)| {
            let b = (b / tb).max(PSI_EPSILON);
            let c = (c / tc).max(PSI_EPSILON);
            (c - b) * (c / b).ln()
        })
        .sum()
}

/// Two-sample Kolmogorov–Smirnov test on binned data: `(statistic, p_value)`, equal to
/// `scipy.stats.ks_2samp(a, b, method='asymp')` where `a` and `b` are the samples expanded from
/// the counts.
///
/// The statistic is the largest absolute difference of the two empirical CDFs at the bins (the
/// points only fix the order; their values do not matter). The p-value is SciPy's: with n and m
/// the two sample sizes (the totals, rounded to integers, at least 1) it is
/// [`kstwo_sf`]`(round(n·m/(n+m)), statistic)`, the exact one-sample two-sided Kolmogorov
/// distribution at the effective sample size, rounded half to even as numpy does. NaNs when either
/// side is empty; the p-value is also NaN when both sides have one row (SciPy's effective n rounds
/// to 0 there).
///
/// # Panics
/// If the vectors do not all have the same length.
pub fn ks(points: &[f64], baseline: &[f64], current: &[f64]) -> (f64, f64) {
    check_points(points, baseline, current);
    let Some((tb, tc)) = totals(baseline, current) else {
        return (f64::NAN, f64::NAN);
    };
    let (mut cb, mut cc, mut d) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (b, c) in baseline.iter().zip(current) {
        cb += b;
        cc += c;
        d = d.max((cb / tb - cc / tc).abs());
    }
    let d = d.min(1.0);
    let n = tb.round().max(1.0);
    let m = tc.round().max(1.0);
    let (big, small) = if n >= m { (n, m) } else { (m, n) };
    let en = (big * small / (big + small)).round_ties_even();
    (d, kstwo_sf(en as u64, d))
}

/// 1-Wasserstein (earth mover's) distance between the two binned distributions, each bin's mass
/// at its point: `scipy.stats.wasserstein_distance(points, points, baseline, current)`. In the
/// points' unit; the caller divides by the baseline standard deviation. NaN when either side is
/// empty.
///
/// # Panics
/// If the vectors do not all have the same length.
pub fn wasserstein(points: &[f64], baseline: &[f64], current: &[f64]) -> f64 {
    check_points(points, baseline, current);
    let Some((tb, tc)) = totals(baseline, current) else {
        return f64::NAN;
    };
    let (mut cb, mut cc, mut w) = (0.0_f64, 0.0_f64, 0.0_f64);
    for i in 0..points.len().saturating_sub(1) {
        cb += baseline[i];
        cc += current[i];
        w += (cb / tb - cc / tc).abs() * (points[i + 1] - points[i]);
    }
    w
}

/// Jensen–Shannon distance (the square root of the divergence, natural log) between the two count
/// vectors normalized to proportions: `scipy.spatial.distance.jensenshannon(baseline, current)`.
/// Between 0 and √ln 2. NaN when either side is empty.
///
/// Rounding can make the divergence of two nearly equal distributions a tiny negative number,
/// whose square root SciPy returns as NaN; here it is clamped to 0 first.
pub fn js_distance(baseline: &[f64], current: &[f64]) -> f64 {
    check_bins(baseline, current);
    let Some((tb, tc)) = totals(baseline, current) else {
        return f64::NAN;
    };
    // scipy.special.rel_entr(x, y) = x ln(x / y), 0 when x = 0.
    let rel_entr = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let (mut left, mut right) = (0.0, 0.0);
    for (b, c) in baseline.iter().zip(current) {
        let p = b / tb;
        let q = c / tc;
        let m = (p + q) / 2.0;
        left += rel_entr(p, m);
        right += rel_entr(q, m);
    }
    ((left + right) / 2.0).max(0.0).sqrt()
}

/// Jensen–Shannon distance in base 2 (the square root of the divergence in bits), between 0 and 1:
/// `scipy.spatial.distance.jensenshannon(baseline, current, base=2)`. It is [`js_distance`]
/// divided by √ln 2, since the divergence in bits is the one in nats divided by ln 2. NaN when
/// either side is empty.
pub fn js_distance_base2(baseline: &[f64], current: &[f64]) -> f64 {
    js_distance(baseline, current) / std::f64::consts::LN_2.sqrt()
}

/// How a window's predicted classes compare with the card's predicted-class baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassVerdict {
    /// Fewer than [`MIN_SAMPLES`] rows in the window (or an empty baseline).
    InsufficientData,
    Ok,
    /// PSI ≥ [`PSI_WARNING`] (written `warning`, like the features' verdicts).
    Warning,
    /// PSI ≥ [`PSI_DRIFT`].
    Drift,
}

/// The predicted-class distribution of a window against a baseline (`model.class_drift`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassDrift {
    /// Each class's share of the baseline rows, in class order.
    pub baseline: Vec<f64>,
    /// Each class's share of the window's scored rows (NaN, written as null, without rows).
    pub current: Vec<f64>,
    /// [`psi`] of the counts (the same [`PSI_EPSILON`] floor as the features').
    pub psi: f64,
    /// [`js_distance_base2`] of the counts.
    pub js: f64,
    /// Scored rows in the window (the sum of the current counts).
    pub rows: u64,
    /// Rows the baseline was counted on.
    pub baseline_rows: u64,
    pub verdict: ClassVerdict,
}

fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| if total > 0.0 { c / total } else { f64::NAN })
        .collect()
}

/// Compares the rows predicted per class in a window (`current`) with the baseline's, class by
/// class. The verdict rests on PSI alone, in the features' PSI bands: `drift` when PSI ≥
/// [`PSI_DRIFT`], `warning` when PSI ≥ [`PSI_WARNING`], `ok` below, and `insufficient_data` with
/// fewer than [`MIN_SAMPLES`] rows in the window or none in the baseline.
///
/// # Panics
/// If the two vectors do not have the same number of classes.
pub fn class_drift(baseline: &[u64], current: &[u64]) -> ClassDrift {
    let b: Vec<f64> = baseline.iter().map(|&c| c as f64).collect();
    let c: Vec<f64> = current.iter().map(|&c| c as f64).collect();
    let psi = psi(&b, &c);
    let rows: u64 = current.iter().sum();
    let baseline_rows: u64 = baseline.iter().sum();
    let verdict = if rows < u64::from(MIN_SAMPLES) || baseline_rows == 0 {
        ClassVerdict::InsufficientData
    } else if psi >= PSI_DRIFT {
        ClassVerdict::Drift
    } else if psi >= PSI_WARNING {
        ClassVerdict::Warning
    } else {
        ClassVerdict::Ok
    };
    ClassDrift {
        baseline: shares(&b),
        current: shares(&c),
        psi,
        js: js_distance_base2(&b, &c),
        rows,
        baseline_rows,
        verdict,
    }
}

/// Every drift statistic of one feature (or of the anomaly score) for one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DriftStats {
    /// [`psi`].
    pub psi: f64,
    /// KS statistic of [`ks`]: the largest gap between the two CDFs, in [0, 1].
    pub ks_statistic: f64,
    /// KS p-value of [`ks`].
    pub ks_p_value: f64,
    /// [`wasserstein`], in the feature's unit.
    pub wasserstein: f64,
    /// `wasserstein / baseline_std`: the shift in baseline standard deviations (NaN when the
    /// baseline standard deviation is not positive and finite).
    pub wasserstein_scaled: f64,
    /// [`js_distance`].
    pub js_distance: f64,
    /// Rows in the baseline (the sum of its counts).
    pub n_baseline: f64,
    /// Rows in the current window (the sum of its counts).
    pub n_current: f64,
}

/// All statistics of [`DriftStats`] for one feature. `baseline_std` is the feature's standard
/// deviation on the training data, the unit of `wasserstein_scaled`.
///
/// # Panics
/// If the vectors do not all have the same length.
pub fn drift_stats(
    points: &[f64],
    baseline: &[f64],
    current: &[f64],
    baseline_std: f64,
) -> DriftStats {
    let (ks_statistic, ks_p_value) = ks(points, baseline, current);
    let w = wasserstein(points, baseline, current);
    let wasserstein_scaled = if baseline_std > 0.0 && baseline_std.is_finite() {
        w / baseline_std
    } else {
        f64::NAN
    };
    DriftStats {
        psi: psi(baseline, current),
        ks_statistic,
        ks_p_value,
        wasserstein: w,
        wasserstein_scaled,
        js_distance: js_distance(baseline, current),
        n_baseline: baseline.iter().sum(),
        n_current: current.iter().sum(),
    }
}

/// How one feature's window compares with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fewer than [`MIN_SAMPLES`] rows in the current window (or an empty baseline).
    InsufficientData,
    Ok,
    Warning,
    Drift,
}

/// Judges one feature's [`DriftStats`]:
///
/// * `insufficient_data`: fewer than [`MIN_SAMPLES`] current rows, or no baseline rows;
/// * `drift`: (psi ≥ [`PSI_DRIFT`] or wasserstein_scaled ≥ [`WASSERSTEIN_DRIFT`]) and
///   ks_p_value < [`P_VALUE_DRIFT`];
/// * `warning`: (psi ≥ [`PSI_WARNING`] or wasserstein_scaled ≥ [`WASSERSTEIN_WARNING`]) and
///   ks_p_value < [`P_VALUE_WARNING`];
/// * `ok` otherwise.
///
/// The verdict rests on effect sizes (PSI, the Wasserstein distance in baseline standard
/// deviations); the p-value only gates out noise in small windows, where sampling alone produces
/// large-looking effects. A p-value alone is not used because in large windows it becomes tiny for
/// negligible shifts: such windows (tiny p, tiny effect) stay `ok`. A NaN statistic never passes a
/// threshold.
pub fn verdict(stats: &DriftStats) -> Verdict {
    if !(stats.n_current >= f64::from(MIN_SAMPLES) && stats.n_baseline > 0.0) {
        return Verdict::InsufficientData;
    }
    let p = stats.ks_p_value;
    if (stats.psi >= PSI_DRIFT || stats.wasserstein_scaled >= WASSERSTEIN_DRIFT)
        && p < P_VALUE_DRIFT
    {
        Verdict::Drift
    } else if (stats.psi >= PSI_WARNING || stats.wasserstein_scaled >= WASSERSTEIN_WARNING)
        && p < P_VALUE_WARNING
    {
        Verdict::Warning
    } else {
        Verdict::Ok
    }
}

/// Combines the features' verdicts into one for the whole input. Features with
/// `insufficient_data` are left out; of the rest:
///
/// * `drift` when at least [`DRIFT_SHARE`] (half) of them are `drift` (Evidently's preset rule);
/// * `warning` when any of them is `drift` or `warning`;
/// * `ok` otherwise;
///
/// and `insufficient_data` when no feature has enough data (or there are none).
pub fn overall(verdicts: &[Verdict]) -> Verdict {
    let judged = verdicts
        .iter()
        .filter(|v| **v != Verdict::InsufficientData)
        .count();
    if judged == 0 {
        return Verdict::InsufficientData;
    }
    let drifted = verdicts.iter().filter(|v| **v == Verdict::Drift).count();
    if drifted as f64 >= DRIFT_SHARE * judged as f64 {
        Verdict::Drift
    } else if drifted > 0 || verdicts.contains(&Verdict::Warning) {
        Verdict::Warning
    } else {
        Verdict::Ok
    }
}

// ---------------------------------------------------------------------------------------------
// The Kolmogorov distribution: a port of SciPy 1.17's `scipy.stats.kstwo.sf`
// (`scipy/stats/_ksstats.py`, Simard & L'Ecuyer 2011) and of the one-sided `scipy.special.smirnov`
// it calls (`xsf/cephes/kolmogorov.h`), in plain f64 arithmetic (SciPy uses double-double in
// `smirnov`; the difference is far below the 1e-6 this is checked to).
// ---------------------------------------------------------------------------------------------

const TWO_128: f64 = 3.402_823_669_209_385e38; // 2^128
const TWO_M128: f64 = 2.938_735_877_055_719e-39; // 2^-128

/// Survival function of the two-sided one-sample Kolmogorov–Smirnov statistic D_n for a sample of
/// size `n`: P(D_n > d), as `scipy.stats.kstwo.sf(d, n)` computes it. NaN when `n` is 0 or `d` is
/// NaN; 1 for d ≤ 1/(2n), 0 for d ≥ 1.
///
/// One deliberate difference: where SciPy's Durbin matrix power overflows (a thin band of
/// n ≳ 50 000 with n·d² ≈ 0.01, far below the statistic's typical size) SciPy returns 0 although
/// the probability is 1 to many digits; this returns the Pelz-Good value (≈ 1) instead.
pub fn kstwo_sf(n: u64, d: f64) -> f64 {
    if n == 0 || d.is_nan() {
        return f64::NAN;
    }
    // rv_continuous.sf: the support of kstwo is [1/(2n), 1].
    if d <= 0.5 / n as f64 {
        return 1.0;
    }
    if d >= 1.0 {
        return 0.0;
    }
    kolmogn_sf(n, d).clamp(0.0, 1.0)
}

/// `_kolmogn(n, x, cdf=False)`: which algorithm is used where follows Simard & L'Ecuyer.
fn kolmogn_sf(n: u64, x: f64) -> f64 {
    let clip = |p: f64| p.clamp(0.0, 1.0);
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        // Ruben-Gambino: P(D_n <= x) = n!/n^n (2t - 1)^n for 1/(2n) <= x <= 1/n.
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            (1..=n).fold(1.0, |acc, i| {
                acc * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0))
            })
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return clip(1.0 - prob);
    }
    if t >= nf - 1.0 {
        // Ruben-Gambino: P(D_n > x) = 2 (1 - x)^n for x >= 1 - 1/n.
        return clip(2.0 * (1.0 - x).powf(nf));
    }
    if x >= 0.5 {
        return clip(2.0 * smirnov_sf(n, x));
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754693 {
            let cdf = durbin_mtw_cdf(n, x).unwrap_or_else(|| pelz_good_cdf(nf, x));
            return clip(1.0 - cdf);
        }
        if nxsquared <= 4.0 {
            return clip(1.0 - pomeranz_cdf(n, x));
        }
        return clip(2.0 * smirnov_sf(n, x));
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return clip(2.0 * smirnov_sf(n, x));
    }
    let cdf = if nxsquared >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        // SciPy 1.17 lets the matrix power overflow for some n above ~50 000 with n x^2 ~ 0.01
        // (e.g. n = 64321, x = 3.354e-4) and then answers sf = 0 where the truth is sf = 1;
        // there this port falls back on Pelz-Good, the method SciPy uses next door.
        durbin_mtw_cdf(n, x).unwrap_or_else(|| pelz_good_cdf(nf, x))
    } else {
        pelz_good_cdf(nf, x)
    };
    clip(1.0 - cdf)
}

/// x · 2^e without intermediate overflow or underflow of the scale factor.
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e as i32)
}

/// log(n! / n^n) by Stirling's series, with n·log(n) removed up front.
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    // B_{2j} / (2j) / (2j - 1) for j = 8, ..., 1.
    const STIRLING: [f64; 8] = [
        -2.955_065_359_477_124e-2,
        6.410_256_410_256_41e-3,
        -1.917_526_917_526_917_6e-3,
        8.417_508_417_508_417e-4,
        -5.952_380_952_380_953e-4,
        7.936_507_936_507_937e-4,
        -2.777_777_777_777_778e-3,
        8.333_333_333_333_333e-2,
    ];
    let rn = 1.0 / n;
    let z = rn / n;
    let poly = STIRLING.iter().fold(0.0, |acc, c| acc * z + c);
    n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * poly
}

/// Row-major square matrix product.
fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * m];
    for (out_row, a_row) in out.chunks_exact_mut(m).zip(a.chunks_exact(m)) {
        for (&aik, b_row) in a_row.iter().zip(b.chunks_exact(m)) {
            if aik != 0.0 {
                for (o, &bkj) in out_row.iter_mut().zip(b_row) {
                    *o += aik * bkj;
                }
            }
        }
    }
    out
}

/// P(D_n <= d) by Durbin's matrix algorithm as Marsaglia, Tsang & Wang compute it
/// (`_kolmogn_DMTW`): the k-th diagonal entry of (n!/n^n)·H^n, with SciPy's scaling. `None` when
/// that overflows (SciPy then returns a CDF of 1).
fn durbin_mtw_cdf(n: u64, d: f64) -> Option<f64> {
    if d >= 1.0 {
        return Some(1.0);
    }
    let nf = n as f64;
    let nd = nf * d;
    if nd <= 0.5 {
        return Some(0.0);
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    // v[j] = (1 - h^(j+1)) / (j+1)!, w[j] = 1 / j!
    let mut v = vec![0.0; m];
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powf(j as f64)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powf(m as f64) - 2.0 * h.powf(m as f64);
    v[m - 1] = (1.0 + tt) * fac;

    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r + 1 - i];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }

    let mut hpwr = vec![0.0; m * m];
    for i in 0..m {
        hpwr[i * m + i] = 1.0;
    }
    let (mut nn, mut expnt, mut hexpnt) = (n, 0_i64, 0_i64);
    while nn > 0 {
        if nn % 2 == 1 {
            hpwr = matmul(&hpwr, &hm, m);
            expnt += hexpnt;
        }
        nn /= 2;
        if nn == 0 {
            break;
        }
        hm = matmul(&hm, &hm, m);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > TWO_128 {
            hm.iter_mut().for_each(|x| *x /= TWO_128);
            hexpnt += 128;
        }
    }

    let mut p = hpwr[(k - 1) * m + (k - 1)];
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < TWO_M128 {
            p *= TWO_128;
            expnt -= 128;
        }
    }
    if expnt != 0 {
        p = ldexp(p, expnt);
    }
    p.is_finite().then(|| p.clamp(0.0, 1.0))
}

/// Endpoints of the non-zero stretch of row i in Pomeranz's recursion.
fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let (half, odd) = ((i + 1) / 2, (i + 1) % 2);
        if odd == 0 {
            if half == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (half - 1 - ll - roundf - 1, half + ll - 1 + ceilf - 1)
            }
        } else {
            (half - 1 - ll - 1, half + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// P(D_n <= x) by Pomeranz's recursion (`_kolmogn_Pomeranz`), with scaling.
fn pomeranz_cdf(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let ni = n as i64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    // (g/n)^m/m!, (2g/n)^m/m!, ((1-2g)/n)^m/m!: Poisson probabilities without their normalizer.
    let mut gpower = vec![1.0; npwrs];
    let mut twogpower = vec![1.0; npwrs];
    let mut onem2gpower = vec![1.0; npwrs];
    let (g_n, two_g_n, one_m2g_n) = (g / nf, 2.0 * g / nf, (1.0 - 2.0 * g) / nf);
    for m in 1..npwrs {
        gpower[m] = gpower[m - 1] * g_n / m as f64;
        twogpower[m] = twogpower[m - 1] * two_g_n / m as f64;
        onem2gpower[m] = onem2gpower[m - 1] * one_m2g_n / m as f64;
    }

    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s) = (0_i64, 0_i64);
    let mut expnt = 0_i64;
    let (mut j1, _) = pomeranz_j1j2(0, ni, ll, ceilf, roundf);
    for i in 1..=(2 * ni + 1) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.fill(0.0);
        let (nj1, j2) = pomeranz_j1j2(i, ni, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs = if i == 1 || i == 2 * ni + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = j2 - k1 + 1;
        if ln2 > 0 {
            let ln2 = ln2 as usize;
            let src = &v0[(k1 - v0s) as usize..(k1 - v0s) as usize + ln2];
            let pw = &pwrs[..ln2];
            // Entries conv_start.. of the full convolution of src and pw.
            let conv_start = (j1 - k1) as usize;
            let conv_len = (j2 - j1 + 1).max(0) as usize;
            for (o, out) in v1.iter_mut().take(conv_len).enumerate() {
                let idx = conv_start + o;
                let lo = idx.saturating_sub(ln2 - 1);
                let hi = idx.min(ln2 - 1);
                *out = (lo..=hi).map(|p| src[p] * pw[idx - p]).sum();
            }
            let max = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < max && max < TWO_M128 {
                v1.iter_mut().for_each(|x| *x *= TWO_128);
                expnt -= 128;
            }
            v1s = v0s + j1 - k1;
        }
    }

    // Multiply by n!.
    let mut ans = v1[(ni - v1s) as usize];
    for m in 1..=n {
        if ans.abs() > TWO_128 {
            ans *= TWO_M128;
            expnt += 128;
        }
        ans *= m as f64;
    }
    if expnt != 0 {
        ans = ldexp(ans, expnt);
    }
    ans.clamp(0.0, 1.0)
}

/// The Pelz-Good approximation of P(D_n <= x) (`_kolmogn_PelzGood`): Li-Chien/Korolyuk's
/// expansion K0 + K1/√n + K2/n + K3/n^1.5 in z = x√n, each term transformed with Jacobi theta
/// functions for small z.
fn pelz_good_cdf(n: f64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let pi2 = PI.powi(2);
    let pi4 = PI.powi(4);
    let pi6 = PI.powi(6);
    let sqrt2pi = (2.0 * PI).sqrt();

    let z = n.sqrt() * x;
    let (z2, z3, z4, z6) = (z.powi(2), z.powi(3), z.powi(4), z.powi(6));
    let qlog = -pi2 / 8.0 / z2;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();

    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);

    // Horner scheme for sum c_k q^(k^2) over odd k.
    let mut k0to3 = [0.0_f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for k in (1..=maxk).rev() {
        let m = (2 * k - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf((8 * k) as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (acc, c) in k0to3.iter_mut().zip(coeffs) {
            *acc = *acc * qpower + c;
        }
    }
    let divisors = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (acc, div) in k0to3.iter_mut().zip(divisors) {
        *acc = *acc * q * sqrt2pi / div;
    }

    // The sums over all integers k for K2 and K3.
    let q = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    for k in (1..=maxk).rev() {
        let kf = k as f64;
        let ksq = kf * kf;
        let qp = q.powf(ksq);
        let kpi = PI * kf;
        k2extra += ksq * qp;
        k3extra += (sqrt3z + kpi) * (sqrt3z - kpi) * ksq * qp;
    }
    k0to3[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k0to3[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    k0to3
        .iter()
        .enumerate()
        .map(|(i, k)| k / n.powf(i as f64 / 2.0))
        .sum()
}

/// P(D+_n > x), the one-sided Smirnov statistic's survival function (`scipy.special.smirnov`), by
/// the Birnbaum-Tingey sum x·Σ_{v=0}^{⌊n(1-x)⌋} C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1), the terms
/// taken in log space.
fn smirnov_sf(n: u64, x: f64) -> f64 {
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    // floor(n x) and the remainder of the exact product (fma gives its rounding error).
    let nx = nf * x;
    let err = x.mul_add(nf, -nx);
    let mut nxfl = nx.floor();
    let mut alpha = (nx - nxfl) + err;
    if alpha < 0.0 {
        nxfl -= 1.0;
        alpha += 1.0;
    }
    if alpha >= 1.0 {
        nxfl += 1.0;
        alpha = 0.0;
    }
    // x <= 1/n: P(D+ <= x) = x (1 + x)^(n-1).
    if nxfl == 0.0 || (nxfl == 1.0 && alpha == 0.0) {
        return 1.0 - x * (1.0 + x).powf(nf - 1.0);
    }
    // Underflows: -2 n x^2 below cephes' MINLOG.
    if -2.0 * nf * x * x < -7.083_964_185_322_641e2 {
        return 0.0;
    }
    // x >= 1 - 1/n.
    if nxfl >= nf - 1.0 {
        return (1.0 - x).powf(nf);
    }
    if n > 1_000_000 {
        // SciPy's approximation for large n: p ~ exp(-(6nx+1)^2 / 18n).
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        return if logp < -std::f64::consts::LN_2 {
            logp.exp()
        } else {
            1.0 + logp.exp_m1()
        };
    }
    // Lower sum, v = 0 .. n - floor(nx) - 1, with SciPy's early termination.
    let nterms = n - nxfl as u64;
    let vmid = n / 2;
    let mut ln_binom = 0.0_f64;
    let mut sum = 0.0_f64;
    for v in 0..nterms {
        let vf = v as f64;
        // 1 - x - v/n = (n - v - nx)/n and x + v/n = (nx + v)/n, integer parts exact.
        let a = ((nf - vf - nxfl) - alpha) / nf;
        let b = ((nxfl + vf) + alpha) / nf;
        let term = (ln_binom + (nf - vf) * a.ln() + (vf - 1.0) * b.ln()).exp();
        if term.is_finite() && term != 0.0 {
            sum += term;
        }
        if v > 0 {
            if term != 0.0 {
                if 4.0 * (nterms - v) as f64 * term.abs() < f64::EPSILON * sum && v != nterms - 1 {
                    break;
                }
            } else if v > vmid {
                break;
            }
        }
        ln_binom += ((nf - vf) / (vf + 1.0)).ln();
    }
    (x * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a fixed-seed generator for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Integer counts (some bins empty) or fractional ones.
        fn counts(&mut self, bins: usize, fractional: bool) -> Vec<f64> {
            (0..bins)
                .map(|_| match self.below(4) {
                    0 => 0.0,
                    _ if fractional => self.unit() * 1000.0,
                    _ => self.below(100_000) as f64,
                })
                .collect()
        }
    }

    fn merged(a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut out = a.to_vec();
        add_counts(&mut out, b);
        out
    }

    fn total(v: &[f64]) -> f64 {
        v.iter().sum()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
    }

    fn points(k: usize) -> Vec<f64> {
        (0..k).map(|i| i as f64 * 0.5 - 1.0).collect()
    }

    #[test]
    fn merging_is_commutative_associative_and_keeps_totals() {
        let mut rng = Rng(0x5EED_D21F);
        for round in 0..500 {
            let bins = 1 + rng.below(40) as usize;
            let fractional = round % 2 == 1;
            let a = rng.counts(bins, fractional);
            let b = rng.counts(bins, fractional);
            let c = rng.counts(bins, fractional);

            // Float addition of two numbers is commutative exactly.
            assert_eq!(merged(&a, &b), merged(&b, &a));

            let left = merged(&merged(&a, &b), &c);
            let right = merged(&a, &merged(&b, &c));
            let sum_of_totals = total(&a) + total(&b) + total(&c);
            if fractional {
                for (l, r) in left.iter().zip(&right) {
                    assert!(close(*l, *r, 1e-12), "round {round}: {l} vs {r}");
                }
                assert!(close(total(&left), sum_of_totals, 1e-12));
            } else {
                // Integer counts below 2^53 add exactly.
                assert_eq!(left, right, "round {round}");
                assert_eq!(total(&left), sum_of_totals, "round {round}");
            }
            // Merging an empty window changes nothing.
            assert_eq!(merged(&a, &vec![0.0; bins]), a);
        }
    }

    #[test]
    #[should_panic(expected = "different bins")]
    fn merging_different_bins_panics() {
        add_counts(&mut [1.0, 2.0], &[1.0]);
    }

    #[test]
    fn psi_matches_a_hand_computed_value() {
        // b = [0.5, 0.3, 0.2, 0] -> floored [0.5, 0.3, 0.2, 1e-4] (sum 1.0001, not renormalized)
        // c = [0.3, 0.3, 0.3, 0.1]
        // PSI = (0.3-0.5) ln(0.3/0.5) + 0 + (0.3-0.2) ln(0.3/0.2) + (0.1-1e-4) ln(0.1/1e-4)
        //     = 0.2 * 0.5108256237659907 + 0.1 * 0.4054651081081644 + 0.0999 * 6.907755278982137
        //     = 0.10216512475319814 + 0.04054651081081644 + 0.690084752369316
        //     = 0.8327963879333306
        let b = [50.0, 30.0, 20.0, 0.0];
        let c = [30.0, 30.0, 30.0, 10.0];
        assert!((psi(&b, &c) - 0.832_796_387_933_330_6).abs() < 1e-12);
        // Scale-free: counts times a constant give the same proportions.
        let b10: Vec<f64> = b.iter().map(|x| x * 10.0).collect();
        assert!((psi(&b10, &c) - psi(&b, &c)).abs() < 1e-12);
        // Symmetric in its arguments.
        assert!((psi(&c, &b) - psi(&b, &c)).abs() < 1e-12);
    }

    /// Predicted-class distributions. PSI by hand (proportions floored at 1e-4, not
    /// renormalized); JS against SciPy 1.17.1: `scipy.spatial.distance.jensenshannon(b, c, base=2)`
    /// with `b` and `c` the count lists below.
    #[test]
    fn class_drift_psi_and_js_on_fixed_cases() {
        let ln = f64::ln;
        // b = [1/3, 7/18, 5/18], c = [2/3, 7/36, 5/36]: every ratio c/b is 2 or 1/2, so
        // PSI = ln 2 (1/3 + 7/36 + 5/36) = (2/3) ln 2.
        // jensenshannon([18, 21, 15], [72, 21, 15], base=2) = 0.2858394058654447
        let d = class_drift(&[18, 21, 15], &[72, 21, 15]);
        assert!((d.psi - 2.0 / 3.0 * ln(2.0)).abs() < 1e-12, "{d:?}");
        assert!((d.psi - 0.462_098_120_373_296_84).abs() < 1e-12);
        assert!((d.js - 0.285_839_405_865_444_7).abs() < 1e-12, "{d:?}");
        assert_eq!((d.rows, d.baseline_rows), (108, 54));
        assert_eq!(d.verdict, ClassVerdict::Drift);
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-15);
        assert!(close(&d.baseline, &[1.0 / 3.0, 7.0 / 18.0, 5.0 / 18.0]));
        assert!(close(&d.current, &[2.0 / 3.0, 7.0 / 36.0, 5.0 / 36.0]));

        // A class the window never predicts: its share is floored at 1e-4.
        // b = [103/171, 68/171], c = [1, 0 -> 1e-4]:
        // PSI = (1 - 103/171) ln(171/103) + (68/171 - 1e-4) ln((68/171) / 1e-4) = 3.4966454391312123
        // jensenshannon([103, 68], [171, 0], base=2) = 0.4845614874597121
        let d = class_drift(&[103, 68], &[171, 0]);
        let (b0, b1) = (103.0 / 171.0, 68.0 / 171.0);
        let want = (1.0 - b0) * ln(1.0 / b0) + (b1 - 1e-4) * ln(b1 / 1e-4);
        assert!((d.psi - want).abs() < 1e-12, "{d:?}");
        assert!((d.psi - 3.496_645_439_131_212_3).abs() < 1e-12);
        assert!((d.js - 0.484_561_487_459_712_1).abs() < 1e-12, "{d:?}");

        // A class the baseline never saw (the features' hand-computed PSI case, on classes).
        // jensenshannon([50, 30, 20, 0], [30, 30, 30, 10], base=2) = 0.2747521614407188
        let d = class_drift(&[50, 30, 20, 0], &[30, 30, 30, 10]);
        assert!((d.psi - 0.832_796_387_933_330_6).abs() < 1e-11, "{d:?}");
        assert!((d.js - 0.274_752_161_440_718_8).abs() < 1e-12, "{d:?}");

        // All rows in one of three equally likely classes:
        // PSI = (1 - 1/3) ln 3 + 2 (1/3 - 1e-4) ln((1/3) / 1e-4) = 6.138604569034126
        // jensenshannon([1, 1, 1], [10, 0, 0], base=2) = 0.677604543245723
        let d = class_drift(&[1, 1, 1], &[10, 0, 0]);
        let want = 2.0 / 3.0 * ln(3.0) + 2.0 * (1.0 / 3.0 - 1e-4) * ln(1.0 / 3.0 / 1e-4);
        assert!((d.psi - want).abs() < 1e-12, "{d:?}");
        assert!((d.js - 0.677_604_543_245_723).abs() < 1e-12, "{d:?}");
        // Ten rows are too few to judge, however different.
        assert_eq!(d.verdict, ClassVerdict::InsufficientData);

        // A small shift: b = [0.4, 0.35, 0.25], c = [0.38, 0.33, 0.29]:
        // PSI = -0.02 ln(0.95) - 0.02 ln(0.33/0.35) + 0.04 ln(1.16) = 0.008139476092940603
        // jensenshannon([40, 35, 25], [38, 33, 29], base=2) = 0.038299024022518446
        let d = class_drift(&[40, 35, 25], &[38, 33, 29]);
        let want = -0.02 * ln(0.95) - 0.02 * ln(0.33 / 0.35) + 0.04 * ln(1.16);
        assert!((d.psi - want).abs() < 1e-12, "{d:?}");
        assert!((d.js - 0.038_299_024_022_518_446).abs() < 1e-12, "{d:?}");
        assert_eq!(d.verdict, ClassVerdict::Ok);

        // The same proportions: nothing at all.
        let d = class_drift(&[18, 21, 15], &[36, 42, 30]);
        assert_eq!((d.psi, d.js, d.verdict), (0.0, 0.0, ClassVerdict::Ok));
    }

    #[test]
    fn class_drift_bands_and_empty_windows() {
        // PSI of [50, 50] against [50 + x, 50 - x] grows with x; find the band edges' sides.
        let verdict = |c: [u64; 2]| class_drift(&[500, 500], &c).verdict;
        // [0.5, 0.5] vs [0.66, 0.34]: PSI = 0.16 ln(0.66/0.34) ~ 0.106.
        assert!(
            (class_drift(&[500, 500], &[660, 340]).psi - 0.16 * (0.66f64 / 0.34).ln()).abs()
                < 1e-12
        );
        assert_eq!(verdict([660, 340]), ClassVerdict::Warning);
        // [0.5, 0.5] vs [0.62, 0.38]: PSI = 0.12 ln(0.62/0.38) ~ 0.0587.
        assert_eq!(verdict([620, 380]), ClassVerdict::Ok);
        // [0.5, 0.5] vs [0.75, 0.25]: PSI = 0.25 ln 3 ~ 0.275.
        assert_eq!(verdict([750, 250]), ClassVerdict::Drift);
        // MIN_SAMPLES rows are enough, one fewer is not.
        assert_eq!(verdict([30, 0]), ClassVerdict::Drift);
        assert_eq!(verdict([29, 0]), ClassVerdict::InsufficientData);

        let empty = class_drift(&[3, 1], &[0, 0]);
        assert!(empty.psi.is_nan() && empty.js.is_nan());
        assert_eq!(empty.verdict, ClassVerdict::InsufficientData);
        let json = serde_json::to_value(&empty).unwrap();
        assert_eq!(json["baseline"], serde_json::json!([0.75, 0.25]));
        assert_eq!(json["current"], serde_json::json!([null, null]));
        assert!(json["psi"].is_null() && json["js"].is_null());
        assert_eq!(json["verdict"], "insufficient_data");
        assert_eq!(
            serde_json::to_value(ClassVerdict::Warning).unwrap(),
            serde_json::json!("warning")
        );
    }

    #[test]
    fn identical_distributions_show_no_drift() {
        let b = [3.0, 10.0, 0.0, 25.0, 7.0, 1.0];
        let c: Vec<f64> = b.iter().map(|x| x * 4.0).collect();
        let s = drift_stats(&points(6), &b, &c, 2.0);
        assert_eq!(s.psi, 0.0);
        assert_eq!(s.ks_statistic, 0.0);
        assert_eq!(s.ks_p_value, 1.0);
        assert_eq!(s.wasserstein, 0.0);
        assert_eq!(s.wasserstein_scaled, 0.0);
        assert_eq!(s.js_distance, 0.0);
        assert_eq!((s.n_baseline, s.n_current), (46.0, 184.0));
        assert_eq!(verdict(&s), Verdict::Ok);
    }

    #[test]
    fn an_empty_side_gives_nan_and_insufficient_data() {
        let b = [3.0, 10.0, 5.0];
        let empty = [0.0; 3];
        for (x, y) in [(&b, &empty), (&empty, &b), (&empty, &empty)] {
            let s = drift_stats(&points(3), x, y, 1.0);
            assert!(s.psi.is_nan() && s.js_distance.is_nan() && s.wasserstein.is_nan());
            assert!(s.ks_statistic.is_nan() && s.ks_p_value.is_nan());
            assert!(s.wasserstein_scaled.is_nan());
            assert_eq!(verdict(&s), Verdict::InsufficientData);
        }
        // NaN is written as null.
        let s = drift_stats(&points(3), &b, &empty, 1.0);
        let json = serde_json::to_value(s).unwrap();
        assert!(json["psi"].is_null());
        assert_eq!(json["n_current"], 0.0);
    }

    #[test]
    fn all_mass_in_one_bin() {
        // Same single bin on both sides: no difference at all.
        let s = drift_stats(
            &points(4),
            &[0.0, 50.0, 0.0, 0.0],
            &[0.0, 80.0, 0.0, 0.0],
            1.0,
        );
        assert_eq!((s.psi, s.ks_statistic, s.ks_p_value), (0.0, 0.0, 1.0));
        assert_eq!((s.wasserstein, s.js_distance), (0.0, 0.0));

        // Different single bins: the CDFs are 0 and 1 in between, disjoint supports.
        let s = drift_stats(
            &points(4),
            &[0.0, 50.0, 0.0, 0.0],
            &[0.0, 0.0, 0.0, 80.0],
            0.5,
        );
        assert_eq!(s.ks_statistic, 1.0);
        assert_eq!(s.ks_p_value, 0.0);
        assert!((s.wasserstein - 1.0).abs() < 1e-15); // two bins of 0.5 apart
        assert!((s.wasserstein_scaled - 2.0).abs() < 1e-15);
        assert!((s.js_distance - std::f64::consts::LN_2.sqrt()).abs() < 1e-15);
        // Both proportions 1 vs the floor: 2 (1 - 1e-4) ln(1e4).
        assert!((s.psi - 2.0 * (1.0 - 1e-4) * 1e4_f64.ln()).abs() < 1e-12);
        assert_eq!(verdict(&s), Verdict::Drift);

        // A single bin in all: every statistic is 0.
        let s = drift_stats(&[1.0], &[7.0], &[90.0], 1.0);
        assert_eq!((s.psi, s.ks_statistic, s.ks_p_value), (0.0, 0.0, 1.0));
        assert_eq!((s.wasserstein, s.js_distance), (0.0, 0.0));
    }

    #[test]
    fn empty_bins_on_either_side_stay_finite() {
        let b = [0.0, 10.0, 20.0, 30.0, 0.0];
        let c = [5.0, 10.0, 20.0, 0.0, 0.0];
        let s = drift_stats(&points(5), &b, &c, 1.0);
        for v in [
            s.psi,
            s.ks_statistic,
            s.ks_p_value,
            s.wasserstein,
            s.js_distance,
        ] {
            assert!(v.is_finite() && v >= 0.0, "{s:?}");
        }
        // The bin empty on both sides adds nothing to PSI.
        let s4 = drift_stats(&points(4), &b[..4], &c[..4], 1.0);
        assert!((s.psi - s4.psi).abs() < 1e-15);
        assert!((s.js_distance - s4.js_distance).abs() < 1e-15);
        assert!((s.ks_statistic - s4.ks_statistic).abs() < 1e-15);
    }

    #[test]
    fn ks_statistic_and_effective_n() {
        // CDFs 0.5/1 vs 0.25/1: statistic 0.25. n = 4, m = 8: n m/(n+m) = 2.67 -> 3.
        let (d, p) = ks(&[0.0, 1.0], &[2.0, 2.0], &[2.0, 6.0]);
        assert_eq!(d, 0.25);
        assert_eq!(p, kstwo_sf(3, 0.25));
        // n = m = 5: 2.5 rounds half to even, to 2.
        let (d, p) = ks(&[0.0, 1.0, 2.0], &[1.0, 2.0, 2.0], &[3.0, 1.0, 1.0]);
        assert!((d - 0.4).abs() < 1e-15);
        assert_eq!(p, kstwo_sf(2, d));
        // One row on each side: SciPy's effective n rounds to 0 and its p-value is NaN.
        let (d, p) = ks(&[0.0, 1.0], &[1.0, 0.0], &[0.0, 1.0]);
        assert_eq!(d, 1.0);
        assert!(p.is_nan());
    }

    #[test]
    fn kstwo_sf_edges_and_closed_forms() {
        assert!(kstwo_sf(0, 0.3).is_nan());
        assert!(kstwo_sf(10, f64::NAN).is_nan());
        assert_eq!(kstwo_sf(10, 0.0), 1.0);
        assert_eq!(kstwo_sf(10, 0.05), 1.0); // d <= 1/(2n)
        assert_eq!(kstwo_sf(10, 1.0), 0.0);
        // n = 1: D_1 is uniform on [1/2, 1].
        assert!((kstwo_sf(1, 0.75) - 0.5).abs() < 1e-15);
        // x >= 1 - 1/n: 2 (1 - x)^n.
        assert!((kstwo_sf(10, 0.95) - 2.0 * 0.05_f64.powi(10)).abs() < 1e-20);
        // 1/(2n) <= x <= 1/n: 1 - n!/n^n (2nx - 1)^n.
        let x = 0.08_f64;
        let cdf = (1..=10).map(f64::from).product::<f64>() / 1e10 * (2.0 * 10.0 * x - 1.0).powi(10);
        assert!((kstwo_sf(10, x) - (1.0 - cdf)).abs() < 1e-15);
        // Where SciPy 1.17's Durbin matrix power overflows it says 0 (numpy warns "overflow
        // encountered in matmul"); the truth, and this port's Pelz-Good fallback, is 1 - 1e-60.
        for (n, x) in [
            (56286, 0.000_427_289_050_554_819_7),
            (64321, 0.000_335_396_987_596_988),
        ] {
            assert!((kstwo_sf(n, x) - 1.0).abs() < 1e-12, "n={n} x={x}");
        }
        // Decreasing in d.
        let mut last = 1.0;
        for i in 1..200 {
            let p = kstwo_sf(500, i as f64 / 200.0);
            assert!(p <= last + 1e-12, "{i}: {p} > {last}");
            last = p;
        }
    }

    fn stats(psi: f64, ws: f64, p: f64, n: f64) -> DriftStats {
        DriftStats {
            psi,
            ks_statistic: 0.1,
            ks_p_value: p,
            wasserstein: ws,
            wasserstein_scaled: ws,
            js_distance: 0.1,
            n_baseline: 1000.0,
            n_current: n,
        }
    }

    #[test]
    fn verdict_thresholds() {
        use Verdict::*;
        assert_eq!(verdict(&stats(1.0, 1.0, 0.0, 29.0)), InsufficientData);
        assert_eq!(verdict(&stats(1.0, 1.0, 0.0, 30.0)), Drift);
        assert_eq!(verdict(&stats(0.25, 0.0, 0.009, 100.0)), Drift);
        assert_eq!(verdict(&stats(0.0, 0.5, 0.009, 100.0)), Drift);
        // Large effect but a p-value between the two gates: warning.
        assert_eq!(verdict(&stats(0.3, 0.0, 0.02, 100.0)), Warning);
        assert_eq!(verdict(&stats(0.1, 0.0, 0.049, 100.0)), Warning);
        assert_eq!(verdict(&stats(0.0, 0.25, 0.049, 100.0)), Warning);
        // Effects below the thresholds: ok however small the p-value (large windows).
        assert_eq!(verdict(&stats(0.099, 0.249, 1e-30, 1e6)), Ok);
        // Large effects that noise explains (small windows): ok.
        assert_eq!(verdict(&stats(2.0, 2.0, 0.05, 30.0)), Ok);
        // A NaN scaled distance (zero baseline std) leaves PSI to decide.
        assert_eq!(verdict(&stats(0.3, f64::NAN, 0.001, 100.0)), Drift);
        assert_eq!(verdict(&stats(0.0, f64::NAN, 0.001, 100.0)), Ok);
        let mut empty_baseline = stats(1.0, 1.0, 0.0, 100.0);
        empty_baseline.n_baseline = 0.0;
        assert_eq!(verdict(&empty_baseline), InsufficientData);
    }

    #[test]
    fn overall_verdict() {
        use Verdict::*;
        assert_eq!(overall(&[]), InsufficientData);
        assert_eq!(
            overall(&[InsufficientData, InsufficientData]),
            InsufficientData
        );
        assert_eq!(overall(&[Ok, Ok, InsufficientData]), Ok);
        assert_eq!(overall(&[Ok, Warning, Ok]), Warning);
        assert_eq!(overall(&[Drift, Ok, Ok]), Warning);
        assert_eq!(overall(&[Drift, Ok]), Drift);
        assert_eq!(overall(&[Drift, Drift, Ok, Warning]), Drift);
        // Features without data do not count towards the share.
        assert_eq!(
            overall(&[Drift, Ok, InsufficientData, InsufficientData]),
            Drift
        );
        assert_eq!(overall(&[Drift, Ok, Ok, InsufficientData]), Warning);
    }

    #[test]
    fn verdicts_serialize_in_snake_case() {
        let names: Vec<String> = [
            Verdict::InsufficientData,
            Verdict::Ok,
            Verdict::Warning,
            Verdict::Drift,
        ]
        .iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                "\"insufficient_data\"",
                "\"ok\"",
                "\"warning\"",
                "\"drift\""
            ]
        );
        let json = serde_json::to_value(stats(0.1, 0.2, 0.3, 40.0)).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "js_distance",
                "ks_p_value",
                "ks_statistic",
                "n_baseline",
                "n_current",
                "psi",
                "wasserstein",
                "wasserstein_scaled"
            ]
        );
    }
}
