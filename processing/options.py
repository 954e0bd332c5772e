"""How a run is carried out (``RunOptions``) and what it may use (``available_memory``). Standard library only.

``processing/cli.py`` builds the options from its flags and the environment (it is the only module that reads the
environment; see ``cli.run_options`` for the precedence); ``pipeline.run`` passes them down to the mode choice and
the streaming path. An in-process caller gets the defaults below."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    """Settings that change how a run works, not what it computes (outputs are the same in every mode, and exact
    while the rows fit ``max_rows``).

    Attributes:
        mode: ``memory``, ``streaming`` or ``auto`` (streaming when the input is large compared with the memory
            available; ``pipeline.choose_mode``).
        streaming_threshold: ``auto`` streams above this many input bytes (None: the lower of
            ``pipeline.STREAMING_MIN_BYTES`` and the available memory over ``pipeline.MEMORY_PER_INPUT_BYTE``).
        max_rows: streaming: rows whose per-row state is held in memory at once (None or 0: from the available
            memory, ``streaming.default_max_rows``).
        work_dir: streaming: where its temporary work files go (None: the output folder's parent).
        block_size: streaming: CSV block size in bytes (None or 0: ``streaming.BLOCK_SIZE``).
        code_version: recorded in metrics.json ``code_version``.
    """

    mode: str = "auto"
    streaming_threshold: int | None = None
    max_rows: int | None = None
    work_dir: Path | None = None
    block_size: int | None = None
    code_version: str | None = None


def available_memory() -> int:
    """Bytes this process may still use: the cgroup limit (containers) or MemAvailable, whichever is lower."""
    limits = []
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    with contextlib.suppress(OSError):
        limits.extend(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemAvailable:"))
    return min(limits) if limits else 1 << 62

