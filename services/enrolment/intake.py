"""Service layer: the enrolment use cases shared by HTTP and Kafka intake.

Checks run in :mod:`services.enrolment.domain`; this module deduplicates against the
database, writes accepted enrolments with their events (one transaction, one bulk write
per collection for a whole batch), counts outcomes and wakes the outbox relay.
"""

from __future__ import annotations

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
from services.enrolment.repository import (
    AlreadyExists,
    EnrolmentRepository,
    OutboxMessage,
    ProviderDirectory,
    VersionConflict,
)
from shared import topics
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import (
    EnrolmentSubmission,
    InboundCoordinates,
    RejectionCode,
    SubmissionRejected,
)
from shared.contracts.reference import CombinedAuthority
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

SOURCE = "/commonground/enrolment"
_REJECTION_NAMESPACE = uuid.UUID("6b1d3c2e-8f0a-4f43-9a51-5f3f0c7d2a10")
_WRITE_ATTEMPTS = 4
_SUBMISSION_REF = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class Channel(StrEnum):
    HTTP = "http"
    HTTP_BATCH = "http_batch"
    KAFKA = "kafka"


class ItemStatus(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ItemResult:
    """What happened to one submission. ``http_status`` is its status as a single POST."""

    index: int
    status: ItemStatus
    enrolment_id: str | None = None
    submission_ref: str | None = None
    errors: tuple[FieldError, ...] = ()

    @property
    def http_status(self) -> int:
        if self.status is ItemStatus.CREATED:
            return 201
        if self.status is ItemStatus.DUPLICATE:
            return 200
        if self.status is ItemStatus.CONFLICT:
            return 409
        if any(e.code is RejectionCode.NOT_CONTRACTED for e in self.errors):
            return 403
        return 422

    @property
    def reason(self) -> RejectionCode | None:
        return self.errors[0].code if self.errors else None


@dataclass(frozen=True)
class InboundItem:
    """One record from ``enrolment.inbound.v1`` after decoding (not yet checked)."""

    coordinates: InboundCoordinates
    provider_ref: str | None
    payload: object


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
        repository: EnrolmentRepository,
        providers: ProviderDirectory,
        pseudonyms: Pseudonymiser,
        metrics: IntakeMetrics,
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repo = repository
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
            provider = known.get(item.provider_ref or "")
            if provider is None:
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
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            existing = await self._repo.fingerprints(
                [e.enrolment.enrolment_id for e in candidates if e.enrolment]
            )
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
                        entry.index,
                        ItemStatus.CONFLICT,
                        enrolment.enrolment_id,
                        ref,
                        (_conflict(),),
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
            outbox = [
                OutboxMessage.of(
                    CloudEvent(data=event, source=SOURCE, subject=e.enrolment.enrolment_id),
                    topic=topics.ENROLMENT_EVENTS,
                    key=e.enrolment.learner,
                )
                for e in new
                if e.enrolment is not None
                for event in e.events
            ]
            rejections = [
                self._rejection(entry, results[entry.index], now)
                for entry in entries
                if entry.inbound is not None
                and results[entry.index].status in (ItemStatus.REJECTED, ItemStatus.CONFLICT)
            ]
            try:
                await self._repo.insert(
                    [e.enrolment for e in new if e.enrolment is not None], outbox + rejections
                )
            except AlreadyExists:
                # A concurrent submission of the same enrolment committed between our
                # read and our write: re-read and decide again.
                logger.info("concurrent duplicate during intake, retrying (attempt %d)", attempt)
                continue
            break
        else:
            raise RuntimeError("intake kept colliding with concurrent submissions")
        if outbox or rejections:
            self._on_commit()
        ordered = [results[e.index] for e in entries]
        self._count(entries, ordered, channel)
        return ordered

    def _rejection(self, entry: _Entry, result: ItemResult, now: datetime) -> OutboxMessage:
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
        # which consumers deduplicate.
        ce_id = str(
            uuid.uuid5(_REJECTION_NAMESPACE, f"{coords.topic}/{coords.partition}/{coords.offset}")
        )
        return OutboxMessage.of(
            CloudEvent(data=event, source=SOURCE, id=ce_id),
            topic=topics.ENROLMENT_REJECTED,
            key=entry.inbound.provider_ref or "unknown",
        )

    def _count(self, entries: list[_Entry], results: list[ItemResult], channel: Channel) -> None:
        for entry, result in zip(entries, results, strict=True):
            if result.status is ItemStatus.CREATED:
                assert entry.checked.submission is not None
                s = entry.checked.submission
                self._metrics.accepted.labels(
                    s.combined_authority.value, s.programme.value, channel.value
                ).inc()
            elif result.status is ItemStatus.DUPLICATE:
                self._metrics.duplicates.labels(channel.value).inc()
            else:
                reason = result.reason or RejectionCode.SCHEMA_INVALID
                self._metrics.rejected.labels(
                    reason.value, _stated_authority(entry), channel.value
                ).inc()

    # --------------------------------------------------------------------- progress

    async def get(self, provider: Provider, enrolment_id: str) -> Enrolment | None:
        """The provider's own enrolment, or None (also for another provider's)."""
        enrolment = await self._repo.get(enrolment_id)
        if enrolment is None or enrolment.provider_id != provider.provider_id:
            return None
        return enrolment

    async def record_progress(
        self, provider: Provider, enrolment_id: str, progress: BaseModel
    ) -> tuple[Enrolment, bool] | None:
        """Apply progress; (enrolment, applied) or None when not the provider's.

        ``applied`` is False for an idempotent replay of an already applied record.
        Raises IllegalTransition / InvalidProgress from the domain.
        """
        kind = str(getattr(progress, "kind", "progress"))
        for _attempt in range(_WRITE_ATTEMPTS):
            enrolment = await self.get(provider, enrolment_id)
            if enrolment is None:
                return None
            if already_applied(enrolment, progress):
                self._metrics.progress.labels(kind, "duplicate").inc()
                return enrolment, False
            now = self._clock()
            try:
                transition = apply_progress(enrolment, progress, now.date(), now)
            except IllegalTransition:
                self._metrics.progress.labels(kind, "illegal").inc()
                raise
            except InvalidProgress:
                self._metrics.progress.labels(kind, "invalid").inc()
                raise
            message = OutboxMessage.of(
                CloudEvent(data=transition.event, source=SOURCE, subject=enrolment_id),
                topic=topics.ENROLMENT_EVENTS,
                key=enrolment.learner,
            )
            try:
                await self._repo.save_transition(transition.enrolment, enrolment.version, [message])
            except VersionConflict:
                logger.info("concurrent progress on one enrolment, retrying")
                continue
            self._on_commit()
            self._metrics.progress.labels(kind, "applied").inc()
            return replace(transition.enrolment, version=enrolment.version + 1), True
        raise RuntimeError("progress kept colliding with concurrent updates")


def _submission_ref(entry: _Entry) -> str | None:
    """The provider's correlation id, echoed only when it is well formed."""
    if entry.checked.submission is not None:
        return entry.checked.submission.submission_ref
    if isinstance(entry.raw, Mapping):
        value = entry.raw.get("submission_ref")
        if isinstance(value, str) and _SUBMISSION_REF.fullmatch(value):
            return value
    return None
