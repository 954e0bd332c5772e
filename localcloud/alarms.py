"""CloudWatch metric-alarm evaluation for the local cloud (moto stores alarms but never evaluates them).

`evaluate_alarm(alarm, datapoints, now)` applies CloudWatch's documented rules ("Configuring how CloudWatch alarms
treat missing data", "Avoiding premature transitions to alarm state") to raw ``(timestamp, value)`` samples;
`evaluate_all(cloudwatch, sns)` evaluates every alarm of the account, sets the new state and publishes the alarm
notification to the alarm's actions, as CloudWatch does.

Implemented:

* ``Statistic``: Maximum, Minimum, Sum, Average, SampleCount, aggregated per ``Period`` bucket. Buckets are aligned
  to multiples of ``Period`` since the epoch; the newest bucket is the one holding ``now`` (so a datapoint stamped
  a moment ago counts at once; CloudWatch itself may wait for the period to fill).
* ``EvaluationPeriods`` (N) and ``DatapointsToAlarm`` (M, default N): ALARM when at least M of the evaluated N
  datapoints breach.
* ``ComparisonOperator``: GreaterThanOrEqualToThreshold, GreaterThanThreshold, LessThanThreshold,
  LessThanOrEqualToThreshold.
* Evaluation range: N + 2 periods (the documented example retrieves 5 for N = 3; AWS does not publish the general
  rule). With at least N real datapoints in the range, the most recent N real ones are evaluated and
  ``TreatMissingData`` is not consulted. With fewer:
    - ``breaching`` / ``notBreaching``: the shortfall (N - real) is filled with breaching / non-breaching points;
      every real datapoint in the range is kept ("uses missing data points only as few times as possible").
    - ``missing`` (the default): no real datapoint -> INSUFFICIENT_DATA; otherwise the premature-alarm rule
      (ALARM when, among the last N periods, the oldest breaching datapoint is at least M periods old and every
      newer one is breaching or missing; applied only when no real datapoint in the range is non-breaching, the
      reading that reproduces both documented tables: "0 - X - -" with 2 of 3 is OK, "- - - X -" is ALARM);
      otherwise ALARM if >= M real datapoints breach, else OK.
    - ``ignore``: ALARM if >= M real datapoints breach; OK if some real datapoint does not breach; otherwise the
      current state is kept.
  Both documented tables (3 of 3 and 2 of 3) are reproduced by tests/localcloud/test_alarms.py. As documented,
  an alarm keeps re-evaluating the last datapoints while they are inside the range after a metric stops flowing
  (an ALARM from one bad batch lasts until its datapoint leaves the N + 2 period range).

Metrics Insights query alarms: exactly the form the stack deploys (infra.quality_alarms.other_datasets_query),
one query with ``ReturnData``::

    SELECT MAX|MIN|SUM(<metric>) FROM SCHEMA("<namespace>", <dimension>)
        [WHERE <dimension> != '<value>' [AND <dimension> != '<value>' ...]]

evaluated as AWS documents the query: the metrics of the namespace with that name and *exactly* that one dimension
("SCHEMA": only metrics with exactly the listed dimensions), minus the excluded values, aggregated into one series
per period with the function (MAX of the per-series maxima, ...); then the same rules as a single-metric alarm.
Any other query (GROUP BY, ORDER BY, other functions, OR, other operators, other dimensions) raises
:class:`UnsupportedQuery` from `evaluate_all` (loudly: a deployed query the local cloud cannot evaluate must not
pass silently). AWS evaluates such alarms on the most recent 3 hours of data only ("Limits that apply to alarms
based on Metrics Insights queries"); our evaluation range (N + 2 periods) stays inside that for the deployed alarms.

Not implemented (documented gaps): other metric-math alarms (``Metrics`` without a SELECT), anomaly-detection bands
(``LessThanLowerOrGreaterThanUpperThreshold`` and friends), percentiles (``ExtendedStatistic``), ``Unit`` filtering,
composite alarms, ``EvaluateLowSampleCountPercentile``, the AWS/DynamoDB "always ignore" special case. Such alarms
are left in their current state by ``evaluate_all``.

moto quirk handled: moto creates alarms in ``OK`` with reason "Unchecked: Initial alarm creation"; AWS creates
them in ``INSUFFICIENT_DATA``. `evaluate_all` treats such never-evaluated alarms as INSUFFICIENT_DATA, so the first
evaluation notifies exactly when AWS would (e.g. INSUFFICIENT_DATA -> OK sends the OKActions).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localcloud import metrics_insights

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
MOTO_INITIAL_REASON = "Unchecked: Initial alarm creation"
EXTRA_RANGE = 2  # evaluation range = EvaluationPeriods + EXTRA_RANGE periods

_OPS = {
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}
_STATS = {
    "Maximum": max,
    "Minimum": min,
    "Sum": math.fsum,
    "Average": lambda vs: math.fsum(vs) / len(vs),
    "SampleCount": lambda vs: float(len(vs)),
}
REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)", "us-east-2": "US East (Ohio)", "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)", "eu-west-1": "EU (Ireland)", "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)", "eu-central-1": "EU (Frankfurt)", "eu-north-1": "EU (Stockholm)",
    "ap-northeast-1": "Asia Pacific (Tokyo)", "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)", "ap-south-1": "Asia Pacific (Mumbai)",
    "ca-central-1": "Canada (Central)", "sa-east-1": "South America (Sao Paulo)",
}


class UnsupportedAlarm(ValueError):
    """The alarm uses a feature this evaluator does not emulate (see the module docstring)."""


class UnsupportedQuery(UnsupportedAlarm):
    """A Metrics Insights query outside the form we deploy and evaluate (raised, never skipped)."""


@dataclass(frozen=True)
class InsightsQuery:
    """A parsed ``SELECT f(metric) FROM SCHEMA("ns", dim) WHERE dim != 'a' AND ...`` query."""

    function: str  # MAX | MIN | SUM
    metric: str
    namespace: str
    dimension: str
    excluded: tuple[str, ...]
    period: int

    @property
    def statistic(self) -> str:
        return {"MAX": "Maximum", "MIN": "Minimum", "SUM": "Sum"}[self.function]

    def matches(self, dimensions: Sequence[dict]) -> bool:
        """Does a metric with these dimensions belong to the query's series (SCHEMA: exactly this one dimension)?"""
        dims = {d["Name"]: d["Value"] for d in dimensions or []}
        return set(dims) == {self.dimension} and dims[self.dimension] not in self.excluded


