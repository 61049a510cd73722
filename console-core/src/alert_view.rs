//! The Alerts page: the rules the serving version evaluates, with their state; its firings of the
//! last 7 days, as rows and as a timeline (one lane per rule); and which firings are new since the
//! app last looked, for a desktop notification. Everything comes from the service's own
//! `GET /v1/monitoring/alerts`, so the page shows what the service told (or will tell) the webhook.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;
use serde_json::Value;

use crate::service::ServiceClient;

/// How far back the timeline reaches: the service keeps 7 days of events.
pub const TIMELINE_S: i64 = 7 * 86_400;

const WIDTH: u32 = 760;
const LANE: u32 = 26;
const AXIS: RGBColor = RGBColor(0x4b, 0x55, 0x63);
const GRID: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);
const CRITICAL: RGBColor = RGBColor(0xdc, 0x26, 0x26);
const WARNING: RGBColor = RGBColor(0xd9, 0x77, 0x06);

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleRow {
    pub id: String,
    pub title: String,
    pub severity: String,
    /// The condition in words: `system.error_rate > 0.05 over 5 min`.
    pub condition: String,
    /// `firing`, `ok`, `no data` (evaluated, but the window had nothing to judge) or `pending`
    /// (not evaluated yet).
    pub state: String,
    /// Unix seconds of the rule's last transition.
    pub since: i64,
    /// The value at the last evaluation, formatted.
    pub value: Option<String>,
}

/// One firing: from its `firing` event to its `resolved` one (None while it still fires).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Firing {
    pub rule: String,
    pub title: String,
    pub severity: String,
    pub from: i64,
    pub to: Option<i64>,
    /// The value that made it fire, formatted.
    pub value: String,
    pub model_version: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Delivery {
    pub configured: bool,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queued: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AlertsView {
    pub rules: Vec<RuleRow>,
    /// Newest first.
    pub firings: Vec<Firing>,
    pub firing_now: usize,
    pub delivery: Delivery,
    /// The firings on a 7-day axis ending now, one lane per rule.
    pub timeline_svg: String,
    pub from: i64,
    pub to: i64,
}

/// What a desktop notification says about one firing.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Notice {
    pub at: i64,
    pub title: String,
    pub body: String,
}

