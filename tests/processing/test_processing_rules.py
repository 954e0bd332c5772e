"""Declarative rules (issue 14, docs/processing.md "Rules") on small hand-checked data: each type, each action,
metrics.json, gate.json, quarantine/violations.json, the summary keys, validation errors naming the key path, and
the streaming path equal to the in-memory one (one block, many small blocks, beyond the row budget)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from processing import config as config_mod
from processing import pipeline
from processing.errors import ConfigError

CSV = ("id,name,age,salary,email,department\n"
       "1,Ann,30,50000,a@x.org,HR\n"
       "2,Bob,150,60000,bob-at-x,IT\n"  # age out of range (reject), email without @ (warn)
       "3,Cy,,70000,c@x.org,Sales\n"  # age missing: no range violation; Sales not allowed (warn)
       "4,Di,-1,80000,,IT\n"  # age out of range (reject); email missing: no pattern violation
       "5,Ed,40,,e@x.org,HR\n"  # salary missing (completeness)
       "1,Fi,41,1,f@x.org,IT\n"  # id 1 again (unique, fail)
       "7,Gregory,20,2,g@x.org,IT\n")  # name longer than 3 (reject)

RULES: list[dict[str, Any]] = [
    {"name": "age_range", "type": "range", "column": "age", "min": 0, "max": 120, "action": "reject"},
    {"name": "known_department", "type": "allowed_values", "column": "department", "values": ["HR", "IT"],
     "action": "warn"},
    {"name": "email_format", "type": "pattern", "column": "email", "pattern": "^[^@\\s]+@[^@\\s]+$",
     "action": "warn"},
    {"name": "name_length", "type": "length", "column": "name", "min": 1, "max": 3, "action": "reject"},
    {"name": "id_unique", "type": "unique", "columns": ["id"], "action": "fail", "alarm": True},
    {"name": "salary_present", "type": "completeness", "column": "salary", "min_share": 0.9, "action": "fail"},
    {"name": "enough_rows", "type": "row_count", "min": 5, "action": "warn"},
]


def _doc(rules: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"columns": {"id": "integer", "name": "string", "age": "float", "salary": "float", "email": "string",
                        "department": "string"},
            "imputation": {"salary": {"strategy": "median"}},
            "rules": copy.deepcopy(RULES if rules is None else rules), **extra}


def _run(tmp_path: Path, doc: dict[str, Any], name: str, csv: str = CSV, **settings: Any) -> pipeline.Result:
    src = tmp_path / "in.csv"
    src.write_text(csv)
    return pipeline.run([src], tmp_path / name, config_mod.validate(copy.deepcopy(doc)), **settings)


def _outputs(out: Path) -> dict[str, Any]:
    return {str(p.relative_to(out)): pq.read_table(p).to_pylist() for p in sorted(out.rglob("*.parquet"))}


def _stable(metrics: dict[str, Any]) -> dict[str, Any]:
    m = json.loads(json.dumps(metrics, default=str).replace('"streaming"', '"memory"'))
    for key in ("timestamp", "processing_seconds", "mode", "outputs"):
        m.pop(key, None)
        m["summary"].pop(key, None)
    for entry in m["inputs"]:
        entry.pop("path")
    return m


def test_each_rule_type_and_action_by_hand(tmp_path: Path) -> None:
    res = _run(tmp_path, _doc(), "m", mode="memory")
    m = res.metrics
    r = m["rules"]
    # row-local rules: every row not rejected before them (7), independently of each other
    assert r["age_range"] | {"examples": None} == {
        "type": "range", "action": "reject", "alarm": False, "columns": ["age"], "rows_checked": 7, "violations": 2,
        "share": 2 / 7, "max_share": 0.0, "passed": False, "examples": None}
    assert r["age_range"]["examples"] == ["150.0", "-1.0"]
    assert (r["known_department"]["violations"], r["known_department"]["examples"]) == (1, ["Sales"])
    assert (r["email_format"]["violations"], r["email_format"]["examples"]) == (1, ["bob-at-x"])
    assert (r["name_length"]["violations"], r["name_length"]["examples"]) == (1, ["Gregory"])
    # unique: over the rows the row-local reject rules left (ids 1, 3, 5, 1): the second 1
    assert (r["id_unique"]["rows_checked"], r["id_unique"]["violations"], r["id_unique"]["examples"]) == (4, 1, ["1"])
    assert r["id_unique"]["alarm"] is True
    # dataset rules over the output rows (4): salary missing in 1 of 4 -> 0.75 present < 0.9
    assert (r["salary_present"]["violations"], r["salary_present"]["measured"], r["salary_present"]["passed"]) == \
        (1, 0.75, False)
    assert (r["enough_rows"]["measured"], r["enough_rows"]["passed"]) == (4, False)
    # rows: rejected with the rule as reason, accounting holds
    assert m["summary"]["rows_in"] == 7 and m["summary"]["rows_out"] == 4 and m["summary"]["rows_rejected"] == 3
    assert m["rows"]["rejected_by_reason"] == {"rule:age_range": 2, "rule:name_length": 1}
    assert (m["summary"]["rules_failed"], m["summary"]["rules_warned"], m["summary"]["rows_rejected_by_rules"]) == \
        (2, 3, 3)
    rejected = pq.read_table(tmp_path / "m" / "quarantine" / "rejected" / "rejected.parquet").to_pylist()
    assert [(x["id"], x["age"], x["_reject_reason"]) for x in rejected] == [
        ("2", "150", "rule:age_range"), ("4", "-1", "rule:age_range"), ("7", "20", "rule:name_length")]
    # the gate: two fail rules broken -> failed, quarantined, listed with the warn ones
    gate = json.loads((tmp_path / "m" / "quality" / "gate.json").read_text())
    assert gate["status"] == "failed"
    found = {v["rule"]: v["action"] for v in gate["violations"] if v["rule"].startswith("rules.")}
    assert found == {"rules.known_department": "warn", "rules.email_format": "warn", "rules.id_unique": "fail",
                     "rules.salary_present": "fail", "rules.enough_rows": "warn"}
    violations = json.loads((tmp_path / "m" / "quarantine" / "violations.json").read_text())
    assert {v["rule"] for v in violations["violations"]} == {"rules.id_unique", "rules.salary_present"}
    assert {v["rule"] for v in violations["warnings"]} == {"rules.known_department", "rules.email_format",
                                                          "rules.enough_rows"}
    unique = next(v for v in violations["violations"] if v["rule"] == "rules.id_unique")
    assert (unique["measured"], unique["threshold"], unique["examples"]) == (0.25, 0.0, ["1"])


@pytest.mark.parametrize("settings", [{"mode": "streaming"}, {"mode": "streaming", "block_size": 64},
                                      {"mode": "streaming", "max_rows": 1, "block_size": 64}])
def test_streaming_equals_memory(tmp_path: Path, settings: dict[str, Any]) -> None:
    doc = _doc(duplicates={"key_columns": ["department"], "drop": "key"})
    memory = _run(tmp_path, doc, "m", mode="memory")
    streamed = _run(tmp_path, doc, "s", **settings)
    a, b = _stable(memory.metrics), _stable(streamed.metrics)
    for key in ("rules", "rows", "summary", "duplicates", "gate"):
        assert a[key] == b[key], key
    assert _outputs(tmp_path / "m") == _outputs(tmp_path / "s")


def test_order_rules_before_duplicates_and_reject_keeps_the_first(tmp_path: Path) -> None:
    """unique with reject keeps each key's first row; a later copy of a rule-rejected row is not a duplicate, and
    duplicates are counted after the rules."""
    csv = ("id,name,age,salary,email,department\n"
           "1,A,200,1,a@x,HR\n"  # rejected by the range rule
           "2,A,200,1,a@x,HR\n"  # rejected too: so no duplicate (key: name..department) of row 1 remains
           "3,B,30,1,b@x,HR\n"
           "3,C,31,1,c@x,HR\n"  # id 3 again: rejected by unique, the first one stays
           "4,B,30,1,b@x,HR\n")  # a key duplicate of row 3 (name, age, salary, email, department)
    doc = _doc([{"name": "age_range", "type": "range", "column": "age", "max": 120, "action": "reject"},
                {"name": "id_unique", "type": "unique", "columns": ["id"], "action": "reject"}],
               duplicates={"key_columns": ["name", "age", "salary", "email", "department"], "drop": "none"})
    for mode in ("memory", "streaming"):
        m = _run(tmp_path, doc, mode, csv, mode=mode).metrics
        assert m["rows"]["rejected_by_reason"] == {"rule:age_range": 2, "rule:id_unique": 1}, mode
        assert m["summary"]["duplicate_rows_key"] == 1 and m["summary"]["rows_out"] == 2, mode
        assert m["rules"]["id_unique"]["passed"] is False and m["summary"]["rules_failed"] == 0, mode
        assert m["summary"]["rows_rejected_by_rules"] == 3, mode


def test_max_share_and_passing_rules(tmp_path: Path) -> None:
    doc = _doc([{"name": "dept", "type": "allowed_values", "column": "department", "values": ["HR", "IT"],
                 "max_share": 0.2},  # 1 of 7 = 0.14: passes
                {"name": "ages", "type": "range", "column": "age", "min": 0, "max": 120, "max_share": 0.2},  # 2/7
                {"name": "rows", "type": "row_count", "min": 1, "max": 7},
                {"name": "ids", "type": "allowed_values", "column": "id", "values": [1, 2, 3, 4, 5, 7],
                 "action": "warn"}])
    m = _run(tmp_path, doc, "m").metrics
    assert m["rules"]["dept"]["passed"] is True and m["rules"]["ages"]["passed"] is False
    assert m["rules"]["rows"]["passed"] is True and m["rules"]["ids"]["violations"] == 0
    assert m["summary"]["rules_failed"] == 1 and m["summary"]["rules_warned"] == 0
    assert m["gate"]["status"] == "failed"
    assert m["summary"]["rows_out"] == 7  # fail rules do not reject rows


def test_rules_on_an_extracted_json_field(tmp_path: Path) -> None:
    csv = 'id,profile\n1,"{""email"": ""a@x""}"\n2,"{""email"": ""nope""}"\n3,"{}"\n4,not json\n'
    doc = {"columns": {"id": "integer", "profile": "json"},
           "json_columns": {"profile": {"fields": {"email": "email"}}},
           "rules": [{"name": "email_format", "type": "pattern", "column": "email", "pattern": "@",
                      "action": "reject"},
                     {"name": "email_present", "type": "completeness", "column": "email", "min_share": 0.5,
                      "action": "warn"}]}
    for mode in ("memory", "streaming"):
        m = _run(tmp_path, doc, mode, csv, mode=mode).metrics
        assert m["rules"]["email_format"]["examples"] == ["nope"] and m["summary"]["rows_out"] == 3, mode
        # rows 1, 3, 4 remain: only row 1 has an email -> 1/3 present < 0.5
        assert m["rules"]["email_present"]["measured"] == pytest.approx(1 / 3), mode
        assert m["gate"]["status"] == "warned", mode


def test_no_rules_reports_an_empty_section(tmp_path: Path) -> None:
    m = _run(tmp_path, _doc([]), "m").metrics
    assert m["rules"] == {} and m["rows"]["rejected_by_rules"] == 0
    assert (m["summary"]["rules_failed"], m["summary"]["rules_warned"], m["summary"]["rows_rejected_by_rules"]) == \
        (0, 0, 0)


@pytest.mark.parametrize(("rule", "message"), [
    ({"name": "x", "type": "ranges", "column": "age"}, "rules[0].type: expected one of range,"),
    ({"name": "bad name!", "type": "range", "column": "age", "min": 0}, "rules[0].name: expected 1-64 characters"),
    ({"name": "x", "type": "range", "column": "age"}, "rules[0]: expected min, max or both"),
    ({"name": "x", "type": "range", "column": "age", "min": "a"}, "rules[0].min: expected a finite number"),
    ({"name": "x", "type": "range", "column": "age", "min": 5, "max": 1}, "rules[0].max: must be at least min"),
    ({"name": "x", "type": "range", "column": "name", "min": 0}, "rules[0].column: range needs a integer or float"),
    ({"name": "x", "type": "range", "column": "nope", "min": 0}, "rules[0].column: unknown column 'nope'"),
    ({"name": "x", "type": "range", "column": "age", "min": 0, "action": "drop"}, "rules[0].action: expected one of"),
    ({"name": "x", "type": "range", "column": "age", "min": 0, "alarm": "yes"}, "rules[0].alarm: expected a boolean"),
    ({"name": "x", "type": "range", "column": "age", "min": 0, "max_share": 2}, "rules[0].max_share: a share"),
    ({"name": "x", "type": "range", "column": "age", "min": 0, "values": []}, "rules[0].values: unknown key"),
    ({"name": "x", "type": "allowed_values", "column": "department", "values": []}, "rules[0].values: expected a"),
    ({"name": "x", "type": "allowed_values", "column": "department", "values": [1]}, "rules[0].values[0]: expected"),
    ({"name": "x", "type": "pattern", "column": "email", "pattern": "("}, "rules[0].pattern: invalid regular"),
    ({"name": "x", "type": "pattern", "column": "email", "pattern": "(?=a)"}, "rules[0].pattern: lookaround"),
    ({"name": "x", "type": "pattern", "column": "email", "pattern": "(?>a)"}, "rules[0].pattern: lookaround"),
    ({"name": "x", "type": "pattern", "column": "email", "pattern": "a*+"}, "rules[0].pattern: lookaround"),
    ({"name": "x", "type": "pattern", "column": "email", "pattern": "(a)\\1"}, "rules[0].pattern: lookaround"),
    ({"name": "x", "type": "length", "column": "name", "min": 1.5}, "rules[0].min: expected a whole number"),
    ({"name": "x", "type": "unique", "columns": []}, "rules[0].columns: expected a non-empty list"),
    ({"name": "x", "type": "unique", "columns": ["id", "zz"]}, "rules[0].columns[1]: unknown column 'zz'"),
    ({"name": "x", "type": "completeness", "column": "age"}, "rules[0].min_share: required"),
    ({"name": "x", "type": "completeness", "column": "age", "min_share": 1, "action": "reject"},
     "rules[0].action: a completeness rule checks the whole batch and cannot reject"),
    ({"name": "x", "type": "row_count", "min": 1, "max_share": 0}, "rules[0].max_share: unknown key"),
    ({"name": "x", "type": "freshness", "column": "age", "max_age_hours": 1}, "rules[0].column: freshness needs"),
])
def test_validation_names_the_key_path(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.validate(_doc([rule]))
    assert str(err.value).startswith(message), str(err.value)


def test_duplicate_rule_names_are_refused() -> None:
    rule = {"name": "x", "type": "row_count", "min": 1}
    with pytest.raises(ConfigError, match=r"rules\[1\].name: 'x' is already the name of another rule"):
        config_mod.validate(_doc([rule, rule]))


def test_expression_rule_with_sql_check_semantics(tmp_path: Path) -> None:
    """A row violates when the expression is false; null (a missing operand) passes, as SQL's CHECK."""
    csv = "id,dep,arr\n1,10,20\n2,30,20\n3,5,\n4,,5\n5,7,7\n6,9,1\n"
    doc = {"columns": {"id": "integer", "dep": "float", "arr": "float"},
           "imputation": {"arr": {"strategy": "median"}},  # rules see values before imputation
           "rules": [{"name": "arrives_after", "type": "expression",
                      "expression": "arr >= dep or is_missing(arr)", "action": "reject"},
                     {"name": "short", "type": "expression", "expression": "arr - dep < 5", "action": "warn"}]}
    for mode in ("memory", "streaming"):
        m = _run(tmp_path, doc, mode, csv, mode=mode).metrics
        r = m["rules"]["arrives_after"]
        assert (r["rows_checked"], r["violations"], r["columns"]) == (6, 2, ["arr", "dep"]), mode
        assert r["examples"] == ["arr=20.0, dep=30.0", "arr=1.0, dep=9.0"], mode
        assert m["rows"]["rejected_by_reason"] == {"rule:arrives_after": 2} and m["summary"]["rows_out"] == 4, mode
        # arr - dep: 10 (violates), null, null, 0: one violation of the six rows checked
        assert (m["rules"]["short"]["violations"], m["rules"]["short"]["examples"]) == (
            1, ["arr=20.0, dep=10.0"]), mode


