"""The streaming path's end-of-run statistics from the spilled columns: exact while the rows fit ``max_rows``, else
merged batch by batch plus a sample (``batchstats``)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from processing import batchstats, transform
from processing.config import DatasetConfig
from processing.rows import group_column_metrics
from processing.streaming.signature import sample_mask
from processing.streaming.workfiles import Spill

log = logging.getLogger("processing")


class Statistics:
    """The end-of-run statistics from the spilled columns (``Spill``): group statistics, group-column metrics,
    numeric summaries and the drift rows. ``exact`` reads each statistic's columns back whole (the in-memory path's
    functions on the same values); ``bounded`` scans the spill batch by batch (``batchstats``: exact merged
    aggregates, order statistics and drift from a uniform sample), for more rows than ``max_rows``."""

    def __init__(self, config: DatasetConfig, kinds: dict[str, str], imputation: dict[str, Any], spill: Spill,
                 group_cols: list[str], numeric_cols: list[str], drift_cols: list[str]):
        self.config, self.kinds, self.imputation, self.spill = config, kinds, imputation, spill
        self.group_cols, self.numeric_cols, self.drift_cols = group_cols, numeric_cols, drift_cols

    def _filled(self, frame: dict[str, pd.Series] | pd.DataFrame) -> pd.DataFrame:
        """Spilled columns as the transformed frame has them: input columns filled as the rows were."""
        return pd.DataFrame({c: transform.fill(v, self.imputation[c]["value"], self.kinds[c]) if c in self.imputation
                             else v for c, v in frame.items()}, copy=False)

    def _group_frame(self, spec: Any, raw: dict[str, pd.Series]) -> pd.DataFrame:
        """``transform.group_frame`` of spilled columns: ``raw`` holds input columns before imputation."""
        return transform.group_frame(spec, self._filled(raw), raw)

    def exact(self) -> tuple[dict[str, pd.DataFrame], dict[str, Any], dict[str, Any], pd.DataFrame]:
        # One statistic at a time, each reading only its columns back (memory: those columns, not all of them).
        spill = self.spill
        statistics = {g.name: transform.group_statistics(self._group_frame(g, spill.read(spec_columns(g))), g)
                      for g in self.config.group_statistics}
        group_metrics = {c: group_column_metrics(self._filled(spill.read([c]))[c]) for c in self.group_cols}
        numeric = {c: transform.numeric_summary(self._filled(spill.read([c]))[c]) for c in self.numeric_cols}
        drift_batch = pd.DataFrame(spill.read(self.drift_cols), copy=False)  # before imputation, as profiled in memory
        return statistics, group_metrics, numeric, drift_batch

    def bounded(self, rate: float, rows: int) -> tuple[dict[str, pd.DataFrame], dict[str, Any], dict[str, Any],
                                                       pd.DataFrame, dict[str, Any]]:
        config = self.config
        groups = {g.name: batchstats.GroupStats(g) for g in config.group_statistics}
        summaries = {c: batchstats.Summary() for c in self.numeric_cols}
        distinct: dict[str, set[Any]] = {c: set() for c in self.group_cols}
        missing = dict.fromkeys(self.group_cols, 0)
        median_cols = [c for g in groups.values() for c in g.medians]
        sample_cols = list(dict.fromkeys([*self.drift_cols, *self.group_cols, *median_cols]))
        names = list(dict.fromkeys([*sample_cols, *self.numeric_cols,
                                    *(c for g in config.group_statistics for c, _ in g.aggregations)]))
        sample_parts, start = [], 0
        for raw in self.spill.batches(names):
            frame = self._filled(raw)
            for g in config.group_statistics:
                groups[g.name].add(transform.group_frame(g, frame, raw))
            for c in self.group_cols:
                distinct[c].update(frame[c].dropna().unique().tolist())
                missing[c] += int(frame[c].isna().sum())
            for c, summary in summaries.items():
                summary.add(frame[c])
            picked = sample_mask(start, len(raw), rate)
            start += len(raw)
            sample_parts.append(raw.loc[picked, sample_cols].reset_index(drop=True).copy())
        sample = pd.concat(sample_parts, ignore_index=True) if sample_parts else pd.DataFrame(columns=sample_cols)
        del sample_parts
        filled = self._filled(sample)
        statistics = {name: g.result(filled, sample) for name, g in groups.items()}
        group_metrics = {c: {"distinct": len(distinct[c]), "missing": missing[c]} for c in self.group_cols}
        numeric = {c: s.result() for c, s in summaries.items()}
        sampling = {"rows": rows, "sample_rows": len(sample), "rate": rate, "delta": batchstats.DELTA,
                    "rank_error": batchstats.rank_error(len(sample)),
                    "groups": {name: g.sample_sizes(filled) for name, g in groups.items()}}
        log.info("statistics over %d rows: exact aggregates, order statistics and drift from a sample of %d rows "
                 "(rank error <= %.4f with probability %.6f)", rows, len(sample), sampling["rank_error"] or 0,
                 1 - batchstats.DELTA)
        return statistics, group_metrics, numeric, sample[self.drift_cols], sampling


def spec_columns(spec: Any) -> list[str]:
    """The columns a ``group_statistics`` spec reads: its keys, then its aggregated columns."""
    return list(dict.fromkeys([*spec.group_by, *(c for c, _ in spec.aggregations)]))
