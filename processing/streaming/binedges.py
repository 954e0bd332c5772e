"""Streaming: the edges of quantile bins (``derived`` bins with ``quantiles``), computed before pass B writes the
first row. One extra read of the work file computes each quantile bin's source (after imputation, as the in-memory
path sees it: a declared column, or an extracted field / earlier feature computed with the features it needs) and
collects its values: all of them while the output rows fit the row budget (exact, identical to the in-memory
path), else the values of the rows in the statistics sample (``sample_mask``, the same rows as the group medians),
with the rank error bound of ``batchstats.rank_error`` recorded in ``statistics_sampling.bins``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from processing import batchstats, derive
from processing.config import DatasetConfig
from processing.rows import transform_rows
from processing.streaming.signature import sample_mask


def quantile_bins(config: DatasetConfig) -> list[Any]:
    return [d for d in config.derived if d.kind == "bins" and d.bins is not None and d.bins.quantiles is not None]


def source_config(config: DatasetConfig) -> DatasetConfig:
    """``config`` reduced to what the quantile bins' sources need: the features they depend on (transitively),
    the JSON columns whose fields those use; no quantile bins, no other features."""
    by_name = {d.name: d for d in config.derived}
    needed: set[str] = set()
    todo = [d.source for d in quantile_bins(config)]
    while todo:
        name = todo.pop()
        d = by_name.get(name)
        if d is None or name in needed:
            continue
        needed.add(name)
        todo.extend(d.expression.columns if d.expression is not None else [d.source])
    used = {d.source for d in quantile_bins(config)}  # every column a needed feature or a quantile bin reads
    for d in config.derived:
        if d.name in needed:
            used.update(d.expression.columns if d.expression is not None else [d.source])
    json_columns = tuple(jc for jc in config.json_columns if any(f.name in used for f in jc.fields))
    derived = tuple(d for d in config.derived if d.name in needed)
    return dataclasses.replace(config, derived=derived, json_columns=json_columns)


def compute(frames: Iterator[pd.DataFrame], config: DatasetConfig, names: list[str], kinds: dict[str, str],
            imputation: dict[str, Any], rate: float) -> tuple[dict[str, list[float]], dict[str, Any] | None]:
    """Edges of every quantile bin from ``frames`` (the output rows' typed input columns before imputation, batch by
    batch, in output order) and, when ``rate`` < 1, how they were sampled (per bin: ``values`` present in the
    sample, ``rank_error``)."""
    targets = quantile_bins(config)
    reduced = source_config(config)
    parts: dict[str, list[Any]] = {d.name: [] for d in targets}
    start = 0
    for pre in frames:
        transformed, _ = transform_rows(pre.copy(), reduced, names, kinds, imputation)
        picked = sample_mask(start, len(transformed), rate)
        start += len(transformed)
        for d in targets:
            values = transformed[d.source] if rate >= 1 else transformed[d.source][picked]
            parts[d.name].append(derive.numbers(values))
    edges: dict[str, list[float]] = {}
    sampling: dict[str, Any] = {}
    for d in targets:
        assert d.bins is not None and d.bins.quantiles is not None
        values = np.concatenate(parts.pop(d.name)) if parts[d.name] else np.zeros(0)
        edges[d.name] = derive.quantile_edges(values, d.bins.quantiles)
        sampling[d.name] = {"values": int(values.size), "rank_error": batchstats.rank_error(int(values.size))}
    return edges, (sampling if rate < 1 else None)