def parse_insights_query(expression: str, period: int) -> InsightsQuery:
    """Parse a Metrics Insights alarm query (the grammar is ``localcloud/metrics_insights.py``'s, shared with the
    dashboard renderer) and keep it to what an alarm evaluates here: MAX, MIN or SUM over one ``SCHEMA`` dimension,
    ``WHERE <that dimension> != '<value>'`` clauses only, no GROUP BY (an alarm's query returns one series).

    Raises:
        UnsupportedQuery: naming what is outside that form.
    """
    try:
        query = metrics_insights.parse(expression)
    except metrics_insights.UnsupportedQuery as exc:
        raise UnsupportedQuery(f"Metrics Insights alarm query: {exc}") from None
    if query.function not in ("MAX", "MIN", "SUM"):
        raise UnsupportedQuery(f"Metrics Insights function {query.function} is not evaluated locally (MAX, MIN, SUM): "
                               f"{expression!r}")
    if len(query.dimensions) != 1 or query.group_by:
        raise UnsupportedQuery(
            f"an alarm query is evaluated over one SCHEMA dimension without GROUP BY: {expression!r}")
    for dim, op, value in query.where:
        if op != "!=" or dim != query.dimensions[0]:
            raise UnsupportedQuery(f"WHERE clause {dim} {op} '{value}' is not \"{query.dimensions[0]} != '<value>'\": "
                                   f"{expression!r}")
    return InsightsQuery(query.function, query.metric, query.namespace, query.dimensions[0],
                         tuple(value for _, _, value in query.where), int(period))


