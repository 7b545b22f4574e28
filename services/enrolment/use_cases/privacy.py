"""Privacy use cases: a change of the learner's consent, the right to erasure, and
publishing learners' data keys again after a wrapping-key rotation."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from services.enrolment.domain import Enrolment, Provider, background_of
from services.enrolment.privacy import LearnerVault, consent_changed_box
from services.enrolment.repository import VersionConflict
from services.enrolment.unit_of_work import UnitOfWork, UnitOfWorkFactory
from services.enrolment.use_cases.events import SOURCE, event_message
from services.enrolment.use_cases.intake import WRITE_ATTEMPTS, EnrolmentService
from shared import topics
from shared.auth import Principal, Role
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import Consent, ConsentChanged, LearnerErased, LearnerKeyIssued
from shared.outbox import OutboxMessage
from shared.retries import retry_on_conflict

logger = logging.getLogger(__name__)


class NotFound(Exception):
    """No such learner or enrolment (or not the caller's)."""


@dataclass(frozen=True)
class ErasureResult:
    learner: str
    erased_at: datetime
    enrolment_ids: tuple[str, ...]
    already_erased: bool


class PrivacyService:
    """Consent changes and the right to erasure (needs the learner vault)."""

    def __init__(
        self,
        service: EnrolmentService,
        unit_of_work: UnitOfWorkFactory,
        vault: LearnerVault,
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._uow = unit_of_work
        self._vault = vault
        self._on_commit = on_commit
        self._clock = clock

    async def change_consent(
        self, provider: Provider, enrolment_id: str, consent: Consent
    ) -> tuple[Enrolment, bool] | None:
        """Record the learner's new consent; (enrolment, changed) or None when not the
        provider's. Publishes ``ConsentChanged``; later events carry the new consent."""

        async def change(uow: UnitOfWork) -> tuple[Enrolment, bool] | None:
            enrolment = await uow.enrolments.get(enrolment_id)
            if enrolment is None or enrolment.provider_id != provider.provider_id:
                return None
            previous = enrolment.submission.consent
            if previous == consent:
                return enrolment, False
            now = self._clock()
            updated = replace(
                enrolment, submission=enrolment.submission.model_copy(update={"consent": consent})
            )
            event = ConsentChanged(**updated.ref(), previous=previous, changed_at=now)
            if consent.matching:
                dek = (await self._vault.keys_for([enrolment.learner]))[enrolment.learner]
                event = consent_changed_box(event, background_of(updated.submission), dek)
            await uow.enrolments.save(updated, enrolment.version)
            uow.publish([event_message(event, enrolment)])
            return replace(updated, version=enrolment.version + 1), True

        result = await retry_on_conflict(
            lambda: self._uow().run(change),
            conflict=VersionConflict,
            attempts=WRITE_ATTEMPTS,
            what="consent change",
        )
        if result is not None and result[1]:
            self._on_commit()
            logger.info("consent changed on enrolment %s", enrolment_id)
        return result

    async def erase(self, principal: Principal, learner: str) -> ErasureResult:
        """Erase a learner: the data protection role for anyone, a provider for the
        learners it enrolled. Raises NotFound otherwise (also for another provider's
        learner: existence is not revealed)."""
        enrolments = await self._vault.enrolment_ids_of(learner)
        erased = await self._vault.erased(learner)
        if principal.role is not Role.DATA_PROTECTION:
            owner = f"provider:{principal.ukprn}" if principal.ukprn else None
            owned = {p for _, p in enrolments} | set((erased or {}).get("provider_ids", ()))
            if owner is None or owner not in owned:
                raise NotFound(learner)
        if erased is not None:
            return ErasureResult(
                learner, erased["erased_at"], tuple(erased.get("enrolment_ids", ())), True
            )
        if not enrolments:
            raise NotFound(learner)
        now = self._clock()
        ids = tuple(sorted(e for e, _ in enrolments))
        event: CloudEvent[Event] = CloudEvent(
            data=LearnerErased(learner=learner, erased_at=now, enrolment_ids=ids), source=SOURCE
        )
        message = OutboxMessage.of(event, topic=topics.ENROLMENT_EVENTS, key=learner)
        erased_by = principal.principal_id

        async def erase(uow: UnitOfWork) -> bool:
            if await uow.erasures.get(learner) is not None:
                return False
            # Its data key, wrapped for consumers, must not be published again.
            await uow.withdraw(learner, LearnerKeyIssued.ce_type())
            await uow.erasures.erase(learner, enrolments, erased_by)
            uow.publish([message])
            return True

        done = await self._uow().run(erase)
        if not done:
            again = await self._vault.erased(learner)
            assert again is not None
            return ErasureResult(learner, again["erased_at"], ids, True)
        self._on_commit()
        logger.info("learner erased (%d enrolment(s)) by %s", len(ids), principal.role.value)
        return ErasureResult(learner, now, ids, False)

    async def reissue_keys(self, learners: Sequence[str] | None = None) -> int:
        """Publish every live learner's key (or these learners') again, wrapped under the
        current platform wrapping key (after a wrapping-key rotation; docs/privacy.md).
        Erased learners have no key left to publish."""
        if learners is None:
            learners = await self._vault.all_learners()
        count = 0
        for start in range(0, len(learners), 500):
            keys = await self._vault.keys_for(learners[start : start + 500], create=False)
            now = self._clock()
            messages = [
                OutboxMessage.of(
                    CloudEvent(data=self._vault.key_event(dek, now), source=SOURCE),
                    topic=topics.ENROLMENT_EVENTS,
                    key=dek.learner,
                )
                for dek in keys.values()
            ]
            await self._uow().run(_publishing(messages))
            count += len(messages)
        if count:
            self._on_commit()
        return count


def _publishing(messages: Sequence[OutboxMessage]) -> Callable[[UnitOfWork], Awaitable[None]]:
    async def publish(uow: UnitOfWork) -> None:
        uow.publish(messages)

    return publish
