"""Alarms -> SNS: per-dataset quality alarms, all-dataset query alarms, DLQs not empty, Lambda errors and throttles.

Notifications (docs/infra.md "Alarm notifications"): every alarm notifies the alert topic when it enters ALARM; it has
no OK action. One EventBridge rule turns "CloudWatch Alarm State Change" events from ALARM to OK of this stack's
alarms into one recovery message on the same topic. So a deploy (INSUFFICIENT_DATA -> OK) and a clean batch send
nothing, a bad batch sends one message per alarm it breaches, and a recovery sends one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jsii
from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces import aws_events as events_refs
from constructs import Construct

import contract
from infra.config import QualityThresholds

DIMENSION = "Dataset"
PERIOD = 300  # seconds: one evaluation window; a batch's datapoints are stamped with its job end time
DRIFT_UNAVAILABLE_PERIOD = 3600  # seconds: DriftUnavailable alarms after 3 consecutive hours with such a batch
DRIFT_UNAVAILABLE_PERIODS = 3  # evaluation periods = datapoints to alarm (3 of 3)
OPS_PERIOD = 300  # seconds
#: Metrics Insights SELECT functions the all-dataset alarms may use (and localcloud.alarms evaluates)
OTHER_DATASETS_LABEL = "OtherDatasets"
#: The per-dataset signals also watched, through a Metrics Insights query, for datasets without a config.
OTHER_DATASET_METRICS: tuple[str, ...] = (
    contract.JOB_FAILED, contract.QUALITY_GATE_FAILED, contract.METRICS_UNAVAILABLE)
#: CloudWatch's limit on a metric data query's Expression (botocore model: MetricDataQuery.Expression max 2048)
MAX_EXPRESSION_LENGTH = 2048


@dataclass(frozen=True)
class QualityMetricAlarm:
    """One per-dataset alarm definition: metric, statistic, comparison and where its threshold comes from."""

    metric_name: str
    threshold_key: str | None
    comparison: cw.ComparisonOperator
    statistic: str = "Maximum"
    fixed_threshold: float | None = None
    description: str = ""
    period: int = PERIOD  # seconds
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1


#: Per-dataset alarms (metric names from design.md Contract 3). Rates breach when GREATER than the configured
#: maximum; RowsOut breaches when LESS than min_rows_out and uses Minimum so that one short batch among several in
#: the same period is not hidden (Minimum is as duplicate-safe as Maximum: republishing equal values changes neither).
DATASET_ALARMS: tuple[QualityMetricAlarm, ...] = (
    QualityMetricAlarm("MissingRateAfter", "max_missing_rate_after", cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                       description="share of missing cells after cleaning above the dataset's max_missing_rate_after"),
    QualityMetricAlarm("RejectedRate", "max_rejected_rate", cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                       description="share of rejected rows above the dataset's max_rejected_rate"),
    QualityMetricAlarm("MalformedJsonRate", "max_malformed_json_rate", cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                       description="share of malformed JSON cells above the dataset's max_malformed_json_rate"),
    QualityMetricAlarm("DuplicateRate", "max_duplicate_rate", cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                       description="share of key-duplicate rows above the dataset's max_duplicate_rate"),
    QualityMetricAlarm("RowsOut", "min_rows_out", cw.ComparisonOperator.LESS_THAN_THRESHOLD, statistic="Minimum",
                       description="a batch produced fewer rows than the dataset's min_rows_out"),
    QualityMetricAlarm("JobFailed", None, cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD, fixed_threshold=1,
                       description="a processing job of this dataset failed or was stopped"),
    QualityMetricAlarm("QualityGateFailed", None, cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                       fixed_threshold=1, description="a batch failed the quality gate; its data was quarantined"),
    QualityMetricAlarm("DriftedColumns", None, cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                       fixed_threshold=1, description="columns drifted from the dataset's baseline"),
    QualityMetricAlarm("DriftMaxPsi", "psi_alarm", cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                       description="a batch's largest column PSI against the baseline reached the dataset's "
                                   "drift.psi_alarm"),
    # The first batch of a dataset has no baseline yet (DriftUnavailable = 1 once, by design): only a run of such
    # batches (a baseline that is missing or unreadable, e.g. an IAM or KMS problem) should page.
    QualityMetricAlarm("DriftUnavailable", None, cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                       fixed_threshold=1, period=DRIFT_UNAVAILABLE_PERIOD,
                       evaluation_periods=DRIFT_UNAVAILABLE_PERIODS, datapoints_to_alarm=DRIFT_UNAVAILABLE_PERIODS,
                       description="drift was unavailable in batches of 3 consecutive hours: the baseline is missing "
                                   "or unreadable (not the first batch; check baselines/<dataset>/baseline.json, IAM, "
                                   "KMS)"),
    QualityMetricAlarm("MetricsUnavailable", None, cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                       fixed_threshold=1, description="a finished job's quality/metrics.json was missing or corrupt"),
)


@dataclass(frozen=True)
class MonitoredFunction:
    """A Lambda whose Errors and Throttles are alarmed, with a short PascalCase label for IDs."""

    label: str
    function: lambda_.IFunction


@dataclass(frozen=True)
class QualityAlarmsProps:
    """Inputs of :class:`QualityAlarms`.

    Attributes:
        namespace: the custom metrics namespace.
        datasets: dataset -> thresholds (``default`` included).
        dead_letter_queues: label -> DLQ; alarm when any message is visible.
        functions: Lambdas to alarm on Errors and Throttles.
        alert_email: optional e-mail subscription (must be confirmed by the recipient).
        removal_policy: of the topic's KMS key.
        refused_keys: the trigger's ``KeyRefused`` metric (Sum, all reasons); alarm ``TriggerKeysRefused`` when set.
    """

    namespace: str
    datasets: Mapping[str, QualityThresholds]
    dead_letter_queues: Mapping[str, sqs.IQueue]
    functions: Sequence[MonitoredFunction]
    alert_email: str | None = None
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN
    refused_keys: cw.IMetric | None = None


@jsii.implements(events.IRuleTarget)
class _TopicTarget:
    """An EventBridge rule target that is just the topic: the caller writes the topic and key policy statements."""

    def __init__(self, topic: sns.ITopic) -> None:
        self._topic = topic

    def bind(self, _rule: events_refs.IRuleRef, _id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._topic.topic_arn)


def other_datasets_query(namespace: str, metric: str, configured: Sequence[str]) -> str:
    """The Metrics Insights query over every ``Dataset`` value except the configured ones (the form localcloud
    evaluates).

    ``SELECT MAX(<metric>) FROM SCHEMA("<namespace>", Dataset) WHERE Dataset != 'a' AND Dataset != 'b'``: one
    aggregated series, the maximum over the matching datasets (metrics with exactly the one dimension ``Dataset``).
    """
    where = " AND ".join(f"{DIMENSION} != '{d}'" for d in configured)
    query = f'SELECT MAX({metric}) FROM SCHEMA("{namespace}", {DIMENSION})' + (f" WHERE {where}" if where else "")
    if len(query) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"{len(configured)} dataset configs make the all-dataset alarm query longer than "
                         f"{MAX_EXPRESSION_LENGTH} characters (CloudWatch's limit): {query[:80]}...")
    return query


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))


class QualityAlarms(Construct):
    """The alert topic and every alarm, each with an alarm action to the topic, and the recovery rule.

    Missing data: per-batch metrics exist only when a batch arrives, which is irregular; a period with no batch is
    not a breach, so every alarm treats missing data as NOT_BREACHING (docs/infra.md explains the trade-off).

    Attributes:
        key: the topic's KMS key (rotation on).
        topic: the alert topic (KMS-encrypted, TLS-only).
        dataset_alarms: dataset -> metric name -> alarm.
        other_dataset_alarms: metric name -> the Metrics Insights alarm over datasets without a config.
        recovery_rule: the EventBridge rule sending ALARM -> OK changes to the topic.
        alarm_name_prefix: every alarm's name starts with it (``<stack name>_``).
        ops_alarms: the operational alarms (DLQs, Lambda errors/throttles).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: QualityAlarmsProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "TopicKey",
            description="Data quality pipeline: alert topic",
            enable_key_rotation=True,
            removal_policy=props.removal_policy,
        )
        #: every alarm of this construct is named "<stack name>_<id>"; stack names cannot contain "_", so this prefix
        #: matches this stack's alarms and no other stack's (the recovery rule filters on it)
        self.alarm_name_prefix = f"{stack.stack_name}_"
        alarm_arns = stack.format_arn(
            service="cloudwatch", resource="alarm", resource_name=f"{self.alarm_name_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # CloudWatch alarms publish to an encrypted topic only if the key lets the service use it.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                # aws:SourceAccount only: which source keys the KMS request SNS makes for CloudWatch carries is not
                # documented in full, and a condition on an absent key would silently drop every alarm action
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.topic = sns.Topic(
            self, "Topic", display_name="Data quality pipeline alerts", master_key=self.key, enforce_ssl=True
        )
        # enforce_ssl writes a topic policy (the TLS deny), which replaces SNS's default policy: without this
        # statement no alarm action could publish ("not authorized to perform SNS:Publish", alarm history only).
        # Same-account IAM principals (the metrics and trigger Lambdas) need no statement here: within one account an
        # identity-policy Allow suffices when no policy denies (IAM User Guide, "Policy evaluation for requests within
        # a single account"); they use TLS, so the deny does not apply.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                            "ArnLike": {"aws:SourceArn": alarm_arns}},
            )
        )
        if props.alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.alert_email))
        self._alarm_action = cw_actions.SnsAction(self.topic)

        self.dataset_alarms: dict[str, dict[str, cw.Alarm]] = {}
        for dataset, thresholds in props.datasets.items():
            self.dataset_alarms[dataset] = {
                spec.metric_name: self._dataset_alarm(props.namespace, dataset, thresholds, spec)
                for spec in DATASET_ALARMS
                # a threshold set to null in the dataset config (drift.psi_alarm: null) turns its alarm off
                if spec.threshold_key is None or getattr(thresholds, spec.threshold_key) is not None
            }
            for rule in thresholds.alarmed_rules:  # the config's rules marked "alarm": true (issue 14)
                self.dataset_alarms[dataset][f"{contract.RULE_VIOLATIONS}:{rule}"] = self._rule_alarm(
                    props.namespace, dataset, rule)
        # Datasets without a config publish the same metrics (the job runs them with default.json): one Metrics
        # Insights query alarm per signal watches every Dataset value except the configured ones, which have their
        # own alarms (so no dataset is notified twice).
        self.other_dataset_alarms: dict[str, cw.Alarm] = {
            metric: self._other_datasets_alarm(props.namespace, sorted(props.datasets), metric)
            for metric in OTHER_DATASET_METRICS
        }

        self.ops_alarms: list[cw.Alarm] = []
        for label, queue in props.dead_letter_queues.items():
            self.ops_alarms.append(
                self._alarm(
                    f"{label}NotEmpty",
                    queue.metric_approximate_number_of_messages_visible(
                        period=Duration.seconds(OPS_PERIOD), statistic="Maximum"
                    ),
                    threshold=0,
                    comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    description=f"{label}: messages that could not be processed are waiting (inspect, fix, redrive)",
                )
            )
        for monitored in props.functions:
            fn = monitored.function
            self.ops_alarms.append(
                self._alarm(
                    f"{monitored.label}Errors",
                    fn.metric_errors(period=Duration.seconds(OPS_PERIOD), statistic="Sum"),
                    threshold=1,
                    comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    description=f"{monitored.label} Lambda invocations failed",
                )
            )
            self.ops_alarms.append(
                self._alarm(
                    f"{monitored.label}Throttles",
                    fn.metric_throttles(period=Duration.seconds(OPS_PERIOD), statistic="Sum"),
                    threshold=1,
                    comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    description=f"{monitored.label} Lambda invocations were throttled",
                )
            )

        if props.refused_keys is not None:
            self.ops_alarms.append(
                self._alarm(
                    "TriggerKeysRefused",
                    props.refused_keys,
                    threshold=1,
                    comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    description="The trigger refused uploads (no job started): see the alert topic's key-refused "
                                "messages or the KeyRefused metric's Reason dimension",
                )
            )

        # Recovery: ALARM -> OK state changes of this stack's alarms, as EventBridge reports them, to the topic.
        # (No OK actions: they would also fire for INSUFFICIENT_DATA -> OK, i.e. for every alarm after a deploy.)
        # A named rule: the key policy needs its ARN, and GetAtt would make a cycle (key -> rule -> topic -> key).
        recovery_rule_name = f"{stack.stack_name[:49]}-AlarmRecovered"  # EventBridge rule names: at most 64
        recovery_rule_arn = stack.format_arn(service="events", resource="rule", resource_name=recovery_rule_name)
        self.recovery_rule = events.Rule(
            self,
            "RecoveryRule",
            rule_name=recovery_rule_name,
            description="One message on the alert topic when an alarm of this stack returns from ALARM to OK",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={
                    "alarmName": events.Match.prefix(self.alarm_name_prefix),
                    "previousState": {"value": ["ALARM"]},
                    "state": {"value": ["OK"]},
                },
            ),
        )
        # Not aws_events_targets.SnsTopic: its topic policy statement for events.amazonaws.com has no conditions;
        # ours is scoped to this rule (aws:SourceArn) and this account.
        self.recovery_rule.add_target(_TopicTarget(self.topic))
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowRecoveryRuleToPublish",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                            "ArnEquals": {"aws:SourceArn": recovery_rule_arn}},
            )
        )
        # The key statement has no aws:SourceArn / aws:SourceAccount condition: whether the KMS request of an
        # EventBridge delivery carries them is not documented (an AWS project's docs say it does not, and a
        # condition on an absent key would drop every recovery message; SNS's "Enable compatibility between event
        # sources from AWS services and encrypted topics" example has none). The key encrypts this topic only, and
        # the topic policy above scopes publishing to the recovery rule, so nothing depends on the answer.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeToUseTheTopicKey",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )

    @property
    def all_alarms(self) -> list[cw.Alarm]:
        """Every alarm: dataset alarms (sorted by dataset), the all-dataset query alarms, the operational ones."""
        return ([a for d in sorted(self.dataset_alarms) for a in self.dataset_alarms[d].values()]
                + list(self.other_dataset_alarms.values()) + self.ops_alarms)

    def _other_datasets_alarm(self, namespace: str, configured: Sequence[str], metric: str) -> cw.Alarm:
        spec = next(s for s in DATASET_ALARMS if s.metric_name == metric)
        expression = other_datasets_query(namespace, metric, configured)
        assert spec.fixed_threshold is not None  # OTHER_DATASET_METRICS all have fixed thresholds
        return self._alarm(
            f"{OTHER_DATASETS_LABEL}{metric}",
            cw.MathExpression(expression=expression, using_metrics={}, period=Duration.seconds(spec.period),
                              label=f"{metric} of datasets without a config"),
            threshold=float(spec.fixed_threshold),
            comparison=spec.comparison,
            description=(f"A dataset without its own config (not {', '.join(configured)}): {spec.description} "
                         f"(threshold {spec.fixed_threshold:g}; the metrics Lambda's message names the dataset)"),
        )

    def _dataset_alarm(
        self, namespace: str, dataset: str, thresholds: QualityThresholds, spec: QualityMetricAlarm
    ) -> cw.Alarm:
        threshold = spec.fixed_threshold if spec.threshold_key is None else getattr(thresholds, spec.threshold_key)
        assert threshold is not None, spec  # a fixed threshold or a key (QualityMetricAlarm's invariant)
        metric = cw.Metric(
            namespace=namespace,
            metric_name=spec.metric_name,
            dimensions_map={DIMENSION: dataset},
            statistic=spec.statistic,
            period=Duration.seconds(spec.period),
        )
        return self._alarm(
            f"{_pascal(dataset)}{spec.metric_name}",
            metric,
            threshold=float(threshold),
            comparison=spec.comparison,
            description=f"Dataset '{dataset}': {spec.description} (threshold {threshold})",
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm,
        )

    def _rule_alarm(self, namespace: str, dataset: str, rule: str) -> cw.Alarm:
        """RuleViolations (dimensions Dataset + Rule) >= 1: the metrics Lambda publishes the broken rule's
        violations (at least 1), 0 when it held; Maximum, one batch is enough."""
        metric = cw.Metric(namespace=namespace, metric_name=contract.RULE_VIOLATIONS,
                           dimensions_map={DIMENSION: dataset, contract.RULE_DIMENSION: rule},
                           statistic="Maximum", period=Duration.seconds(PERIOD))
        return self._alarm(
            f"{_pascal(dataset)}Rule-{rule}", metric, threshold=1,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description=f"Dataset '{dataset}': rule '{rule}' of its config broke in a batch (metrics.json "
                        f"rules.{rule}; RuleViolations = its violating rows)")

    def _alarm(
        self, construct_id: str, metric: cw.IMetric, *, threshold: float, comparison: cw.ComparisonOperator,
        description: str, evaluation_periods: int = 1, datapoints_to_alarm: int = 1,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
            alarm_name=f"{self.alarm_name_prefix}{construct_id}",
        )
        alarm.add_alarm_action(self._alarm_action)
        return alarm
