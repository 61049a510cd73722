//! Evaluates the alert rules against the monitoring summary, keeps each rule's state (ok or
//! firing) and emits an event only when a rule changes state.
//!
//! Every `--alert-interval-secs` a task of its own computes the summary once per distinct window on
//! a blocking thread (never on the request path), checks every rule, and records transitions in a
//! ring of the last [`MAX_EVENTS`] events of the last [`EVENT_RETENTION_SECS`]. A metric that is
//! absent or null in a window (no traffic, no labels yet) leaves the rule where it was, so a quiet
//! minute neither resolves nor fires anything. With a state directory the rule states and the ring
//! are saved to `alerts.json` after every transition (write to a temporary file, then rename), so a
//! restart does not fire again what was already firing.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::rules::{lookup, Check, Rule};
use super::webhook::Webhook;
use crate::monitor::{now_secs, Monitor};

/// Most events kept.
pub const MAX_EVENTS: usize = 1000;
/// Oldest event kept: 7 days.
pub const EVENT_RETENTION_SECS: i64 = 7 * 86_400;
pub const STATE_FILE: &str = "alerts.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Firing,
}

/// One rule's state: where it is, since when, and what it saw last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub state: State,
    /// Unix seconds of the last transition (or of the start, before any).
    pub since: i64,
    /// The metric at the last evaluation (null: no data).
    #[serde(default)]
    pub value: Value,
    /// Unix seconds of the last evaluation.
    #[serde(default)]
    pub evaluated_at: Option<i64>,
}

impl RuleState {
    pub fn new(at: i64) -> Self {
        Self {
            state: State::Ok,
            since: at,
            value: Value::Null,
            evaluated_at: None,
        }
    }

    /// Applies one window's `value` of `rule`'s metric at `at`; returns the new state when it
    /// changed. No data keeps the state.
    pub fn step(&mut self, rule: &Rule, value: Option<&Value>, at: i64) -> Option<State> {
        self.value = value.cloned().unwrap_or(Value::Null);
        self.evaluated_at = Some(at);
        let next = match rule.check(value) {
            Check::NoData => return None,
            Check::Breached => State::Firing,
            Check::Clear => State::Ok,
        };
        if next == self.state {
            return None;
        }
        self.state = next;
        self.since = at;
        Some(next)
    }
}

/// Who is alerting: names carried by every event.
#[derive(Debug, Clone, Serialize)]
pub struct Origin {
    pub service: String,
    pub model: String,
    pub model_version: String,
    pub image_tag: Option<String>,
}

/// A transition of one rule, as kept, served and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: String,
    pub title: String,
    pub severity: String,
    /// "firing" or "resolved".
    pub state: String,
    pub value: Value,
    pub threshold: Value,
    pub op: String,
    pub metric: String,
    pub window_minutes: u64,
    /// Unix seconds.
    pub at: i64,
    pub service: String,
    pub model: String,
    pub model_version: String,
    pub image_tag: Option<String>,
}

struct Inner {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    events: VecDeque<AlertEvent>,
}

/// What is persisted in `alerts.json`.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    rules: BTreeMap<String, RuleState>,
    events: Vec<AlertEvent>,
}

pub struct Evaluator {
    origin: Origin,
    inner: Mutex<Inner>,
    state_file: Option<PathBuf>,
    webhook: Option<Arc<Webhook>>,
}

