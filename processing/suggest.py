"""``python -m processing suggest --input FILE [--rows N] [--dataset NAME] [--format csv|parquet]``: a dataset config
suggested from the data (docs/processing.md "Suggesting a config").

Reads at most ``--rows`` rows (default 100,000: memory bounded by that, not by the file), profiles every column and
prints a config on standard output (diagnostics on standard error) that validates, runs on the file it came from,
and passes that file's own quality gate. Everything it writes is config syntax documented in docs/processing.md.

Inference, per column, over the present cells (the job's missing markers removed), first match wins; a type is
taken when at least ``VALID_SHARE`` of the present cells parse as it (the rest are the job's ``invalid`` values):
``boolean`` (true/false, t/f, yes/no, y/n, 1/0, with at least one non-digit token: a 0/1 column stays ``integer``),
``integer`` / ``float`` (the job's own number parser; integers with a leading zero such as ``007`` stay
``string``: codes, not quantities), ``date`` / ``datetime`` (ISO-8601, else one of ``DATE_FORMATS`` /
``DATETIME_FORMATS``), ``json`` (JSON objects), else ``string``.
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import io
import json
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from processing import config as config_mod
from processing import rawfile, transform, typecast
from processing.drift_config import ID_LIKE
from processing.errors import EmptyInputError, InputError, ProcessingError
from processing.types import TypeOptions

log = logging.getLogger("processing.suggest")

# What the suggestion may use (issue 14's syntax lands on several branches; each switch names one part of it).
SUGGEST_NEW_TYPES = True  # boolean / date / datetime column types (else such columns are suggested as string)
SUGGEST_INDICATORS = True  # derived kind missing_indicator
SUGGEST_RULES = True  # the top-level rules list
SUGGEST_GROUP_EXTRAS = True  # group statistics p90, missing and "values": "observed"

DEFAULT_ROWS = 100_000
VALID_SHARE = 0.8  # share of the present cells that must parse for a type to be inferred
LOW_CARDINALITY = 50  # at most this many distinct values (each seen twice on average): a categorical text column
INDICATOR_MIN_SHARE = 0.01  # an imputed column gets a missing indicator from this share of missing/invalid cells
RANGE_MARGIN = 0.1  # range rules: the observed span widened by this share on each side
JSON_OBJECT_SHARE = 0.5  # a text column is JSON when VALID_SHARE of its cells start with "{" and this share
# parses as objects (the rest is the job's malformed JSON, counted, not invalid)
JSON_FIELD_MIN_SHARE = 0.5  # JSON keys present in at least this share of the objects become extracted fields
JSON_FIELDS_MAX = 10
PATTERN_SHAPES = 3  # a pattern rule: at most this many value shapes ...
PATTERN_COVERAGE = 0.95  # ... that cover this share of the values of a text column
PATTERN_MIN_VALUES = 20
PATTERN_MAX_LENGTH = 40
GROUP_AGGREGATED_COLUMNS = 8
BATCH_ROWS = 65_536
BOOLEAN_TRUE = ("true", "t", "yes", "y", "1")
BOOLEAN_FALSE = ("false", "f", "no", "n", "0")
DATE_FORMATS = ("%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y")
DATETIME_FORMATS = ("%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M",
                    "%Y/%m/%d %H:%M:%S")
LEADING_ZERO = r"^[+-]?0\d"
NAME_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


# ----------------------------------------------------------------------------------------------- reading the sample
@dataclass
class Sample:
    """Up to ``rows`` parsed rows of the input, every column as text (null = empty field), and what was skipped."""

    names: list[str]
    table: pa.Table
    parse_errors: int = 0  # records with the wrong number of fields (the job rejects them)
    invalid_utf8: int = 0  # rows holding bytes that are not UTF-8 (the job rejects them; left out of the table)
    complete: bool = True  # the whole input was read
    files: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        n: int = self.table.num_rows
        return n


class _Utf8Text(io.RawIOBase):
    """A binary stream re-encoded as UTF-8, undecodable bytes replaced by U+FFFD (the job rejects such rows; the
    suggestion only needs their other cells), so the CSV reader never fails on them."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = b""
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending and not self.done:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                self.pending, self.done = self.decoder.decode(b"", final=True).encode("utf-8"), True
            else:
                self.pending = self.decoder.decode(chunk).encode("utf-8")
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def _csv_batches(path: Path, errors: list[int]) -> Iterator[pa.Table]:
    with path.open("rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    names = rawfile.read_header(path, compressed)

    def on_invalid(_row: Any) -> str:
        errors[0] += 1
        return "skip"

    opener: Any = gzip.open if compressed else open
    with opener(path, "rb") as raw:
        reader = pacsv.open_csv(
            io.BufferedReader(_Utf8Text(raw), 1 << 20),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
        empty = True
        for batch in reader:
            empty = False
            yield pa.Table.from_batches([batch])
        if empty:  # a header and no rows: the columns are still known
            yield pa.table({n: pa.array([], pa.string()) for n in names})


def _parquet_batches(path: Path) -> Iterator[pa.Table]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path.name}: cannot read Parquet ({exc})") from exc
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        columns = []
        for col in batch.columns:
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            columns.append(col.cast(pa.string()))  # the job reads Parquet values as their text too
        names = [n.lstrip("\ufeff").strip() for n in batch.schema.names]
        yield pa.table(columns, names=names)


def read_sample(inputs: Sequence[Path], rows: int = DEFAULT_ROWS, fmt: str | None = None) -> Sample:
    """The first ``rows`` parsed rows of ``inputs`` (in order), read block by block: memory is bounded by ``rows``.

    ``fmt`` (``csv`` / ``parquet``) overrides the detection by magic bytes. Files after the first must have the
    first one's columns (others are skipped with a diagnostic).
    """
    tables: list[pa.Table] = []
    names: list[str] | None = None
    got = 0
    errors = [0]
    complete = True
    used: list[str] = []
    for path in inputs:
        if got >= rows:
            complete = False
            break
        if path.stat().st_size == 0:
            log.warning("%s: empty file, skipped", path.name)
            continue
        with path.open("rb") as f:
            magic = f.read(4)
        parquet = fmt == "parquet" if fmt else magic == b"PAR1"
        batches = _parquet_batches(path) if parquet else _csv_batches(path, errors)
        try:
            for table in batches:
                table = table.rename_columns([n.lstrip("\ufeff").strip() for n in table.column_names])
                if names is None:
                    names = list(table.column_names)
                elif list(table.column_names) != names:
                    log.warning("%s: other columns than %s, skipped", path.name, used[0])
                    break
                if path.name not in used:
                    used.append(path.name)
                take = min(table.num_rows, rows - got)
                tables.append(table.slice(0, take))
                got += take
                if got >= rows:
                    complete = take == table.num_rows and next(batches, None) is None
                    break
        except pa.ArrowInvalid as exc:
            raise InputError(f"{path.name}: cannot parse ({exc})") from exc
    if names is None:
        raise EmptyInputError("no readable input file (empty files only)")
    table = (pa.concat_tables(tables) if tables
             else pa.table({n: pa.array([], pa.string()) for n in names}))
    if table.num_rows == 0:
        raise EmptyInputError("no data rows in the input (header only): nothing to suggest from")
    replaced = np.zeros(table.num_rows, dtype=bool)  # U+FFFD: a byte that was not UTF-8 (see _Utf8Text)
    for col in table.columns:
        replaced |= pc.fill_null(pc.match_substring(transform.to_array(col), "\ufffd"), False).to_numpy(
            zero_copy_only=False)
    if replaced.any():
        table = table.filter(pa.array(~replaced))
    if table.num_rows == 0:
        raise EmptyInputError("no usable data rows in the input: nothing to suggest from")
    return Sample(names, table.combine_chunks(), errors[0], int(replaced.sum()), complete, used)


# -------------------------------------------------------------------------------------------------- type inference
def _array(values: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return transform.to_array(values)
    return pa.array(list(values), pa.string())


def _matches(values: pa.Array, pattern: str) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(values, pattern), False)


def _share(mask: pa.Array, n: int) -> float:
    return (pc.sum(mask).as_py() or 0) / n if n else 0.0


def boolean_mask(present: pa.Array) -> pa.Array:
    """Cells the boolean type parses (case-insensitive tokens after stripping spaces)."""
    tokens = pc.utf8_lower(pc.utf8_trim_whitespace(present))
    return pc.fill_null(pc.is_in(tokens, value_set=pa.array(BOOLEAN_TRUE + BOOLEAN_FALSE)), False)


def date_mask(present: pa.Array, fmt: str | None) -> pa.Array:
    """Cells that are a valid date: ISO-8601 when ``fmt`` is None, else ``fmt``, parsed by the job's own parser
    (``processing/typecast.py``: range-checked, so ``2013-02-30`` is not a date)."""
    return pc.invert(typecast.coerce(present, "date", TypeOptions(format=fmt))[1])


def datetime_mask(present: pa.Array, fmt: str | None) -> pa.Array:
    """Cells that are a valid date and time (ISO-8601 when ``fmt`` is None: ``T`` or space, seconds, fraction and
    offset optional), by the job's own parser."""
    return pc.invert(typecast.coerce(present, "datetime", TypeOptions(format=fmt))[1])


def _json_objects(present: pa.Array) -> tuple[np.ndarray[Any, Any], Counter[str]]:
    """Which cells hold a JSON object (``json.loads`` semantics, as the job), and how often each top-level key
    appears."""
    keys: Counter[str] = Counter()
    ok = np.zeros(len(present), dtype=bool)
    starts = _matches(pc.utf8_ltrim_whitespace(present), r"^\{").to_numpy(zero_copy_only=False)
    texts = present.to_pylist()
    for i in np.flatnonzero(starts):
        try:
            value = json.loads(texts[i])
        except ValueError:
            continue
        if isinstance(value, dict):
            ok[i] = True
            keys.update(value.keys())
    return ok, keys


def infer_type(values: pa.Array | pa.ChunkedArray | Sequence[str | None],
               missing_values: Sequence[str] = config_mod.DEFAULT_MISSING_VALUES) -> tuple[str, str | None]:
    """The column type of ``values`` (raw cell texts, None = empty) and its strptime format (None = ISO or not a
    date): ``boolean``, ``integer``, ``float``, ``date``, ``datetime``, ``json`` or ``string`` (see the module
    docstring for the rule)."""
    arr = transform.mark_missing(_array(values), tuple(missing_values))
    present = arr.drop_null()
    n = len(present)
    if n == 0:
        return "string", None
    bools = boolean_mask(present)
    if _share(bools, n) >= VALID_SHARE:
        digits = pc.is_in(pc.utf8_trim_whitespace(present), value_set=pa.array(["0", "1"]))
        if not pc.all(pc.or_(digits, pc.invert(bools))).as_py():
            return "boolean", None
    floats = transform.coerce(present, "float")[1]
    if _share(pc.invert(floats), n) >= VALID_SHARE:
        numbers = pc.filter(present, pc.invert(floats))
        integers = transform.coerce(numbers, "integer")[1]
        if not pc.any(integers).as_py():
            if pc.any(_matches(pc.utf8_trim_whitespace(numbers), LEADING_ZERO)).as_py():
                return "string", None
            return "integer", None
        return "float", None
    if _share(date_mask(present, None), n) >= VALID_SHARE:
        return "date", None
    if _share(datetime_mask(present, None), n) >= VALID_SHARE:
        return "datetime", None
    head = present.slice(0, 2000)
    for kind, formats, mask in (("date", DATE_FORMATS, date_mask), ("datetime", DATETIME_FORMATS, datetime_mask)):
        shares = [(_share(mask(head, f), len(head)), -i, f) for i, f in enumerate(formats)]
        best = max(shares)
        if best[0] >= VALID_SHARE and _share(mask(present, best[2]), n) >= VALID_SHARE:
            return kind, best[2]
    starts = _matches(pc.utf8_ltrim_whitespace(present), r"^\{")
    if _share(starts, n) >= VALID_SHARE and _json_objects(head)[0].mean() >= JSON_OBJECT_SHARE:
        return "json", None
    return "string", None


# ------------------------------------------------------------------------------------------------------ profiling
@dataclass
class ColumnProfile:
    """One column of the sample under its suggested type."""

    name: str
    type: str
    format: str | None
    rows: int
    missing: int  # empty or a missing marker
    invalid: int  # present but not of the type (the job counts and then treats them as missing)
    distinct: int  # distinct valid values (typed: 7 and 7.0 are one integer)
    values: list[str] = field(default_factory=list)  # the distinct valid texts when at most LOW_CARDINALITY
    minimum: float | None = None
    maximum: float | None = None
    most_frequent: str | None = None
    json_keys: list[tuple[str, int]] = field(default_factory=list)  # (key, objects holding it), most common first
    json_objects: int = 0
    pattern: str | None = None  # a regular expression most values match (see shape_pattern), and the share
    pattern_misses: float = 0.0  # of the valid values that do not

    @property
    def valid(self) -> int:
        return self.rows - self.missing - self.invalid

    @property
    def unique(self) -> bool:
        """Every row holds a valid value and no two are equal (what a ``unique`` rule needs: nulls compare equal)."""
        return self.valid == self.rows and self.distinct == self.rows and self.rows >= 2

    @property
    def low_cardinality(self) -> bool:
        return self.type == "string" and 1 <= self.distinct <= LOW_CARDINALITY and self.distinct * 2 <= self.valid


def valid_mask(present: pa.Array, kind: str, fmt: str | None) -> pa.Array:
    """Which present cells are valid values of ``kind``."""
    if kind in config_mod.NUMERIC_TYPES:
        return pc.invert(transform.coerce(present, kind)[1])
    if kind == "boolean":
        return boolean_mask(present)
    if kind == "date":
        return date_mask(present, fmt)
    if kind == "datetime":
        return datetime_mask(present, fmt)
    if kind == "json":
        return pa.array(_json_objects(present)[0])
    return pa.array(np.ones(len(present), dtype=bool))


def typed(values: pa.Array, kind: str, fmt: str | None) -> pa.Array:
    """``values`` (missing already null) as the values the job compares: numbers parsed, booleans as true/false,
    invalid cells null; other types as their text."""
    if kind in config_mod.NUMERIC_TYPES:
        return transform.coerce(values, kind)[0]
    if kind == "boolean":
        tokens = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        return pc.if_else(pc.is_in(tokens, value_set=pa.array(BOOLEAN_TRUE)), True,
                          pc.if_else(pc.is_in(tokens, value_set=pa.array(BOOLEAN_FALSE)), False,
                                     pa.scalar(None, pa.bool_())))
    if kind in ("date", "datetime", "json"):
        ok = valid_mask(pc.fill_null(values, ""), kind, fmt)
        return pc.if_else(pc.and_(ok, pc.is_valid(values)), values, pa.scalar(None, pa.string()))
    return values


def profile_column(name: str, values: pa.Array | Sequence[str | None], kind: str, fmt: str | None = None,
                   missing_values: Sequence[str] = config_mod.DEFAULT_MISSING_VALUES) -> ColumnProfile:
    arr = transform.mark_missing(_array(values), tuple(missing_values))
    rows = len(arr)
    present = arr.drop_null()
    ok = valid_mask(present, kind, fmt)
    valid_text = pc.filter(present, ok)
    typed_valid = typed(valid_text, kind, fmt)
    distinct_values = pc.unique(typed_valid)
    prof = ColumnProfile(name, kind, fmt, rows, arr.null_count, len(present) - len(valid_text), len(distinct_values))
    if prof.distinct <= LOW_CARDINALITY:
        prof.values = sorted(str(v) for v in pc.unique(valid_text).to_pylist())
    if len(valid_text):
        counts = pc.value_counts(valid_text)
        top = int(np.argmax(counts.field("counts").to_numpy()))
        prof.most_frequent = str(counts.field("values")[top].as_py())
    if kind in config_mod.NUMERIC_TYPES and len(typed_valid):
        lo_hi = pc.min_max(typed_valid)
        prof.minimum, prof.maximum = float(lo_hi["min"].as_py()), float(lo_hi["max"].as_py())
    if kind == "string" and not prof.low_cardinality:
        found = shape_pattern(valid_text)
        if found is not None:
            prof.pattern, prof.pattern_misses = found
    if kind == "json":
        ok_objects, keys = _json_objects(present)
        prof.json_objects = int(ok_objects.sum())
        prof.json_keys = sorted(keys.items(), key=lambda kv: (-kv[1], kv[0]))
    return prof


def _shape_regex(shape: str) -> str:
    """``A99-aa`` -> ``[A-Z]\\d{2}\\x2d[a-z]{2}``: runs of one class as a counted class; other ASCII characters as
    ``\\xNN`` (the same in Python, RE2 and Java regular expressions), other characters as themselves."""
    out = []
    for char, run in ((m.group(0)[0], len(m.group(0))) for m in re.finditer(r"(.)\1*", shape, re.DOTALL)):
        piece = {"A": "[A-Z]", "a": "[a-z]", "9": r"\d"}.get(char)
        if piece is None:
            piece = f"\\x{ord(char):02x}" if ord(char) < 128 else char
            out.append(piece * run)
        else:
            out.append(piece + (f"{{{run}}}" if run > 1 else ""))
    return "".join(out)


def shape_pattern(values: pa.Array) -> tuple[str, float] | None:
    """A pattern for a text column whose values share a few shapes (``N123AB`` -> letter, 3 digits, 2 letters):
    the at most ``PATTERN_SHAPES`` most common shapes (capital -> ``A``, small letter -> ``a``, digit -> ``9``, other
    characters as they are), if they cover ``PATTERN_COVERAGE`` of the values; with the share they miss. None for free
    text, short samples and long values."""
    if len(values) < PATTERN_MIN_VALUES:
        return None
    shapes = pc.replace_substring_regex(values, "[A-Z]", "A")
    shapes = pc.replace_substring_regex(pc.replace_substring_regex(shapes, "[a-z]", "a"), "[0-9]", "9")
    counts = pc.value_counts(shapes)
    order = np.argsort(-counts.field("counts").to_numpy(), kind="stable")
    top = [(str(counts.field("values")[int(i)].as_py()), int(counts.field("counts")[int(i)].as_py()))
           for i in order[:PATTERN_SHAPES]]
    chosen, covered = [], 0
    for shape, count in top:
        chosen.append(shape)
        covered += count
        if covered >= PATTERN_COVERAGE * len(values):
            break
    if covered < PATTERN_COVERAGE * len(values) or any(len(s) > PATTERN_MAX_LENGTH or not s for s in chosen):
        return None
    pattern = "^(?:" + "|".join(sorted(_shape_regex(s) for s in chosen)) + ")$"
    return pattern, 1 - covered / len(values)


def profile(sample: Sample, *, new_types: bool | None = None) -> list[ColumnProfile]:
    """Infer and profile every column; with ``new_types`` False (default ``SUGGEST_NEW_TYPES``) boolean, date and
    datetime columns are profiled as ``string``."""
    allow = SUGGEST_NEW_TYPES if new_types is None else new_types
    profiles = []
    for name in sample.names:
        values = transform.to_array(sample.table.column(name))
        kind, fmt = infer_type(values)
        if kind in ("boolean", "date", "datetime") and not allow:
            log.info("%s: looks like %s; suggested as string (this build's suggest has SUGGEST_NEW_TYPES off)",
                     name, kind)
            kind, fmt = "string", None
        profiles.append(profile_column(name, values, kind, fmt))
    return profiles


# ------------------------------------------------------------------------------------------------------ the config
def _floor2(x: float) -> float:
    return math.floor(x * 100 + 1e-9) / 100


def _ceil_rate(rate: float, n: int, complete: bool) -> float:
    """A threshold above an estimated rate: sampling error (3 standard errors) when the sample is not the whole
    input, a fifth more and half a percent for the estimate itself, rounded up to a whole percent."""
    if not complete and n:
        rate += 3 * math.sqrt(max(rate * (1 - rate), 1 / n) / n)
    return min(1.0, math.ceil((rate * 1.2 + 0.005) * 100 - 1e-9) / 100)


def _nice(value: float, step_of: float, up: bool) -> float:
    """``value`` rounded outward to three significant digits of ``step_of``."""
    if step_of <= 0 or not math.isfinite(step_of):
        step_of = abs(value) or 1.0
    exponent = math.floor(math.log10(step_of)) - 2
    step = 10.0 ** exponent
    rounded = (math.ceil if up else math.floor)(value / step - (1e-9 if up else -1e-9)) * step
    return float(round(rounded, max(0, -exponent)))


def range_bounds(prof: ColumnProfile) -> tuple[float, float]:
    """The observed [min, max] widened by ``RANGE_MARGIN`` of the span on each side (a constant column: by a
    tenth of that share of the value, at least 1), rounded outward; not below 0 when no value is; whole numbers for
    integer columns."""
    assert prof.minimum is not None and prof.maximum is not None
    lo, hi = prof.minimum, prof.maximum
    span = hi - lo
    margin = RANGE_MARGIN * span if span > 0 else max(abs(hi) * RANGE_MARGIN / 10, 1.0)
    low, high = _nice(lo - margin, span or margin, False), _nice(hi + margin, span or margin, True)
    if lo >= 0 > low:
        low = 0.0
    if prof.type == "integer":
        low, high = float(math.floor(low)), float(math.ceil(high))
    return low, high


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() and abs(x) < 1e15 else x


def _rule_name(*parts: str) -> str:
    name = NAME_SAFE.sub("_", "_".join(parts))
    return name[:64] or "rule"


def _fresh(name: str, taken: set[str]) -> str:
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _key_duplicates(sample: Sample, profiles: list[ColumnProfile], keys: list[str]) -> int:
    columns = {p.name: typed(transform.mark_missing(transform.to_array(sample.table.column(p.name)),
                                                    config_mod.DEFAULT_MISSING_VALUES), p.type, p.format)
               for p in profiles if p.name in keys}
    return transform.duplicate_masks(columns, [keys], sample.rows)[0][0]


def _id_column(profiles: list[ColumnProfile]) -> ColumnProfile | None:
    """A row identifier: an id-like name (as drift's defaults read it), integer or string, unique and complete."""
    for p in profiles:
        if ID_LIKE.search(p.name) and p.type in ("integer", "string") and p.unique:
            return p
    return None


def suggest(sample: Sample, *, dataset: str | None = None, source: str = "the input",
            profiles: list[ColumnProfile] | None = None) -> dict[str, Any]:
    """The suggested config document for ``sample`` (see docs/processing.md "Suggesting a config"); ``profiles``:
    :func:`profile` of it, when already computed."""
    profiles = profile(sample) if profiles is None else profiles
    by_name = {p.name: p for p in profiles}
    n = sample.rows
    id_col = _id_column(profiles)
    caveat = (f"the whole file ({n} rows)" if sample.complete else f"its first {n} rows")
    doc: dict[str, Any] = {
        "description": (f"Suggested by python -m processing suggest{f' for dataset {dataset}' if dataset else ''} "
                        f"from {source}, {caveat}. Types, ranges, allowed values, uniqueness and thresholds describe "
                        "that sample only: review every entry before use (docs/processing.md, "
                        "'Suggesting a config')."),
        "columns": {p.name: ({"type": p.type, "format": p.format} if p.format else p.type) for p in profiles},
        "required_columns": list(sample.names),
    }
    if id_col is not None:
        doc["reject_rows_missing"] = [id_col.name]

    imputation: dict[str, Any] = {}
    fills: dict[str, str] = {}
    derived: list[dict[str, Any]] = []
    taken = set(sample.names)
    json_columns: dict[str, Any] = {}
    for p in profiles:
        if p.type != "json" or not p.json_objects:
            continue
        common = [(k, c) for k, c in p.json_keys if c >= JSON_FIELD_MIN_SHARE * p.json_objects] or p.json_keys[:1]
        fields: dict[str, Any] = {}
        for key, _count in common[:JSON_FIELDS_MAX]:
            out = re.sub(r"[^A-Za-z0-9_]", "_", key).strip("_") or "field"
            out = _fresh(out if out not in taken else f"{p.name}_{out}", taken)
            fields[out] = [key] if "." in key else key
        json_columns[p.name] = {"fields": fields}

    not_filled: list[str] = []
    for p in profiles:
        gaps = p.missing + p.invalid
        if gaps == 0 or (id_col is not None and p.name == id_col.name):
            continue
        if p.valid == 0:
            log.warning("%s: no valid value in the sample: left as it is (declare its type by hand)", p.name)
            continue
        share = gaps / p.rows
        filled = True
        if ID_LIKE.search(p.name):
            filled = False  # a made-up identifier would join the row to another one
        elif p.type in config_mod.NUMERIC_TYPES:
            imputation[p.name] = {"strategy": "median"}
        elif p.type == "boolean":
            imputation[p.name] = {"strategy": "most_frequent"}
        elif p.low_cardinality:
            fill = "Unknown"
            while fill in p.values:
                fill = f"({fill})"
            fills[p.name] = fill
        else:
            filled = False  # dates, JSON and free text: a made-up value would mislead; the indicator says it
        if SUGGEST_INDICATORS and (not filled or share >= INDICATOR_MIN_SHARE):
            derived.append({"name": _fresh(f"{p.name}_missing", taken), "kind": "missing_indicator",
                            "source": p.name})
        elif not filled:
            not_filled.append(p.name)
    if not_filled:
        log.info("left missing (no fill, no indicator): %s", ", ".join(not_filled))
    if imputation:
        doc["imputation"] = imputation
    if fills:
        doc["categorical_fills"] = fills
    if json_columns:
        doc["json_columns"] = json_columns
    if derived:
        doc["derived"] = derived

    groups = _group_statistics(profiles, id_col)
    if groups:
        doc["group_statistics"] = groups
    keys = [name for name in sample.names if id_col is None or name != id_col.name]
    doc["duplicates"] = {"key_columns": keys, "drop": "none"}
    if SUGGEST_RULES:
        doc["rules"] = _rules(profiles, id_col, sample)
    doc["drift"] = {
        "numeric": [p.name for p in _measures(profiles, id_col)],
        "categorical": [p.name for p in profiles if (p.low_cardinality or p.type == "boolean") and p is not id_col],
        "json_fields": bool(json_columns),
    }
    doc["quality_thresholds"] = _thresholds(sample, profiles, by_name, {*imputation, *fills}, keys, json_columns)
    return doc


def _measures(profiles: list[ColumnProfile], id_col: ColumnProfile | None) -> list[ColumnProfile]:
    """Numeric columns that measure something: not the row id, not id-like, not constant on the sample."""
    return [p for p in profiles if p.type in config_mod.NUMERIC_TYPES and p is not id_col
            and not ID_LIKE.search(p.name) and p.distinct >= 2]


def _group_statistics(profiles: list[ColumnProfile], id_col: ColumnProfile | None) -> list[dict[str, Any]]:
    keys = [p for p in profiles if p.low_cardinality and p.distinct >= 2 and p is not id_col]
    if not keys:
        return []
    key = max(keys, key=lambda p: (p.valid, -profiles.index(p)))
    numeric = _measures(profiles, id_col)[:GROUP_AGGREGATED_COLUMNS]
    aggregations: dict[str, list[str]] = {}
    for p in numeric:
        aggregations[p.name] = ["count", "mean", "median", "min", "max"]
        if SUGGEST_GROUP_EXTRAS:
            aggregations[p.name] += ["p90", "missing"]
    if not aggregations:
        other = next((p for p in profiles if p is not key), None)
        if other is None:
            return []
        aggregations[other.name] = ["count", "nunique"]
    spec: dict[str, Any] = {"name": _rule_name(key.name, "statistics"), "group_by": [key.name],
                            "aggregations": aggregations}
    if SUGGEST_GROUP_EXTRAS:
        spec["values"] = "observed"
    return [spec]


def _rules(profiles: list[ColumnProfile], id_col: ColumnProfile | None, sample: Sample) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    names: set[str] = set()
    for p in profiles:
        share = p.valid / p.rows if p.rows else 0.0
        if not sample.complete:  # a lower confidence bound: the rest of the file may be a little less complete
            share -= 3 * math.sqrt(max(share * (1 - share), 1 / p.rows) / p.rows)
        min_share = _floor2(max(share, 0.0))
        if min_share > 0:
            rules.append({"name": _fresh(_rule_name(p.name, "complete"), names), "type": "completeness",
                          "column": p.name, "min_share": min_share, "action": "fail"})
        if p.type in config_mod.NUMERIC_TYPES and not ID_LIKE.search(p.name) and p.minimum is not None:
            low, high = range_bounds(p)
            rules.append({"name": _fresh(_rule_name(p.name, "range"), names), "type": "range", "column": p.name,
                          "min": _number(low), "max": _number(high), "action": "warn"})
        if p.low_cardinality and p is not id_col:
            rules.append({"name": _fresh(_rule_name(p.name, "allowed"), names), "type": "allowed_values",
                          "column": p.name, "values": p.values, "action": "warn"})
        if p.pattern is not None:
            rule: dict[str, Any] = {"name": _fresh(_rule_name(p.name, "pattern"), names), "type": "pattern",
                                    "column": p.name, "pattern": p.pattern, "action": "warn"}
            if p.pattern_misses > 0:  # the values of other shapes: warn when there are more of them
                rule["max_share"] = _ceil_rate(p.pattern_misses, p.valid, sample.complete)
            rules.append(rule)
        if p.unique and p.type in ("integer", "string"):
            rules.append({"name": _fresh(_rule_name(p.name, "unique"), names), "type": "unique",
                          "columns": [p.name], "action": "fail" if p is id_col else "warn"})
    return rules


def _thresholds(sample: Sample, profiles: list[ColumnProfile], by_name: dict[str, ColumnProfile],
                imputed: set[str], keys: list[str], json_columns: dict[str, Any]) -> dict[str, float]:
    """``quality_thresholds`` the sample passes: each figure estimated as the job computes it, then raised
    (:func:`_ceil_rate`)."""
    rows_out = sample.rows
    rejected = sample.parse_errors + sample.invalid_utf8
    rows_in = rows_out + rejected
    missing_after = sum(0 if p.name in imputed else p.missing + (0 if p.type == "json" else p.invalid)
                        for p in profiles)
    json_cells = sum(by_name[c].rows - by_name[c].missing for c in json_columns)
    malformed = sum(by_name[c].invalid for c in json_columns)
    duplicates = _key_duplicates(sample, profiles, keys) if keys else 0  # (the rejected rows are not in it)
    complete = sample.complete
    return {
        "max_missing_rate_after": _ceil_rate(missing_after / (rows_out * len(profiles)), rows_out * len(profiles),
                                             complete),
        "max_rejected_rate": _ceil_rate(rejected / rows_in, rows_in, complete),
        "max_malformed_json_rate": _ceil_rate(malformed / json_cells if json_cells else 0.0, json_cells, complete),
        "max_duplicate_rate": _ceil_rate(duplicates / rows_in, rows_in, complete),
        "min_rows_out": 1,
    }


# ------------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m processing suggest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True,
                        help="input file or folder (CSV, gzip CSV, Parquet), read in the job's order")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"read at most this many rows (default {DEFAULT_ROWS:,}; memory grows with it)")
    parser.add_argument("--dataset", default=None, help="dataset name, mentioned in the config's description")
    parser.add_argument("--format", choices=("csv", "parquet"), default=None,
                        help="input format (default: detected from the file's first bytes, as the job does)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the suggested config (JSON) on stdout; 0 on success, 2 on bad input (message on stderr)."""
    args = build_parser().parse_args(argv)
    if args.rows < 1:
        print("error: --rows must be at least 1", file=sys.stderr)
        return 2
    if args.dataset is not None and not config_mod.DATASET_NAME.fullmatch(args.dataset):
        print(f"error: --dataset {args.dataset!r}: names must match {config_mod.DATASET_NAME.pattern}", file=sys.stderr)
        return 2
    try:
        inputs = rawfile.list_inputs(args.input)
        sample = read_sample(inputs, args.rows, args.format)
        profiles = profile(sample)
        doc = suggest(sample, dataset=args.dataset, source=args.input.name, profiles=profiles)
        config_mod.validate(json.loads(json.dumps(doc)), source="<suggested>")
    except ProcessingError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return exc.exit_code
    log.info("read %d usable rows from %s%s; left out as the job rejects them: %d with the wrong number of "
             "fields, %d not UTF-8", sample.rows, ", ".join(sample.files),
             "" if sample.complete else f" (stopped at --rows {args.rows})", sample.parse_errors, sample.invalid_utf8)
    for p in profiles:
        log.info("  %s: %s%s, %d missing, %d invalid, %d distinct", p.name, p.type,
                 f" ({p.format})" if p.format else "", p.missing, p.invalid, p.distinct)
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return 0
