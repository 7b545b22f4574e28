"""The whole platform as processes, fed from the outside, and checked end to end.

Providers' submissions go to ``enrolment.inbound.v1`` (as providers with Kafka access
send them); enrolment accepts them and publishes ``EnrolmentAccepted`` (and
``ParticipantOptedIn`` for learners who want a conversation partner) through its outbox;
matching pools the opt-ins and proposes matches to registered volunteers through its
outbox; reporting projects both topics. :meth:`Pipeline.verify` then counts, for every
submission, how many enrolments, events and report entries it produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from services.enrolment.admin import ProviderAdmin
from shared.auth import ApiKeyStore, Principal, Role, new_api_key
from shared.cloudevents import CloudEvent, Event
from shared.contracts.enrolment import EnrolmentAccepted, ParticipantOptedIn
from shared.contracts.matching import MatchProposed
from shared.contracts.reference import CombinedAuthority
from shared.record_signing import sign_record
from shared.topics import (
    CONTRACT_TOPICS,
    ENROLMENT_EVENTS,
    ENROLMENT_INBOUND,
    ENROLMENT_REJECTED,
    MATCHING_MATCHES,
    dead_letter_topic,
)
from tests.reliability.broker import Broker
from tests.reliability.config import token, unique
from tests.reliability.kafka_io import (
    REPORTING_CONSUMES,
    Outgoing,
    Publisher,
    caught_up,
    decode_events,
    read_topics,
)
from tests.reliability.processes import ServiceProcess, wait_until
from tests.reliability.reporting_oracle import (
    Comparison,
    actual_aggregates,
    compare,
    expected_aggregates,
    mongo,
    reporting_counts,
)

SERVICES = ("enrolment", "matching", "reporting")
CONSUMES: dict[str, tuple[str, ...]] = {
    "enrolment": (ENROLMENT_INBOUND,),
    "matching": (ENROLMENT_EVENTS,),
    "reporting": REPORTING_CONSUMES,
}
# Greater Manchester and the West Midlands: two combined authorities, so the optimiser
# runs per authority.
BOROUGHS = {
    "E47000001": ["E08000001", "E08000004", "E08000010"],  # Bolton, Oldham, Wigan
    "E47000007": ["E08000025", "E08000026"],  # Birmingham, Coventry
}
ALL_DLQS = tuple(dead_letter_topic(t) for t in CONTRACT_TOPICS)


# API keys of the providers registered by any pipeline in this process, by UKPRN:
# Submission.record() signs with them (shared.record_signing).
SIGNING_KEYS: dict[str, str] = {}


@dataclass(frozen=True)
class Submission:
    ukprn: str
    doc: dict[str, Any]

    @property
    def opts_in(self) -> bool:
        return bool(self.doc["wants_conversation_partner"])

    def record(self, ce_id: str | None = None) -> Outgoing:
        """The record a provider produces: signed with its API key when the pipeline
        registered it (unsigned records are refused as unauthenticated)."""
        headers: tuple[tuple[str, bytes], ...] = ()
        if ce_id:
            headers = (("ce_id", ce_id.encode()),)
        key, value = self.ukprn.encode(), json.dumps(self.doc).encode()
        api_key = SIGNING_KEYS.get(self.ukprn)
        if api_key is not None:
            headers += tuple(sign_record(api_key, ENROLMENT_INBOUND, key, value))
        return Outgoing(ENROLMENT_INBOUND, key, value, headers)


def submission(ukprn: str, rng: random.Random, *, opt_in_share: float = 0.3) -> Submission:
    ca = rng.choice(list(BOROUGHS))
    start = date(2025, 9, 1) + timedelta(days=rng.randint(0, 120))
    opts_in = rng.random() < opt_in_share
    doc: dict[str, Any] = {
        "submission_ref": f"rel-{token(12, rng=rng)}",
        "learner_ref": "R" + token(11, rng=rng),
        "date_of_birth": f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-{rng.randint(10, 28)}",
        "sex": rng.choice(["F", "M"]),
        "ethnicity": rng.choice(
            ["asian_pakistani", "black_african", "white_british", "other_arab"]
        ),
        "country_of_birth": rng.choice(["PK", "SO", "GB", "SY"]),
        "first_language": rng.choice(["ur", "so", "en", "ar"]),
        "combined_authority": ca,
        "local_authority": rng.choice(BOROUGHS[ca]),
        "learning_aim_ref": "Z" + token(7, rng=rng),
        "programme": "esol",
        "level": rng.choice(["entry_1", "entry_2", "entry_3"]),
        "start_date": start.isoformat(),
        "planned_end_date": (start + timedelta(days=300)).isoformat(),
        "planned_hours": 150,
        "fund_model": 35,
        "consent": {"matching": True, "research": False},
        "wants_conversation_partner": opts_in,
    }
    if opts_in:
        doc["availability"] = ["mon-am", "sat-pm"]
        doc["interests"] = ["cooking"]
    return Submission(ukprn, doc)


@dataclass
class ServiceFigures:
    """What one service was asked to do and what it did, in counts."""

    expected: int = 0
    delivered: int = 0  # distinct items found (exactly once: == expected)
    lost: int = 0
    duplicated: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.notes.items()))
        return (
            f"expected={self.expected} delivered={self.delivered} lost={self.lost} "
            f"duplicated={self.duplicated} {extra}"
        ).strip()


@dataclass
class Verdict:
    figures: dict[str, ServiceFigures]
    comparison: Comparison
    dead_letters: int
    rejected: int

    @property
    def exact(self) -> bool:
        return (
            all(f.lost == 0 and f.duplicated == 0 for f in self.figures.values())
            and self.comparison.exact
            and self.dead_letters == 0
            and self.rejected == 0
        )

    def summary(self) -> str:
        lines = [f"  {name}: {fig}" for name, fig in self.figures.items()]
        lines.append(
            f"  reports vs oracle: cells={self.comparison.cells} "
            f"missing={self.comparison.missing} extra={self.comparison.extra}"
        )
        lines.append(f"  dead letters={self.dead_letters} rejected={self.rejected}")
        return "\n".join(lines)


class Pipeline:
    def __init__(
        self,
        broker: Broker,
        db_url: str,
        log_dir: Path,
        *,
        services: Sequence[str] = SERVICES,
        extra_env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.broker = broker
        self.db_url = db_url
        self.tag = unique("rel").replace("-", "")
        self.services: dict[str, ServiceProcess] = {
            name: ServiceProcess(
                name,
                broker.bootstrap,
                db_url,
                database=f"cg_{name}_{self.tag}",
                group=f"{name}-{self.tag}",
                log_dir=log_dir,
                extra_env=(extra_env or {}).get(name, {}),
            )
            for name in services
        }
        self.providers = [f"1{random.randint(0, 9_999_999):07d}" for _ in range(4)]
        self.coordinator_key = new_api_key()
        self.provider_keys: dict[str, str] = {}
        self.submissions: list[Submission] = []
        self.volunteers = 0

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def database(self, name: str) -> str:
        return self.services[name].database

    async def prepare(self) -> None:
        """Providers (enrolment) and a coordinator key (matching), before any start."""
        async with mongo(self.db_url) as client:
            if "enrolment" in self.services:
                admin = ProviderAdmin(client[self.database("enrolment")])
                await admin.ensure_indexes()
                for i, ukprn in enumerate(self.providers):
                    self.provider_keys[ukprn] = await admin.register_provider(
                        f"Reliability college {i}", ukprn, list(BOROUGHS)
                    )
                    SIGNING_KEYS[ukprn] = self.provider_keys[ukprn]
            if "matching" in self.services:
                keys = ApiKeyStore(client[self.database("matching")]["api_keys"])
                await keys.ensure_indexes()
                await keys.add_key(
                    Principal(
                        principal_id="reliability-coordinator",
                        name="Reliability coordinator",
                        role=Role.COORDINATOR,
                        combined_authorities=tuple(CombinedAuthority),
                    ),
                    self.coordinator_key,
                )

    async def start(self, names: Iterable[str] | None = None) -> None:
        chosen = [self.services[n] for n in (names or self.services)]
        for svc in chosen:
            svc.start()
        await asyncio.gather(*(svc.wait_ready() for svc in chosen))

    async def wait_ready(self) -> None:
        await asyncio.gather(*(s.wait_ready() for s in self.services.values() if s.running))

    def stop(self) -> None:
        for svc in self.services.values():
            svc.stop()

    def publisher(self) -> Publisher:
        return Publisher(self.broker.bootstrap)

    def mongo(self) -> contextlib.AbstractAsyncContextManager[AsyncMongoClient[Any]]:
        return mongo(self.db_url)

    async def register_volunteers(self, per_borough: int, capacity: int) -> None:
        svc = self.services["matching"]
        headers = {"Authorization": f"Bearer {self.coordinator_key}"}
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
            for boroughs in BOROUGHS.values():
                for la in boroughs:
                    for _ in range(per_borough):
                        response = await client.post(
                            "/v1/volunteers",
                            headers=headers,
                            json={
                                "local_authority": la,
                                "capacity": capacity,
                                "dbs_expires_on": (date.today() + timedelta(days=400)).isoformat(),
                                "availability": ["mon-am"],
                                "languages": ["en"],
                                "interests": ["cooking"],
                            },
                        )
                        assert response.status_code == 201, response.text
                        self.volunteers += 1

    def new_submissions(self, n: int, rng: random.Random) -> list[Submission]:
        made = [submission(rng.choice(self.providers), rng) for _ in range(n)]
        self.submissions.extend(made)
        return made

    async def drained(self) -> bool:
        """Every consumer group has committed everything in its topics and both outboxes
        are empty."""
        for name, svc in self.services.items():
            if not await caught_up(self.broker.bootstrap, svc.group, CONSUMES[name]):
                return False
        async with mongo(self.db_url) as client:
            for name in ("enrolment", "matching"):
                if name not in self.services:
                    continue
                outbox = client[self.database(name)]["outbox"]
                if await outbox.count_documents(_PENDING[name]) > 0:
                    return False
        return True

    async def wait_drained(self, timeout_s: float) -> None:
        # Twice in a row: matching may propose (and publish) after the others caught up.
        async def settled() -> bool:
            if not await self.drained():
                return False
            await asyncio.sleep(1.0)
            return await self.drained()

        await wait_until(
            settled,
            timeout_s=timeout_s,
            what="the pipeline to drain",
            interval_s=1.0,
            alive=[s for s in self.services.values() if s.running],
        )

    async def verify(self) -> Verdict:
        records = await read_topics(
            self.broker.bootstrap,
            [ENROLMENT_EVENTS, MATCHING_MATCHES, ENROLMENT_REJECTED, *ALL_DLQS],
        )
        events = decode_events(r for r in records if r.topic in REPORTING_CONSUMES)
        figures: dict[str, ServiceFigures] = {}
        async with mongo(self.db_url) as client:
            if "enrolment" in self.services:
                figures["enrolment"] = await self._enrolment_figures(client, events)
            if "matching" in self.services:
                figures["matching"] = await self._matching_figures(client, events)
            comparison = Comparison(0, 0, 0)
            if "reporting" in self.services:
                db = client[self.database("reporting")]
                comparison = compare(
                    expected_aggregates(ce for _, ce in events), await actual_aggregates(db)
                )
                counts = await reporting_counts(db)
                accepted = {
                    ce.data.enrolment_id
                    for _, ce in events
                    if isinstance(ce.data, EnrolmentAccepted)
                }
                expected = len(self.submissions) or len(accepted)
                started = counts.get("outcomes.started", 0)
                figures["reporting"] = ServiceFigures(
                    expected=expected,
                    delivered=counts["enrolments"],
                    lost=max(0, expected - started),
                    duplicated=max(0, started - expected),
                    notes={
                        "report_started": started,
                        "report_matches_proposed": counts.get("matching.proposed", 0),
                        "applied_events": counts["applied_events"],
                        "distinct_events": len({ce.id for _, ce in events}),
                    },
                )
                if "matching" in self.services:
                    proposed = counts.get("matching.proposed", 0)
                    matches = figures["matching"].notes["matches"]
                    figures["reporting"].notes["match_lost"] = max(0, matches - proposed)
                    figures["reporting"].notes["match_duplicated"] = max(0, proposed - matches)
                    figures["reporting"].lost += max(0, matches - proposed)
                    figures["reporting"].duplicated += max(0, proposed - matches)
        return Verdict(
            figures=figures,
            comparison=comparison,
            dead_letters=sum(1 for r in records if r.topic.endswith(".dlq")),
            rejected=sum(1 for r in records if r.topic == ENROLMENT_REJECTED),
        )

    async def _enrolment_figures(
        self, client: Any, events: list[tuple[Any, CloudEvent[Event]]]
    ) -> ServiceFigures:
        db = client[self.database("enrolment")]
        stored = await db["enrolments"].count_documents({})
        ce_ids: dict[str, set[str]] = defaultdict(set)
        opt_ins: dict[str, set[str]] = defaultdict(set)
        records = Counter[str]()
        for _, ce in events:
            if isinstance(ce.data, EnrolmentAccepted):
                ce_ids[ce.data.enrolment_id].add(ce.id)
                records["accepted_records"] += 1
            elif isinstance(ce.data, ParticipantOptedIn):
                opt_ins[ce.data.enrolment_id].add(ce.id)
        expected = len(self.submissions)
        expected_opt_ins = sum(1 for s in self.submissions if s.opts_in)
        return ServiceFigures(
            expected=expected,
            delivered=len(ce_ids),
            lost=max(0, expected - stored)
            + max(0, expected - len(ce_ids))
            + max(0, expected_opt_ins - len(opt_ins)),
            duplicated=max(0, stored - expected)
            + sum(len(ids) - 1 for ids in ce_ids.values())
            + sum(len(ids) - 1 for ids in opt_ins.values())
            + max(0, len(opt_ins) - expected_opt_ins),
            notes={
                "stored": stored,
                "opt_ins": len(opt_ins),
                # The same ce_id published again (a relay crash between publish and mark):
                # at-least-once publishing, deduplicated downstream.
                "republished": records["accepted_records"] - len(ce_ids),
            },
        )

    async def _matching_figures(
        self, client: Any, events: list[tuple[Any, CloudEvent[Event]]]
    ) -> ServiceFigures:
        db = client[self.database("matching")]
        opt_in_ids = {ce.id for _, ce in events if isinstance(ce.data, ParticipantOptedIn)}
        learners = {ce.data.learner for _, ce in events if isinstance(ce.data, ParticipantOptedIn)}
        participants = await db["participants"].count_documents({})
        inbox = await db["inbox"].count_documents({})
        matches = [m async for m in db["matches"].find({}, {"participant": 1})]
        per_participant = Counter(m["participant"] for m in matches)
        proposed: dict[str, set[str]] = defaultdict(set)
        for _, ce in events:
            if isinstance(ce.data, MatchProposed):
                proposed[ce.data.match_id].add(ce.id)
        db_ids = {str(m["_id"]) for m in matches}
        topic_ids = set(proposed)
        return ServiceFigures(
            expected=len(learners),
            delivered=participants,
            lost=max(0, len(learners) - participants)
            + max(0, len(opt_in_ids) - inbox)
            + len(db_ids - topic_ids),
            duplicated=max(0, participants - len(learners))
            + sum(n - 1 for n in per_participant.values())
            + sum(len(ids) - 1 for ids in proposed.values())
            + len(topic_ids - db_ids),
            notes={
                "inbox": inbox,
                "matches": len(matches),
                "proposals_published": len(topic_ids),
                "unpublished_matches": len(db_ids - topic_ids),
            },
        )


_PENDING: dict[str, dict[str, Any]] = {
    "enrolment": {"pending": True},
    "matching": {"pending": True},
}
