"""A generated real-world-shaped dataset: flights departing New York in 2013, shaped like the public nycflights13
table (``python -m processing.sample --shape flights --rows N --seed S --output FILE``). Vectorised numpy + Arrow,
deterministic per seed, every column as text (missing = empty CSV field).

What it holds, so the job's types, derived features and rules have something real to work on:

- dates and times: ``year, month, day`` and ``flight_date`` (``2013-03-01``), ``time_hour`` (``2013-03-01
  05:00:00``, the scheduled hour, local time without offset), clock times as ``HHMM`` integers;
- a boolean: ``cancelled`` (``true``/``false``);
- structured missingness: a cancelled flight has no ``dep_time, dep_delay, arr_time, arr_delay, air_time``; a
  diverted one (not cancelled) has its ``dep_*`` and ``arr_time`` but no ``arr_delay``/``air_time``; ``tailnum``
  is missing for ~30% of the cancelled flights and ~0.2% of the others;
- invalid values (``invalid_rate`` of the cells of each affected column): ``air_time`` ``unknown``, ``distance``
  with a thousands separator (``1,089``), ``flight_date`` ``2013-02-30``, ``cancelled`` ``maybe``;
- rule violations: negative ``distance`` (~0.1% of the rows), unknown carrier codes (``ZZ``, ``XX``: ~0.1%),
  malformed ``tailnum`` (lowercase or without the leading ``N``: ~0.2%);
- exact duplicates: ~1% of the rows copy an earlier row in every column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

COLUMNS = ("year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
           "arr_delay", "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "time_hour",
           "flight_date", "cancelled")
CARRIERS = ("UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN", "VX", "FL", "AS", "F9", "YV", "HA", "OO")
CARRIER_WEIGHTS = (58665, 54635, 54173, 48110, 32729, 26397, 20536, 18460, 12275, 5162, 3260, 714, 685, 601, 342, 32)
UNKNOWN_CARRIERS = ("ZZ", "XX")
ORIGINS = ("EWR", "JFK", "LGA")
ORIGIN_WEIGHTS = (0.36, 0.33, 0.31)
ORIGIN_OFFSET = (0, 12, 4)  # miles added to each destination's distance
# destination -> distance from EWR in miles (roughly)
DESTS = {"ATL": 746, "ORD": 719, "LAX": 2454, "BOS": 200, "MCO": 937, "CLT": 529, "SFO": 2565, "FLL": 1065,
         "MIA": 1085, "DCA": 199, "DTW": 488, "DFW": 1372, "RDU": 416, "TPA": 997, "DEN": 1605, "IAH": 1400,
         "MSP": 1008, "PBI": 1023, "BNA": 748, "LAS": 2227, "SJU": 1608, "IAD": 212, "BUF": 282, "PHX": 2133,
         "CLE": 404, "STL": 872, "SEA": 2402, "MSY": 1167, "PIT": 319, "HNL": 4963}
CANCELLED_RATE = 0.02
DIVERTED_RATE = 0.003
TAILNUM_MISSING_CANCELLED = 0.3
TAILNUM_MISSING_OTHER = 0.002
NEGATIVE_DISTANCE_RATE = 0.001
UNKNOWN_CARRIER_RATE = 0.001
MALFORMED_TAILNUM_RATE = 0.002
DUPLICATE_RATE = 0.01


def _text(values: npt.NDArray[Any]) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _null_where(arr: pa.Array, mask: npt.NDArray[np.bool_]) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), arr)


def _replace_where(arr: pa.Array, mask: npt.NDArray[np.bool_], value: pa.Array | str) -> pa.Array:
    return pc.if_else(pa.array(mask), value, arr)


def _clock(minutes: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Minutes after midnight (any integer) -> HHMM clock time of that day, midnight as 2400 like nycflights13."""
    m = np.mod(minutes, 1440)
    hhmm = (m // 60) * 100 + m % 60
    return np.where(hhmm == 0, 2400, hhmm)


def _tail_pool(rng: np.random.Generator, size: int) -> npt.NDArray[Any]:
    digits = rng.integers(100, 1000, size)
    letters = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ"))
    first = letters[rng.integers(0, len(letters), size)]
    second = letters[rng.integers(0, len(letters), size)]
    return np.char.add(np.char.add(np.char.add("N", digits.astype(str)), first), second)


def generate(rows: int, seed: int = 42, invalid_rate: float = 0.001) -> pa.Table:
    """The flights dataset as an Arrow table of strings (nulls = empty CSV fields); see the module docstring."""
    rng = np.random.default_rng(seed)
    n = rows
    day_of_year = rng.integers(0, 365, n)
    dates = np.datetime64("2013-01-01", "D") + day_of_year
    months = dates.astype("datetime64[M]")
    month = months.astype(np.int64) % 12 + 1
    day = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    sched_dep_min = rng.integers(5 * 12, 23 * 12, n) * 5  # 05:00 .. 22:55 in 5-minute steps
    origin_idx = rng.choice(len(ORIGINS), n, p=ORIGIN_WEIGHTS)
    dest_names = np.array(list(DESTS))
    dest_idx = rng.integers(0, len(dest_names), n)
    distance = np.array(list(DESTS.values()))[dest_idx] + np.array(ORIGIN_OFFSET)[origin_idx]
    weights = np.array(CARRIER_WEIGHTS, dtype=float)
    carrier = np.array(CARRIERS)[rng.choice(len(CARRIERS), n, p=weights / weights.sum())]
    flight = rng.integers(1, 6000, n)
    tailnum = _tail_pool(rng, 4000)[rng.integers(0, 4000, n)]
    late = rng.random(n) < 0.3
    dep_delay = np.where(late, rng.exponential(40, n) + 1, rng.normal(-3, 4, n)).round().astype(np.int64)
    air_time = np.maximum(20, distance / 7.5 + rng.normal(15, 6, n)).round().astype(np.int64)
    arr_delay = (dep_delay + rng.normal(-6, 10, n)).round().astype(np.int64)
    sched_arr_min = sched_dep_min + air_time + 25 + (rng.integers(0, 4, n) * 5)
    dep_time = _clock(sched_dep_min + dep_delay)
    arr_time = _clock(sched_arr_min + arr_delay)
    hour = sched_dep_min // 60
    date_text = pc.strftime(pa.array(dates.astype("datetime64[s]")), format="%Y-%m-%d")
    hour_text = pc.utf8_lpad(_text(hour), 2, "0")
    time_hour = pc.binary_join_element_wise(date_text, " ", hour_text, ":00:00", "")

    cancelled = rng.random(n) < CANCELLED_RATE
    diverted = ~cancelled & (rng.random(n) < DIVERTED_RATE)
    u = rng.random(n)
    tail_missing = np.where(cancelled, u < TAILNUM_MISSING_CANCELLED, u < TAILNUM_MISSING_OTHER)

    cols: dict[str, pa.Array] = {
        "year": _text(np.full(n, 2013)), "month": _text(month), "day": _text(day),
        "dep_time": _null_where(_text(dep_time), cancelled),
        "sched_dep_time": _text(_clock(sched_dep_min)),
        "dep_delay": _null_where(_text(dep_delay), cancelled),
        "arr_time": _null_where(_text(arr_time), cancelled),
        "sched_arr_time": _text(_clock(sched_arr_min)),
        "arr_delay": _null_where(_text(arr_delay), cancelled | diverted),
        "carrier": pa.array(carrier), "flight": _text(flight),
        "tailnum": _null_where(pa.array(tailnum), tail_missing),
        "origin": pa.array(np.array(ORIGINS)[origin_idx]), "dest": pa.array(dest_names[dest_idx]),
        "air_time": _null_where(_text(air_time), cancelled | diverted),
        "distance": _text(distance),
        "time_hour": time_hour, "flight_date": date_text,
        "cancelled": pa.array(np.where(cancelled, "true", "false")),
    }

    # Rule violations: plausible-looking values a data person's rules should catch.
    negative = rng.random(n) < NEGATIVE_DISTANCE_RATE
    cols["distance"] = _replace_where(cols["distance"], negative, _text(-distance))
    unknown = rng.random(n) < UNKNOWN_CARRIER_RATE
    cols["carrier"] = _replace_where(cols["carrier"], unknown,
                                     pa.array(np.array(UNKNOWN_CARRIERS)[rng.integers(0, 2, n)]))
    malformed = (rng.random(n) < MALFORMED_TAILNUM_RATE) & ~tail_missing
    bad_tails = np.where(rng.random(n) < 0.5, np.char.lower(tailnum), np.char.lstrip(tailnum, "N"))
    cols["tailnum"] = _replace_where(cols["tailnum"], malformed, pa.array(bad_tails))

    # Invalid values: present texts that are not of the column's type.
    if invalid_rate > 0:
        invalid = {"air_time": "unknown", "flight_date": "2013-02-30", "cancelled": "maybe"}
        for col, word in invalid.items():
            mask = (rng.random(n) < invalid_rate) & (~cancelled if col == "air_time" else True)
            cols[col] = _replace_where(cols[col], mask, word)
        mask = rng.random(n) < invalid_rate
        thousands = pc.binary_join_element_wise(_text(distance // 1000), ",", pc.utf8_lpad(_text(distance % 1000),
                                                                                           3, "0"), "")
        cols["distance"] = _replace_where(cols["distance"], mask & (distance >= 1000), thousands)

    # Exact duplicates: rows that copy every column of an earlier row.
    src = np.arange(n)
    if n:
        is_dup = rng.random(n) < DUPLICATE_RATE
        is_dup[0] = False
        dup_rows = np.flatnonzero(is_dup)
        src[dup_rows] = (rng.random(len(dup_rows)) * dup_rows).astype(np.int64)
        while True:  # a copy of a copy points at the original row
            resolved = src[src]
            if np.array_equal(resolved, src):
                break
            src = resolved
    take = pa.array(src)
    return pa.table({name: cols[name].take(take) for name in COLUMNS})
