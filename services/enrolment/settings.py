"""Settings of the enrolment service (environment prefix ``ENROLMENT_``, shared values also
under ``COMMONGROUND_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class EnrolmentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENROLMENT_")

    service_name: ClassVar[str] = "enrolment"

    http_port: int = 8001
