"""The differencing attacker (tests/security/differencing_attacker.py) against the pure
report functions for a seeded population: every report, every area (all, each
combined authority, each borough), every programme filter and every overlapping month
range. The legacy method gives small counts away; the cell-key method must give none.

Figures (queries, recovered cells, error per size band) go to
``artifacts/differencing_attack.json``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.reporting.domain.dimensions import ETHNIC_GROUP_LABELS, LEVEL_LABELS, BreakdownBy
from services.reporting.domain.disclosure import CellKeyMethod, DisclosureMethod, LegacyMethod
from services.reporting.use_cases import queries
from shared.auth import Principal, Role
from shared.contracts.reference import LOCAL_AUTHORITIES, CombinedAuthority, Programme
from tests.security.differencing_attacker import (
    Attack,
    CellKeyKnowledge,
    Knowledge,
    LegacyKnowledge,
    Query,
    Universe,
    error_bands,
    plan,
    run,
)
from tests.security.seeded_population import InMemoryReportReader, seeded_events

ANALYST = Principal(principal_id="attacker", name="Attacker", role=Role.ANALYST)
CAS = (CombinedAuthority.LIVERPOOL_CITY_REGION, CombinedAuthority.TEES_VALLEY)
MONTHS = [date(2025, m, 1) for m in (1, 2, 3, 4)]
ARTIFACT = Path(__file__).resolve().parents[3] / "artifacts" / "differencing_attack.json"


def universe() -> Universe:
    return Universe(
        las_of={ca.value: list(LOCAL_AUTHORITIES[ca]) for ca in CombinedAuthority},
        programmes=[p.value for p in Programme],
        levels=list(LEVEL_LABELS),
        ethnic_groups=list(ETHNIC_GROUP_LABELS),
        months=[f"{m.year:04d}-{m.month:02d}" for m in MONTHS],
    )


def attack_plan(u: Universe) -> list[Query]:
    areas: list[dict[str, str]] = [{}]
    for ca in CAS:
        areas.append({"combined_authority": ca.value})
        areas += [{"local_authority": la} for la in LOCAL_AUTHORITIES[ca]]
    return plan(u, areas=areas, programmes=[None, *u.programmes])


def fetcher(reader: InMemoryReportReader, method: DisclosureMethod) -> Any:
    async def fetch(q: Query, rounded: bool) -> dict[str, Any]:
        p = q.params
        request = queries.ReportRequest(
            combined_authority=CombinedAuthority(p["combined_authority"])
            if "combined_authority" in p
            else None,
            local_authority=p.get("local_authority"),
            programme=p.get("programme"),
            month_from=p["from"],
            month_to=p["to"],
        )
        filters, _ = queries.resolve(ANALYST, request)
        control = method if rounded else None
        if q.report == "summary":
            return await queries.summary(reader, filters, control=control)
        by: BreakdownBy = q.report.split(":")[1]
        return await queries.breakdown(reader, by, filters, control=control)

    return fetch


@pytest.fixture(scope="module")
def reader() -> InMemoryReportReader:
    return InMemoryReportReader(seeded_events(20260513, CAS, MONTHS, enrolments=2500))


async def attack_with(
    reader: InMemoryReportReader, method: DisclosureMethod, knowledge: Knowledge
) -> Attack:
    u = universe()
    attack = Attack(u, knowledge)
    return await run(attack, attack_plan(u), fetcher(reader, method))


def record(name: str, attack: Attack) -> dict[str, Any]:
    result = {
        "queries": attack.queries,
        "cells": len(attack.published),
        "equations": len(attack.equations),
        "rate_constraints": len(attack.rates),
        "recovered_below_threshold": len(attack.recovered()),
        "recovered_1_to_9": len(attack.recovered(10)),
        "recovered_withheld_cells": len(attack.recovered_hidden()),
        "examples": [
            {
                "measure": k[0],
                "las": sorted(k[1].las)[:3],
                "months": sorted(k[1].months),
                "value": v,
            }
            for k, v in attack.recovered(10)[:5]
        ],
        "error_bands": [b.__dict__ for b in error_bands(attack)],
    }
    ARTIFACT.parent.mkdir(exist_ok=True)
    existing = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    existing[name] = result
    ARTIFACT.write_text(json.dumps(existing, indent=2, default=str))
    return result


async def test_the_attacker_recovers_small_counts_from_the_legacy_method(
    reader: InMemoryReportReader,
) -> None:
    attack = await attack_with(reader, LegacyMethod(), LegacyKnowledge())
    assert attack.unsound() == []
    result = record("unit_legacy", attack)
    assert result["recovered_below_threshold"] > 0, result


async def test_the_attacker_recovers_nothing_from_cell_key_perturbation(
    reader: InMemoryReportReader,
) -> None:
    method = CellKeyMethod(secret=b"unit-test-deployment-secret")
    attack = await attack_with(reader, method, CellKeyKnowledge(method))
    assert attack.unsound() == []
    result = record("unit_cell_key", attack)
    assert result["recovered_1_to_9"] == 0, result
    assert result["recovered_withheld_cells"] == 0, result
