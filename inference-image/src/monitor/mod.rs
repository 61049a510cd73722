//! Monitoring inside the service: every request feeds one-minute buckets (system, data and model
//! layers) through a channel, so handlers never wait on it; readers merge the buckets of a window.
//! See `summary` for what is reported and `drift` for the statistics.

pub mod cloudwatch;
pub mod feedback;
pub mod persist;
pub mod prometheus;
pub mod request_id;
#[cfg(test)]
mod series_tests;
pub mod system;

// What a bucket holds and what is computed from buckets lives in `monitoring-core`, shared with
// the console, which merges a fleet's buckets and computes the same summary and series from them.
pub use monitoring_core::layout::Layout;
pub use monitoring_core::{
    bins, bucket, drift, now_secs, series, summary, truth, RETENTION_MINUTES,
};

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::mpsc;
use uuid::Uuid;

use crate::card::ModelCard;
use crate::request::{Issue, IssueKind, Quality};
use bucket::{Bucket, Labelled, RouteStats};

/// Events waiting for the recorder; beyond this they are dropped and counted, never blocking a request.
const QUEUE: usize = 65_536;
/// How often the recorder drains the queue. It polls instead of being woken per event, so a request
/// costs one lock-free push and no cross-thread wake-up; readers see events at most this late.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// Most scored rows per second the per-feature histograms take. Beyond it the recorder takes an
/// evenly spaced sample of the rows (see `RowSample`); every other count stays exact. 20,000 rows a
/// second is 1.2 million a minute, far more than drift statistics need, and binning them costs
/// under 1 % of a core.
pub const FEATURE_ROWS_PER_SECOND: f64 = 20_000.0;
/// How often the system layer is sampled.
pub const SYSTEM_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// What a request tells the recorder.
#[derive(Debug)]
pub enum Event {
    Request {
        at: i64,
        route: &'static str,
        status: u16,
        seconds: f64,
        in_flight: u64,
    },
    Scored {
        at: i64,
        /// The scored rows, row-major; imputed cells are NaN (not observations).
        rows: Vec<f64>,
        /// One score per row (see `scorer::Outputs::scores`).
        scores: Vec<f64>,
        /// Classifier: the predicted class per row.
        classes: Vec<u32>,
        /// Missing, invalid and imputed counts, when the request had any.
        quality: Option<Box<Quality>>,
    },
    Rejected {
        at: i64,
        issues: Vec<Issue>,
    },
    Labels {
        at: i64,
        items: Vec<Labelled>,
    },
    System(system::SystemSample),
}

/// The buckets of the last `RETENTION_MINUTES`, oldest first, and the minutes changed since the
/// last flush to disk.
pub struct History {
    pub buckets: VecDeque<Bucket>,
    dirty: BTreeSet<i64>,
}

pub struct Monitor {
    pub layout: Layout,
    pub card: Arc<ModelCard>,
    history: Mutex<History>,
    /// Since this process started, for Prometheus counters (without per-feature histograms).
    totals: Mutex<Bucket>,
    registry: Mutex<feedback::Registry>,
    tx: mpsc::SyncSender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    in_flight: AtomicU64,
    dropped: AtomicU64,
    pub state_dir: Option<PathBuf>,
    store: Mutex<Option<persist::Store>>,
    /// Off only for measuring what monitoring costs (`--monitoring false`).
    pub enabled: bool,
}

impl Monitor {
    pub fn new(card: Arc<ModelCard>, state_dir: Option<PathBuf>) -> Arc<Self> {
        Self::with_switch(card, state_dir, true)
    }

    /// `enabled = false` records nothing (the endpoints answer with empty windows).
    pub fn with_switch(
        card: Arc<ModelCard>,
        state_dir: Option<PathBuf>,
        enabled: bool,
    ) -> Arc<Self> {
        let layout = Layout::new(&card);
        let kind = feedback::LabelKind::of(&card);
        let totals = layout.empty_bucket(now_secs() / 60);
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        Arc::new(Self {
            layout,
            card,
            history: Mutex::new(History {
                buckets: VecDeque::new(),
                dirty: BTreeSet::new(),
            }),
            totals: Mutex::new(totals),
            registry: Mutex::new(feedback::Registry::new(kind)),
            tx,
            rx: Mutex::new(Some(rx)),
            in_flight: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            state_dir,
            store: Mutex::new(None),
            enabled,
        })
    }