impl Evaluator {
    /// Rules start ok at `now`, or where `state_dir`'s `alerts.json` left them (a file that cannot
    /// be read is ignored with a warning and overwritten at the next transition).
    pub fn new(
        rules: Vec<Rule>,
        origin: Origin,
        state_dir: Option<&Path>,
        webhook: Option<Arc<Webhook>>,
    ) -> Self {
        let now = now_secs();
        let mut states: Vec<RuleState> = rules.iter().map(|_| RuleState::new(now)).collect();
        let mut events = VecDeque::new();
        let state_file = state_dir.map(|d| d.join(STATE_FILE));
        if let Some(path) = state_file.as_ref().filter(|p| p.exists()) {
            match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Saved>(&b).map_err(|e| e.to_string()))
            {
                Ok(saved) => {
                    for (rule, state) in rules.iter().zip(states.iter_mut()) {
                        if let Some(s) = saved.rules.get(&rule.id) {
                            state.state = s.state;
                            state.since = s.since;
                        }
                    }
                    events = saved.events.into();
                    tracing::info!(path = %path.display(), events = events.len(), "alert state loaded");
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "alert state could not be read ({e}); starting with every rule ok"
                ),
            }
        }
        let me = Self {
            origin,
            inner: Mutex::new(Inner {
                rules,
                states,
                events,
            }),
            state_file,
            webhook,
        };
        me.prune(&mut me.inner.lock().expect("not poisoned"), now);
        me
    }

    fn prune(&self, inner: &mut Inner, now: i64) {
        while inner.events.len() > MAX_EVENTS
            || inner
                .events
                .front()
                .is_some_and(|e| e.at < now - EVENT_RETENTION_SECS)
        {
            inner.events.pop_front();
        }
    }

    /// The rules evaluated now.
    pub fn rules(&self) -> Vec<Rule> {
        self.inner.lock().expect("not poisoned").rules.clone()
    }

    /// Replaces the rules. A rule kept with the same id, metric, comparison, threshold and window
    /// keeps its state (a firing rule stays firing, nothing is emitted); any other starts ok now.
    /// A removed rule is dropped without a "resolved" event: nobody watches it any more.
    pub fn replace_rules(&self, rules: Vec<Rule>) {
        let now = now_secs();
        let mut inner = self.inner.lock().expect("not poisoned");
        let states = rules
            .iter()
            .map(|new| {
                inner
                    .rules
                    .iter()
                    .zip(&inner.states)
                    .find(|(old, _)| same_condition(old, new))
                    .map_or_else(|| RuleState::new(now), |(_, s)| s.clone())
            })
            .collect();
        inner.rules = rules;
        inner.states = states;
        let saved = self.saved(&inner);
        drop(inner);
        if let (Some(path), Some(saved)) = (&self.state_file, saved) {
            if let Err(e) = save(path, &saved) {
                tracing::warn!(path = %path.display(), "could not save the alert state ({e})");
            }
        }
    }

    fn saved(&self, inner: &Inner) -> Option<Saved> {
        self.state_file.as_ref().map(|_| Saved {
            version: 1,
            rules: inner
                .rules
                .iter()
                .zip(&inner.states)
                .map(|(r, s)| (r.id.clone(), s.clone()))
                .collect(),
            events: inner.events.iter().cloned().collect(),
        })
    }

    /// The windows (minutes) the rules use, each once.
    pub fn windows(&self) -> Vec<u64> {
        let inner = self.inner.lock().expect("not poisoned");
        let mut w: Vec<u64> = inner.rules.iter().map(|r| r.window_minutes).collect();
        w.sort_unstable();
        w.dedup();
        w
    }

    /// Checks every rule against `summaries` (window minutes → summary) at `at`; records,
    /// persists and queues for delivery the transitions, and returns them.
    pub fn evaluate(&self, summaries: &BTreeMap<u64, Value>, at: i64) -> Vec<AlertEvent> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let mut emitted = Vec::new();
        let Inner { rules, states, .. } = &mut *inner;
        for (rule, state) in rules.iter().zip(states.iter_mut()) {
            let value = summaries
                .get(&rule.window_minutes)
                .and_then(|s| lookup(s, &rule.metric));
            if let Some(next) = state.step(rule, value, at) {
                emitted.push(self.event(rule, next, state.value.clone(), at));
            }
        }
        if emitted.is_empty() {
            return emitted;
        }
        inner.events.extend(emitted.iter().cloned());
        self.prune(&mut inner, at);
        let saved = self.saved(&inner);
        drop(inner);
        for e in &emitted {
            match e.state.as_str() {
                "firing" => {
                    tracing::warn!(rule = %e.rule, severity = %e.severity, metric = %e.metric, value = %e.value, threshold = %e.threshold, "alert firing: {}", e.title)
                }
                _ => {
                    tracing::info!(rule = %e.rule, severity = %e.severity, metric = %e.metric, value = %e.value, "alert resolved: {}", e.title)
                }
            }
            if let Some(w) = &self.webhook {
                w.enqueue(e.clone());
            }
        }
        if let (Some(path), Some(saved)) = (&self.state_file, saved) {
            if let Err(e) = save(path, &saved) {
                tracing::warn!(path = %path.display(), "could not save the alert state ({e})");
            }
        }
        emitted
    }

    fn event(&self, rule: &Rule, state: State, value: Value, at: i64) -> AlertEvent {
        AlertEvent {
            rule: rule.id.clone(),
            title: rule.title.clone(),
            severity: rule.severity.as_str().into(),
            state: match state {
                State::Firing => "firing",
                State::Ok => "resolved",
            }
            .into(),
            value,
            threshold: rule.threshold.clone(),
            op: rule.op.as_str().into(),
            metric: rule.metric.clone(),
            window_minutes: rule.window_minutes,
            at,
            service: self.origin.service.clone(),
            model: self.origin.model.clone(),
            model_version: self.origin.model_version.clone(),
            image_tag: self.origin.image_tag.clone(),
        }
    }

    /// Computes each window's summary once and evaluates every rule (blocking: call it off the
    /// async workers).
    pub fn evaluate_now(&self, monitor: &Monitor) -> Vec<AlertEvent> {
        let summaries: BTreeMap<u64, Value> = self
            .windows()
            .into_iter()
            .map(|w| (w, monitor.summary_json(w as i64 * 60)))
            .collect();
        self.evaluate(&summaries, now_secs())
    }

    /// Evaluates every `every` on a blocking thread until the runtime stops (with no rules, a tick
    /// computes nothing; rules may arrive later through `PUT /v1/monitoring/alerts/rules`).
    pub fn spawn(self: Arc<Self>, monitor: Arc<Monitor>, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (me, m) = (Arc::clone(&self), Arc::clone(&monitor));
                let _ = tokio::task::spawn_blocking(move || me.evaluate_now(&m)).await;
            }
        });
    }

    /// The rules with their state, and the events of the last 7 days, oldest first.
    pub fn snapshot(&self) -> (Vec<Value>, Vec<AlertEvent>) {
        let mut inner = self.inner.lock().expect("not poisoned");
        self.prune(&mut inner, now_secs());
        let rules = inner
            .rules
            .iter()
            .zip(&inner.states)
            .map(|(r, s)| {
                let mut v = json!(r);
                v["state"] = json!(s.state);
                v["since"] = json!(s.since);
                v["value"] = s.value.clone();
                v["evaluated_at"] = json!(s.evaluated_at);
                v
            })
            .collect();
        (rules, inner.events.iter().cloned().collect())
    }
}

