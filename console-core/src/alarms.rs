//! Alerts that reach a person when the console is closed, for a stack on AWS: one CloudWatch alarm
//! per rule (`PutMetricAlarm`) on the series the service publishes (namespace of the service's
//! `INFERENCE_CLOUDWATCH_NAMESPACE`, dimensions `Service` and `ModelVersion`) and on EC2's own
//! metrics for the host, each wired to one SNS topic per stack with the user's e-mail addresses
//! subscribed (AWS mails a confirmation link; the subscription is live once the user clicks it).
//!
//! Everything is named after the stack (`mlops/<stack>/<rule>` for alarms, `mlops-<stack>-alerts`
//! for the topic) and tagged with [`STACK_TAG`], so [`Alarms::apply`] is idempotent (a second run
//! updates in place and deletes the alarms of rules that are gone) and [`Alarms::remove`] finds
//! everything again for the teardown.

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag as AlarmTag,
};
use aws_sdk_sns::types::Tag as TopicTag;

use crate::ec2::STACK_TAG;

/// Longest time an alarm may look back: CloudWatch allows periods × evaluation periods ≤ 1 day.
const MAX_LOOKBACK_SECS: i64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("{0}")]
    BadInput(String),
    #[error("AWS refused to {what} ({code}: {message})")]
    Aws {
        what: String,
        code: String,
        message: String,
    },
}

fn aws_err<E: ProvideErrorMetadata>(what: &str, e: &E) -> AlarmError {
    AlarmError::Aws {
        what: what.into(),
        code: e.code().unwrap_or("no error code").into(),
        message: e.message().unwrap_or("no message").into(),
    }
}

/// Whether CloudWatch counts a minute without data as breaching (for "the service is unreachable":
/// a service that stopped publishing is exactly what that rule is for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    Breaching,
    NotBreaching,
}

impl Missing {
    fn as_str(self) -> &'static str {
        match self {
            Missing::Breaching => "breaching",
            Missing::NotBreaching => "notBreaching",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Critical,
}

/// One rule as CloudWatch evaluates it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmRule {
    pub id: String,
    pub title: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: Statistic,
    pub comparison: ComparisonOperator,
    pub threshold: f64,
    pub period_secs: i32,
    pub evaluation_periods: i32,
    /// How many of the evaluation periods must breach (M of N).
    pub datapoints_to_alarm: i32,
    pub missing: Missing,
    pub severity: Severity,
}

/// What the alarms of one stack watch.
#[derive(Clone, Debug)]
pub struct StackAlarms {
    pub stack: String,
    /// The service's CloudWatch namespace (its `INFERENCE_CLOUDWATCH_NAMESPACE`).
    pub namespace: String,
    /// The `Service` and `ModelVersion` dimensions the service publishes with.
    pub service: String,
    pub model_version: String,
    /// The EC2 instance, for the host rules.
    pub instance_id: Option<String>,
    /// The served model is an autoencoder (the anomaly-rate rule applies).
    pub autoencoder: bool,
}

impl StackAlarms {
    /// The alarm name of rule `id`.
    pub fn alarm_name(&self, id: &str) -> String {
        format!("{}{id}", alarm_prefix(&self.stack))
    }

    /// The stack's SNS topic name.
    pub fn topic_name(&self) -> String {
        topic_name(&self.stack)
    }

    /// The rules that can hold now: the host's alone while no version serves (an empty
    /// `model_version`: the service's alarms would only see missing data, and "unreachable" would
    /// fire), [`StackAlarms::default_rules`] once one does.
    pub fn rules(&self) -> Vec<AlarmRule> {
        let mut rules = self.default_rules();
        if self.model_version.is_empty() {
            rules.retain(|r| r.namespace == "AWS/EC2");
        }
        rules
    }

