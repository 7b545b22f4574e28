"""Matching's state in the service's own MongoDB database: one adapter class per
aggregate (each implements its Protocol in :mod:`.protocols`). They are bound to a unit
of work (``services.matching.unit_of_work``) and read and write in its session: inside
its ``run``, in the use case's transaction (with the events it publishes to the outbox),
outside it, committed data without a transaction.

Collections: ``volunteers``, ``volunteer_refs``, ``participants`` (``_id`` = learner
pseudonym), ``matches``, the outbox's collections, ``inbox`` (processed ``ce_id`` s),
``runs`` (optimiser runs), ``schedule`` (last run per combined authority), ``leases``,
``api_keys``, ``check_ins`` (meetings of confirmed pairs, ``_id`` = match and day).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.matching.domain import (
    ACTIVE_MATCH_STATUSES,
    BackgroundFields,
    Match,
    MatchStatus,
    MatchTransition,
    Participant,
    ParticipantStatus,
    Volunteer,
)
from services.matching.domain.checkins import CheckIn
from services.matching.domain.health import MeetingRecord
from services.matching.repository.documents import (
    Doc,
    background_doc,
    check_in_doc,
    check_in_from_doc,
    day,
    from_day,
    match_doc,
    match_from_doc,
    participant_doc,
    participant_from_doc,
    ref_key,
    utc,
    volunteer_fields,
    volunteer_from_doc,
)
from services.matching.repository.protocols import (
    EVENT_SOURCE,
    Conflict,
    MatchQuery,
    PoolStats,
    RunRecord,
)
from shared.contracts.reference import CombinedAuthority
from shared.unit_of_work import MongoUnitOfWork

__all__ = [
    "EVENT_SOURCE",
    "MongoCheckIns",
    "MongoInbox",
    "MongoLeases",
    "MongoMatches",
    "MongoParticipants",
    "MongoRuns",
    "MongoVolunteers",
    "ensure_indexes",
]

_ACTIVE = {"$in": [st.value for st in ACTIVE_MATCH_STATUSES]}


class _Bound:
    """An adapter reading and writing in its unit of work's session."""

    def __init__(self, db: AsyncDatabase[Any], uow: MongoUnitOfWork) -> None:
        self._db = db
        self._uow = uow


class MongoParticipants(_Bound):
    """The pool's participants."""

    async def get(self, participant: str) -> Participant | None:
        doc = await self._db["participants"].find_one(
            {"_id": participant}, session=self._uow.session
        )
        return participant_from_doc(doc) if doc else None

    async def save(self, participant: Participant) -> None:
        await self._db["participants"].replace_one(
            {"_id": participant.participant},
            participant_doc(participant),
            upsert=True,
            session=self._uow.session,
        )

    async def update(self, participant: Participant, *, erased: bool) -> None:
        fields = participant_doc(participant)
        del fields["_id"]
        if erased:
            fields["erased"] = True
        await self._db["participants"].update_one(
            {"_id": participant.participant}, {"$set": fields}, session=self._uow.session
        )

    async def save_transition(self, transition: MatchTransition) -> None:
        m = transition.match
        update: Doc = {"$set": {"status": transition.participant_to.value}}
        if transition.restart_wait:
            update["$set"]["waiting_since"] = transition.at
        if transition.reenter_pool:
            update["$set"]["pool_entered_at"] = transition.at
        if transition.exclude_as == "declined":
            update["$addToSet"] = {"declined_volunteers": m.volunteer_id}
        elif transition.exclude_as == "previous":
            update["$addToSet"] = {"previous_volunteers": m.volunteer_id}
        moved = await self._db["participants"].update_one(
            {"_id": m.participant, "status": transition.participant_from.value},
            update,
            session=self._uow.session,
        )
        if moved.matched_count != 1:
            raise Conflict(f"participant of match {m.match_id} changed concurrently")

    async def mark_proposed(self, matches: Sequence[Match]) -> None:
        taken = await self._db["participants"].bulk_write(
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
            session=self._uow.session,
        )
        if taken.modified_count != len(matches):
            raise Conflict("a participant left the pool during the optimiser run")

    async def set_background(self, participant: str, background: BackgroundFields | None) -> bool:
        result = await self._db["participants"].update_one(
            {"_id": participant, "erased": {"$ne": True}},
            {"$set": {"consent_matching": True, "background": background_doc(background)}},
            session=self._uow.session,
        )
        return result.matched_count == 1

    async def waiting(self, authority: CombinedAuthority) -> list[Participant]:
        cursor = (
            self._db["participants"]
            .find(
                {"combined_authority": authority.value, "status": ParticipantStatus.WAITING.value},
                session=self._uow.session,
            )
            .sort([("waiting_since", ASCENDING), ("_id", ASCENDING)])
        )
        return [participant_from_doc(d) async for d in cursor]


