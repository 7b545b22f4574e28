"""Administration of the matching service's coordinator accounts.

    python -m services.matching.admin register-coordinator --name "Oldham team" \\
        --combined-authority E47000001 [--combined-authority E47000007 ...]
    python -m services.matching.admin seed-demo

``register-coordinator`` prints the new API key once (only its hash is stored).
``seed-demo`` registers ``COMMONGROUND_DEMO_COORDINATOR_KEY`` (if set) for a demo
coordinator of all six combined authorities; running it again changes nothing.
Both use the service settings (``COMMONGROUND_MONGODB_URL`` etc.).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence

from services.matching.settings import MatchingSettings
from shared.auth import ApiKeyStore, Principal, Role, new_api_key
from shared.contracts.reference import CombinedAuthority
from shared.mongo import make_mongo_client

DEMO_COORDINATOR_ID = "demo-coordinator"


async def register_coordinator(
    settings: MatchingSettings,
    name: str,
    authorities: Sequence[CombinedAuthority],
    *,
    principal_id: str | None = None,
    key: str | None = None,
) -> tuple[Principal, str]:
    """Store a coordinator key (hashed); returns the principal and the key."""
    principal = Principal(
        principal_id=principal_id or f"coordinator-{uuid.uuid4().hex[:12]}",
        name=name,
        role=Role.COORDINATOR,
        combined_authorities=tuple(sorted(set(authorities))),
    )
    key = key or new_api_key()
    client = make_mongo_client(settings)
    try:
        store = ApiKeyStore(client[settings.database_name]["api_keys"])
        await store.ensure_indexes()
        await store.add_key(principal, key)
    finally:
        await client.close()
    return principal, key


async def seed_demo(settings: MatchingSettings) -> Principal | None:
    if settings.demo_coordinator_key is None:
        return None
    principal, _ = await register_coordinator(
        settings,
        "Demo coordinator (all combined authorities)",
        list(CombinedAuthority),
        principal_id=DEMO_COORDINATOR_ID,
        key=settings.demo_coordinator_key.get_secret_value(),
    )
    return principal


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.matching.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register-coordinator", help="create a coordinator API key")
    register.add_argument("--name", required=True)
    register.add_argument(
        "--combined-authority",
        dest="authorities",
        action="append",
        required=True,
        type=CombinedAuthority,
        metavar="CODE",
        help=f"E47… code; repeat for several ({', '.join(c.value for c in CombinedAuthority)})",
    )
    commands.add_parser("seed-demo", help="register the demo coordinator key, if configured")
    args = parser.parse_args(argv)
    settings = MatchingSettings()
    if args.command == "register-coordinator":
        principal, key = asyncio.run(register_coordinator(settings, args.name, args.authorities))
        sys.stdout.write(
            f"coordinator {principal.principal_id} ({', '.join(principal.combined_authorities)})\n"
            f"API key (shown once, store it now): {key}\n"
        )
        return 0
    demo = asyncio.run(seed_demo(settings))
    if demo is None:
        sys.stdout.write("matching: COMMONGROUND_DEMO_COORDINATOR_KEY not set; nothing seeded\n")
    else:
        sys.stdout.write(f"matching: demo coordinator {demo.principal_id} ready\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
