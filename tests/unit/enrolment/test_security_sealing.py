"""Personal fields leave the enrolment service only sealed, after their learner's key."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast

from services.enrolment.privacy import DataKey, LearnerVault
from services.enrolment.use_cases.intake import Channel, EnrolmentService, IntakeMetrics
from shared.contracts.enrolment import LearnerKeyIssued
from shared.contracts.privacy import SealedBox, WrappedKey
from shared.crypto import KeyRing, new_data_key, open_personal
from shared.telemetry import Telemetry
from tests.unit.enrolment.enrolment_fakes import (
    PROVIDER,
    PSEUDONYMS,
    FakeEnrolments,
    FakeProviders,
    submission,
)

NOW = datetime(2025, 10, 1, 9, 0, tzinfo=UTC)
RING = KeyRing.parse("w1:unit-test-wrapping-secret-0123456789", "learner-key-wrapping")


class FakeVault:
    """The two things intake asks of the vault, in memory."""

    def __init__(self) -> None:
        self.keys: dict[str, DataKey] = {}

    async def keys_for(self, learners: Iterable[str], *, create: bool = True) -> dict[str, DataKey]:
        for learner in learners:
            if learner not in self.keys and create:
                self.keys[learner] = DataKey(learner, f"dk_{len(self.keys)}", new_data_key())
        return {learner: self.keys[learner] for learner in learners if learner in self.keys}

    def key_event(self, dek: DataKey, now: datetime) -> LearnerKeyIssued:
        return LearnerKeyIssued(
            learner=dek.learner,
            key_id=dek.key_id,
            wrapped=RING.wrap(dek.learner, dek.key_id, dek.key),
            issued_at=now,
        )


async def test_events_carry_personal_fields_only_sealed_after_the_key() -> None:
    repo, vault = FakeEnrolments(), FakeVault()
    service = EnrolmentService(
        repo.unit_of_work,
        FakeProviders(PROVIDER),
        PSEUDONYMS,
        IntakeMetrics(Telemetry(service_name="enrolment-unit")),
        clock=lambda: NOW,
        vault=cast(LearnerVault, vault),
    )
    doc = submission(country_of_birth="TV", first_language="tvl", interests=["zqchess"])
    (result,) = await service.submit(PROVIDER, [doc], Channel.HTTP)
    assert result.enrolment_id is not None
    types = [m.headers["ce_type"].split(".")[2] for m in repo.outbox]
    assert types == ["LearnerKeyIssued", "EnrolmentAccepted", "ParticipantOptedIn"]
    assert len({m.key for m in repo.outbox}) == 1  # one Kafka key: one partition, in order

    for message in repo.outbox:
        for value in ('"TV"', '"tvl"', "zqchess", "other_arab", '"muslim"', ":2019"):
            assert value not in message.body, (message.headers["ce_type"], value)

    key = json.loads(repo.outbox[0].body)
    learner = key["learner"]
    dek = RING.unwrap(learner, key["key_id"], WrappedKey.model_validate(key["wrapped"]))
    accepted, opted_in = (json.loads(m.body) for m in repo.outbox[1:])
    assert accepted["background"] == {
        "ethnicity": None,
        "religion": None,
        "country_of_birth": None,
        "first_language": None,
        "year_of_arrival": None,
    }
    assert opted_in["background"] is None and opted_in["interests"] == []
    opened = open_personal(dek, learner, SealedBox.model_validate(accepted["sealed"]))
    assert opened.background is not None and opened.background.country_of_birth == "TV"
    assert opened.background.year_of_arrival == 2019
    participant = open_personal(dek, learner, SealedBox.model_validate(opted_in["sealed"]))
    assert participant.interests == ("zqchess",) and participant.languages == ("tvl",)
    # Matching consent given (the default submission): the background is in the box.
    assert participant.background is not None and participant.background.religion == "muslim"


async def test_without_a_vault_nothing_is_sealed() -> None:
    repo = FakeEnrolments()
    service = EnrolmentService(
        repo.unit_of_work,
        FakeProviders(PROVIDER),
        PSEUDONYMS,
        IntakeMetrics(Telemetry(service_name="enrolment-unit-2")),
        clock=lambda: NOW,
    )
    await service.submit(PROVIDER, [submission()], Channel.HTTP)
    types = [m.headers["ce_type"].split(".")[2] for m in repo.outbox]
    assert "LearnerKeyIssued" not in types
    assert json.loads(repo.outbox[0].body)["sealed"] is None
