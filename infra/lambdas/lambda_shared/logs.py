"""One JSON object per line on stdout: the Lambdas' decision log (Logs Insights parses the fields)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


class DecisionLog:
    """Logs decisions (``started``, ``refused``, ``published``, ...) of one function as JSON lines.

    Attributes:
        logger: the ``logging`` logger (``dq.trigger`` / ``dq.metrics``; tests attach handlers to it).
        request_id: the current invocation's ``aws_request_id`` (set by the handler entry).
    """

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.request_id = ""
        # Our own stdout handler, not the runtime's: one JSON object per line whatever the function's log format.
        if not self.logger.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)
            self.logger.propagate = False

    def __call__(self, decision: str, level: int = logging.INFO, **fields: Any) -> None:
        """Log one decision with its fields (and the level and request id) as one JSON line."""
        record = {"level": logging.getLevelName(level), "decision": decision, "request_id": self.request_id,
                  **fields}
        self.logger.log(level, json.dumps(record, ensure_ascii=False, default=str))


_LOGS: dict[str, DecisionLog] = {}


def decision_log(name: str) -> DecisionLog:
    """The :class:`DecisionLog` of logger ``name`` (one per name, shared by a function's modules)."""
    if name not in _LOGS:
        _LOGS[name] = DecisionLog(name)
    return _LOGS[name]
