"""The dataset config's rules (docs/processing.md "Rules"), evaluated the same way by the in-memory path (all rows as
one block) and the streaming path (block by block, in input order), with Arrow compute kernels (no per-row Python).

Order of a row's rejection: parse errors and invalid UTF-8, ``reject_rows_missing``, then the row-local rules
(``range``, ``allowed_values``, ``pattern``, ``length``, ``expression``: ``check_block``, over the rows still there,
each rule independently), then ``unique`` over the rows still there (``unique_masks``; streaming finds them with its
duplicate signatures), then the duplicate drop. ``Tally`` adds up what metrics.json reports (``results``): rows
checked, violations, rows rejected, the first ``EXAMPLES`` distinct offending values, the newest value of a
freshness column. Dataset-level rules (``completeness``, ``row_count``, ``freshness``) are judged at the end from
the run's counts (``results``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing import expressions, jsonx, transform
from processing.config import DatasetConfig
from processing.rows import reject_reasons
from processing.rules_config import EXAMPLES, Rule, Tally, first_distinct, results, text

__all__ = ["EXAMPLES", "Tally", "check_block", "first_distinct", "reject_unique", "results", "row_texts", "text",
           "unique_masks", "unique_rules"]

REASON_PREFIX = "rule:"


def reason(rule: Rule) -> str:
    """A rejected row's reason for ``rule``: ``rule:<name>``."""
    return REASON_PREFIX + rule.name


def row_texts(columns: Mapping[str, pa.Array], names: tuple[str, ...], labelled: bool) -> Iterable[str]:
    """Each row's values of ``names`` as one text (``a=1, b=x`` when ``labelled``), lazily, in row order."""
    lists = [columns[c].to_pylist() for c in names]
    for row in zip(*lists, strict=True):
        if labelled:
            yield ", ".join(f"{c}={text(v)}" for c, v in zip(names, row, strict=True))
        else:
            yield ", ".join(text(v) for v in row)


def _violations(rule: Rule, columns: Mapping[str, pa.Array], frame: pd.DataFrame | None) -> pa.Array:
    """Boolean array: the row breaks ``rule`` (missing values never do; an expression that is null passes)."""
    if rule.type == "expression":

        assert rule.expression is not None and frame is not None
        result = expressions.evaluate(expressions.parse(rule.expression, f"rules.{rule.name}"), frame)
        ok = pd.Series(result, copy=False).astype("boolean").fillna(True).to_numpy(dtype=bool)
        return pa.array(~ok)
    arr = columns[rule.columns[0]]
    if rule.type == "range":
        x = arr.cast(pa.float64())
        bad = pa.array(np.zeros(len(arr), dtype=bool))
        if rule.min is not None:
            bad = pc.or_(bad, pc.less(x, rule.min))
        if rule.max is not None:
            bad = pc.or_(bad, pc.greater(x, rule.max))
    elif rule.type == "length":
        n = pc.utf8_length(arr.cast(pa.string()))
        bad = pa.array(np.zeros(len(arr), dtype=bool))
        if rule.min is not None:
            bad = pc.or_(bad, pc.less(n, int(rule.min)))
        if rule.max is not None:
            bad = pc.or_(bad, pc.greater(n, int(rule.max)))
    elif rule.type == "allowed_values":
        assert rule.values is not None
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            bad = pc.invert(pc.is_in(arr.cast(pa.float64()), value_set=pa.array([float(v) for v in rule.values])))
        else:
            bad = pc.invert(pc.is_in(arr.cast(pa.string()), value_set=pa.array(list(rule.values), pa.string())))
        bad = pc.and_(pc.is_valid(arr), bad)
    else:  # pattern: the value must contain a match (RE2; anchor with ^ and $ for the whole value)
        assert rule.pattern is not None
        bad = pc.invert(pc.match_substring_regex(arr.cast(pa.string()), rule.pattern))
    return pc.fill_null(bad, False)


def _observed(typed: Mapping[str, pa.Array], kinds: Mapping[str, str], idx: pa.Array, config: DatasetConfig,
              names: Iterable[str]) -> dict[str, pa.Array]:
    """The rows ``idx`` of the columns ``names`` as the rules see them: typed values before imputation (declared
    columns) and extracted JSON fields."""
    wanted = list(dict.fromkeys(names))
    out = {c: typed[c].take(idx) for c in wanted if c in typed}
    for jc in config.json_columns:
        fields = tuple(f for f in jc.fields if f.name in wanted and f.name not in out)
        if fields:
            ext = jsonx.extract(typed[jc.column].take(idx), fields)
            out.update({name: arr for name, arr in ext.fields.items() if name in wanted})
    return out


