"""Statistics over more rows than memory may hold: exact aggregates merged batch by batch, and a uniform sample.

Streaming mode uses these when the rows that reach the outputs outnumber ``max_rows`` (the per-row state it may hold
in memory at once; ``streaming.max_rows_in_memory``). Up to that many rows the statistics stay exact and identical to
the in-memory path, because streaming then reads each statistic's columns back whole instead.

- Exact over every row, merged batch by batch: group sizes, ``count``, ``size``, ``sum``, ``min``, ``max``,
  ``nunique``, the numeric summaries' count, min and max, missing counts, distinct counts. ``mean`` and ``std`` are
  exact up to floating-point rounding (the batches are summed in another order than one pass over all rows; ``std``
  merges per-batch moments with Chan et al.'s pairwise update).
- From a deterministic uniform sample of about ``max_rows`` rows: the order statistics, that is the fill values of
  ``median`` imputation (exact while the column's present values fit ``max_rows``), the group statistics'
  ``median`` and the drift profile and scores (quantiles, bin edges,
  shares). Error bound: with ``k`` sampled values, the reported ``q`` quantile is the value at a rank within
  ``±eps * N`` of ``q * N`` with probability at least ``1 - DELTA``, ``eps = sqrt(ln(2 / DELTA) / (2k))``
  (Dvoretzky-Kiefer-Wolfowitz; given its size, a Bernoulli sample is a uniform sample without replacement, which is
  at least as concentrated: Hoeffding 1963, section 6). At ``k`` = 1,000,000 that is ±0.27% of the rows; a group's
  median uses that group's sampled rows, so its bound is the same formula with the group's ``k``
  (``metrics.json`` ``statistics_sampling`` lists them).

Memory: the sample, plus one row per group (and one per distinct value for ``nunique`` and distinct counts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from processing import transform
from processing.config import GroupStatistics

DELTA = 1e-6  # the bound fails with at most this probability


def rank_error(k: int, delta: float = DELTA) -> float | None:
    """``eps`` of the module doc: the largest rank error (as a share of the rows) of a quantile from ``k`` samples."""
    return math.sqrt(math.log(2 / delta) / (2 * k)) if k > 0 else None


class GroupStats:
    """One ``group_statistics`` spec over batches (``add``), finished by ``result``: the frame
    ``transform.group_statistics`` makes (same columns and group order), with medians from the sample."""

    def __init__(self, spec: GroupStatistics):
        self.spec, self.keys = spec, list(spec.group_by)
        self.needs: dict[str, set[str]] = {}
        for col, funcs in spec.aggregations:
            need = self.needs.setdefault(col, set())
            for fn in funcs:
                need.update({"count": {"n"}, "sum": {"sum"}, "mean": {"n", "mean"}, "std": {"n", "mean", "m2"},
                             "min": {"min"}, "max": {"max"}}.get(fn, set()))
        # order statistics (median, pNN) come from the sample: the columns and their functions
        self.ordered = {col: tuple(fn for fn in funcs if fn == "median" or _is_percentile(fn))
                        for col, funcs in spec.aggregations}
        self.ordered = {col: fns for col, fns in self.ordered.items() if fns}
        self.medians = list(self.ordered)
        self.missing = [col for col, funcs in spec.aggregations if "missing" in funcs]  # exact, summed flags
        self.state: pd.DataFrame | None = None
        self.pairs: dict[str, pd.DataFrame] = {}  # nunique: the distinct (keys..., value) pairs seen

    def add(self, frame: pd.DataFrame) -> None:
        grouped = frame.groupby(self.keys, dropna=False, observed=True, sort=False)
        part = grouped.size().rename("rows").to_frame()
        for col, need in self.needs.items():
            values = grouped[col]
            if "n" in need:
                part[f"{col}:n"] = values.count()
            if "sum" in need:
                part[f"{col}:sum"] = values.sum()
            if "min" in need:
                part[f"{col}:min"] = values.min()
            if "max" in need:
                part[f"{col}:max"] = values.max()
            if "mean" in need:
                part[f"{col}:mean"] = values.mean()
            if "m2" in need:
                part[f"{col}:m2"] = values.var(ddof=0) * part[f"{col}:n"]
        for col in self.missing:
            flag = transform.MISSING_MARK + col
            part[f"{col}:miss"] = (grouped[flag].sum() if flag in frame.columns
                                   else grouped[col].size() - grouped[col].count())
        for col, funcs in self.spec.aggregations:
            if "nunique" in funcs:
                seen = frame[[*self.keys, col]].dropna(subset=[col]).drop_duplicates()
                old = self.pairs.get(col)
                self.pairs[col] = seen if old is None else pd.concat([old, seen]).drop_duplicates()
        part = part.reset_index()
        self.state = part if self.state is None else self._merge(pd.concat([self.state, part], ignore_index=True),
                                                                 sort=False)

    def _merge(self, parts: pd.DataFrame, *, sort: bool) -> pd.DataFrame:
        """Per-group partial aggregates (one row per part and group) merged into one row per group."""
        parts = parts.copy(deep=False)
        for col, need in self.needs.items():
            if "mean" in need:  # weighted by count: a part with no values (mean NaN) weighs nothing
                parts[f"{col}:w"] = (parts[f"{col}:n"].astype("float64") * parts[f"{col}:mean"]).fillna(0.0)
        grouped = parts.groupby(self.keys, dropna=False, observed=True, sort=sort)
        out = grouped["rows"].sum().to_frame()
        for col in self.missing:
            out[f"{col}:miss"] = grouped[f"{col}:miss"].sum()
        for col, need in self.needs.items():
            for stat, how in (("n", "sum"), ("sum", "sum"), ("min", "min"), ("max", "max")):
                if stat in need:
                    out[f"{col}:{stat}"] = grouped[f"{col}:{stat}"].agg(how)
            if "mean" in need:
                n = out[f"{col}:n"].astype("float64")
                out[f"{col}:mean"] = (grouped[f"{col}:w"].sum() / n).where(n > 0)
            if "m2" in need:  # Chan et al.: M2 = sum over parts of M2_i + n_i * (mean_i - mean)^2
                at = grouped[f"{col}:w"].transform("sum") / grouped[f"{col}:n"].transform("sum").astype("float64")
                parts[f"{col}:dev"] = (parts[f"{col}:m2"].fillna(0.0)
                                       + (parts[f"{col}:n"].astype("float64") * (parts[f"{col}:mean"] - at) ** 2)
                                       .fillna(0.0))
                out[f"{col}:m2"] = parts.groupby(self.keys, dropna=False, observed=True, sort=sort)[f"{col}:dev"].sum()
        return out.reset_index()

    def result(self, sample: pd.DataFrame, observed: pd.DataFrame | None = None) -> pd.DataFrame:
        """The statistics frame; ``sample``: the sampled rows (keys and the order-statistic columns, values filled),
        ``observed``: the same rows before imputation (``transform.group_frame``; default ``sample``)."""
        assert self.state is not None
        state = self._merge(self.state, sort=True)
        out = state[self.keys].copy()
        out["rows"] = state["rows"].astype("int64")
        if self.medians:
            spec = GroupStatistics(self.spec.name, self.spec.group_by, tuple(self.ordered.items()), self.spec.values)
            sampled = transform.group_statistics(
                transform.group_frame(spec, sample, sample if observed is None else observed), spec)
            sampled = sampled.drop(columns="rows")
        for col, funcs in self.spec.aggregations:
            n = state[f"{col}:n"] if "n" in self.needs[col] else None
            for fn in funcs:
                name = f"{col}_{fn}"
                if fn == "size":
                    out[name] = out["rows"]
                elif fn == "count":
                    out[name] = n
                elif fn in ("sum", "min", "max"):
                    out[name] = state[f"{col}:{fn}"]
                elif fn == "mean":
                    out[name] = state[f"{col}:mean"].astype("float64")
                elif fn == "std":
                    assert n is not None  # "std" needs "n"
                    # np.sqrt of a Series is a Series (numpy's ufunc protocol; the stubs say ndarray)
                    std = cast(pd.Series, np.sqrt(state[f"{col}:m2"].astype("float64") / (n - 1)))
                    out[name] = std.where(n > 1)
                elif fn == "missing":
                    out[name] = state[f"{col}:miss"].astype("int64")
                elif fn == "nunique":
                    distinct = self.pairs[col].groupby(self.keys, dropna=False, observed=True).size()
                    out[name] = (out[self.keys].merge(distinct.rename(name).reset_index(), how="left", on=self.keys)
                                 [name].fillna(0).astype("int64").to_numpy())
                else:  # median, pNN: from the sample; a group with no sampled value has none
                    out[name] = (out[self.keys].merge(sampled[[*self.keys, name]], how="left", on=self.keys)
                                 [name].to_numpy())
        for k in self.keys:
            if isinstance(out[k].dtype, pd.CategoricalDtype):
                out[k] = out[k].astype(transform.STRING_DTYPE)
        return out

    def sample_sizes(self, sample: pd.DataFrame) -> list[dict[str, Any]]:
        """Per group: its rows, its sampled rows and the rank error bound of its medians (``rank_error``)."""
        if not self.medians or self.state is None:
            return []
        state = self._merge(self.state, sort=True)
        counts = sample.groupby(self.keys, dropna=False, observed=True).size().rename("sampled").reset_index()
        merged = state[[*self.keys, "rows"]].merge(counts, how="left", on=self.keys)
        out = []
        for row in merged.itertuples(index=False):
            sampled, rows = cast(float, row.sampled), cast(int, row.rows)  # itertuples' fields are untyped
            k = 0 if pd.isna(sampled) else int(sampled)
            key = {c: (None if pd.isna(v) else str(v)) for c, v in zip(self.keys, row[:len(self.keys)], strict=True)}
            out.append({"group": key, "rows": int(rows), "sampled": k, "rank_error": rank_error(k)})
        return out


def _is_percentile(fn: str) -> bool:
    return len(fn) == 3 and fn[0] == "p" and fn[1:].isdigit()


class Summary:
    """``transform.numeric_summary`` over batches: count, min, max exact; mean up to rounding."""

    def __init__(self) -> None:
        self.count, self.total = 0, 0.0
        self.low, self.high = math.inf, -math.inf

    def add(self, series: pd.Series) -> None:
        values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype="float64")
        if values.size:
            self.count += int(values.size)
            self.total += float(values.sum())
            self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def result(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0, "min": None, "max": None, "mean": None}
        return {"count": self.count, "min": transform.finite_or_none(self.low),
                "max": transform.finite_or_none(self.high), "mean": transform.finite_or_none(self.total / self.count)}


def imputation_of(batches: Callable[[], Iterator[pd.Series]], rule: Any, kind: str, max_rows: int,
                  sampler: Callable[[int, int, float], npt.NDArray[Any]]) -> dict[str, Any]:
    """``transform.impute_value`` (plus ``filled``) over a column read batch by batch (``batches()`` starts a new
    read): the missing count, ``mean`` (up to rounding) and ``most_frequent`` exact. ``median`` is exact when the
    present values fit ``max_rows`` (a second read collects them all); otherwise it is the median of a uniform
    sample of about ``max_rows`` of them (``sampler(start, n, rate)``: the sample mask of present values
    ``start..start+n-1``), and ``sampled_values`` says how many."""
    missing, count, total = 0, 0, 0.0
    counts: pd.Series | None = None
    for values in batches():
        missing += int(values.isna().sum())
        present = values.dropna()
        count += len(present)
        if rule.strategy == "mean":
            total += float(present.to_numpy(dtype="float64").sum())
        elif rule.strategy == "most_frequent":
            vc = present.value_counts(sort=False)
            counts = vc if counts is None else counts.add(vc, fill_value=0)
    info: dict[str, Any]
    if rule.strategy == "median" and count:
        rate = min(1.0, max_rows / count)
        sample, start = [], 0
        for values in batches():
            present = values.dropna()
            sample.append(present[sampler(start, len(present), rate)])
            start += len(present)
        info = transform.impute_value(pd.concat(sample), rule, kind)
        if rate < 1.0:
            info["sampled_values"] = int(sum(len(x) for x in sample))
    elif rule.strategy == "mean" and count:
        info = transform.imputation_info(rule, kind, total / count)
    elif rule.strategy == "most_frequent" and counts is not None and len(counts):
        info = transform.imputation_info(rule, kind, transform.most_frequent(counts.astype("int64")))
    else:  # constant, or no value present
        info = transform.impute_value(pd.Series([], dtype="float64"), rule, kind)
    info["filled"] = missing if info["value"] is not None else 0
    return info