def insights_query(alarm: dict) -> InsightsQuery | None:
    """The alarm's Metrics Insights query, None for a single-metric alarm; raises for other metric-math alarms."""
    queries = alarm.get("Metrics") or []
    if not queries:
        return None
    selects = [q for q in queries if str(q.get("Expression", "")).lstrip().upper().startswith("SELECT")]
    if not selects:
        raise UnsupportedAlarm("metric-math alarms are not evaluated locally")
    if len(queries) != 1 or queries[0].get("ReturnData") is False:
        raise UnsupportedQuery(f"a Metrics Insights alarm is evaluated only as its single query: {queries!r}")
    return parse_insights_query(queries[0]["Expression"], int(queries[0].get("Period") or alarm.get("Period") or 0))


def _flat(alarm: dict) -> dict:
    """The alarm with Period and Statistic taken from its Metrics Insights query (if any)."""
    q = insights_query(alarm)
    return alarm if q is None else dict(alarm, Period=q.period, Statistic=q.statistic)


@dataclass
class Evaluation:
    state: str
    reason: str
    buckets: list[float | None]  # per-period statistic values, oldest -> newest, None = missing
    bucket_starts: list[float]  # epoch seconds of each bucket's start
    evaluated: list[tuple[float, float]] = field(default_factory=list)  # (bucket start, value) of real points used


@dataclass
class AlarmTransition:
    alarm_name: str
    old_state: str
    new_state: str
    reason: str
    timestamp: datetime
    notified: list[str]  # topic ARNs the notification was published to
    message: dict[str, Any]  # the CloudWatch alarm notification JSON


def _epoch(ts: Any) -> float:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts.timestamp()
    return float(ts)


def _fmt_ts(epoch: float) -> str:  # CloudWatch reason format: dd/MM/yy HH:mm:ss
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%d/%m/%y %H:%M:%S")


def _check_supported(alarm: dict) -> None:
    alarm = _flat(alarm)
    if alarm.get("ComparisonOperator") not in _OPS:
        raise UnsupportedAlarm(f"comparison {alarm.get('ComparisonOperator')!r} is not evaluated locally")
    if alarm.get("Statistic") not in _STATS:
        raise UnsupportedAlarm(f"statistic {alarm.get('Statistic') or alarm.get('ExtendedStatistic')!r} "
                               "is not evaluated locally")


def bucket_bounds(alarm: dict, now: float) -> list[tuple[float, float]]:
    """(start, end) of each period of the evaluation range, oldest first; the last one holds `now`."""
    period = int(alarm["Period"])
    n = int(alarm["EvaluationPeriods"])
    last_start = math.floor(now / period) * period
    count = n + EXTRA_RANGE
    return [(last_start - (count - 1 - i) * period, last_start - (count - 1 - i) * period + period)
            for i in range(count)]


