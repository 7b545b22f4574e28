"""``python -m services.reporting.admin``: manage who may read reports.

register --role analyst|coordinator --name NAME [--combined-authority E47000001 ...]
    Create a principal and print its key once (only its hash is stored).
    Coordinators are limited to the combined authorities given (at least one);
    analysts see every combined authority unless some are given.
revoke --principal-id ID
    Revoke every key of a principal.
seed-demo
    Register the demo keys from COMMONGROUND_DEMO_COORDINATOR_KEY (a coordinator for
    all six combined authorities) and COMMONGROUND_DEMO_ANALYST_KEY (an analyst).
    Idempotent; a key that is not set is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from pymongo import AsyncMongoClient

from services.reporting.settings import ReportingSettings
from shared.auth import ApiKeyStore, Principal, Role, new_api_key
from shared.contracts.reference import CombinedAuthority
from shared.mongo import make_mongo_client

REPORT_ROLES = (Role.ANALYST, Role.COORDINATOR)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.reporting.admin")
    sub = parser.add_subparsers(dest="command", required=True)
    register = sub.add_parser("register", help="create a principal and print its key once")
    register.add_argument("--role", required=True, choices=[r.value for r in REPORT_ROLES])
    register.add_argument("--name", required=True)
    register.add_argument(
        "--combined-authority",
        action="append",
        default=[],
        choices=[ca.value for ca in CombinedAuthority],
        help="may be repeated; required for coordinators",
    )
    revoke = sub.add_parser("revoke", help="revoke every key of a principal")
    revoke.add_argument("--principal-id", required=True)
    sub.add_parser("seed-demo", help="register the demo keys from the environment")
    return parser


async def _store(
    client: AsyncMongoClient[dict[str, object]], settings: ReportingSettings
) -> ApiKeyStore:
    store = ApiKeyStore(client[settings.database_name]["api_keys"])
    await store.ensure_indexes()
    return store


async def register(
    store: ApiKeyStore, role: Role, name: str, combined_authorities: Sequence[str]
) -> tuple[Principal, str]:
    if role == Role.COORDINATOR and not combined_authorities:
        raise ValueError("a coordinator needs at least one --combined-authority")
    principal = Principal(
        principal_id=f"{role.value}-{uuid.uuid4().hex[:12]}",
        name=name,
        role=role,
        combined_authorities=tuple(CombinedAuthority(ca) for ca in combined_authorities),
    )
    key = new_api_key()
    await store.add_key(principal, key)
    return principal, key


async def seed_demo(store: ApiKeyStore, settings: ReportingSettings) -> list[str]:
    seeded = []
    demo = [
        (
            settings.demo_coordinator_key,
            Principal(
                principal_id="demo-coordinator",
                name="Demo coordinator",
                role=Role.COORDINATOR,
                combined_authorities=tuple(CombinedAuthority),
            ),
        ),
        (
            settings.demo_analyst_key,
            Principal(principal_id="demo-analyst", name="Demo analyst", role=Role.ANALYST),
        ),
    ]
    for secret, principal in demo:
        if secret is None:
            continue
        await store.add_key(principal, secret.get_secret_value())
        seeded.append(principal.principal_id)
    return seeded


async def _main(args: argparse.Namespace, settings: ReportingSettings) -> int:
    client = make_mongo_client(settings)
    try:
        store = await _store(client, settings)
        if args.command == "register":
            try:
                principal, key = await register(
                    store, Role(args.role), args.name, args.combined_authority
                )
            except ValueError as exc:
                sys.stderr.write(f"error: {exc}\n")
                return 2
            _out(f"principal_id: {principal.principal_id}")
            _out(f"role: {principal.role.value}")
            _out(f"key: {key}")
            _out("Keep the key now: it is stored only as a hash and cannot be shown again.")
        elif args.command == "revoke":
            count = await store.revoke_principal(args.principal_id)
            _out(f"revoked {count} key(s) of {args.principal_id}")
        else:
            seeded = await seed_demo(store, settings)
            if seeded:
                _out(f"reporting: demo keys registered for {', '.join(seeded)}")
        return 0
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return asyncio.run(_main(args, ReportingSettings()))


if __name__ == "__main__":
    sys.exit(main())
