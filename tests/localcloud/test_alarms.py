"""CloudWatch alarm evaluation: documented rules with hand-computed expectations, then once against moto."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from localcloud import moto_patches
from localcloud.alarms import (
    ALARM,
    INSUFFICIENT,
    OK,
    UnsupportedAlarm,
    aggregate,
    evaluate_alarm,
    evaluate_all,
    evaluate_buckets,
)


@pytest.fixture(autouse=True)
def plain_moto():
    """These tests run the evaluator against plain moto (mock_aws), also in a session that ran a LocalCloud."""
    with moto_patches.suspended():
        yield

P = 300
NOW = 1_800_000_000 + 10  # 10 s into a period (1_800_000_000 is a multiple of 300)
LAST = 1_800_000_000  # start of the newest bucket


def alarm(**kw):
    base = {"AlarmName": "a", "MetricName": "M", "Namespace": "NS", "Statistic": "Maximum", "Period": P,
            "EvaluationPeriods": 3, "DatapointsToAlarm": 3, "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "missing", "StateValue": "OK"}
    base.update(kw)
    return base


def pattern(p: str):
    """'0 - X - X' (oldest -> newest) into bucket values: 0 not breaching, X breaching, - missing."""
    vals = {"0": 0.0, "X": 5.0, "-": None}
    buckets = [vals[c] for c in p.split()]
    starts = [LAST - (len(buckets) - 1 - i) * P for i in range(len(buckets))]
    return buckets, starts


RETAIN = "retain"
# AWS docs, "How alarm state is evaluated when data is missing": Datapoints to Alarm = Evaluation Periods = 3
TABLE_3_OF_3 = [
    ("0 - X - X", OK, OK, OK, OK),
    ("0 - - - -", OK, OK, OK, OK),
    ("- - - - -", INSUFFICIENT, RETAIN, ALARM, OK),
    ("0 X X - X", ALARM, ALARM, ALARM, ALARM),
    ("- - X - -", ALARM, RETAIN, ALARM, OK),
]
# same page, 2 out of 3
TABLE_2_OF_3 = [
    ("0 - X - X", ALARM, ALARM, ALARM, ALARM),
    ("0 0 X 0 X", ALARM, ALARM, ALARM, ALARM),
    ("0 - X - -", OK, OK, ALARM, OK),
    ("- - - - 0", OK, OK, ALARM, OK),
    ("- - - X -", ALARM, RETAIN, ALARM, OK),
]
MODES = ("missing", "ignore", "breaching", "notBreaching")


def cases(table, m):
    for row in table:
        for mode, expected in zip(MODES, row[1:], strict=True):
            yield pytest.param(row[0], m, mode, expected, id=f"{m}of3-{mode}-{row[0].replace(' ', '')}")


@pytest.mark.parametrize("data,m,mode,expected", [*cases(TABLE_3_OF_3, 3), *cases(TABLE_2_OF_3, 2)])
def test_documented_missing_data_tables(data, m, mode, expected):
    buckets, starts = pattern(data)
    for current in (OK, ALARM, INSUFFICIENT):
        ev = evaluate_buckets(alarm(DatapointsToAlarm=m, TreatMissingData=mode), buckets, starts, current)
        assert ev.state == (current if expected == RETAIN else expected), (current, ev.reason)
        assert ev.reason


def test_default_treat_missing_data_is_missing():
    a = alarm()
    del a["TreatMissingData"]
    assert evaluate_buckets(a, *pattern("- - - - -")).state == INSUFFICIENT


def test_real_points_beyond_n_are_used_before_filling():
    # 3 real points in a range of 5 -> TreatMissingData not consulted: the 3 most recent real ones (X X 0) decide
    buckets, starts = pattern("X X - - 0")
    for mode in MODES:
        ev = evaluate_buckets(alarm(DatapointsToAlarm=2, TreatMissingData=mode), buckets, starts)
        assert ev.state == ALARM
        assert [v for _, v in ev.evaluated] == [5.0, 5.0, 0.0]


SAMPLES = [1.0, 4.0, 10.0]  # all inside the newest period


@pytest.mark.parametrize("stat,value", [("Maximum", 10.0), ("Minimum", 1.0), ("Sum", 15.0), ("Average", 5.0),
                                        ("SampleCount", 3.0)])
def test_statistics_per_period(stat, value):
    a = alarm(Statistic=stat, EvaluationPeriods=1, DatapointsToAlarm=1)
    pts = [(LAST + i, v) for i, v in enumerate(SAMPLES)]
    buckets, _ = aggregate(a, pts, NOW)
    assert buckets[-1] == value and buckets[:-1] == [None, None]
    assert evaluate_alarm(a | {"Threshold": value - 0.5}, pts, NOW)[0] == ALARM
    assert evaluate_alarm(a | {"Threshold": value}, pts, NOW)[0] == OK  # GreaterThan: equal does not breach


@pytest.mark.parametrize("op,at,below,above", [
    ("GreaterThanThreshold", OK, OK, ALARM),
    ("GreaterThanOrEqualToThreshold", ALARM, OK, ALARM),
    ("LessThanThreshold", OK, ALARM, OK),
    ("LessThanOrEqualToThreshold", ALARM, ALARM, OK),
])
def test_comparison_operators(op, at, below, above):
    a = alarm(ComparisonOperator=op, EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=2.0)
    for value, expected in ((2.0, at), (1.0, below), (3.0, above)):
        assert evaluate_alarm(a, [(LAST, value)], NOW)[0] == expected


def test_m_of_n_from_raw_samples_and_period_buckets():
    a = alarm(Statistic="Average", EvaluationPeriods=3, DatapointsToAlarm=2, Threshold=5.0)
    # three periods: averages 6 (breach), 4 (ok), 7 (breach) -> 2 of 3 -> ALARM
    pts = [(LAST - 2 * P + 1, 2.0), (LAST - 2 * P + 100, 10.0), (LAST - P + 5, 4.0), (LAST + 1, 7.0)]
    state, reason = evaluate_alarm(a, pts, NOW)
    assert state == ALARM and "2 out of the last 3 datapoints" in reason
    # the newest period now averages 5 (not > 5) -> 1 of 3 -> OK
    state, _ = evaluate_alarm(a, [*pts, (LAST + 2, 3.0)], NOW)
    assert state == OK


def test_samples_outside_the_range_are_ignored():
    a = alarm(EvaluationPeriods=1, DatapointsToAlarm=1)
    too_old = (LAST - 3 * P - 1, 9.0)  # before the 3-period range
    future = (NOW + 5, 9.0)
    assert evaluate_alarm(a, [too_old, future], NOW)[0] == INSUFFICIENT
    assert evaluate_alarm(a, [too_old, future, (datetime.fromtimestamp(LAST, tz=UTC), 9.0)], NOW)[0] \
        == ALARM


def test_unsupported_alarms_raise():
    with pytest.raises(UnsupportedAlarm):
        evaluate_alarm(alarm(Metrics=[{"Id": "m1"}]), [], NOW)
    with pytest.raises(UnsupportedAlarm):
        evaluate_alarm(alarm(ComparisonOperator="LessThanLowerOrGreaterThanUpperThreshold"), [], NOW)


@mock_aws
def test_evaluate_all_against_moto_sets_state_and_notifies_sns():
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    q = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)
    dims = [{"Name": "Dataset", "Value": "default"}]
    common = dict(Namespace="DataQualityPipeline", Dimensions=dims, Period=P, EvaluationPeriods=1,
                  DatapointsToAlarm=1, Statistic="Maximum", AlarmActions=[topic], OKActions=[topic],
                  TreatMissingData="notBreaching")
    cw.put_metric_alarm(AlarmName="default-RejectedRate", MetricName="RejectedRate", Threshold=0.05,
                        ComparisonOperator="GreaterThanThreshold", AlarmDescription="too many rejects", **common)
    cw.put_metric_alarm(AlarmName="default-JobFailed", MetricName="JobFailed", Threshold=1,
                        ComparisonOperator="GreaterThanOrEqualToThreshold", **common)
    ts = datetime.fromtimestamp(NOW - 5, tz=UTC)
    cw.put_metric_data(Namespace="DataQualityPipeline", MetricData=[
        {"MetricName": "RejectedRate", "Dimensions": dims, "Value": 0.2, "Timestamp": ts},
        {"MetricName": "RejectedRate", "Dimensions": [{"Name": "Dataset", "Value": "other"}], "Value": 0.0,
         "Timestamp": ts}])

    transitions = {t.alarm_name: t for t in evaluate_all(cw, sns, now=NOW)}
    # moto created both in OK; AWS would have them in INSUFFICIENT_DATA, so both transition and notify
    assert transitions["default-RejectedRate"].old_state == INSUFFICIENT
    assert transitions["default-RejectedRate"].new_state == ALARM
    assert transitions["default-JobFailed"].new_state == OK  # no data, notBreaching
    assert transitions["default-RejectedRate"].notified == [topic]
    states = {a["AlarmName"]: a["StateValue"] for a in cw.describe_alarms()["MetricAlarms"]}
    assert states == {"default-RejectedRate": ALARM, "default-JobFailed": OK}

    msgs = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(json.loads(m["Body"])["Message"]) for m in msgs]
    alarm_msg = next(b for b in bodies if b["NewStateValue"] == ALARM)
    assert alarm_msg["AlarmName"] == "default-RejectedRate" and alarm_msg["OldStateValue"] == INSUFFICIENT
    assert alarm_msg["AWSAccountId"] == "123456789012" and alarm_msg["Region"] == "US East (N. Virginia)"
    assert alarm_msg["AlarmDescription"] == "too many rejects"
    assert alarm_msg["AlarmArn"].endswith(":alarm:default-RejectedRate")
    assert alarm_msg["NewStateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoint [0.2")
    assert alarm_msg["StateChangeTime"].endswith("+0000")
    trig = alarm_msg["Trigger"]
    assert trig["MetricName"] == "RejectedRate" and trig["Namespace"] == "DataQualityPipeline"
    assert trig["Statistic"] == "MAXIMUM" and trig["Period"] == P and trig["EvaluationPeriods"] == 1
    assert trig["ComparisonOperator"] == "GreaterThanThreshold" and trig["Threshold"] == 0.05
    assert trig["TreatMissingData"] == "notBreaching"
    assert trig["Dimensions"] == [{"value": "default", "name": "Dataset"}]
    assert len(bodies) == 2

    # same data, same period: no change, no message (a duplicate event republishing datapoints is harmless)
    assert evaluate_all(cw, sns, now=NOW + 1) == []
    # documented: the last datapoints are re-evaluated while inside the evaluation range (N + 2 = 3 periods)
    assert evaluate_all(cw, sns, now=NOW + 2 * P) == []
    # once the datapoint has left the range -> no data, notBreaching -> OK, via OKActions
    later = evaluate_all(cw, sns, now=NOW + 3 * P)
    assert [(t.alarm_name, t.old_state, t.new_state) for t in later] == [("default-RejectedRate", ALARM, OK)]
    assert later[0].notified == [topic] and later[0].message["NewStateValue"] == OK


@mock_aws
def test_never_evaluated_moto_alarm_with_no_data_is_corrected_silently():
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    cw.put_metric_alarm(AlarmName="x", MetricName="M", Namespace="NS", Period=P, EvaluationPeriods=1,
                        Statistic="Maximum", Threshold=1, ComparisonOperator="GreaterThanThreshold")
    assert cw.describe_alarms()["MetricAlarms"][0]["StateValue"] == OK  # moto's initial state
    assert evaluate_all(cw, sns, now=NOW) == []  # AWS starts in INSUFFICIENT_DATA: no transition
    assert cw.describe_alarms()["MetricAlarms"][0]["StateValue"] == INSUFFICIENT


@mock_aws
def test_metric_math_alarms_are_left_alone():
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    cw.put_metric_alarm(AlarmName="math", EvaluationPeriods=1, Threshold=1,
                        ComparisonOperator="GreaterThanThreshold",
                        Metrics=[{"Id": "m1", "ReturnData": True, "MetricStat": {
                            "Metric": {"Namespace": "NS", "MetricName": "M"}, "Period": P, "Stat": "Sum"}}])
    assert evaluate_all(cw, sns, now=NOW) == []


# --- Metrics Insights query alarms (the all-dataset alarms of infra.quality_alarms) --------------------------------

def test_the_deployed_query_is_parsed_exactly():
    from infra.quality_alarms import other_datasets_query
    from localcloud.alarms import parse_insights_query

    q = parse_insights_query(other_datasets_query("DataQualityPipeline", "JobFailed", ["default", "orders"]), P)
    assert (q.function, q.metric, q.namespace, q.dimension, q.excluded, q.period, q.statistic) == (
        "MAX", "JobFailed", "DataQualityPipeline", "Dataset", ("default", "orders"), P, "Maximum")
    assert parse_insights_query('SELECT SUM(X) FROM SCHEMA("N/S", D)', 60).excluded == ()
    # SCHEMA: only metrics with exactly the one dimension; excluded values are out
    assert q.matches([{"Name": "Dataset", "Value": "other-ds"}])
    assert not q.matches([{"Name": "Dataset", "Value": "orders"}])
    assert not q.matches([{"Name": "Dataset", "Value": "other-ds"}, {"Name": "Job", "Value": "j"}])
    assert not q.matches([])


@pytest.mark.parametrize("expression", [
    'SELECT AVG(JobFailed) FROM SCHEMA("NS", Dataset)',  # function not evaluated
    'SELECT MAX(JobFailed) FROM "NS"',  # no SCHEMA
    'SELECT MAX(JobFailed) FROM SCHEMA("NS", Dataset) GROUP BY Dataset',
    'SELECT MAX(JobFailed) FROM SCHEMA("NS", Dataset) WHERE Dataset = \'a\'',
    'SELECT MAX(JobFailed) FROM SCHEMA("NS", Dataset) WHERE Dataset != \'a\' OR Dataset != \'b\'',
    'SELECT MAX(JobFailed) FROM SCHEMA("NS", Dataset) WHERE Job != \'a\'',
    'SELECT MAX(JobFailed) FROM SCHEMA("NS", Dataset, Job)',
    'SELECT MAX(JobFailed) FROM SCHEMA("NS", Dataset) ORDER BY MAX() DESC',
])
def test_other_query_forms_are_refused_loudly(expression):
    from localcloud.alarms import UnsupportedQuery, parse_insights_query

    with pytest.raises(UnsupportedQuery):
        parse_insights_query(expression, P)


def query_alarm(expression, **kw):
    a = alarm(**kw)
    for k in ("MetricName", "Namespace", "Statistic", "Period"):
        a.pop(k)
    a["Metrics"] = [{"Id": "q", "Expression": expression, "Period": P, "ReturnData": True}]
    return a


QUERY = 'SELECT MAX(JobFailed) FROM SCHEMA("DataQualityPipeline", Dataset) WHERE Dataset != \'default\''


def test_query_alarm_aggregates_every_matching_dataset():
    from localcloud.alarms import evaluate_query_alarm

    a = query_alarm(QUERY, EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=1.0,
                    ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching")
    def ds(value):
        return [{"Name": "Dataset", "Value": value}]

    # a failed job of a dataset without a config -> ALARM
    assert evaluate_query_alarm(a, [(ds("a"), [(NOW - 5, 0.0)]), (ds("other-ds"), [(NOW - 5, 1.0)])], NOW)[0] == ALARM
    # the configured dataset's failure is its own alarm's business: excluded, so no double notification
    assert evaluate_query_alarm(a, [(ds("default"), [(NOW - 5, 1.0)]), (ds("a"), [(NOW - 5, 0.0)])], NOW)[0] == OK
    # no data at all: notBreaching -> OK
    assert evaluate_query_alarm(a, [], NOW)[0] == OK


@mock_aws
def test_evaluate_all_evaluates_query_alarms_against_moto():
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    cw.put_metric_alarm(AlarmName="others-JobFailed", EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=1,
                        ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
                        Metrics=[{"Id": "q", "Expression": QUERY, "Period": P, "ReturnData": True}])
    ts = datetime.fromtimestamp(NOW - 5, tz=UTC)
    cw.put_metric_data(Namespace="DataQualityPipeline", MetricData=[
        {"MetricName": "JobFailed", "Dimensions": [{"Name": "Dataset", "Value": "default"}], "Value": 1.0,
         "Timestamp": ts}])
    (t,) = evaluate_all(cw, sns, now=NOW, publish=False)
    assert (t.old_state, t.new_state) == (INSUFFICIENT, OK)  # only the configured dataset failed
    cw.put_metric_data(Namespace="DataQualityPipeline", MetricData=[
        {"MetricName": "JobFailed", "Dimensions": [{"Name": "Dataset", "Value": "other-ds"}], "Value": 1.0,
         "Timestamp": ts}])
    (t,) = evaluate_all(cw, sns, now=NOW + 1, publish=False)
    assert (t.old_state, t.new_state) == (OK, ALARM)
    assert t.message["Trigger"]["Metrics"][0]["Expression"] == QUERY


@mock_aws
def test_evaluate_all_refuses_a_query_it_cannot_evaluate():
    from localcloud.alarms import UnsupportedQuery

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    cw.put_metric_alarm(AlarmName="grouped", EvaluationPeriods=1, Threshold=1,
                        ComparisonOperator="GreaterThanThreshold",
                        Metrics=[{"Id": "q", "ReturnData": True, "Period": P,
                                  "Expression": 'SELECT MAX(X) FROM SCHEMA("NS", D) GROUP BY D'}])
    with pytest.raises(UnsupportedQuery):
        evaluate_all(cw, sns, now=NOW)