/// Whether two rules watch the same thing the same way (their title and severity may differ).
fn same_condition(a: &Rule, b: &Rule) -> bool {
    a.id == b.id
        && a.metric == b.metric
        && a.op == b.op
        && a.threshold == b.threshold
        && a.window_minutes == b.window_minutes
}

fn save(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(saved)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::{Op, Severity};

    fn rule(id: &str, metric: &str, op: Op, threshold: Value, window: u64) -> Rule {
        Rule {
            id: id.into(),
            title: id.to_uppercase(),
            metric: metric.into(),
            op,
            threshold,
            window_minutes: window,
            severity: Severity::Critical,
        }
    }

    fn origin() -> Origin {
        Origin {
            service: "svc".into(),
            model: "m".into(),
            model_version: "1.0.0".into(),
            image_tag: Some("v1".into()),
        }
    }

    fn evaluator(dir: Option<&Path>) -> Evaluator {
        Evaluator::new(
            vec![
                rule("errors", "system.error_rate", Op::Gt, json!(0.05), 1),
                rule("drift", "data.drift.verdict", Op::Is, json!("drift"), 15),
            ],
            origin(),
            dir,
            None,
        )
    }

    fn summaries(error_rate: Value, verdict: Value) -> BTreeMap<u64, Value> {
        BTreeMap::from([
            (1, json!({"system": {"error_rate": error_rate}})),
            (15, json!({"data": {"drift": {"verdict": verdict}}})),
        ])
    }

    fn states(e: &[AlertEvent]) -> Vec<(String, String)> {
        e.iter()
            .map(|e| (e.rule.clone(), e.state.clone()))
            .collect()
    }

    #[test]
    fn events_only_on_transitions_and_no_data_keeps_state() {
        let ev = evaluator(None);
        let t = now_secs();
        assert_eq!(ev.windows(), [1, 15]);
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        // No data at all: nothing.
        assert!(ev
            .evaluate(&summaries(Value::Null, json!("insufficient_data")), t + 100)
            .is_empty());
        // Both breach: two firing events.
        let e = ev.evaluate(&summaries(json!(0.5), json!("drift")), t + 160);
        assert_eq!(
            states(&e),
            pairs(&[("errors", "firing"), ("drift", "firing")])
        );
        assert_eq!(e[0].value, json!(0.5));
        assert_eq!(e[0].image_tag.as_deref(), Some("v1"));
        // Still breached: nothing new.
        assert!(ev
            .evaluate(&summaries(json!(0.9), json!("drift")), t + 220)
            .is_empty());
        // No data (no traffic, too few rows): the rules stay firing, nothing is emitted.
        assert!(ev
            .evaluate(&summaries(Value::Null, json!("insufficient_data")), t + 280)
            .is_empty());
        assert!(ev.evaluate(&BTreeMap::new(), t + 290).is_empty());
        let (rules, _) = ev.snapshot();
        assert_eq!(rules[0]["state"], "firing");
        assert_eq!(rules[0]["since"], t + 160);
        assert_eq!(rules[0]["value"], Value::Null);
        // Clear: resolved once.
        let e = ev.evaluate(&summaries(json!(0.0), json!("warning")), t + 340);
        assert_eq!(
            states(&e),
            pairs(&[("errors", "resolved"), ("drift", "resolved")])
        );
        assert!(ev
            .evaluate(&summaries(json!(0.01), json!("ok")), t + 400)
            .is_empty());
        let (rules, events) = ev.snapshot();
        assert_eq!(rules[1]["state"], "ok");
        assert_eq!(rules[1]["since"], t + 340);
        assert_eq!(events.len(), 4);
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn the_ring_is_bounded() {
        let ev = Evaluator::new(
            vec![rule("errors", "system.error_rate", Op::Gt, json!(0.05), 1)],
            origin(),
            None,
            None,
        );
        let now = now_secs();
        for i in 0..(MAX_EVENTS as i64 + 10) {
            let v = if i % 2 == 0 { 1.0 } else { 0.0 };
            let s = BTreeMap::from([(1, json!({"system": {"error_rate": v}}))]);
            assert_eq!(ev.evaluate(&s, now + i).len(), 1);
        }
        let (_, events) = ev.snapshot();
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events.last().unwrap().at, now + MAX_EVENTS as i64 + 9);
    }

    #[test]
    fn state_survives_a_restart_with_a_state_dir() {
        let dir = std::env::temp_dir().join(format!("alerts-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = now_secs();
        let ev = evaluator(Some(&dir));
        assert_eq!(
            ev.evaluate(&summaries(json!(0.5), json!("ok")), now).len(),
            1
        );
        drop(ev);
        let again = evaluator(Some(&dir));
        // Still firing after the restart: the same breach emits nothing.
        assert!(again
            .evaluate(&summaries(json!(0.5), json!("ok")), now + 60)
            .is_empty());
        let (rules, events) = again.snapshot();
        assert_eq!(rules[0]["state"], "firing");
        assert_eq!(rules[0]["since"], now);
        assert_eq!(events.len(), 1);
        // A file that is not ours is ignored.
        std::fs::write(dir.join(STATE_FILE), b"not json").unwrap();
        let fresh = evaluator(Some(&dir));
        assert_eq!(fresh.snapshot().0[0]["state"], "ok");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Replacing the rules keeps the state of a rule that watches the same thing the same way
    /// (a firing one stays firing and does not fire again) and starts any other one ok.
    #[test]
    fn replaced_rules_keep_the_state_of_unchanged_conditions() {
        let ev = evaluator(None);
        let now = now_secs();
        assert_eq!(
            ev.evaluate(&summaries(json!(0.5), json!("drift")), now)
                .len(),
            2
        );
        let mut errors = rule("errors", "system.error_rate", Op::Gt, json!(0.05), 1);
        errors.title = "renamed".into();
        errors.severity = Severity::Warning;
        let stricter = rule("drift", "data.drift.verdict", Op::Is, json!("warning"), 15);
        ev.replace_rules(vec![stricter, errors]);
        let (rules, _) = ev.snapshot();
        assert_eq!(rules[0]["id"], "drift");
        assert_eq!(rules[0]["state"], "ok");
        assert_eq!(rules[1]["state"], "firing");
        assert_eq!(rules[1]["since"], now);
        assert_eq!(rules[1]["title"], "renamed");
        // The kept rule does not fire again; the changed one fires on its own new condition.
        let events = ev.evaluate(&summaries(json!(0.5), json!("warning")), now + 60);
        assert_eq!(
            states(&events),
            [("drift".to_string(), "firing".to_string())]
        );
        assert_eq!(ev.windows(), [1, 15]);
        ev.replace_rules(Vec::new());
        assert!(ev
            .evaluate(&summaries(json!(0.0), json!("ok")), now + 120)
            .is_empty());
        assert!(ev.windows().is_empty());
    }
}
