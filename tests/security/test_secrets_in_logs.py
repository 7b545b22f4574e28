"""No secret ever reaches a log line (runs last in this package, over everything the
platform logged while the other security tests ran: startup, intake, failed and refused
authentications, erasure, consent changes, floods of bad input)."""

from __future__ import annotations

import pytest

from services.enrolment.settings import DEV_DATA_KEY_ENCRYPTION_KEYS, DEV_PSEUDONYM_KEY
from shared.settings import DEV_LEARNER_KEY_WRAPPING_KEYS
from tests.security.conftest import Platform, submission

pytestmark = pytest.mark.integration


async def test_logs_never_carry_keys_or_secrets(platform: Platform) -> None:
    p = platform
    # Make sure failures with real-looking keys are among the logged events.
    wrong = "cg_" + "W" * 43
    refused = await p.enrolment.post(
        "/v1/enrolments", json=submission(), headers={"Authorization": f"Bearer {wrong}"}
    )
    assert refused.status_code == 401
    wrong_role = await p.enrolment.post(
        "/v1/enrolments", json=submission(), headers=p.auth(p.keys.dpo)
    )
    assert wrong_role.status_code == 403
    assert any("authentication failed" in line for line in p.logs)

    secrets = {
        "a presented API key": wrong,
        **{f"API key {name}": key for name, key in vars(p.keys).items()},
        "pseudonym key": DEV_PSEUDONYM_KEY,
        "data key encryption keys": DEV_DATA_KEY_ENCRYPTION_KEYS.split(":", 1)[1],
        "key wrapping keys": DEV_LEARNER_KEY_WRAPPING_KEYS.split(":", 1)[1],
    }
    assert len(p.logs) > 20
    for line in p.logs:
        for what, secret in secrets.items():
            assert secret not in line, f"{what} logged: {line[:200]}"
        for personal in ("asian_pakistani", "OL9 7ZZ", '"muslim"'):
            assert personal not in line, f"personal data logged: {line[:200]}"
