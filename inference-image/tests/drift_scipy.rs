//! The drift statistics of `inference::monitor::drift` agree with SciPy 1.17 to 1e-6 on the cases
//! of `tests/fixtures/drift_cases.json` (written by `tests/fixtures/gen_drift_fixtures.py`; the
//! pytest `tests/test_drift_fixtures.py` proves the file is SciPy's output), and
//! `kstwo_sf` agrees with `scipy.stats.kstwo.sf` on a grid over all of SciPy's algorithm branches.
//!
//! `cargo test -p inference-image --test drift_scipy -- --nocapture` prints the largest errors.

use std::path::Path;

use inference::monitor::drift;
use serde::Deserialize;

const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Fixture {
    meta: Meta,
    cases: Vec<Case>,
    kstwo_sf: Vec<(u64, f64, f64)>,
}

#[derive(Deserialize)]
struct Meta {
    scipy: String,
    psi_epsilon: f64,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    points: Vec<f64>,
    baseline: Vec<f64>,
    current: Vec<f64>,
    ks_statistic: f64,
    ks_p_value: f64,
    wasserstein: f64,
    jensenshannon: f64,
    psi: f64,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drift_cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("drift_cases.json does not parse")
}

/// Largest error seen per statistic, for the report.
#[derive(Default)]
struct MaxError(Vec<(&'static str, f64, String)>);

impl MaxError {
    fn check(&mut self, stat: &'static str, case: &str, got: f64, want: f64, err: f64) {
        assert!(
            err <= TOLERANCE,
            "{case}: {stat} = {got:e}, SciPy says {want:e} (error {err:e})"
        );
        match self.0.iter_mut().find(|e| e.0 == stat) {
            Some(e) if e.1 < err => *e = (stat, err, case.to_string()),
            Some(_) => {}
            None => self.0.push((stat, err, case.to_string())),
        }
    }

    fn absolute(&mut self, stat: &'static str, case: &str, got: f64, want: f64) {
        self.check(stat, case, got, want, (got - want).abs());
    }

    /// Relative once the value exceeds 1 (Wasserstein distances are in the feature's unit).
    fn relative(&mut self, stat: &'static str, case: &str, got: f64, want: f64) {
        self.check(
            stat,
            case,
            got,
            want,
            (got - want).abs() / want.abs().max(1.0),
        );
    }

    fn print(&self) {
        for (stat, err, case) in &self.0 {
            println!("max error {stat:<14} {err:.3e}  ({case})");
        }
    }
}

#[test]
fn fixture_is_scipy_1_17_with_our_psi_floor() {
    let f = fixture();
    assert!(f.meta.scipy.starts_with("1.17."), "{}", f.meta.scipy);
    assert_eq!(f.meta.psi_epsilon, drift::PSI_EPSILON);
    assert!(f.cases.len() >= 12);
}

#[test]
fn drift_statistics_match_scipy() {
    let f = fixture();
    let mut max = MaxError::default();
    for c in &f.cases {
        let name = c.name.as_str();
        let (d, p) = drift::ks(&c.points, &c.baseline, &c.current);
        max.absolute("ks_statistic", name, d, c.ks_statistic);
        max.absolute("ks_p_value", name, p, c.ks_p_value);
        let w = drift::wasserstein(&c.points, &c.baseline, &c.current);
        max.relative("wasserstein", name, w, c.wasserstein);
        let js = drift::js_distance(&c.baseline, &c.current);
        max.absolute("js_distance", name, js, c.jensenshannon);
        let psi = drift::psi(&c.baseline, &c.current);
        max.absolute("psi", name, psi, c.psi);

        // drift_stats is the same functions put together.
        let s = drift::drift_stats(&c.points, &c.baseline, &c.current, 2.0);
        assert_eq!((s.psi, s.ks_statistic, s.ks_p_value), (psi, d, p), "{name}");
        assert_eq!((s.wasserstein, s.js_distance), (w, js), "{name}");
        assert_eq!(s.wasserstein_scaled, w / 2.0, "{name}");
        assert_eq!(s.n_baseline, c.baseline.iter().sum::<f64>(), "{name}");
        assert_eq!(s.n_current, c.current.iter().sum::<f64>(), "{name}");
    }
    max.print();
}

#[test]
fn kstwo_sf_matches_scipy_on_every_branch() {
    let f = fixture();
    let mut max = MaxError::default();
    for &(n, x, sf) in &f.kstwo_sf {
        max.absolute(
            "kstwo_sf",
            &format!("n={n} x={x}"),
            drift::kstwo_sf(n, x),
            sf,
        );
    }
    max.print();
}