pub async fn fetch(client: &ServiceClient) -> Result<Value, String> {
    client.get_json("/v1/monitoring/alerts").await
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "no data".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() != 0.0 => format!("{}", (x * 1e4).round() / 1e4),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn rule_row(r: &Value) -> RuleRow {
    let state = match (
        r["state"].as_str(),
        r["evaluated_at"].is_null(),
        &r["value"],
    ) {
        (Some("firing"), _, _) => "firing",
        (_, true, _) => "pending",
        (_, false, Value::Null) => "no data",
        _ => "ok",
    };
    RuleRow {
        id: str_of(r, "id"),
        title: str_of(r, "title"),
        severity: str_of(r, "severity"),
        condition: format!(
            "{} {} {} over {} min",
            str_of(r, "metric"),
            str_of(r, "op"),
            text(&r["threshold"]),
            r["window_minutes"].as_u64().unwrap_or(0)
        ),
        state: state.into(),
        since: r["since"].as_i64().unwrap_or(0),
        value: (!r["evaluated_at"].is_null()).then(|| text(&r["value"])),
    }
}

/// Pairs each rule's `firing` event with its next `resolved` one. Events come oldest first; a
/// `resolved` whose `firing` is older than the service keeps starts at `from`.
pub fn firings(events: &[Value], from: i64) -> Vec<Firing> {
    let mut out: Vec<Firing> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = Default::default();
    for e in events {
        let rule = str_of(e, "rule");
        let at = e["at"].as_i64().unwrap_or(0);
        match e["state"].as_str() {
            Some("firing") => {
                open.insert(rule.clone(), out.len());
                out.push(Firing {
                    rule,
                    title: str_of(e, "title"),
                    severity: str_of(e, "severity"),
                    from: at,
                    to: None,
                    value: text(&e["value"]),
                    model_version: str_of(e, "model_version"),
                });
            }
            Some("resolved") => match open.remove(&rule) {
                Some(i) => out[i].to = Some(at),
                None => out.push(Firing {
                    rule,
                    title: str_of(e, "title"),
                    severity: str_of(e, "severity"),
                    from,
                    to: Some(at),
                    value: String::new(),
                    model_version: str_of(e, "model_version"),
                }),
            },
            _ => {}
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.from));
    out
}

/// The page for the service's `alerts` answer at `now` (unix seconds).
pub fn view(alerts: &Value, now: i64, utc_offset_s: i64) -> Result<AlertsView, String> {
    let rules: Vec<RuleRow> = alerts["rules"]
        .as_array()
        .ok_or("the service's alerts answer has no rules list")?
        .iter()
        .map(rule_row)
        .collect();
    let events = alerts["events"].as_array().cloned().unwrap_or_default();
    let from = now - TIMELINE_S;
    let firings = firings(&events, from);
    let d = &alerts["delivery"];
    let count = |k: &str| d[k].as_u64().unwrap_or(0);
    let timeline_svg = timeline_svg(&rules, &firings, from, now, utc_offset_s)?;
    Ok(AlertsView {
        firing_now: rules.iter().filter(|r| r.state == "firing").count(),
        rules,
        firings,
        delivery: Delivery {
            configured: d["configured"].as_bool().unwrap_or(false),
            delivered: count("delivered"),
            failed: count("failed"),
            dropped: count("dropped"),
            queued: count("queued"),
        },
        timeline_svg,
        from,
        to: now,
    })
}

/// The firings after `after` (unix seconds), oldest first, as notifications.
pub fn new_firings(alerts: &Value, after: i64) -> Vec<Notice> {
    alerts["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["state"] == "firing" && e["at"].as_i64().is_some_and(|t| t > after))
        .map(|e| Notice {
            at: e["at"].as_i64().unwrap_or(0),
            title: format!(
                "{}: {}",
                if e["severity"] == "critical" {
                    "Critical"
                } else {
                    "Warning"
                },
                str_of(e, "title")
            ),
            body: {
                let window = e["window_minutes"].as_u64().unwrap_or(0);
                let condition = if e["op"] == "is" {
                    format!("{window} min window")
                } else {
                    format!(
                        "{} {} over {window} min",
                        str_of(e, "op"),
                        text(&e["threshold"])
                    )
                };
                format!(
                    "{} is {} ({condition}) on {} {}",
                    str_of(e, "metric"),
                    text(&e["value"]),
                    str_of(e, "model"),
                    str_of(e, "model_version"),
                )
            },
        })
        .collect()
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn draw_err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing the alert timeline: {e:?}")
}

/// One lane per rule over [from, to], a bar per firing (red critical, amber warning), local
/// midnights as the grid.
pub fn timeline_svg(
    rules: &[RuleRow],
    firings: &[Firing],
    from: i64,
    to: i64,
    utc_offset_s: i64,
) -> Result<String, String> {
    let lanes = rules.len().max(1);
    let height = 30 + LANE * lanes as u32;
    let mut svg = String::with_capacity(16 * 1024);
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(6)
            .margin_right(14)
            .x_label_area_size(20)
            .y_label_area_size(190)
            .build_cartesian_2d(from as f64..to.max(from + 60) as f64, 0f64..lanes as f64)
            .map_err(draw_err)?;
        let names: Vec<String> = rules.iter().map(|r| r.title.clone()).collect();
        chart
            .configure_mesh()
            .disable_mesh()
            .axis_style(AXIS)
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(draw_err)?;
        let label = ("sans-serif", 12).into_font().color(&AXIS);
        for (i, name) in names.iter().enumerate() {
            let y = lanes as f64 - i as f64 - 0.5;
            let (px, py) = chart.backend_coord(&(from as f64, y));
            root.draw(&Text::new(
                name.clone(),
                (px - 6, py),
                label.clone().pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(draw_err)?;
        }
        // Local midnights.
        let first_day = (from + utc_offset_s).div_euclid(86_400) + 1;
        for day in first_day.. {
            let t = day * 86_400 - utc_offset_s;
            if t > to {
                break;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(t as f64, 0.0), (t as f64, lanes as f64)],
                    ShapeStyle::from(GRID).stroke_width(1),
                )))
                .map_err(draw_err)?;
            let (_, m, d) = civil(day);
            let (px, py) = chart.backend_coord(&(t as f64, 0.0));
            root.draw(&Text::new(
                format!("{} {d}", MONTHS[(m - 1) as usize]),
                (px, py + 4),
                label.clone().pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(draw_err)?;
        }
        for f in firings {
            let Some(i) = rules.iter().position(|r| r.id == f.rule) else {
                continue;
            };
            let y = lanes as f64 - i as f64;
            let color = if f.severity == "critical" {
                CRITICAL
            } else {
                WARNING
            };
            // At least 0.4 % of the axis wide, so a one-minute firing is still seen on 7 days.
            let min_w = (to - from) as f64 * 0.004;
            let (x0, x1) = (f.from.max(from) as f64, f.to.unwrap_or(to).min(to) as f64);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, y - 0.8), (x1.max(x0 + min_w), y - 0.2)],
                    color.filled(),
                )))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(rule: &str, state: &str, at: i64, value: Value) -> Value {
        json!({"rule": rule, "title": format!("{rule} title"), "severity": "critical", "state": state,
               "value": value, "threshold": 0.05, "op": ">", "metric": "system.error_rate",
               "window_minutes": 5, "at": at, "service": "inference", "model": "wbc",
               "model_version": "1.0.0", "image_tag": "v2"})
    }

    fn answer(now: i64) -> Value {
        json!({
            "rules": [
                {"id": "error-rate", "title": "Error rate above 5 %", "metric": "system.error_rate",
                 "op": ">", "threshold": 0.05, "window_minutes": 5, "severity": "critical",
                 "state": "firing", "since": now - 120, "value": 0.3125, "evaluated_at": now - 60},
                {"id": "input-drift", "title": "Input drift", "metric": "data.drift.verdict",
                 "op": "is", "threshold": "drift", "window_minutes": 15, "severity": "warning",
                 "state": "ok", "since": now - 9000, "value": null, "evaluated_at": now - 60},
                {"id": "anomaly-rate", "title": "Anomaly rate", "metric": "model.anomaly_rate",
                 "op": ">", "threshold": 0.25, "window_minutes": 15, "severity": "warning",
                 "state": "ok", "since": now - 9000, "value": null, "evaluated_at": null}
            ],
            "events": [
                event("input-drift", "resolved", now - TIMELINE_S + 600, json!("ok")),
                event("error-rate", "firing", now - 7200, json!(0.2)),
                event("error-rate", "resolved", now - 3600, json!(0.0)),
                event("error-rate", "firing", now - 120, json!(0.3125)),
            ],
            "delivery": {"configured": true, "delivered": 3, "failed": 1, "dropped": 0, "queued": 0}
        })
    }

    #[test]
    fn rules_firings_and_delivery_come_from_the_answer() {
        let now = 1_765_000_000;
        let v = view(&answer(now), now, 3600).unwrap();
        assert_eq!(v.firing_now, 1);
        let states: Vec<&str> = v.rules.iter().map(|r| r.state.as_str()).collect();
        assert_eq!(states, ["firing", "no data", "pending"]);
        assert_eq!(v.rules[0].condition, "system.error_rate > 0.05 over 5 min");
        assert_eq!(v.rules[0].value.as_deref(), Some("0.3125"));
        assert_eq!(
            v.rules[1].condition,
            "data.drift.verdict is drift over 15 min"
        );
        assert_eq!(v.rules[2].value, None);
        // Newest first; the open one has no end; a resolve whose firing is gone starts at `from`.
        let spans: Vec<(&str, i64, Option<i64>)> = v
            .firings
            .iter()
            .map(|f| (f.rule.as_str(), f.from, f.to))
            .collect();
        assert_eq!(
            spans,
            [
                ("error-rate", now - 120, None),
                ("error-rate", now - 7200, Some(now - 3600)),
                (
                    "input-drift",
                    now - TIMELINE_S,
                    Some(now - TIMELINE_S + 600)
                ),
            ]
        );
        assert_eq!(v.firings[1].value, "0.2");
        assert_eq!(
            v.delivery,
            Delivery {
                configured: true,
                delivered: 3,
                failed: 1,
                dropped: 0,
                queued: 0
            }
        );
        assert!(v.timeline_svg.starts_with("<svg") && v.timeline_svg.contains("Input drift"));
        // Seven local midnights are labelled: "Dec 4"-style dates.
        let days = MONTHS
            .iter()
            .map(|m| v.timeline_svg.matches(&format!("\n{m} ")).count())
            .sum::<usize>();
        assert_eq!(days, 7, "{}", v.timeline_svg);
        // Two bars for the two error-rate firings and one for the drift's tail.
        assert_eq!(v.timeline_svg.matches("<rect").count() - 1, 3);
    }

    #[test]
    fn only_firings_after_the_last_look_are_notified() {
        let now = 1_765_000_000;
        let a = answer(now);
        let n = new_firings(&a, now - 3600);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].at, now - 120);
        assert_eq!(n[0].title, "Critical: error-rate title");
        assert_eq!(
            n[0].body,
            "system.error_rate is 0.3125 (> 0.05 over 5 min) on wbc 1.0.0"
        );
        assert_eq!(new_firings(&a, now - 120), vec![]);
        assert_eq!(new_firings(&a, 0).len(), 2);
    }

    #[test]
    fn an_answer_without_rules_is_refused_with_a_sentence() {
        let err = view(&json!({"events": []}), 0, 0).unwrap_err();
        assert!(err.contains("no rules list"), "{err}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_426), (2025, 12, 4));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }
}
