//! CloudWatch reader for the dashboard: EC2's own metrics for the host (CPUUtilization,
//! NetworkIn/Out, StatusCheckFailed, and the CloudWatch agent's memory and disk when it runs) and
//! the inference service's namespace, through GetMetricData with the period matched to the range.
//! (`aws-sdk-cloudwatch` stays at 1.99.0, the last release on the query protocol; see
//! inference-image/Cargo.toml.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_cloudwatch::Client;

/// One series to read.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// Short id, `[a-z][a-zA-Z0-9_]*` (CloudWatch's rule for query ids).
    pub id: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    /// Average, Maximum, Minimum, Sum or SampleCount.
    pub stat: String,
}

impl Query {
    fn new(id: &str, namespace: &str, metric: &str, dims: &[(&str, &str)], stat: &str) -> Query {
        Query {
            id: id.into(),
            namespace: namespace.into(),
            metric: metric.into(),
            dimensions: dims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stat: stat.into(),
        }
    }
}

/// The host's series: EC2's own, plus the CloudWatch agent's memory and root-disk use (empty
/// series when the agent is not installed).
pub fn host_queries(instance_id: &str) -> Vec<Query> {
    let i = [("InstanceId", instance_id)];
    vec![
        Query::new("cpu", "AWS/EC2", "CPUUtilization", &i, "Average"),
        Query::new("net_in", "AWS/EC2", "NetworkIn", &i, "Sum"),
        Query::new("net_out", "AWS/EC2", "NetworkOut", &i, "Sum"),
        Query::new(
            "status_failed",
            "AWS/EC2",
            "StatusCheckFailed",
            &i,
            "Maximum",
        ),
        Query::new("mem_used", "CWAgent", "mem_used_percent", &i, "Average"),
        Query::new(
            "disk_used",
            "CWAgent",
            "disk_used_percent",
            &[("InstanceId", instance_id), ("path", "/")],
            "Average",
        ),
    ]
}

/// The inference service's series, as its publisher names them (dimensions Service, ModelVersion).
pub fn service_queries(namespace: &str, service: &str, model_version: &str) -> Vec<Query> {
    let d = [("Service", service), ("ModelVersion", model_version)];
    [
        ("requests", "RequestCount", "Sum"),
        ("error_rate", "ErrorRate", "Average"),
        ("latency_p99", "LatencyP99", "Maximum"),
        ("anomaly_rate", "AnomalyRate", "Average"),
        ("recon_p95", "ReconstructionErrorP95", "Average"),
        ("drifted", "DriftedFeatures", "Maximum"),
        ("missing", "MissingValues", "Sum"),
        ("invalid", "InvalidValues", "Sum"),
    ]
    .iter()
    .map(|(id, m, s)| Query::new(id, namespace, m, &d, s))
    .collect()
}

/// What CloudWatch calls a fleet's load balancer and target group in the `AWS/ApplicationELB`
/// namespace: the ends of their ARNs (`app/<name>/<id>`, `targetgroup/<name>/<id>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlbDimensions {
    pub load_balancer: String,
    pub target_group: String,
}

impl AlbDimensions {
    /// From the load balancer's and the target group's ARNs.
    pub fn from_arns(
        load_balancer_arn: &str,
        target_group_arn: &str,
    ) -> Result<AlbDimensions, String> {
        let tail = |arn: &str, marker: &str, keep_marker: bool| -> Result<String, String> {
            let at = arn
                .find(marker)
                .filter(|_| arn.starts_with("arn:"))
                .ok_or_else(|| format!("{arn:?} is not an ARN with `{marker}` in it"))?;
            let rest = if keep_marker {
                &arn[at + 1..]
            } else {
                &arn[at + marker.len()..]
            };
            if rest.split('/').filter(|p| !p.is_empty()).count() < 3 {
                return Err(format!(
                    "{arn:?} ends without the name and id CloudWatch needs"
                ));
            }
            Ok(rest.to_string())
        };
        Ok(AlbDimensions {
            load_balancer: tail(load_balancer_arn, ":loadbalancer/", false)?,
            target_group: tail(target_group_arn, ":targetgroup/", true)?,
        })
    }
}

