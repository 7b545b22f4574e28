"""enrolment-admin against the real database: register-provider prints a working key once,
rotation overlaps until revocation, seed-demo (run as the devstack runs it) is idempotent."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.enrolment.admin import DEMO_PROVIDER_UKPRN, AdminError, build_parser, run
from services.enrolment.settings import EnrolmentSettings
from shared.auth import ApiKeyStore, Role, new_api_key
from shared.contracts.reference import CombinedAuthority
from tests.infra import Infra

ROOT = Path(__file__).resolve().parents[3]


def settings_for(infra: Infra) -> EnrolmentSettings:
    return EnrolmentSettings(mongodb_url=infra.mongodb_url)


async def admin(infra: Infra, *argv: str) -> str:
    return await run(build_parser().parse_args(list(argv)), settings_for(infra))


async def authenticate(infra: Infra, key: str) -> Any:
    client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_url)
    try:
        db = client[settings_for(infra).database_name]
        return await ApiKeyStore(db["api_keys"]).authenticate(key)
    finally:
        await client.close()


def key_in(output: str) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.startswith(("API key", "new API key"))]
    return line.rsplit(" ", 1)[1]


async def test_register_rotate_and_revoke(infra: Infra) -> None:
    ukprn = "1" + "".join(random.choices("0123456789", k=7))
    out = await admin(
        infra,
        "register-provider",
        "--name",
        "Wigan Adult Learning",
        "--ukprn",
        ukprn,
        "--combined-authority",
        "E47000001",
        "--combined-authority",
        "e47000004",
    )
    first = key_in(out)
    principal = await authenticate(infra, first)
    assert principal is not None and principal.role is Role.PROVIDER
    assert principal.ukprn == ukprn
    assert set(principal.combined_authorities) == {
        CombinedAuthority.GREATER_MANCHESTER,
        CombinedAuthority.LIVERPOOL_CITY_REGION,
    }
    listed = await admin(infra, "list-keys", "--ukprn", ukprn)
    assert first not in listed and "active" in listed  # ids only, never keys

    second = key_in(await admin(infra, "rotate-key", "--ukprn", ukprn))
    assert second != first
    assert await authenticate(infra, first) is not None  # overlap until revoked
    assert await authenticate(infra, second) is not None
    assert "revoked 1 key(s)" in await admin(
        infra, "revoke-key", "--ukprn", ukprn, "--all-but-newest"
    )
    assert await authenticate(infra, first) is None
    assert await authenticate(infra, second) is not None
    await admin(infra, "revoke-key", "--ukprn", ukprn, "--all")
    assert await authenticate(infra, second) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ukprn", "1234", "--combined-authority", "E47000001"], "UKPRN '1234' is not valid"),
        (["--ukprn", "10000001", "--combined-authority", "E47000099"], "unknown combined"),
        (["--ukprn", "10000001"], "at least one --combined-authority"),
    ],
)
async def test_register_provider_explains_bad_input(
    infra: Infra, argv: list[str], message: str
) -> None:
    with pytest.raises(AdminError, match=message):
        await admin(infra, "register-provider", "--name", "X", *argv)


async def test_registering_a_ukprn_twice_is_refused(infra: Infra) -> None:
    ukprn = "1" + "".join(random.choices("0123456789", k=7))
    args = [
        "register-provider",
        "--name",
        "A",
        "--ukprn",
        ukprn,
        "--combined-authority",
        "E47000009",
    ]
    await admin(infra, *args)
    with pytest.raises(AdminError, match="already registered"):
        await admin(infra, *args)


async def seed_demo(env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.enrolment.admin",
        "seed-demo",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_seed_demo_as_the_local_stack_runs_it_is_idempotent(infra: Infra) -> None:
    key = new_api_key()
    env = {
        **os.environ,
        "COMMONGROUND_MONGODB_URL": infra.mongodb_url,
        "COMMONGROUND_DEMO_PROVIDER_KEY": key,
    }
    for _ in range(2):
        code, out, err = await seed_demo(env)
        assert code == 0, err
        assert "demo provider ready" in out
        assert key not in out + err

    principal = await authenticate(infra, key)
    assert principal is not None and principal.ukprn == DEMO_PROVIDER_UKPRN
    assert set(principal.combined_authorities) == set(CombinedAuthority)

    unset = {k: v for k, v in env.items() if k != "COMMONGROUND_DEMO_PROVIDER_KEY"}
    code, out, _ = await seed_demo(unset)
    assert code == 0 and "not set" in out
