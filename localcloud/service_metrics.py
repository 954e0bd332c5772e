"""The AWS service metrics the deployed alarms and dashboard read, written into moto's CloudWatch at simulated time.

moto publishes no ``AWS/*`` metrics, so without this the stack's DLQ and Lambda alarms could never fire locally.

**AWS/SQS** (dimension ``QueueName``), per queue, one datapoint per *simulated minute* (SQS DG "Available CloudWatch
metrics for Amazon SQS": metrics are collected and pushed to CloudWatch at one-minute intervals; older pages said five
minutes): ``ApproximateNumberOfMessagesVisible``, ``ApproximateNumberOfMessagesNotVisible``,
``ApproximateNumberOfMessagesDelayed``, ``ApproximateAgeOfOldestMessage``. Samples are taken lazily: whenever the
local cloud pumps or the clock advances, every minute boundary passed since the last sample gets a datapoint, with
each message's visibility/delay evaluated *at that boundary* (so a message that becomes visible during an
``advance`` counts from its due minute on). Messages sent or deleted between two samples are seen as of the later
one. Not emulated: AWS stops publishing for a queue inactive for about six hours; here every queue is sampled.

**AWS/Lambda** (dimension ``FunctionName``), per invocation, stamped at the simulated time it ran (Lambda DG
"Types of metrics for Lambda functions"): ``Invocations`` 1, ``Errors`` 1 on a function error (0 otherwise),
``Duration`` (ms), and ``Throttles`` 1 for an invocation request refused for concurrency (``record_throttle``: an
injected 429 on ``lambda`` ``Invoke``, see LocalCloud._invoke). Lambda documents
``Invocations``/``Errors``/``Throttles`` as counts to read with ``Sum``; it does not document whether zero values are
published, so ``Throttles`` is only written when a throttle happens (the deployed alarms treat missing data as not
breaching, so either way evaluates the same).
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from typing import Any

from localcloud.clock import CLOCK, SimClock

SQS_PERIOD = 60  # seconds between AWS/SQS samples


def _naive(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC).replace(tzinfo=None)


class ServiceMetrics:
    """Writes AWS/SQS and AWS/Lambda datapoints into moto's CloudWatch backend (in-process: no API call, so an
    injected CloudWatch fault never hits the emulator's own bookkeeping)."""

    def __init__(self, account: str, region: str, clock: SimClock = CLOCK):
        self.account = account
        self.region = region
        self.clock = clock
        self._last_sqs_sample: float | None = None
        self._lock = threading.Lock()

    def _cloudwatch(self):
        from moto.cloudwatch.models import cloudwatch_backends

        return cloudwatch_backends[self.account][self.region]

    def _put(self, namespace: str, data: list[dict[str, Any]]) -> None:
        if data:
            self._cloudwatch().put_metric_data(namespace, data)

    # ------------------------------------------------------------------ AWS/SQS
    def start(self) -> None:
        """Begin SQS sampling at the current simulated minute."""
        with self._lock:
            self._last_sqs_sample = math.floor(self.clock.now() / SQS_PERIOD) * SQS_PERIOD

    def sample_sqs(self, until: float | None = None) -> int:
        """One datapoint per queue and metric for every minute boundary in (last sample, until]; returns the number
        of boundaries sampled."""
        until = self.clock.now() if until is None else until
        with self._lock:
            if self._last_sqs_sample is None:
                self._last_sqs_sample = math.floor(until / SQS_PERIOD) * SQS_PERIOD - SQS_PERIOD
            first = self._last_sqs_sample + SQS_PERIOD
            boundaries = []
            t = first
            while t <= until:
                boundaries.append(t)
                t += SQS_PERIOD
            if boundaries:
                self._last_sqs_sample = boundaries[-1]
        if not boundaries:
            return 0
        from moto.sqs.models import sqs_backends

        queues = list(sqs_backends[self.account][self.region].queues.values())
        data: list[dict[str, Any]] = []
        for t in boundaries:
            for q in queues:
                data.extend(self._queue_datapoints(q, t))
        self._put("AWS/SQS", data)
        return len(boundaries)

    @staticmethod
    def queue_counts(queue: Any, at: float) -> dict[str, float]:
        """Visible / not visible / delayed counts and the oldest message's age of a moto queue at epoch ``at``."""
        at_ms = at * 1000.0
        visible = not_visible = delayed = 0
        oldest: float | None = None
        for m in list(queue._messages):
            if m.delayed_until and at_ms < m.delayed_until:
                delayed += 1
            elif at_ms > m.visible_at:  # moto: visible when now > visible_at
                visible += 1
            else:
                not_visible += 1
            sent = float(m.sent_timestamp or at_ms)
            if sent <= at_ms:
                oldest = sent if oldest is None else min(oldest, sent)
        return {
            "ApproximateNumberOfMessagesVisible": visible,
            "ApproximateNumberOfMessagesNotVisible": not_visible,
            "ApproximateNumberOfMessagesDelayed": delayed,
            "ApproximateAgeOfOldestMessage": 0.0 if oldest is None else max(0.0, (at_ms - oldest) / 1000.0),
        }

    def _queue_datapoints(self, queue: Any, at: float) -> list[dict[str, Any]]:
        ts = _naive(at)
        dims = [{"Name": "QueueName", "Value": queue.name}]
        out = []
        for name, value in self.queue_counts(queue, at).items():
            unit = "Seconds" if name == "ApproximateAgeOfOldestMessage" else "Count"
            out.append({"MetricName": name, "Value": float(value), "Dimensions": dims, "Timestamp": ts, "Unit": unit})
        return out

    # ------------------------------------------------------------------ AWS/Lambda
    def record_invocation(self, function_name: str, *, error: bool, duration_s: float, at: float | None = None) -> None:
        ts = _naive(self.clock.now() if at is None else at)
        dims = [{"Name": "FunctionName", "Value": function_name}]
        self._put("AWS/Lambda", [
            {"MetricName": "Invocations", "Value": 1.0, "Dimensions": dims, "Timestamp": ts, "Unit": "Count"},
            {"MetricName": "Errors", "Value": 1.0 if error else 0.0, "Dimensions": dims, "Timestamp": ts,
             "Unit": "Count"},
            {"MetricName": "Duration", "Value": round(duration_s * 1000.0, 3), "Dimensions": dims, "Timestamp": ts,
             "Unit": "Milliseconds"},
        ])

    def record_throttle(self, function_name: str, at: float | None = None) -> None:
        ts = _naive(self.clock.now() if at is None else at)
        self._put("AWS/Lambda", [{"MetricName": "Throttles", "Value": 1.0, "Timestamp": ts, "Unit": "Count",
                                  "Dimensions": [{"Name": "FunctionName", "Value": function_name}]}])

    def record_count(self, function_name: str, metric: str, at: float | None = None) -> None:
        """One AWS/Lambda count datapoint (``DeadLetterErrors``, ``DestinationDeliveryFailures``)."""
        ts = _naive(self.clock.now() if at is None else at)
        self._put("AWS/Lambda", [{"MetricName": metric, "Value": 1.0, "Timestamp": ts, "Unit": "Count",
                                  "Dimensions": [{"Name": "FunctionName", "Value": function_name}]}])
