"""The offline dashboard renderer: widget by widget, hand-checked numbers; refuses what it cannot show."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from localcloud.dashboard_render import UnsupportedWidget, panels, parse_duration, to_html
from localcloud.metrics_insights import Sample

NS = "DataQualityPipeline"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a"


def sample(name: str, value: float, minutes_ago: float, ns: str = NS, **dims: str) -> Sample:
    return Sample.of(ns, name, dims, NOW - timedelta(minutes=minutes_ago), value)


SAMPLES = [
    sample("RowsOut", 10, 30, Dataset="default"),
    sample("RowsOut", 5, 29, Dataset="default"),  # same 5-minute period as the one above
    sample("RowsOut", 7, 10, Dataset="orders"),
    sample("RowsOut", 99, 60 * 24 * 8, Dataset="default"),  # before the dashboard's 7 days
    sample("ApproximateNumberOfMessagesVisible", 0, 5, ns="AWS/SQS", QueueName="dlq"),
]


def body(*widgets: dict) -> dict:
    return {"start": "-P7D", "widgets": list(widgets)}


def test_metric_rows_and_queries_are_aggregated_per_aligned_period() -> None:
    [plain, query] = panels(body(
        {"type": "metric", "width": 12, "properties": {"title": "rows", "metrics": [
            [NS, "RowsOut", "Dataset", "default", {"stat": "Sum", "period": 300, "label": "default rows"}],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "dlq", {"stat": "Maximum"}],
        ]}},
        {"type": "metric", "width": 6, "properties": {"title": "all", "metrics": [
            [{"expression": f'SELECT SUM(RowsOut) FROM SCHEMA("{NS}", Dataset) GROUP BY Dataset'}]]}},
    ), samples=SAMPLES, alarm_states={}, now=NOW)
    assert [(line.label, line.series.values) for line in plain.lines] == [
        ("default rows", (15.0,)), ("ApproximateNumberOfMessagesVisible", (0.0,))]
    assert [(line.label, line.series.values) for line in query.lines] == [("default", (15.0,)), ("orders", (7.0,))]
    assert plain.has_data and query.has_data and plain.width == 12


def test_a_widget_without_datapoints_has_no_data() -> None:
    [empty] = panels(body({"type": "metric", "properties": {"title": "t", "metrics": [
        [NS, "JobFailed", "Dataset", "default", {"stat": "Sum"}]]}}), samples=SAMPLES, alarm_states={}, now=NOW)
    assert not empty.has_data and empty.lines[0].series.values == ()
    assert "no data" in to_html("d", [empty], NOW)


def test_alarm_widget_shows_states_and_refuses_unknown_alarms() -> None:
    [alarms] = panels(body({"type": "alarm", "properties": {"title": "Alarms", "alarms": [ARN]}}),
                      samples=[], alarm_states={ARN: ("a", "ALARM")}, now=NOW)
    assert alarms.alarms == [("a", "ALARM")] and "ALARM" in to_html("d", [alarms], NOW)
    with pytest.raises(UnsupportedWidget, match="not deployed"):
        panels(body({"type": "alarm", "properties": {"title": "Alarms", "alarms": [ARN]}}), samples=[],
               alarm_states={}, now=NOW)


@pytest.mark.parametrize("widget, message", [
    ({"type": "log", "properties": {"title": "logs"}}, "widget type 'log'"),
    ({"type": "metric", "properties": {"metrics": [[NS, "RowsOut", {"stat": "p90"}]]}}, "p90"),
    ({"type": "metric", "properties": {"metrics": [["...", "RowsOut"]]}}, "expected"),
    ({"type": "metric", "properties": {"metrics": [[{"expression": "m1 * 2"}]]}}, "only Metrics Insights"),
    ({"type": "metric", "properties": {"metrics": [[{"expression": f'SELECT MAX(A) FROM "{NS}"'}]]}},
     "not a supported"),
])
def test_what_cannot_be_rendered_is_refused_by_name(widget: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        panels(body(widget), samples=SAMPLES, alarm_states={}, now=NOW)


def test_parse_duration() -> None:
    assert parse_duration("-P7D") == timedelta(days=7) and parse_duration("-PT3H") == timedelta(hours=3)
    assert parse_duration("-P1W") == timedelta(weeks=1)
    with pytest.raises(UnsupportedWidget):
        parse_duration("P7D")
