"""Use cases of the integration reports (issue 16): the caller's scope is resolved like
every report (``queries.resolve``: coordinators within their combined authorities,
unrounded figures for analysts only, audit-logged), the sums come from the read models,
and the pure builders in ``domain/integration/`` apply disclosure control."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from services.reporting.domain.dimensions import FILTERED, Filters
from services.reporting.domain.disclosure import DisclosureMethod
from services.reporting.domain.integration.bridges import build_bridges
from services.reporting.domain.integration.esol_comparison import build_esol_comparison
from services.reporting.domain.integration.indicators import IndicatorInputs, build_indicators
from services.reporting.domain.integration.waiting import WaitingBy, build_waiting
from services.reporting.domain.projection import Counts
from services.reporting.integration_repository import IntegrationReader
from shared.contracts.reference import Programme


def _without_programme(filters: Filters) -> Filters:
    """The area and months only: the integration reports take no exact-code filter."""
    cleared: dict[str, Any] = dict.fromkeys(FILTERED)
    return replace(filters, **cleared)


async def bridges(
    reader: IntegrationReader, filters: Filters, *, today: date, control: DisclosureMethod | None
) -> dict[str, Any]:
    sums = await reader.sum_grouped("bridges", filters, ("local_authority", "month"))
    keyed = {(la, month): counts for (la, month), counts in sums.items()}
    return build_bridges(keyed, filters, today=today, control=control)


async def waiting(
    reader: IntegrationReader, by: WaitingBy, filters: Filters, *, control: DisclosureMethod | None
) -> dict[str, Any]:
    sums = await reader.sum_grouped("waiting_groups", filters, (by,))
    waits = await reader.first_waits(filters, by)
    return build_waiting(by, {k[0]: c for k, c in sums.items()}, waits, filters, control=control)


async def indicators(
    reader: IntegrationReader, filters: Filters, *, today: date, control: DisclosureMethod | None
) -> dict[str, Any]:
    scope = _without_programme(filters)
    outcomes = await reader.sum_grouped(
        "outcomes", scope, ("local_authority", "programme", "month")
    )
    bridge_sums = await reader.sum_grouped("bridges", scope, ("local_authority", "month"))
    inputs = IndicatorInputs(
        outcomes={(la, prog, m): c for (la, prog, m), c in outcomes.items()},
        bridges={(la, m): c for (la, m), c in bridge_sums.items()},
        progress_days=await reader.esol_progress_days(scope),
    )
    return build_indicators(inputs, filters, today=today, control=control)


async def esol_comparison(
    reader: IntegrationReader, filters: Filters, *, control: DisclosureMethod | None
) -> dict[str, Any]:
    esol = replace(_without_programme(filters), programme=Programme.ESOL.value)
    dims = ("local_authority", "level", "month")
    outcomes: dict[tuple[str, str, str], Counts] = {
        (la, lvl, m): c
        for (la, lvl, m), c in (await reader.sum_grouped("outcomes", esol, dims)).items()
    }
    bridged: dict[tuple[str, str, str], Counts] = {
        (la, lvl, m): c
        for (la, lvl, m), c in (await reader.sum_grouped("esol_bridged", esol, dims)).items()
    }
    return build_esol_comparison(outcomes, bridged, filters, control=control)
