//! One dashboard over a fleet: every replica's minute buckets (`GET /v1/monitoring/buckets`),
//! merged step by step, and the very summary and series a single service computes, computed here
//! on the merged counts with `monitoring-core`. So a fleet's drift, score quantiles and error rate
//! come from its merged histograms, never from an average of per-host figures.
//!
//! The system layer is the exception, by meaning: the fleet's CPU is the mean over its hosts (and
//! the mean over every sample for the host-CPU rule), memory, disk and network are sums.

use std::collections::BTreeMap;

use async_trait::async_trait;
use monitoring_core::bucket::Bucket;
use monitoring_core::card::ModelCard;
use monitoring_core::layout::Layout;
use monitoring_core::sample::SystemSample;
use monitoring_core::series::{self, Group, Span};
use monitoring_core::{summary, View};
use serde::Deserialize;
use serde_json::Value;

use crate::dashboard::Source;
use crate::service::ServiceClient;

/// A replica, by the name the fleet gives its host.
#[derive(Clone, Debug)]
pub struct Replica {
    pub name: String,
    pub client: ServiceClient,
}

/// What one replica answers on `/v1/monitoring/buckets`.
#[derive(Debug, Deserialize)]
struct Answer {
    fingerprint: String,
    in_flight_now: u64,
    dropped_events: u64,
    groups: Vec<Group>,
}

/// A fleet's monitoring for one window, read once from every replica and merged; it answers
/// the dashboard's summary and series (see `dashboard::Source`) without further requests.
pub struct FleetView {
    card: ModelCard,
    layout: Layout,
    model: Value,
    /// The series' span and its steps, merged over the replicas.
    span: Span,
    steps: Vec<Bucket>,
    /// The summary's window, merged over the replicas.
    window: Bucket,
    window_minutes: usize,
    window_s: i64,
    now: i64,
    in_flight: u64,
    dropped_events: u64,
    /// The replicas merged, in the fleet's order.
    pub hosts: Vec<String>,
}

/// The summary's window as the service computes it for `GET /v1/monitoring/summary?window=<m>m`:
/// whole minutes, the current one and those before it. Returns (seconds, first minute).
fn summary_window(range_s: i64, now: i64) -> (i64, i64) {
    let seconds = summary::parse_window(&format!("{}m", (range_s / 60).max(1)))
        .expect("whole minutes always parse");
    (seconds, now / 60 - seconds / 60 + 1)
}

impl FleetView {
    /// Reads `range_s` back from `now` every `step` seconds from every replica and merges them.
    /// Every replica must serve the same model layout (the fingerprint); a replica that does not
    /// answer, or answers for another layout, is an error that names it.
    pub async fn read(
        replicas: &[Replica],
        range_s: i64,
        step: i64,
        now: i64,
    ) -> Result<FleetView, String> {
        let first = replicas
            .first()
            .ok_or("the fleet has no hosts to read monitoring from")?;
        let model = first
            .client
            .model()
            .await
            .map_err(|e| format!("{}: {e}", first.name))?;
        let card: ModelCard = serde_json::from_value(model["card"].clone())
            .map_err(|e| format!("{}: the model card does not read ({e})", first.name))?;
        let layout = Layout::new(&card);
        let fingerprint = layout.fingerprint();
        let span = Span::new(now - range_s, now, step, now)?;
        let (window_s, window_first) = summary_window(range_s, now);

        let reads = futures_util::future::join_all(replicas.iter().map(|r| async {
            let get = |from: i64, step: i64| {
                r.client.get_json_as::<Answer>(format!(
                    "/v1/monitoring/buckets?from={from}&to={now}&step={step}"
                ))
            };
            let (steps, window) = tokio::try_join!(
                get(span.from, span.step),
                get(window_first * 60, window_s)
            )
            .map_err(|e| format!("{}: {e}", r.name))?;
            for a in [&steps, &window] {
                if a.fingerprint != fingerprint {
                    return Err(format!(
                        "{} serves another model layout than {} (fingerprint {} against {}): a \
                         fleet view merges replicas of one model only; look at the hosts one by one \
                         until the rollout is over",
                        r.name, first.name, a.fingerprint, fingerprint
                    ));
                }
            }
            Ok((steps, window))
        }))
        .await;

        let mut by_step: BTreeMap<i64, Bucket> = BTreeMap::new();
        let mut systems: BTreeMap<i64, Vec<SystemSample>> = BTreeMap::new();
        let mut window = layout.empty_bucket(now / 60);
        let mut window_systems = Vec::new();
        let (mut window_minutes, mut in_flight, mut dropped_events) = (0, 0, 0);
        for read in reads {
            let (steps, w) = read?;
            in_flight += steps.in_flight_now;
            dropped_events += steps.dropped_events;
            for g in steps.groups {
                if let Some(s) = &g.bucket.system {
                    systems.entry(g.bucket.minute).or_default().push(s.clone());
                }
                match by_step.get_mut(&g.bucket.minute) {
                    Some(b) => b.merge(&g.bucket),
                    None => {
                        by_step.insert(g.bucket.minute, g.bucket);
                    }
                }
            }
            for g in w.groups {
                window_systems.extend(g.bucket.system.clone());
                window.merge(&g.bucket);
                window_minutes = window_minutes.max(g.minutes);
            }
        }
        for (minute, b) in by_step.iter_mut() {
            b.system = systems.get(minute).map(|s| fleet_sample(s));
        }
        window.system = (!window_systems.is_empty()).then(|| fleet_sample(&window_systems));
        Ok(FleetView {
            card,
            layout,
            model,
            span,
            steps: by_step.into_values().collect(),
            window,
            window_minutes,
            window_s,
            now,
            in_flight,
            dropped_events,
            hosts: replicas.iter().map(|r| r.name.clone()).collect(),
        })
    }

