"""Intake use cases: enrolment submissions (HTTP, batch, Kafka) and progress records.

Checks run in :mod:`services.enrolment.domain`; this module deduplicates against the
database, writes accepted enrolments with their events (one transaction, one bulk write
per collection for a whole batch), counts outcomes and wakes the outbox relay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel

from services.enrolment.domain import (
    Checked,
    Enrolment,
    FieldError,
    IllegalTransition,
    InvalidProgress,
    Provider,
    Pseudonymiser,
    accept,
    already_applied,
    apply_progress,
    check_submission,
    check_valid_submission,
)
from services.enrolment.privacy import (
    LearnerVault,
)
from services.enrolment.repository import (
    AlreadyExists,
    ProviderDirectory,
    VersionConflict,
)
from services.enrolment.unit_of_work import UnitOfWork, UnitOfWorkFactory
from services.enrolment.use_cases.events import SOURCE, EventMessages, event_message
from shared import topics
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import (
    EnrolmentSubmission,
    InboundCoordinates,
    RejectionCode,
    SubmissionRejected,
)
from shared.contracts.reference import CombinedAuthority
from shared.outbox import OutboxMessage
from shared.retries import retry_on_conflict
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

_REJECTION_NAMESPACE = uuid.UUID("6b1d3c2e-8f0a-4f43-9a51-5f3f0c7d2a10")
WRITE_ATTEMPTS = 4
_SUBMISSION_REF = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class Channel(StrEnum):
    HTTP = "http"
    HTTP_BATCH = "http_batch"
    KAFKA = "kafka"
    ILR = "ilr"


class ItemStatus(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ItemResult:
    """What happened to one submission (the HTTP edge gives it a status: schemas.py)."""

    index: int
    status: ItemStatus
    enrolment_id: str | None = None
    submission_ref: str | None = None
    errors: tuple[FieldError, ...] = ()

    @property
    def reason(self) -> RejectionCode | None:
        return self.errors[0].code if self.errors else None


@dataclass(frozen=True)
class InboundItem:
    """One record from ``enrolment.inbound.v1`` after decoding (not yet checked)."""

    coordinates: InboundCoordinates
    provider_ref: str | None
    payload: object
    # Set when the record's producer could not be authenticated (inbound_auth): the
    # record is refused with it, and nothing of its payload is looked at.
    refusal: FieldError | None = None


@dataclass
class _Entry:
    index: int
    provider: Provider | None
    checked: Checked
    raw: object
    inbound: InboundItem | None = None
    enrolment: Enrolment | None = None
    events: list[Event] = field(default_factory=list)


class IntakeMetrics:
    """Business counters. Labels are bounded codes, never personal values."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.accepted = telemetry.counter(
            "commonground_enrolments_accepted_total",
            "Enrolments accepted, by combined authority, programme and intake channel.",
            ("combined_authority", "programme", "channel"),
        )
        self.rejected = telemetry.counter(
            "commonground_enrolments_rejected_total",
            "Submissions refused, by primary reason code, combined authority and channel.",
            ("reason", "combined_authority", "channel"),
        )
        self.duplicates = telemetry.counter(
            "commonground_enrolments_duplicate_total",
            "Resubmissions of an existing enrolment answered idempotently.",
            ("channel",),
        )
        self.progress = telemetry.counter(
            "commonground_enrolment_progress_total",
            "Progress records by kind and result (applied, duplicate, illegal, invalid).",
            ("kind", "result"),
        )

    def count_results(
        self, entries: Sequence[_Entry], results: Sequence[ItemResult], channel: Channel
    ) -> None:
        for entry, result in zip(entries, results, strict=True):
            if result.status is ItemStatus.CREATED:
                assert entry.checked.submission is not None
                s = entry.checked.submission
                self.accepted.labels(
                    s.combined_authority.value, s.programme.value, channel.value
                ).inc()
            elif result.status is ItemStatus.DUPLICATE:
                self.duplicates.labels(channel.value).inc()
            else:
                reason = result.reason or RejectionCode.SCHEMA_INVALID
                self.rejected.labels(reason.value, _stated_authority(entry), channel.value).inc()

    def count_stored(
        self,
        accepted: Sequence[EnrolmentSubmission],
        progress_kinds: Sequence[str],
        channel: Channel,
    ) -> None:
        for s in accepted:
            self.accepted.labels(s.combined_authority.value, s.programme.value, channel.value).inc()
        for kind in progress_kinds:
            self.progress.labels(kind, "applied").inc()