    /// A digest of the bin layout: persisted buckets are only reused by a model with the same one.
    pub fn fingerprint(&self) -> String {
        self.layout.fingerprint()
    }

    /// What the summary and the series read besides the buckets.
    pub fn view(&self) -> monitoring_core::View<'_> {
        monitoring_core::View {
            card: &self.card,
            layout: &self.layout,
            in_flight: self.in_flight(),
            dropped_events: self.dropped_events(),
        }
    }

    /// Loads persisted history from the state directory (if one is configured). A file that
    /// cannot be used is set aside with a warning; only an unusable directory is an error.
    pub fn load_state(&self) -> Result<(), persist::PersistError> {
        let Some(dir) = &self.state_dir else {
            return Ok(());
        };
        let (store, buckets, warning) = persist::Store::open(dir, &self.fingerprint())?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        tracing::info!(path = %store.path.display(), minutes = buckets.len(), "monitoring history loaded");
        self.restore(buckets);
        *self.store.lock().expect("not poisoned") = Some(store);
        Ok(())
    }

    /// Writes the minutes changed since the last flush. Blocking (SQLite): call from a blocking context.
    pub fn flush(&self) {
        let mut store = self.store.lock().expect("not poisoned");
        let Some(store) = store.as_mut() else { return };
        let changed: Vec<Bucket> = {
            let mut history = self.history.lock().expect("not poisoned");
            let dirty = std::mem::take(&mut history.dirty);
            history
                .buckets
                .iter()
                .filter(|b| dirty.contains(&b.minute))
                .cloned()
                .collect()
        };
        let keep_from = now_secs() / 60 - RETENTION_MINUTES;
        if let Err(e) = store.save(&changed, keep_from) {
            tracing::warn!(error = %e, "could not save monitoring history; will retry");
            let mut history = self.history.lock().expect("not poisoned");
            history.dirty.extend(changed.iter().map(|b| b.minute));
        }
    }

    /// Flushes every `every` on a blocking thread until the process ends.
    pub fn start_flushing(self: &Arc<Self>, every: Duration) {
        if self.state_dir.is_none() {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let m = Arc::clone(&me);
                let _ = tokio::task::spawn_blocking(move || m.flush()).await;
            }
        });
    }

    /// Starts the recorder and the system sampler on the current tokio runtime.
    pub fn start(self: &Arc<Self>) {
        let Some(rx) = self.rx.lock().expect("not poisoned").take() else {
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A token bucket of feature rows: it refills at the rate and holds up to a second's
            // worth, so bursts within that are counted whole.
            let mut allowance = FEATURE_ROWS_PER_SECOND;
            let mut last = tokio::time::Instant::now();
            let mut seed = RandomState::new().hash_one(0u64);
            loop {
                tick.tick().await;
                let events: Vec<Event> = rx.try_iter().take(QUEUE).collect();
                let now = tokio::time::Instant::now();
                let refill = FEATURE_ROWS_PER_SECOND * now.duration_since(last).as_secs_f64();
                allowance = (allowance + refill).min(FEATURE_ROWS_PER_SECOND);
                last = now;
                if events.is_empty() {
                    continue;
                }
                let rows: usize = events.iter().map(Event::scored_rows).sum();
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let sample = RowSample::within(rows, allowance, seed);
                allowance = (allowance - sample.picked(rows) as f64).max(0.0);
                me.apply_sampled(events.into_iter(), sample);
            }
        });
        let me = Arc::clone(self);
        let disk = self.state_dir.clone().unwrap_or_else(|| PathBuf::from("/"));
        tokio::spawn(async move {
            let mut sampler = system::SystemSampler::new(&disk);
            let mut tick = tokio::time::interval(SYSTEM_SAMPLE_EVERY);
            loop {
                tick.tick().await;
                me.record(Event::System(sampler.sample(now_secs())));
            }
        });
    }

    /// Queues an event for the recorder; never waits.
    pub fn record(&self, event: Event) {
        if !self.enabled {
            return;
        }
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops; returns the count including it.
    pub fn enter(self: &Arc<Self>) -> (InFlight, u64) {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        (InFlight(Arc::clone(self)), n)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Remembers a prediction for later feedback and returns its request id.
    /// Remembers a scored request's rows for feedback: their scores and (multi-class) every
    /// class's probability, row-major.
    pub fn remember(&self, errors: &[f64], probabilities: &[f32]) -> Uuid {
        if !self.enabled {
            return Uuid::new_v4();
        }
        let minute = now_secs() / 60;
        self.registry
            .lock()
            .expect("not poisoned")
            .remember(minute, errors, probabilities)
    }

    pub fn label(
        &self,
        req: &feedback::FeedbackRequest,
    ) -> Result<usize, Vec<feedback::ItemProblem>> {
        let at = now_secs();
        let items = self
            .registry
            .lock()
            .expect("not poisoned")
            .label(req, at / 60)?;
        let n = items.len();
        self.record(Event::Labels { at, items });
        Ok(n)
    }

    /// Applies events to the current buckets, every scored row into the feature histograms.
    pub fn apply(&self, events: impl Iterator<Item = Event>) {
        self.apply_sampled(events, RowSample::ALL);
    }

    /// Applies events to the current buckets, the scored rows `sample` picks into the feature
    /// histograms (the recorder task calls this).
    pub fn apply_sampled(&self, events: impl Iterator<Item = Event>, mut sample: RowSample) {
        let mut history = self.history.lock().expect("not poisoned");
        let mut totals = self.totals.lock().expect("not poisoned");
        for event in events {
            let at = match &event {
                Event::Request { at, .. }
                | Event::Scored { at, .. }
                | Event::Rejected { at, .. }
                | Event::Labels { at, .. } => *at,
                Event::System(s) => s.at,
            };
            let minute = at / 60;
            history.dirty.insert(minute);
            let bucket = bucket_for(&mut history.buckets, &self.layout, minute);
            self.fold(bucket, &event, Depth::Full(&mut sample));
            self.fold(&mut totals, &event, Depth::Counters);
        }
    }

    fn fold(&self, b: &mut Bucket, event: &Event, depth: Depth) {
        let layout = &self.layout;
        match event {
            Event::Request {
                route,
                status,
                seconds,
                in_flight,
                ..
            } => {
                if !b.routes.contains_key(*route) {
                    b.routes.insert((*route).to_string(), RouteStats::default());
                }
                let r = b.routes.get_mut(*route).expect("inserted above");
                let class = (*status as usize / 100).clamp(1, 5) - 1;
                r.status[class] += 1;
                if r.latency.is_empty() {
                    r.latency = vec![0; layout.latency_bins.len()];
                }
                r.latency[layout.latency_bins.index(*seconds)] += 1;
                r.latency_sum_seconds += seconds;
                b.in_flight_max = b.in_flight_max.max(*in_flight);
                if *status == 429 {
                    b.overloaded += 1;
                }
            }
            Event::Scored {
                rows,
                scores,
                classes,
                quality,
                ..
            } => {
                let width = layout.feature_names.len();
                b.rows += scores.len() as u64;
                if let Some(q) = quality {
                    b.refused_rows += q.refused_rows;
                    for (j, f) in b.features.iter_mut().enumerate().take(width) {
                        f.missing += q.missing[j];
                        f.invalid += q.invalid[j];
                        f.imputed += q.imputed[j];
                    }
                }
                if let Depth::Full(sample) = depth {
                    let (first, stride) = sample.take(scores.len());
                    // Feature by feature, so one feature's histograms stay in cache over the rows.
                    for (j, f) in b.features.iter_mut().enumerate().take(width) {
                        let (fine, deciles) = (&layout.feature_bins[j], &layout.decile_bins[j]);
                        let coarsening = &layout.decile_from_fine[j];
                        let picked = rows.iter().skip(first * width + j);
                        for &v in picked.step_by(stride * width) {
                            if v.is_nan() {
                                continue;
                            }
                            let slot = fine.index(v);
                            f.fine[slot] += 1;
                            let decile = coarsening.index(deciles, slot, v);
                            f.deciles[bins::closed_top(deciles, decile, v)] += 1;
                            f.sum += v;
                            f.sum_sq += v * v;
                        }
                    }
                }
                for &e in scores {
                    b.scores[layout.score_bins.index(e)] += 1;
                    b.error_sum += e;
                }
                if let Some(t) = layout.threshold {
                    b.anomalies += scores.iter().filter(|&&e| e > t).count() as u64;
                }
                if !layout.classes.is_empty() {
                    b.predicted.resize(layout.classes.len(), 0);
                    for &c in classes {
                        if let Some(n) = b.predicted.get_mut(c as usize) {
                            *n += 1;
                        }
                    }
                }
            }
            Event::Rejected { issues, .. } => {
                b.rejected_requests += 1;
                for issue in issues {
                    let Some(j) = issue
                        .feature
                        .as_ref()
                        .and_then(|n| layout.feature_names.iter().position(|f| f == n))
                    else {
                        continue;
                    };
                    match issue.kind {
                        IssueKind::Missing => b.features[j].missing += 1,
                        IssueKind::Invalid => b.features[j].invalid += 1,
                        IssueKind::Shape => {}
                    }
                }
            }
            Event::Labels { items, .. } => {
                for item in items {
                    if b.feedback.len() < bucket::FEEDBACK_PER_MINUTE {
                        b.feedback.push(*item);
                    } else {
                        b.feedback_dropped += 1;
                    }
                }
            }
            Event::System(s) => {
                b.host_cpu_percent_sum += s.host_cpu_percent;
                b.system_samples += 1;
                b.system = Some(s.clone());
            }
        }
    }

    /// `GET /v1/monitoring/summary` for the `seconds` up to now: whole minutes, the current one
    /// plus enough before it to cover the window.
    pub fn summary_json(&self, seconds: i64) -> serde_json::Value {
        let to = now_secs();
        let last = to / 60;
        let first = last - seconds / 60 + 1;
        let (merged, minutes) = self.merged(first, last);
        summary::summarize(&self.view(), &merged, minutes, seconds, to)
    }

    /// `GET /v1/monitoring/series`: `metric` from `from` to `to` (Unix seconds) every `step`
    /// seconds, clamped to what is kept.
    pub fn series(
        &self,
        metric: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<serde_json::Value, String> {
        let span = series::Span::new(from, to, step, now_secs())?;
        let (first, last) = span.minutes();
        let view = self.view();
        self.read_range(first, last, |buckets| {
            series::series(&view, metric, &span, buckets)
        })
    }

    /// The buckets with minute in [from, to] merged into one, and how many minutes had data.
    pub fn merged(&self, from_minute: i64, to_minute: i64) -> (Bucket, usize) {
        let history = self.history.lock().expect("not poisoned");
        let mut out = self.layout.empty_bucket(to_minute);
        let mut n = 0;
        for b in history
            .buckets
            .iter()
            .filter(|b| b.minute >= from_minute && b.minute <= to_minute)
        {
            out.merge(b);
            n += 1;
        }
        (out, n)
    }

    /// Runs `f` over the buckets in [from, to], oldest first, without copying them (the history is
    /// locked meanwhile, so `f` must be quick).
    pub fn read_range<R>(
        &self,
        from_minute: i64,
        to_minute: i64,
        f: impl FnOnce(&[&Bucket]) -> R,
    ) -> R {
        let history = self.history.lock().expect("not poisoned");
        let in_range: Vec<&Bucket> = history
            .buckets
            .iter()
            .filter(|b| b.minute >= from_minute && b.minute <= to_minute)
            .collect();
        f(&in_range)
    }

    /// Copies of the buckets in [from, to], oldest first (for time series).
    pub fn buckets(&self, from_minute: i64, to_minute: i64) -> Vec<Bucket> {
        let history = self.history.lock().expect("not poisoned");
        history
            .buckets
            .iter()
            .filter(|b| b.minute >= from_minute && b.minute <= to_minute)
            .cloned()
            .collect()
    }

    pub fn totals(&self) -> Bucket {
        self.totals.lock().expect("not poisoned").clone()
    }

    /// Replaces the history (after loading persisted state).
    pub fn restore(&self, buckets: Vec<Bucket>) {
        let mut history = self.history.lock().expect("not poisoned");
        let cutoff = now_secs() / 60 - RETENTION_MINUTES;
        history.buckets = buckets.into_iter().filter(|b| b.minute > cutoff).collect();
        history.buckets.make_contiguous().sort_by_key(|b| b.minute);
    }
}

/// The bucket for `minute`, created if needed; buckets older than the retention are dropped.
fn bucket_for<'a>(
    buckets: &'a mut VecDeque<Bucket>,
    layout: &Layout,
    minute: i64,
) -> &'a mut Bucket {
    while buckets
        .front()
        .is_some_and(|b| b.minute <= minute - RETENTION_MINUTES)
    {
        buckets.pop_front();
    }
    let pos = buckets.iter().rposition(|b| b.minute <= minute);
    match pos {
        Some(i) if buckets[i].minute == minute => &mut buckets[i],
        Some(i) => {
            buckets.insert(i + 1, layout.empty_bucket(minute));
            &mut buckets[i + 1]
        }
        None => {
            buckets.push_front(layout.empty_bucket(minute));
            &mut buckets[0]
        }
    }
}

