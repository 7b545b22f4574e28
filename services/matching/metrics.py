"""The matching service's Prometheus metrics (on the app's own registry).

Labels are bounded: combined authority codes (six), fixed outcome names. No person,
volunteer or match id is ever a label.
"""

from __future__ import annotations

from prometheus_client import Gauge

from shared.telemetry import Telemetry


class MatchingMetrics:
    def __init__(self, telemetry: Telemetry) -> None:
        registry = telemetry.registry
        self.pool_size = Gauge(
            "matching_pool_size",
            "People in the matching pool per combined authority: participants waiting, "
            "volunteers with free capacity and a valid DBS check.",
            ("combined_authority", "kind"),
            registry=registry,
        )
        self.runs = telemetry.counter(
            "matching_optimiser_runs_total",
            "Optimiser runs per combined authority, by outcome (committed / conflict).",
            ("combined_authority", "outcome"),
        )
        self.run_proposals = telemetry.histogram(
            "matching_run_proposals",
            "Proposals made per optimiser run.",
            ("combined_authority",),
            buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
        )
        self.proposals = telemetry.counter(
            "matching_proposals_total", "Match proposals made.", ("combined_authority",)
        )
        self.optimiser_duration = telemetry.histogram(
            "matching_optimiser_duration_seconds",
            "Time spent scoring and solving one optimiser run.",
            ("combined_authority",),
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.decisions = telemetry.counter(
            "matching_decisions_total",
            "Coordinator decisions and endings, by kind (accepted / declined / ended).",
            ("kind",),
        )
        self.opt_ins = telemetry.counter(
            "matching_opt_ins_total",
            "ParticipantOptedIn events consumed, by outcome (new / duplicate).",
            ("outcome",),
        )
        self.dbs_expired = telemetry.counter(
            "matching_volunteer_dbs_expired_total", "Volunteers paused by a lapsed DBS check."
        )
        self.check_ins = telemetry.counter(
            "matching_check_ins_total",
            "Meetings of confirmed pairs recorded (new ones only), by who recorded them "
            "(coordinator / volunteer).",
            ("recorded_by",),
        )
