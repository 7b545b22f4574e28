"""Composition root of the enrolment service."""

from __future__ import annotations

from fastapi import FastAPI

from services.enrolment import handlers
from services.enrolment.settings import EnrolmentSettings
from shared.service import create_service_app


def create_app(settings: EnrolmentSettings | None = None) -> FastAPI:
    settings = settings or EnrolmentSettings()
    return create_service_app(
        settings,
        title="Common Ground enrolment",
        description="Provider intake of ESOL and adult-skills enrolments.",
        kafka_routers=handlers.kafka_routers,
    )
