"""Render the deployed CloudWatch dashboard offline: its own body, the local cloud's metric data and alarm states.

The body is read from the deployed stack (``GetDashboard`` of the ``DashboardName`` output), never from a copy, so
what is reviewed is what ``cdk deploy`` created. Each widget becomes one panel of a self-contained HTML page (inline
SVG, no scripts):

- ``metric`` widgets: every row of ``properties.metrics``, either a metric
  ``[namespace, name, dim1, value1, ..., {options}]`` (statistic ``options.stat`` or ``properties.stat``, default
  Average as in CloudWatch; period ``options.period`` or ``properties.period``, default 300 s) or a Metrics Insights
  query ``[{"expression": "SELECT ..."}]`` (``localcloud/metrics_insights.py``; one line per ``GROUP BY`` value).
  Periods are aligned to multiples of the period since the epoch, as CloudWatch aligns them.
- ``alarm`` widgets: each alarm's current state (``DescribeAlarms``).
- ``text`` widgets: their markdown, as text.
Any other widget type, row form or statistic raises :class:`UnsupportedWidget`, so a dashboard change that this
renderer cannot show fails the test that renders it instead of showing an empty panel.
The time range is the dashboard's ``start`` (an ISO-8601 duration such as ``-P7D``) up to ``now``.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from localcloud.metrics_insights import Query, Sample, Series, evaluate_query, moto_samples, parse

DEFAULT_PERIOD = 300  # seconds: CloudWatch's default for a graph widget
DEFAULT_RANGE = timedelta(hours=3)  # CloudWatch's default dashboard time range
STAT_FUNCTIONS = {"Maximum": "MAX", "Minimum": "MIN", "Sum": "SUM", "Average": "AVG", "SampleCount": "COUNT"}
STATE_COLOURS = {"OK": "#2ca02c", "ALARM": "#d62728", "INSUFFICIENT_DATA": "#7f7f7f"}
LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


class UnsupportedWidget(ValueError):
    """A widget, metric row or statistic this renderer does not show (the message names it)."""


@dataclass
class Line:
    """One plotted time series of a widget."""

    label: str
    source: str  # the metric (namespace/name/dimensions, statistic) or the query it came from
    axis: str  # "left" or "right"
    series: Series


@dataclass
class Panel:
    """One rendered widget."""

    kind: str  # metric | alarm | text
    title: str
    width: int
    lines: list[Line] = field(default_factory=list)
    alarms: list[tuple[str, str]] = field(default_factory=list)  # (alarm name, state)
    text: str = ""

    @property
    def has_data(self) -> bool:
        """A metric panel with at least one datapoint, an alarm panel with every alarm's state, any text panel."""
        if self.kind == "metric":
            return any(line.series.values for line in self.lines)
        if self.kind == "alarm":
            return bool(self.alarms)
        return True


def parse_duration(value: str) -> timedelta:
    """``-P7D``, ``-PT3H``, ``-PT15M``, ``-P1W`` (the relative ``start`` of a dashboard) as a positive timedelta."""
    match = re.fullmatch(r"-P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", value)
    if match is None or not any(match.groups()):
        raise UnsupportedWidget(f"dashboard start {value!r} is not a relative ISO-8601 duration like -P7D")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def _metric_line(row: list[Any], props: dict[str, Any], samples: list[Sample], start: datetime, end: datetime
                 ) -> Line:
    options = row[-1] if row and isinstance(row[-1], dict) else {}
    parts = row[:-1] if options else row
    if any(p == "..." or not isinstance(p, str) for p in parts) or len(parts) < 2 or len(parts) % 2:
        raise UnsupportedWidget(f"metric row {row!r}: expected [namespace, name, dim, value, ..., {{options}}]")
    namespace, name, *dims = parts
    dimensions = dict(zip(dims[::2], dims[1::2], strict=True))
    stat = options.get("stat") or props.get("stat") or "Average"
    if stat not in STAT_FUNCTIONS:
        raise UnsupportedWidget(f"statistic {stat!r} of {namespace}/{name} (supported: {', '.join(STAT_FUNCTIONS)})")
    period = int(options.get("period") or props.get("period") or DEFAULT_PERIOD)
    query = Query(STAT_FUNCTIONS[stat], name, namespace, tuple(dimensions),
                  tuple((k, "=", v) for k, v in dimensions.items()))
    found = evaluate_query(samples, query, start=start, end=end, period=period)
    series = found[0] if found else Series(name, (), ())
    source = f"{namespace} {name} {json.dumps(dimensions)} {stat} {period}s"
    return Line(options.get("label") or name, source, options.get("yAxis", "left"), series)


def _query_lines(item: dict[str, Any], props: dict[str, Any], samples: list[Sample], start: datetime,
                 end: datetime) -> list[Line]:
    expression = item["expression"]
    if not expression.lstrip().upper().startswith("SELECT"):
        raise UnsupportedWidget(f"metric math expression {expression!r}: only Metrics Insights queries are rendered")
    parse(expression)  # refuse unsupported forms before reading any data
    period = int(item.get("period") or props.get("period") or DEFAULT_PERIOD)
    found = evaluate_query(samples, parse(expression), start=start, end=end, period=period)
    return [Line(s.label, expression, item.get("yAxis", "left"), s) for s in found]


