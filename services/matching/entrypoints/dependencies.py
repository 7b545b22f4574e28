"""What matching's edge depends on: the context the lifespan builds, and who the HTTP
caller is (FastAPI dependencies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.matching.use_cases import MatchingService
from shared.auth import ApiKeyStore, Principal, Role, authenticate
from shared.positions import LogFence, MongoPositions
from shared.service import Runtime, runtime_of

bearer = HTTPBearer(auto_error=False, description="A coordinator's API key.")


@dataclass(frozen=True)
class MatchingContext:
    """What the lifespan builds and the entrypoints use (``runtime.state["matching"]``)."""

    service: MatchingService
    keys: ApiKeyStore
    positions: MongoPositions | None = None
    fence: LogFence | None = None


def context_of(runtime: Runtime) -> MatchingContext:
    context: MatchingContext = runtime.state["matching"]
    return context


def caller(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's principal if its key has one of ``roles``, else 401/403."""

    async def authenticated(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        keys = context_of(runtime_of(request)).keys
        header = f"Bearer {credentials.credentials}" if credentials else None
        return await authenticate(keys, header, roles)

    return authenticated


def service_of(request: Request) -> MatchingService:
    return context_of(runtime_of(request)).service


Coordinator = Annotated[Principal, Depends(caller(Role.COORDINATOR))]
CoordinatorOrVolunteer = Annotated[Principal, Depends(caller(Role.COORDINATOR, Role.VOLUNTEER))]
Service = Annotated[MatchingService, Depends(service_of)]
