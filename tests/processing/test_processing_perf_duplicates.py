"""duplicate_masks (Arrow codes, narrowing to rows that can still repeat) == pandas ``duplicated(keep="first")``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from processing import transform


@pytest.mark.parametrize("seed", range(8))
def test_duplicate_masks_equal_pandas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    words = np.array(["a", "b", "", "long text " * 20, "ü", "x" * 300], dtype=object)
    s = words[rng.integers(0, len(words), n)]
    s[rng.random(n) < 0.2] = None
    f = rng.choice([0.0, -0.0, 1.5, 2.0], n)
    f_mask = rng.random(n) < 0.2
    i = rng.integers(0, 1 + int(rng.integers(1, 50)), n)
    i_mask = rng.random(n) < 0.1
    cols = {
        "s": pa.array(s.tolist(), pa.string()),
        "f": pa.array(f, pa.float64(), mask=f_mask),
        "i": pa.array(i, pa.int64(), mask=i_mask),
        "u": pa.array(np.arange(n), pa.int64()),
    }
    frame = pd.DataFrame({
        "s": pd.Series(s, dtype=object),
        "f": pd.Series(np.where(f_mask, np.nan, f)),
        "i": pd.array(np.where(i_mask, 0, i), dtype="Int64"),
        "u": np.arange(n),
    })
    frame.loc[i_mask, "i"] = pd.NA
    groups = [["s", "f", "i", "u"], ["s", "f", "i"], ["f"], ["i", "s"], []]
    got = transform.duplicate_masks(cols, groups, n)
    for names, (count, mask) in zip(groups, got, strict=True):
        want_count, want = transform.duplicate_count(frame, names)
        assert count == want_count, names
        np.testing.assert_array_equal(mask, want)
