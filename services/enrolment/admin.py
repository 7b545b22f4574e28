"""``enrolment-admin`` (``python -m services.enrolment.admin``): providers and their keys.

    register-provider --name NAME --ukprn 10012345 --combined-authority E47000001 [...]
        Registers a provider and prints its API key ONCE (only a hash is stored).
    rotate-key --ukprn 10012345
        Issues an additional key; the old ones stay valid until revoked (overlap).
    revoke-key --ukprn 10012345 (--key-id ID | --all-but-newest | --all)
        Revokes keys; `list-keys` shows their ids.
    list-keys --ukprn 10012345
    register-data-protection --name NAME
        Registers a data protection officer (may erase any learner: DELETE
        /v1/learners/{pseudonym}) and prints the key ONCE.
    reissue-keys
        Publishes every live learner's data key again, wrapped under the current platform
        wrapping key (step 2 of a wrapping-key rotation, docs/privacy.md).
    rotate-master-key
        Re-wraps every live learner's data key under the first key of
        ENROLMENT_DATA_KEY_ENCRYPTION_KEYS; when it reports 0 remaining, the older master
        keys may be removed and destroyed (docs/privacy.md: erasure and the oplog).
    seed-demo
        If COMMONGROUND_DEMO_PROVIDER_KEY is set: (re)registers "Demo Provider"
        (UKPRN 10000000, all six combined authorities) with that key. Idempotent.

Connection settings come from the service settings (COMMONGROUND_MONGODB_URL, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.enrolment.privacy import RewrapReport
from services.enrolment.repository import MongoProviderDirectory
from services.enrolment.settings import EnrolmentSettings
from shared.auth import ApiKeyStore, Principal, Role, hash_key, new_api_key
from shared.contracts.reference import COMBINED_AUTHORITY_NAMES, CombinedAuthority
from shared.mongo import make_mongo_client

UKPRN = re.compile(r"^1[0-9]{7}$")
DEMO_PROVIDER_NAME = "Demo Provider"
DEMO_PROVIDER_UKPRN = "10000000"


class AdminError(Exception):
    """A clear, user-facing failure (exit status 1)."""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None


def parse_ukprn(value: str) -> str:
    value = value.strip()
    if not UKPRN.fullmatch(value):
        raise AdminError(
            f"UKPRN {value!r} is not valid: a UKPRN has 8 digits and starts with 1 (e.g. 10012345)"
        )
    return value


def parse_authorities(values: Sequence[str]) -> list[CombinedAuthority]:
    if not values:
        raise AdminError("give at least one --combined-authority")
    known = ", ".join(f"{ca.value} ({COMBINED_AUTHORITY_NAMES[ca]})" for ca in CombinedAuthority)
    out: list[CombinedAuthority] = []
    for value in values:
        try:
            ca = CombinedAuthority(value.strip().upper())
        except ValueError:
            raise AdminError(f"unknown combined authority {value!r}; known: {known}") from None
        if ca not in out:
            out.append(ca)
    return out


class ProviderAdmin:
    """The admin operations, on the enrolment service's own database."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._providers = MongoProviderDirectory(db)
        self._keys_collection = db["api_keys"]
        self._keys = ApiKeyStore(self._keys_collection)

    async def ensure_indexes(self) -> None:
        await self._providers.ensure_indexes()
        await self._keys.ensure_indexes()

    async def _principal(self, ukprn: str) -> Principal:
        doc = await self._providers.get(ukprn)
        if doc is None or not doc.get("active", True):
            raise AdminError(f"no provider is registered with UKPRN {ukprn}")
        return Principal(
            principal_id=doc["_id"],
            name=doc["name"],
            role=Role.PROVIDER,
            combined_authorities=tuple(CombinedAuthority(c) for c in doc["combined_authorities"]),
            ukprn=ukprn,
        )

    async def register_provider(self, name: str, ukprn: str, authorities: Sequence[str]) -> str:
        """Register a provider; returns its first API key (shown once, stored hashed)."""
        name = name.strip()
        if not name:
            raise AdminError("--name must not be empty")
        ukprn = parse_ukprn(ukprn)
        cas = parse_authorities(authorities)
        try:
            await self._providers.register(name=name, ukprn=ukprn, combined_authorities=cas)
        except DuplicateKeyError:
            raise AdminError(
                f"a provider with UKPRN {ukprn} is already registered; use rotate-key for a new key"
            ) from None
        key = new_api_key()
        await self._keys.add_key(await self._principal(ukprn), key)
        return key

    async def rotate_key(self, ukprn: str) -> str:
        """A new key for the provider; older keys stay valid until revoked."""
        principal = await self._principal(parse_ukprn(ukprn))
        key = new_api_key()
        await self._keys.add_key(principal, key)
        return key

    async def list_keys(self, ukprn: str) -> list[KeyInfo]:
        principal = await self._principal(parse_ukprn(ukprn))
        cursor = self._keys_collection.find({"principal_id": principal.principal_id}).sort(
            "created_at", 1
        )
        return [
            KeyInfo(d["key_hash"][:12], d["key_hash"], d["created_at"], d.get("revoked_at"))
            async for d in cursor
        ]

    async def revoke_keys(
        self,
        ukprn: str,
        *,
        key_id: str | None = None,
        all_but_newest: bool = False,
        revoke_all: bool = False,
    ) -> int:
        principal = await self._principal(parse_ukprn(ukprn))
        if revoke_all:
            return await self._keys.revoke_principal(principal.principal_id)
        active = [k for k in await self.list_keys(ukprn) if k.revoked_at is None]
        if all_but_newest:
            targets = active[:-1]
        elif key_id:
            targets = [k for k in active if k.key_id == key_id.strip()]
            if not targets:
                raise AdminError(f"no active key {key_id!r} for UKPRN {ukprn} (see list-keys)")
        else:
            raise AdminError("say which keys: --key-id ID, --all-but-newest or --all")
        revoked = 0
        for info in targets:
            if await self._keys.revoke_key(info.key_hash):
                revoked += 1
        return revoked

    async def register_data_protection(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise AdminError("--name must not be empty")
        principal = Principal(
            principal_id=f"dpo:{hash_key(name)[:16]}", name=name, role=Role.DATA_PROTECTION
        )
        key = new_api_key()
        await self._keys.add_key(principal, key)
        return key

    async def seed_demo(self, key: str) -> None:
        """Idempotently register the demo provider for all six combined authorities with
        ``key`` (kept valid; an earlier demo key stays valid too)."""
        await self._providers.upsert(
            name=DEMO_PROVIDER_NAME,
            ukprn=DEMO_PROVIDER_UKPRN,
            combined_authorities=list(CombinedAuthority),
        )
        principal = await self._principal(DEMO_PROVIDER_UKPRN)
        await self._keys.add_key(principal, key)
        # add_key never rewrites an existing key: refresh the contracts it carries.
        await self._keys_collection.update_one(
            {"key_hash": hash_key(key)},
            {"$set": {**principal.model_dump(mode="json"), "revoked_at": None}},
        )


async def reissue_keys(client: AsyncMongoClient[Any], settings: EnrolmentSettings) -> int:
    """Queue LearnerKeyIssued for every live learner (the running service's relay
    publishes them)."""
    from services.enrolment.app import key_rings_for, pseudonymiser_for
    from services.enrolment.privacy import LearnerVault, SubmissionSealer
    from services.enrolment.unit_of_work import unit_of_work_factory
    from services.enrolment.use_cases.intake import EnrolmentService, IntakeMetrics
    from services.enrolment.use_cases.privacy import PrivacyService
    from shared.outbox import MongoOutbox
    from shared.telemetry import build_telemetry

    db = client[settings.database_name]
    master, platform = key_rings_for(settings)
    outbox = MongoOutbox(
        db,
        retention_s=settings.outbox_retention_s,
        max_messages_per_row=settings.outbox_row_max_messages,
    )
    vault = LearnerVault(db, master=master, platform=platform)
    unit_of_work = unit_of_work_factory(client, db, outbox, SubmissionSealer(vault))
    service = EnrolmentService(
        unit_of_work,
        MongoProviderDirectory(db),
        pseudonymiser_for(settings),
        IntakeMetrics(build_telemetry(settings)),
        vault=vault,
    )
    return await PrivacyService(service, unit_of_work, vault).reissue_keys()


async def rotate_master_key(
    client: AsyncMongoClient[Any], settings: EnrolmentSettings
) -> RewrapReport:
    """Re-wrap every live learner data key under the current master key."""
    from services.enrolment.app import key_rings_for
    from services.enrolment.privacy import LearnerVault

    db = client[settings.database_name]
    master, platform = key_rings_for(settings)
    vault = LearnerVault(db, master=master, platform=platform)
    return await vault.rewrap_all()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enrolment-admin",
        description="Register enrolment providers and manage their API keys.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register-provider", help="register a provider, print its key once")
    reg.add_argument("--name", required=True)
    reg.add_argument("--ukprn", required=True, help="8 digits, starting with 1")
    reg.add_argument(
        "--combined-authority",
        action="append",
        default=[],
        dest="authorities",
        help="ONS code, e.g. E47000001 (repeat for several)",
    )
    rot = sub.add_parser("rotate-key", help="issue an additional key (old keys stay valid)")
    rot.add_argument("--ukprn", required=True)
    lst = sub.add_parser("list-keys", help="key ids and dates (never the keys)")
    lst.add_argument("--ukprn", required=True)
    rev = sub.add_parser("revoke-key", help="revoke keys")
    rev.add_argument("--ukprn", required=True)
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--key-id", help="an id shown by list-keys")
    which.add_argument("--all-but-newest", action="store_true", help="finish a rotation")
    which.add_argument("--all", action="store_true", dest="revoke_all", help="lock out")
    dpo = sub.add_parser(
        "register-data-protection", help="register a data protection officer, print the key once"
    )
    dpo.add_argument("--name", required=True)
    sub.add_parser("reissue-keys", help="re-publish live learner keys under the current ring")
    sub.add_parser(
        "rotate-master-key",
        help="re-wrap live learner data keys under the first master key",
    )
    sub.add_parser("seed-demo", help="register the demo provider (COMMONGROUND_DEMO_PROVIDER_KEY)")
    return parser


