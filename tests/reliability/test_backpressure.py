"""HTTP intake while the broker is unreachable: 503 with Retry-After (nothing stored),
never an acceptance that could not be passed on; whatever was accepted is published
once the broker is back."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest

from shared.contracts.enrolment import EnrolmentAccepted
from shared.topics import ENROLMENT_EVENTS
from tests.reliability.broker import start_proxied_broker
from tests.reliability.config import SEED, log
from tests.reliability.database import Database
from tests.reliability.kafka_io import decode_events, read_topics
from tests.reliability.pipeline import Pipeline
from tests.reliability.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


async def test_intake_refuses_while_the_broker_is_unreachable_and_drops_nothing(
    database: Database, logs: Path
) -> None:
    rng = random.Random(SEED + 40)
    broker, proxy = await start_proxied_broker(logs)
    p = Pipeline(broker, database.url, logs, services=("enrolment",))
    await p.prepare()
    await p.start()
    svc = p["enrolment"]

    async def outbox_empty() -> bool:
        async with p.mongo() as client:
            db = client[p.database("enrolment")]
            return await db["outbox"].count_documents({"pending": True}) == 0

    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=15) as client:

            async def submit() -> httpx.Response:
                sub = p.new_submissions(1, rng)[0]
                key = p.provider_keys[sub.ukprn]
                return await client.post(
                    "/v1/enrolments", json=sub.doc, headers={"Authorization": f"Bearer {key}"}
                )

            before: set[str] = set()
            for _ in range(5):
                response = await submit()
                assert response.status_code == 201
                before.add(response.json()["enrolment_id"])
            await wait_until(outbox_empty, timeout_s=30, what="the first events published")

            await proxy.cut()  # the broker is unreachable (it keeps what it has)
            stopped = time.monotonic()
            accepted_in_outage: list[str] = []
            refused: httpx.Response | None = None
            while refused is None and time.monotonic() - stopped < 30:
                response = await submit()
                if response.status_code == 201:
                    accepted_in_outage.append(response.json()["enrolment_id"])
                else:
                    refused = response
                    p.submissions.pop()  # refused: not expected anywhere
                await asyncio.sleep(0.2)
            assert refused is not None, "intake never refused while the broker was down"
            log(
                "broker down: %d accepted before the first 503 (%.1fs after the stop)",
                len(accepted_in_outage),
                time.monotonic() - stopped,
            )
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert int(refused.headers["retry-after"]) > 0
            assert refused.json()["type"].endswith("broker-unavailable")
            assert (await client.get("/readyz")).status_code == 503
            for _ in range(3):  # refusing, not accepting, while it stays down
                response = await submit()
                assert response.status_code == 503
                p.submissions.pop()
            async with p.mongo() as mongo_client:
                stored = await mongo_client[p.database("enrolment")]["enrolments"].count_documents(
                    {}
                )
            assert stored == len(p.submissions), "a refused submission was stored"

            await proxy.restore()
            log("broker reachable again after %.1fs", time.monotonic() - stopped)

            async def accepting() -> bool:
                response = await submit()
                if response.status_code == 201:
                    accepted_in_outage.append(response.json()["enrolment_id"])
                    return True
                p.submissions.pop()
                return False

            await wait_until(accepting, timeout_s=60, what="intake to accept again", interval_s=1)
            await wait_until(outbox_empty, timeout_s=60, what="the outbox to drain")
        events = decode_events(await read_topics(broker.bootstrap, [ENROLMENT_EVENTS]))
        published = {
            ce.data.enrolment_id for _, ce in events if isinstance(ce.data, EnrolmentAccepted)
        }
        accepted = set(accepted_in_outage) | before
        missing = accepted - published
        log(
            "accepted: %d before the outage, %d after it began; published: %d; missing: %d",
            len(before),
            len(accepted_in_outage),
            len(published & accepted),
            len(missing),
        )
        assert len(published) == len(accepted), "an enrolment published that was not accepted"
        assert not missing, f"accepted but never published: {sorted(missing)[:5]}"
    finally:
        p.stop()
        await proxy.cut()
        await asyncio.to_thread(broker.kafka.stop)
