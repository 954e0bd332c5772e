"""Dataset generators (vectorised): ``python -m processing.sample --rows 20000 --seed 42 --out FILE`` writes the
reference dataset; ``--shape flights`` the real-world-shaped flights table (``processing/sample_flights.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

FIRST = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
         "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
        "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin"]
STREETS = ["Main St", "Oak Ave", "Pine Rd", "Maple Dr", "Cedar Ln", "Elm St", "Washington Blvd", "Lake View Rd"]
CITIES = ["Springfield", "Rivertown", "Lakeside", "Hillview", "Fairfield", "Georgetown"]
DEPARTMENTS = ["Engineering", "Sales", "Marketing", "HR", "Finance"]
THEMES = ["dark", "light"]
SKILLS = ["python", "sql", "excel", "spark", "negotiation", "design"]
MALFORMED = ['{"address": "12 Broken St", "phone": "555-0000"', "{'address': 'single quotes'}",
             "not a json", '{"address": }', "[1, 2, 3]"]

MISSING_RATE = {"age": 0.05, "salary": 0.05, "profile": 0.03, "department": 0.04}
MALFORMED_RATE = 0.02
DUPLICATE_RATE = 0.02


def _pick(rng: np.random.Generator, choices: list[str], n: int) -> pa.Array:
    idx = pa.array(rng.integers(0, len(choices), n).astype(np.int32))
    return pa.DictionaryArray.from_arrays(idx, pa.array(choices)).cast(pa.string())


def _text(values: npt.NDArray[Any]) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def generate(rows: int, seed: int = 42, invalid_rate: float = 0.001) -> pa.Table:
    """The reference dataset as an Arrow table of strings (nulls = empty CSV fields).

    Columns: id, name, age, salary, profile (JSON with address/phone/email, nested preferences and skills),
    department. Quality problems: missing values (age, salary, profile, department), ~2% malformed or non-object
    JSON, ~2% duplicates of earlier records with a new id, and ``invalid_rate`` text in age/salary.
    """
    rng = np.random.default_rng(seed)
    n = rows
    name = _join(_pick(rng, FIRST, n), " ", _pick(rng, LAST, n))
    age = rng.integers(22, 66, n)
    salary = np.round(rng.normal(65000, 15000, n).clip(20000, 150000), 2)
    house = rng.integers(1, 9999, n)
    address = _join(_text(house), " ", _pick(rng, STREETS, n), ", ", _pick(rng, CITIES, n))
    address = pc.if_else(pa.array(rng.random(n) < 0.02), pa.scalar(None, pa.string()), address)  # absent field
    phone = _join("555-", _text(rng.integers(1000, 10000, n)))
    user = pc.utf8_lower(pc.replace_substring(name, " ", "."))
    email = _join(user, _text(rng.integers(1, 100, n)), "@example.com")
    address_json = pc.fill_null(_join('"address": "', address, '", '), "")
    profile = _join("{", address_json, '"phone": "', phone, '", "email": "', email,
                    '", "preferences": {"newsletter": ', _pick(rng, ["true", "false"], n),
                    ', "theme": "', _pick(rng, THEMES, n), '"}, "skills": ["', _pick(rng, SKILLS, n), '", "',
                    _pick(rng, SKILLS, n), '"]}')
    profile = pc.if_else(pa.array(rng.random(n) < MALFORMED_RATE), _pick(rng, MALFORMED, n), profile)
    department = _pick(rng, DEPARTMENTS, n)

    columns = {"name": name, "age": _text(age), "salary": _text(salary), "profile": profile,
               "department": department}
    for col, rate in MISSING_RATE.items():
        columns[col] = pc.if_else(pa.array(rng.random(n) < rate), pa.scalar(None, pa.string()), columns[col])
    if invalid_rate > 0:
        for col, word in (("age", "unknown"), ("salary", "not available")):
            columns[col] = pc.if_else(pa.array(rng.random(n) < invalid_rate), word, columns[col])

    # Duplicates: rows that copy every field of an earlier row except the id.
    is_dup = rng.random(n) < DUPLICATE_RATE
    is_dup[:1] = False  # the first row is never a copy (and 0 rows stay 0 rows)
    src = np.arange(n)
    dup_rows = np.flatnonzero(is_dup)
    src[dup_rows] = (rng.random(len(dup_rows)) * dup_rows).astype(np.int64)
    while True:  # resolve chains (a duplicate of a duplicate) to the original row, log(depth) passes
        resolved = src[src]
        if np.array_equal(resolved, src):
            break
        src = resolved
    take = pa.array(src)
    table = {"id": _text(np.arange(1, n + 1))}
    table.update({col: arr.take(take) for col, arr in columns.items()})
    return pa.table(table)


def write(table: pa.Table, out: Path) -> None:
    """Write CSV (gzip when the name ends in .gz); missing values are empty fields."""
    out.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(quoting_style="needed")
    if out.suffix == ".gz":
        with pa.CompressedOutputStream(str(out), "gzip") as stream:
            pacsv.write_csv(table, stream, write_options=options)
    else:
        pacsv.write_csv(table, str(out), write_options=options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processing.sample", description=__doc__)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--invalid-rate", type=float, default=0.001,
                        help="share of age/salary cells holding text such as 'unknown' (default 0.001)")
    parser.add_argument("--out", "--output", dest="out", type=Path, required=True,
                        help="CSV file to write (.csv or .csv.gz)")
    parser.add_argument("--shape", choices=("reference", "flights"), default="reference",
                        help="reference (default: id, name, age, salary, profile, department) or flights (dates, "
                             "a boolean, structured missingness, rule violations; processing/sample_flights.py)")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    if args.shape == "flights":
        from processing import sample_flights

        write(sample_flights.generate(args.rows, args.seed, args.invalid_rate), args.out)
    else:
        write(generate(args.rows, args.seed, args.invalid_rate), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
