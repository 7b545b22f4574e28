"""Demo accounts for newcomers and scripts.

Each service owns its own accounts, so each exposes ``python -m services.<name>.admin
seed-demo``, which reads its ``COMMONGROUND_DEMO_*_KEY`` variables and is idempotent, so
a failed attempt is simply run again: transient failures (the database not answering
yet: a server-selection timeout on a busy machine) are retried with backoff for up to
``COMMONGROUND_READY_TIMEOUT_S``; anything else fails at once, naming the service.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from devstack.processes import StackError
from devstack.settings import StackSettings

SERVICES_WITH_ACCOUNTS = ("enrolment", "matching", "reporting")
logger = logging.getLogger(__name__)

# What a seeding command prints when the database did not answer in time.
TRANSIENT_MARKERS = (
    "ServerSelectionTimeoutError",
    "AutoReconnect",
    "NetworkTimeout",
    "ConnectionFailure",
    "Connection refused",
    "timed out",
)


class TransientSeedingError(StackError):
    """The seeding command failed because the database did not answer (worth a retry)."""


def seed_demo_accounts(mongodb_url: str, settings: StackSettings) -> None:
    for name in SERVICES_WITH_ACCOUNTS:
        module = f"services.{name}.admin"
        if importlib.util.find_spec(module) is None:
            continue
        for attempt in Retrying(
            retry=retry_if_exception_type(TransientSeedingError),
            stop=stop_after_delay(settings.ready_timeout_s),
            wait=wait_exponential(multiplier=0.5, max=5.0),
            before_sleep=_log_retry(name),
            reraise=True,
        ):
            with attempt:
                output = _seed(name, module, mongodb_url, settings.ready_timeout_s)
        if output:
            print(output, flush=True)


def _seed(name: str, module: str, mongodb_url: str, timeout_s: float) -> str:
    try:
        result = subprocess.run(
            [sys.executable, "-m", module, "seed-demo"],
            env={**_environ(), "COMMONGROUND_MONGODB_URL": mongodb_url},
            capture_output=True,
            text=True,
            timeout=max(timeout_s, 60.0),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientSeedingError(
            f"seeding demo accounts in {name} did not finish within {exc.timeout:.0f}s"
        ) from None
    if result.returncode != 0:
        detail = result.stderr[-2000:]
        if any(marker in detail for marker in TRANSIENT_MARKERS):
            raise TransientSeedingError(
                f"seeding demo accounts in {name} failed (database not answering):\n{detail}"
            )
        raise StackError(f"seeding demo accounts in {name} failed:\n{detail}")
    return result.stdout.strip()


def _log_retry(name: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        logger.warning(
            "seeding demo accounts in %s: the database did not answer (attempt %d); "
            "retrying in %.1fs",
            name,
            state.attempt_number,
            state.upcoming_sleep,
        )

    return before_sleep


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
