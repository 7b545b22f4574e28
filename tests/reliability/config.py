"""Sizes and seeds of the reliability tests (from the environment), the settings that make the
services react at test speed, and progress logging.
"""

from __future__ import annotations

import os
import random
import string
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

EVENTS = int(os.environ.get("COMMONGROUND_RELIABILITY_EVENTS", "600"))
TRIALS = max(1, int(os.environ.get("COMMONGROUND_RELIABILITY_TRIALS", "4")))
SEED = int(os.environ.get("COMMONGROUND_RELIABILITY_SEED", str(random.randrange(1 << 30))))
Doc = dict[str, Any]
ENV_PREFIX = {"enrolment": "ENROLMENT", "matching": "MATCHING", "reporting": "REPORTING"}


# Settings that make the services react at test speed, and batches small enough that a
# kill lands at many points of a stream (all are ordinary settings).
FAST: dict[str, dict[str, str]] = {
    "enrolment": {
        "ENROLMENT_OUTBOX_POLL_INTERVAL_S": "0.2",
        "ENROLMENT_INBOUND_BATCH_TIMEOUT_MS": "100",
        "ENROLMENT_INBOUND_MAX_RECORDS": "100",
    },
    "matching": {
        "MATCHING_SCHEDULER_TICK_S": "0.5",
        "MATCHING_OUTBOX_POLL_INTERVAL_S": "0.2",
        "MATCHING_LEASE_TTL_S": "3",
        "MATCHING_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    },
    "reporting": {
        "REPORTING_PROJECTION_BATCH_TIMEOUT_MS": "100",
        "REPORTING_PROJECTION_MAX_RECORDS": "250",
    },
}


def log(message: str, *args: object) -> None:
    """Progress lines (shown with -s or on failure)."""
    text = message % args if args else message
    sys.stderr.write(f"[reliability {time.strftime('%H:%M:%S')}] {text}\n")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def log_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cg-reliability-"))


def token(
    n: int, alphabet: str = string.ascii_uppercase + string.digits, rng: random.Random | None = None
) -> str:
    r = rng or random
    return "".join(r.choices(alphabet, k=n))
