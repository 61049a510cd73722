//! The dashboard's CloudWatch row for an EC2 host: what AWS itself measures of the instance (CPU,
//! network, status checks, and the CloudWatch agent's memory and disk when it runs), drawn beside
//! what the service reports of itself; for a fleet, the load balancer's view of the whole fleet
//! and each instance's CPU. A failed read becomes a warning badge, not a broken
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

/// One chart of the CloudWatch row; percentages get the CPU warning line.
fn time_chart(
    id: &str,
    title: &str,
    unit: Unit,
    y_floor: f64,
    lines: Vec<Line>,
    markers: &[Marker],
    req: &Request,
) -> Result<Chart, String> {
    let latest = lines
        .first()
        .and_then(|l| l.points.iter().rev().find_map(|p| p.1))
        .map(|v| unit.format(v));
    let threshold = (unit == Unit::Percent).then(|| (CPU_WARN, "90%".to_string()));
    charts::time_chart_svg(&TimeChart {
        title: title.into(),
        unit,
        from: req.now - req.range_s,
        to: req.now,
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
}

fn line(label: &str, points: Vec<(i64, Option<f64>)>) -> Line {
    Line {
        label: label.into(),
        points,
    }
}

/// The seconds per point of the series read for the request's range.
fn period_s(req: &Request) -> f64 {
    let range = Duration::from_secs(req.range_s.max(0) as u64);
    f64::from(cloudwatch::period_for(range, range))
}

/// The charts and badges CloudWatch adds for a fleet on AWS: the load balancer's view of the whole
/// fleet (requests, the targets' response time, 5xx, healthy hosts) and the CPU of each instance,
/// one line per host named as in `hosts` (host name, instance id).
pub async fn fleet_charts(
    reader: &Reader,
    alb: &cloudwatch::AlbDimensions,
    hosts: &[(String, String)],
    markers: &[Marker],
    req: &Request,
) -> (Vec<Chart>, Vec<Alert>) {
    let ids: Vec<String> = hosts.iter().map(|h| h.1.clone()).collect();
    match reader
        .read(
            &cloudwatch::fleet_queries(alb, &ids),
            req.now - req.range_s,
            req.now,
        )
        .await
    {
        Ok(series) => match draw_fleet(&series, hosts, markers, req) {
            Ok(drawn) => drawn,
            Err(e) => (Vec::new(), vec![unavailable(&e)]),
        },
        Err(e) => (Vec::new(), vec![unavailable(&e.to_string())]),
    }
}

fn draw_fleet(
    series: &[Series],
    hosts: &[(String, String)],
    markers: &[Marker],
    req: &Request,
) -> Result<(Vec<Chart>, Vec<Alert>), String> {
    let per_second = 1.0 / period_s(req);
    let per_minute = 60.0 / period_s(req);
    let chart = |id: &str, title: &str, unit: Unit, y_floor: f64, lines: Vec<Line>| {
        time_chart(id, title, unit, y_floor, lines, markers, req)
    };
    let charts = vec![
        chart(
            "alb_requests",
            "Load balancer requests (CloudWatch)",
            Unit::PerSecond,
            0.0,
            vec![line("requests", points(series, "alb_requests", per_second))],
        )?,
        chart(
            "alb_latency",
            "Target response time (CloudWatch)",
            Unit::Seconds,
            0.0,
            vec![line("average", points(series, "alb_latency", 1.0))],
        )?,
        chart(
            "alb_5xx",
            "5xx per minute (CloudWatch)",
            Unit::Plain,
            0.0,
            vec![
                line(
                    "from the hosts",
                    points(series, "alb_target_5xx", per_minute),
                ),
                line(
                    "from the load balancer",
                    points(series, "alb_elb_5xx", per_minute),
                ),
            ],
        )?,
        chart(
            "alb_hosts",
            "Hosts in the target group (CloudWatch)",
            Unit::Plain,
            0.0,
            vec![
                line("healthy", points(series, "alb_healthy", 1.0)),
                line("unhealthy", points(series, "alb_unhealthy", 1.0)),
            ],
        )?,
        chart(
            "ec2_cpu_fleet",
            "EC2 CPU per host (CloudWatch)",
            Unit::Percent,
            100.0,
            hosts
                .iter()
                .enumerate()
                .map(|(i, (name, _))| line(name, points(series, &format!("cpu_{i}"), 1.0)))
                .collect(),
        )?,
    ];
    let newest = |id: &str| {
        series
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.points.last())
            .map(|p| p.1)
    };
    let mut alerts = Vec::new();
    match (newest("alb_healthy"), newest("alb_unhealthy")) {
        (Some(h), _) if h < 1.0 => alerts.push(Alert {
            level: "critical",
            layer: "system",
            text: "No healthy host in the target group: the load balancer answers 503 to every request. Look at the hosts' /readyz and their deploy history".into(),
        }),
        (_, Some(u)) if u >= 1.0 => alerts.push(Alert {
            level: "warning",
            layer: "system",
            text: format!("{u:.0} host(s) failing the target group's health check: the others carry the traffic"),
        }),
        _ => {}
    }
    for (i, (name, id)) in hosts.iter().enumerate() {
        if let Some(cpu) = newest(&format!("cpu_{i}")).filter(|v| *v >= CPU_WARN) {
            alerts.push(Alert {
                level: "warning",
                layer: "system",
                text: format!("EC2 CPU at {cpu:.0}% on {name} ({id}): add a host or use a larger instance type"),
            });
        }
    }
    Ok((charts, alerts))
}

fn draw(
    series: &[Series],
    instance_id: &str,
    markers: &[Marker],
    req: &Request,
) -> Result<(Vec<Chart>, Vec<Alert>), String> {
    // NetworkIn/Out are bytes summed over each period; the chart shows bytes per second.
    let per_second = 1.0 / period_s(req);
    let chart = |id: &str, title: &str, unit: Unit, y_floor: f64, lines: Vec<Line>| {
        time_chart(id, title, unit, y_floor, lines, markers, req)
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

    #[test]
    fn the_fleet_row_draws_the_balancer_and_a_line_per_host() {
        let t = 1_800_000_000 - 600;
        let hosts = [
            ("h1".to_string(), "i-1".to_string()),
            ("h2".to_string(), "i-2".to_string()),
        ];
        let (charts, alerts) = draw_fleet(
            &[
                // 60-second periods for an hour: 1,200 requests in a minute are 20 per second.
                series("alb_requests", &[(t, 600.0), (t + 60, 1200.0)]),
                series("alb_latency", &[(t, 0.012)]),
                series("alb_target_5xx", &[(t, 3.0)]),
                series("alb_healthy", &[(t, 2.0), (t + 60, 1.0)]),
                series("alb_unhealthy", &[(t, 0.0), (t + 60, 1.0)]),
                series("cpu_0", &[(t, 20.0)]),
                series("cpu_1", &[(t, 97.0)]),
            ],
            &hosts,
            &[],
            &request(),
        )
        .unwrap();
        let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "alb_requests",
                "alb_latency",
                "alb_5xx",
                "alb_hosts",
                "ec2_cpu_fleet"
            ]
        );
        assert_eq!(
            charts[0].latest.as_deref(),
            Some(Unit::PerSecond.format(20.0).as_str())
        );
        assert_eq!(
            charts[3].latest.as_deref(),
            Some(Unit::Plain.format(1.0).as_str())
        );
        let cpu = &charts[4].svg;
        assert!(
            cpu.contains("h1") && cpu.contains("h2"),
            "a legend entry per host"
        );
        let texts: Vec<(&str, &str)> = alerts.iter().map(|a| (a.level, a.text.as_str())).collect();
        assert_eq!(alerts.len(), 2, "{texts:?}");
        assert!(
            texts[0].0 == "warning" && texts[0].1.starts_with("1 host(s) failing"),
            "{texts:?}"
        );
        assert!(texts[1].1.contains("97% on h2 (i-2)"), "{texts:?}");

        // No healthy host: critical, whatever the unhealthy count.
        let (_, alerts) = draw_fleet(
            &[
                series("alb_healthy", &[(t, 0.0)]),
                series("alb_unhealthy", &[(t, 3.0)]),
            ],
            &hosts,
            &[],
            &request(),
        )
        .unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].level, "critical");
    }
}