    /// The default rules: the service's error rate, p99 latency, overload, input drift, anomaly rate
    /// (autoencoder) and being unreachable (no data is breaching), the host's memory and disk (as
    /// the service samples them), and the host's CPU and EC2 status checks. Thresholds are the service's own defaults (`inference-image/src/alerts`).
    pub fn default_rules(&self) -> Vec<AlarmRule> {
        let service = vec![
            ("Service".to_string(), self.service.clone()),
            ("ModelVersion".to_string(), self.model_version.clone()),
        ];
        let rule = |id: &str,
                    title: &str,
                    metric: &str,
                    statistic: Statistic,
                    comparison: ComparisonOperator,
                    threshold: f64,
                    minutes: i32,
                    breaching: i32,
                    severity: Severity| AlarmRule {
            id: id.into(),
            title: title.into(),
            namespace: self.namespace.clone(),
            metric: metric.into(),
            dimensions: service.clone(),
            statistic,
            comparison,
            threshold,
            period_secs: 60,
            evaluation_periods: minutes,
            datapoints_to_alarm: breaching,
            missing: Missing::NotBreaching,
            severity,
        };
        use ComparisonOperator::{GreaterThanOrEqualToThreshold as Ge, GreaterThanThreshold as Gt};
        let mut rules = vec![
            rule(
                "error-rate",
                "Error rate above 5 % for 5 minutes",
                "ErrorRate",
                Statistic::Average,
                Gt,
                5.0,
                5,
                5,
                Severity::Critical,
            ),
            rule(
                "latency-p99",
                "Prediction latency p99 above 250 ms for 5 minutes",
                "LatencyP99",
                Statistic::Maximum,
                Gt,
                0.25,
                5,
                5,
                Severity::Warning,
            ),
            rule(
                "overloaded",
                "Requests refused as overloaded (429)",
                "OverloadedCount",
                Statistic::Sum,
                Gt,
                0.0,
                5,
                1,
                Severity::Warning,
            ),
            rule(
                "input-drift",
                "Input drift in 10 of 15 minutes",
                "DriftedFeatures",
                Statistic::Maximum,
                Ge,
                1.0,
                15,
                10,
                Severity::Critical,
            ),
        ];
        if self.autoencoder {
            rules.push(rule(
                "anomaly-rate",
                "Anomaly rate above 25 % for 15 minutes",
                "AnomalyRate",
                Statistic::Average,
                Gt,
                25.0,
                15,
                15,
                Severity::Warning,
            ));
        }
        // The service samples its process every minute, traffic or not: no sample for 3 minutes
        // means it is down or cannot reach CloudWatch.
        let mut unreachable = rule(
            "service-unreachable",
            "The service published nothing for 3 minutes",
            "ProcessCpuPercent",
            Statistic::SampleCount,
            ComparisonOperator::LessThanThreshold,
            1.0,
            3,
            3,
            Severity::Critical,
        );
        unreachable.missing = Missing::Breaching;
        rules.push(unreachable);
        // EC2 publishes no memory or disk figures: the service's own samples stand in.
        rules.extend([
            rule(
                "host-memory",
                "Host memory above 90 % used",
                "HostMemoryUsedPercent",
                Statistic::Maximum,
                Gt,
                90.0,
                5,
                5,
                Severity::Warning,
            ),
            rule(
                "host-disk",
                "State disk above 90 % full",
                "StateDiskUsedPercent",
                Statistic::Maximum,
                Gt,
                90.0,
                5,
                5,
                Severity::Critical,
            ),
        ]);
        if let Some(instance) = &self.instance_id {
            let host = vec![("InstanceId".to_string(), instance.clone())];
            let mut cpu = rule(
                "host-cpu",
                "Host CPU above 90 % for 10 minutes",
                "CPUUtilization",
                Statistic::Average,
                Gt,
                90.0,
                2,
                2,
                Severity::Warning,
            );
            cpu.namespace = "AWS/EC2".into();
            cpu.dimensions = host.clone();
            cpu.period_secs = 300;
            let mut status = rule(
                "host-status-check",
                "EC2 status check failed",
                "StatusCheckFailed",
                Statistic::Maximum,
                Ge,
                1.0,
                2,
                2,
                Severity::Critical,
            );
            status.namespace = "AWS/EC2".into();
            status.dimensions = host;
            rules.extend([cpu, status]);
        }
        rules
    }
}

