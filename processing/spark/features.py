"""The Spark engine's side of issue 14's types and derived features (``processing/types.py``,
``processing/features.py``): what it does not reproduce yet is refused by name (``unsupported``), so the engines
never differ silently."""

from __future__ import annotations

from processing.config import DatasetConfig
from processing.types import NEW_TYPES


def unsupported(config: DatasetConfig) -> str | None:
    """Why the Spark engine cannot give the default engine's result for ``config``'s types and features, naming the
    key, or None."""
    for col, kind in config.columns.items():
        if kind in NEW_TYPES:
            return (f"columns.{col}: type {kind!r} is not supported by the Spark engine yet; use the default engine "
                    f"or type 'string'")
    return None
