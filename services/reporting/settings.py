"""Settings of the reporting service (environment prefix ``REPORTING_``, shared values also
under ``COMMONGROUND_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTING_")

    service_name: ClassVar[str] = "reporting"

    http_port: int = 8003

    projection_max_records: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Most records the projector takes from the broker as one batch "
        "(one MongoDB transaction, one bulk write per collection).",
    )
    projection_batch_timeout_ms: int = Field(
        default=200,
        ge=1,
        description="How long the batch subscriber waits to fill a batch.",
    )
    projection_transaction_attempts: int = Field(
        default=5, ge=1, description="Attempts for a batch whose transaction keeps failing."
    )
    rebuild_drop_grace_s: float = Field(
        default=2.0,
        ge=0.0,
        description="After a rebuild's swap, how long the old generation is kept before it "
        "is dropped (lets in-flight report requests finish).",
    )

    # The local stack sets these for every service under the platform prefix, so they
    # are read by their full names rather than under REPORTING_.
    demo_coordinator_key: SecretStr | None = Field(
        default=None, validation_alias="COMMONGROUND_DEMO_COORDINATOR_KEY"
    )
    demo_analyst_key: SecretStr | None = Field(
        default=None, validation_alias="COMMONGROUND_DEMO_ANALYST_KEY"
    )

    @field_validator("demo_coordinator_key", "demo_analyst_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("demo API keys must be at least 16 characters")
        return value