/// A fleet's series: what the Application Load Balancer measures for the whole fleet (requests,
/// the targets' response time, 5xx from the targets and from the balancer itself, healthy and
/// unhealthy hosts), and each instance's CPU as `cpu_<i>` in the order given.
pub fn fleet_queries(alb: &AlbDimensions, instance_ids: &[String]) -> Vec<Query> {
    let lb = [("LoadBalancer", alb.load_balancer.as_str())];
    let tg = [
        ("TargetGroup", alb.target_group.as_str()),
        ("LoadBalancer", alb.load_balancer.as_str()),
    ];
    let ns = "AWS/ApplicationELB";
    let mut q = vec![
        Query::new("alb_requests", ns, "RequestCount", &tg, "Sum"),
        Query::new("alb_latency", ns, "TargetResponseTime", &tg, "Average"),
        Query::new(
            "alb_target_5xx",
            ns,
            "HTTPCode_Target_5XX_Count",
            &tg,
            "Sum",
        ),
        Query::new("alb_elb_5xx", ns, "HTTPCode_ELB_5XX_Count", &lb, "Sum"),
        Query::new("alb_healthy", ns, "HealthyHostCount", &tg, "Minimum"),
        Query::new("alb_unhealthy", ns, "UnHealthyHostCount", &tg, "Maximum"),
    ];
    q.extend(instance_ids.iter().enumerate().map(|(i, id)| {
        Query::new(
            &format!("cpu_{i}"),
            "AWS/EC2",
            "CPUUtilization",
            &[("InstanceId", id)],
            "Average",
        )
    }));
    q
}

/// The period (seconds) for a time range: about 360 points at most, a multiple of 60, and no finer
/// than CloudWatch keeps data (1-minute data for 15 days, 5-minute for 63, hourly after).
pub fn period_for(range: Duration, age_of_start: Duration) -> i32 {
    let by_points = (range.as_secs() / 360).max(60);
    let by_retention = match age_of_start.as_secs() {
        s if s <= 15 * 86_400 => 60,
        s if s <= 63 * 86_400 => 300,
        _ => 3600,
    };
    let p = by_points.max(by_retention);
    (p.div_ceil(60) * 60) as i32
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub id: String,
    pub label: String,
    /// (Unix seconds, value), oldest first.
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("AWS refused the credentials ({code}: {message}). Check the access key in the console, or refresh your AWS profile's session")]
    Credentials { code: String, message: String },
    #[error("reading CloudWatch metrics failed: {code}: {message}")]
    Aws { code: String, message: String },
    #[error("{0}")]
    BadInput(String),
}

/// Cheap to clone: clones share the SDK client (its connection pool and credentials cache).
#[derive(Clone)]
pub struct Reader {
    client: Client,
}

impl Reader {
    pub fn new(client: Client) -> Reader {
        Reader { client }
    }

    /// A reader for a loaded AWS configuration (see [`crate::aws::AwsTarget::load`]).
    pub fn for_config(config: &aws_config::SdkConfig) -> Reader {
        Reader::new(Client::new(config))
    }

    /// Reads `queries` over the last `range` (ending now).
    pub async fn last(
        &self,
        queries: &[Query],
        range: Duration,
    ) -> Result<Vec<Series>, CloudWatchError> {
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as i64;
        self.read(queries, end - range.as_secs() as i64, end).await
    }

