"""Composition root of the matching service."""

from __future__ import annotations

from fastapi import FastAPI

from services.matching import handlers
from services.matching.settings import MatchingSettings
from shared.service import create_service_app


def create_app(settings: MatchingSettings | None = None) -> FastAPI:
    settings = settings or MatchingSettings()
    return create_service_app(
        settings,
        title="Common Ground matching",
        description="Pairs volunteers with participants across backgrounds.",
        kafka_routers=handlers.kafka_routers,
    )
