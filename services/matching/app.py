"""Composition root of the matching service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from services.matching.domain import BatchPolicy, WeightsBook, weights_from_toml
from services.matching.entrypoints import http, kafka
from services.matching.entrypoints.dependencies import MatchingContext
from services.matching.metrics import MatchingMetrics
from services.matching.repository import MongoLeases, ensure_indexes
from services.matching.settings import MatchingSettings
from services.matching.unit_of_work import unit_of_work_factory
from services.matching.use_cases import MatchingService
from services.matching.workers import Leases, Workers, instance_id
from shared.auth import ApiKeyStore
from shared.contracts.registry import registry_for
from shared.kafka import RecordSender
from shared.learner_keys import MongoLearnerKeys
from shared.outbox import MongoOutbox, OutboxRelay
from shared.positions import LogFence, MongoPositions, log_probe_for, log_resets_counter
from shared.service import Runtime, create_service_app, service_outbox_relay
from shared.topics import MATCHING_MATCHES, MATCHING_VOLUNTEERS


def create_app(settings: MatchingSettings | None = None) -> FastAPI:
    """The matching app; its lifespan builds the stores, the use cases and the workers."""
    settings = settings or MatchingSettings()

    @asynccontextmanager
    async def lifespan(runtime: Runtime) -> AsyncIterator[None]:
        weights = weights_from_toml(settings.weights_file.read_text())
        outbox, keys = await open_stores(runtime, settings)
        metrics = MatchingMetrics(runtime.telemetry)
        leases = Leases(
            MongoLeases(runtime.db), instance_id(), timedelta(seconds=settings.lease_ttl_s)
        )
        sender = RecordSender(settings, runtime.telemetry.tracer())
        relay = service_outbox_relay(
            runtime,
            settings,
            outbox,
            sender,
            registry_for(MATCHING_VOLUNTEERS, MATCHING_MATCHES),
            "matching",
        )
        service = matching_service(runtime, settings, outbox, keys, weights, metrics, relay)
        probe = log_probe_for(settings)
        runtime.state["matching"] = MatchingContext(
            service=service,
            keys=keys,
            positions=MongoPositions(runtime.db),
            fence=LogFence("matching", log_resets_counter(runtime.telemetry), probe),
        )
        workers = Workers(
            service,
            relay,
            leases,
            scheduler_tick_s=settings.scheduler_tick_s,
            dbs_check_interval_s=settings.dbs_check_interval_s,
        )
        workers.start()
        try:
            yield
        finally:
            await workers.stop()
            await sender.close()
            await probe.close()

    return create_service_app(
        settings,
        title="Common Ground matching",
        description="Pairs volunteers with participants across backgrounds: whole-pool "
        "optimal proposals under hard constraints, coordinator decisions, DBS pauses.",
        http_routers=[http.router],
        kafka_routers=kafka.kafka_routers,
        lifespan=lifespan,
    )


async def open_stores(
    runtime: Runtime, settings: MatchingSettings
) -> tuple[MongoOutbox, ApiKeyStore]:
    """The outbox and the API keys, with every index matching needs."""
    outbox = MongoOutbox(
        runtime.db,
        retention_s=settings.outbox_retention_s,
        max_messages_per_row=settings.outbox_row_max_messages,
    )
    await outbox.ensure_indexes()
    await ensure_indexes(runtime.db)
    keys = ApiKeyStore(runtime.db["api_keys"])
    await keys.ensure_indexes()
    return outbox, keys


def matching_service(
    runtime: Runtime,
    settings: MatchingSettings,
    outbox: MongoOutbox,
    keys: ApiKeyStore,
    weights: WeightsBook,
    metrics: MatchingMetrics,
    relay: OutboxRelay,
) -> MatchingService:
    """Every use case, with a unit of work per call; a commit wakes the relay."""
    return MatchingService(
        uow=unit_of_work_factory(runtime.mongo, runtime.db, outbox),
        weights=weights,
        policy=BatchPolicy(
            threshold=settings.batch_threshold,
            window=timedelta(seconds=settings.batch_window_s),
        ),
        metrics=metrics,
        on_commit=relay.wake,
        health_policy=settings.health_policy(),
        keys=keys,
        learner_keys=MongoLearnerKeys(runtime.db),
        key_ring=settings.key_ring(),
    )
