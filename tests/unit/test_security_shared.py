"""Crypto-shredding primitives, the consumer key batch, and the failed-auth limiter."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import FailedAuthLimiter, FailedAuthLimitMiddleware
from shared.contracts.enrolment import (
    Background,
    Consent,
    EnrolmentAccepted,
    LearnerErased,
    LearnerKeyIssued,
    ParticipantOptedIn,
    SealedPersonalData,
)
from shared.contracts.reference import (
    AgeBand,
    CombinedAuthority,
    Ethnicity,
    FundModel,
    Programme,
    Religion,
)
from shared.crypto import (
    CryptoError,
    KeyRing,
    new_data_key,
    open_box,
    open_personal,
    seal,
    seal_personal,
)
from shared.learner_keys import KeyBatch, StoredKey
from shared.problems import Problem, install_problem_handlers

RING = KeyRing.parse("k1:first-secret-of-enough-length,k0:older-secret-of-enough-length", "t")
NOW = datetime(2025, 10, 1, tzinfo=UTC)
LEARNER = "lp_" + "a" * 32
OTHER = "lp_" + "b" * 32


def test_sealed_box_opens_only_with_its_key_and_learner() -> None:
    key = new_data_key()
    box = seal(key, "dk_1", LEARNER, b'{"country_of_birth":"TV"}')
    assert '"TV"' not in box.model_dump_json()
    assert open_box(key, LEARNER, box) == b'{"country_of_birth":"TV"}'
    with pytest.raises(CryptoError):
        open_box(new_data_key(), LEARNER, box)  # another key
    with pytest.raises(CryptoError):
        open_box(key, OTHER, box)  # moved to another learner
    tampered = box.model_copy(update={"ciphertext": box.ciphertext[:-2] + "AA"})
    with pytest.raises(CryptoError):
        open_box(key, LEARNER, tampered)


def test_key_ring_wraps_with_the_first_key_and_unwraps_with_any_held() -> None:
    dek = new_data_key()
    wrapped = RING.wrap(LEARNER, "dk_1", dek)
    assert wrapped.wrapping_key_id == "k1"
    assert RING.unwrap(LEARNER, "dk_1", wrapped) == dek
    older = KeyRing.parse("k0:older-secret-of-enough-length", "t")
    rotated = KeyRing.parse(
        "k2:a-new-secret-of-enough-length,k0:older-secret-of-enough-length", "t"
    )
    old_wrapped = older.wrap(LEARNER, "dk_1", dek)
    assert rotated.unwrap(LEARNER, "dk_1", old_wrapped) == dek  # overlap during rotation
    retired = KeyRing.parse("k2:a-new-secret-of-enough-length", "t")
    with pytest.raises(CryptoError, match=r"longer.*held"):
        retired.unwrap(LEARNER, "dk_1", old_wrapped)  # the old wrapping key is gone
    with pytest.raises(CryptoError):
        RING.unwrap(OTHER, "dk_1", wrapped)
    with pytest.raises(ValueError):
        KeyRing.parse("nokey", "t")
    with pytest.raises(ValueError):
        KeyRing.parse("k:short", "t")


def _accepted(box_key: bytes | None = None) -> EnrolmentAccepted:
    event = EnrolmentAccepted(
        enrolment_id="enr_1",
        learner=LEARNER,
        provider_ukprn="10000001",
        combined_authority=CombinedAuthority.GREATER_MANCHESTER,
        local_authority="E08000001",
        programme=Programme.EMPLOYABILITY,
        learning_aim_ref="ZESOL001",
        start_date=date(2025, 9, 1),
        planned_end_date=date(2026, 6, 1),
        planned_hours=100,
        fund_model=FundModel.ADULT_SKILLS,
        age_band=AgeBand.AGE_25_34,
        accepted_at=NOW,
    )
    if box_key is None:
        return event
    data = SealedPersonalData(
        background=Background(ethnicity=Ethnicity.OTHER_ARAB, religion=Religion.MUSLIM)
    )
    return event.model_copy(update={"sealed": seal_personal(box_key, "dk_1", LEARNER, data)})


def test_key_batch_opens_in_log_order_and_forgets_erased_learners() -> None:
    dek = new_data_key()
    issued = LearnerKeyIssued(
        learner=LEARNER, key_id="dk_1", wrapped=RING.wrap(LEARNER, "dk_1", dek), issued_at=NOW
    )
    batch = KeyBatch(RING, keys={}, erased=set())
    sealed = _accepted(dek)
    assert batch.reveal(sealed).background.ethnicity is None  # key not seen yet
    batch.note(issued)
    assert batch.reveal(sealed).background.ethnicity is Ethnicity.OTHER_ARAB
    batch.note(LearnerErased(learner=LEARNER, erased_at=NOW))
    anonymous = batch.reveal(sealed)
    assert anonymous.sealed is None and anonymous.background == Background()
    batch.note(issued)  # a replayed key never comes back
    assert LEARNER not in batch.keys and batch.new_erasures == [LEARNER]
    assert batch.new_keys == {}


def test_opted_in_reveals_background_only_with_matching_consent() -> None:
    dek = new_data_key()
    stored = StoredKey("dk_1", RING.wrap(LEARNER, "dk_1", dek))
    data = SealedPersonalData(
        background=Background(country_of_birth="TV"), languages=("tvl",), interests=("chess",)
    )
    base = ParticipantOptedIn(
        enrolment_id="enr_1",
        learner=LEARNER,
        provider_ukprn="10000001",
        combined_authority=CombinedAuthority.GREATER_MANCHESTER,
        local_authority="E08000001",
        programme=Programme.ESOL,
        age_band=AgeBand.AGE_25_34,
        opted_in_at=NOW,
        sealed=seal_personal(dek, "dk_1", LEARNER, data),
    )
    batch = KeyBatch(RING, keys={LEARNER: stored}, erased=set())
    without = batch.reveal(base)
    assert without.background is None and without.languages == ("tvl",)
    with_consent = batch.reveal(base.model_copy(update={"consent": Consent(matching=True)}))
    assert with_consent.background is not None
    assert with_consent.background.country_of_birth == "TV"
    assert open_personal(dek, LEARNER, base.sealed).interests == ("chess",)  # type: ignore[arg-type]


def test_limiter_blocks_after_the_limit_until_the_window_ends_with_bounded_memory() -> None:
    now = [0.0]
    limiter = FailedAuthLimiter(3, 60.0, max_clients=100, clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") is None  # per address
    now[0] = 45.0
    assert limiter.retry_after("10.0.0.1") == 15
    now[0] = 61.0
    assert limiter.retry_after("10.0.0.1") is None
    for i in range(1000):
        limiter.failed(f"192.0.2.{i}")
    assert len(limiter) <= 100


async def test_middleware_answers_429_problem_with_retry_after_and_spares_ops() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/v1/thing")
    async def thing(ok: bool = False) -> dict[str, bool]:
        if not ok:
            raise Problem(401, "Unauthorized", "no key")
        return {"ok": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(FailedAuthLimitMiddleware, limiter=FailedAuthLimiter(2, 60.0))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/v1/thing")).status_code == 401
        assert (await client.get("/v1/thing")).status_code == 401
        blocked = await client.get("/v1/thing", params={"ok": True})
        assert blocked.status_code == 429
        assert blocked.headers["content-type"] == "application/problem+json"
        assert 0 < int(blocked.headers["retry-after"]) <= 60
        assert blocked.json()["type"].endswith("too-many-failed-authentications")
        assert (await client.get("/healthz")).status_code == 200
