"""The ILR fixture generator (simulator/ilr.py): seeded, streaming, consistent months,
and files the enrolment service's reader and rules take without an issue."""

from __future__ import annotations

import io
from datetime import date, timedelta

from services.enrolment.domain import Provider
from services.enrolment.ilr.mapping import MappingContext, plan_learner
from services.enrolment.ilr.parser import IlrHeader, RawLearner, read_ilr
from shared.contracts.reference import CombinedAuthority
from simulator.ilr import IlrFileSpec, collection_days, ilr_bytes, main, story

UKPRN = "10012345"
TODAY = date(2026, 12, 5)
YEAR, FIRST, SECOND = collection_days(TODAY)


def test_the_same_seed_gives_the_same_file_and_stories_do_not_depend_on_the_day() -> None:
    a, _ = ilr_bytes(IlrFileSpec(UKPRN, 200, SECOND, seed=7))
    b, _ = ilr_bytes(IlrFileSpec(UKPRN, 200, SECOND, seed=7))
    c, _ = ilr_bytes(IlrFileSpec(UKPRN, 200, SECOND, seed=8))
    assert a == b != c
    assert story(IlrFileSpec(UKPRN, 9, FIRST), 5) == story(IlrFileSpec(UKPRN, 9, SECOND), 5)


def test_a_later_month_holds_at_least_what_an_earlier_one_did() -> None:
    _, first = ilr_bytes(IlrFileSpec(UKPRN, 500, FIRST))
    _, second = ilr_bytes(IlrFileSpec(UKPRN, 500, SECOND))
    keys_1 = {(e.learn_ref, e.aim_ref, e.start) for e in first.enrolments}
    keys_2 = {(e.learn_ref, e.aim_ref, e.start) for e in second.enrolments}
    assert keys_1 <= keys_2  # cumulative: nothing of the year disappears
    assert len(keys_2) > len(keys_1)
    statuses = {e.status for e in second.enrolments}
    assert {"continuing", "completed", "withdrawn"} <= statuses


def test_every_generated_learner_passes_the_service_rules() -> None:
    data, truth = ilr_bytes(IlrFileSpec(UKPRN, 600, SECOND, seed=3))
    provider = Provider(
        f"provider:{UKPRN}", UKPRN, frozenset({CombinedAuthority.GREATER_MANCHESTER})
    )
    items = list(read_ilr(io.BytesIO(data)))
    assert isinstance(items[0], IlrHeader) and items[0].year == YEAR
    ctx = MappingContext(YEAR, provider, TODAY)
    plans = [plan_learner(r, ctx) for r in items[1:] if isinstance(r, RawLearner)]
    assert [i for p in plans for i in p.issues] == []
    assert sum(len(p.targets) for p in plans) == len(truth.enrolments)
    assert sum(p.out_of_scope for p in plans) == truth.out_of_scope_aims
    assert max(e.ended_on or SECOND for e in truth.enrolments) <= SECOND < TODAY + timedelta(1)


def test_the_cli_writes_a_file(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "ilr.xml"
    assert (
        main(
            ["--learners", "50", "--ukprn", UKPRN, "--as-of", SECOND.isoformat(), "--out", str(out)]
        )
        == 0
    )
    assert out.read_bytes().startswith(b'<?xml version="1.0" encoding="utf-8"?>')