def check_block(typed: Mapping[str, pa.Array], kinds: Mapping[str, str], rejected: npt.NDArray[Any],
                reasons: npt.NDArray[Any], config: DatasetConfig, tally: Tally,
                ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The row-local rules over the rows of one block not yet ``rejected``; counts into ``tally``; returns the
    rejection flags and reasons with the ``reject`` rules' violators added (``rule:<name>``, ``;``-joined)."""
    local = [r for r in config.rules if r.row_level and r.type != "unique"]
    fresh = [r for r in config.rules if r.type == "freshness"]
    if not local and not fresh:
        return rejected, reasons
    idx_np = np.flatnonzero(~rejected)
    idx = pa.array(idx_np, pa.int64())
    columns = _observed(typed, kinds, idx, config, [c for r in (*local, *fresh) for c in r.columns])
    frame = None
    if any(r.type == "expression" for r in local):
        frame = pd.DataFrame({c: transform.to_series(a, kinds.get(c, "string") if c in typed else "string")
                              for c, a in columns.items()}, copy=False)
    rejecting: list[tuple[npt.NDArray[Any], str]] = []
    for rule in local:
        bad = _violations(rule, columns, frame)
        count = int(pc.sum(bad).as_py() or 0)
        examples: list[str] = []
        if count:
            hit = {c: columns[c].filter(bad) for c in rule.columns}
            examples = first_distinct(row_texts(hit, rule.columns, rule.type == "expression"))
        tally.add(rule.name, len(idx_np), count, examples)
        if rule.action == "reject" and count:
            mask = np.zeros(len(rejected), dtype=bool)
            mask[idx_np[bad.to_numpy(zero_copy_only=False)]] = True
            rejecting.append((mask, reason(rule)))
    for rule in fresh:
        newest = pc.max(columns[rule.columns[0]]).as_py() if len(idx_np) else None
        tally.newest_value(rule.name, newest)
    if rejecting:
        more, more_reasons = reject_reasons(len(rejected), rejecting)
        tally.rejected_rows += int(more.sum())
        reasons = np.where(more, more_reasons, reasons)
        rejected = rejected | more
    return rejected, reasons


def unique_rules(config: DatasetConfig) -> list[Rule]:
    return [r for r in config.rules if r.type == "unique"]


def unique_masks(usable: Mapping[str, pa.Array], n: int, config: DatasetConfig, tally: Tally,
                 ) -> list[tuple[npt.NDArray[Any], str]]:
    """The ``unique`` rules over the ``n`` usable rows (``usable``: their typed columns): each row beyond the first of
    its key violates (nulls equal, like duplicates). Counts into ``tally``; returns (mask, reason) of the ``reject``
    rules' violators."""
    out = []
    for rule in unique_rules(config):
        cols = list(rule.columns)
        ((count, mask),) = transform.duplicate_masks({c: usable[c] for c in cols}, [cols], n)
        examples = []
        if count:
            at = pa.array(np.flatnonzero(mask), pa.int64())
            examples = first_distinct(row_texts({c: usable[c].take(at) for c in cols}, rule.columns, False))
        tally.add(rule.name, n, int(count), examples)
        if rule.action == "reject" and count:
            out.append((mask, reason(rule)))
    return out


def reject_unique(typed: Mapping[str, pa.Array], usable_idx: npt.NDArray[Any], config: DatasetConfig, tally: Tally,
                  rejected: npt.NDArray[Any], reasons: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """``unique_masks`` over the rows ``usable_idx`` of ``typed`` (all rows), the ``reject`` rules' violators added
    to ``rejected``/``reasons`` (the in-memory path; streaming uses its duplicate signatures)."""
    at = pa.array(usable_idx, pa.int64())
    cols = {c for r in unique_rules(config) for c in r.columns}
    masks = unique_masks({c: typed[c].take(at) for c in cols}, len(usable_idx), config, tally)
    if not masks:
        return rejected, reasons
    full = []
    for mask, why in masks:
        m = np.zeros(len(rejected), dtype=bool)
        m[usable_idx[mask]] = True
        full.append((m, why))
    more, more_reasons = reject_reasons(len(rejected), full)
    tally.rejected_rows += int(more.sum())
    return rejected | more, np.where(more, more_reasons, reasons)
