"""Computing issue 14's derived features over a frame (``rows.transform_rows`` calls these for both paths):
missing indicators, expressions, date parts, and the edges and labels of quantile bins. Config side:
``processing/features.py``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing import expressions
from processing.features import Derived


def missing_indicator(missing: npt.NDArray[Any] | pd.Series, index: pd.Index) -> pd.Series:
    """True where the source was missing or invalid before imputation; never null (Arrow ``bool``)."""
    values = missing.to_numpy(dtype=bool) if isinstance(missing, pd.Series) else np.asarray(missing, dtype=bool)
    return pd.Series(values, index=index, dtype="bool")


def date_part(values: pd.Series, part: str) -> pd.Series:
    """A part of each date/datetime (UTC): year, month, day, weekday (Monday=0), hour, minute, dayofyear (1-366);
    Int64, missing where the value is."""
    arr = pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    fn = {"year": pc.year, "month": pc.month, "day": pc.day, "weekday": pc.day_of_week, "hour": pc.hour,
          "minute": pc.minute, "dayofyear": pc.day_of_year}[part]
    out = fn(arr).cast(pa.int64())
    return pd.Series(out.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), index=values.index,
                     dtype="Int64")


def expression(d: Derived, frame: pd.DataFrame) -> pd.Series:
    assert d.expression is not None
    return expressions.evaluate(d.expression, frame)


def numbers(values: pd.Series) -> npt.NDArray[Any]:
    """Present values of a numeric Series as float64."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    out: npt.NDArray[Any] = x[~np.isnan(x)]
    return out


def quantile_edges(present: npt.NDArray[Any], probabilities: tuple[float, ...]) -> list[float]:
    """The data's quantiles at ``probabilities`` (numpy's default linear interpolation), equal edges dropped as
    ``pd.qcut(duplicates="drop")`` does; [] without values."""
    if present.size == 0:
        return []
    edges = np.quantile(present, np.asarray(probabilities, dtype="float64"))
    return list(dict.fromkeys(float(e) + 0.0 for e in edges))  # + 0.0: -0.0 and 0.0 are one edge


