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
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo.asynchronous.collection import AsyncCollection

from shared.contracts.reference import CombinedAuthority
from shared.problems import Problem

logger = logging.getLogger(__name__)

KEY_PREFIX = "cg_"


class Role(StrEnum):
    PROVIDER = "provider"
    COORDINATOR = "coordinator"
    ANALYST = "analyst"
    DATA_PROTECTION = "data_protection"


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
        await self._keys.update_one(
            {"key_hash": doc["key_hash"]}, {"$setOnInsert": doc}, upsert=True
        )

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
