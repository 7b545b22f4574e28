"""Composition root of the reporting service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from services.reporting.entrypoints import dashboard, http, integration_http, kafka
from services.reporting.integration_repository import MongoIntegrationReader
from services.reporting.metrics import ReportingMetrics
from services.reporting.repository import (
    MongoReportReader,
    ProjectionUnitOfWork,
    ensure_control,
)
from services.reporting.settings import ReportingSettings
from services.reporting.use_cases.projector import Projector
from shared.auth import ApiKeyStore
from shared.dead_letters import RetryPolicy
from shared.learner_keys import MongoLearnerKeys
from shared.positions import LogFence, log_probe_for, log_resets_counter
from shared.service import Runtime, create_service_app
from shared.telemetry import build_telemetry


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    telemetry = build_telemetry(settings)
    metrics = ReportingMetrics(telemetry)

    @asynccontextmanager
    async def lifespan(runtime: Runtime) -> AsyncIterator[None]:
        await ensure_control(runtime.db, settings.dedup_retention_s)
        keys = ApiKeyStore(runtime.db["api_keys"])
        await keys.ensure_indexes()
        probe = log_probe_for(settings)
        runtime.state.update(
            api_keys=keys,
            reader=MongoReportReader(runtime.db),
            integration_reader=MongoIntegrationReader(runtime.db),
            projector=Projector(
                partial(ProjectionUnitOfWork, runtime.db, metrics=metrics),
                kafka.CONSUMED,
                runtime.dead_letters,
                metrics=metrics,
                retry_policy=RetryPolicy(attempts=settings.projection_transaction_attempts),
                learner_keys=MongoLearnerKeys(runtime.db),
                key_ring=settings.key_ring(),
                fence=LogFence("reporting", log_resets_counter(telemetry), probe),
            ),
        )
        try:
            yield
        finally:
            await probe.close()

    return create_service_app(
        settings,
        title="Common Ground reporting",
        description="Disclosure-safe outcome reports and a dashboard.",
        http_routers=[http.router, integration_http.router, dashboard.router],
        kafka_routers=kafka.kafka_routers,
        lifespan=lifespan,
        telemetry=telemetry,
    )