/// How much of an event a bucket takes: the history's buckets everything (the feature histograms
/// the rows the sample picks), the process totals (for Prometheus counters) everything but the
/// per-feature histograms, which only the history serves.
enum Depth<'a> {
    Full(&'a mut RowSample),
    Counters,
}

impl Event {
    /// Rows this event brings to the feature histograms.
    fn scored_rows(&self) -> usize {
        match self {
            Event::Scored { scores, .. } => scores.len(),
            _ => 0,
        }
    }
}

/// Which scored rows of one drain the feature histograms take: every `stride`-th row, counted
/// across the drain's requests in arrival order, from a random starting offset. A stride of one
/// takes every row. Rows are picked whatever their request, so a large batch is sampled like many
/// small ones, and the random offset keeps a load that repeats the same requests from aliasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSample {
    stride: usize,
    /// Rows to pass over before the next picked one.
    skip: usize,
}

impl RowSample {
    pub const ALL: RowSample = RowSample { stride: 1, skip: 0 };

    /// The sample that keeps about `budget` of `rows` (all of them when they fit).
    pub fn within(rows: usize, budget: f64, seed: u64) -> Self {
        if rows as f64 <= budget {
            return Self::ALL;
        }
        let stride = (rows as f64 / budget.max(1.0)).ceil() as usize;
        Self {
            stride,
            skip: (seed >> 33) as usize % stride,
        }
    }

