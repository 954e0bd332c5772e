"""The generated flights dataset (``python -m processing.sample --shape flights``): shape, determinism, structured
missingness, invalid values, rule violations and duplicates; and the reference shape's output is unchanged."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest

from processing import sample, sample_flights

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def flights() -> dict[str, list[str | None]]:
    return sample_flights.generate(20000, seed=3).to_pydict()


def test_columns_and_rows(flights: dict[str, list[str | None]]) -> None:
    assert tuple(flights) == sample_flights.COLUMNS
    assert all(len(v) == 20000 for v in flights.values())


def test_deterministic_per_seed() -> None:
    a = sample_flights.generate(3000, seed=5)
    assert a.equals(sample_flights.generate(3000, seed=5))
    assert not a.equals(sample_flights.generate(3000, seed=6))


def test_cancelled_flights_miss_times_and_delays(flights: dict[str, list[str | None]]) -> None:
    cancelled = [c == "true" for c in flights["cancelled"]]
    assert 0.01 < sum(cancelled) / len(cancelled) < 0.03
    for col in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"):
        assert all(v is None for v, c in zip(flights[col], cancelled, strict=True) if c), col
    for col in ("dep_time", "dep_delay", "arr_time"):  # present for every flight that was not cancelled
        assert all(v is not None for v, c in zip(flights[col], cancelled, strict=True) if not c), col
    # diverted flights: departed and landed somewhere, no arr_delay/air_time
    diverted = [not c and a is None for c, a in zip(cancelled, flights["arr_delay"], strict=True)]
    assert sum(diverted) > 10
    assert all(t is None for t, d in zip(flights["air_time"], diverted, strict=True) if d)
    tail_missing = [t is None for t in flights["tailnum"]]
    share_cancelled = sum(m for m, c in zip(tail_missing, cancelled, strict=True) if c) / sum(cancelled)
    share_other = sum(m for m, c in zip(tail_missing, cancelled, strict=True) if not c) / (20000 - sum(cancelled))
    assert 0.2 < share_cancelled < 0.4 and share_other < 0.01


def test_values_are_well_formed_apart_from_the_planted_problems(flights: dict[str, list[str | None]]) -> None:
    for th, fd, y, m, d in zip(flights["time_hour"], flights["flight_date"], flights["year"], flights["month"],
                               flights["day"], strict=True):
        stamp = datetime.strptime(f"{th}+0000", "%Y-%m-%d %H:%M:%S%z")
        assert stamp.date() == date(int(str(y)), int(str(m)), int(str(d)))
        assert fd == stamp.date().isoformat() or fd == "2013-02-30"
    assert set(flights["cancelled"]) == {"true", "false", "maybe"}
    assert set(flights["origin"]) == set(sample_flights.ORIGINS)
    for col in ("dep_time", "arr_time", "sched_dep_time", "sched_arr_time"):
        times = [int(str(v)) for v in flights[col] if v is not None]
        assert all(1 <= t <= 2400 and t % 100 < 60 for t in times), col


def test_invalid_values_and_rule_violations_are_present(flights: dict[str, list[str | None]]) -> None:
    assert 5 <= flights["air_time"].count("unknown") <= 50
    assert 5 <= flights["flight_date"].count("2013-02-30") <= 50
    assert 5 <= flights["cancelled"].count("maybe") <= 50
    assert 2 <= sum(1 for v in flights["distance"] if v and "," in v) <= 50
    assert 5 <= sum(1 for v in flights["distance"] if v and v.startswith("-")) <= 50
    unknown = sum(1 for v in flights["carrier"] if v in sample_flights.UNKNOWN_CARRIERS)
    assert 5 <= unknown <= 50
    good = re.compile(r"^N\d{3}[A-Z]{2}$")
    malformed = [v for v in flights["tailnum"] if v is not None and not good.match(v)]
    assert 10 <= len(malformed) <= 80


def test_exact_duplicates(flights: dict[str, list[str | None]]) -> None:
    rows = list(zip(*flights.values(), strict=True))
    duplicates = len(rows) - len(set(rows))
    assert 100 <= duplicates <= 300


def test_empty_and_tiny() -> None:
    assert sample_flights.generate(0).num_rows == 0
    assert sample_flights.generate(1).num_rows == 1
    # the reference shape too (it raised IndexError for 0 rows)
    from processing import sample

    assert sample.generate(0, seed=1).num_rows == 0
    assert sample.generate(1, seed=1).column("id").to_pylist() == ["1"]


def test_command_line_writes_the_flights_shape(tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--shape", "flights", "--rows", "50", "--seed", "2",
                    "--output", str(out)], cwd=ROOT, check=True)
    assert out.read_text().splitlines()[0] == ",".join(f'"{c}"' for c in sample_flights.COLUMNS)
    assert len(out.read_text().splitlines()) == 51


def test_reference_shape_output_is_unchanged(tmp_path: Path) -> None:
    """The default shape's bytes are those of the generator before --shape existed (hash taken then)."""
    out = tmp_path / "r.csv"
    sample.main(["--rows", "500", "--seed", "42", "--out", str(out)])
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "545ea865979da750b24629e16156d5fca42a7caf5ef82ed206a4866cce6b9799"
    sample.write(sample.generate(3000, seed=7, invalid_rate=0.01), out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "62ec53c96f3f6c8de762734cc277f5cbba2676e8bba41fb0db99c67ceac78b55"
    assert pc.sum(pc.equal(sample.generate(10).column("id"), "1")).as_py() == 1