class MongoInbox(_Bound):
    """Enrolment events already processed."""

    async def seen(self, ce_id: str) -> bool:
        found = await self._db["inbox"].find_one(
            {"_id": ce_id}, {"_id": 1}, session=self._uow.session
        )
        return found is not None

    async def record(self, ce_id: str, kind: str, received_at: datetime) -> None:
        await self._db["inbox"].insert_one(
            {"_id": ce_id, "kind": kind, "received_at": received_at}, session=self._uow.session
        )


class MongoVolunteers(_Bound):
    """Volunteers."""

    async def get(self, volunteer_id: str) -> Volunteer | None:
        doc = await self._db["volunteers"].find_one(
            {"_id": volunteer_id}, session=self._uow.session
        )
        return volunteer_from_doc(doc) if doc else None

    async def by_ref(self, authority: CombinedAuthority, external_ref: str) -> Volunteer | None:
        ref = await self._db["volunteer_refs"].find_one(
            {"_id": ref_key(authority, external_ref)}, session=self._uow.session
        )
        return await self.get(ref["volunteer_id"]) if ref else None

    async def add(self, volunteer: Volunteer) -> None:
        s = self._uow.session
        try:
            await self._db["volunteers"].insert_one(
                {
                    "_id": volunteer.volunteer_id,
                    **volunteer_fields(volunteer),
                    "registered_at": volunteer.registered_at,
                    "active": 0,
                    "dbs_expiry_notified_for": None,
                },
                session=s,
            )
        except DuplicateKeyError:
            raise Conflict(f"volunteer {volunteer.volunteer_id} already exists") from None
        if volunteer.external_ref is not None:
            # Claimed in the same transaction: two concurrent registrations with one
            # reference cannot both create a volunteer.
            try:
                await self._db["volunteer_refs"].insert_one(
                    {
                        "_id": ref_key(volunteer.combined_authority, volunteer.external_ref),
                        "volunteer_id": volunteer.volunteer_id,
                    },
                    session=s,
                )
            except DuplicateKeyError:
                raise Conflict(
                    "a volunteer with this external_ref was registered concurrently"
                ) from None

    async def save(self, volunteer: Volunteer, *, expected_version: int) -> None:
        result = await self._db["volunteers"].update_one(
            {"_id": volunteer.volunteer_id, "version": expected_version},
            {"$set": volunteer_fields(volunteer)},
            session=self._uow.session,
        )
        if result.matched_count != 1:
            raise Conflict(f"volunteer {volunteer.volunteer_id} changed concurrently")

    async def add_active(self, volunteer_id: str, delta: int) -> None:
        await self._db["volunteers"].update_one(
            {"_id": volunteer_id}, {"$inc": {"active": delta}}, session=self._uow.session
        )

    async def book(self, places: dict[str, int], today: date) -> None:
        booked = await self._db["volunteers"].bulk_write(
            [
                UpdateOne(
                    {
                        "_id": vid,
                        "dbs_expires_on": {"$gte": day(today)},
                        "$expr": {"$lte": [{"$add": ["$active", k]}, "$capacity"]},
                    },
                    {"$inc": {"active": k}},
                )
                for vid, k in sorted(places.items())
            ],
            ordered=True,
            session=self._uow.session,
        )
        if booked.modified_count != len(places):
            raise Conflict("a volunteer's capacity or DBS changed during the optimiser run")

    async def mark_dbs_notified(self, volunteer: Volunteer) -> bool:
        expired_on = day(volunteer.dbs_expires_on)
        marked = await self._db["volunteers"].update_one(
            {
                "_id": volunteer.volunteer_id,
                "dbs_expires_on": expired_on,
                "dbs_expiry_notified_for": {"$ne": expired_on},
            },
            {"$set": {"dbs_expiry_notified_for": expired_on}},
            session=self._uow.session,
        )
        return marked.modified_count == 1

    async def in_authority(self, authority: CombinedAuthority) -> list[Volunteer]:
        cursor = (
            self._db["volunteers"]
            .find({"combined_authority": authority.value}, session=self._uow.session)
            .sort("_id", ASCENDING)
        )
        return [volunteer_from_doc(d) async for d in cursor]

    async def needing_dbs_notice(self, today: date) -> list[Volunteer]:
        cursor = (
            self._db["volunteers"]
            .find(
                {
                    "dbs_expires_on": {"$lt": day(today)},
                    "$expr": {"$ne": ["$dbs_expiry_notified_for", "$dbs_expires_on"]},
                },
                session=self._uow.session,
            )
            .sort("_id", ASCENDING)
        )
        return [volunteer_from_doc(d) async for d in cursor]


