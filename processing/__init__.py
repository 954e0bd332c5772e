"""Config-driven data-quality transform that runs inside a SageMaker Processing job (pandas/numpy/pyarrow only)."""

from __future__ import annotations

__version__ = "0.1.0"
