"""MongoDB client construction (PyMongo's async API). Created in a lifespan, never at import."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from shared.settings import ServiceSettings


def make_mongo_client(settings: ServiceSettings, **overrides: Any) -> AsyncMongoClient[Any]:
    options: dict[str, Any] = {
        "appname": settings.service_name,
        "serverSelectionTimeoutMS": 5000,
        "tz_aware": True,
    }
    options.update(overrides)
    return AsyncMongoClient(settings.mongodb_url.get_secret_value(), **options)


async def mongo_ping(client: AsyncMongoClient[Any]) -> bool:
    await client.admin.command("ping")
    return True
