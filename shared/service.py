"""Composition plumbing shared by the three services' ``app.py``.

:func:`create_service_app` builds a FastAPI app whose lifespan creates the clients
(MongoDB, Kafka broker with telemetry middlewares), wires the service's Kafka routers
and HTTP routers, exposes ``/healthz``, ``/readyz``, ``/metrics`` and
``/asyncapi.json``, and shuts down in the safe order: readiness false first, then stop
consuming, then flush producers and close clients.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.specification import AsyncAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.auth import FailedAuthLimiter, FailedAuthLimitMiddleware
from shared.cloudevents import EventRegistry
from shared.dead_letters import DeadLetterPublisher
from shared.kafka import RecordSender, make_broker
from shared.lag import ConsumerLagMonitor, lag_monitoring
from shared.mongo import make_mongo_client, mongo_ping
from shared.outbox import MongoOutbox, OutboxRelay, OutboxSettings, RelayMetrics, contract_publisher
from shared.positions import LogEndWatch, log_probe_for, log_resets_counter
from shared.problems import (
    BodySizeLimitMiddleware,
    document_problems,
    install_problem_handlers,
)
from shared.ratelimit import RateLimiter, RateLimitMiddleware
from shared.settings import ServiceSettings
from shared.tasks import background
from shared.telemetry import ReadinessCheck, Telemetry, build_telemetry, instrument_app, ops_router

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The clients a running service holds. Built in the lifespan, closed on shutdown."""

    settings: ServiceSettings
    telemetry: Telemetry
    broker: KafkaBroker
    mongo: AsyncMongoClient[Any]
    dead_letters: DeadLetterPublisher
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> AsyncDatabase[Any]:
        return self.mongo[self.settings.database_name]


