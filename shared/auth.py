"""API-key authentication plumbing shared by the services.

Each service keeps its own principals in its own database (collection ``api_keys``);
this module only knows how keys are made, stored (hashed) and checked, and how a
bearer header becomes a :class:`Principal`. Which role may do what is each service's
business, decided in its routes.

Keys are 256-bit random tokens, so a single SHA-256 is a sound storage hash (slow
password hashes exist for low-entropy secrets); comparison happens on the hash via
an indexed lookup, never on the secret.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo.asynchronous.collection import AsyncCollection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.contracts.reference import CombinedAuthority
from shared.problems import Problem, problem_response
from shared.record_signing import public_key_for

logger = logging.getLogger(__name__)

KEY_PREFIX = "cg_"


class Role(StrEnum):
    PROVIDER = "provider"
    COORDINATOR = "coordinator"
    ANALYST = "analyst"
    DATA_PROTECTION = "data_protection"
    VOLUNTEER = "volunteer"
    """A befriending volunteer (matching only): records meetings on their own matches."""


class Principal(BaseModel):
    """Who is calling: never holds the secret."""

    model_config = ConfigDict(frozen=True)

    principal_id: str
    name: str
    role: Role
    combined_authorities: tuple[CombinedAuthority, ...] = ()
    ukprn: str | None = None


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    """Principals and their hashed keys in a service's ``api_keys`` collection."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._keys = collection

    async def ensure_indexes(self) -> None:
        await self._keys.create_index("key_hash", unique=True)
        await self._keys.create_index("principal_id")

    async def add_key(self, principal: Principal, key: str) -> None:
        """Store ``key`` (hashed) for ``principal``; idempotent for the same key."""
        doc = {
            **principal.model_dump(mode="json"),
            "key_hash": hash_key(key),
            "created_at": datetime.now(UTC),
            "revoked_at": None,
        }
        # The public half of the key's record-signing key (shared.record_signing):
        # deterministic, so re-adding a key also backfills it on older documents.
        await self._keys.update_one(
            {"key_hash": doc["key_hash"]},
            {"$setOnInsert": doc, "$set": {"signing_public_key": public_key_for(key)}},
            upsert=True,
        )

    async def signing_keys(self, key_hashes: Sequence[str]) -> dict[str, tuple[Principal, str]]:
        """Live keys among ``key_hashes`` that can verify record signatures:
        key hash → (principal, public signing key). Revoked keys are absent."""
        if not key_hashes:
            return {}
        cursor = self._keys.find(
            {
                "key_hash": {"$in": list(set(key_hashes))},
                "revoked_at": None,
                "signing_public_key": {"$exists": True},
            }
        )
        out: dict[str, tuple[Principal, str]] = {}
        async for doc in cursor:
            principal = Principal.model_validate(
                {k: doc[k] for k in Principal.model_fields if k in doc}
            )
            out[doc["key_hash"]] = (principal, doc["signing_public_key"])
        return out

    async def revoke_key(self, key_hash: str) -> bool:
        result = await self._keys.update_one(
            {"key_hash": key_hash, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}}
        )
        return result.modified_count == 1

    async def revoke_principal(self, principal_id: str) -> int:
        result = await self._keys.update_many(
            {"principal_id": principal_id, "revoked_at": None},
            {"$set": {"revoked_at": datetime.now(UTC)}},
        )
        return result.modified_count

    async def authenticate(self, key: str) -> Principal | None:
        doc = await self._keys.find_one({"key_hash": hash_key(key), "revoked_at": None})
        if doc is None:
            return None
        return Principal.model_validate({k: doc[k] for k in Principal.model_fields if k in doc})


UNAUTHORIZED = Problem(
    401,
    "Unauthorized",
    "Send a valid API key as 'Authorization: Bearer <key>'.",
    slug="unauthorized",
    headers={"WWW-Authenticate": 'Bearer realm="commonground"'},
)


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(
    store: ApiKeyStore, authorization: str | None, allowed: Sequence[Role]
) -> Principal:
    """The caller, or a 401/403 problem. Failures are logged without the secret."""
    key = bearer_key(authorization)
    principal = await store.authenticate(key) if key else None
    if principal is None:
        logger.warning("authentication failed (%s)", "no key" if not key else "unknown key")
        raise UNAUTHORIZED
    if principal.role not in allowed:
        raise Problem(
            403,
            "Forbidden",
            f"This endpoint is for the {', '.join(r.value for r in allowed)} role(s).",
            slug="forbidden-role",
        )
    return principal


# ------------------------------------------------------------------ failed-auth limiting


class FailedAuthLimiter:
    """Counts failed authentications (401s) per client address in fixed one-window
    buckets; a client at the limit is refused until its window ends. Memory is bounded:
    at most ``max_clients`` addresses are tracked (least recently failed dropped first).
    """

    def __init__(
        self,
        max_failures: int = 30,
        window_s: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not blocked."""
        entry = self._clients.get(client)
        if entry is None:
            return None
        started, failures = entry
        remaining = started + self.window_s - self._clock()
        if remaining <= 0:
            del self._clients[client]
            return None
        return math.ceil(remaining) if failures >= self.max_failures else None

    def failed(self, client: str) -> None:
        now = self._clock()
        started, failures = self._clients.pop(client, (now, 0))
        if now - started >= self.window_s:
            started, failures = now, 0
        self._clients[client] = (started, failures + 1)
        if failures + 1 == self.max_failures:
            logger.warning(
                "client blocked for %.0fs after %d failed authentications",
                self.window_s,
                self.max_failures,
            )
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)


OPS_PATHS = ("/healthz", "/readyz", "/metrics")


class FailedAuthLimitMiddleware:
    """ASGI middleware: a client whose requests failed authentication too often gets 429
    problem+json with Retry-After before anything else runs (ops endpoints exempt)."""

    def __init__(self, app: ASGIApp, limiter: FailedAuthLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(OPS_PATHS):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.limiter.retry_after(client)
        if wait is not None:
            problem = Problem(
                429,
                "Too many requests",
                "Too many failed authentications from this address; retry later.",
                slug="too-many-failed-authentications",
                headers={"Retry-After": str(wait)},
            )
            await problem_response(problem, scope.get("path"))(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.limiter.failed(client)
            await send(message)

        await self.app(scope, receive, watch)
