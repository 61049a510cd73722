//! The dashboard's CloudWatch row for an EC2 host: what AWS itself measures of the instance (CPU,
//! network, status checks, and the CloudWatch agent's memory and disk when it runs), drawn beside
//! what the service reports of itself. A failed read becomes a warning badge, not a broken
//! dashboard: the service's own charts do not depend on AWS.

use std::time::Duration;

use crate::charts::{self, Line, Marker, TimeChart, Unit};
use crate::cloudwatch::{self, Reader, Series};
use crate::dashboard::{Alert, Chart, Request, CPU_WARN};

/// The charts and badges CloudWatch adds for `instance_id` over the request's range.
pub async fn host_charts(
    reader: &Reader,
    instance_id: &str,
    markers: &[Marker],
    req: &Request,
) -> (Vec<Chart>, Vec<Alert>) {
    let (from, to) = (req.now - req.range_s, req.now);
    match reader
        .read(&cloudwatch::host_queries(instance_id), from, to)
        .await
    {
        Ok(series) => match draw(&series, instance_id, markers, req) {
            Ok(drawn) => drawn,
            Err(e) => (Vec::new(), vec![unavailable(&e)]),
        },
        Err(e) => (Vec::new(), vec![unavailable(&e.to_string())]),
    }
}

fn unavailable(why: &str) -> Alert {
    Alert {
        level: "warning",
        layer: "system",
        text: format!("CloudWatch metrics unavailable: {why}"),
    }
}

fn points(series: &[Series], id: &str, scale: f64) -> Vec<(i64, Option<f64>)> {
    series
        .iter()
        .find(|s| s.id == id)
        .map(|s| {
            s.points
                .iter()
                .map(|&(t, v)| (t, Some(v * scale)))
                .collect()
        })
        .unwrap_or_default()
}

fn draw(
    series: &[Series],
    instance_id: &str,
    markers: &[Marker],
    req: &Request,
) -> Result<(Vec<Chart>, Vec<Alert>), String> {
    let (from, to) = (req.now - req.range_s, req.now);
    // NetworkIn/Out are bytes summed over each period; the chart shows bytes per second.
    let period = cloudwatch::period_for(
        Duration::from_secs(req.range_s.max(0) as u64),
        Duration::from_secs(req.range_s.max(0) as u64),
    );
    let per_second = 1.0 / f64::from(period);
    let chart = |id: &str, title: &str, unit: Unit, y_floor: f64, lines: Vec<Line>| {
        let latest = lines
            .first()
            .and_then(|l| l.points.iter().rev().find_map(|p| p.1))
            .map(|v| unit.format(v));
        let threshold = (unit == Unit::Percent).then(|| (CPU_WARN, "90%".to_string()));
        charts::time_chart_svg(&TimeChart {
            title: title.into(),
            unit,
            from,
            to,
            utc_offset_s: req.utc_offset_s,
            lines,
            markers: markers.to_vec(),
            threshold,
            y_floor,
        })
        .map(|svg| Chart {
            id: id.into(),
            layer: "system",
            title: title.into(),
            svg,
            latest,
        })
    };
    let line = |label: &str, points| Line {
        label: label.into(),
        points,
    };
    let mut charts = vec![
        chart(
            "ec2_cpu",
            "EC2 CPU (CloudWatch)",
            Unit::Percent,
            100.0,
            vec![line("instance", points(series, "cpu", 1.0))],
        )?,
        chart(
            "ec2_network",
            "EC2 network (CloudWatch)",
            Unit::BytesPerSecond,
            0.0,
            vec![
                line("in", points(series, "net_in", per_second)),
                line("out", points(series, "net_out", per_second)),
            ],
        )?,
    ];
    let (mem, disk) = (
        points(series, "mem_used", 1.0),
        points(series, "disk_used", 1.0),
    );
    if !mem.is_empty() || !disk.is_empty() {
        charts.push(chart(
            "ec2_memory_disk",
            "EC2 memory and disk (CloudWatch agent)",
            Unit::Percent,
            100.0,
            vec![line("memory", mem), line("disk /", disk)],
        )?);
    }
    let mut alerts = Vec::new();
    let newest = |id: &str| {
        series
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.points.last())
            .map(|p| p.1)
    };
    if newest("status_failed").is_some_and(|v| v > 0.0) {
        alerts.push(Alert {
            level: "critical",
            layer: "system",
            text: format!("EC2 status check failing on {instance_id}: look at the instance in the AWS console, or reboot it"),
        });
    }
    if let Some(cpu) = newest("cpu").filter(|v| *v >= CPU_WARN) {
        alerts.push(Alert {
            level: "warning",
            layer: "system",
            text: format!("EC2 CPU at {cpu:.0}% (CloudWatch): consider a larger instance type"),
        });
    }
    Ok((charts, alerts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(id: &str, points: &[(i64, f64)]) -> Series {
        Series {
            id: id.into(),
            label: id.into(),
            points: points.to_vec(),
        }
    }

    fn request() -> Request {
        Request {
            range_s: 3600,
            utc_offset_s: 0,
            feature: None,
            now: 1_800_000_000,
        }
    }

    #[test]
    fn network_sums_become_rates_and_a_failed_status_check_is_critical() {
        let t = 1_800_000_000 - 600;
        let got = draw(
            &[
                series("cpu", &[(t, 12.0), (t + 60, 95.0)]),
                // 60-second periods for an hour: 6 MB in a minute is 100 kB/s.
                series("net_in", &[(t, 6_000_000.0)]),
                series("net_out", &[(t, 600_000.0)]),
                series("status_failed", &[(t, 0.0), (t + 60, 1.0)]),
                series("mem_used", &[]),
                series("disk_used", &[]),
            ],
            "i-0123",
            &[],
            &request(),
        )
        .unwrap();
        let (charts, alerts) = got;
        let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
        // No agent data: no memory and disk chart.
        assert_eq!(ids, ["ec2_cpu", "ec2_network"]);
        assert_eq!(
            charts[0].latest.as_deref(),
            Some(Unit::Percent.format(95.0).as_str())
        );
        assert_eq!(
            charts[1].latest.as_deref(),
            Some(Unit::BytesPerSecond.format(100_000.0).as_str())
        );
        assert!(charts
            .iter()
            .all(|c| c.svg.starts_with("<svg") && c.layer == "system"));
        let levels: Vec<&str> = alerts.iter().map(|a| a.level).collect();
        assert_eq!(levels, ["critical", "warning"], "{alerts:?}");
        assert!(alerts[0].text.contains("i-0123"));
    }

    #[test]
    fn agent_metrics_add_a_chart_and_a_healthy_host_has_no_badges() {
        let t = 1_800_000_000 - 600;
        let (charts, alerts) = draw(
            &[
                series("cpu", &[(t, 10.0)]),
                series("status_failed", &[(t, 0.0)]),
                series("mem_used", &[(t, 41.0)]),
            ],
            "i-0123",
            &[],
            &request(),
        )
        .unwrap();
        assert_eq!(charts.last().unwrap().id, "ec2_memory_disk");
        assert_eq!(
            charts.last().unwrap().latest.as_deref(),
            Some(Unit::Percent.format(41.0).as_str())
        );
        assert!(alerts.is_empty(), "{alerts:?}");
    }
}
