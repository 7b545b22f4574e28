"""The matching service layer: each use case loads state through the repository, asks the
domain what should happen, and commits the new state together with its events.

Authorisation by scope also lives here: a coordinator acts only within the combined
authorities their key is for (out of scope: a match is "not found", a listing or a
volunteer registration is "forbidden").
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from services.matching.domain import (
    BackgroundFields,
    BatchPolicy,
    DomainError,
    Match,
    MatchStatus,
    Participant,
    Volunteer,
    VolunteerDetails,
    WeightsBook,
    accept,
    background_fields,
    decline,
    end,
    match_confirmed,
    match_declined,
    match_ended,
    match_proposed,
    needs_dbs_expiry_notice,
    optimal_assignment,
    participant_from_opt_in,
    propose,
    register_or_update_volunteer,
    total_score,
    volunteer_dbs_expired,
    volunteer_event,
    withdraw,
)
from services.matching.domain.checkins import (
    CheckIn,
    NotYourMatch,
    check_in_recorded,
    record_check_in,
    volunteer_of,
    volunteer_principal_id,
)
from services.matching.domain.health import HealthPolicy, HealthReport, MeetingRecord, match_health
from services.matching.domain.waiting import WaitingDiagnosis, WaitingReason, diagnose_pool
from services.matching.metrics import MatchingMetrics
from services.matching.repository import (
    Conflict,
    MatchingRepository,
    MatchQuery,
    Outgoing,
    RunRecord,
)
from shared.auth import ApiKeyStore, Principal, Role, new_api_key
from shared.cloudevents import Event
from shared.contracts.enrolment import (
    ConsentChanged,
    LearnerErased,
    LearnerKeyIssued,
    ParticipantOptedIn,
)
from shared.contracts.matching import MatchConfirmed, MatchDeclined
from shared.contracts.reference import CombinedAuthority, combined_authority_of
from shared.crypto import KeyRing
from shared.learner_keys import KeyBatch, MongoLearnerKeys
from shared.retries import RetryPolicy, retrying
from shared.topics import MATCHING_MATCHES, MATCHING_VOLUNTEERS

logger = logging.getLogger(__name__)


EnrolmentPrivacyEvent = ParticipantOptedIn | LearnerKeyIssued | LearnerErased | ConsentChanged
"""The enrolment events matching acts on (``PRIVACY_EVENTS``: the rest are not its
business)."""
PRIVACY_EVENTS = (ParticipantOptedIn, LearnerKeyIssued, LearnerErased, ConsentChanged)


class NotFound(DomainError):
    pass


class OutOfScope(DomainError):
    pass


class VolunteerNotFound(NotFound):
    pass


def utc_now() -> datetime:
    """Now, at the millisecond precision MongoDB stores (so events equal stored state)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    combined_authority: CombinedAuthority
    waiting: int
    volunteers: int
    proposals: tuple[Match, ...]
    committed: bool


@dataclass(frozen=True)
class PoolView:
    combined_authority: CombinedAuthority
    waiting: tuple[Participant, ...]
    volunteers_available: int
    reasons: Mapping[str, WaitingReason] = field(default_factory=dict)
    """Why each waiting participant (by pseudonym) is still waiting."""


@dataclass(frozen=True)
class CheckInResult:
    check_in: CheckIn
    created: bool
    health: HealthReport | None


@dataclass(frozen=True)
class WaitingView:
    combined_authority: CombinedAuthority
    diagnoses: tuple[WaitingDiagnosis, ...]
    volunteers: int
    """Volunteers registered in the combined authority (whatever their state)."""


