"""Metrics Insights queries over the local cloud's metric data: the subset the stack deploys, hand-checked numbers."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from localcloud import moto_patches
from localcloud.metrics_insights import Query, Sample, UnsupportedQuery, combine, evaluate, matches, moto_samples, parse

NS = "DataQualityPipeline"
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def plain_moto():
    with moto_patches.suspended():
        yield


def test_parse_the_deployed_forms() -> None:
    q = parse(f'SELECT MAX(JobFailed) FROM SCHEMA("{NS}", Dataset) WHERE Dataset != \'default\' '
              "AND Dataset != 'orders' GROUP BY Dataset")
    assert q == Query("MAX", "JobFailed", NS, ("Dataset",), (("Dataset", "!=", "default"), ("Dataset", "!=", "orders")),
                      ("Dataset",))
    assert parse(f'select sum(RowsOut) from schema("{NS}", Dataset)') == Query("SUM", "RowsOut", NS, ("Dataset",))


@pytest.mark.parametrize("expression, part", [
    (f'SELECT MAX(A) FROM "{NS}"', "not a supported"),  # FROM <namespace> (no SCHEMA)
    (f'SELECT P90(A) FROM SCHEMA("{NS}", Dataset)', "P90"),
    (f'SELECT MAX(A) FROM SCHEMA("{NS}", Dataset) WHERE Dataset = \'a\' OR Dataset = \'b\'', "AND"),
    (f'SELECT MAX(A) FROM SCHEMA("{NS}", Dataset) WHERE Dataset LIKE \'a%\'', "AND"),
    (f'SELECT MAX(A) FROM SCHEMA("{NS}", Dataset) GROUP BY Reason', "Reason"),
    (f'SELECT MAX(A) FROM SCHEMA("{NS}", Dataset) GROUP BY Dataset ORDER BY MAX() DESC', "ORDER BY"),
    (f'SELECT MAX(A) FROM SCHEMA("{NS}", Dataset) LIMIT 5', "LIMIT"),
])
def test_other_forms_are_refused_naming_the_part(expression: str, part: str) -> None:
    with pytest.raises(UnsupportedQuery, match=part):
        parse(expression)


def test_schema_matches_exactly_its_dimensions_and_where() -> None:
    q = parse(f'SELECT MAX(A) FROM SCHEMA("{NS}", Dataset) WHERE Dataset != \'default\'')
    assert matches(q, {"Dataset": "orders"})
    assert not matches(q, {"Dataset": "default"})
    assert not matches(q, {"Dataset": "orders", "Reason": "x"})  # SCHEMA: exactly these dimension names
    assert not matches(q, {})


def test_combine_per_function() -> None:
    samples = [Sample(NS, "A", {}, T0, 1.0, 3.0, 4.0, 2.0), Sample.of(NS, "A", {}, T0, 5.0)]
    assert combine("MAX", samples) == 5.0 and combine("MIN", samples) == 1.0 and combine("SUM", samples) == 9.0
    assert combine("COUNT", samples) == 3.0 and combine("AVG", samples) == 3.0


def test_evaluate_groups_by_dataset_aligns_periods_and_filters() -> None:
    def put(name: str, value: float, seconds: int, **dims: str) -> Sample:
        return Sample.of(NS, name, dims, T0 + timedelta(seconds=seconds), value)

    samples = [
        put("JobFailed", 1, 10, Dataset="orders"),
        put("JobFailed", 0, 20, Dataset="orders"),
        put("JobFailed", 0, 30, Dataset="default"),
        put("JobFailed", 1, 310, Dataset="default"),  # the next 5-minute period
        put("JobFailed", 7, 40, Dataset="orders", Reason="x"),  # another schema: not matched
        put("JobFailed", 9, 50, Other="orders"),
        put("RowsOut", 5, 50, Dataset="orders"),  # another metric
        Sample.of("Other", "JobFailed", {"Dataset": "orders"}, T0, 3.0),  # another namespace
        put("JobFailed", 4, 900, Dataset="orders"),  # at the window's end: excluded
    ]
    window = {"start": T0 - timedelta(minutes=5), "end": T0 + timedelta(minutes=15), "period": 300}

    grouped = evaluate(samples, f'SELECT SUM(JobFailed) FROM SCHEMA("{NS}", Dataset) GROUP BY Dataset', **window)
    assert [(s.label, s.values) for s in grouped] == [("default", (0.0, 1.0)), ("orders", (1.0,))]
    assert grouped[0].timestamps == (T0, T0 + timedelta(minutes=5))

    [others] = evaluate(samples, f'SELECT MAX(JobFailed) FROM SCHEMA("{NS}", Dataset) WHERE Dataset != \'default\'',
                        **window)
    assert others.label == "JobFailed" and others.values == (1.0,) and others.timestamps == (T0,)

    [everything] = evaluate(samples, f'SELECT MAX(JobFailed) FROM SCHEMA("{NS}", Dataset)', **window)
    assert everything.values == (1.0, 1.0)  # max over both datasets per period, not the other schemas' 7 and 9


@mock_aws
def test_moto_samples_reads_what_put_metric_data_stored() -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    cw.put_metric_data(Namespace=NS, MetricData=[
        {"MetricName": "RowsOut", "Value": 5, "Timestamp": T0, "Dimensions": [{"Name": "Dataset", "Value": "a"}]},
        {"MetricName": "RowsOut", "Timestamp": T0, "Dimensions": [{"Name": "Dataset", "Value": "b"}],
         "StatisticValues": {"SampleCount": 2, "Sum": 7, "Minimum": 3, "Maximum": 4}},
    ])
    samples = moto_samples("123456789012", "us-east-1")
    [series_a, series_b] = evaluate(samples, f'SELECT SUM(RowsOut) FROM SCHEMA("{NS}", Dataset) GROUP BY Dataset',
                                    start=T0, end=T0 + timedelta(minutes=5), period=300)
    assert (series_a.label, series_a.values, series_b.label, series_b.values) == ("a", (5.0,), "b", (7.0,))
