"""What enrolment's routes depend on: the context built in the lifespan, the caller's
provider, body limits and backpressure (FastAPI dependencies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.enrolment.domain import Provider
from services.enrolment.inbound_auth import InboundAuthenticator
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases.ilr import IlrIntake
from services.enrolment.use_cases.intake import EnrolmentService
from services.enrolment.use_cases.privacy import PrivacyService
from shared.auth import ApiKeyStore, Principal, Role, authenticate
from shared.health import DependencyWatch
from shared.outbox import OutboxRelay
from shared.problems import Problem

STATE_KEY = "enrolment"


@dataclass(frozen=True)
class EnrolmentContext:
    """What the routes and subscribers need, built in the lifespan."""

    settings: EnrolmentSettings
    service: EnrolmentService
    keys: ApiKeyStore
    relay: OutboxRelay
    privacy: PrivacyService | None = None
    broker_watch: DependencyWatch | None = None
    inbound_auth: InboundAuthenticator | None = None


def context_of(request: Request) -> EnrolmentContext:
    ctx: EnrolmentContext = request.app.state.runtime.state[STATE_KEY]
    return ctx


Context = Annotated[EnrolmentContext, Depends(context_of)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ProviderKey",
    description="The provider's API key: `Authorization: Bearer <key>`.",
)


async def current_provider(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Provider:
    header = f"Bearer {credentials.credentials}" if credentials else None
    principal = await authenticate(ctx.keys, header, [Role.PROVIDER])
    provider = await ctx.service.provider(principal.ukprn)
    if provider is None:
        raise Problem(
            403,
            "Forbidden",
            "This key's provider is not registered or has been deactivated.",
            slug="provider-inactive",
        )
    return provider


CurrentProvider = Annotated[Provider, Depends(current_provider)]


def size_limit(limit: Callable[[EnrolmentSettings], int]) -> Callable[..., Awaitable[None]]:
    async def check(request: Request, ctx: Context) -> None:
        length = request.headers.get("content-length", "")
        max_bytes = limit(ctx.settings)
        if length.isdigit() and int(length) > max_bytes:
            raise Problem(
                413,
                "Payload too large",
                f"This endpoint accepts bodies up to {max_bytes} bytes.",
                slug="payload-too-large",
            )

    return check


async def intake_open(ctx: Context) -> None:
    """Backpressure: refuse new work while the broker is unreachable or not keeping up
    (what is accepted is stored with its events; they are published when it is back)."""
    if ctx.broker_watch is not None and not ctx.broker_watch.available:
        raise Problem(
            503,
            "Service unavailable",
            "The event broker is unreachable; nothing was stored. Retry later.",
            slug="broker-unavailable",
            headers={"Retry-After": str(ctx.settings.outbox_retry_after_s)},
        )
    if ctx.relay.backlog > ctx.settings.outbox_backlog_limit:
        raise Problem(
            503,
            "Service unavailable",
            "Events are not being published fast enough (broker unavailable?); "
            "nothing was stored. Retry later.",
            slug="intake-backpressure",
            headers={"Retry-After": str(ctx.settings.outbox_retry_after_s)},
        )


def privacy_of(ctx: EnrolmentContext) -> PrivacyService:
    if ctx.privacy is None:
        raise Problem(503, "Service unavailable", "Privacy features are not configured.")
    return ctx.privacy


_erasure_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ProviderOrDataProtectionKey",
    description="A provider's key (its own learners) or a data protection officer's key.",
)


async def erasure_caller(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_erasure_bearer)],
) -> Principal:
    header = f"Bearer {credentials.credentials}" if credentials else None
    return await authenticate(ctx.keys, header, [Role.PROVIDER, Role.DATA_PROTECTION])


ILR_STATE_KEY = "enrolment.ilr"


def ilr_of(request: Request) -> IlrIntake:
    intake: IlrIntake | None = request.app.state.runtime.state.get(ILR_STATE_KEY)
    if intake is None:
        raise Problem(503, "Service unavailable", "ILR intake is not running.")
    return intake


Intake = Annotated[IlrIntake, Depends(ilr_of)]