class MongoRuns(_Bound):
    """Optimiser runs: the pool's counts, the last run."""

    async def pool_stats(
        self, authority: CombinedAuthority, *, since: datetime | None, today: date
    ) -> PoolStats:
        s = self._uow.session
        participants, volunteers = self._db["participants"], self._db["volunteers"]
        waiting_filter = {
            "combined_authority": authority.value,
            "status": ParticipantStatus.WAITING.value,
        }
        waiting = await participants.count_documents(waiting_filter, session=s)
        arrived = waiting
        if since is not None and waiting:
            arrived = await participants.count_documents(
                {**waiting_filter, "pool_entered_at": {"$gt": since}}, session=s
            )
        available = await volunteers.count_documents(
            {
                "combined_authority": authority.value,
                "dbs_expires_on": {"$gte": day(today)},
                "$expr": {"$lt": ["$active", "$capacity"]},
            },
            session=s,
        )
        return PoolStats(waiting=waiting, arrived=arrived, volunteers_available=available)

    async def last_run_at(self, authority: CombinedAuthority) -> datetime | None:
        doc = await self._db["schedule"].find_one(
            {"_id": authority.value}, session=self._uow.session
        )
        return utc(doc["last_run_at"]) if doc else None

    async def add(self, run: RunRecord) -> None:
        s = self._uow.session
        await self._db["runs"].insert_one(
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
        await self._db["schedule"].update_one(
            {"_id": run.combined_authority.value},
            {"$set": {"last_run_at": run.started_at, "last_run_id": run.run_id}},
            upsert=True,
            session=s,
        )


class MongoMatches(_Bound):
    """Proposals and matches."""

    async def get(self, match_id: str) -> Match | None:
        doc = await self._db["matches"].find_one({"_id": match_id}, session=self._uow.session)
        return match_from_doc(doc) if doc else None

    async def find(self, query: MatchQuery) -> list[Match]:
        flt: Doc = {"combined_authority": {"$in": [a.value for a in query.authorities]}}
        if query.local_authority:
            flt["local_authority"] = query.local_authority
        if query.status:
            flt["status"] = query.status.value
        if query.volunteer_id:
            flt["volunteer_id"] = query.volunteer_id
        cursor = (
            self._db["matches"]
            .find(flt, session=self._uow.session)
            .sort([("proposed_at", DESCENDING), ("_id", ASCENDING)])
            .skip(query.offset)
            .limit(query.limit)
        )
        return [match_from_doc(d) async for d in cursor]

    async def active_of_participant(self, participant: str) -> list[Match]:
        cursor = (
            self._db["matches"]
            .find({"participant": participant, "status": _ACTIVE}, session=self._uow.session)
            .sort("_id", ASCENDING)
        )
        return [match_from_doc(d) async for d in cursor]

    async def active_ids_of_volunteer(self, volunteer_id: str) -> list[str]:
        cursor = self._db["matches"].find(
            {"volunteer_id": volunteer_id, "status": _ACTIVE},
            {"_id": 1},
            session=self._uow.session,
        )
        return sorted([d["_id"] async for d in cursor])

    async def add(self, matches: Sequence[Match]) -> None:
        await self._db["matches"].insert_many(
            [match_doc(m) for m in matches], session=self._uow.session
        )

    async def save(self, match: Match, *, expected_status: MatchStatus) -> None:
        changed = await self._db["matches"].replace_one(
            {"_id": match.match_id, "status": expected_status.value},
            match_doc(match),
            session=self._uow.session,
        )
        if changed.matched_count != 1:
            raise Conflict(f"match {match.match_id} changed concurrently")

    async def add_flag(self, match_ids: Sequence[str], flag: str) -> None:
        await self._db["matches"].update_many(
            {"_id": {"$in": list(match_ids)}},
            {"$addToSet": {"flags": flag}},
            session=self._uow.session,
        )

    async def clear_volunteer_flag(self, volunteer_id: str, flag: str) -> None:
        await self._db["matches"].update_many(
            {"volunteer_id": volunteer_id, "flags": flag},
            {"$pull": {"flags": flag}},
            session=self._uow.session,
        )


class MongoCheckIns(_Bound):
    """Meetings of confirmed pairs."""

    async def get(self, check_in_id: str) -> CheckIn | None:
        doc = await self._db["check_ins"].find_one({"_id": check_in_id}, session=self._uow.session)
        return check_in_from_doc(doc) if doc else None

    async def add(self, check_in: CheckIn) -> None:
        await self._db["check_ins"].insert_one(check_in_doc(check_in), session=self._uow.session)

    async def meetings(self, match_ids: Sequence[str]) -> dict[str, MeetingRecord]:
        if not match_ids:
            return {}
        cursor = await self._db["check_ins"].aggregate(
            [
                {"$match": {"match_id": {"$in": list(match_ids)}}},
                {"$group": {"_id": "$match_id", "n": {"$sum": 1}, "last": {"$max": "$met_on"}}},
            ],
            session=self._uow.session,
        )
        return {
            d["_id"]: MeetingRecord(check_ins=int(d["n"]), last_met_on=from_day(d["last"]))
            async for d in cursor
        }

    async def of_match(self, match_id: str) -> list[CheckIn]:
        cursor = (
            self._db["check_ins"]
            .find({"match_id": match_id}, session=self._uow.session)
            .sort("met_on", ASCENDING)
        )
        return [check_in_from_doc(d) async for d in cursor]


class MongoLeases:
    """Leases: one optimiser, DBS check and relay at a time across replicas (outside any
    unit of work: a lease is taken before a use case and outlives its transaction)."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self._leases = db["leases"]

    async def acquire_lease(self, name: str, owner: str, ttl: timedelta, now: datetime) -> bool:
        try:
            await self._leases.find_one_and_update(
                {"_id": name, "$or": [{"owner": owner}, {"expires_at": {"$lte": now}}]},
                {"$set": {"owner": owner, "expires_at": now + ttl}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        await self._leases.delete_one({"_id": name, "owner": owner})


async def ensure_indexes(db: AsyncDatabase[Any]) -> None:
    """Matching's indexes (besides the outbox's and the API keys')."""
    await db["participants"].create_index(
        [
            ("combined_authority", ASCENDING),
            ("status", ASCENDING),
            ("pool_entered_at", ASCENDING),
        ]
    )
    await db["volunteers"].create_index(
        [("combined_authority", ASCENDING), ("dbs_expires_on", ASCENDING)]
    )
    await db["volunteers"].create_index([("dbs_expires_on", ASCENDING)])
    await db["matches"].create_index(
        [("combined_authority", ASCENDING), ("status", ASCENDING), ("proposed_at", DESCENDING)]
    )
    await db["matches"].create_index([("volunteer_id", ASCENDING), ("status", ASCENDING)])
    await db["matches"].create_index([("participant", ASCENDING)])
    await db["runs"].create_index([("combined_authority", ASCENDING), ("started_at", DESCENDING)])
    await db["check_ins"].create_index([("match_id", ASCENDING), ("met_on", ASCENDING)])