/// The alarms moved to the rules the service evaluates (`definitions`, as
/// [`crate::alert_rules::definitions`] gives them): an alarm whose service rule is there with its
/// default metric takes that rule's threshold (in the alarm metric's unit), window and severity;
/// one whose service rule was removed goes. Host rules and "service-unreachable" have no service
/// counterpart and stay; a service rule with no CloudWatch counterpart (a verdict CloudWatch has no
/// series for) is left to the service's own evaluation and webhook.
pub fn follow_service_rules(
    rules: Vec<AlarmRule>,
    definitions: &serde_json::Value,
) -> Vec<AlarmRule> {
    // Alarm id → (the service rule's metric, factor from its threshold to the alarm's).
    let counterpart = |id: &str| -> Option<(&'static str, f64)> {
        Some(match id {
            "error-rate" => ("system.error_rate", 100.0),
            "latency-p99" => ("system.predict_latency_seconds.p99", 1.0),
            "overloaded" => ("system.overloaded", 1.0),
            "input-drift" => ("data.drift.verdict", f64::NAN),
            "anomaly-rate" => ("model.anomaly_rate", 100.0),
            "host-cpu" => ("system.resources.host_cpu_percent_mean", 1.0),
            "host-memory" => ("system.resources.memory_used_fraction", 100.0),
            "host-disk" => ("system.resources.disk_used_fraction", 100.0),
            _ => return None,
        })
    };
    let service: Vec<&serde_json::Value> = definitions
        .as_array()
        .map(|d| d.iter().collect())
        .unwrap_or_default();
    rules
        .into_iter()
        .filter_map(|mut alarm| {
            let Some((metric, factor)) = counterpart(&alarm.id) else {
                return Some(alarm);
            };
            let rule = service.iter().find(|r| r["id"] == alarm.id.as_str())?;
            if rule["metric"] != metric {
                // The id now names another condition: CloudWatch has no series for it.
                return None;
            }
            if let Some(minutes) = rule["window_minutes"].as_i64() {
                let periods = (minutes * 60 / i64::from(alarm.period_secs)).clamp(1, 1440) as i32;
                // Keep the default's share of breaching periods (5 of 5, 10 of 15, 1 of 5).
                let share =
                    f64::from(alarm.datapoints_to_alarm) / f64::from(alarm.evaluation_periods);
                alarm.datapoints_to_alarm =
                    ((f64::from(periods) * share).ceil() as i32).clamp(1, periods);
                alarm.evaluation_periods = periods;
            }
            if let (Some(t), true) = (rule["threshold"].as_f64(), factor.is_finite()) {
                alarm.threshold = t * factor;
            }
            alarm.severity = match rule["severity"].as_str() {
                Some("critical") => Severity::Critical,
                _ => Severity::Warning,
            };
            if let Some(title) = rule["title"].as_str() {
                alarm.title = title.to_string();
            }
            Some(alarm)
        })
        .collect()
}

fn alarm_prefix(stack: &str) -> String {
    format!("mlops/{stack}/")
}

fn topic_name(stack: &str) -> String {
    format!("mlops-{stack}-alerts")
}

