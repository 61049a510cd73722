//! A stack's CloudWatch alarms and SNS topic against moto_server on loopback (cloudwatch and sns):
//! a provisioned host ends with one alarm per rule, each on the right metric, dimensions,
//! statistic, threshold, period and actions, and one topic with the e-mail subscription; a second
//! apply changes nothing but what changed; teardown (alarms, then the host) leaves none.
//!
//! moto 5 stores alarms and metric data but does not evaluate alarms when data arrives, so "a metric
//! put past the threshold flips the alarm" cannot be observed here; what is checked is that the
//! alarm watches exactly the series the service publishes (the names and dimensions of
//! `inference-image/src/monitor/cloudwatch.rs`), which the service's own CloudWatch tests put.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
use console_core::alarms::{AlarmError, Alarms, StackAlarms};
use console_core::ec2::{HostSpec, Provisioner};
use console_core::Secret;

mod support;

use support::moto::Moto;

const WAIT: Duration = Duration::from_secs(60);

fn stack_alarms(instance: &str) -> StackAlarms {
    StackAlarms {
        stack: "inference-prod".into(),
        namespace: "MLOps/Inference".into(),
        service: "inference".into(),
        model_version: "wbc-autoencoder@v1".into(),
        instance_id: Some(instance.into()),
        autoencoder: true,
    }
}

