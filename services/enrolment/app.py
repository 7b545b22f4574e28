"""Composition root of the enrolment service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from services.enrolment.domain import Pseudonymiser
from services.enrolment.entrypoints import http, kafka
from services.enrolment.entrypoints.dependencies import (
    ILR_STATE_KEY,
    STATE_KEY,
    EnrolmentContext,
)
from services.enrolment.ilr.aims import AimCatalogue
from services.enrolment.ilr.repository import MongoUploadStore
from services.enrolment.inbound_auth import InboundAuthenticator
from services.enrolment.privacy import LearnerVault, SubmissionSealer
from services.enrolment.repository import MongoProviderDirectory, ensure_enrolment_indexes
from services.enrolment.settings import (
    DEV_DATA_KEY_ENCRYPTION_KEYS,
    DEV_PSEUDONYM_KEY,
    EnrolmentSettings,
)
from services.enrolment.unit_of_work import EnrolmentUnitOfWork, unit_of_work_factory
from services.enrolment.use_cases.ilr import IlrIntake, IlrOptions
from services.enrolment.use_cases.intake import EnrolmentService, IntakeMetrics
from services.enrolment.use_cases.privacy import PrivacyService
from shared import topics
from shared.auth import ApiKeyStore
from shared.contracts.registry import registry_for
from shared.crypto import KeyRing
from shared.health import DependencyWatch
from shared.kafka import RecordSender
from shared.outbox import MongoOutbox
from shared.service import Runtime, create_service_app, service_outbox_relay
from shared.telemetry import build_telemetry

logger = logging.getLogger(__name__)

OUTBOX_EVENTS = registry_for(topics.ENROLMENT_EVENTS, topics.ENROLMENT_REJECTED)


def pseudonymiser_for(settings: EnrolmentSettings) -> Pseudonymiser:
    key = settings.pseudonym_key.get_secret_value()
    if key == DEV_PSEUDONYM_KEY:
        if not settings.allow_dev_secrets:
            raise RuntimeError(
                "ENROLMENT_PSEUDONYM_KEY is not set (the development default is refused "
                "because ENROLMENT_ALLOW_DEV_SECRETS=false)"
            )
        logger.warning(
            "using the DEVELOPMENT pseudonym key: set ENROLMENT_PSEUDONYM_KEY before "
            "handling real learner data"
        )
    return Pseudonymiser(key.encode())


def key_rings_for(settings: EnrolmentSettings) -> tuple[KeyRing, KeyRing]:
    """(master ring for data keys at rest, platform ring for wrapping them on events)."""
    dev = [
        name
        for name, is_dev in (
            (
                "ENROLMENT_DATA_KEY_ENCRYPTION_KEYS",
                settings.data_key_encryption_keys.get_secret_value()
                == DEV_DATA_KEY_ENCRYPTION_KEYS,
            ),
            ("COMMONGROUND_LEARNER_KEY_WRAPPING_KEYS", settings.uses_dev_key_ring),
        )
        if is_dev
    ]
    if dev and not settings.allow_dev_secrets:
        raise RuntimeError(
            f"{' and '.join(dev)} not set (the development defaults are refused because "
            "ENROLMENT_ALLOW_DEV_SECRETS=false)"
        )
    if dev:
        logger.warning("using DEVELOPMENT key rings (%s): not for real learner data", len(dev))
    master = KeyRing.parse(settings.data_key_encryption_keys, "enrolment-data-keys-at-rest")
    return master, settings.key_ring()


@dataclass(frozen=True)
class _Stores:
    outbox: MongoOutbox
    providers: MongoProviderDirectory
    keys: ApiKeyStore
    vault: LearnerVault
    unit_of_work: Callable[[], EnrolmentUnitOfWork]
    uploads: MongoUploadStore


async def _stores(
    runtime: Runtime, settings: EnrolmentSettings, master_ring: KeyRing, platform_ring: KeyRing
) -> _Stores:
    db = runtime.db
    outbox = MongoOutbox(
        db,
        retention_s=settings.outbox_retention_s,
        max_messages_per_row=settings.outbox_row_max_messages,
    )
    providers = MongoProviderDirectory(db)
    keys = ApiKeyStore(db["api_keys"])
    vault = LearnerVault(db, master=master_ring, platform=platform_ring)
    # Personal submission fields are stored sealed under the learner's data key.
    unit_of_work = unit_of_work_factory(runtime.mongo, db, outbox, SubmissionSealer(vault))
    await ensure_enrolment_indexes(db)
    for component in (outbox, providers, keys, vault):
        await component.ensure_indexes()
    uploads = MongoUploadStore(db, settings.ilr_upload_retention_s)
    await uploads.ensure_indexes()
    return _Stores(outbox, providers, keys, vault, unit_of_work, uploads)


def _ilr_intake(
    settings: EnrolmentSettings,
    service: EnrolmentService,
    stores: _Stores,
    pseudonyms: Pseudonymiser,
) -> IlrIntake:
    return IlrIntake(
        service,
        stores.unit_of_work,
        stores.uploads,
        pseudonyms,
        catalogue=AimCatalogue.from_csv(settings.ilr_aim_catalogue),
        options=IlrOptions(
            chunk_learners=settings.ilr_chunk_learners,
            max_reported_issues=settings.ilr_max_reported_issues,
            spool_dir=settings.ilr_spool_dir,
            stale_after_s=settings.ilr_stale_after_s,
            max_concurrent=settings.ilr_max_concurrent_uploads,
        ),
    )


def _broker_watch(runtime: Runtime, settings: EnrolmentSettings) -> DependencyWatch:
    """Backpressure: intake answers 503 while the broker is known to be unreachable."""

    async def broker_reachable() -> bool:
        # Before the broker starts and while it stops, readiness speaks for it.
        if not runtime.broker.running:
            return True
        return await runtime.broker.ping(timeout=settings.readiness_timeout_s)

    return DependencyWatch(
        "kafka broker", broker_reachable, timeout_s=settings.readiness_timeout_s + 1
    )


def _route_body_limits(settings: EnrolmentSettings) -> list[tuple[str, int]]:
    # Single submissions, progress and consent: the per-item limit, also for bodies
    # streamed without Content-Length (only the batch may be large).
    return [
        (r"/v1/enrolments/?", settings.max_item_body_bytes),
        (r"/v1/enrolments/[^/]+/(progress|consent)/?", settings.max_item_body_bytes),
        # ILR files: large, streamed to a spool file (docs/ilr.md).
        (r"/v1/ilr/submissions/?", settings.ilr_max_upload_bytes),
    ]


def create_app(settings: EnrolmentSettings | None = None) -> FastAPI:
    settings = settings or EnrolmentSettings()
    telemetry = build_telemetry(settings)
    pseudonyms = pseudonymiser_for(settings)
    master_ring, platform_ring = key_rings_for(settings)

    @asynccontextmanager
    async def lifespan(runtime: Runtime) -> AsyncIterator[None]:
        stores = await _stores(runtime, settings, master_ring, platform_ring)
        sender = RecordSender(settings, runtime.telemetry.tracer())
        relay = service_outbox_relay(
            runtime, settings, stores.outbox, sender, OUTBOX_EVENTS, "enrolment"
        )
        service = EnrolmentService(
            stores.unit_of_work,
            stores.providers,
            pseudonyms,
            IntakeMetrics(runtime.telemetry),
            on_commit=relay.wake,
            vault=stores.vault,
        )
        privacy = PrivacyService(service, stores.unit_of_work, stores.vault, on_commit=relay.wake)
        ilr = _ilr_intake(settings, service, stores, pseudonyms)
        runtime.state[ILR_STATE_KEY] = ilr
        broker_watch = _broker_watch(runtime, settings)
        runtime.state[STATE_KEY] = EnrolmentContext(
            settings=settings,
            service=service,
            keys=stores.keys,
            relay=relay,
            privacy=privacy,
            broker_watch=broker_watch,
            inbound_auth=InboundAuthenticator(
                stores.keys, runtime.telemetry, window_s=settings.inbound_signature_window_s
            ),
        )
        await relay.refresh_backlog()
        if settings.outbox_relay_enabled:
            relay.start()
        try:
            async with broker_watch:
                yield
        finally:
            await ilr.close()
            await relay.stop()
            await sender.close()

    app = create_service_app(
        settings,
        title="Common Ground enrolment",
        description="Provider intake of ESOL and adult-skills enrolments and progress: "
        "validation, pseudonymisation at the edge, ILR lifecycle, transactional outbox.",
        http_routers=[http.router, http.learners_router, http.ilr_router],
        kafka_routers=kafka.kafka_routers,
        lifespan=lifespan,
        telemetry=telemetry,
        max_body_bytes=settings.max_body_bytes,
        route_body_limits=_route_body_limits(settings),
    )
    http.install_validation_handler(app)
    return app
