"""Settings of the reporting service (environment prefix ``REPORTING_``, shared values also
under ``COMMONGROUND_``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.reporting.domain.disclosure import CellKeyMethod, DisclosureMethod, LegacyMethod
from services.reporting.repository import DEDUP_RETENTION_S
from shared.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTING_")

    service_name: ClassVar[str] = "reporting"

    http_port: int = 8003

    dedup_retention_s: int = Field(
        default=DEDUP_RETENTION_S,
        ge=3600,
        description="How long applied event ids are kept for de-duplication. Must exceed "
        "the producers' outbox retention (events lost with a broker's log are re-published "
        "within it) and every consumed topic's retention.ms (a consumer-group reset "
        "re-reads that far back). Costs about 60 bytes per event in the window.",
    )

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

    # Disclosure control (docs/disclosure.md). Published figures depend on these; the
    # read models do not, so changing them needs no rebuild.
    disclosure_method: Literal["cell_key", "legacy"] = Field(
        default="cell_key",
        description="'cell_key': persistent cell-key perturbation, small-count threshold "
        "and rounding, rates from published figures. 'legacy': the former cell-by-cell "
        "suppression, NOT safe against differencing (kept for comparison tests only).",
    )
    disclosure_threshold: int = Field(
        default=10,
        ge=2,
        le=100,
        description="Published (perturbed) counts below this are shown as '<threshold'; "
        "rates need a published denominator of at least this. A multiple of the rounding "
        "base.",
    )
    disclosure_rounding_base: int = Field(
        default=5, ge=1, le=100, description="Published counts are rounded to this base."
    )
    disclosure_max_noise: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Largest perturbation added to a count (the ptable spreads noise "
        "-max..+max, halving in weight per step away from 0).",
    )
    disclosure_secret: SecretStr | None = Field(
        default=None,
        description="Deployment secret that permutes cell keys, so that someone who knows "
        "record ids cannot work out the noise. Set it in production (any length >= 16); "
        "the same value on every instance. Unset: the unpermuted cell key is used.",
    )

    # The local stack sets these for every service under the platform prefix, so they
    # are read by their full names rather than under REPORTING_.
    demo_coordinator_key: SecretStr | None = Field(
        default=None, validation_alias="COMMONGROUND_DEMO_COORDINATOR_KEY"
    )
    demo_analyst_key: SecretStr | None = Field(
        default=None, validation_alias="COMMONGROUND_DEMO_ANALYST_KEY"
    )

    @field_validator("disclosure_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the disclosure secret must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _threshold_on_the_rounding_grid(self) -> ReportingSettings:
        if self.disclosure_threshold % self.disclosure_rounding_base:
            raise ValueError(
                f"disclosure_threshold ({self.disclosure_threshold}) must be a multiple of "
                f"disclosure_rounding_base ({self.disclosure_rounding_base})"
            )
        return self

    def disclosure(self) -> DisclosureMethod:
        """The configured disclosure method for rounded (published) figures."""
        if self.disclosure_method == "legacy":
            return LegacyMethod()
        secret = (
            self.disclosure_secret.get_secret_value().encode() if self.disclosure_secret else b""
        )
        return CellKeyMethod(
            threshold=self.disclosure_threshold,
            rounding_base=self.disclosure_rounding_base,
            max_noise=self.disclosure_max_noise,
            secret=secret,
        )

    @field_validator("demo_coordinator_key", "demo_analyst_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("demo API keys must be at least 16 characters")
        return value
