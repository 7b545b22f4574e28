"""The thin I/O half of the simulator: sends a generated population to the real APIs.

* volunteers → ``POST /v1/volunteers`` (matching, coordinator key; each by its
  ``external_ref`` ``sim-<tag>-v<n>``, so a rerun updates them; matching issues the ids);
* enrolments → ``POST /v1/enrolments/batch`` (enrolment, provider key), or records on
  ``enrolment.inbound.v1`` (``--channel kafka``) whose enrolment ids are then looked up
  through the same idempotent batch endpoint (a resubmission answers ``duplicate`` with
  the id);
* progress → ``POST /v1/enrolments/{id}/progress``;
* coordinator decisions → ``GET /v1/matches?status=proposed`` + ``POST …/decision``
  for proposals that involve this run's volunteers, until ``linger`` seconds after the
  last submission.

Everything is paced by one rate limiter (operations per second; none = as fast as the
services answer). A 503 (backpressure) is retried after its Retry-After; other server
errors and connection failures a few times with backoff; a refused key stops the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from shared.cloudevents import CloudEvent
from shared.record_signing import sign_record
from shared.topics import ENROLMENT_INBOUND
from simulator.plan import Month, decision_for, schedule, total_operations
from simulator.population import PlannedEnrolment, Population
from simulator.progress import ProgressBar
from simulator.reference import load_reference

logger = logging.getLogger(__name__)

NaturalKey = tuple[str, str, str, Any]


class SimulatorError(RuntimeError):
    """The run cannot go on (a refused key, a service that stays down)."""


class RunOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enrolment_url: str
    matching_url: str
    provider_keys: tuple[SecretStr, ...] = Field(min_length=1)
    coordinator_key: SecretStr | None = None
    rate: float | None = Field(default=None, gt=0, description="Operations per second.")
    batch_size: int = Field(default=500, ge=1, le=1000)
    concurrency: int = Field(default=8, ge=1, le=256)
    channel: Literal["http", "kafka"] = "http"
    kafka_bootstrap_servers: str | None = None
    provider_ukprn: str = "10000000"
    linger_s: float = Field(default=30.0, ge=0)
    decision_poll_s: float = Field(default=2.0, gt=0)
    progress_bar: bool = False
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _kafka_needs_servers(self) -> RunOptions:
        if self.channel == "kafka" and not self.kafka_bootstrap_servers:
            raise ValueError(
                "--channel kafka needs --kafka-bootstrap-servers "
                "(or COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS)"
            )
        return self

    @property
    def effective_batch_size(self) -> int:
        """At a gentle rate, batches of about one second's worth."""
        if self.rate is None:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.rate)))


