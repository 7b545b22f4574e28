"""Settings of the reporting service (environment prefix ``REPORTING_``, shared values also
under ``COMMONGROUND_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTING_")

    service_name: ClassVar[str] = "reporting"

    http_port: int = 8003