async def run(args: argparse.Namespace, settings: EnrolmentSettings) -> str:
    client = make_mongo_client(settings)
    try:
        admin = ProviderAdmin(client[settings.database_name])
        await admin.ensure_indexes()
        if args.command == "register-provider":
            key = await admin.register_provider(args.name, args.ukprn, args.authorities)
            return (
                f"registered provider {args.name.strip()} (UKPRN {args.ukprn.strip()})\n"
                f"API key (shown once, store it now): {key}\n"
            )
        if args.command == "rotate-key":
            key = await admin.rotate_key(args.ukprn)
            return (
                f"new API key (shown once): {key}\n"
                "the previous keys stay valid until `revoke-key --all-but-newest`\n"
            )
        if args.command == "list-keys":
            rows = await admin.list_keys(args.ukprn)
            return "".join(
                f"{k.key_id}  created {k.created_at:%Y-%m-%d %H:%M}  "
                + (f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active")
                + "\n"
                for k in rows
            )
        if args.command == "revoke-key":
            count = await admin.revoke_keys(
                args.ukprn,
                key_id=args.key_id,
                all_but_newest=args.all_but_newest,
                revoke_all=args.revoke_all,
            )
            return f"revoked {count} key(s)\n"
        if args.command == "register-data-protection":
            key = await admin.register_data_protection(args.name)
            return f"API key (shown once, store it now): {key}\n"
        if args.command == "reissue-keys":
            count = await reissue_keys(client, settings)
            return f"queued {count} learner key(s) for publication under the current ring\n"
        if args.command == "rotate-master-key":
            report = await rotate_master_key(client, settings)
            if report.unreadable:
                raise AdminError(
                    f"{report.unreadable} learner key(s) are wrapped under a master key that is "
                    "not in ENROLMENT_DATA_KEY_ENCRYPTION_KEYS; put it back and run again"
                )
            return (
                f"re-wrapped {report.rewrapped} learner key(s) under the current master key; "
                f"{report.remaining} still under an older one"
                + (
                    " (run again)\n"
                    if report.remaining
                    else "\nthe older master keys may now be removed and destroyed\n"
                )
            )
        if args.command == "seed-demo":
            if settings.demo_provider_key is None:
                return "COMMONGROUND_DEMO_PROVIDER_KEY is not set: no demo provider seeded\n"
            await admin.seed_demo(settings.demo_provider_key.get_secret_value())
            return (
                f"demo provider ready: {DEMO_PROVIDER_NAME} (UKPRN {DEMO_PROVIDER_UKPRN}), "
                "all six combined authorities, key from COMMONGROUND_DEMO_PROVIDER_KEY\n"
            )
        raise AdminError(f"unknown command {args.command!r}")
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = asyncio.run(run(args, EnrolmentSettings()))
    except AdminError as exc:
        sys.stderr.write(f"enrolment-admin: error: {exc}\n")
        return 1
    except PyMongoError as exc:
        sys.stderr.write(
            f"enrolment-admin: database error ({type(exc).__name__}); "
            "check COMMONGROUND_MONGODB_URL\n"
        )
        return 1
    sys.stdout.write(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
