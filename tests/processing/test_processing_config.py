"""Config validation: every error names the key path; selection by --config, dataset name, default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processing import config as config_mod
from processing.errors import ConfigError


def test_default_config_reproduces_reference_scenario() -> None:
    cfg = config_mod.load(None, "default")
    assert cfg.source == "processing/configs/default.json"
    assert {i.column: i.strategy for i in cfg.imputations} == {"age": "median", "salary": "median",
                                                              "department": "constant"}
    assert [f.name for f in cfg.json_columns[0].fields] == ["address", "phone", "email"]
    bins = {d.name: d.bins for d in cfg.derived if d.bins}
    assert bins["salary_category"].edges == (0, 50000, 70000, 100000)
    assert bins["age_group"].labels == ("Young", "Early Career", "Mid Career", "Senior", "Experienced")
    assert bins["age_group"].edges[-1] == float("inf")
    assert set(cfg.quality_thresholds) == {"max_missing_rate_after", "max_rejected_rate", "max_malformed_json_rate",
                                           "max_duplicate_rate", "min_rows_out"}
    assert len(cfg.sha256) == 64


def test_unknown_dataset_falls_back_to_default_and_bad_names_are_not_paths() -> None:
    assert config_mod.load(None, "no-such-dataset").source.endswith("default.json")
    assert config_mod.load(None, "../../etc/passwd").source.endswith("default.json")


def test_config_file_wins(tmp_path: Path, default_doc: dict) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(default_doc))
    assert config_mod.load(path, "default").source == str(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["derived"][1]["bins"].update(labels=["a", "b"]),
         "derived[1].bins.labels: expected 3 labels for 4 edges, got 2"),
        (lambda d: d["derived"][1]["bins"].update(edges=[0, 10, 5, 20]), "derived[1].bins.edges[2]: edges must be"),
        (lambda d: d["derived"][1]["bins"].update(closed="both"), "derived[1].bins.closed:"),
        (lambda d: d["derived"][0].update(source="nope"), "derived[0].source: unknown column 'nope'"),
        (lambda d: d["derived"][0].update(kind="log"), "derived[0].kind:"),
        (lambda d: d["imputation"]["age"].update(strategy="mode"), "imputation.age.strategy: unknown strategy"),
        (lambda d: d["imputation"].update(name={"strategy": "median"}), "imputation.name.strategy: median needs"),
        (lambda d: d["imputation"].update(age={"strategy": "constant"}), "imputation.age.value:"),
        (lambda d: d["columns"].update(age="decimal"), "columns.age: unknown type 'decimal'"),
        (lambda d: d.update(colums={}), "colums: unknown key"),
        (lambda d: d["quality_thresholds"].update(max_rejected_rate=2), "quality_thresholds.max_rejected_rate"),
        (lambda d: d["quality_thresholds"].update(max_typo=1), "quality_thresholds.max_typo: unknown key"),
        (lambda d: d["duplicates"].update(drop="all"), "duplicates.drop:"),
        (lambda d: d["duplicates"].update(key_columns=["x"]), "duplicates.key_columns[0]: unknown column 'x'"),
        (lambda d: d["group_statistics"][0]["aggregations"].update(name=["mean"]),
         "group_statistics[0].aggregations.name[0]: mean needs a numeric column"),
        (lambda d: d["group_statistics"][0].update(group_by=[]), "group_statistics[0].group_by: expected at least"),
        (lambda d: d["json_columns"]["profile"]["fields"].update(name="x"),
         "json_columns.profile.fields.name: output name collides"),
        (lambda d: d["json_columns"]["profile"]["fields"].update(zip="a..b"),
         "json_columns.profile.fields.zip: empty key"),
        (lambda d: d.update(reject_rows_missing=["age", "id", "zzz"]), "reject_rows_missing[2]:"),
        (lambda d: d.update(required_columns="id"), "required_columns: expected a list"),
        (lambda d: d["categorical_fills"].update(age="x"), "categorical_fills.age: categorical fills apply"),
    ],
)
def test_invalid_config_names_the_key(default_doc: dict, mutate, message: str) -> None:
    # GIVEN a default config with one mistake
    mutate(default_doc)
    # WHEN it is validated THEN the error starts with the key path
    with pytest.raises(ConfigError) as err:
        config_mod.validate(default_doc)
    assert str(err.value).startswith(message), str(err.value)


def test_not_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config_mod.load(path, "default")
    with pytest.raises(ConfigError, match="cannot read config file"):
        config_mod.load(tmp_path / "missing.json", "default")


def test_config_hash_is_canonical(default_doc: dict) -> None:
    reordered = dict(reversed(list(default_doc.items())))
    assert config_mod.validate(default_doc).sha256 == config_mod.validate(reordered).sha256
