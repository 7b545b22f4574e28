"""Settings of the local stack (environment prefix ``COMMONGROUND_``)."""

from __future__ import annotations

import os
import secrets
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
    ready_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="How long to wait for each component to answer (retrying transient "
        "errors such as server-selection timeouts meanwhile).",
    )
    restart_max_rapid_failures: int = Field(
        default=5,
        ge=1,
        description="A child that fails this many times in a row (each run shorter than "
        "60 s) is not restarted again: the stack stops and says why.",
    )
    restart_max_delay_s: float = Field(
        default=30.0, gt=0, description="Longest backoff before restarting a child."
    )
    demo_provider_key: SecretStr | None = None
    demo_coordinator_key: SecretStr | None = None
    demo_analyst_key: SecretStr | None = None

    demo: bool = Field(
        default=False,
        description="Demo mode (`up --demo`): demo keys are made up if not set, and once the "
        "services are ready the simulator feeds them gentle synthetic traffic.",
    )
    demo_rate: float = Field(default=5.0, gt=0, description="Simulator operations per second.")
    demo_learners: int = Field(default=3000, ge=1, description="Learners the simulator sends.")
    demo_seed: int | None = Field(
        default=None, ge=0, description="Simulator seed (default: a new one each run)."
    )
    demo_matching_batch_window_s: float = Field(
        default=20.0,
        gt=0,
        description="In demo mode, matching's MATCHING_BATCH_WINDOW_S (proposals appear "
        "sooner than with the production default).",
    )

    def with_demo_keys(self) -> StackSettings:
        """Demo mode: fill in any demo key not given, and export all three so that the
        seeding commands, the services and the simulator (child processes) see them."""
        keys = {
            "demo_provider_key": self.demo_provider_key,
            "demo_coordinator_key": self.demo_coordinator_key,
            "demo_analyst_key": self.demo_analyst_key,
        }
        filled = {
            name: key or SecretStr(f"cg_{name.removesuffix('_key')}_{secrets.token_urlsafe(18)}")
            for name, key in keys.items()
        }
        for name, key in filled.items():
            os.environ[f"COMMONGROUND_{name.upper()}"] = key.get_secret_value()
        return self.model_copy(update=filled)
