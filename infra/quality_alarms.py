"""Alarms -> SNS: per-dataset quality alarms, job failures, DLQs not empty, Lambda errors and throttles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import QualityThresholds

DIMENSION = "Dataset"
PERIOD = 300  # seconds: one evaluation window; a batch's datapoints are stamped with its job end time
DRIFT_UNAVAILABLE_PERIOD = 3600  # seconds: DriftUnavailable alarms after 3 consecutive hours with such a batch
DRIFT_UNAVAILABLE_PERIODS = 3  # evaluation periods = datapoints to alarm (3 of 3)
OPS_PERIOD = 300  # seconds


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


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))


class QualityAlarms(Construct):
    """The alert topic and every alarm, each with alarm and OK actions to the topic.

    Missing data: per-batch metrics exist only when a batch arrives, which is irregular; a period with no batch is
    not a breach, so every alarm treats missing data as NOT_BREACHING (docs/infra.md explains the trade-off).

    Attributes:
        key: the topic's KMS key (rotation on).
        topic: the alert topic (KMS-encrypted, TLS-only).
        dataset_alarms: dataset -> metric name -> alarm.
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
        # CloudWatch alarms publish to an encrypted topic only if the key lets the service use it.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.topic = sns.Topic(
            self, "Topic", display_name="Data quality pipeline alerts", master_key=self.key, enforce_ssl=True
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

    @property
    def all_alarms(self) -> list[cw.Alarm]:
        """Every alarm, dataset alarms first (sorted by dataset), then the operational ones."""
        return [a for d in sorted(self.dataset_alarms) for a in self.dataset_alarms[d].values()] + self.ops_alarms

    def _dataset_alarm(
        self, namespace: str, dataset: str, thresholds: QualityThresholds, spec: QualityMetricAlarm
    ) -> cw.Alarm:
        threshold = spec.fixed_threshold if spec.threshold_key is None else getattr(thresholds, spec.threshold_key)
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
        )
        alarm.add_alarm_action(self._alarm_action)
        alarm.add_ok_action(self._alarm_action)
        return alarm
