"""Settings of the local stack (environment prefix ``COMMONGROUND_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMMONGROUND_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".data"), description="Database files and logs; persists between runs."
    )
    host: str = "127.0.0.1"
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Use this external Kafka instead of the embedded broker."
    )
    mongodb_url: SecretStr | None = Field(
        default=None, description="Use this external MongoDB instead of the embedded server."
    )
    kafka_port: int = 9092
    mongodb_port: int = 27017
    enrolment_port: int = 8001
    matching_port: int = 8002
    reporting_port: int = 8003
    topic_partitions: int = 4
    ready_timeout_s: float = 90.0
    demo_provider_key: SecretStr | None = None
    demo_coordinator_key: SecretStr | None = None
    demo_analyst_key: SecretStr | None = None