    /// Reads `queries` between two Unix times, following pagination.
    pub async fn read(
        &self,
        queries: &[Query],
        start: i64,
        end: i64,
    ) -> Result<Vec<Series>, CloudWatchError> {
        if end <= start {
            return Err(CloudWatchError::BadInput(
                "the time range ends before it starts".into(),
            ));
        }
        if queries.is_empty() || queries.len() > 500 {
            return Err(CloudWatchError::BadInput(format!(
                "{} queries: GetMetricData takes 1 to 500",
                queries.len()
            )));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as i64;
        let period = period_for(
            Duration::from_secs((end - start) as u64),
            Duration::from_secs((now - start).max(0) as u64),
        );
        let built: Vec<MetricDataQuery> = queries
            .iter()
            .map(|q| {
                let mut metric = Metric::builder()
                    .namespace(&q.namespace)
                    .metric_name(&q.metric);
                for (k, v) in &q.dimensions {
                    metric = metric.dimensions(Dimension::builder().name(k).value(v).build());
                }
                MetricDataQuery::builder()
                    .id(&q.id)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(metric.build())
                            .period(period)
                            .stat(&q.stat)
                            .build(),
                    )
                    .return_data(true)
                    .build()
            })
            .collect();
        let mut series: Vec<Series> = queries
            .iter()
            .map(|q| Series {
                id: q.id.clone(),
                label: q.metric.clone(),
                points: Vec::new(),
            })
            .collect();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(built.clone()))
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    let code = e.code().unwrap_or("no response").to_string();
                    let message = e
                        .message()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{e:?}").chars().take(300).collect());
                    match code.as_str() {
                        "AuthFailure"
                        | "ExpiredToken"
                        | "InvalidClientTokenId"
                        | "SignatureDoesNotMatch"
                        | "UnrecognizedClientException" => {
                            CloudWatchError::Credentials { code, message }
                        }
                        _ => CloudWatchError::Aws { code, message },
                    }
                })?;
            for r in out.metric_data_results() {
                let Some(s) = series.iter_mut().find(|s| Some(s.id.as_str()) == r.id()) else {
                    continue;
                };
                s.points.extend(
                    r.timestamps()
                        .iter()
                        .map(|t| t.secs())
                        .zip(r.values().iter().copied()),
                );
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        for s in &mut series {
            s.points.sort_by_key(|p| p.0);
            s.points.dedup_by_key(|p| p.0);
        }
        Ok(series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_range_and_retention() {
        let h = Duration::from_secs(3600);
        assert_eq!(period_for(h, h), 60);
        assert_eq!(period_for(6 * h, 6 * h), 60);
        assert_eq!(period_for(24 * h, 24 * h), 240);
        assert_eq!(period_for(7 * 24 * h, 7 * 24 * h), 1680);
        // A range starting 20 days ago: 1-minute data is gone, 5-minute is the finest.
        assert_eq!(period_for(h, 20 * 24 * h), 300);
        assert_eq!(period_for(h, 90 * 24 * h), 3600);
        for p in [
            period_for(5 * h + Duration::from_secs(7), h),
            period_for(3 * 24 * h + Duration::from_secs(11), h),
        ] {
            assert_eq!(p % 60, 0);
        }
    }

    #[test]
    fn alb_dimensions_are_the_ends_of_the_arns() {
        let d = AlbDimensions::from_arns(
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/mlops-demo/50dc6c495c0c9188",
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mlops-demo/73e2d6bc24d8a067",
        )
        .unwrap();
        assert_eq!(d.load_balancer, "app/mlops-demo/50dc6c495c0c9188");
        assert_eq!(d.target_group, "targetgroup/mlops-demo/73e2d6bc24d8a067");
        let q = fleet_queries(&d, &["i-1".into(), "i-2".into()]);
        let ids: Vec<&str> = q.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "alb_requests",
                "alb_latency",
                "alb_target_5xx",
                "alb_elb_5xx",
                "alb_healthy",
                "alb_unhealthy",
                "cpu_0",
                "cpu_1"
            ]
        );
        assert_eq!(
            q[7].dimensions,
            [("InstanceId".to_string(), "i-2".to_string())]
        );
        for (lb, tg) in [
            (
                "app/mlops-demo/50dc",
                "arn:aws:elasticloadbalancing:r:1:targetgroup/a/b",
            ),
            (
                "arn:aws:elasticloadbalancing:r:1:loadbalancer/app/x",
                "arn:aws:elasticloadbalancing:r:1:targetgroup/a/b",
            ),
            (
                "arn:aws:elasticloadbalancing:r:1:loadbalancer/app/x/1",
                "arn:aws:elasticloadbalancing:r:1:targetgroup/a",
            ),
        ] {
            assert!(AlbDimensions::from_arns(lb, tg).is_err(), "{lb} {tg}");
        }
    }

    #[test]
    fn queries_name_the_published_series() {
        let q = service_queries("MLOps/Inference", "inference", "wbc-autoencoder@1");
        assert!(q.iter().any(|q| q.metric == "ReconstructionErrorP95"));
        assert!(q.iter().all(|q| q.dimensions.len() == 2));
        assert_eq!(host_queries("i-1")[0].metric, "CPUUtilization");
    }
}