@dataclass
class MatchingService:
    repo: MatchingRepository
    weights: WeightsBook
    policy: BatchPolicy
    metrics: MatchingMetrics
    clock: Callable[[], datetime] = utc_now
    on_commit: Callable[[], None] = field(default=lambda: None)
    """Called after a transaction that queued events (wakes the outbox relay)."""
    health_policy: HealthPolicy = field(default_factory=HealthPolicy)
    keys: ApiKeyStore | None = None
    """Where volunteer keys are stored (the service's ``api_keys``)."""
    learner_keys: MongoLearnerKeys | None = None
    """Learners' data keys (crypto-shredding); with ``key_ring``, personal data in
    enrolment events is opened here, and erased learners stay erased."""
    key_ring: KeyRing | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    """Transient failures of one step of an enrolment event are retried with it."""

    # ------------------------------------------------------------------ enrolment events

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
        participant = participant_from_opt_in(event, self.clock())
        added = await self.repo.record_opt_in(ce_id, participant)
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
            return await self.repo.set_background(learner, background)
        return await self._withdraw(learner, "consent_withdrawn", erase=False)

    async def erase_participant(self, learner: str) -> bool:
        """Right to erasure: out of the pool for good, every personal field scrubbed,
        pending proposals declined and confirmed matches ended (reason
        ``participant_erased``)."""
        return await self._withdraw(learner, "participant_erased", erase=True)

    async def _withdraw(self, learner: str, reason: str, *, erase: bool) -> bool:
        def events(matches: Sequence[Match]) -> list[Outgoing]:
            return [
                Outgoing(
                    MATCHING_MATCHES,
                    m.local_authority,
                    match_declined(m) if m.status is MatchStatus.DECLINED else match_ended(m),
                )
                for m in matches
            ]

        now = self.clock()
        changed = await self.repo.withdraw_participant(
            learner,
            lambda participant, matches: withdraw(
                participant, matches, reason, now=now, erase=erase
            ),
            events,
            now,
        )
        if changed is None:
            return False
        if changed:
            self.on_commit()
        logger.info("participant withdrawn (%s); %d match(es) closed", reason, len(changed))
        return True

    # ------------------------------------------------------------------ volunteers

    async def register_volunteer(
        self,
        principal: Principal,
        volunteer_id: str | None,
        details: VolunteerDetails,
        external_ref: str | None = None,
    ) -> tuple[Volunteer, bool]:
        """Register or update a volunteer; returns it and whether it was created.

        Ids are issued here, never chosen by the caller (a chosen id could be squatted
        and would reveal whether it is taken in another combined authority). A
        ``volunteer_id`` only names a volunteer to update: unknown, or outside the
        caller's combined authorities, it is the same ``VolunteerNotFound``. An
        ``external_ref`` (the coordinators' own reference, unique per combined
        authority) updates the volunteer registered with it there, or registers a new
        one under an issued id.
        """
        authority = combined_authority_of(details.local_authority)
        if authority is None:
            raise DomainError(f"unknown local authority {details.local_authority!r}")
        _require_scope(principal, authority)
        existing: Volunteer | None = None
        if volunteer_id is not None:
            existing = await self.repo.get_volunteer(volunteer_id)
            if (
                existing is None
                or existing.combined_authority not in principal.combined_authorities
            ):
                raise VolunteerNotFound(f"no volunteer {volunteer_id} in your combined authorities")
        elif external_ref is not None:
            existing = await self.repo.volunteer_by_ref(authority, external_ref)
            if existing is not None and (
                existing.combined_authority not in principal.combined_authorities
            ):
                raise VolunteerNotFound(
                    f"the volunteer registered as {external_ref} has moved outside your "
                    "combined authorities"
                )
        now = self.clock()
        volunteer = register_or_update_volunteer(
            existing, existing.volunteer_id if existing else new_id("vol"), details, now
        )
        if existing is None and external_ref is not None:
            volunteer = replace(volunteer, external_ref=external_ref)
        renewed = (
            existing is not None
            and volunteer.dbs_valid(now.date())
            and existing.dbs_expires_on != volunteer.dbs_expires_on
        )
        await self.repo.save_volunteer(
            volunteer,
            expected_version=existing.version if existing else None,
            events=[
                Outgoing(
                    MATCHING_VOLUNTEERS,
                    volunteer.volunteer_id,
                    volunteer_event(volunteer, created=existing is None),
                )
            ],
            clear_dbs_flags=renewed,
        )
        self.on_commit()
        if needs_dbs_expiry_notice(volunteer, now.date()):
            # A lapsed date entered by hand pauses the volunteer at once.
            stored = await self.repo.get_volunteer(volunteer.volunteer_id)
            if stored is not None:
                await self._announce_dbs_expiry(stored)
        return volunteer, existing is None

    async def check_dbs(self) -> int:
        """Announce every DBS check that lapsed and was not announced yet (idempotent)."""
        today = self.clock().date()
        announced = 0
        for volunteer in await self.repo.volunteers_needing_dbs_notice(today):
            if await self._announce_dbs_expiry(volunteer):
                announced += 1
        return announced

    async def _announce_dbs_expiry(self, volunteer: Volunteer) -> bool:
        match_ids = await self.repo.pause_for_dbs_expiry(
            volunteer,
            lambda ids: Outgoing(
                MATCHING_VOLUNTEERS, volunteer.volunteer_id, volunteer_dbs_expired(volunteer, ids)
            ),
        )
        if match_ids is None:
            return False
        self.metrics.dbs_expired.inc()
        logger.info(
            "volunteer %s paused: DBS check lapsed; %d active match(es) flagged",
            volunteer.volunteer_id,
            len(match_ids),
        )
        self.on_commit()
        return True

    # ------------------------------------------------------------------ optimiser

    async def tick(self, *, acquire: Callable[[str], Awaitable[bool]] | None = None) -> int:
        """Evaluate the batch policy for every combined authority; run those due.
        ``acquire(name)`` guards each run with a lease when several replicas run."""
        now = self.clock()
        made = 0
        for authority in CombinedAuthority:
            last = await self.repo.last_run_at(authority)
            stats = await self.repo.pool_stats(authority, since=last, today=now.date())
            self.metrics.pool_size.labels(authority.value, "participants_waiting").set(
                stats.waiting
            )
            self.metrics.pool_size.labels(authority.value, "volunteers_available").set(
                stats.volunteers_available
            )
            due = stats.volunteers_available > 0 and self.policy.should_run(
                now=now, last_run_at=last, waiting=stats.waiting, arrived=stats.arrived
            )
            if not due:
                continue
            if acquire is not None and not await acquire(f"optimiser:{authority.value}"):
                continue
            outcome = await self.run_batch(authority)
            made += len(outcome.proposals) if outcome.committed else 0
        return made

    async def run_batch(self, authority: CombinedAuthority) -> RunOutcome:
        """One micro-batch: optimal assignment over the authority's whole pool."""
        started = self.clock()
        today = started.date()
        volunteers = [
            v
            for v in await self.repo.volunteers_in(authority)
            if v.dbs_valid(today) and v.free_capacity > 0
        ]
        participants = await self.repo.waiting_participants(authority)
        weights = self.weights.for_authority(authority)
        volunteer_views = [v.view() for v in volunteers]
        participant_views = [p.view() for p in participants]
        t0 = time.perf_counter()
        proposals = await asyncio.to_thread(
            optimal_assignment,
            volunteer_views,
            participant_views,
            weights,
            today=today,
            now=started,
        )
        duration = time.perf_counter() - t0
        self.metrics.optimiser_duration.labels(authority.value).observe(duration)
        run_id = new_id("run")
        by_volunteer = {v.volunteer_id: v for v in volunteer_views}
        by_participant = {p.participant: p for p in participants}
        matches = tuple(
            propose(
                pr,
                by_volunteer[pr.volunteer_id],
                by_participant[pr.participant],
                match_id=new_id("match"),
                run_id=run_id,
                now=started,
            )
            for pr in proposals
        )
        run = RunRecord(
            run_id=run_id,
            combined_authority=authority,
            started_at=started,
            finished_at=self.clock(),
            waiting=len(participants),
            volunteers=len(volunteers),
            proposals=len(matches),
            duration_s=duration,
            total_score=total_score(proposals),
        )
        events = [Outgoing(MATCHING_MATCHES, m.local_authority, match_proposed(m)) for m in matches]
        try:
            await self.repo.commit_run(run, matches, events, today)
        except Conflict as exc:
            self.metrics.runs.labels(authority.value, "conflict").inc()
            logger.info("optimiser run %s for %s discarded: %s", run_id, authority.value, exc)
            return RunOutcome(run_id, authority, len(participants), len(volunteers), (), False)
        self.metrics.runs.labels(authority.value, "committed").inc()
        self.metrics.run_proposals.labels(authority.value).observe(len(matches))
        self.metrics.proposals.labels(authority.value).inc(len(matches))
        logger.info(
            "optimiser run %s for %s: %d waiting, %d volunteers, %d proposals in %.3fs",
            run_id,
            authority.value,
            len(participants),
            len(volunteers),
            len(matches),
            duration,
        )
        if matches:
            self.on_commit()
        return RunOutcome(run_id, authority, len(participants), len(volunteers), matches, True)

    # ------------------------------------------------------------------ coordinators

    async def get_match(self, principal: Principal, match_id: str) -> Match:
        match = await self.repo.get_match(match_id)
        if match is None or match.combined_authority not in principal.combined_authorities:
            raise NotFound(f"no match {match_id} in your combined authorities")
        return match

    async def list_matches(
        self,
        principal: Principal,
        *,
        local_authority: str | None,
        status: MatchStatus | None,
        limit: int,
        offset: int,
    ) -> list[Match]:
        authorities: Sequence[CombinedAuthority] = principal.combined_authorities
        if local_authority is not None:
            authority = combined_authority_of(local_authority)
            if authority is None:
                raise DomainError(f"unknown local authority {local_authority!r}")
            _require_scope(principal, authority)
            authorities = (authority,)
        return await self.repo.list_matches(
            MatchQuery(
                authorities=authorities,
                local_authority=local_authority,
                status=status,
                limit=limit,
                offset=offset,
            )
        )

    async def decide(
        self, principal: Principal, match_id: str, *, accepted: bool, reason: str | None
    ) -> Match:
        match = await self.get_match(principal, match_id)
        now = self.clock()
        event: MatchConfirmed | MatchDeclined
        if accepted:
            volunteer = await self.repo.get_volunteer(match.volunteer_id)
            transition = accept(
                match, volunteer, today=now.date(), now=now, by=principal.principal_id
            )
            event = match_confirmed(transition.match)
        else:
            if not reason:
                raise DomainError("a decline needs a reason")
            transition = decline(match, reason, now=now, by=principal.principal_id)
            event = match_declined(transition.match)
        await self.repo.apply_transition(
            transition, [Outgoing(MATCHING_MATCHES, match.local_authority, event)]
        )
        self.metrics.decisions.labels("accepted" if accepted else "declined").inc()
        self.on_commit()
        return transition.match

    async def end_match(
        self,
        principal: Principal,
        match_id: str,
        *,
        reason: str,
        meetings_count: int,
        rematch: bool,
    ) -> Match:
        match = await self.get_match(principal, match_id)
        transition = end(match, reason, meetings_count, now=self.clock(), rematch=rematch)
        await self.repo.apply_transition(
            transition,
            [Outgoing(MATCHING_MATCHES, match.local_authority, match_ended(transition.match))],
        )
        self.metrics.decisions.labels("ended").inc()
        self.on_commit()
        return transition.match

    # ------------------------------------------------------------------ meetings

    async def record_check_in(
        self, principal: Principal, match_id: str, met_on: date
    ) -> CheckInResult:
        """Record that a confirmed pair met on ``met_on`` (a coordinator of the match's
        authority, or the match's own volunteer). The same match and day again returns
        the stored check-in (``created`` false) and announces nothing."""
        match = await self._match_for(principal, match_id)
        check_in = record_check_in(match, met_on, principal=principal, now=self.clock())
        existing = await self.repo.record_check_in(
            check_in,
            [Outgoing(MATCHING_MATCHES, match.local_authority, check_in_recorded(match, check_in))],
        )
        created = existing is None
        if created:
            self.metrics.check_ins.labels(check_in.recorded_by).inc()
            self.on_commit()
            logger.info("meeting recorded on match %s by a %s", match_id, check_in.recorded_by)
        health = (await self.health([match]))[match_id]
        return CheckInResult(existing or check_in, created, health)

    async def check_ins(self, principal: Principal, match_id: str) -> list[CheckIn]:
        await self._match_for(principal, match_id)
        return await self.repo.check_ins(match_id)

    async def _match_for(self, principal: Principal, match_id: str) -> Match:
        """The match, if the caller may act on it: a coordinator within their combined
        authorities (404 otherwise, as for every match), a volunteer on their own."""
        if principal.role is Role.VOLUNTEER:
            match = await self.repo.get_match(match_id)
            if match is None:
                raise NotFound(f"no match {match_id}")
            if match.volunteer_id != volunteer_of(principal):
                raise NotYourMatch(f"match {match_id} is not one of your matches")
            return match
        return await self.get_match(principal, match_id)

    async def health(self, matches: Sequence[Match]) -> dict[str, HealthReport | None]:
        """The health of each match (``None`` unless confirmed)."""
        confirmed = [m.match_id for m in matches if m.status is MatchStatus.CONFIRMED]
        records = await self.repo.meetings(confirmed)
        today = self.clock().date()
        return {
            m.match_id: match_health(
                m,
                records.get(m.match_id, MeetingRecord()),
                today=today,
                policy=self.health_policy,
            )
            for m in matches
        }

    async def get_volunteer(self, principal: Principal, volunteer_id: str) -> Volunteer:
        """A volunteer in the caller's combined authorities; any other id (unknown, or
        elsewhere) is the same ``VolunteerNotFound``."""
        volunteer = await self.repo.get_volunteer(volunteer_id)
        if volunteer is None or volunteer.combined_authority not in principal.combined_authorities:
            raise VolunteerNotFound(f"no volunteer {volunteer_id} in your combined authorities")
        return volunteer

    async def issue_volunteer_key(self, principal: Principal, volunteer_id: str) -> str:
        """A new key for a volunteer (shown once). Their earlier keys stop working: one
        live key per volunteer. The key may only record and list meetings of their own
        matches."""
        if self.keys is None:
            raise DomainError("volunteer keys are not available on this instance")
        volunteer = await self.repo.get_volunteer(volunteer_id)
        if volunteer is None or volunteer.combined_authority not in principal.combined_authorities:
            raise VolunteerNotFound(f"no volunteer {volunteer_id} in your combined authorities")
        principal_id = volunteer_principal_id(volunteer_id)
        await self.keys.revoke_principal(principal_id)
        key = new_api_key()
        await self.keys.add_key(
            Principal(
                principal_id=principal_id,
                name=f"Volunteer {volunteer_id}",
                role=Role.VOLUNTEER,
                combined_authorities=(volunteer.combined_authority,),
            ),
            key,
        )
        logger.info("volunteer key issued for %s", volunteer_id)
        return key

    # ------------------------------------------------------------------ waiting lists

    async def waiting(
        self,
        principal: Principal,
        authority: CombinedAuthority | None,
        local_authority: str | None = None,
    ) -> list[WaitingView]:
        """Every waiting participant in scope with the hard constraint that keeps them
        waiting (``services.matching.domain.waiting``)."""
        if local_authority is not None:
            owner = combined_authority_of(local_authority)
            if owner is None:
                raise DomainError(f"unknown local authority {local_authority!r}")
            if authority is not None and owner != authority:
                raise DomainError(
                    f"local authority {local_authority} is not in combined authority "
                    f"{authority.value}"
                )
            authority = owner
        if authority is not None:
            _require_scope(principal, authority)
        authorities = (authority,) if authority else principal.combined_authorities
        today = self.clock().date()
        out = []
        for ca in sorted(authorities):
            volunteers = [v.view() for v in await self.repo.volunteers_in(ca)]
            waiting = [
                p.view()
                for p in await self.repo.waiting_participants(ca)
                if local_authority is None or p.local_authority == local_authority
            ]
            # CPU work over the whole pool: off the event loop, like the optimiser.
            diagnoses = await asyncio.to_thread(diagnose_pool, waiting, volunteers, today)
            out.append(WaitingView(ca, tuple(diagnoses), len(volunteers)))
        return out

    async def pool(
        self, principal: Principal, authority: CombinedAuthority | None
    ) -> list[PoolView]:
        if authority is not None:
            _require_scope(principal, authority)
        authorities = (authority,) if authority else principal.combined_authorities
        today = self.clock().date()
        out = []
        for ca in sorted(authorities):
            waiting = await self.repo.waiting_participants(ca)
            stats = await self.repo.pool_stats(ca, since=None, today=today)
            volunteers = [v.view() for v in await self.repo.volunteers_in(ca)]
            views = [p.view() for p in waiting]
            diagnoses = await asyncio.to_thread(diagnose_pool, views, volunteers, today)
            reasons = {d.participant: d.reason for d in diagnoses}
            out.append(PoolView(ca, tuple(waiting), stats.volunteers_available, reasons))
        return out


def _require_scope(principal: Principal, authority: CombinedAuthority) -> None:
    if authority not in principal.combined_authorities:
        raise OutOfScope(f"your key is not for combined authority {authority.value}")
