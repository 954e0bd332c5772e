"""HTML report: self-contained (no external references), every section present, robust to missing keys."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

from localcloud.report import write_report

METRICS = {
    "summary": {"rows_in": 1000, "rows_out": 990, "rows_rejected": 10, "missing_values_before": 120,
                "missing_values_after": 3, "missing_rate_after": 0.0005, "rejected_rate": 0.01,
                "duplicate_rows_exact": 2, "duplicate_rows_key": 5, "duplicate_rate": 0.005, "malformed_json": 7,
                "malformed_json_rate": 0.007, "invalid_values": 1, "processing_seconds": 0.42},
    "dataset": "default",
    "timestamp": "2026-11-25T22:00:00+00:00",
    "columns": {"age": {"type": "float", "missing_before": 50, "missing_after": 0, "invalid": 1},
                "salary": {"type": "float", "missing_before": 60, "missing_after": 0, "invalid": 0},
                "department": {"type": "string", "missing_before": 10, "missing_after": 3, "invalid": 0}},
    "rows": {"in": 1000, "out": 990, "rejected": 10, "rejected_by_reason": {"missing_id": 8, "parse_error": 2}},
    "derived": {"age_group": {"kind": "bins", "source": "age", "missing": 0, "counts": {"Young": 10, "Senior": 5}}},
    "quality_gate": {"passed": False, "checks": {"max_rejected_rate": {"threshold": 0.005, "value": 0.01,
                                                                       "passed": False}}},
}
STATS = [{"department": "Engineering", "rows": 400, "salary_mean": 80000.5, "age_mean": 40.1},
         {"department": "Sales", "rows": 300, "salary_mean": 60000.0, "age_mean": 35.2},
         {"department": None, "rows": 5, "salary_mean": None, "age_mean": 30.0}]
ALARMS = [
    {"AlarmName": "dq-default-RejectedRate", "StateValue": "ALARM", "MetricName": "RejectedRate",
     "Statistic": "Maximum", "ComparisonOperator": "GreaterThanThreshold", "Threshold": 0.005,
     "Dimensions": [{"Name": "Dataset", "Value": "default"}],
     "StateReason": "Threshold Crossed: see https://example.com/<script>"},
    {"AlarmName": "dq-default-JobFailed", "StateValue": "OK", "MetricName": "JobFailed", "Statistic": "Maximum",
     "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1.0},
]
JOB = {"ProcessingJobName": "dq-default-0123456789abcdef", "ProcessingJobStatus": "Completed",
       "Environment": {"SOURCE_URI": "s3://bucket/input/default/data.csv"}}


def sample_frame():
    rng = np.random.default_rng(1)
    return pd.DataFrame({"id": np.arange(500), "age": rng.normal(40, 10, 500),
                         "salary": rng.lognormal(11, 0.3, 500), "department": rng.choice(["A", "B"], 500)})


def test_full_report_is_self_contained_and_has_every_section(tmp_path):
    path = write_report(tmp_path / "sub" / "report.html", metrics=METRICS, statistics=pd.DataFrame(STATS),
                        cleaned_sample=sample_frame(), alarms=ALARMS, job=JOB, drift={"psi_salary": 0.02})
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<(script|link|img|iframe)\b", text, re.IGNORECASE)
    assert not re.search(r"(src|href)\s*=", text, re.IGNORECASE)
    assert "<script>" not in text and "&lt;script&gt;" in text  # input text is escaped
    for heading in ("Run summary", "Missing values per column", "Distributions of numeric columns",
                    "Group statistics", "Alarm states", "Drift against the dataset baseline"):
        assert heading in text
    assert "dq-default-0123456789abcdef" in text and "1,000" in text and "990" in text
    # one histogram per numeric column except id, the missing chart, and two group charts (+ rows)
    svgs = re.findall(r"<svg\b.*?</svg>", text, re.DOTALL)
    assert len(svgs) >= 5
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    assert "<b>age</b>" in text and "<b>salary</b>" in text and "<b>id</b>" not in text
    assert "Engineering" in text and "ALARM" in text and "Threshold checks (metrics.json): failed" in text
    assert "missing_id" in text and "age_group" in text


def test_report_with_missing_metrics_shows_na_and_no_drift(tmp_path):
    path = write_report(tmp_path / "r.html", metrics={}, statistics=[], cleaned_sample=None, alarms=[],
                        job={"name": "dq-x", "status": "Failed", "failure_reason": "AlgorithmError: boom"})
    text = path.read_text()
    assert "n/a" in text and "AlgorithmError: boom" in text and "Failed" in text
    assert "Drift" not in text
    assert "http://" not in text and "https://" not in text


def test_statistics_json_document_and_numeric_fallback(tmp_path):
    metrics = dict(METRICS, numeric={"age": {"count": 10, "min": 1.0, "max": 9.0, "mean": 5.0}})
    path = write_report(tmp_path / "r.html", metrics=metrics,
                        statistics={"name": "department_statistics", "rows": STATS}, cleaned_sample=None,
                        alarms=ALARMS, job=JOB)
    text = path.read_text()
    assert "department_statistics" in text and "summaries from metrics.json" in text


def test_drift_and_gate_documents(tmp_path):
    drift = {"status": "computed", "max_psi": 0.31, "drifted_columns": ["salary"], "warned_columns": [],
             "columns": {"salary": {"kind": "numeric", "psi": 0.31, "distance": 0.2, "level": "alarm"},
                         "department": {"kind": "categorical", "psi": 0.01, "jensen_shannon": 0.01, "level": "ok"},
                         "json:address": {"kind": "json_presence", "psi": None, "level": "unavailable",
                                          "reason": "no values"}}}
    gate = {"status": "failed", "violations": [{"rule": "drift_alarm", "measured": 0.31, "threshold": 0.25}]}
    text = write_report(tmp_path / "r.html", metrics=METRICS, statistics=STATS, cleaned_sample=None, alarms=[],
                        job=JOB, drift=drift, gate=gate).read_text()
    assert "Drift against the dataset baseline" in text and "computed" in text and "0.31" in text
    assert "drift_alarm" in text and "failed" in text and "json:address" in text
    unavailable = {"status": "unavailable", "reason": "no baseline given", "max_psi": None, "drifted_columns": [],
                   "warned_columns": [], "columns": {}}
    text = write_report(tmp_path / "r2.html", metrics=METRICS, statistics=STATS, cleaned_sample=None, alarms=[],
                        job=JOB, drift=unavailable).read_text()
    assert "unavailable" in text and "no baseline given" in text


def test_drift_section_shows_baseline_vs_batch_per_column(tmp_path):
    # the shape processing/drift.py writes (design.md Contract 4): bins taken from the baseline, shares per bin
    drift = {"status": "computed", "max_psi": 2.27, "drifted_columns": ["salary", "department"], "warned_columns": [],
             "baseline": {"rows": 2000}, "batch_rows": 1600,
             "columns": {
                 "salary": {"kind": "numeric", "psi": 2.274414, "wasserstein_normalised": 2.223062, "level": "alarm",
                            "bins": ["<= 45359.7", "(45359.7, 52051.2]", "> 52051.2", "__missing__"],
                            "baseline": [0.3, 0.3, 0.35, 0.05], "batch": [0.01, 0.02, 0.92, 0.05],
                            "baseline_mean": 64854.15, "batch_mean": 98387.59},
                 "department": {"kind": "categorical", "psi": 1.59, "jensen_shannon": 0.33, "level": "alarm",
                                "bins": ["Engineering", "Sales", "__other__", "__missing__"],
                                "baseline": [0.2, 0.77, 0.0, 0.03], "batch": [0.0, 0.96, 0.0, 0.04],
                                "vanished_categories": ["Engineering"], "new_categories": []},
                 "age": {"kind": "numeric", "psi": 0.004, "wasserstein_normalised": 0.02, "level": "ok",
                         "bins": ["<= 30", "> 30"], "baseline": [0.5, 0.5], "batch": [0.49]},  # malformed: no chart
             }}
    text = write_report(tmp_path / "r.html", metrics=METRICS, statistics=STATS, cleaned_sample=None, alarms=[],
                        job=JOB, drift=drift).read_text()
    assert "Baseline vs batch, per column" in text
    section = text[text.index("Drift against the dataset baseline"):]
    assert section.count("<figure>") == 2  # salary and department; age's shares don't match its bins
    for label in ("(45359.7, 52051.2]", "Engineering", "__missing__", "92.00%", "77.00%"):
        assert label in section, label
    assert "wasserstein normalised" in section and "jensen shannon" in section and "2.22" in section
    assert "vanished: Engineering" in section and "mean 64,854 -&gt; 98,388" in section
    for svg in re.findall(r"<svg.*?</svg>", section, flags=re.DOTALL):
        ET.fromstring(svg)  # well-formed


def test_group_statistics_say_when_medians_come_from_a_sample(tmp_path):
    sampling = {"rows": 5_000_000, "sample_rows": 999_812, "rate": 0.2, "delta": 1e-06, "rank_error": 0.0027,
                "groups": {}}
    sampled = write_report(tmp_path / "s.html", metrics=dict(METRICS, statistics_sampling=sampling),
                           statistics=pd.DataFrame(STATS), cleaned_sample=None, alarms=[], job=JOB).read_text()
    exact = write_report(tmp_path / "e.html", metrics=dict(METRICS, statistics_sampling=None),
                         statistics=pd.DataFrame(STATS), cleaned_sample=None, alarms=[], job=JOB).read_text()
    assert "uniform sample of 999,812 of 5,000,000 rows" in sampled and "±0.27% of the rows" in sampled
    assert "uniform sample" not in exact


def test_a_metrics_insights_alarm_shows_its_query(tmp_path):
    query = "SELECT MAX(JobFailed) FROM SCHEMA(\"DataQualityPipeline\", Dataset) WHERE Dataset != 'default'"
    alarms = [*ALARMS, {"AlarmName": "dq_OtherDatasetsJobFailed", "StateValue": "ALARM", "Threshold": 1.0,
                        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                        "Metrics": [{"Id": "q", "Expression": query, "Period": 300, "ReturnData": True}]}]
    text = write_report(tmp_path / "r.html", metrics=METRICS, statistics=pd.DataFrame(STATS),
                        cleaned_sample=sample_frame(), alarms=alarms, job=JOB).read_text(encoding="utf-8")
    assert "SELECT MAX(JobFailed) FROM SCHEMA(&quot;DataQualityPipeline&quot;, Dataset)" in text


def test_demo_reads_alarm_names_and_recovery_messages():
    import json

    from localcloud.demo import _notification_states, _short_alarm

    assert _short_alarm("DataQualityPipeline_DefaultJobFailed") == "DefaultJobFailed"
    assert _short_alarm("DataQualityPipeline-AlarmsDefaultDriftMaxPsiF1D11318-ABC") == "DefaultDriftMaxPsi"
    recovery = {"detail-type": "CloudWatch Alarm State Change",
                "detail": {"alarmName": "S_DefaultJobFailed", "state": {"value": "OK"},
                           "previousState": {"value": "ALARM"}}}
    assert _notification_states([{"Message": json.dumps(recovery)}]) == [("S_DefaultJobFailed", "OK")]


def test_rules_table_shows_each_rule_with_its_verdict_and_examples(tmp_path):
    """issue 14: the report lists metrics.json ``rules`` (escaped), with the summary's rule counts."""
    metrics = {**METRICS, "summary": {**METRICS["summary"], "rules_failed": 1, "rules_warned": 0,
                                      "rows_rejected_by_rules": 2},
               "rules": {
                   "id_unique": {"type": "unique", "action": "fail", "alarm": True, "columns": ["id"],
                                 "violations": 3, "share": 0.03, "max_share": 0.0, "passed": False,
                                 "examples": ["7", "<b>9</b>"]},
                   "age_range": {"type": "range", "action": "reject", "alarm": False, "columns": ["age"],
                                 "violations": 2, "share": 0.02, "max_share": 0.0, "passed": False,
                                 "examples": ["150.0"]},
                   "enough": {"type": "row_count", "action": "warn", "alarm": False, "columns": [],
                              "violations": 0, "measured": 990, "min": 10, "max": None, "passed": True}}}
    text = write_report(tmp_path / "r.html", metrics=metrics, statistics=None, cleaned_sample=None, alarms=[],
                        job=JOB).read_text(encoding="utf-8")
    section = text[text.index("<h2>Rules</h2>"):]
    section = section[:section.index("</section>")]
    assert "<b>id_unique</b> &#128276;" in section and "&lt;b&gt;9&lt;/b&gt;" in section
    assert "broken" in section and "rows rejected" in section and "held" in section
    assert "1 fail rule(s) broken" in section and "2 row(s) rejected by rules" in section
    for node in re.findall(r"<table\b.*?</table>", section, re.DOTALL):
        ET.fromstring(node.replace("&#128276;", "").replace("&middot;", ""))
    assert "<h2>Rules</h2>" not in write_report(tmp_path / "n.html", metrics=METRICS, statistics=None,
                                                cleaned_sample=None, alarms=[], job=JOB).read_text(encoding="utf-8")
