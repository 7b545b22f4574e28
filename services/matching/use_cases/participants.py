"""Participants: entering the pool from enrolment's opt-ins, consent changes and erasure
(crypto-shredding keys noted first)."""

from __future__ import annotations

import logging

from services.matching.domain import (
    BackgroundFields,
    Match,
    MatchStatus,
    background_fields,
    match_declined,
    match_ended,
    merge_opt_in,
    participant_from_opt_in,
    withdraw,
)
from services.matching.repository import Outgoing, UnitOfWork
from services.matching.use_cases.base import UseCases
from shared.cloudevents import Event
from shared.contracts.enrolment import (
    ConsentChanged,
    LearnerErased,
    LearnerKeyIssued,
    ParticipantOptedIn,
)
from shared.learner_keys import KeyBatch
from shared.retries import retrying
from shared.topics import MATCHING_MATCHES

logger = logging.getLogger(__name__)


EnrolmentPrivacyEvent = ParticipantOptedIn | LearnerKeyIssued | LearnerErased | ConsentChanged
"""The enrolment events matching acts on (``PRIVACY_EVENTS``: the rest are not its
business)."""
PRIVACY_EVENTS = (ParticipantOptedIn, LearnerKeyIssued, LearnerErased, ConsentChanged)


class ParticipantUseCases(UseCases):
    """Enrolment events for the pool."""

    async def on_enrolment_event(self, ce_id: str, event: EnrolmentPrivacyEvent) -> None:
        """One enrolment event, in log order: its learner keys are noted first, then an
        erasure scrubs the participant, a consent change withdraws them or stores their
        background, and an opt-in (opened with its key, unless the learner is erased)
        enters the pool. Without learner keys only opt-ins are handled. An opt-in that can
        never be processed raises ``InvalidParticipant`` (the caller dead-letters it)."""
        data: Event = event
        if self.learner_keys is not None and self.key_ring is not None:
            store, ring, policy = self.learner_keys, self.key_ring, self.retry_policy
            keys = await retrying(lambda: KeyBatch.load(store, ring, [data]), policy)
            keys.note(data)
            await retrying(lambda: keys.save(store), policy)
            if isinstance(data, LearnerErased):
                erased = data.learner
                await retrying(lambda: self.erase_participant(erased), policy)
                logger.info("learner erased: participant data scrubbed")
                return
            if isinstance(data, ConsentChanged):
                await self._on_consent_changed(data, keys)
                return
            if not isinstance(data, ParticipantOptedIn):
                return
            if keys.is_erased(data.learner):
                logger.info("opt-in of an erased learner ignored")
                return
            data = keys.reveal(data)
        if not isinstance(data, ParticipantOptedIn):
            return
        opt_in = data
        added = await retrying(lambda: self.record_opt_in(ce_id, opt_in), self.retry_policy)
        logger.info(
            "participant opt-in %s (enrolment %s)",
            "recorded" if added else "already processed",
            opt_in.enrolment_id,
        )

    async def _on_consent_changed(self, changed: ConsentChanged, keys: KeyBatch) -> None:
        opened = keys.personal(changed)
        background = (
            background_fields(opened.background)
            if opened is not None and opened.background is not None
            else None
        )
        await retrying(
            lambda: self.consent_changed(changed.learner, changed.consent.matching, background),
            self.retry_policy,
        )

    # ------------------------------------------------------------------ participants

    async def record_opt_in(self, ce_id: str, event: ParticipantOptedIn) -> bool:
        """Idempotent by ``ce_id``: a redelivered event changes nothing."""
        incoming = participant_from_opt_in(event, self.clock())

        async def work(uow: UnitOfWork) -> bool:
            # Look before inserting: a duplicate-key error would abort the transaction.
            # Two concurrent deliveries conflict on the insert and the loser, retried,
            # finds the row.
            if await uow.inbox.seen(ce_id):
                return False
            await uow.inbox.record(ce_id, "ParticipantOptedIn", incoming.pool_entered_at)
            existing = await uow.participants.get(incoming.participant)
            await uow.participants.save(merge_opt_in(existing, incoming))
            return True

        added = await self.uow().run(work)
        self.metrics.opt_ins.labels("new" if added else "duplicate").inc()
        return added

    async def consent_changed(
        self, learner: str, matching: bool, background: BackgroundFields | None
    ) -> bool:
        """Withdrawn matching consent: the participant leaves the pool, their background
        is dropped and pending proposals are withdrawn (declined, reason
        ``consent_withdrawn``). Given consent: their background (when sent) is stored for
        later runs. Returns whether a participant was known."""
        if matching:
            # One conditional write: no transaction needed.
            return await self.uow().participants.set_background(learner, background)
        return await self._withdraw(learner, "consent_withdrawn", erase=False)

    async def erase_participant(self, learner: str) -> bool:
        """Right to erasure: out of the pool for good, every personal field scrubbed,
        pending proposals declined and confirmed matches ended (reason
        ``participant_erased``)."""
        return await self._withdraw(learner, "participant_erased", erase=True)

    async def _withdraw(self, learner: str, reason: str, *, erase: bool) -> bool:
        now = self.clock()

        async def work(uow: UnitOfWork) -> list[Match] | None:
            participant = await uow.participants.get(learner)
            if participant is None:
                return None
            active = await uow.matches.active_of_participant(learner)
            withdrawal = withdraw(participant, active, reason, now=now, erase=erase)
            for t in withdrawal.closed:
                await uow.matches.save(t.match, expected_status=t.expected_status)
                await uow.volunteers.add_active(t.match.volunteer_id, t.volunteer_active_delta)
            await uow.participants.update(withdrawal.participant, erased=withdrawal.erased)
            closed = [t.match for t in withdrawal.closed]
            uow.publish(
                [
                    Outgoing(
                        MATCHING_MATCHES,
                        m.local_authority,
                        match_declined(m) if m.status is MatchStatus.DECLINED else match_ended(m),
                    ).message(now)
                    for m in closed
                ]
            )
            return closed

        changed = await self.uow().run(work)
        if changed is None:
            return False
        if changed:
            self.on_commit()
        logger.info("participant withdrawn (%s); %d match(es) closed", reason, len(changed))
        return True
