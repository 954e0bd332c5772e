"""What a run may use: the machine's memory (``available_memory``). Standard library only."""

from __future__ import annotations

from pathlib import Path


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
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return min(limits) if limits else 1 << 62

