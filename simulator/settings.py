"""Defaults of the simulator's command-line options, from the environment.

The keys are the local stack's demo keys (``COMMONGROUND_DEMO_PROVIDER_KEY``,
``COMMONGROUND_DEMO_COORDINATOR_KEY``); URLs and the broker may be given under
``COMMONGROUND_SIMULATOR_*``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMMONGROUND_SIMULATOR_", extra="ignore")

    provider_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "COMMONGROUND_SIMULATOR_PROVIDER_KEY", "COMMONGROUND_DEMO_PROVIDER_KEY"
        ),
    )
    coordinator_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "COMMONGROUND_SIMULATOR_COORDINATOR_KEY", "COMMONGROUND_DEMO_COORDINATOR_KEY"
        ),
    )
    enrolment_url: str = "http://127.0.0.1:8001"
    matching_url: str = "http://127.0.0.1:8002"
    reporting_url: str = "http://127.0.0.1:8003"
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "COMMONGROUND_SIMULATOR_KAFKA_BOOTSTRAP_SERVERS",
            "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS",
        ),
        description="Needed only for --channel kafka.",
    )
    provider_ukprn: str = Field(
        default="10000000",
        description="UKPRN of the provider whose key is used: the record key on "
        "enrolment.inbound.v1 (10000000 is the demo provider).",
    )