def panels(body: dict[str, Any], *, samples: list[Sample], alarm_states: dict[str, tuple[str, str]],
           now: datetime) -> list[Panel]:
    """The dashboard's widgets with their data.

    Args:
        body: the dashboard body (``json.loads`` of GetDashboard's ``DashboardBody``).
        samples: every stored datapoint (``metrics_insights.moto_samples``).
        alarm_states: alarm ARN -> (alarm name, state).
        now: the end of the time range.
    """
    start = now - (parse_duration(body["start"]) if "start" in body else DEFAULT_RANGE)
    end = now + timedelta(seconds=1)
    out = []
    for widget in body.get("widgets", []):
        kind, props = widget.get("type"), widget.get("properties", {})
        panel = Panel(kind=str(kind), title=props.get("title", ""), width=int(widget.get("width", 6)))
        if kind == "metric":
            for row in props.get("metrics", []):
                if len(row) == 1 and isinstance(row[0], dict) and "expression" in row[0]:
                    panel.lines.extend(_query_lines(row[0], props, samples, start, end))
                else:
                    panel.lines.append(_metric_line(row, props, samples, start, end))
        elif kind == "alarm":
            for arn in props.get("alarms", []):
                if arn not in alarm_states:
                    raise UnsupportedWidget(f"alarm widget {panel.title!r} names {arn}, which is not deployed")
                panel.alarms.append(alarm_states[arn])
        elif kind == "text":
            panel.text = props.get("markdown", "")
        else:
            raise UnsupportedWidget(f"widget type {kind!r} ({panel.title!r}) is not rendered")
        out.append(panel)
    return out


def _svg(panel: Panel, width: int = 560, height: int = 180) -> str:
    points = [(t, v) for line in panel.lines for t, v in zip(line.series.timestamps, line.series.values, strict=True)]
    if not points:
        return f'<svg width="{width}" height="40"><text x="8" y="24" fill="#a00">no data</text></svg>'
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    lo = min(0.0, min(v for _, v in points))
    hi = max(v for _, v in points)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    pad = 30

    def xy(t: datetime, v: float) -> tuple[float, float]:
        return (pad + (t.timestamp() - t0) / span_t * (width - 2 * pad),
                height - pad - (v - lo) / span_v * (height - 2 * pad))

    parts = [f'<svg width="{width}" height="{height}" role="img">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>',
             f'<text x="2" y="{pad}" font-size="10">{hi:g}</text>',
             f'<text x="2" y="{height - pad}" font-size="10">{lo:g}</text>']
    for i, line in enumerate(panel.lines):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        coords = [xy(t, v) for t, v in zip(line.series.timestamps, line.series.values, strict=True)]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in coords)
    parts.append("</svg>")
    return "".join(parts)


def to_html(name: str, panel_list: list[Panel], now: datetime) -> str:
    """One self-contained page: the panels in the dashboard's order, at their widths (24-unit grid)."""
    cards = []
    for panel in panel_list:
        if panel.kind == "metric":
            legend = "".join(
                f'<li><span style="color:{LINE_COLOURS[i % len(LINE_COLOURS)]}">&#9632;</span> '
                f"{html.escape(line.label)} ({line.axis}): {len(line.series.values)} datapoint(s)"
                + (f", last {line.series.values[-1]:g}" if line.series.values else ", <b>no data</b>")
                + f'<br><small>{html.escape(line.source)}</small></li>'
                for i, line in enumerate(panel.lines)
            )
            content = _svg(panel) + f"<ul>{legend}</ul>"
        elif panel.kind == "alarm":
            content = "<table>" + "".join(
                f'<tr><td>{html.escape(name)}</td><td '
                f'style="color:{STATE_COLOURS.get(state, "#000")}">{state}</td></tr>'
                for name, state in panel.alarms
            ) + "</table>"
        else:
            content = f"<pre>{html.escape(panel.text)}</pre>"
        cards.append(f'<section style="flex:0 0 calc({panel.width / 24 * 100:.2f}% - 12px)">'
                     f"<h3>{html.escape(panel.title)}</h3>{content}</section>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Dashboard {html.escape(name)}</title><style>"
        "body{font-family:sans-serif;margin:16px}main{display:flex;flex-wrap:wrap;gap:12px}"
        "section{border:1px solid #ccc;border-radius:4px;padding:8px;box-sizing:border-box;overflow:auto}"
        "h3{font-size:14px;margin:0 0 6px}ul{font-size:12px;padding-left:16px}td{padding:2px 8px;font-size:12px}"
        "</style></head><body>"
        f"<h1>CloudWatch dashboard {html.escape(name)}</h1>"
        "<p>Rendered offline from the deployed dashboard body and the local cloud's metric data, "
        f"{now:%Y-%m-%d %H:%M:%S} UTC.</p><main>{''.join(cards)}</main></body></html>"
    )


def render(cloud: Any, out: Path, *, dashboard_name: str | None = None, now: datetime | None = None) -> list[Panel]:
    """Render the deployed dashboard of ``cloud`` (a started LocalCloud) to ``out`` (HTML) and return its panels."""
    name = dashboard_name or cloud.outputs["DashboardName"]
    body = json.loads(cloud.cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
    states = {}
    for page in cloud.cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            states[alarm["AlarmArn"]] = (alarm["AlarmName"], alarm["StateValue"])
    now = now or cloud.clock.datetime()  # the local cloud's simulated time (localcloud/clock.py)
    result = panels(body, samples=moto_samples(cloud.account, cloud.region), alarm_states=states, now=now)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_html(name, result, now), encoding="utf-8")
    return result
