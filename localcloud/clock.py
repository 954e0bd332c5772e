"""The local cloud's simulated clock: wall time plus an offset that only tests (and ``run_until_idle``) move forward.

    cloud.clock.now()          # epoch seconds, simulated
    cloud.clock.advance(3600)  # one hour later, at once

Why an offset rather than a frozen clock: everything the emulator does not simulate (a Lambda subprocess, a job
process, botocore) keeps running in real time, and their timestamps stay close to the simulated ones; the simulated
time only ever moves *forward*, by real time passing and by ``advance``.

Who reads it (the patches are installed by :func:`patch_moto_time`, recorded by ``patches.registry.replace`` so
``patches.registry.suspended()`` gives plain moto back):

* moto's SQS backend (``moto.sqs.models.unix_time`` / ``unix_time_millis``): message visibility (``ReceiveMessage``'s
  visibility timeout, ``ChangeMessageVisibility``, ``DelaySeconds``), sent/first-receive timestamps, retention. So a
  visibility timeout the trigger sets expires on the simulated clock: a one-hour backoff takes ``advance(3600)``.
* moto's CloudWatch backend (``moto.cloudwatch.models.utcnow``): the default timestamp of ``PutMetricData`` datapoints
  and alarm state timestamps.
* moto's SageMaker backend (``moto.sagemaker.models.utcnow``): job creation/end times.
* ``localcloud`` itself: event ``time`` fields, async-invocation event age and retry times, job start/end times, the
  AWS/SQS and AWS/Lambda datapoints (``service_metrics``), alarm evaluation (``alarms.evaluate_all(now=...)``).

The clock is process-wide (moto's state is process-wide too): :data:`CLOCK` is the one instance; a ``LocalCloud``
exposes it as ``cloud.clock`` and resets its offset when it stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class SimClock:
    """Simulated epoch time = wall time + offset; ``advance`` moves it forward (never back)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float, float], None]] = []

    @property
    def offset(self) -> float:
        """Seconds the simulated clock is ahead of wall time."""
        return self._offset

    def now(self) -> float:
        """Simulated time, epoch seconds."""
        return time.time() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def datetime(self) -> datetime:
        """Simulated time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), tz=UTC)

    def utcnow_naive(self) -> datetime:
        """Simulated time as a naive UTC datetime (moto's ``utcnow()`` convention)."""
        return self.datetime().replace(tzinfo=None)

    def iso(self) -> str:
        return self.datetime().strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> float:
        """Move the simulated clock ``seconds`` forward (>= 0); returns the new time. Listeners are told
        ``(old, new)`` (e.g. the AWS/SQS metric sampler)."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward (advance({seconds}))")
        with self._lock:
            old = self.now()
            self._offset += float(seconds)
            new = self.now()
        for listener in list(self._listeners):
            listener(old, new)
        return new

    def advance_to(self, epoch_seconds: float) -> float:
        """Advance to ``epoch_seconds`` if it is in the (simulated) future; returns the new time."""
        return self.advance(max(0.0, epoch_seconds - self.now()))

    def on_advance(self, listener: Callable[[float, float], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[float, float], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def reset(self) -> None:
        """Back to wall time (a stopped LocalCloud; the next one starts at wall time)."""
        with self._lock:
            self._offset = 0.0
            self._listeners.clear()


#: The process-wide simulated clock (moto's backends are process-wide).
CLOCK = SimClock()


def _unix_time(dt: datetime | None = None) -> float:
    if dt is not None:  # moto's helper converts a given naive-UTC datetime
        return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).timestamp()
    return CLOCK.now()


def _unix_time_millis(dt: datetime | None = None) -> float:
    return _unix_time(dt) * 1000.0


def _utcnow() -> datetime:
    return CLOCK.utcnow_naive()


def patch_moto_time() -> None:
    """Point moto's SQS, CloudWatch and SageMaker time sources at :data:`CLOCK` (idempotent).

    moto 5.2.5 imports ``unix_time``/``unix_time_millis``/``utcnow`` from ``moto.core.utils`` into each service's
    ``models`` module, so replacing the names there changes only those services.
    """
    from localcloud.patches import registry

    if not registry.once("sim_clock"):
        return
    import moto.cloudwatch.models as cw_models
    import moto.sagemaker.models as sm_models
    import moto.sqs.models as sqs_models

    registry.replace(sqs_models, "unix_time", _unix_time)
    registry.replace(sqs_models, "unix_time_millis", _unix_time_millis)
    registry.replace(cw_models, "utcnow", _utcnow)
    registry.replace(sm_models, "utcnow", _utcnow)