class RateLimiter:
    """Paces operations to ``rate`` per second on average (None: no pacing)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, n: int = 1) -> None:
        if self.rate is None:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
        if start > now:
            await asyncio.sleep(start - now)


@dataclass
class RunReport:
    counts: Counter[str] = field(default_factory=Counter)
    enrolment_ids: dict[NaturalKey, str] = field(default_factory=dict)
    volunteer_ids: dict[str, str] = field(default_factory=dict)
    """external_ref (``sim-<tag>-v<n>``) → the id matching issued."""
    seconds: float = 0.0

    @property
    def problems(self) -> int:
        bad = ("rejected", "conflict", "failed", "not_found", "refused")
        return sum(v for k, v in self.counts.items() if k.split(".")[-1] in bad)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "counts": dict(sorted(self.counts.items())),
            "problems": self.problems,
        }


class Simulation:
    def __init__(
        self,
        population: Population,
        options: RunOptions,
        http: httpx.AsyncClient,
        *,
        stream: TextIO,
        decisions_policy: Mapping[str, Any],
    ) -> None:
        self.population = population
        self.decisions_policy = decisions_policy
        self.options = options
        self.http = http
        self.months: list[Month] = schedule(population)
        self.limiter = RateLimiter(options.rate)
        self.report = RunReport()
        self.bar = ProgressBar(
            total_operations(self.months, population), stream, enabled=options.progress_bar
        )
        self.decided: set[str] = set()
        self._producer: Any = None

    # ------------------------------------------------------------------ plumbing

    def _provider_key(self, enrolment: PlannedEnrolment) -> str:
        keys = self.options.provider_keys
        return keys[enrolment.provider.key_index % len(keys)].get_secret_value()

    async def _request(
        self,
        method: str,
        url: str,
        key: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        what: str,
    ) -> httpx.Response:
        delay = 0.5
        for attempt in range(8):
            try:
                response = await self.http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {key}"},
                )
            except httpx.TransportError as exc:
                if attempt == 7:
                    raise SimulatorError(f"{what}: {url} unreachable ({exc!r})") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if response.status_code in (401, 403):
                raise SimulatorError(
                    f"{what}: the service refused the key ({response.status_code}): "
                    f"{_detail(response)}"
                )
            if response.status_code == 503:
                retry_after = response.headers.get("retry-after", "")
                wait = float(retry_after) if retry_after.isdigit() else delay
                self.report.counts["backpressure"] += 1
                await asyncio.sleep(min(wait, 10.0))
                continue
            if response.status_code >= 500:
                if attempt == 7:
                    raise SimulatorError(
                        f"{what}: {response.status_code} from {url}: {_detail(response)}"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if response.status_code == 409 and _is_concurrent_change(response) and attempt < 7:
                # Another writer (e.g. an optimiser run) changed the same record: the
                # service asks to reload and retry, which a repeat of the request does.
                self.report.counts["concurrent_change_retries"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            return response
        raise SimulatorError(f"{what}: gave up after repeated 503s or conflicts from {url}")

    # ---------------------------------------------------------------- volunteers

    async def register_volunteers(self) -> None:
        key = self.options.coordinator_key
        if not self.population.volunteers:
            return
        if key is None:
            logger.warning(
                "no coordinator key: %d volunteers not registered", len(self.population.volunteers)
            )
            self.bar.advance(len(self.population.volunteers))
            return
        semaphore = asyncio.Semaphore(self.options.concurrency)
        url = f"{self.options.matching_url}/v1/volunteers"

        async def one(body: Mapping[str, Any]) -> None:
            async with semaphore:
                await self.limiter.acquire()
                response = await self._request(
                    "POST", url, key.get_secret_value(), json=body, what="register a volunteer"
                )
            outcome = {201: "created", 200: "updated"}.get(response.status_code, "failed")
            if outcome != "failed":
                self.report.volunteer_ids[str(body["external_ref"])] = response.json()[
                    "volunteer_id"
                ]
            if outcome == "failed":
                logger.warning(
                    "volunteer refused (%d): %s", response.status_code, _detail(response)
                )
                self.bar.problem()
            self.report.counts[f"volunteers.{outcome}"] += 1
            self.bar.advance()

        await asyncio.gather(*(one(v.body) for v in self.population.volunteers))

    # ---------------------------------------------------------------- enrolments

    def _items(self, enrolments: Sequence[PlannedEnrolment]) -> list[dict[str, Any]]:
        return [e.submission.model_dump(mode="json", exclude_none=True) for e in enrolments]

    async def submit_batch(self, enrolments: Sequence[PlannedEnrolment], *, count: bool) -> None:
        """One batch request per provider key; records each enrolment's id."""
        by_key: dict[str, list[PlannedEnrolment]] = {}
        for e in enrolments:
            by_key.setdefault(self._provider_key(e), []).append(e)
        for key, group in by_key.items():
            if count:
                await self.limiter.acquire(len(group))
            response = await self._request(
                "POST",
                f"{self.options.enrolment_url}/v1/enrolments/batch",
                key,
                json={"items": self._items(group)},
                what="submit enrolments",
            )
            if response.status_code != 200:
                raise SimulatorError(
                    f"submit enrolments: {response.status_code}: {_detail(response)}"
                )
            for result in response.json()["results"]:
                e = group[result["index"]]
                outcome = result["result"]
                prefix = "enrolments" if count else "enrolments.resolved"
                self.report.counts[f"{prefix}.{outcome}"] += 1
                if result.get("enrolment_id") and outcome in ("created", "duplicate"):
                    self.report.enrolment_ids[e.natural_key] = result["enrolment_id"]
                else:
                    logger.warning(
                        "enrolment %s: %s (%s)",
                        e.submission.learner_ref,
                        outcome,
                        result.get("reason"),
                    )
                    self.bar.problem()
            if count:
                self.bar.advance(len(group))

    async def publish_batch(self, enrolments: Sequence[PlannedEnrolment]) -> None:
        """Send submissions to enrolment.inbound.v1 (key: provider UKPRN), each signed with
        the provider's API key (the first key: the one of --provider-ukprn)."""
        await self.limiter.acquire(len(enrolments))
        key = self.options.provider_ukprn.encode()
        api_key = self.options.provider_keys[0].get_secret_value()
        for e in enrolments:
            ce = CloudEvent(
                data=e.submission,
                source="/commonground/simulator",
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, e.natural_key)))),
            )
            body = ce.body()
            await self._producer.send(
                ENROLMENT_INBOUND,
                body,
                key=key,
                headers=[
                    *((k, v.encode()) for k, v in ce.headers().items()),
                    *sign_record(api_key, ENROLMENT_INBOUND, key, body),
                ],
            )
        await self._producer.flush()
        self.report.counts["enrolments.published"] += len(enrolments)
        self.bar.advance(len(enrolments))

    # ------------------------------------------------------------------ progress

    async def run_chain(
        self, enrolment: PlannedEnrolment, steps: Sequence[Any], semaphore: asyncio.Semaphore
    ) -> None:
        enrolment_id = self.report.enrolment_ids.get(enrolment.natural_key)
        async with semaphore:
            for step in steps:
                if enrolment_id is None:
                    self.report.counts[f"progress.{step.kind}.not_found"] += 1
                    self.bar.problem()
                    self.bar.advance()
                    continue
                await self.limiter.acquire()
                response = await self._request(
                    "POST",
                    f"{self.options.enrolment_url}/v1/enrolments/{enrolment_id}/progress",
                    self._provider_key(enrolment),
                    json=dict(step.body),
                    what="record progress",
                )
                outcome = {
                    202: "applied",
                    200: "duplicate",
                    404: "not_found",
                    409: "conflict",
                    422: "rejected",
                }.get(response.status_code, "failed")
                if outcome not in ("applied", "duplicate"):
                    logger.warning(
                        "progress %s on %s: %d %s",
                        step.kind,
                        enrolment_id,
                        response.status_code,
                        _detail(response),
                    )
                    self.bar.problem()
                self.report.counts[f"progress.{step.kind}.{outcome}"] += 1
                self.bar.advance()

    # ----------------------------------------------------------------- decisions

    async def decide_pending(self) -> int:
        """Decide every open proposal that involves this run's volunteers."""
        key = self.options.coordinator_key
        if key is None:
            return 0
        # Ours: the ids matching issued for this run's volunteers (registered, or
        # found again by their external_ref on a rerun).
        ours = set(self.report.volunteer_ids.values())
        decided = 0
        offset = 0
        pending: list[dict[str, Any]] = []
        while True:
            response = await self._request(
                "GET",
                f"{self.options.matching_url}/v1/matches",
                key.get_secret_value(),
                params={"status": "proposed", "limit": 500, "offset": offset},
                what="list proposals",
            )
            if response.status_code != 200:
                raise SimulatorError(f"list proposals: {response.status_code}: {_detail(response)}")
            items = response.json()["items"]
            pending += [
                m
                for m in items
                if str(m["volunteer_id"]) in ours and m["match_id"] not in self.decided
            ]
            if len(items) < 500:
                break
            offset += 500
        for match in pending:
            body = decision_for(self.population.config.seed, match, self.decisions_policy)
            await self.limiter.acquire()
            response = await self._request(
                "POST",
                f"{self.options.matching_url}/v1/matches/{match['match_id']}/decision",
                key.get_secret_value(),
                json=body,
                what="decide a proposal",
            )
            self.decided.add(match["match_id"])
            outcome = body["decision"] if response.status_code == 200 else f"{response.status_code}"
            self.report.counts[f"decisions.{outcome}"] += 1
            decided += 1
            self.bar.decided()
        return decided

    async def decision_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.decide_pending()
            except SimulatorError as exc:
                logger.warning("decisions paused: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.options.decision_poll_s)
            except TimeoutError:
                pass

    # ----------------------------------------------------------------------- run

    async def run(self) -> RunReport:
        started = time.monotonic()
        stop = asyncio.Event()
        decisions: asyncio.Task[None] | None = None
        if self.options.coordinator_key is not None:
            decisions = asyncio.create_task(self.decision_loop(stop))
        if self.options.channel == "kafka":
            from aiokafka import AIOKafkaProducer

            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.options.kafka_bootstrap_servers,
                client_id="commonground-simulator",
                acks="all",
                enable_idempotence=False,
            )
            await self._producer.start()
        try:
            await self.register_volunteers()
            semaphore = asyncio.Semaphore(self.options.concurrency)
            size = self.options.effective_batch_size
            for month in self.months:
                for i in range(0, len(month.enrolments), size):
                    chunk = month.enrolments[i : i + size]
                    if self.options.channel == "kafka":
                        await self.publish_batch(chunk)
                    else:
                        await self.submit_batch(chunk, count=True)
                if self.options.channel == "kafka" and month.enrolments:
                    # Ids for the progress records: the batch endpoint is idempotent,
                    # so resubmitting answers "duplicate" (Kafka intake was first) or
                    # "created" (it was not yet): the same enrolment either way.
                    for i in range(0, len(month.enrolments), 1000):
                        await self.submit_batch(month.enrolments[i : i + 1000], count=False)
                await asyncio.gather(
                    *(self.run_chain(e, steps, semaphore) for e, steps in month.chains)
                )
            if decisions is not None and self.options.linger_s > 0:
                await asyncio.sleep(self.options.linger_s)
        finally:
            stop.set()
            if decisions is not None:
                await decisions
                try:
                    await self.decide_pending()
                except SimulatorError as exc:
                    logger.warning("last decisions skipped: %s", exc)
            if self._producer is not None:
                await self._producer.stop()
            self.bar.close()
            self.report.seconds = time.monotonic() - started
        return self.report


def _is_concurrent_change(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("type", "")).endswith("/concurrent-change")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or body)
        errors = body.get("errors") or []
        if errors:
            detail += " " + "; ".join(
                f"{e.get('pointer')}: {e.get('message')}" for e in errors[:5] if isinstance(e, dict)
            )
        return detail[:500]
    return str(body)[:200]


async def simulate(
    population: Population,
    options: RunOptions,
    *,
    stream: TextIO,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunReport:
    """Drive the services with ``population`` (``transport``: tests run apps in-process)."""
    policy: Mapping[str, Any] = load_reference().programmes["decisions"]
    async with httpx.AsyncClient(timeout=options.timeout_s, transport=transport) as http:
        sim = Simulation(population, options, http, stream=stream, decisions_policy=policy)
        return await sim.run()