    /// How many of `rows` rows (one drain's) this sample picks.
    pub fn picked(&self, rows: usize) -> usize {
        rows.saturating_sub(self.skip).div_ceil(self.stride)
    }

    /// For an event of `n` rows: the index of its first picked row and the stride (the first index
    /// is `n` or more when none is picked), and moves on past the event.
    fn take(&mut self, n: usize) -> (usize, usize) {
        let first = self.skip;
        self.skip = if first >= n {
            first - n
        } else {
            let last = first + (n - 1 - first) / self.stride * self.stride;
            last + self.stride - n
        };
        (first, self.stride)
    }
}

/// Decrements the in-flight count when a request finishes.
pub struct InFlight(Arc<Monitor>);

impl InFlight {
    pub fn monitor(&self) -> &Monitor {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_and_rows() -> (Arc<ModelCard>, Vec<Vec<f64>>) {
        let dir = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/model/wbc-autoencoder"
        ));
        let card = Arc::new(ModelCard::load(dir).expect("bundled card"));
        let rows = crate::card_builder::read_csv(&dir.join("calibration.csv"))
            .expect("calibration rows")
            .rows;
        (card, rows)
    }

    fn scored(at: i64, rows: &[Vec<f64>]) -> Event {
        Event::Scored {
            at,
            rows: rows.iter().flatten().copied().collect(),
            scores: (0..rows.len()).map(|i| 0.01 * (i + 1) as f64).collect(),
            classes: Vec::new(),
            quality: None,
        }
    }

    #[test]
    fn a_sample_picks_every_stride_th_row_across_requests() {
        for stride in 1..7 {
            for skip in 0..stride {
                let mut sample = RowSample { stride, skip };
                let mut picked = Vec::new();
                let mut seen = 0;
                for n in [2, 4, 1, 5, 0, 13, 3, 1, 1, 8] {
                    let (first, step) = sample.take(n);
                    picked.extend((first..n).step_by(step).map(|i| seen + i));
                    seen += n;
                }
                let expected: Vec<usize> = (skip..seen).step_by(stride).collect();
                assert_eq!(picked, expected, "stride {stride}, skip {skip}");
            }
        }
    }

    #[test]
    fn a_sample_takes_everything_within_its_budget() {
        assert_eq!(RowSample::within(400, 400.0, 7), RowSample::ALL);
        assert_eq!(RowSample::within(0, 0.0, 7), RowSample::ALL);
        let s = RowSample::within(1000, 100.0, 7);
        assert_eq!(s.stride, 10);
        assert!(s.skip < 10);
        assert_eq!(RowSample::within(1001, 100.0, 7).stride, 11);
        assert_eq!(RowSample::ALL.picked(17), 17);
        for skip in 0..10 {
            let s = RowSample { stride: 10, skip };
            assert_eq!(s.picked(1000), (skip..1000).step_by(10).count());
            assert_eq!(s.picked(3), usize::from(skip < 3));
        }
    }

    /// Sampled rows land in the feature histograms exactly as if only they had been sent, while
    /// row, score and anomaly counts take every row.
    #[test]
    fn feature_histograms_take_exactly_the_sampled_rows() {
        let (card, rows) = card_and_rows();
        let at = now_secs();
        let requests: Vec<&[Vec<f64>]> = rows.chunks(7).collect();
        let total: usize = rows.len();
        let sample = RowSample::within(total, 10.0, 12_345);
        assert!(sample.stride > 1);

        let sampled = Monitor::new(Arc::clone(&card), None);
        sampled.apply_sampled(requests.iter().map(|r| scored(at, r)), sample);
        let minute = at / 60;
        let got = sampled.buckets(minute, minute).pop().expect("a bucket");

        let picked: Vec<Vec<f64>> = rows
            .iter()
            .skip(sample.skip)
            .step_by(sample.stride)
            .cloned()
            .collect();
        let only_picked = Monitor::new(Arc::clone(&card), None);
        only_picked.apply(std::iter::once(scored(at, &picked)));
        let want = only_picked.buckets(minute, minute).pop().expect("a bucket");

        assert_eq!(got.rows, total as u64);
        for (j, (g, w)) in got.features.iter().zip(&want.features).enumerate() {
            assert_eq!(g.fine, w.fine, "feature {j}");
            assert_eq!(g.deciles, w.deciles, "feature {j}");
            assert_eq!(g.fine.iter().sum::<u64>(), picked.len() as u64);
            assert!((g.sum - w.sum).abs() <= 1e-9 * w.sum.abs().max(1.0));
        }
        assert_eq!(got.scores.iter().sum::<u64>(), total as u64);
    }
}
