"""Test helper: open an event's sealed personal fields the way a consumer does, from the
``LearnerKeyIssued`` events seen on the same topic and a platform key ring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.contracts.enrolment import SealedPersonalData
from shared.contracts.privacy import SealedBox, WrappedKey
from shared.crypto import KeyRing, open_personal
from shared.settings import DEV_LEARNER_KEY_WRAPPING_KEYS

DEV_RING = KeyRing.parse(DEV_LEARNER_KEY_WRAPPING_KEYS, "learner-key-wrapping")


def open_sealed(
    key_events: Iterable[Mapping[str, Any]],
    body: Mapping[str, Any],
    ring: KeyRing = DEV_RING,
) -> SealedPersonalData:
    """``key_events``: bodies (or collector dicts with a ``body``) of LearnerKeyIssued."""
    learner = body["learner"]
    box = SealedBox.model_validate(body["sealed"])
    for event in key_events:
        key = event.get("body", event)
        if key["learner"] == learner and key["key_id"] == box.key_id:
            wrapped = WrappedKey.model_validate(key["wrapped"])
            return open_personal(ring.unwrap(learner, box.key_id, wrapped), learner, box)
    raise AssertionError(f"no LearnerKeyIssued for the box of {learner}")