def _stated_authority(entry: _Entry) -> str:
    if entry.checked.submission is not None:
        return entry.checked.submission.combined_authority.value
    if isinstance(entry.raw, Mapping):
        value = entry.raw.get("combined_authority")
        if value in CombinedAuthority._value2member_map_:
            return str(value)
    return "unknown"


def _unknown_provider(ukprn: str | None) -> FieldError:
    return FieldError(
        RejectionCode.UNKNOWN_PROVIDER,
        "",
        "the record key must be the UKPRN of a registered provider"
        if not ukprn
        else "no registered provider has this UKPRN",
        RejectionCode.UNKNOWN_PROVIDER.value,
    )


def _conflict() -> FieldError:
    return FieldError(
        RejectionCode.CONFLICTING_DUPLICATE,
        "",
        "an enrolment with this learner_ref, learning_aim_ref and start_date already "
        "exists with different details; changes to an accepted enrolment are not supported",
        RejectionCode.CONFLICTING_DUPLICATE.value,
    )


class EnrolmentService:
    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        providers: ProviderDirectory,
        pseudonyms: Pseudonymiser,
        metrics: IntakeMetrics,
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        vault: LearnerVault | None = None,
    ) -> None:
        self._events = EventMessages(vault)
        self._uow = unit_of_work
        self._providers = providers
        self._pseudonyms = pseudonyms
        self._metrics = metrics
        self._on_commit = on_commit
        self._clock = clock

    # ------------------------------------------------------------------ submissions

    async def provider(self, ukprn: str | None) -> Provider | None:
        if not ukprn:
            return None
        return (await self._providers.by_ukprns([ukprn])).get(ukprn)

    def check_valid(self, submission: EnrolmentSubmission, provider: Provider) -> Checked:
        return check_valid_submission(submission, provider, self._clock().date())

    async def submit(
        self, provider: Provider, items: Sequence[object], channel: Channel
    ) -> list[ItemResult]:
        """Check and store raw submissions from one provider; one result per item."""
        today = self._clock().date()
        entries = [
            _Entry(i, provider, check_submission(raw, provider, today), raw)
            for i, raw in enumerate(items)
        ]
        return await self._store(entries, channel)

    async def submit_checked(
        self, provider: Provider, checked: Checked, channel: Channel
    ) -> ItemResult:
        entry = _Entry(0, provider, checked, checked.submission)
        return (await self._store([entry], channel))[0]

    async def submit_inbound(self, items: Sequence[InboundItem]) -> list[ItemResult]:
        """Kafka intake: records from any number of providers, checked exactly like HTTP;
        refusals become ``SubmissionRejected`` events in the same transaction."""
        today = self._clock().date()
        known = await self._providers.by_ukprns([i.provider_ref for i in items if i.provider_ref])
        entries = []
        for index, item in enumerate(items):
            provider = known.get(item.provider_ref or "") if item.refusal is None else None
            if item.refusal is not None:
                checked = Checked(None, (item.refusal,))
            elif provider is None:
                checked = Checked(None, (_unknown_provider(item.provider_ref),))
            else:
                checked = check_submission(item.payload, provider, today)
            entries.append(_Entry(index, provider, checked, item.payload, inbound=item))
        return await self._store(entries, Channel.KAFKA)

    async def _store(self, entries: list[_Entry], channel: Channel) -> list[ItemResult]:
        now = self._clock()
        for entry in entries:
            if entry.checked.ok and entry.provider is not None:
                assert entry.checked.submission is not None
                entry.enrolment, entry.events = accept(
                    entry.checked.submission, entry.provider, self._pseudonyms, now
                )
        candidates = [e for e in entries if e.enrolment is not None]

        async def decide_and_write(
            uow: UnitOfWork,
        ) -> tuple[dict[int, ItemResult], list[OutboxMessage], list[OutboxMessage]]:
            existing = await uow.enrolments.fingerprints(
                [e.enrolment.enrolment_id for e in candidates if e.enrolment]
            )
            results, new = _decide(entries, candidates, existing)
            outbox = await self._events.messages(
                [(e.enrolment, e.events) for e in new if e.enrolment is not None], now
            )
            rejections = [
                _rejection_message(entry, results[entry.index], now)
                for entry in entries
                if entry.inbound is not None
                and results[entry.index].status in (ItemStatus.REJECTED, ItemStatus.CONFLICT)
            ]
            await uow.enrolments.add([e.enrolment for e in new if e.enrolment is not None])
            uow.publish(outbox + rejections)
            return results, outbox, rejections

        # A concurrent submission of the same enrolment committed between our read and
        # our write (AlreadyExists): re-read and decide again.
        results, outbox, rejections = await retry_on_conflict(
            lambda: self._uow().run(decide_and_write),
            conflict=AlreadyExists,
            attempts=WRITE_ATTEMPTS,
            what="intake",
        )
        if outbox or rejections:
            self._on_commit()
        ordered = [results[e.index] for e in entries]
        self._metrics.count_results(entries, ordered, channel)
        return ordered

    async def event_messages(
        self, items: Sequence[tuple[Enrolment, Sequence[Event]]], now: datetime
    ) -> list[OutboxMessage]:
        """Outbox messages of enrolments' events, sealed exactly as for JSON intake (ILR
        file intake stores them in its own transactions)."""
        return await self._events.messages(items, now)

    def count_stored(
        self,
        accepted: Sequence[EnrolmentSubmission],
        progress_kinds: Sequence[str],
        channel: Channel,
    ) -> None:
        """Count what another intake path (ILR files) stored, in the same metrics."""
        self._metrics.count_stored(accepted, progress_kinds, channel)

    def committed(self) -> None:
        """Wake the outbox relay after another intake path committed events."""
        self._on_commit()

    # --------------------------------------------------------------------- progress

    async def get(self, provider: Provider, enrolment_id: str) -> Enrolment | None:
        """The provider's own enrolment, or None (also for another provider's)."""
        # Outside a transaction: the committed state.
        return _owned(await self._uow().enrolments.get(enrolment_id), provider)

    async def record_progress(
        self, provider: Provider, enrolment_id: str, progress: BaseModel
    ) -> tuple[Enrolment, bool] | None:
        """Apply progress; (enrolment, applied) or None when not the provider's.

        ``applied`` is False for an idempotent replay of an already applied record.
        Raises IllegalTransition / InvalidProgress from the domain.
        """
        kind = str(getattr(progress, "kind", "progress"))

        async def apply(uow: UnitOfWork) -> tuple[Enrolment, bool] | None:
            enrolment = _owned(await uow.enrolments.get(enrolment_id), provider)
            if enrolment is None:
                return None
            if already_applied(enrolment, progress):
                return enrolment, False
            now = self._clock()
            transition = apply_progress(enrolment, progress, now.date(), now)
            await uow.enrolments.save(transition.enrolment, enrolment.version)
            uow.publish([event_message(transition.event, enrolment)])
            return replace(transition.enrolment, version=enrolment.version + 1), True

        try:
            # Counted once the transaction is over: its work may run more than once.
            result = await retry_on_conflict(
                lambda: self._uow().run(apply),
                conflict=VersionConflict,
                attempts=WRITE_ATTEMPTS,
                what="progress on one enrolment",
            )
        except IllegalTransition:
            self._metrics.progress.labels(kind, "illegal").inc()
            raise
        except InvalidProgress:
            self._metrics.progress.labels(kind, "invalid").inc()
            raise
        if result is not None and result[1]:
            self._on_commit()
            self._metrics.progress.labels(kind, "applied").inc()
        elif result is not None:
            self._metrics.progress.labels(kind, "duplicate").inc()
        return result


