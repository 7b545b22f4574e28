"""Composition root of the reporting service."""

from __future__ import annotations

from fastapi import FastAPI

from services.reporting import handlers
from services.reporting.settings import ReportingSettings
from shared.service import create_service_app


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    return create_service_app(
        settings,
        title="Common Ground reporting",
        description="Disclosure-safe outcome reports and a dashboard.",
        kafka_routers=handlers.kafka_routers,
    )
