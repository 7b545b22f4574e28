"""The settings base every service extends: one typed object, read from the environment.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix``
(``ENROLMENT_``, ``MATCHING_``, ``REPORTING_``). Values shared by the whole platform
(broker and database URLs, Kafka security) may also be given once under the
``COMMONGROUND_`` prefix; the service prefix wins when both are set.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path
from typing import ClassVar, Literal

from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource, SecretsSettingsSource

from shared.crypto import KeyRing

PLATFORM_ENV_PREFIX = "COMMONGROUND_"

SECRETS_DIR_ENV = "COMMONGROUND_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")

# LOCAL USE ONLY (like the enrolment pseudonym key): a key ring anyone can read in the
# source protects nothing. Deployments set COMMONGROUND_LEARNER_KEY_WRAPPING_KEYS.
DEV_LEARNER_KEY_WRAPPING_KEYS = (
    "dev1:" + hashlib.sha256(b"commonground/dev-only-learner-key-wrapping").hexdigest()
)


def secrets_dir() -> Path | None:
    """Where secret files live: ``$COMMONGROUND_SECRETS_DIR``, else ``/run/secrets``
    (Docker / Kubernetes convention) when it exists. A file named like the variable
    (``enrolment_pseudonym_key`` or ``commonground_mongodb_url``, any case) holds the
    value; the environment wins over files."""
    configured = os.environ.get(SECRETS_DIR_ENV)  # the one read outside a settings class:
    # it says where the settings themselves come from.
    if configured:
        return Path(configured)
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None


class KafkaSecurity(BaseSettings):
    """Broker connection security, as a real cluster requires (SASL/SCRAM over TLS)."""

    model_config = SettingsConfigDict(extra="ignore")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


class ServiceSettings(BaseSettings):
    """Settings common to every service. Subclasses set ``model_config['env_prefix']``."""

    model_config = SettingsConfigDict(
        env_prefix="",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=None,
    )

    service_name: ClassVar[str] = "service"

    http_host: str = "127.0.0.1"
    http_port: int = 8000

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        description="Comma-separated host:port list of the Kafka-protocol broker.",
    )
    kafka: KafkaSecurity = Field(default_factory=KafkaSecurity)
    kafka_client_id: str | None = None
    kafka_max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        description="Largest produce request this service sends (Kafka's max.request.size; "
        "keep it at or below the broker's message.max.bytes). A record too large to "
        "dead-letter whole is dead-lettered bounded, with digests (docs/delivery.md).",
    )
    kafka_relay_batch_bytes: int = Field(
        default=256 * 1024,
        ge=16 * 1024,
        description="Producer batch size of the outbox relay (Kafka's batch.size). The "
        "producer has one request in flight per broker, so a relay round of a thousand "
        "~1.5 KB events needs a request per batch: aiokafka's default 16 KiB made that "
        "about 25 round trips per round, 256 KiB makes it two. At or below "
        "kafka_max_request_bytes.",
    )
    consumer_group: str | None = Field(
        default=None, description="Consumer group id; defaults to the service name."
    )

    mongodb_url: SecretStr = Field(
        default=SecretStr("mongodb://127.0.0.1:27017/?directConnection=true"),
        description="MongoDB connection string (credentials and TLS options go here).",
    )
    mongodb_database: str | None = Field(
        default=None, description="This service's own database; defaults to cg_<service>."
    )

    log_level: str = "INFO"
    log_json: bool = True

    otel_enabled: bool = Field(default=False, description="Export traces over OTLP/HTTP.")
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_namespace: str = "commonground"

    learner_key_wrapping_keys: SecretStr = Field(
        default=SecretStr(DEV_LEARNER_KEY_WRAPPING_KEYS),
        description="Platform key ring that wraps learner data keys on enrolment.events.v1 "
        "(crypto-shredding): 'id:secret[,id:secret...]', the first wraps, all unwrap. Shared "
        "by enrolment and every consumer of personal fields. The default is for local "
        "development only.",
    )

    auth_max_failures_per_window: int = Field(
        default=30,
        ge=1,
        description="Failed authentications (401) one client address may cause per window "
        "before it is answered 429 with Retry-After until the window ends.",
    )
    auth_failure_window_s: float = Field(default=60.0, gt=0)

    rate_limit_per_s: float = Field(
        default=50.0,
        gt=0,
        description="Sustained requests per second one API key may make (a batch counts "
        "each item); over it the key is answered 429 with Retry-After.",
    )
    rate_limit_burst: int = Field(
        default=2000,
        ge=1,
        description="Token-bucket depth per API key: requests (batch items) it may make "
        "at once after being idle. Keep it at least the largest batch.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses (or CIDR ranges) of reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto are believed. Empty (the default): forwarded "
        "headers are ignored and the failed-authentication limiter sees the connecting "
        "address.",
    )
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection that has not sent a complete request head within this "
        "time is closed (slow-header clients).",
    )

    readiness_timeout_s: float = 2.0
    consumer_lag_interval_s: float = Field(
        default=10.0, description="How often consumer lag is measured for /metrics."
    )
    log_end_check_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often each consumer checks that it is not reading beyond the end "
        "of a partition's log (a topic re-created or a broker that lost its log under it; "
        "shared.positions.LogEndWatch).",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _no_scheme(cls, value: str) -> str:
        # tansu and some docs write tcp://host:port; aiokafka wants bare host:port.
        return ",".join(part.strip().removeprefix("tcp://") for part in value.split(","))

    @property
    def group_id(self) -> str:
        return self.consumer_group or self.service_name

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"cg_{self.service_name}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        platform_env = EnvSettingsSource(
            settings_cls,
            env_prefix=PLATFORM_ENV_PREFIX,
            env_nested_delimiter="__",
        )
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            platform_env,
            dotenv_settings,
        ]
        directory = secrets_dir()
        if directory is not None and directory.is_dir():
            prefix = str(settings_cls.model_config.get("env_prefix") or "")
            sources.append(
                SecretsSettingsSource(settings_cls, secrets_dir=directory, env_prefix=prefix)
            )
            sources.append(
                SecretsSettingsSource(
                    settings_cls, secrets_dir=directory, env_prefix=PLATFORM_ENV_PREFIX
                )
            )
        sources.append(file_secret_settings)
        return tuple(sources)

    def key_ring(self) -> KeyRing:
        """The learner key-wrapping key ring (see shared/crypto.py)."""
        return KeyRing.parse(self.learner_key_wrapping_keys, "learner-key-wrapping")

    @property
    def uses_dev_key_ring(self) -> bool:
        return self.learner_key_wrapping_keys.get_secret_value() == DEV_LEARNER_KEY_WRAPPING_KEYS

    def kafka_security(self) -> BaseSecurity | None:
        """FastStream security object for the configured protocol (None = plaintext)."""
        sec = self.kafka
        if sec.security_protocol == "PLAINTEXT":
            return None
        ssl_context = None
        if sec.security_protocol in ("SSL", "SASL_SSL"):
            ssl_context = ssl.create_default_context(
                cafile=str(sec.ssl_cafile) if sec.ssl_cafile else None
            )
            if sec.ssl_certfile:
                ssl_context.load_cert_chain(
                    str(sec.ssl_certfile), str(sec.ssl_keyfile) if sec.ssl_keyfile else None
                )
        if not sec.security_protocol.startswith("SASL"):
            return BaseSecurity(ssl_context=ssl_context)
        if sec.sasl_username is None or sec.sasl_password is None:
            raise ValueError("SASL needs kafka.sasl_username and kafka.sasl_password")
        mechanism = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }[sec.sasl_mechanism]
        return mechanism(
            username=sec.sasl_username,
            password=sec.sasl_password.get_secret_value(),
            ssl_context=ssl_context,
            use_ssl=ssl_context is not None,
        )
