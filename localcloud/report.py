"""Self-contained HTML report of one pipeline run: inline CSS and hand-written SVG, no external references.

`write_report(path, metrics=..., statistics=..., cleaned_sample=..., alarms=..., job=...)` renders:
run summary (job, rows in/out/rejected, key rates, quality gate), missing values before/after per column (bar
chart), the dataset config's rules (metrics.json ``rules``: violations, share, verdict, examples), distributions
of the numeric columns (histograms from the cleaned data), group statistics (table and bar
chart), alarm states, and a drift section only when `drift` is given: per column PSI, distance and level, and the
baseline vs batch shares per bin (``quality/drift.json`` ``bins``/``baseline``/``batch``) as grouped bars.

`metrics` is the job's ``quality/metrics.json`` (design.md contract 3; per-column counts under ``columns``,
``numeric`` summaries, ``quality_gate``, as written by ``processing/pipeline.py``). Every key is optional here:
anything absent shows as "n/a", so the report also renders for a failed job with no metrics at all.
The page opens offline: no scripts, fonts, images or links to other documents; any URL-looking text from the
inputs is escaped (``://`` written as ``&#58;//``) so the file holds no literal web address.
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NA = "n/a"
BLUE, ORANGE, GREEN, RED, GREY = "#3b6ea8", "#e08a2c", "#2e8b57", "#c0392b", "#8a8f98"
STATE_COLOURS = {"OK": GREEN, "ALARM": RED, "INSUFFICIENT_DATA": GREY}
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px} h2{font-size:1.2em;margin:28px 0 10px;border-bottom:1px solid #dde1e7;
padding-bottom:4px} .sub{color:#5b6270;margin:0 0 16px}
section{background:#fff;border:1px solid #e3e6eb;border-radius:8px;padding:8px 18px 18px;margin-bottom:18px}
table{border-collapse:collapse;font-size:.9em;margin:6px 0} th,td{padding:4px 10px;border-bottom:1px solid #eceef2;
text-align:left;vertical-align:top} th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px} .card{border:1px solid #e3e6eb;border-radius:6px;padding:8px 12px;
min-width:120px;background:#fbfcfd} .card b{display:block;font-size:1.3em} .card span{color:#5b6270;font-size:.8em}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;color:#fff;font-size:.8em;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:14px} .grid figure{margin:0} figcaption{font-size:.85em;color:#3d4452}
svg text{font-family:inherit} .muted{color:#8a8f98}
.reason{font-size:.8em;color:#5b6270;max-width:520px;display:inline-block;min-width:240px}
td code{word-break:break-all;display:inline-block;min-width:200px} section{overflow-x:auto}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def _esc(value: Any) -> str:
    """HTML-escape; also break '://' so no literal web address ends up in the file."""
    return html.escape("" if value is None else str(value)).replace("://", "&#58;//")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool):
        return NA if value is None else str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if math.isnan(f) or math.isinf(f):
        return NA
    if f == int(f) and abs(f) < 1e15:
        return f"{int(f):,}"
    if abs(f) >= 1000:
        return f"{f:,.0f}"
    if abs(f) >= 1:
        return f"{f:,.2f}".rstrip("0").rstrip(".")
    return f"{f:.{digits}g}"


def _pct(value: Any) -> str:
    try:
        return f"{float(value) * 100:.2f}%"
    except (TypeError, ValueError):
        return NA


def _get(d: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return default
        d = d[key]
    return d


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def hbar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]], *,
               width: int = 640, value_fmt=_num) -> str:
    """Horizontal grouped bar chart as inline SVG; one row per label, one bar per series."""
    if not labels:
        return '<p class="muted">No data.</p>'
    label_w = min(220, 12 + 7 * max(len(str(lbl)) for lbl in labels))
    bar_h, gap = 14, 10
    row_h = bar_h * len(series) + gap
    top = 8
    height = top + row_h * len(labels) + 22
    plot_w = width - label_w - 70
    vmax = _nice_max(max([float(v) for _, vals, _ in series for v in vals if v is not None] or [0]))
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for t in range(5):  # gridlines + axis labels
        x = label_w + plot_w * t / 4
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - 20}" stroke="#e6e8ec"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="middle" fill="#5b6270">'
                   f'{_esc(value_fmt(vmax * t / 4))}</text>')
    for i, label in enumerate(labels):
        y0 = top + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y0 + row_h / 2 + 2:.1f}" font-size="11" text-anchor="end">'
                   f'{_esc(label)}</text>')
        for j, (name, vals, colour) in enumerate(series):
            v = vals[i]
            y = y0 + j * bar_h
            if v is None:
                out.append(f'<text x="{label_w + 4}" y="{y + bar_h - 3}" font-size="10" fill="#8a8f98">n/a</text>')
                continue
            w = plot_w * float(v) / vmax
            out.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar_h - 2}" '
                       f'fill="{colour}"><title>{_esc(label)} - {_esc(name)}: {_esc(value_fmt(v))}</title></rect>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 4}" font-size="10">'
                       f'{_esc(value_fmt(v))}</text>')
    out.append("</svg>")
    legend = "".join(f'<span style="background:{c}"></span>{_esc(n)}' for n, _, c in series)
    return "".join(out) + (f'<div class="legend">{legend}</div>' if len(series) > 1 else "")


def histogram_svg(values: np.ndarray, *, bins: int = 20, width: int = 330, height: int = 170,
                  colour: str = BLUE) -> str:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return '<p class="muted">No values.</p>'
    counts, edges = np.histogram(values, bins=bins)
    left, bottom, top = 40, 30, 8
    pw, ph = width - left - 8, height - bottom - top
    cmax = _nice_max(float(counts.max()))
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for t in range(3):
        y = top + ph - ph * t / 2
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" stroke="#e6e8ec"/>')
        out.append(f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="9" text-anchor="end" fill="#5b6270">'
                   f'{_esc(_num(cmax * t / 2))}</text>')
    bw = pw / len(counts)
    for i, c in enumerate(counts):
        h = ph * c / cmax
        out.append(f'<rect x="{left + i * bw + 0.5:.1f}" y="{top + ph - h:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                   f'height="{h:.1f}" fill="{colour}"><title>[{_esc(_num(edges[i]))}, {_esc(_num(edges[i + 1]))})'
                   f': {int(c)}</title></rect>')
    for x, v in ((left, edges[0]), (left + pw / 2, (edges[0] + edges[-1]) / 2), (left + pw, edges[-1])):
        out.append(f'<text x="{x:.1f}" y="{height - 14}" font-size="9" text-anchor="middle" fill="#5b6270">'
                   f'{_esc(_num(v, 3))}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>"
                        for c, n in zip(row, numeric, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _statistics_frames(statistics: Any) -> dict[str, pd.DataFrame]:
    if statistics is None:
        return {}
    if isinstance(statistics, pd.DataFrame):
        return {"group statistics": statistics}
    if isinstance(statistics, Mapping):
        if "rows" in statistics and isinstance(statistics["rows"], list):  # statistics/<name>.json
            return {str(statistics.get("name", "group statistics")): pd.DataFrame(statistics["rows"])}
        return {str(k): v if isinstance(v, pd.DataFrame) else _statistics_frames(v).get(
            "group statistics", pd.DataFrame(v.get("rows", []) if isinstance(v, Mapping) else v))
            for k, v in statistics.items()}
    return {"group statistics": pd.DataFrame(list(statistics))}


# ---------------------------------------------------------------------------------------------------- sections
def _summary_section(metrics: Mapping, job: Mapping, gate_doc: Mapping | None = None) -> str:
    s = _get(metrics, "summary", default={}) or {}
    name = job.get("ProcessingJobName") or job.get("name") or NA
    status = job.get("ProcessingJobStatus") or job.get("status") or NA
    colour = {"Completed": GREEN, "Failed": RED, "Stopped": ORANGE}.get(str(status), GREY)
    cards = [
        ("rows in", _num(s.get("rows_in"))), ("rows out", _num(s.get("rows_out"))),
        ("rows rejected", _num(s.get("rows_rejected"))), ("rejected rate", _pct(s.get("rejected_rate"))),
        ("missing before", _num(s.get("missing_values_before"))),
        ("missing after", _num(s.get("missing_values_after"))),
        ("missing rate after", _pct(s.get("missing_rate_after"))), ("duplicate rate", _pct(s.get("duplicate_rate"))),
        ("malformed JSON rate", _pct(s.get("malformed_json_rate"))), ("invalid values", _num(s.get("invalid_values"))),
        ("processing seconds", _num(s.get("processing_seconds"))),
    ]
    card_html = "".join(f'<div class="card"><b>{v}</b><span>{_esc(k)}</span></div>' for k, v in cards)
    details = [
        ("Job", f"<code>{_esc(name)}</code>"),
        ("Status", f'<span class="badge" style="background:{colour}">{_esc(status)}</span>'),
        ("Dataset", _esc(metrics.get("dataset") or job.get("dataset") or NA)),
        ("Source", _esc(job.get("source") or _get(job, "Environment", "SOURCE_URI") or NA)),
        ("Finished", _esc(metrics.get("timestamp") or job.get("ended") or NA)),
        ("Code version", _esc(metrics.get("code_version") or _get(job, "Environment", "CODE_VERSION") or NA)),
    ]
    reason = job.get("FailureReason") or job.get("failure_reason")
    if reason:
        details.append(("Failure reason", f'<span class="reason">{_esc(reason)}</span>'))
    gate = _get(metrics, "quality_gate")
    gate_html = ""
    if isinstance(gate, Mapping):
        passed = gate.get("passed")
        rows = [(_esc(k), _num(c.get("value")), _num(c.get("threshold")),
                 (f'<span class="badge" style="background:{GREEN if c.get("passed") else RED}">'
                  f'{"pass" if c.get("passed") else "fail"}</span>')) for k, c in (gate.get("checks") or {}).items()]
        verdict = "passed" if passed else "failed" if passed is False else NA
        gate_html = (f"<h3>Threshold checks (metrics.json): {verdict}</h3>"
                     + _table(["check", "value", "threshold", ""], rows, [False, True, True, False]))
    return ("<section><h2>Run summary</h2>" + _table(["", ""], details) + f'<div class="cards">{card_html}</div>'
            + _gate_html(gate_doc) + gate_html + "</section>")


def _missing_section(metrics: Mapping) -> str:
    cols = _get(metrics, "columns", default={}) or {}
    if not isinstance(cols, Mapping) or not cols:
        return '<section><h2>Missing values per column</h2><p class="muted">n/a: no per-column metrics.</p></section>'
    labels = list(cols)
    before = [_get(cols, c, "missing_before") for c in labels]
    after = [_get(cols, c, "missing_after") for c in labels]
    invalid = [_get(cols, c, "invalid") for c in labels]
    chart = hbar_chart(labels, [("before cleaning", before, ORANGE), ("after cleaning", after, BLUE)])
    rows = [(_esc(c), _esc(_get(cols, c, "type") or NA), _num(b), _num(a), _num(i))
            for c, b, a, i in zip(labels, before, after, invalid, strict=True)]
    return ("<section><h2>Missing values per column (before / after cleaning)</h2>" + chart
            + _table(["column", "type", "missing before", "missing after", "invalid"], rows,
                     [False, False, True, True, True]) + "</section>")


def _distribution_section(cleaned: pd.DataFrame | None, metrics: Mapping, max_columns: int = 9) -> str:
    head = "<section><h2>Distributions of numeric columns (cleaned data)</h2>"
    if cleaned is None or not isinstance(cleaned, pd.DataFrame) or cleaned.empty:
        numeric = _get(metrics, "numeric", default={}) or {}
        if not numeric:
            return head + '<p class="muted">n/a: no cleaned data.</p></section>'
        rows = [(_esc(c), _num(v.get("count")), _num(v.get("min")), _num(v.get("mean")), _num(v.get("max")))
                for c, v in numeric.items()]
        return (head + '<p class="muted">No cleaned sample given; summaries from metrics.json.</p>'
                + _table(["column", "count", "min", "mean", "max"], rows, [False, True, True, True, True])
                + "</section>")
    figs = []
    cols = [c for c in cleaned.columns if pd.api.types.is_numeric_dtype(cleaned[c])
            and not pd.api.types.is_bool_dtype(cleaned[c]) and str(c).lower() not in ("id", "_source_row")]
    for c in cols[:max_columns]:
        vals = pd.to_numeric(cleaned[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        finite = vals[np.isfinite(vals)]
        stats = (f"n={finite.size:,}, mean={_num(finite.mean()) if finite.size else NA}, "
                 f"min={_num(finite.min()) if finite.size else NA}, max={_num(finite.max()) if finite.size else NA}")
        figs.append(f"<figure>{histogram_svg(vals)}<figcaption><b>{_esc(c)}</b> {_esc(stats)}</figcaption></figure>")
    if not figs:
        return head + '<p class="muted">n/a: no numeric columns.</p></section>'
    note = f'<p class="muted">{len(cleaned):,} cleaned rows.</p>'
    return head + note + f'<div class="grid">{"".join(figs)}</div></section>'


def _sampling_note(metrics: Mapping) -> str:
    """Says when the order statistics came from a sample (streaming above its row budget), with the bound."""
    sampling = _get(metrics, "statistics_sampling", default=None)
    if not isinstance(sampling, Mapping):
        return ""
    error = sampling.get("rank_error")
    bound = f"±{error * 100:.2f}% of the rows" if isinstance(error, (int, float)) else NA
    return (f'<p class="muted">Medians and drift from a uniform sample of {_num(sampling.get("sample_rows"))} of '
            f'{_num(sampling.get("rows"))} rows: rank error within {_esc(bound)} with probability 1 - '
            f'{_esc(sampling.get("delta"))} (per group: metrics.json statistics_sampling). Counts, sums, minimums, '
            'maximums, means and standard deviations cover every row.</p>')


def _group_section(statistics: Any, metrics: Mapping | None = None) -> str:
    frames = _statistics_frames(statistics)
    if not frames or all(f.empty for f in frames.values()):
        return '<section><h2>Group statistics</h2><p class="muted">n/a: no group statistics.</p></section>'
    parts = ["<section><h2>Group statistics</h2>", _sampling_note(metrics or {})]
    for name, frame in frames.items():
        if frame.empty:
            continue
        numeric_cols = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        key_cols = [c for c in frame.columns if c not in numeric_cols] or [frame.columns[0]]
        labels = [" / ".join(NA if pd.isna(v) else str(v) for v in row) for row in frame[key_cols].itertuples(
            index=False)]
        rows = [[_esc(NA if pd.isna(v) else v) if c in key_cols else _num(None if pd.isna(v) else v)
                 for c, v in zip(frame.columns, row, strict=True)] for row in frame.itertuples(index=False)]
        parts.append(f"<h3>{_esc(name)}</h3>")
        parts.append(_table(list(map(str, frame.columns)), rows, [c not in key_cols for c in frame.columns]))
        charts = []
        for col in [c for c in numeric_cols if c.endswith("_mean")][:2] or numeric_cols[:1]:
            vals = [None if pd.isna(v) else float(v) for v in frame[col]]
            charts.append(f"<figure>{hbar_chart(labels, [(col, vals, BLUE)], width=520)}"
                          f"<figcaption>{_esc(col)} by {_esc(', '.join(map(str, key_cols)))}</figcaption></figure>")
        if "rows" in frame.columns and "rows" not in numeric_cols[:1]:
            vals = [None if pd.isna(v) else float(v) for v in frame["rows"]]
            charts.append(f"<figure>{hbar_chart(labels, [('rows', vals, GREEN)], width=420)}"
                          f"<figcaption>rows per group</figcaption></figure>")
        parts.append(f'<div class="grid">{"".join(charts)}</div>')
    parts.append("</section>")
    return "".join(parts)


def _extras_section(metrics: Mapping) -> str:
    """Rejected rows by reason and the label counts of binned derived features, when metrics.json has them."""
    parts = []
    reasons = _get(metrics, "rows", "rejected_by_reason", default={}) or {}
    if isinstance(reasons, Mapping) and reasons:
        rows = [(_esc(k), _num(v)) for k, v in sorted(reasons.items(), key=lambda kv: -float(kv[1] or 0))]
        parts.append("<h3>Rejected rows by reason</h3>" + _table(["reason", "rows"], rows, [False, True]))
    derived = _get(metrics, "derived", default={}) or {}
    charts = []
    for name, d in derived.items() if isinstance(derived, Mapping) else []:
        counts = d.get("counts") if isinstance(d, Mapping) else None
        if isinstance(counts, Mapping) and counts:
            labels = list(counts)
            charts.append(f"<figure>{hbar_chart(labels, [(name, [counts[k] for k in labels], BLUE)], width=420)}"
                          f"<figcaption><b>{_esc(name)}</b> (bins of {_esc(d.get('source'))}; missing "
                          f"{_num(d.get('missing'))})</figcaption></figure>")
    if charts:
        parts.append(f'<h3>Binned features</h3><div class="grid">{"".join(charts)}</div>')
    if not parts:
        return ""
    return "<section><h2>Rejected rows and derived features</h2>" + "".join(parts) + "</section>"


def _rules_section(metrics: Mapping) -> str:
    """The dataset config's rules (metrics.json ``rules``): type, action, violations, share, limit, verdict and a
    few offending values."""
    rules = _get(metrics, "rules", default={}) or {}
    if not isinstance(rules, Mapping) or not rules:
        return ""
    rows = []
    for name, r in rules.items():
        if not isinstance(r, Mapping):
            continue
        passed = r.get("passed")
        colour = GREEN if passed else (RED if r.get("action") == "fail" else ORANGE)
        verdict = "held" if passed else ("rows rejected" if r.get("action") == "reject" else "broken")
        limit = next((f"{k} {_num(r[k])}" for k in ("max_share", "min_share", "max_age_hours", "min", "max")
                      if r.get(k) is not None), NA)
        measured = r.get("measured", r.get("share"))
        examples = ", ".join(str(e) for e in (r.get("examples") or []))
        rows.append((f"<b>{_esc(name)}</b>" + (" &#128276;" if r.get("alarm") else ""), _esc(r.get("type")),
                     _esc(r.get("action")), _esc(", ".join(r.get("columns") or [])), _num(r.get("violations")),
                     _num(measured), _esc(limit),
                     f'<span class="badge" style="background:{colour}">{_esc(verdict)}</span>',
                     f'<span class="reason">{_esc(examples)}</span>'))
    counts = _get(metrics, "summary", default={}) or {}
    note = (f'<p class="sub">{_num(counts.get("rules_failed"))} fail rule(s) broken, '
            f'{_num(counts.get("rules_warned"))} warn rule(s) broken, {_num(counts.get("rows_rejected_by_rules"))} '
            "row(s) rejected by rules (&#128276; = alarmed: RuleViolations metric)</p>")
    return ("<section><h2>Rules</h2>" + note
            + _table(["rule", "type", "action", "columns", "violations", "measured", "limit", "result", "examples"],
                     rows, [False, False, False, False, True, True, False, False, False]) + "</section>")


def _alarm_section(alarms: Sequence[Mapping]) -> str:
    if not alarms:
        return '<section><h2>Alarm states</h2><p class="muted">n/a: no alarms.</p></section>'
    ops = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": "&ge;", "LessThanThreshold": "<",
           "LessThanOrEqualToThreshold": "&le;"}
    rows = []
    for a in sorted(alarms, key=lambda a: (a.get("StateValue") != "ALARM", str(a.get("AlarmName")))):
        state = a.get("StateValue") or NA
        dims = ", ".join(f"{d.get('Name')}={d.get('Value')}" for d in a.get("Dimensions") or [])
        query = next((q.get("Expression") for q in a.get("Metrics") or [] if q.get("Expression")), None)
        cond = (f"<code>{_esc(query)}</code> " if query and not a.get("MetricName") else
                f"{_esc(a.get('Statistic') or '')}({_esc(a.get('MetricName') or NA)}) ")
        cond = (f"{cond}"
                f"{ops.get(a.get('ComparisonOperator'), _esc(a.get('ComparisonOperator') or ''))} "
                f"{_num(a.get('Threshold'))}")
        rows.append((f"<code>{_esc(a.get('AlarmName'))}</code>",
                     f'<span class="badge" style="background:{STATE_COLOURS.get(state, GREY)}">{_esc(state)}</span>',
                     cond, _esc(dims), f'<span class="reason">{_esc(a.get("StateReason") or "")}</span>'))
    counts = {s: sum(1 for a in alarms if a.get("StateValue") == s) for s in STATE_COLOURS}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return (f"<section><h2>Alarm states</h2><p>{_esc(summary)}</p>"
            + _table(["alarm", "state", "condition", "dimensions", "reason"], rows) + "</section>")


def _drift_section(drift: Mapping | None) -> str:
    """Rendered only when `drift` is given: quality/drift.json (design.md contract 4) or any flat mapping."""
    if drift is None:
        return ""
    head = "<section><h2>Drift against the dataset baseline</h2>"
    if not drift:
        return head + '<p class="muted">n/a: no drift results.</p></section>'
    if "status" not in drift:  # a plain measure -> value mapping
        rows = [(_esc(k), _num(v) if isinstance(v, (int, float)) else _esc(v)) for k, v in drift.items()]
        return head + _table(["measure", "value"], rows, [False, True]) + "</section>"
    status = str(drift.get("status"))
    parts = [head, f"<p>Status: <b>{_esc(status)}</b>"]
    if drift.get("reason"):
        parts.append(f' &middot; <span class="reason">{_esc(drift["reason"])}</span>')
    parts.append("</p>")
    parts.append(_table(["max PSI", "drifted columns", "warned columns"], [(
        _num(drift.get("max_psi")), _esc(", ".join(drift.get("drifted_columns") or []) or "none"),
        _esc(", ".join(drift.get("warned_columns") or []) or "none"))], [True, False, False]))
    cols = drift.get("columns") or {}
    if isinstance(cols, Mapping) and cols:
        colour = {"alarm": RED, "warn": ORANGE, "ok": GREEN}
        rows = []
        for name, c in cols.items():
            level = str(c.get("level", NA))
            rows.append((_esc(name), _esc(c.get("kind", NA)), _num(c.get("psi")), _num(_distance(c)[1]),
                         _esc(_distance(c)[0]),
                         f'<span class="badge" style="background:{colour.get(level, GREY)}">{_esc(level)}</span>',
                         f'<span class="reason">{_esc(_column_note(c))}</span>'))
        parts.append(_table(["column", "kind", "PSI", "distance", "distance measure", "level", "note"], rows,
                            [False, False, True, True, False, False, False]))
        psis = [(n, c.get("psi")) for n, c in cols.items() if c.get("psi") is not None]
        if psis:
            parts.append(hbar_chart([n for n, _ in psis], [("PSI", [float(v) for _, v in psis], BLUE)], width=560))
        figures = [_drift_distribution(name, c, colour) for name, c in cols.items()]
        figures = [f for f in figures if f]
        if figures:
            parts.append("<h3>Baseline vs batch, per column</h3><p class=\"sub\">Share of rows per bin; the bins are "
                         "the baseline's deciles (numeric), its categories plus <code>__other__</code> (categorical), "
                         "present/absent (JSON fields), each with <code>__missing__</code>.</p>")
            parts.append('<div class="grid">' + "".join(figures) + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _distance(c: Mapping) -> tuple[str, Any]:
    """(measure name, value) of a drift.json column: normalised Wasserstein (numeric) or Jensen-Shannon."""
    for key in ("wasserstein_normalised", "jensen_shannon", "distance"):
        if c.get(key) is not None:
            return key.replace("_", " "), c.get(key)
    return "", None


def _column_note(c: Mapping) -> str:
    notes = []
    if c.get("reason"):
        notes.append(str(c["reason"]))
    if c.get("baseline_mean") is not None and c.get("batch_mean") is not None:
        notes.append(f"mean {_num(c['baseline_mean'], 1)} -> {_num(c['batch_mean'], 1)}")
    if c.get("vanished_categories"):
        notes.append("vanished: " + ", ".join(map(str, c["vanished_categories"])))
    if c.get("new_categories"):
        notes.append("new: " + ", ".join(map(str, c["new_categories"])))
    return "; ".join(notes)


def _drift_distribution(name: str, c: Mapping, colour: Mapping[str, str]) -> str:
    """One figure: baseline and batch shares per bin (grouped bars), captioned with PSI and level."""
    bins, base, batch = c.get("bins"), c.get("baseline"), c.get("batch")
    if not (isinstance(bins, Sequence) and isinstance(base, Sequence) and isinstance(batch, Sequence)):
        return ""
    if not bins or not len(bins) == len(base) == len(batch):
        return ""
    level = str(c.get("level", NA))
    chart = hbar_chart([str(b) for b in bins], [("baseline", [_share(v) for v in base], GREY),
                                                ("batch", [_share(v) for v in batch], ORANGE)],
                       width=520, value_fmt=_pct)
    caption = (f"<b>{_esc(name)}</b> &middot; PSI {_num(c.get('psi'))} &middot; "
               f'<span class="badge" style="background:{colour.get(level, GREY)}">{_esc(level)}</span>')
    return f"<figure>{chart}<figcaption>{caption}</figcaption></figure>"


def _share(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _gate_html(gate: Mapping | None) -> str:
    if not gate:
        return ""
    status = str(gate.get("status", NA))
    colour = {"passed": GREEN, "warned": ORANGE, "failed": RED}.get(status, GREY)
    html_ = f'<h3>Quality gate (gate.json): <span class="badge" style="background:{colour}">{_esc(status)}</span></h3>'
    violations = gate.get("violations") or []
    if violations:
        rows = [(_esc(v.get("rule")), _num(v.get("measured")), _num(v.get("threshold"))) for v in violations
                if isinstance(v, Mapping)]
        html_ += _table(["rule", "measured", "threshold"], rows, [False, True, True])
    return html_


def render_report(*, metrics: Mapping | None, statistics: Any, cleaned_sample: pd.DataFrame | None,
                  alarms: Sequence[Mapping] | None, job: Mapping | None, drift: Mapping | None = None,
                  gate: Mapping | None = None) -> str:
    metrics = metrics or {}
    job = job or {}
    name = job.get("ProcessingJobName") or job.get("name") or "run"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "".join([
        _summary_section(metrics, job, gate), _missing_section(metrics),
        _distribution_section(cleaned_sample, metrics), _rules_section(metrics), _extras_section(metrics),
        _group_section(statistics, metrics),
        _alarm_section(list(alarms or [])), _drift_section(drift),
    ])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Data quality report - '
            f'{_esc(name)}</title><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}</style></head><body><main><h1>Data quality report</h1>"
            f'<p class="sub">Job <code>{_esc(name)}</code> &middot; generated {generated}</p>{body}'
            "</main></body></html>\n")


def write_report(path: str | Path, *, metrics: Mapping | None, statistics: Any,
                 cleaned_sample: pd.DataFrame | None, alarms: Sequence[Mapping] | None, job: Mapping | None,
                 drift: Mapping | None = None, gate: Mapping | None = None) -> Path:
    """Write the HTML report to `path` (parents created) and return the path.

    statistics: group statistics as a DataFrame, a list of row dicts, a ``statistics/<name>.json`` document
    ({"name", "rows"}) or a mapping name -> any of those. alarms: DescribeAlarms ``MetricAlarms`` entries.
    job: DescribeProcessingJob-like (ProcessingJobName, ProcessingJobStatus, FailureReason, Environment) or
    {name, status, failure_reason}. drift: optional ``quality/drift.json``; its section is rendered only when
    given. gate: optional ``quality/gate.json`` (status and violations, shown in the run summary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(metrics=metrics, statistics=statistics, cleaned_sample=cleaned_sample,
                                  alarms=alarms, job=job, drift=drift, gate=gate), encoding="utf-8")
    return path