def test_expression_rule_validation_names_the_key() -> None:
    for expression, message in (("arr +", "rules[0].expression"), ("arr * 2", "rules[0].expression: a rule needs"),
                                ("nope > 1", "rules[0].expression")):
        with pytest.raises(ConfigError) as err:
            config_mod.validate({"columns": {"arr": "float"}, "rules": [
                {"name": "x", "type": "expression", "expression": expression}]})
        assert str(err.value).startswith(message), str(err.value)


def test_freshness_of_a_datetime_column(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    recent = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    csv = f"id,t\n1,2020-01-01T00:00:00Z\n2,{recent}\n3,\n4,not a time\n"
    rules = [{"name": "fresh", "type": "freshness", "column": "t", "max_age_hours": 48, "action": "warn"},
             {"name": "very_fresh", "type": "freshness", "column": "t", "max_age_hours": 1, "action": "fail"}]
    doc = {"columns": {"id": "integer", "t": "datetime"}, "rules": rules}
    for mode in ("memory", "streaming"):
        m = _run(tmp_path, doc, mode, csv, mode=mode).metrics
        fresh, very = m["rules"]["fresh"], m["rules"]["very_fresh"]
        assert fresh["passed"] is True and 1.9 < fresh["measured"] < 2.5, mode
        assert fresh["newest"].startswith(recent[:16].replace("T", "T")), (mode, fresh["newest"])
        assert very["passed"] is False and m["gate"]["status"] == "failed", mode
        assert (m["summary"]["rules_failed"], m["summary"]["rules_warned"]) == (1, 0), mode
    old = {"columns": {"id": "integer", "t": "datetime"}, "rules": rules[:1]}
    m = _run(tmp_path, old, "old", "id,t\n1,2020-01-01T00:00:00Z\n").metrics
    assert m["rules"]["fresh"]["passed"] is False and m["rules"]["fresh"]["measured"] > 24 * 365
    empty = _run(tmp_path, old, "none", "id,t\n1,\n").metrics  # no value at all: not fresh
    assert empty["rules"]["fresh"]["passed"] is False and empty["rules"]["fresh"]["measured"] is None