def aggregate(alarm: dict, datapoints: Iterable[tuple[Any, float]], now: float) -> tuple[list, list]:
    """Per-bucket statistic values (None where a bucket has no sample) and bucket starts."""
    bounds = bucket_bounds(alarm, now)
    samples: list[list[float]] = [[] for _ in bounds]
    first = bounds[0][0]
    period = int(alarm["Period"])
    for ts, value in datapoints:
        t = _epoch(ts)
        if t < first or t > now:
            continue
        idx = int((t - first) // period)
        if 0 <= idx < len(bounds):
            samples[idx].append(float(value))
    stat = _STATS[alarm["Statistic"]]
    return [stat(s) if s else None for s in samples], [b[0] for b in bounds]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def evaluate_buckets(alarm: dict, buckets: Sequence[float | None], starts: Sequence[float],
                     current_state: str | None = None) -> Evaluation:
    """Core rules on already aggregated per-period values (oldest -> newest, length N + EXTRA_RANGE)."""
    _check_supported(alarm)
    n = int(alarm["EvaluationPeriods"])
    m = int(alarm.get("DatapointsToAlarm") or n)
    threshold = float(alarm["Threshold"])
    breaches, words = _OPS[alarm["ComparisonOperator"]]
    treat = alarm.get("TreatMissingData") or "missing"
    current = current_state or alarm.get("StateValue") or INSUFFICIENT
    real = [(s, v) for s, v in zip(starts, buckets, strict=True) if v is not None]
    ev = Evaluation(state=current, reason="", buckets=list(buckets), bucket_starts=list(starts))
    thr = f"the threshold ({threshold:g})"

    def crossed(points: list[tuple[float, float]], filled: int, filled_breaching: bool) -> Evaluation:
        ev.evaluated = points
        bad = sum(1 for _, v in points if breaches(v, threshold)) + (filled if filled_breaching else 0)
        total = len(points) + filled
        shown = ", ".join(f"{v:g} ({_fmt_ts(s)})" for s, v in sorted(points, key=lambda p: -p[0]))
        if filled:
            shown = ", ".join(x for x in (shown, (f"{filled} missing treated as "
                                                  f"{'breaching' if filled_breaching else 'not breaching'}")) if x)
        if bad >= m:
            ev.state = ALARM
            ev.reason = (f"Threshold Crossed: {bad} out of the last {_plural(total, 'datapoint')} [{shown}] "
                         f"{'was' if bad == 1 else 'were'} {words} {thr} "
                         f"(minimum {_plural(m, 'datapoint')} for OK -> ALARM transition).")
        else:
            ev.state = OK
            good = total - bad
            ev.reason = (f"Threshold Crossed: {good} out of the last {_plural(total, 'datapoint')} [{shown}] "
                         f"{'was' if good == 1 else 'were'} not {words} {thr} "
                         f"(minimum {_plural(total - m + 1, 'datapoint')} for ALARM -> OK transition).")
        return ev

    if len(real) >= n:
        return crossed(real[-n:], 0, False)
    shortfall = n - len(real)
    if treat in ("breaching", "notBreaching"):
        return crossed(real, shortfall, treat == "breaching")
    if treat == "ignore":
        if sum(1 for _, v in real if breaches(v, threshold)) >= m or any(not breaches(v, threshold) for _, v in real):
            return crossed(real, 0, False)
        ev.state = current
        ev.reason = (f"Missing data ignored: {_plural(len(real), 'datapoint')} in the evaluation range, not enough "
                     f"to change the state (TreatMissingData=ignore); state kept.")
        return ev
    # treat == "missing"
    if not real:
        ev.state = INSUFFICIENT
        ev.reason = (f"Insufficient Data: {_plural(len(buckets), 'datapoint')} "
                     f"{'was' if len(buckets) == 1 else 'were'} unknown.")
        return ev
    window = list(zip(starts, buckets, strict=True))[-n:]  # the last N periods, oldest first
    oldest_bad = next((i for i, (_, v) in enumerate(window) if v is not None and breaches(v, threshold)), None)
    any_good = any(not breaches(v, threshold) for _, v in real)
    if not any_good and oldest_bad is not None and len(window) - oldest_bad >= m and all(
            v is None or breaches(v, threshold) for _, v in window[oldest_bad:]):
        used = [(s, v) for s, v in window[oldest_bad:] if v is not None]
        ev.evaluated, ev.state = used, ALARM
        shown = ", ".join(f"{v:g} ({_fmt_ts(s)})" for s, v in sorted(used, key=lambda p: -p[0]))
        ev.reason = (f"Threshold Crossed: {_plural(len(used), 'datapoint')} [{shown}] {words} {thr}; the oldest "
                     f"breaching datapoint of the last {_plural(n, 'period')} is {len(window) - oldest_bad} periods "
                     f"old and every newer one breaches or is missing (minimum {_plural(m, 'datapoint')} for "
                     f"OK -> ALARM transition).")
        return ev
    return crossed(real, 0, False)


def evaluate_alarm(alarm: dict, datapoints: Iterable[tuple[Any, float]], now: Any = None,
                   current_state: str | None = None) -> tuple[str, str]:
    """New (state, reason) of a DescribeAlarms-shaped metric alarm given raw (timestamp, value) samples.

    `now` (datetime or epoch seconds) defaults to the current time; `current_state` (default: the alarm's
    StateValue) matters only for TreatMissingData=ignore. Raises UnsupportedAlarm for features not emulated.
    """
    _check_supported(alarm)
    alarm = _flat(alarm)
    now_s = time.time() if now is None else _epoch(now)
    buckets, starts = aggregate(alarm, datapoints, now_s)
    ev = evaluate_buckets(alarm, buckets, starts, current_state)
    return ev.state, ev.reason


def evaluate_query_alarm(alarm: dict, series: Iterable[tuple[Sequence[dict], Iterable[tuple[Any, float]]]],
                         now: Any = None, current_state: str | None = None) -> tuple[str, str]:
    """New (state, reason) of a Metrics Insights alarm given every metric's (dimensions, raw samples)."""
    query = insights_query(alarm)
    if query is None:
        raise UnsupportedAlarm("not a Metrics Insights alarm")
    flat = _flat(alarm)
    now_s = time.time() if now is None else _epoch(now)
    per_series = [aggregate(flat, points, now_s) for dims, points in series if query.matches(dims)]
    starts = [b[0] for b in bucket_bounds(flat, now_s)]
    buckets = _combine(query, [values for values, _ in per_series], len(starts))
    ev = evaluate_buckets(flat, buckets, starts, current_state)
    return ev.state, ev.reason


def _combine(query: InsightsQuery, per_series: Sequence[Sequence[float | None]], count: int) -> list[float | None]:
    """One aggregated series from per-series per-period values (MAX of maxima, MIN of minima, SUM of sums)."""
    fn = {"MAX": max, "MIN": min, "SUM": math.fsum}[query.function]
    out: list[float | None] = []
    for i in range(count):
        values = [s[i] for s in per_series if s[i] is not None]
        out.append(float(fn(values)) if values else None)
    return out


# --------------------------------------------------------------------------------------------------------------
# Against the (emulated) account


def fetch_buckets(cloudwatch, alarm: dict, now: float) -> tuple[list[float | None], list[float]]:
    """Per-period statistic values from GetMetricStatistics, one call per period of the evaluation range.

    One call per period keeps the buckets aligned to ours whatever the server's own bucketing does (moto starts
    its buckets at the first datapoint it finds).
    """
    values: list[float | None] = []
    starts: list[float] = []
    stat = alarm["Statistic"]
    for start, end in bucket_bounds(alarm, now):
        end = min(end, math.floor(now) + 1)
        resp = cloudwatch.get_metric_statistics(
            Namespace=alarm["Namespace"], MetricName=alarm["MetricName"],
            Dimensions=alarm.get("Dimensions") or [],
            StartTime=datetime.fromtimestamp(start, tz=UTC),
            EndTime=datetime.fromtimestamp(end, tz=UTC),
            Period=int(alarm["Period"]), Statistics=[stat])
        points = resp.get("Datapoints") or []
        if not points:
            values.append(None)
        elif len(points) == 1:
            values.append(float(points[0][stat]))
        else:  # a server that split the window: combine
            vs = [float(p[stat]) for p in points]
            values.append({"Maximum": max, "Minimum": min}.get(stat, math.fsum)(vs) if stat != "Average"
                          else math.fsum(float(p["Average"]) for p in points) / len(points))
        starts.append(start)
    return values, starts


def fetch_query_buckets(cloudwatch, alarm: dict, query: InsightsQuery,
                        now: float) -> tuple[list[float | None], list[float]]:
    """Per-period values of a Metrics Insights query: ListMetrics for the query's series, then each series' buckets
    (fetch_buckets), combined with the query's function."""
    series = []
    for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=query.namespace, MetricName=query.metric):
        series.extend(m for m in page.get("Metrics", []) if query.matches(m.get("Dimensions")))
    per_series = [fetch_buckets(cloudwatch, dict(alarm, Namespace=query.namespace, MetricName=query.metric,
                                                 Dimensions=m["Dimensions"]), now)[0] for m in series]
    starts = [b[0] for b in bucket_bounds(alarm, now)]
    return _combine(query, per_series, len(starts)), starts