/// Checks a stack name, the rules and the e-mail addresses before anything is sent to AWS.
pub fn validate(stack: &str, rules: &[AlarmRule], emails: &[String]) -> Result<(), AlarmError> {
    let bad = |s: String| Err(AlarmError::BadInput(s));
    let slug = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !slug(stack) {
        return bad(format!(
            "stack name {stack:?}: use 1-64 lower-case letters, digits and '-'"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for r in rules {
        let name = format!("rule {:?}", r.id);
        if !slug(&r.id) {
            return bad(format!(
                "{name}: the id must be 1-64 lower-case letters, digits and '-'"
            ));
        }
        if !seen.insert(&r.id) {
            return bad(format!("{name} appears twice"));
        }
        if !r.threshold.is_finite() {
            return bad(format!("{name}: the threshold must be a number"));
        }
        if r.period_secs < 60 || r.period_secs % 60 != 0 {
            return bad(format!(
                "{name}: the period must be a multiple of 60 seconds, not {}",
                r.period_secs
            ));
        }
        if r.evaluation_periods < 1
            || i64::from(r.evaluation_periods) * i64::from(r.period_secs) > MAX_LOOKBACK_SECS
        {
            return bad(format!(
                "{name}: {} periods of {} s is outside 1 period to 1 day",
                r.evaluation_periods, r.period_secs
            ));
        }
        if r.datapoints_to_alarm < 1 || r.datapoints_to_alarm > r.evaluation_periods {
            return bad(format!(
                "{name}: {} breaching periods of {} evaluated cannot be met",
                r.datapoints_to_alarm, r.evaluation_periods
            ));
        }
        if r.namespace.trim().is_empty() || r.metric.trim().is_empty() {
            return bad(format!("{name}: the namespace and the metric are required"));
        }
    }
    for e in emails {
        let ok = match e.split_once('@') {
            Some((user, domain)) => {
                !user.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !e.chars().any(|c| c.is_whitespace() || c == ',' || c == ';')
                    && !domain.contains('@')
            }
            None => false,
        };
        if !ok {
            return bad(format!("{e:?} is not an e-mail address"));
        }
    }
    Ok(())
}

/// What [`Alarms::apply`] left in place.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub topic_arn: String,
    /// The alarm names, in rule order.
    pub alarms: Vec<String>,
    /// Alarms of rules no longer in the list, deleted.
    pub deleted: Vec<String>,
    /// Addresses subscribed by this run (AWS mails each a confirmation link).
    pub subscribed: Vec<String>,
}

pub struct Alarms {
    cloudwatch: aws_sdk_cloudwatch::Client,
    sns: aws_sdk_sns::Client,
}

impl Alarms {
    pub fn new(cloudwatch: aws_sdk_cloudwatch::Client, sns: aws_sdk_sns::Client) -> Alarms {
        Alarms { cloudwatch, sns }
    }

    pub fn for_config(config: &aws_config::SdkConfig) -> Alarms {
        Alarms::new(
            aws_sdk_cloudwatch::Client::new(config),
            aws_sdk_sns::Client::new(config),
        )
    }

    /// Creates or updates the stack's topic, subscribes the addresses not yet subscribed, puts one
    /// alarm per rule (alarm and OK actions: the topic) and deletes the stack's alarms whose rule
    /// is gone.
    pub async fn apply(
        &self,
        stack: &StackAlarms,
        rules: &[AlarmRule],
        emails: &[String],
    ) -> Result<Applied, AlarmError> {
        validate(&stack.stack, rules, emails)?;
        let topic_arn = self
            .sns
            .create_topic()
            .name(stack.topic_name())
            .tags(
                TopicTag::builder()
                    .key(STACK_TAG)
                    .value(&stack.stack)
                    .build()
                    .expect("key and value are set"),
            )
            .send()
            .await
            .map_err(|e| aws_err("create the alert topic", &e))?
            .topic_arn
            .ok_or_else(|| AlarmError::BadInput("SNS returned no topic ARN".into()))?;
        let existing = self.subscriptions(&topic_arn).await?;
        let mut subscribed = Vec::new();
        for email in emails {
            if existing.iter().any(|e| e.eq_ignore_ascii_case(email)) {
                continue;
            }
            self.sns
                .subscribe()
                .topic_arn(&topic_arn)
                .protocol("email")
                .endpoint(email)
                .send()
                .await
                .map_err(|e| aws_err("subscribe an address to the alert topic", &e))?;
            subscribed.push(email.clone());
        }
        let mut alarms = Vec::new();
        for r in rules {
            let name = stack.alarm_name(&r.id);
            let mut put = self
                .cloudwatch
                .put_metric_alarm()
                .alarm_name(&name)
                .alarm_description(format!(
                    "{} ({}; stack {})",
                    r.title,
                    match r.severity {
                        Severity::Warning => "warning",
                        Severity::Critical => "critical",
                    },
                    stack.stack
                ))
                .namespace(&r.namespace)
                .metric_name(&r.metric)
                .statistic(r.statistic.clone())
                .period(r.period_secs)
                .evaluation_periods(r.evaluation_periods)
                .datapoints_to_alarm(r.datapoints_to_alarm)
                .threshold(r.threshold)
                .comparison_operator(r.comparison.clone())
                .treat_missing_data(r.missing.as_str())
                .actions_enabled(true)
                .alarm_actions(&topic_arn)
                .ok_actions(&topic_arn)
                .tags(
                    AlarmTag::builder()
                        .key(STACK_TAG)
                        .value(&stack.stack)
                        .build(),
                )
                .tags(
                    AlarmTag::builder()
                        .key("mlops-console:rule")
                        .value(&r.id)
                        .build(),
                );
            for (k, v) in &r.dimensions {
                put = put.dimensions(Dimension::builder().name(k).value(v).build());
            }
            put.send()
                .await
                .map_err(|e| aws_err(&format!("put the alarm {name}"), &e))?;
            alarms.push(name);
        }
        let stale: Vec<String> = self
            .stack_alarms(&stack.stack)
            .await?
            .into_iter()
            .filter_map(|a| a.alarm_name)
            .filter(|n| !alarms.contains(n))
            .collect();
        self.delete_alarms(&stale).await?;
        Ok(Applied {
            topic_arn,
            alarms,
            deleted: stale,
            subscribed,
        })
    }

    /// The stack's alarms as CloudWatch has them (names start with `mlops/<stack>/`).
    pub async fn stack_alarms(&self, stack: &str) -> Result<Vec<MetricAlarm>, AlarmError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .cloudwatch
                .describe_alarms()
                .alarm_name_prefix(alarm_prefix(stack))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_err("list the stack's alarms", &e))?;
            out.extend(page.metric_alarms().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The stack's topic ARN, if it exists (found by name and checked by its stack tag).
    pub async fn topic(&self, stack: &str) -> Result<Option<String>, AlarmError> {
        let suffix = format!(":{}", topic_name(stack));
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sns
                .list_topics()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_err("list the SNS topics", &e))?;
            for t in page.topics() {
                let Some(arn) = t.topic_arn() else { continue };
                if !arn.ends_with(&suffix) {
                    continue;
                }
                let tags = self
                    .sns
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .map_err(|e| aws_err("read the alert topic's tags", &e))?;
                if tags
                    .tags()
                    .iter()
                    .any(|t| t.key() == STACK_TAG && t.value() == stack)
                {
                    return Ok(Some(arn.to_string()));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(None);
            }
        }
    }

    async fn subscriptions(&self, topic_arn: &str) -> Result<Vec<String>, AlarmError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_err("list the alert topic's subscriptions", &e))?;
            out.extend(
                page.subscriptions()
                    .iter()
                    .filter(|s| s.protocol() == Some("email"))
                    .filter_map(|s| s.endpoint().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn delete_alarms(&self, names: &[String]) -> Result<(), AlarmError> {
        // DeleteAlarms takes at most 100 names per call.
        for chunk in names.chunks(100) {
            self.cloudwatch
                .delete_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| aws_err("delete the stack's alarms", &e))?;
        }
        Ok(())
    }

    /// Deletes the stack's alarms and its topic (with its subscriptions); returns what was removed.
    /// Part of the stack's teardown; a second run finds nothing and removes nothing.
    pub async fn remove(&self, stack: &str) -> Result<Vec<String>, AlarmError> {
        let names: Vec<String> = self
            .stack_alarms(stack)
            .await?
            .into_iter()
            .filter_map(|a| a.alarm_name)
            .collect();
        self.delete_alarms(&names).await?;
        let mut removed: Vec<String> = names.into_iter().map(|n| format!("alarm {n}")).collect();
        if let Some(arn) = self.topic(stack).await? {
            self.sns
                .delete_topic()
                .topic_arn(&arn)
                .send()
                .await
                .map_err(|e| aws_err("delete the alert topic", &e))?;
            removed.push(format!("topic {arn}"));
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(instance: Option<&str>, autoencoder: bool) -> StackAlarms {
        StackAlarms {
            stack: "prod".into(),
            namespace: "MLOps/Inference".into(),
            service: "inference".into(),
            model_version: "wbc-autoencoder@1".into(),
            instance_id: instance.map(str::to_string),
            autoencoder,
        }
    }

    #[test]
    fn defaults_follow_the_task_and_the_host() {
        let ids = |s: &StackAlarms| -> Vec<String> {
            s.default_rules().into_iter().map(|r| r.id).collect()
        };
        assert_eq!(
            ids(&stack(Some("i-1"), true)),
            [
                "error-rate",
                "latency-p99",
                "overloaded",
                "input-drift",
                "anomaly-rate",
                "service-unreachable",
                "host-memory",
                "host-disk",
                "host-cpu",
                "host-status-check"
            ]
        );
        assert!(!ids(&stack(None, false)).iter().any(|i| [
            "anomaly-rate",
            "host-cpu",
            "host-status-check"
        ]
        .contains(&i.as_str())));
        for s in [stack(Some("i-1"), true), stack(None, false)] {
            validate(&s.stack, &s.default_rules(), &[]).unwrap();
        }
        let rules = stack(Some("i-1"), true).default_rules();
        let by = |id: &str| rules.iter().find(|r| r.id == id).unwrap().clone();
        assert_eq!(by("service-unreachable").missing, Missing::Breaching);
        assert_eq!(by("error-rate").missing, Missing::NotBreaching);
        assert_eq!(by("host-cpu").namespace, "AWS/EC2");
        assert_eq!(by("host-disk").metric, "StateDiskUsedPercent");
        assert_eq!(by("host-disk").namespace, "MLOps/Inference");
        assert_eq!(
            by("host-cpu").dimensions,
            [("InstanceId".to_string(), "i-1".to_string())]
        );
        assert_eq!(
            by("error-rate").dimensions,
            [
                ("Service".to_string(), "inference".to_string()),
                ("ModelVersion".to_string(), "wbc-autoencoder@1".to_string())
            ]
        );
    }

    /// The user's edits of the service's rules reach the alarms: threshold in the alarm's unit,
    /// window as periods (the default's share breaching), severity; a removed rule's alarm goes,
    /// the host's and "unreachable" stay.
    #[test]
    fn alarms_follow_the_rules_the_service_evaluates() {
        let s = stack(Some("i-1"), true);
        let definitions = serde_json::json!([
            {"id": "error-rate", "title": "Errors above 10 %", "metric": "system.error_rate", "op": ">",
             "threshold": 0.1, "window_minutes": 10, "severity": "warning"},
            {"id": "input-drift", "title": "Input drift", "metric": "data.drift.verdict", "op": "is",
             "threshold": "drift", "window_minutes": 30, "severity": "critical"},
            {"id": "anomaly-rate", "title": "Anomalies", "metric": "model.task", "op": "is",
             "threshold": "x", "window_minutes": 5, "severity": "warning"},
            {"id": "host-cpu", "title": "CPU", "metric": "system.resources.host_cpu_percent_mean",
             "op": ">", "threshold": 80, "window_minutes": 20, "severity": "critical"},
            {"id": "host-disk", "title": "Disk", "metric": "system.resources.disk_used_fraction",
             "op": ">", "threshold": 0.95, "window_minutes": 5, "severity": "critical"}
        ]);
        let rules = follow_service_rules(s.rules(), &definitions);
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "error-rate",
                "input-drift",
                "service-unreachable",
                "host-disk",
                "host-cpu",
                "host-status-check"
            ]
        );
        let by = |id: &str| rules.iter().find(|r| r.id == id).unwrap();
        // EC2's CPU in 5-minute periods: 20 minutes are 4 of them.
        let cpu = by("host-cpu");
        assert_eq!(
            (
                cpu.threshold,
                cpu.evaluation_periods,
                cpu.datapoints_to_alarm
            ),
            (80.0, 4, 4)
        );
        assert_eq!(cpu.severity, Severity::Critical);
        assert_eq!(by("host-disk").threshold, 95.0);
        let errors = &rules[0];
        assert_eq!(errors.threshold, 10.0);
        assert_eq!(
            (errors.evaluation_periods, errors.datapoints_to_alarm),
            (10, 10)
        );
        assert_eq!(errors.severity, Severity::Warning);
        assert_eq!(errors.title, "Errors above 10 %");
        let drift = &rules[1];
        assert_eq!(
            drift.threshold, 1.0,
            "the drift alarm counts drifted features"
        );
        assert_eq!(
            (drift.evaluation_periods, drift.datapoints_to_alarm),
            (30, 20)
        );
        validate(&s.stack, &rules, &[]).unwrap();
        // With the defaults in force, nothing moves.
        let defaults = serde_json::json!([
            {"id": "error-rate", "title": "Error rate above 5 % for 5 minutes", "metric": "system.error_rate",
             "op": ">", "threshold": 0.05, "window_minutes": 5, "severity": "critical"}
        ]);
        let kept = follow_service_rules(s.rules(), &defaults);
        assert_eq!(kept[0], s.rules()[0]);
    }

    #[test]
    fn until_a_version_serves_only_the_host_is_watched() {
        let mut s = stack(Some("i-1"), true);
        assert_eq!(s.rules(), s.default_rules());
        s.model_version.clear();
        let ids: Vec<String> = s.rules().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["host-cpu", "host-status-check"]);
    }

    #[test]
    fn names_do_not_collide_between_stacks() {
        let a = stack(None, false);
        let mut b = stack(None, false);
        b.stack = "prod-eu".into();
        assert!(!b
            .alarm_name("error-rate")
            .starts_with(&alarm_prefix(&a.stack)));
        assert_eq!(a.alarm_name("error-rate"), "mlops/prod/error-rate");
        assert_eq!(a.topic_name(), "mlops-prod-alerts");
    }

    #[test]
    fn bad_rules_and_addresses_are_named() {
        let s = stack(None, false);
        let good = s.default_rules();
        let err = |rules: &[AlarmRule], emails: &[&str]| {
            let emails: Vec<String> = emails.iter().map(|e| e.to_string()).collect();
            validate("prod", rules, &emails).unwrap_err().to_string()
        };
        let mut r = good.clone();
        r[0].period_secs = 90;
        assert!(err(&r, &[]).contains("rule \"error-rate\": the period must be a multiple of 60"));
        let mut r = good.clone();
        r[1].datapoints_to_alarm = 9;
        assert!(err(&r, &[]).contains("\"latency-p99\": 9 breaching periods of 5"));
        let mut r = good.clone();
        r[0].evaluation_periods = 1441;
        assert!(err(&r, &[]).contains("outside 1 period to 1 day"));
        let mut r = good.clone();
        r[2].threshold = f64::NAN;
        assert!(err(&r, &[]).contains("\"overloaded\": the threshold must be a number"));
        let mut r = good.clone();
        r.push(r[0].clone());
        assert!(err(&r, &[]).contains("appears twice"));
        assert!(err(&good, &["ops@example.com", "nobody"])
            .contains("\"nobody\" is not an e-mail address"));
        assert!(err(&good, &["a@b.c, d@e.f"]).contains("is not an e-mail address"));
        assert!(validate("Prod!", &good, &[])
            .unwrap_err()
            .to_string()
            .contains("stack name"));
        validate("prod", &good, &["ops@example.com".into()]).unwrap();
    }
}
