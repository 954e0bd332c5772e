"""The input files as raw bytes, standard library only: which files a run reads, their header row, and their sha256
with a UTF-8 check in the same pass.

Shared by both engines: the default engine (``processing/io.py``, ``processing/streaming``) and the Spark engine
(``processing/spark``, which must not load pyarrow), so a file is listed, checked and hashed the same way by both.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import zlib
from pathlib import Path
from typing import Any

from processing.errors import EmptyInputError, InputError


def list_inputs(path: Path) -> list[Path]:
    """The input files: ``path`` itself, or every non-hidden regular file below it in sorted order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"input path does not exist: {path}")
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise EmptyInputError(f"no input files under {path}")
    return files


def _check_utf8(decoder: codecs.IncrementalDecoder, data: bytes) -> None:
    """Feed ``data`` to the UTF-8 ``decoder`` (raises UnicodeDecodeError); pure-ASCII data with no partial
    character pending is valid as it stands, and is checked without decoding it."""
    if data.isascii() and not decoder.getstate()[0]:
        return
    decoder.decode(data)


def file_digest(path: Path | Any, *, check_utf8: bool = False, compressed: bool = False) -> tuple[str, bool]:
    """sha256 of the file and, in the same pass, whether its (decompressed) text is valid UTF-8."""
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if compressed else None
    ok = check_utf8
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
            if ok:
                try:
                    data = chunk
                    while inflater is not None and data:  # concatenated gzip members
                        out = inflater.decompress(data)
                        _check_utf8(decoder, out)
                        data = inflater.unused_data
                        if data:
                            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    if inflater is None:
                        _check_utf8(decoder, chunk)
                except (UnicodeDecodeError, zlib.error):
                    ok = False
    if ok:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            ok = False
    return h.hexdigest(), ok


def read_header(path: Path | Any, compressed: bool) -> list[str]:
    """The header row of ``path`` (a ``Path``, or anything with ``name`` and ``open("rb")``, e.g. the Spark
    engine's ``HadoopFile``)."""
    try:
        with path.open("rb") as raw, (gzip.GzipFile(fileobj=raw) if compressed else raw) as f:
            head = f.read(1 << 20)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path.name}: cannot read ({exc})") from exc
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise EmptyInputError(f"{path.name}: empty file (no header row)")
    try:
        row = next(csv.reader(io.StringIO(text)))
    except (StopIteration, csv.Error) as exc:
        raise InputError(f"{path.name}: cannot parse the header row ({exc})") from exc
    names = [n.strip() for n in row]
    if any(not n for n in names):
        raise InputError(f"{path.name}: empty column name in header at position {names.index('') + 1}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path.name}: duplicate column names in header: {', '.join(dupes)}")
    return names
