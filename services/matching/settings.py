"""Settings of the matching service (environment prefix ``MATCHING_``, shared values also
under ``COMMONGROUND_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class MatchingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MATCHING_")

    service_name: ClassVar[str] = "matching"

    http_port: int = 8002
