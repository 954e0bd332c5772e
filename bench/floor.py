"""The I/O floor: pyarrow reads the CSV and writes it as Parquet, no transform at all."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def _header(path: Path) -> list[str]:
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8-sig")
    return next(csv.reader([first]))


def run(input_path: Path, output_dir: Path) -> None:
    # One read, every column as text. Type inference would fail on the reference data ("unknown" in age, PERF-NOTES
    # pitfall 8) after reading part of the file, and a retry would double the floor's time.
    names = _header(input_path)
    table = pacsv.read_csv(
        input_path, convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, output_dir / "data.parquet")


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]))