def _iso_ms(dt: datetime) -> str:
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def _dims(dimensions: Iterable[dict]) -> list[dict[str, str]]:
    return [{"value": d["Value"], "name": d["Name"]} for d in dimensions or []]


def _trigger_query(q: dict) -> dict[str, Any]:
    out = {k: q[k] for k in ("Id", "Expression", "Label", "ReturnData", "Period") if q.get(k) is not None}
    stat = q.get("MetricStat")
    if stat:
        metric = stat.get("Metric", {})
        out["MetricStat"] = {k: v for k, v in {
            "Metric": {"Dimensions": _dims(metric.get("Dimensions")), "MetricName": metric.get("MetricName"),
                       "Namespace": metric.get("Namespace")},
            "Period": stat.get("Period"), "Stat": stat.get("Stat"), "Unit": stat.get("Unit")}.items()
            if v is not None}
    return out


def notification(alarm: dict, *, old_state: str, new_state: str, reason: str, when: datetime,
                 region: str) -> dict[str, Any]:
    """The JSON CloudWatch publishes to an alarm's SNS actions, from a DescribeAlarms-shaped `alarm`.

    The only builder of this message in localcloud: `evaluate_all(publish=True)` and the patched SetAlarmState
    (``moto_patches.patch_alarm_states``) both use it. Shape: AWS's documented alarm notification (the example in
    the CloudWatch User Guide and aws-lambda-go's ``CloudWatchAlarmSNSPayload``): timestamps
    ``yyyy-MM-ddTHH:mm:ss.SSS+0000``, ``Region`` as a display name, ``Trigger`` with the upper-cased statistic
    (``StatisticType`` Statistic / ExtendedStatistic) and lower-case dimension keys; metric-math alarms carry
    ``Trigger.Metrics`` instead of the single-metric fields.
    """
    account = alarm.get("AlarmArn", "arn:aws:cloudwatch:r:000000000000:alarm:x").split(":")[4]
    updated = alarm.get("AlarmConfigurationUpdatedTimestamp")
    if alarm.get("Metrics"):
        trigger: dict[str, Any] = {"Metrics": [_trigger_query(q) for q in alarm["Metrics"]]}
    else:
        extended = alarm.get("ExtendedStatistic")
        trigger = {
            "MetricName": alarm.get("MetricName"),
            "Namespace": alarm.get("Namespace"),
            "StatisticType": "ExtendedStatistic" if extended else "Statistic",
            **({"ExtendedStatistic": extended} if extended else {"Statistic": str(alarm.get("Statistic", "")).upper()}),
            "Unit": alarm.get("Unit"),
            "Dimensions": _dims(alarm.get("Dimensions")),
            "Period": alarm.get("Period"),
        }
    trigger.update({
        "EvaluationPeriods": alarm.get("EvaluationPeriods"),
        "DatapointsToAlarm": alarm.get("DatapointsToAlarm") or alarm.get("EvaluationPeriods"),
        "ComparisonOperator": alarm.get("ComparisonOperator"),
        **({"ThresholdMetricId": alarm["ThresholdMetricId"]} if alarm.get("ThresholdMetricId")
           else {"Threshold": alarm.get("Threshold")}),
        "TreatMissingData": alarm.get("TreatMissingData") or "missing",
        "EvaluateLowSampleCountPercentile": alarm.get("EvaluateLowSampleCountPercentile") or "",
    })
    return {
        "AlarmName": alarm["AlarmName"],
        "AlarmDescription": alarm.get("AlarmDescription"),
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": _iso_ms(updated) if isinstance(updated, datetime) else updated,
        "NewStateValue": new_state,
        "NewStateReason": reason,
        "StateChangeTime": _iso_ms(when),
        "Region": REGION_NAMES.get(region, region),
        "AlarmArn": alarm.get("AlarmArn"),
        "OldStateValue": old_state,
        "OKActions": alarm.get("OKActions", []),
        "AlarmActions": alarm.get("AlarmActions", []),
        "InsufficientDataActions": alarm.get("InsufficientDataActions", []),
        "Trigger": trigger,
    }