#[tokio::test]
async fn a_stack_gets_one_alarm_per_rule_and_one_topic_and_teardown_leaves_none() {
    let Some(moto) = Moto::start(&[]) else { return };
    let config = moto.config("testing").await;
    let ec2 = Provisioner::new(aws_sdk_ec2::Client::new(&config));
    let spec = HostSpec::new("inference-prod", "203.0.113.7/32");
    let store = |_: &Secret| -> Result<(), String> { Ok(()) };
    let host = ec2
        .provision(&spec, &store, &mut |_| {}, WAIT)
        .await
        .unwrap();

    let alarms = Alarms::for_config(&config);
    let stack = stack_alarms(&host.instance_id);
    let rules = stack.default_rules();
    let emails = vec!["oncall@example.com".to_string()];
    let applied = alarms.apply(&stack, &rules, &emails).await.unwrap();
    assert_eq!(applied.alarms.len(), rules.len());
    assert_eq!(applied.subscribed, emails);
    assert!(applied.deleted.is_empty());
    assert!(
        applied.topic_arn.ends_with(":mlops-inference-prod-alerts"),
        "{}",
        applied.topic_arn
    );

    // What CloudWatch holds: one alarm per rule, as the rule says, wired to the topic.
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let held = alarms.stack_alarms("inference-prod").await.unwrap();
    assert_eq!(held.len(), rules.len());
    for r in &rules {
        let a = held
            .iter()
            .find(|a| a.alarm_name() == Some(stack.alarm_name(&r.id).as_str()))
            .unwrap_or_else(|| panic!("no alarm for {}", r.id));
        assert_eq!(a.namespace(), Some(r.namespace.as_str()), "{}", r.id);
        assert_eq!(a.metric_name(), Some(r.metric.as_str()), "{}", r.id);
        assert_eq!(a.statistic(), Some(&r.statistic), "{}", r.id);
        assert_eq!(a.threshold(), Some(r.threshold), "{}", r.id);
        assert_eq!(a.period(), Some(r.period_secs), "{}", r.id);
        assert_eq!(
            a.evaluation_periods(),
            Some(r.evaluation_periods),
            "{}",
            r.id
        );
        assert_eq!(a.comparison_operator(), Some(&r.comparison), "{}", r.id);
        assert_eq!(
            a.alarm_actions(),
            std::slice::from_ref(&applied.topic_arn),
            "{}",
            r.id
        );
        assert_eq!(
            a.ok_actions(),
            std::slice::from_ref(&applied.topic_arn),
            "{}",
            r.id
        );
        let dims: Vec<(String, String)> = a
            .dimensions()
            .iter()
            .map(|d| {
                (
                    d.name().unwrap_or_default().into(),
                    d.value().unwrap_or_default().into(),
                )
            })
            .collect();
        assert_eq!(dims, r.dimensions, "{}", r.id);
        let tags = cw
            .list_tags_for_resource()
            .resource_arn(a.alarm_arn().unwrap())
            .send()
            .await
            .unwrap();
        assert!(
            tags.tags()
                .iter()
                .any(|t| t.key() == Some(console_core::ec2::STACK_TAG)
                    && t.value() == Some("inference-prod")),
            "{} is tagged with its stack",
            r.id
        );
    }
    let by = |id: &str| {
        held.iter()
            .find(|a| a.alarm_name() == Some(stack.alarm_name(id).as_str()))
            .unwrap()
    };
    // The service's error rate is published in percent; unreachable is no data at all.
    let err = by("error-rate");
    assert_eq!(
        (err.metric_name(), err.threshold()),
        (Some("ErrorRate"), Some(5.0))
    );
    assert_eq!(
        err.comparison_operator(),
        Some(&ComparisonOperator::GreaterThanThreshold)
    );
    let down = by("service-unreachable");
    assert_eq!(down.treat_missing_data(), Some("breaching"));
    assert_eq!(down.statistic(), Some(&Statistic::SampleCount));
    assert_eq!(by("host-status-check").namespace(), Some("AWS/EC2"));

    // The topic has the address subscribed (pending its confirmation click).
    let sns = aws_sdk_sns::Client::new(&config);
    let subs = sns
        .list_subscriptions_by_topic()
        .topic_arn(&applied.topic_arn)
        .send()
        .await
        .unwrap();
    let endpoints: Vec<_> = subs
        .subscriptions()
        .iter()
        .map(|s| (s.protocol(), s.endpoint()))
        .collect();
    assert_eq!(endpoints, [(Some("email"), Some("oncall@example.com"))]);

    // A second apply with one rule fewer: nothing subscribed twice, the dropped rule's alarm gone.
    let fewer: Vec<_> = rules
        .iter()
        .filter(|r| r.id != "overloaded")
        .cloned()
        .collect();
    let again = alarms.apply(&stack, &fewer, &emails).await.unwrap();
    assert_eq!(again.topic_arn, applied.topic_arn);
    assert!(again.subscribed.is_empty());
    assert_eq!(again.deleted, [stack.alarm_name("overloaded")]);
    assert_eq!(
        alarms.stack_alarms("inference-prod").await.unwrap().len(),
        fewer.len()
    );

    // Another stack's alarms are not this stack's, even with a name that starts the same.
    let mut other = stack_alarms(&host.instance_id);
    other.stack = "inference-prod-eu".into();
    alarms
        .apply(&other, &other.default_rules()[..1], &[])
        .await
        .unwrap();
    assert_eq!(
        alarms.stack_alarms("inference-prod").await.unwrap().len(),
        fewer.len()
    );

    // Bad input is refused before anything reaches AWS.
    let refused = alarms
        .apply(&stack, &fewer, &["not an address".into()])
        .await;
    assert!(
        matches!(refused, Err(AlarmError::BadInput(ref m)) if m.contains("not an e-mail address")),
        "{refused:?}"
    );

    // Teardown: the alarms and the topic, then the host; a second teardown finds nothing.
    let removed = alarms.remove("inference-prod").await.unwrap();
    assert_eq!(removed.len(), fewer.len() + 1, "{removed:?}");
    assert!(alarms
        .stack_alarms("inference-prod")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(alarms.topic("inference-prod").await.unwrap(), None);
    let topics = sns.list_topics().send().await.unwrap();
    assert!(
        topics.topics().iter().all(|t| !t
            .topic_arn()
            .unwrap_or_default()
            .ends_with(":mlops-inference-prod-alerts")),
        "{topics:?}"
    );
    assert_eq!(
        alarms
            .stack_alarms("inference-prod-eu")
            .await
            .unwrap()
            .len(),
        1,
        "the other stack keeps its own"
    );
    assert!(alarms.remove("inference-prod").await.unwrap().is_empty());
    ec2.teardown(&spec, &mut |_| {}, WAIT).await.unwrap();
}
