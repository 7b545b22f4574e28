"""Matching state in the service's own MongoDB database, behind a Protocol.

Every state change that must be announced is written together with its events in the
outbox (``shared.outbox``) in one transaction; the relay publishes them afterwards with
the CloudEvent id fixed in the row. So what is stored and what is published cannot
diverge: a crash before commit leaves neither, a crash after commit leaves a row the
relay (re)publishes, and consumers deduplicate on ``ce_id``.

Collections: ``volunteers``, ``participants`` (``_id`` = learner pseudonym), ``matches``,
the outbox's collections, ``inbox`` (processed ``ce_id`` s), ``runs`` (optimiser runs),
``schedule`` (last run per combined authority), ``leases``, ``api_keys``, ``check_ins``
(meetings of confirmed pairs, ``_id`` = match and day).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from services.matching.domain import (
    ACTIVE_MATCH_STATUSES,
    FLAG_DBS_EXPIRED,
    BackgroundFields,
    Match,
    MatchStatus,
    MatchTransition,
    Participant,
    ParticipantStatus,
    Volunteer,
    Withdrawal,
    merge_opt_in,
)
from services.matching.domain.checkins import CheckIn
from services.matching.domain.health import MeetingRecord
from shared.cloudevents import CloudEvent, Event
from shared.contracts.reference import AgeBand, CombinedAuthority, Ethnicity, Religion, Sex
from shared.outbox import MongoOutbox, OutboxMessage

EVENT_SOURCE = "/commonground/matching"

Doc = dict[str, Any]


class Conflict(Exception):
    """The stored state changed under us (a concurrent writer); nothing was written."""


@dataclass(frozen=True)
class Outgoing:
    """An event to publish once the transaction that produced it commits."""

    topic: str
    key: str
    event: Event


@dataclass(frozen=True)
class PoolStats:
    waiting: int
    arrived: int
    """Waiting people who entered the pool after the ``since`` instant."""
    volunteers_available: int


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    combined_authority: CombinedAuthority
    started_at: datetime
    finished_at: datetime
    waiting: int
    volunteers: int
    proposals: int
    duration_s: float
    total_score: float


@dataclass(frozen=True)
class MatchQuery:
    authorities: Sequence[CombinedAuthority]
    local_authority: str | None = None
    status: MatchStatus | None = None
    volunteer_id: str | None = None
    limit: int = 100
    offset: int = 0


class MatchingRepository(Protocol):
    async def ensure_indexes(self) -> None: ...

    async def record_opt_in(self, ce_id: str, incoming: Participant) -> bool:
        """Add or update the participant; ``False`` if ``ce_id`` was already processed."""
        ...

    async def get_participant(self, participant: str) -> Participant | None: ...

    async def set_background(self, participant: str, background: BackgroundFields | None) -> bool:
        """Matching consent given: keep this background for later runs."""
        ...

    async def waiting_participants(self, authority: CombinedAuthority) -> list[Participant]: ...

    async def get_volunteer(self, volunteer_id: str) -> Volunteer | None: ...

    async def volunteer_by_ref(
        self, authority: CombinedAuthority, external_ref: str
    ) -> Volunteer | None: ...

    async def save_volunteer(
        self,
        volunteer: Volunteer,
        *,
        expected_version: int | None,
        events: Sequence[Outgoing],
        clear_dbs_flags: bool,
    ) -> None: ...

    async def volunteers_in(self, authority: CombinedAuthority) -> list[Volunteer]: ...

    async def pool_stats(
        self, authority: CombinedAuthority, *, since: datetime | None, today: date
    ) -> PoolStats: ...

    async def last_run_at(self, authority: CombinedAuthority) -> datetime | None: ...

    async def commit_run(
        self, run: RunRecord, matches: Sequence[Match], events: Sequence[Outgoing], today: date
    ) -> None: ...

    async def get_match(self, match_id: str) -> Match | None: ...

    async def list_matches(self, query: MatchQuery) -> list[Match]: ...

    async def apply_transition(
        self, transition: MatchTransition, events: Sequence[Outgoing]
    ) -> None: ...

    async def volunteers_needing_dbs_notice(self, today: date) -> list[Volunteer]: ...

    async def pause_for_dbs_expiry(
        self, volunteer: Volunteer, make_event: Callable[[list[str]], Outgoing]
    ) -> list[str] | None:
        """Mark the lapsed DBS as announced, flag the volunteer's active matches and queue
        the event, atomically. ``None`` if it was already announced (idempotent)."""
        ...

    async def withdraw_participant(
        self,
        participant: str,
        decide: Callable[[Participant, Sequence[Match]], Withdrawal],
        make_events: Callable[[Sequence[Match]], list[Outgoing]],
        now: datetime,
    ) -> list[Match] | None:
        """Apply ``decide`` (the domain's :func:`withdraw`) to the participant and their
        proposed and confirmed matches, and store its outcome with the events, atomically.
        Returns the matches closed, ``None`` if the participant is unknown."""
        ...

    async def record_check_in(
        self, check_in: CheckIn, events: Sequence[Outgoing]
    ) -> CheckIn | None:
        """Store a meeting with its event, atomically, while the match is still confirmed
        or ended. Returns the check-in already stored for that match and day instead
        (nothing written, no event), or ``None`` when it is new."""
        ...

    async def meetings(self, match_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        """Per match: how many meetings are recorded and the latest day."""
        ...

    async def check_ins(self, match_id: str) -> list[CheckIn]: ...

    async def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> bool: ...

    async def release_lease(self, name: str, owner: str) -> None: ...


# ----------------------------------------------------------------------- conversions


def _day(value: date) -> str:
    return value.isoformat()


def _from_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _must_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _background_doc(bg: BackgroundFields | None) -> Doc | None:
    if bg is None:
        return None
    return {
        "ethnicity": bg.ethnicity.value if bg.ethnicity else None,
        "religion": bg.religion.value if bg.religion else None,
        "country_of_birth": bg.country_of_birth,
    }


def _background(doc: Doc | None) -> BackgroundFields | None:
    if not doc:
        return None
    return BackgroundFields(
        ethnicity=Ethnicity(doc["ethnicity"]) if doc.get("ethnicity") else None,
        religion=Religion(doc["religion"]) if doc.get("religion") else None,
        country_of_birth=doc.get("country_of_birth"),
    )


def _opt(enum: Any, value: Any) -> Any:
    return enum(value) if value is not None else None


def volunteer_fields(v: Volunteer) -> Doc:
    """The coordinator-owned fields (never ``active`` nor the DBS notice marker)."""
    return {
        "combined_authority": v.combined_authority.value,
        "local_authority": v.local_authority,
        "capacity": v.capacity,
        "dbs_expires_on": _day(v.dbs_expires_on),
        "updated_at": v.updated_at,
        "languages": list(v.languages),
        "availability": list(v.availability),
        "interests": list(v.interests),
        "gender": v.gender.value if v.gender else None,
        "gender_preference": v.gender_preference.value if v.gender_preference else None,
        "age_band": v.age_band.value if v.age_band else None,
        "consent_matching": v.consent_matching,
        # Structural: never stored without consent.
        "background": _background_doc(v.background) if v.consent_matching else None,
        "version": v.version,
        "external_ref": v.external_ref,
    }


def volunteer_from_doc(doc: Doc) -> Volunteer:
    consent = bool(doc.get("consent_matching"))
    return Volunteer(
        volunteer_id=doc["_id"],
        combined_authority=CombinedAuthority(doc["combined_authority"]),
        local_authority=doc["local_authority"],
        capacity=int(doc["capacity"]),
        dbs_expires_on=date.fromisoformat(doc["dbs_expires_on"]),
        registered_at=_must_utc(doc["registered_at"]),
        updated_at=_must_utc(doc["updated_at"]),
        languages=tuple(doc.get("languages", ())),
        availability=tuple(doc.get("availability", ())),
        interests=tuple(doc.get("interests", ())),
        gender=_opt(Sex, doc.get("gender")),
        gender_preference=_opt(Sex, doc.get("gender_preference")),
        age_band=_opt(AgeBand, doc.get("age_band")),
        consent_matching=consent,
        background=_background(doc.get("background")) if consent else None,
        active=int(doc.get("active", 0)),
        dbs_expiry_notified_for=_from_day(doc.get("dbs_expiry_notified_for")),
        version=int(doc.get("version", 1)),
        external_ref=doc.get("external_ref"),
    )


def ref_key(authority: CombinedAuthority, external_ref: str) -> str:
    """``volunteer_refs._id``: a coordinator reference is unique per combined authority."""
    return f"{authority.value}:{external_ref}"


def participant_doc(p: Participant) -> Doc:
    return {
        "_id": p.participant,
        "enrolment_id": p.enrolment_id,
        "combined_authority": p.combined_authority.value,
        "local_authority": p.local_authority,
        "age_band": p.age_band.value if p.age_band else None,
        "waiting_since": p.waiting_since,
        "pool_entered_at": p.pool_entered_at,
        "opted_in_at": p.opted_in_at,
        "status": p.status.value,
        "sex": p.sex.value if p.sex else None,
        "gender_preference": p.gender_preference.value if p.gender_preference else None,
        "languages": list(p.languages),
        "availability": list(p.availability),
        "interests": list(p.interests),
        "consent_matching": p.consent_matching,
        # Structural: never stored without consent.
        "background": _background_doc(p.background) if p.consent_matching else None,
        "declined_volunteers": list(p.declined_volunteers),
        "previous_volunteers": list(p.previous_volunteers),
    }


def participant_from_doc(doc: Doc) -> Participant:
    consent = bool(doc.get("consent_matching"))
    return Participant(
        participant=doc["_id"],
        enrolment_id=doc.get("enrolment_id"),
        combined_authority=CombinedAuthority(doc["combined_authority"]),
        local_authority=doc["local_authority"],
        age_band=_opt(AgeBand, doc.get("age_band")),
        waiting_since=_must_utc(doc["waiting_since"]),
        pool_entered_at=_must_utc(doc["pool_entered_at"]),
        opted_in_at=_must_utc(doc["opted_in_at"]),
        status=ParticipantStatus(doc["status"]),
        sex=_opt(Sex, doc.get("sex")),
        gender_preference=_opt(Sex, doc.get("gender_preference")),
        languages=tuple(doc.get("languages", ())),
        availability=tuple(doc.get("availability", ())),
        interests=tuple(doc.get("interests", ())),
        consent_matching=consent,
        background=_background(doc.get("background")) if consent else None,
        declined_volunteers=tuple(doc.get("declined_volunteers", ())),
        previous_volunteers=tuple(doc.get("previous_volunteers", ())),
    )


def match_doc(m: Match) -> Doc:
    return {
        "_id": m.match_id,
        "volunteer_id": m.volunteer_id,
        "participant": m.participant,
        "enrolment_id": m.enrolment_id,
        "combined_authority": m.combined_authority.value,
        "local_authority": m.local_authority,
        "status": m.status.value,
        "score": m.score,
        "score_components": dict(m.score_components),
        "bridging_dimensions": list(m.bridging_dimensions),
        "shared_slots": list(m.shared_slots),
        "shared_interests": list(m.shared_interests),
        "explanation": m.explanation,
        "waited_since": m.waited_since,
        "proposed_at": m.proposed_at,
        "run_id": m.run_id,
        "decided_at": m.decided_at,
        "decided_by": m.decided_by,
        "decline_reason": m.decline_reason,
        "ended_at": m.ended_at,
        "end_reason": m.end_reason,
        "meetings_count": m.meetings_count,
        "flags": list(m.flags),
    }


def match_from_doc(doc: Doc) -> Match:
    return Match(
        match_id=doc["_id"],
        volunteer_id=doc["volunteer_id"],
        participant=doc["participant"],
        enrolment_id=doc.get("enrolment_id"),
        combined_authority=CombinedAuthority(doc["combined_authority"]),
        local_authority=doc["local_authority"],
        status=MatchStatus(doc["status"]),
        score=float(doc["score"]),
        score_components=dict(doc.get("score_components") or {}),
        bridging_dimensions=tuple(doc.get("bridging_dimensions", ())),
        shared_slots=tuple(doc.get("shared_slots", ())),
        shared_interests=tuple(doc.get("shared_interests", ())),
        explanation=doc["explanation"],
        waited_since=_must_utc(doc["waited_since"]),
        proposed_at=_must_utc(doc["proposed_at"]),
        run_id=doc.get("run_id"),
        decided_at=_utc(doc.get("decided_at")),
        decided_by=doc.get("decided_by"),
        decline_reason=doc.get("decline_reason"),
        ended_at=_utc(doc.get("ended_at")),
        end_reason=doc.get("end_reason"),
        meetings_count=doc.get("meetings_count"),
        flags=tuple(doc.get("flags", ())),
    )


def check_in_doc(c: CheckIn) -> Doc:
    return {
        "_id": c.check_in_id,
        "match_id": c.match_id,
        "met_on": _day(c.met_on),
        "recorded_by": c.recorded_by,
        "recorder": c.recorder,
        "recorded_at": c.recorded_at,
    }


def check_in_from_doc(doc: Doc) -> CheckIn:
    return CheckIn(
        check_in_id=doc["_id"],
        match_id=doc["match_id"],
        met_on=date.fromisoformat(doc["met_on"]),
        recorded_by=doc["recorded_by"],
        recorder=doc["recorder"],
        recorded_at=_must_utc(doc["recorded_at"]),
    )


# ----------------------------------------------------------------------- MongoDB


class MongoMatchingRepository:
    def __init__(
        self, client: AsyncMongoClient[Any], db: AsyncDatabase[Any], outbox: MongoOutbox
    ) -> None:
        self._client = client
        self._db = db
        self._outbox = outbox
        self.volunteers = db["volunteers"]
        self.participants = db["participants"]
        self.matches = db["matches"]
        self.inbox = db["inbox"]
        self.runs = db["runs"]
        self.schedule = db["schedule"]
        self.leases = db["leases"]
        self.check_in_docs = db["check_ins"]
        self.volunteer_refs = db["volunteer_refs"]

    async def ensure_indexes(self) -> None:
        await self.participants.create_index(
            [
                ("combined_authority", ASCENDING),
                ("status", ASCENDING),
                ("pool_entered_at", ASCENDING),
            ]
        )
        await self.volunteers.create_index(
            [("combined_authority", ASCENDING), ("dbs_expires_on", ASCENDING)]
        )
        await self.volunteers.create_index([("dbs_expires_on", ASCENDING)])
        await self.matches.create_index(
            [("combined_authority", ASCENDING), ("status", ASCENDING), ("proposed_at", DESCENDING)]
        )
        await self.matches.create_index([("volunteer_id", ASCENDING), ("status", ASCENDING)])
        await self.matches.create_index([("participant", ASCENDING)])
        await self.runs.create_index(
            [("combined_authority", ASCENDING), ("started_at", DESCENDING)]
        )
        await self.check_in_docs.create_index([("match_id", ASCENDING), ("met_on", ASCENDING)])

    async def _queue(
        self, events: Sequence[Outgoing], now: datetime, session: AsyncClientSession
    ) -> None:
        """Queue ``events`` in the outbox, in the transaction of ``session``."""
        await self._outbox.add(
            [
                OutboxMessage.of(
                    CloudEvent(data=e.event, source=EVENT_SOURCE, time=now),
                    topic=e.topic,
                    key=e.key,
                )
                for e in events
            ],
            session=session,
            now=now,
        )

    async def _transaction(self, body: Callable[[AsyncClientSession], Any]) -> Any:
        async with self._client.start_session() as session:
            return await session.with_transaction(body)

    # -- participants

    async def record_opt_in(self, ce_id: str, incoming: Participant) -> bool:
        async def body(s: AsyncClientSession) -> bool:
            # Look before inserting: a duplicate-key error would abort the transaction.
            # Two concurrent deliveries conflict on the insert and the loser, retried,
            # finds the row.
            if await self.inbox.find_one({"_id": ce_id}, {"_id": 1}, session=s):
                return False
            await self.inbox.insert_one(
                {
                    "_id": ce_id,
                    "kind": "ParticipantOptedIn",
                    "received_at": incoming.pool_entered_at,
                },
                session=s,
            )
            existing_doc = await self.participants.find_one(
                {"_id": incoming.participant}, session=s
            )
            existing = participant_from_doc(existing_doc) if existing_doc else None
            merged = merge_opt_in(existing, incoming)
            await self.participants.replace_one(
                {"_id": merged.participant}, participant_doc(merged), upsert=True, session=s
            )
            return True

        result: bool = await self._transaction(body)
        return result

    async def set_background(self, participant: str, background: BackgroundFields | None) -> bool:
        result = await self.participants.update_one(
            {"_id": participant, "erased": {"$ne": True}},
            {"$set": {"consent_matching": True, "background": _background_doc(background)}},
        )
        return result.matched_count == 1

    async def get_participant(self, participant: str) -> Participant | None:
        doc = await self.participants.find_one({"_id": participant})
        return participant_from_doc(doc) if doc else None

    async def waiting_participants(self, authority: CombinedAuthority) -> list[Participant]:
        cursor = self.participants.find(
            {"combined_authority": authority.value, "status": ParticipantStatus.WAITING.value}
        ).sort([("waiting_since", ASCENDING), ("_id", ASCENDING)])
        return [participant_from_doc(d) async for d in cursor]

    # -- volunteers

    async def get_volunteer(self, volunteer_id: str) -> Volunteer | None:
        doc = await self.volunteers.find_one({"_id": volunteer_id})
        return volunteer_from_doc(doc) if doc else None

    async def volunteer_by_ref(
        self, authority: CombinedAuthority, external_ref: str
    ) -> Volunteer | None:
        ref = await self.volunteer_refs.find_one({"_id": ref_key(authority, external_ref)})
        return await self.get_volunteer(ref["volunteer_id"]) if ref else None

    async def save_volunteer(
        self,
        volunteer: Volunteer,
        *,
        expected_version: int | None,
        events: Sequence[Outgoing],
        clear_dbs_flags: bool,
    ) -> None:
        fields = volunteer_fields(volunteer)

        async def body(s: AsyncClientSession) -> None:
            if expected_version is None:
                try:
                    await self.volunteers.insert_one(
                        {
                            "_id": volunteer.volunteer_id,
                            **fields,
                            "registered_at": volunteer.registered_at,
                            "active": 0,
                            "dbs_expiry_notified_for": None,
                        },
                        session=s,
                    )
                except DuplicateKeyError:
                    raise Conflict(f"volunteer {volunteer.volunteer_id} already exists") from None
                if volunteer.external_ref is not None:
                    # Claimed in the same transaction: two concurrent registrations with
                    # one reference cannot both create a volunteer.
                    try:
                        await self.volunteer_refs.insert_one(
                            {
                                "_id": ref_key(
                                    volunteer.combined_authority, volunteer.external_ref
                                ),
                                "volunteer_id": volunteer.volunteer_id,
                            },
                            session=s,
                        )
                    except DuplicateKeyError:
                        raise Conflict(
                            "a volunteer with this external_ref was registered concurrently"
                        ) from None
            else:
                result = await self.volunteers.update_one(
                    {"_id": volunteer.volunteer_id, "version": expected_version},
                    {"$set": fields},
                    session=s,
                )
                if result.matched_count != 1:
                    raise Conflict(f"volunteer {volunteer.volunteer_id} changed concurrently")
            if clear_dbs_flags:
                await self.matches.update_many(
                    {"volunteer_id": volunteer.volunteer_id, "flags": FLAG_DBS_EXPIRED},
                    {"$pull": {"flags": FLAG_DBS_EXPIRED}},
                    session=s,
                )
            if events:
                await self._queue(events, volunteer.updated_at, s)

        await self._transaction(body)

    async def volunteers_in(self, authority: CombinedAuthority) -> list[Volunteer]:
        cursor = self.volunteers.find({"combined_authority": authority.value}).sort(
            "_id", ASCENDING
        )
        return [volunteer_from_doc(d) async for d in cursor]

    # -- scheduling

    async def pool_stats(
        self, authority: CombinedAuthority, *, since: datetime | None, today: date
    ) -> PoolStats:
        waiting_filter = {
            "combined_authority": authority.value,
            "status": ParticipantStatus.WAITING.value,
        }
        waiting = await self.participants.count_documents(waiting_filter)
        arrived = waiting
        if since is not None and waiting:
            arrived = await self.participants.count_documents(
                {**waiting_filter, "pool_entered_at": {"$gt": since}}
            )
        available = await self.volunteers.count_documents(
            {
                "combined_authority": authority.value,
                "dbs_expires_on": {"$gte": _day(today)},
                "$expr": {"$lt": ["$active", "$capacity"]},
            }
        )
        return PoolStats(waiting=waiting, arrived=arrived, volunteers_available=available)

    async def last_run_at(self, authority: CombinedAuthority) -> datetime | None:
        doc = await self.schedule.find_one({"_id": authority.value})
        return _utc(doc["last_run_at"]) if doc else None

    async def commit_run(
        self, run: RunRecord, matches: Sequence[Match], events: Sequence[Outgoing], today: date
    ) -> None:
        per_volunteer: dict[str, int] = {}
        for m in matches:
            per_volunteer[m.volunteer_id] = per_volunteer.get(m.volunteer_id, 0) + 1

        async def body(s: AsyncClientSession) -> None:
            if matches:
                taken = await self.participants.bulk_write(
                    [
                        UpdateOne(
                            {
                                "_id": m.participant,
                                "status": ParticipantStatus.WAITING.value,
                                "combined_authority": m.combined_authority.value,
                            },
                            {"$set": {"status": ParticipantStatus.PROPOSED.value}},
                        )
                        for m in matches
                    ],
                    ordered=True,
                    session=s,
                )
                if taken.modified_count != len(matches):
                    raise Conflict("a participant left the pool during the optimiser run")
                booked = await self.volunteers.bulk_write(
                    [
                        UpdateOne(
                            {
                                "_id": vid,
                                "dbs_expires_on": {"$gte": _day(today)},
                                "$expr": {"$lte": [{"$add": ["$active", k]}, "$capacity"]},
                            },
                            {"$inc": {"active": k}},
                        )
                        for vid, k in sorted(per_volunteer.items())
                    ],
                    ordered=True,
                    session=s,
                )
                if booked.modified_count != len(per_volunteer):
                    raise Conflict("a volunteer's capacity or DBS changed during the optimiser run")
                await self.matches.insert_many([match_doc(m) for m in matches], session=s)
                if events:
                    await self._queue(events, run.finished_at, s)
            await self.runs.insert_one(
                {
                    "_id": run.run_id,
                    "combined_authority": run.combined_authority.value,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "waiting": run.waiting,
                    "volunteers": run.volunteers,
                    "proposals": run.proposals,
                    "duration_s": run.duration_s,
                    "total_score": run.total_score,
                },
                session=s,
            )
            await self.schedule.update_one(
                {"_id": run.combined_authority.value},
                {"$set": {"last_run_at": run.started_at, "last_run_id": run.run_id}},
                upsert=True,
                session=s,
            )

        await self._transaction(body)

    # -- matches

    async def get_match(self, match_id: str) -> Match | None:
        doc = await self.matches.find_one({"_id": match_id})
        return match_from_doc(doc) if doc else None

    async def list_matches(self, query: MatchQuery) -> list[Match]:
        flt: Doc = {"combined_authority": {"$in": [a.value for a in query.authorities]}}
        if query.local_authority:
            flt["local_authority"] = query.local_authority
        if query.status:
            flt["status"] = query.status.value
        if query.volunteer_id:
            flt["volunteer_id"] = query.volunteer_id
        cursor = (
            self.matches.find(flt)
            .sort([("proposed_at", DESCENDING), ("_id", ASCENDING)])
            .skip(query.offset)
            .limit(query.limit)
        )
        return [match_from_doc(d) async for d in cursor]

    async def apply_transition(
        self, transition: MatchTransition, events: Sequence[Outgoing]
    ) -> None:
        m = transition.match

        async def body(s: AsyncClientSession) -> None:
            changed = await self.matches.replace_one(
                {"_id": m.match_id, "status": transition.expected_status.value},
                match_doc(m),
                session=s,
            )
            if changed.matched_count != 1:
                raise Conflict(f"match {m.match_id} changed concurrently")
            update: Doc = {"$set": {"status": transition.participant_to.value}}
            if transition.restart_wait:
                update["$set"]["waiting_since"] = transition.at
            if transition.reenter_pool:
                update["$set"]["pool_entered_at"] = transition.at
            if transition.exclude_as == "declined":
                update["$addToSet"] = {"declined_volunteers": m.volunteer_id}
            elif transition.exclude_as == "previous":
                update["$addToSet"] = {"previous_volunteers": m.volunteer_id}
            moved = await self.participants.update_one(
                {"_id": m.participant, "status": transition.participant_from.value},
                update,
                session=s,
            )
            if moved.matched_count != 1:
                raise Conflict(f"participant of match {m.match_id} changed concurrently")
            if transition.volunteer_active_delta:
                await self.volunteers.update_one(
                    {"_id": m.volunteer_id},
                    {"$inc": {"active": transition.volunteer_active_delta}},
                    session=s,
                )
            if events:
                await self._queue(events, transition.at, s)

        await self._transaction(body)

    # -- DBS

    async def volunteers_needing_dbs_notice(self, today: date) -> list[Volunteer]:
        cursor = self.volunteers.find(
            {
                "dbs_expires_on": {"$lt": _day(today)},
                "$expr": {"$ne": ["$dbs_expiry_notified_for", "$dbs_expires_on"]},
            }
        ).sort("_id", ASCENDING)
        return [volunteer_from_doc(d) async for d in cursor]

    async def pause_for_dbs_expiry(
        self, volunteer: Volunteer, make_event: Callable[[list[str]], Outgoing]
    ) -> list[str] | None:
        expired_on = _day(volunteer.dbs_expires_on)

        async def body(s: AsyncClientSession) -> list[str] | None:
            marked = await self.volunteers.update_one(
                {
                    "_id": volunteer.volunteer_id,
                    "dbs_expires_on": expired_on,
                    "dbs_expiry_notified_for": {"$ne": expired_on},
                },
                {"$set": {"dbs_expiry_notified_for": expired_on}},
                session=s,
            )
            if marked.modified_count != 1:
                return None
            active_filter = {
                "volunteer_id": volunteer.volunteer_id,
                "status": {"$in": [st.value for st in ACTIVE_MATCH_STATUSES]},
            }
            ids = sorted(
                [d["_id"] async for d in self.matches.find(active_filter, {"_id": 1}, session=s)]
            )
            if ids:
                await self.matches.update_many(
                    {"_id": {"$in": ids}}, {"$addToSet": {"flags": FLAG_DBS_EXPIRED}}, session=s
                )
            outgoing = make_event(ids)
            await self._queue([outgoing], datetime.now(UTC), s)
            return ids

        result: list[str] | None = await self._transaction(body)
        return result

    # -- consent and erasure

    async def withdraw_participant(
        self,
        participant: str,
        decide: Callable[[Participant, Sequence[Match]], Withdrawal],
        make_events: Callable[[Sequence[Match]], list[Outgoing]],
        now: datetime,
    ) -> list[Match] | None:
        async def body(s: AsyncClientSession) -> list[Match] | None:
            doc = await self.participants.find_one({"_id": participant}, session=s)
            if doc is None:
                return None
            active = [
                match_from_doc(d)
                async for d in self.matches.find(
                    {
                        "participant": participant,
                        "status": {"$in": [st.value for st in ACTIVE_MATCH_STATUSES]},
                    },
                    session=s,
                ).sort("_id", ASCENDING)
            ]
            withdrawal = decide(participant_from_doc(doc), active)
            for t in withdrawal.closed:
                result = await self.matches.replace_one(
                    {"_id": t.match.match_id, "status": t.expected_status.value},
                    match_doc(t.match),
                    session=s,
                )
                if result.matched_count != 1:
                    raise Conflict(f"match {t.match.match_id} changed concurrently")
                await self.volunteers.update_one(
                    {"_id": t.match.volunteer_id},
                    {"$inc": {"active": t.volunteer_active_delta}},
                    session=s,
                )
            update = participant_doc(withdrawal.participant)
            del update["_id"]
            if withdrawal.erased:
                update["erased"] = True
            await self.participants.update_one({"_id": participant}, {"$set": update}, session=s)
            changed = [t.match for t in withdrawal.closed]
            events = make_events(changed)
            if events:
                await self._queue(events, now, s)
            return changed

        result: list[Match] | None = await self._transaction(body)
        return result

    # -- check-ins

    async def record_check_in(
        self, check_in: CheckIn, events: Sequence[Outgoing]
    ) -> CheckIn | None:
        async def body(s: AsyncClientSession) -> CheckIn | None:
            # Look before inserting: a duplicate-key error would abort the transaction.
            existing = await self.check_in_docs.find_one({"_id": check_in.check_in_id}, session=s)
            if existing is not None:
                return check_in_from_doc(existing)
            match = await self.matches.find_one(
                {
                    "_id": check_in.match_id,
                    "status": {"$in": [MatchStatus.CONFIRMED.value, MatchStatus.ENDED.value]},
                },
                {"_id": 1},
                session=s,
            )
            if match is None:
                raise Conflict(f"match {check_in.match_id} changed concurrently")
            await self.check_in_docs.insert_one(check_in_doc(check_in), session=s)
            if events:
                await self._queue(events, check_in.recorded_at, s)
            return None

        result: CheckIn | None = await self._transaction(body)
        return result

    async def meetings(self, match_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        if not match_ids:
            return {}
        cursor = await self.check_in_docs.aggregate(
            [
                {"$match": {"match_id": {"$in": list(match_ids)}}},
                {"$group": {"_id": "$match_id", "n": {"$sum": 1}, "last": {"$max": "$met_on"}}},
            ]
        )
        return {
            d["_id"]: MeetingRecord(check_ins=int(d["n"]), last_met_on=_from_day(d["last"]))
            async for d in cursor
        }

    async def check_ins(self, match_id: str) -> list[CheckIn]:
        cursor = self.check_in_docs.find({"match_id": match_id}).sort("met_on", ASCENDING)
        return [check_in_from_doc(d) async for d in cursor]

    # -- leases

    async def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> bool:
        try:
            await self.leases.find_one_and_update(
                {"_id": name, "$or": [{"owner": owner}, {"expires_at": {"$lte": now}}]},
                {"$set": {"owner": owner, "expires_at": now + ttl}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        await self.leases.delete_one({"_id": name, "owner": owner})