def _owned(enrolment: Enrolment | None, provider: Provider) -> Enrolment | None:
    if enrolment is None or enrolment.provider_id != provider.provider_id:
        return None
    return enrolment


def _decide(
    entries: Sequence[_Entry], candidates: Sequence[_Entry], existing: Mapping[str, str]
) -> tuple[dict[int, ItemResult], list[_Entry]]:
    """Each entry's result against the stored fingerprints (``existing``, by enrolment id)
    and the batch's earlier entries, and the entries to insert."""
    results: dict[int, ItemResult] = {}
    new: list[_Entry] = []
    seen: dict[str, str] = dict(existing)
    for entry in candidates:
        assert entry.enrolment is not None
        enrolment = entry.enrolment
        ref = enrolment.submission.submission_ref
        prior = seen.get(enrolment.enrolment_id)
        if prior is None:
            seen[enrolment.enrolment_id] = enrolment.fingerprint
            new.append(entry)
            results[entry.index] = ItemResult(
                entry.index, ItemStatus.CREATED, enrolment.enrolment_id, ref
            )
        elif prior == enrolment.fingerprint:
            results[entry.index] = ItemResult(
                entry.index, ItemStatus.DUPLICATE, enrolment.enrolment_id, ref
            )
        else:
            results[entry.index] = ItemResult(
                entry.index, ItemStatus.CONFLICT, enrolment.enrolment_id, ref, (_conflict(),)
            )
    for entry in entries:
        if entry.enrolment is None:
            results[entry.index] = ItemResult(
                entry.index,
                ItemStatus.REJECTED,
                None,
                _submission_ref(entry),
                entry.checked.errors,
            )
    return results, new


