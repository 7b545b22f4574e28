"""The intake use cases over in-memory repositories: dedup, batching, rejections, relay."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from pymongo.errors import ConnectionFailure

from services.enrolment.domain import IllegalTransition, WithdrawalProgress, accept
from services.enrolment.entrypoints import kafka
from services.enrolment.schemas import status_code_of
from services.enrolment.settings import EnrolmentSettings
from services.enrolment.use_cases.intake import (
    Channel,
    EnrolmentService,
    InboundItem,
    IntakeMetrics,
    ItemStatus,
)
from shared import topics
from shared.contracts.enrolment import EnrolmentSubmission, InboundCoordinates
from shared.dead_letters import RetryPolicy
from shared.telemetry import Telemetry
from tests.unit.enrolment.enrolment_fakes import (
    NOW,
    OTHER_PROVIDER,
    PROVIDER,
    PSEUDONYMS,
    FakeEnrolments,
    FakeProviders,
    submission,
)


def make_service() -> tuple[EnrolmentService, FakeEnrolments, Telemetry, list[int]]:
    repo = FakeEnrolments()
    telemetry = Telemetry(service_name="enrolment-unit")
    wakes: list[int] = []
    service = EnrolmentService(
        repo.unit_of_work,
        FakeProviders(PROVIDER, OTHER_PROVIDER),
        PSEUDONYMS,
        IntakeMetrics(telemetry),
        on_commit=lambda: wakes.append(1),
        clock=lambda: NOW,
    )
    return service, repo, telemetry, wakes


def event_types(repo: FakeEnrolments) -> list[str]:
    return [m.headers["ce_type"].split(".")[2] for m in repo.outbox]


async def test_batch_is_one_write_and_each_item_stands_alone() -> None:
    service, repo, telemetry, wakes = make_service()
    items: list[Any] = [
        submission(learner_ref="A1"),
        submission(learner_ref="A2", wants_conversation_partner=False),
        submission(learner_ref="A3", local_authority="E08000025"),
        submission(learner_ref="A4", combined_authority="E47000007", local_authority="E08000025"),
        "not an object",
        submission(learner_ref="A1"),  # same enrolment again, in the same batch
        submission(learner_ref="A1", planned_hours=12),  # same key, different details
    ]
    results = await service.submit(PROVIDER, items, Channel.HTTP_BATCH)
    assert [r.status for r in results] == [
        ItemStatus.CREATED,
        ItemStatus.CREATED,
        ItemStatus.REJECTED,
        ItemStatus.REJECTED,
        ItemStatus.REJECTED,
        ItemStatus.DUPLICATE,
        ItemStatus.CONFLICT,
    ]
    assert [status_code_of(r) for r in results] == [201, 201, 422, 403, 422, 200, 409]
    assert results[5].enrolment_id == results[0].enrolment_id
    assert repo.insert_calls == 1
    assert len(repo.docs) == 2
    assert event_types(repo) == ["EnrolmentAccepted", "ParticipantOptedIn", "EnrolmentAccepted"]
    assert wakes == [1]
    metrics = generate_latest(telemetry.registry).decode()
    assert (
        'commonground_enrolments_rejected_total{channel="http_batch",'
        'combined_authority="E47000007",reason="not_contracted"} 1.0'
    ) in metrics
    assert (
        'commonground_enrolments_accepted_total{channel="http_batch",'
        'combined_authority="E47000001",programme="esol"} 2.0'
    ) in metrics
    assert "A1" not in metrics and "LRN" not in metrics


async def test_resubmission_returns_the_existing_enrolment_and_publishes_nothing() -> None:
    service, repo, _, _ = make_service()
    first = await service.submit(PROVIDER, [submission()], Channel.HTTP)
    again = await service.submit(PROVIDER, [submission(submission_ref="retry")], Channel.HTTP)
    assert again[0].status is ItemStatus.DUPLICATE
    assert again[0].enrolment_id == first[0].enrolment_id
    assert len(repo.outbox) == 2  # EnrolmentAccepted + ParticipantOptedIn, once


async def test_a_concurrent_insert_of_the_same_enrolment_becomes_a_duplicate() -> None:
    service, repo, _, _ = make_service()
    other, _ = accept(EnrolmentSubmission.model_validate(submission()), PROVIDER, PSEUDONYMS, NOW)
    repo.race = [other]  # committed by someone else between our read and our write
    results = await service.submit(PROVIDER, [submission()], Channel.HTTP)
    assert results[0].status is ItemStatus.DUPLICATE
    assert repo.insert_calls == 2
    assert repo.outbox == []


def _inbound(offset: int, key: str | None, payload: object) -> InboundItem:
    return InboundItem(
        InboundCoordinates(topic=topics.ENROLMENT_INBOUND, partition=1, offset=offset),
        key,
        payload,
    )


async def test_kafka_refusals_become_rejection_events_without_personal_data() -> None:
    service, repo, _, _ = make_service()
    items = [
        _inbound(10, "10012345", submission(learner_ref="K1")),
        _inbound(11, "10012345", submission(learner_ref="K2", planned_end_date="2020-01-01")),
        _inbound(12, "99999999", submission(learner_ref="K3")),
        _inbound(13, None, submission(learner_ref="K4")),
        _inbound(14, "10054321", submission(learner_ref="K5")),  # not contracted for GM
    ]
    results = await service.submit_inbound(items)
    assert [r.status for r in results] == [
        ItemStatus.CREATED,
        ItemStatus.REJECTED,
        ItemStatus.REJECTED,
        ItemStatus.REJECTED,
        ItemStatus.REJECTED,
    ]
    rejected = [m for m in repo.outbox if m.topic == topics.ENROLMENT_REJECTED]
    assert [m.key for m in rejected] == ["10012345", "99999999", "unknown", "10054321"]
    bodies = [json.loads(m.body) for m in rejected]
    assert [[r["code"] for r in b["reasons"]] for b in bodies] == [
        ["dates_out_of_order"],
        ["unknown_provider"],
        ["unknown_provider"],
        ["not_contracted"],
    ]
    assert bodies[0]["reasons"][0]["pointer"] == "/planned_end_date"
    assert bodies[0]["source"] == {
        "topic": topics.ENROLMENT_INBOUND,
        "partition": 1,
        "offset": 11,
        "ce_id": None,
    }
    assert bodies[0]["submission_ref"] == "row-1"
    for m in rejected:
        for personal in ("K2", "K3", "1988-05-17", "Haddad", "OL1 1AA"):
            assert personal not in m.body


async def test_redelivered_kafka_batch_is_refused_again_under_the_same_ids() -> None:
    service, repo, _, _ = make_service()
    items = [
        _inbound(20, "10012345", submission(learner_ref="R1")),
        _inbound(21, "10012345", submission(learner_ref="R2", local_authority="E08000025")),
    ]
    await service.submit_inbound(items)
    first = [m for m in repo.outbox if m.topic == topics.ENROLMENT_REJECTED]
    again = await service.submit_inbound(items)
    assert [r.status for r in again] == [ItemStatus.DUPLICATE, ItemStatus.REJECTED]
    second = [m for m in repo.outbox if m.topic == topics.ENROLMENT_REJECTED][len(first) :]
    # No second EnrolmentAccepted; the refusal repeats with the same ce_id (deduplicated
    # downstream).
    assert event_types(repo).count("EnrolmentAccepted") == 1
    assert [m.id for m in second] == [m.id for m in first]
    assert second[0].headers["ce_id"] == first[0].id


async def test_progress_is_applied_once_and_illegal_moves_change_nothing() -> None:
    service, repo, _, wakes = make_service()
    (created,) = await service.submit(PROVIDER, [submission()], Channel.HTTP)
    assert created.enrolment_id is not None
    withdraw = WithdrawalProgress(kind="withdrawal", withdrawn_on=NOW.date(), reason=3)
    outcome = await service.record_progress(PROVIDER, created.enrolment_id, withdraw)
    assert outcome is not None and outcome[1] is True
    replay = await service.record_progress(PROVIDER, created.enrolment_id, withdraw)
    assert replay is not None and replay[1] is False
    assert event_types(repo).count("EnrolmentWithdrawn") == 1
    with pytest.raises(IllegalTransition):
        await service.record_progress(
            PROVIDER,
            created.enrolment_id,
            WithdrawalProgress(kind="withdrawal", withdrawn_on=NOW.date(), reason=7),
        )
    assert event_types(repo).count("EnrolmentWithdrawn") == 1
    assert await service.record_progress(OTHER_PROVIDER, created.enrolment_id, withdraw) is None
    assert await service.get(OTHER_PROVIDER, created.enrolment_id) is None
    assert len(wakes) == 2


async def test_progress_that_lost_a_race_is_decided_again_and_counted_once() -> None:
    service, repo, telemetry, wakes = make_service()
    (created,) = await service.submit(PROVIDER, [submission()], Channel.HTTP)
    assert created.enrolment_id is not None
    stored = repo.docs[created.enrolment_id]
    # Someone else changed it between our read and our write: our transaction is
    # abandoned (nothing published) and the next one starts from the new version.
    repo.save_race = [replace(stored, version=stored.version + 1)]
    withdraw = WithdrawalProgress(kind="withdrawal", withdrawn_on=NOW.date(), reason=3)
    outcome = await service.record_progress(PROVIDER, created.enrolment_id, withdraw)
    assert outcome is not None and outcome[1] is True
    assert outcome[0].version == stored.version + 2
    assert repo.docs[created.enrolment_id].version == stored.version + 2
    assert event_types(repo).count("EnrolmentWithdrawn") == 1
    metrics = generate_latest(telemetry.registry).decode()
    assert (
        'commonground_enrolment_progress_total{kind="withdrawal",result="applied"} 1.0' in metrics
    )
    assert len(wakes) == 2


def test_dev_pseudonym_key_is_a_secret_and_refused_when_dev_secrets_are_off() -> None:
    from services.enrolment.app import pseudonymiser_for

    settings = EnrolmentSettings(allow_dev_secrets=False)
    assert settings.pseudonym_key.get_secret_value() not in repr(settings)
    with pytest.raises(RuntimeError, match="ENROLMENT_PSEUDONYM_KEY"):
        pseudonymiser_for(settings)
    own = EnrolmentSettings(allow_dev_secrets=False, pseudonym_key="x" * 40)
    assert pseudonymiser_for(own).learner("1", "2") != pseudonymiser_for(
        EnrolmentSettings()
    ).learner("1", "2")


class _FailsOn:
    """A stand-in service whose intake trips on one provider ref."""

    def __init__(self, bad: str, error: Exception) -> None:
        self.bad, self.error = bad, error
        self.calls: list[int] = []

    async def submit_inbound(self, items: list[InboundItem]) -> list[Any]:
        self.calls.append(len(items))
        if any(i.provider_ref == self.bad for i in items):
            raise self.error
        return []


async def test_an_unexpected_failure_dead_letters_only_the_record_that_causes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "INTAKE_RETRY", RetryPolicy(attempts=2, initial_delay_s=0))
    decoded = [
        (SimpleNamespace(offset=n), _inbound(n, ref, {}))
        for n, ref in ((1, "10012345"), (2, "boom"), (3, "10012345"))
    ]
    service = _FailsOn("boom", ValueError("a bug"))
    failed = await kafka.store_inbound(service, decoded)  # type: ignore[arg-type]
    assert [record.offset for record, _ in failed] == [2]
    assert service.calls == [3, 1, 1, 1]

    down = _FailsOn("boom", ConnectionFailure("database unreachable"))
    with pytest.raises(ConnectionFailure):  # transient: the batch is redelivered instead
        await kafka.store_inbound(down, decoded)  # type: ignore[arg-type]
