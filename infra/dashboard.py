"""The CloudWatch dashboard: alarm status, quality per configured dataset, every dataset's quality, jobs and drift
(Metrics Insights queries grouped by ``Dataset``), backlog, DLQs, Lambdas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.quality_alarms import DIMENSION, MonitoredFunction

RATE_METRICS = ("MissingRateAfter", "RejectedRate", "MalformedJsonRate", "DuplicateRate")
ROW_METRICS = ("RowsIn", "RowsOut", "RowsRejected")
PERIOD = 300  # seconds
WIDTH = 24  # grid units (full width)
HALF = 12  # grid units
QUARTER = 6  # grid units
#: Widgets over every dataset (function, metric, title): a Metrics Insights query each, grouped by Dataset.
EVERY_DATASET_WIDGETS = (
    ("MAX", "RejectedRate", "rejected rate (Maximum per batch)"),
    ("MAX", "MissingRateAfter", "missing rate after cleaning (Maximum)"),
    ("SUM", "RowsOut", "rows out"),
    ("MAX", "ProcessingSeconds", "processing seconds (Maximum)"),
    ("SUM", "JobSucceeded", "jobs succeeded"),
    ("SUM", "JobFailed", "jobs failed or stopped"),
    ("SUM", "MetricsUnavailable", "metrics unavailable"),
    ("SUM", "QualityGateFailed", "batches failing the quality gate"),
    ("SUM", "QualityGateWarned", "batches warned by the quality gate"),
    ("MAX", "DriftMaxPsi", "drift from baseline: max PSI"),
    ("MAX", "DriftedColumns", "drifted columns"),
    ("SUM", "DriftUnavailable", "batches without drift (no or unreadable baseline)"),
    ("MAX", "RulesFailed", "broken fail rules (Maximum per batch)"),
    ("SUM", "RowsRejectedByRules", "rows rejected by rules"),
)
MAX_ALARMS_PER_WIDGET = 100  # CloudWatch limit of an alarm status widget


def insights_query(namespace: str, function: str, metric_name: str) -> str:
    """A CloudWatch Metrics Insights query: ``function(metric_name)`` of every ``Dataset`` series, one per dataset."""
    return f'SELECT {function}({metric_name}) FROM SCHEMA("{namespace}", {DIMENSION}) GROUP BY {DIMENSION}'


@dataclass(frozen=True)
class DashboardProps:
    """Inputs of :class:`PipelineDashboard`.

    Attributes:
        namespace: the custom metrics namespace.
        datasets: dataset names to chart (``default`` included).
        queue / dlqs: the trigger queue and every dead-letter queue (label -> queue).
        functions: the Lambdas.
        alarms: shown in an alarm status widget.
    """

    namespace: str
    datasets: Sequence[str]
    queue: sqs.IQueue
    dlqs: Mapping[str, sqs.IQueue]
    functions: Sequence[MonitoredFunction]
    alarms: Sequence[cw.IAlarm]


class PipelineDashboard(Construct):
    """One dashboard over the whole pipeline.

    Attributes:
        dashboard: the CloudWatch dashboard.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: DashboardProps) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.days(7))
        alarms = list(props.alarms)
        for start in range(0, len(alarms), MAX_ALARMS_PER_WIDGET):
            self.dashboard.add_widgets(
                cw.AlarmStatusWidget(
                    title="Alarms", alarms=alarms[start : start + MAX_ALARMS_PER_WIDGET], width=WIDTH, height=6
                )
            )

        def metric(name: str, dataset: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace=props.namespace,
                metric_name=name,
                dimensions_map={DIMENSION: dataset},
                statistic=statistic,
                period=Duration.seconds(PERIOD),
                label=f"{dataset} {name}",
            )

        for dataset in props.datasets:
            self.dashboard.add_widgets(
                cw.GraphWidget(
                    title=f"{dataset}: quality rates (Maximum per batch)",
                    left=[metric(name, dataset, "Maximum") for name in RATE_METRICS],
                    left_y_axis=cw.YAxisProps(min=0, max=1, show_units=False),
                    width=HALF,
                ),
                cw.GraphWidget(
                    title=f"{dataset}: rows",
                    left=[metric(name, dataset, "Sum") for name in ROW_METRICS],
                    width=HALF,
                ),
            )
        # Every dataset, configured or not: Metrics Insights queries grouped by Dataset, so a dataset that appears
        # after the deploy is charted without a redeploy (one line per Dataset value). CloudWatch runs one Metrics
        # Insights query per widget (GetMetricData takes one such query), hence one widget per query.
        self.dashboard.add_widgets(
            *(
                cw.GraphWidget(
                    title=f"All datasets: {title}",
                    left=[
                        cw.MathExpression(
                            expression=insights_query(props.namespace, function, name),
                            using_metrics={},
                            period=Duration.seconds(PERIOD),
                        )
                    ],
                    width=QUARTER,
                )
                for function, name, title in EVERY_DATASET_WIDGETS
            )
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Trigger queue backlog",
                left=[
                    props.queue.metric_approximate_number_of_messages_visible(
                        period=Duration.seconds(PERIOD), statistic="Maximum"),
                    props.queue.metric_approximate_number_of_messages_not_visible(
                        period=Duration.seconds(PERIOD), statistic="Maximum"),
                ],
                right=[props.queue.metric_approximate_age_of_oldest_message(
                    period=Duration.seconds(PERIOD), statistic="Maximum")],
                width=HALF,
            ),
            cw.GraphWidget(
                title="Dead-letter queue depth",
                left=[
                    q.metric_approximate_number_of_messages_visible(
                        period=Duration.seconds(PERIOD), statistic="Maximum", label=label
                    )
                    for label, q in props.dlqs.items()
                ],
                width=HALF,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Lambda errors and throttles",
                left=[
                    m
                    for f in props.functions
                    for m in (
                        f.function.metric_errors(period=Duration.seconds(PERIOD), statistic="Sum",
                                                 label=f"{f.label} errors"),
                        f.function.metric_throttles(period=Duration.seconds(PERIOD), statistic="Sum",
                                                    label=f"{f.label} throttles"),
                    )
                ],
                width=HALF,
            ),
            cw.GraphWidget(
                title="Lambda invocations",
                left=[
                    f.function.metric_invocations(period=Duration.seconds(PERIOD), statistic="Sum", label=f.label)
                    for f in props.functions
                ],
                width=HALF,
            ),
        )