def _submission_ref(entry: _Entry) -> str | None:
    """The provider's correlation id, echoed only when it is well formed."""
    if entry.checked.submission is not None:
        return entry.checked.submission.submission_ref
    if isinstance(entry.raw, Mapping):
        value = entry.raw.get("submission_ref")
        if isinstance(value, str) and _SUBMISSION_REF.fullmatch(value):
            return value
    return None


def _rejection_message(entry: _Entry, result: ItemResult, now: datetime) -> OutboxMessage:
    """The ``SubmissionRejected`` event of a refused inbound record."""
    assert entry.inbound is not None
    coords = entry.inbound.coordinates
    submission = entry.checked.submission
    event = SubmissionRejected(
        provider_ref=entry.inbound.provider_ref,
        provider_ukprn=entry.provider.ukprn if entry.provider else None,
        submission_ref=result.submission_ref,
        combined_authority=submission.combined_authority if submission else None,
        source=coords,
        reasons=tuple(e.as_reason() for e in result.errors),
        rejected_at=now,
    )
    # Deterministic ce_id: a redelivered record is refused again under the same id,
    # which consumers deduplicate. Its content is part of the name: after a broker
    # lost its log, another record can arrive at the same coordinates.
    content = json.dumps(
        [entry.inbound.provider_ref, coords.ce_id, entry.inbound.payload],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(content.encode()).hexdigest()
    ce_id = str(
        uuid.uuid5(
            _REJECTION_NAMESPACE,
            f"{coords.topic}/{coords.partition}/{coords.offset}/{digest}",
        )
    )
    return OutboxMessage.of(
        CloudEvent(data=event, source=SOURCE, id=ce_id),
        topic=topics.ENROLMENT_REJECTED,
        key=entry.inbound.provider_ref or "unknown",
    )