KafkaRouterFactory = Callable[[Runtime], Iterable[KafkaRouter]]
ServiceLifespan = Callable[[Runtime], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _no_extra_lifespan(runtime: Runtime) -> AsyncIterator[None]:
    yield


def service_outbox_relay(
    runtime: Runtime,
    settings: OutboxSettings,
    outbox: MongoOutbox,
    sender: RecordSender,
    events: EventRegistry,
    component: str,
) -> OutboxRelay:
    """A producing service's relay of its committed ``events``: it checks the broker's log
    for replaced partitions with a probe of its own and publishes only between broker
    start and shutdown (readiness is set after the broker starts and cleared first on
    shutdown)."""
    return OutboxRelay(
        outbox,
        contract_publisher(sender, events),
        settings,
        RelayMetrics(runtime.telemetry),
        log_check=log_probe_for(settings),
        can_publish=lambda: bool(runtime.readiness) and runtime.broker.running,
        component=component,
    )


def runtime_of(request: Request) -> Runtime:
    """FastAPI dependency: the running service's :class:`Runtime`."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    http_routers: Sequence[APIRouter] = (),
    kafka_routers: KafkaRouterFactory = lambda _runtime: (),
    lifespan: ServiceLifespan = _no_extra_lifespan,
    telemetry: Telemetry | None = None,
    max_body_bytes: int = 1_048_576,
    route_body_limits: Sequence[tuple[str, int]] = (),
    consumed_topics: Sequence[str] = (),
) -> FastAPI:
    """``consumed_topics`` adds topics read outside FastStream subscribers (e.g. by a
    hand-driven aiokafka consumer) to the consumer-lag metric; subscribers' topics are
    found automatically."""
    telemetry = telemetry or build_telemetry(settings)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = _build_runtime(settings, telemetry)
        app.state.runtime = runtime
        for router in kafka_routers(runtime):
            runtime.broker.include_router(router)
        try:
            async with AsyncExitStack() as stack:
                await _start(runtime, stack, lifespan, consumed_topics)
                try:
                    yield
                finally:
                    # Readiness goes false first so load balancers stop sending work.
                    runtime.readiness.clear()
                    logger.info("%s service stopping", settings.service_name)
                    await runtime.broker.stop()
        finally:
            await runtime.mongo.close()
            telemetry.tracer_provider.shutdown()

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=app_lifespan,
    )
    app.state.telemetry = telemetry  # tests attach span processors here
    install_problem_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=max_body_bytes, route_limits=route_body_limits
    )
    # Per-credential quotas (after the failed-auth check, before anything reads a body).
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.add_middleware(RateLimitMiddleware, limiter=app.state.rate_limiter)
    app.add_middleware(
        FailedAuthLimitMiddleware,
        limiter=FailedAuthLimiter(
            settings.auth_max_failures_per_window, settings.auth_failure_window_s
        ),
    )
    instrument_app(app, telemetry)

    def current_checks() -> dict[str, ReadinessCheck]:
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        return dict(runtime.readiness) if runtime else {}

    app.include_router(
        ops_router(telemetry, current_checks, timeout_s=settings.readiness_timeout_s)
    )

    @app.get("/asyncapi.json", tags=["ops"], summary="AsyncAPI document of this service's topics")
    async def asyncapi(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        spec = AsyncAPI(runtime.broker, title=title, version="1.0.0", description=description)
        return Response(
            json.dumps(spec.to_specification().to_jsonable()), media_type="application/json"
        )

    for router in http_routers:
        app.include_router(router)
    document_problems(app)
    return app


def _build_runtime(settings: ServiceSettings, telemetry: Telemetry) -> Runtime:
    """The clients a service runs on, built (not yet started) when the app starts."""
    return Runtime(
        settings=settings,
        telemetry=telemetry,
        broker=make_broker(settings, telemetry),
        mongo=make_mongo_client(settings, tracer_provider=telemetry.tracer_provider),
        dead_letters=DeadLetterPublisher(
            settings.kafka_bootstrap_servers,
            telemetry,
            settings.group_id,
            security=settings.kafka_security(),
            max_request_bytes=settings.kafka_max_request_bytes,
        ),
    )


async def _start(
    runtime: Runtime,
    stack: AsyncExitStack,
    lifespan: ServiceLifespan,
    consumed_topics: Sequence[str],
) -> None:
    """Start the dead-letter producer, the service's own lifespan, the subscribers and
    the consumer watches, in that order (each stopped by ``stack`` in reverse), then
    declare the service ready."""
    settings, telemetry, broker = runtime.settings, runtime.telemetry, runtime.broker
    await runtime.dead_letters.start()
    stack.push_async_callback(runtime.dead_letters.stop)
    await stack.enter_async_context(lifespan(runtime))
    await broker.start()
    lag = ConsumerLagMonitor(
        telemetry,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        topics=[*_subscribed_topics(broker), *consumed_topics],
        security=settings.kafka_security(),
    )
    await stack.enter_async_context(lag_monitoring(lag, settings.consumer_lag_interval_s))
    log_ends = LogEndWatch(settings.service_name, log_resets_counter(telemetry))
    await stack.enter_async_context(
        background(
            log_ends.run(lambda: _subscriber_consumers(broker), settings.log_end_check_interval_s),
            name="log-end-watch",
        )
    )
    mongo = runtime.mongo
    runtime.readiness.update(
        broker=lambda: broker.ping(timeout=settings.readiness_timeout_s),
        database=lambda: mongo_ping(mongo),
    )
    if settings.uses_dev_key_ring:
        logger.warning(
            "using the DEVELOPMENT learner key-wrapping ring: set "
            "COMMONGROUND_LEARNER_KEY_WRAPPING_KEYS before handling real data"
        )
    logger.info("%s service started", settings.service_name)


def _subscriber_consumers(broker: KafkaBroker) -> list[Any]:
    """The running aiokafka consumers of the broker's subscribers."""
    consumers = (getattr(subscriber, "consumer", None) for subscriber in broker.subscribers)
    return [consumer for consumer in consumers if consumer is not None]


def _subscribed_topics(broker: KafkaBroker) -> list[str]:
    names: list[str] = []
    for subscriber in broker.subscribers:
        for topic in getattr(subscriber, "topics", ()) or ():
            names.append(getattr(topic, "name", topic))
    return names


def run(app_factory: Callable[[], FastAPI], settings: ServiceSettings) -> None:
    """Entry point body for ``python -m services.<name>``: logging, then uvicorn."""
    import uvicorn

    from shared.http_server import uvicorn_config
    from shared.telemetry import configure_logging

    configure_logging(settings)
    uvicorn.Server(uvicorn_config(app_factory(), settings)).run()