    fn view(&self) -> View<'_> {
        View {
            card: &self.card,
            layout: &self.layout,
            in_flight: self.in_flight,
            dropped_events: self.dropped_events,
        }
    }

    /// What `GET /v1/monitoring/summary` would answer for the fleet's merged window.
    pub fn summary(&self) -> Value {
        let mut s = summary::summarize(
            &self.view(),
            &self.window,
            self.window_minutes,
            self.window_s,
            self.now,
        );
        s["fleet"] = serde_json::json!({ "hosts": self.hosts });
        s
    }

    /// What `GET /v1/monitoring/series` would answer for the fleet over the span it was read for.
    pub fn series(&self, metric: &str) -> Result<Value, String> {
        let refs: Vec<&Bucket> = self.steps.iter().collect();
        series::series(&self.view(), metric, &self.span, &refs)
    }

    /// The merged bucket of the summary's window (counts over every replica).
    pub fn window(&self) -> &Bucket {
        &self.window
    }
}

/// The fleet's system sample from its hosts' samples of one step: CPU as the mean over the hosts
/// (100 = every core of every host busy; the process's CPU as the sum, 100 = one core), memory,
/// disk and network counters as sums, the time as the newest.
fn fleet_sample(samples: &[SystemSample]) -> SystemSample {
    let n = samples.len().max(1) as f64;
    let mut out = SystemSample::default();
    for s in samples {
        out.at = out.at.max(s.at);
        out.process_cpu_percent += s.process_cpu_percent;
        out.process_rss_bytes += s.process_rss_bytes;
        out.host_cpu_percent += s.host_cpu_percent / n;
        out.memory_used_bytes += s.memory_used_bytes;
        out.memory_total_bytes += s.memory_total_bytes;
        out.disk_used_bytes += s.disk_used_bytes;
        out.disk_total_bytes += s.disk_total_bytes;
        out.network_rx_bytes += s.network_rx_bytes;
        out.network_tx_bytes += s.network_tx_bytes;
    }
    out
}

#[async_trait]
impl Source for FleetView {
    async fn model(&self) -> Result<Value, String> {
        Ok(self.model.clone())
    }

    async fn summary(&self, window_s: i64) -> Result<Value, String> {
        if summary_window(window_s, self.now).0 != self.window_s {
            return Err(format!(
                "the fleet was read for a {} s window, not {window_s} s",
                self.window_s
            ));
        }
        Ok(FleetView::summary(self))
    }

    async fn series(
        &self,
        metric: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(i64, Option<f64>)>, String> {
        if Span::new(from, to, step, self.now)? != self.span {
            return Err(format!(
                "the fleet was read for {:?}, not from {from} to {to} every {step} s",
                self.span
            ));
        }
        let v = FleetView::series(self, metric)?;
        Ok(crate::service::points(&v))
    }
}
