"""Demo accounts for newcomers and scripts.

Each service owns its own accounts, so each exposes ``python -m services.<name>.admin
seed-demo``, which reads its ``COMMONGROUND_DEMO_*_KEY`` variables and is idempotent.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from devstack.processes import StackError
from devstack.settings import StackSettings

SERVICES_WITH_ACCOUNTS = ("enrolment", "matching", "reporting")


def seed_demo_accounts(mongodb_url: str, settings: StackSettings) -> None:
    for name in SERVICES_WITH_ACCOUNTS:
        module = f"services.{name}.admin"
        if importlib.util.find_spec(module) is None:
            continue
        result = subprocess.run(
            [sys.executable, "-m", module, "seed-demo"],
            env={**_environ(), "COMMONGROUND_MONGODB_URL": mongodb_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"seeding demo accounts in {name} failed:\n{result.stderr[-2000:]}")
        if result.stdout.strip():
            print(result.stdout.strip(), flush=True)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
