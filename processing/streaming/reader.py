"""Reading a CSV input block by block for the streaming path: pyarrow's incremental reader over a paced source
(``Paced``: at most ``READ_AHEAD`` blocks ahead), unparsable lines collected per file."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from processing.errors import InputError

READ_AHEAD = 3  # CSV blocks the reader thread may read beyond the one being processed


@dataclass
class SourceFile:
    path: Path
    names: list[str]
    compressed: bool
    size: int
    sha256: str = ""
    parse_errors: list[str] = field(default_factory=list)  # unparsable lines not yet moved to the work folder
    unparsed: int = 0  # unparsable lines moved to the work folder (``_Run._flush_unparsed``)
    rows: int = 0


class Paced:
    """File-like source for pyarrow's CSV reader, whose background thread would otherwise read up to ~32 blocks ahead
    of the consumer (32 x block size of memory): a read waits while ``READ_AHEAD`` blocks are already ahead (a block
    of unparsable lines still gives a batch, an empty one, so it counts as consumed). While the reader is being
    opened (``opening``), ``open_csv`` reads on until it has a batch with rows, through every leading block of
    unparsable lines, before the consumer can take anything: then a read also goes ahead when at least half a block
    of unparsable lines was reported since the previous read (``invalid_row``), or such a file would wait for the
    timeout at every block.
    The wait has a timeout, so a record longer than several blocks still makes progress (the pacing is then loose;
    ``timeouts`` counts them)."""

    def __init__(self, raw: Any, ahead: int, block_size: int):
        self.raw, self.ahead, self.block_size = raw, ahead, block_size
        self.reads = self.consumed = 0
        self.stopped, self.opening = False, True
        self.invalid = self.invalid_at_read = 0  # bytes of unparsable lines reported: in all, at the last read
        self.timeouts = 0
        self.cv = threading.Condition()

    def read(self, n: int = -1) -> bytes:
        with self.cv:
            if not self.cv.wait_for(lambda: self.stopped or self.reads <= self.consumed + self.ahead
                                    or (self.opening and 2 * (self.invalid - self.invalid_at_read) >= self.block_size),
                                    timeout=5.0):
                self.timeouts += 1
            if self.stopped:
                return b""
            self.reads += 1
            self.invalid_at_read = self.invalid
        data: bytes = self.raw.read(n)
        return data

    def invalid_row(self, size: int) -> None:
        with self.cv:
            self.invalid += size
            self.cv.notify_all()

    def opened(self) -> None:
        with self.cv:
            self.opening = False
            self.cv.notify_all()

    def consumed_one(self) -> None:
        with self.cv:
            self.consumed += 1
            self.cv.notify_all()

    def stop(self) -> None:
        """Let the reader thread finish (it sees end of input), e.g. when the consumer gives up early."""
        with self.cv:
            self.stopped = True
            self.cv.notify_all()

    @property
    def closed(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.raw.close()


def open_blocks(f: SourceFile, block_size: int) -> Generator[pa.Table, None, None]:
    """The file's parsed records, block by block (all columns as strings, names as the in-memory reader has them)."""
    f.parse_errors.clear()

    def on_invalid(row: Any) -> str:
        f.parse_errors.append(row.text)
        source.invalid_row(len(row.text) + 1)
        return "skip"

    source = Paced(pa.input_stream(str(f.path), compression="gzip" if f.compressed else None), READ_AHEAD, block_size)
    try:
        reader = pacsv.open_csv(
            pa.PythonFile(source, mode="r"),
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in f.names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        source.opened()
        clean = [n.strip().lstrip("\ufeff") for n in reader.schema.names]
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            source.consumed_one()
            yield pa.Table.from_batches([batch]).rename_columns(clean)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{f.path.name}: cannot parse CSV ({exc})") from exc
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise InputError(f"{f.path.name}: cannot read ({exc})") from exc
    finally:
        source.stop()
