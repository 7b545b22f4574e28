"""Settings of the matching service (environment prefix ``MATCHING_``, shared values also
under ``COMMONGROUND_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.matching.domain.health import HealthPolicy
from shared.outbox import OutboxSettings
from shared.settings import ServiceSettings

DEFAULT_WEIGHTS_FILE = Path(__file__).resolve().parent / "weights.toml"


class MatchingSettings(ServiceSettings, OutboxSettings):
    model_config = SettingsConfigDict(env_prefix="MATCHING_", populate_by_name=True)

    service_name: ClassVar[str] = "matching"

    http_port: int = 8002

    consumer_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a consumer group with no committed offset starts reading.",
    )

    consumer_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="Kafka consumer session timeout: how soon a dead consumer's partitions "
        "move to another replica.",
    )
    consumer_rebalance_timeout_ms: int | None = Field(
        default=None, ge=1000, description="How long a rebalance waits for members to rejoin."
    )
    consumer_max_records: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Most enrolment events taken from the broker as one batch (the log "
        "fence checks each partition's position once per batch; records are still "
        "handled one at a time).",
    )
    consumer_batch_timeout_ms: int = Field(
        default=50, ge=1, description="How long the batch subscriber waits to fill a batch."
    )

    weights_file: Path = Field(
        default=DEFAULT_WEIGHTS_FILE,
        description="TOML file of scorer weights: a [default] table and optional "
        "[authorities.<combined authority code>] overrides.",
    )

    batch_threshold: int = Field(
        default=20,
        ge=1,
        description="Run the optimiser for a combined authority as soon as this many people "
        "have entered its pool since the last run.",
    )
    batch_window_s: float = Field(
        default=300.0,
        gt=0,
        description="Otherwise run it when this long has passed since the last run and "
        "someone is waiting.",
    )
    scheduler_tick_s: float = Field(
        default=5.0, gt=0, description="How often the batch policy is evaluated."
    )
    dbs_check_interval_s: float = Field(
        default=3600.0, gt=0, description="How often lapsed DBS checks are looked for."
    )
    lease_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="Leases keep one replica at a time running a given authority's optimiser, "
        "and the DBS check.",
    )

    health_check_in_after_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="A confirmed match with no recorded meeting for more than this many days "
        "(counted from its confirmation while none is recorded) needs a check-in.",
    )
    health_lapsed_after_days: int = Field(
        default=28,
        ge=2,
        le=730,
        description="...and has lapsed after more than this many days without a meeting "
        "(must be greater than health_check_in_after_days).",
    )

    @model_validator(mode="after")
    def _health_thresholds_ordered(self) -> MatchingSettings:
        if self.health_lapsed_after_days <= self.health_check_in_after_days:
            raise ValueError(
                "MATCHING_HEALTH_LAPSED_AFTER_DAYS must be greater than "
                "MATCHING_HEALTH_CHECK_IN_AFTER_DAYS"
            )
        return self

    def health_policy(self) -> HealthPolicy:
        return HealthPolicy(
            check_in_after_days=self.health_check_in_after_days,
            lapsed_after_days=self.health_lapsed_after_days,
        )

    demo_coordinator_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "demo_coordinator_key",
            "MATCHING_DEMO_COORDINATOR_KEY",
            "COMMONGROUND_DEMO_COORDINATOR_KEY",
        ),
        description="If set, `admin seed-demo` registers this key for a demo coordinator "
        "of all six combined authorities.",
    )
