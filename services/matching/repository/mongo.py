"""Matching's state in the service's own MongoDB database: one adapter class per
aggregate (each implements its Protocol in :mod:`.protocols`), all sharing one store.

Every state change that must be announced is written together with its events in the
outbox (``shared.outbox``) in one transaction; the relay publishes them afterwards with
the CloudEvent id fixed in the row. So what is stored and what is published cannot
diverge: a crash before commit leaves neither, a crash after commit leaves a row the
relay (re)publishes, and consumers deduplicate on ``ce_id``.

Collections: ``volunteers``, ``volunteer_refs``, ``participants`` (``_id`` = learner
pseudonym), ``matches``, the outbox's collections, ``inbox`` (processed ``ce_id`` s),
``runs`` (optimiser runs), ``schedule`` (last run per combined authority), ``leases``,
``api_keys``, ``check_ins`` (meetings of confirmed pairs, ``_id`` = match and day).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
    Conflict,
    MatchQuery,
    Outgoing,
    PoolStats,
    RunRecord,
)
from shared.cloudevents import CloudEvent
from shared.contracts.reference import CombinedAuthority
from shared.outbox import MongoOutbox, OutboxMessage

EVENT_SOURCE = "/commonground/matching"


class _MongoStore:
    """The collections, and writing state with its events in one transaction."""

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


class MongoParticipants(_MongoStore):
    """The pool's participants; consent changes and erasure."""

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
            {"$set": {"consent_matching": True, "background": background_doc(background)}},
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


class MongoVolunteers(_MongoStore):
    """Volunteers, and pausing them when their DBS check lapses."""

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

    async def volunteers_needing_dbs_notice(self, today: date) -> list[Volunteer]:
        cursor = self.volunteers.find(
            {
                "dbs_expires_on": {"$lt": day(today)},
                "$expr": {"$ne": ["$dbs_expiry_notified_for", "$dbs_expires_on"]},
            }
        ).sort("_id", ASCENDING)
        return [volunteer_from_doc(d) async for d in cursor]

    async def pause_for_dbs_expiry(
        self, volunteer: Volunteer, make_event: Callable[[list[str]], Outgoing]
    ) -> list[str] | None:
        expired_on = day(volunteer.dbs_expires_on)

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


class MongoRuns(_MongoStore):
    """Optimiser runs: the pool's counts, the last run, committing a run."""

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
                "dbs_expires_on": {"$gte": day(today)},
                "$expr": {"$lt": ["$active", "$capacity"]},
            }
        )
        return PoolStats(waiting=waiting, arrived=arrived, volunteers_available=available)

    async def last_run_at(self, authority: CombinedAuthority) -> datetime | None:
        doc = await self.schedule.find_one({"_id": authority.value})
        return utc(doc["last_run_at"]) if doc else None

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
                                "dbs_expires_on": {"$gte": day(today)},
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


class MongoMatches(_MongoStore):
    """Proposals and matches, and their transitions."""

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


class MongoCheckIns(_MongoStore):
    """Meetings of confirmed pairs."""

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
            d["_id"]: MeetingRecord(check_ins=int(d["n"]), last_met_on=from_day(d["last"]))
            async for d in cursor
        }

    async def check_ins(self, match_id: str) -> list[CheckIn]:
        cursor = self.check_in_docs.find({"match_id": match_id}).sort("met_on", ASCENDING)
        return [check_in_from_doc(d) async for d in cursor]


class MongoLeases(_MongoStore):
    """Leases: one optimiser, DBS check and relay at a time across replicas."""

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


class MongoMatchingRepository(
    MongoParticipants, MongoVolunteers, MongoRuns, MongoMatches, MongoCheckIns, MongoLeases
):
    """All of matching's state (:class:`~.protocols.MatchingRepository`)."""

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