def subject(new_state: str, alarm_name: str, region: str) -> str:
    """The SNS Subject CloudWatch uses: ``ALARM: "name" in US East (N. Virginia)`` (at most 100 characters)."""
    return f'{new_state}: "{alarm_name}" in {REGION_NAMES.get(region, region)}'[:100]


def action_topics(alarm: dict, state: str) -> list[str]:
    """The SNS topics among the actions of `state` (AlarmActions / OKActions / InsufficientDataActions)."""
    key = {ALARM: "AlarmActions", OK: "OKActions", INSUFFICIENT: "InsufficientDataActions"}[state]
    return [a for a in alarm.get(key) or [] if a.startswith("arn:aws:sns:")]


def effective_state(alarm: dict) -> str:
    """The state AWS would report: moto's never-evaluated alarms are INSUFFICIENT_DATA, not OK."""
    if alarm.get("StateReason") == MOTO_INITIAL_REASON:
        return INSUFFICIENT
    return alarm.get("StateValue") or INSUFFICIENT


def evaluate_all(cloudwatch, sns, now: Any = None, *, publish: bool = True) -> list[AlarmTransition]:
    """Evaluate every metric alarm of the account; set and notify each state change. Returns the transitions.

    On a change: SetAlarmState (with a StateReasonData JSON) and, if ActionsEnabled, one SNS Publish per SNS topic
    in the AlarmActions / OKActions / InsufficientDataActions of the new state. An alarm still in moto's initial
    state whose evaluation is INSUFFICIENT_DATA is silently corrected (no transition: AWS starts it there).
    `publish=False` sets states without publishing (when another layer already forwards state changes to SNS).
    """
    now_s = time.time() if now is None else _epoch(now)
    when = datetime.fromtimestamp(now_s, tz=UTC)
    region = cloudwatch.meta.region_name
    alarms: list[dict] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        alarms.extend(page.get("MetricAlarms", []))
    transitions: list[AlarmTransition] = []
    for alarm in alarms:
        try:
            _check_supported(alarm)
        except UnsupportedQuery:
            raise
        except UnsupportedAlarm:
            continue
        query = insights_query(alarm)
        alarm = _flat(alarm)
        old = effective_state(alarm)
        if query is None:
            buckets, starts = fetch_buckets(cloudwatch, alarm, now_s)
        else:
            buckets, starts = fetch_query_buckets(cloudwatch, alarm, query, now_s)
        ev = evaluate_buckets(alarm, buckets, starts, old)
        reason_data = json.dumps({
            "version": "1.0", "queryDate": _iso_ms(when), "statistic": alarm["Statistic"],
            "period": int(alarm["Period"]), "threshold": float(alarm["Threshold"]),
            "recentDatapoints": [v for v in ev.buckets if v is not None][-int(alarm["EvaluationPeriods"]):],
            "evaluatedDatapoints": [{"timestamp": _iso_ms(datetime.fromtimestamp(s, tz=UTC)), "value": v}
                                    for s, v in ev.evaluated],
        })
        if ev.state == old:
            if alarm.get("StateValue") != old:  # moto's initial OK -> the INSUFFICIENT_DATA AWS would show
                cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=ev.state,
                                           StateReason=ev.reason[:1023], StateReasonData=reason_data)
            continue
        cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=ev.state,
                                   StateReason=ev.reason[:1023], StateReasonData=reason_data)
        msg = notification(alarm, old_state=old, new_state=ev.state, reason=ev.reason, when=when, region=region)
        notified: list[str] = []
        if publish and alarm.get("ActionsEnabled", True):
            for topic in action_topics(alarm, ev.state):
                sns.publish(TopicArn=topic, Subject=subject(ev.state, alarm["AlarmName"], region),
                            Message=json.dumps(msg))
                notified.append(topic)
        transitions.append(AlarmTransition(alarm_name=alarm["AlarmName"], old_state=old, new_state=ev.state,
                                           reason=ev.reason, timestamp=when, notified=notified, message=msg))
    return transitions
