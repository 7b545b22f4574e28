"""Prometheus metrics of the projection (registered on the service's own registry)."""

from __future__ import annotations

from shared.positions import log_resets_counter
from shared.telemetry import Telemetry

BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)


class ReportingMetrics:
    """Implements the projector's and the store's metrics ports."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._batch = telemetry.histogram(
            "reporting_projection_batch_size",
            "Records per batch taken from the broker by the projector.",
            buckets=BATCH_BUCKETS,
        )
        self._applied = telemetry.counter(
            "reporting_events_applied_total",
            "Events applied to the read models, by topic.",
            ("topic",),
        )
        self._skipped = telemetry.counter(
            "reporting_events_skipped_total",
            "Records that changed nothing: duplicate_offset (redelivered in the same log), "
            "duplicate_event_id (same ce_id seen before, e.g. re-published), ignored_type.",
            ("reason",),
        )
        self._log_resets = log_resets_counter(telemetry)
        self._write_ops = telemetry.counter(
            "reporting_db_write_operations_total",
            "Write operations sent to MongoDB, by collection (inside bulk writes).",
            ("collection",),
        )
        self._write_requests = telemetry.counter(
            "reporting_db_write_requests_total",
            "Bulk write requests (round trips) sent to MongoDB, by collection.",
            ("collection",),
        )

    def batch(self, size: int) -> None:
        self._batch.observe(size)

    def applied(self, topic: str, count: int) -> None:
        if count:
            self._applied.labels(topic).inc(count)

    def skipped(self, reason: str, count: int) -> None:
        if count:
            self._skipped.labels(reason).inc(count)

    def log_reset(self, topic: str, partition: int) -> None:
        self._log_resets.labels("reporting", topic, str(partition)).inc()

    def written(self, collection: str, operations: int) -> None:
        self._write_requests.labels(collection).inc()
        self._write_ops.labels(collection).inc(operations)
