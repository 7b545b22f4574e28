"""Settings of the enrolment service (environment prefix ``ENROLMENT_``, shared values also
under ``COMMONGROUND_``)."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.outbox import OutboxSettings
from shared.settings import ServiceSettings

# LOCAL USE ONLY. A key anyone can derive from the source code gives no protection: every
# deployment that holds real learner data must set ENROLMENT_PSEUDONYM_KEY (and set
# ENROLMENT_ALLOW_DEV_SECRETS=false so that forgetting it stops the service).
DEV_PSEUDONYM_KEY = hashlib.sha256(b"commonground/enrolment/dev-only-pseudonym-key").hexdigest()
DEV_DATA_KEY_ENCRYPTION_KEYS = (
    "dev1:" + hashlib.sha256(b"commonground/enrolment/dev-only-data-key-encryption").hexdigest()
)


class EnrolmentSettings(ServiceSettings, OutboxSettings):
    model_config = SettingsConfigDict(env_prefix="ENROLMENT_")

    service_name: ClassVar[str] = "enrolment"

    http_port: int = 8001

    pseudonym_key: SecretStr = Field(
        default=SecretStr(DEV_PSEUDONYM_KEY),
        description="HMAC key for learner pseudonyms and enrolment ids. The default is for "
        "local development only; production must set its own (>= 32 random bytes) and "
        "keep it stable: changing it changes every pseudonym.",
    )
    data_key_encryption_keys: SecretStr = Field(
        default=SecretStr(DEV_DATA_KEY_ENCRYPTION_KEYS),
        description="Master key ring ('id:secret[,id:secret...]', first = current) that "
        "wraps every learner data key at rest in this service's database. Destroying a "
        "learner's wrapped key is what erases them (crypto-shredding). The default is for "
        "local development only.",
    )
    allow_dev_secrets: bool = Field(
        default=True,
        description="Start even though pseudonym_key is the public development default. "
        "Set false in production.",
    )
    demo_provider_key: SecretStr | None = Field(
        default=None,
        description="API key of the demo provider registered by `enrolment-admin seed-demo` "
        "(env COMMONGROUND_DEMO_PROVIDER_KEY).",
    )

    max_batch_items: int = Field(default=1000, ge=1, description="Items per batch request.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, description="Largest request body (a full batch)."
    )
    max_item_body_bytes: int = Field(
        default=64 * 1024, description="Largest body for a single submission or progress."
    )

    outbox_backlog_limit: int = Field(
        default=50_000,
        ge=1,
        description="Unpublished events above which HTTP intake answers 503.",
    )
    outbox_retry_after_s: int = Field(default=30, description="Retry-After sent with the 503.")
    inbound_max_records: int = Field(
        default=500, ge=1, description="Records per Kafka intake batch (one transaction)."
    )
    inbound_batch_timeout_ms: int = Field(default=200, ge=1)
    inbound_signature_window_s: float = Field(
        default=300.0,
        gt=0,
        description="How far a record's signed timestamp (cg_timestamp) may be from its "
        "Kafka timestamp before it is refused as stale (replay protection).",
    )

    # ILR file intake (docs/ilr.md).
    ilr_max_upload_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1,
        description="Largest ILR file accepted by POST /v1/ilr/submissions (streamed to a "
        "spool file, never held in memory).",
    )
    ilr_chunk_learners: int = Field(
        default=250, ge=1, le=5000, description="Learners per transaction while processing."
    )
    ilr_max_wait_s: float = Field(
        default=60.0, ge=0, description="Longest ?wait= a client may ask for (seconds)."
    )
    ilr_spool_dir: str | None = Field(
        default=None, description="Where uploads are spooled (default: the system temp dir)."
    )
    ilr_max_reported_issues: int = Field(
        default=5000, ge=0, description="Issues listed in a report (all are counted)."
    )
    ilr_upload_retention_s: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        description="How long upload reports are kept (they name LearnRefNumbers).",
    )
    ilr_stale_after_s: float = Field(
        default=300.0,
        gt=0,
        description="An upload with no progress for this long is reported interrupted and "
        "its provider-and-year lock may be taken by a new upload.",
    )
    ilr_max_concurrent_uploads: int = Field(
        default=1, ge=1, description="Uploads processed at once by one instance."
    )
    ilr_aim_catalogue: str | None = Field(
        default=None,
        description="CSV (learn_aim_ref,programme,level) of LARS aims that are Common Ground "
        "programmes, besides the built-in Z<PROG><LEVEL>x codes.",
    )
