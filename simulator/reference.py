"""The reference tables in ``simulator/data`` and the per-borough joint distribution built
from them. Pure: reads packaged files, no network, no clock.

For each local authority the census gives separate *marginals* (ethnic group, religion,
share born outside the UK). People need all three at once and consistently (a Pakistani
Muslim born in Pakistan, not a White British Sikh born in Poland), so the joint
distribution over (ethnic group by religion by born abroad) is fitted by iterative
proportional fitting: it starts from the England-wide association between the three
(``england_ethnicity_detail.json``) and is scaled until its three marginals equal the
borough's tables. The result reproduces each borough's published shares exactly and
keeps the national pattern of who is what.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.contracts.reference import (
    LOCAL_AUTHORITIES,
    CombinedAuthority,
    Ethnicity,
    Religion,
)

DATA_PACKAGE = "simulator.data"

# Columns of ethnicity_by_la.csv: a single category, or a group split by the England
# within-group shares of england_ethnicity_detail.json.
ETHNICITY_COLUMNS: tuple[str, ...] = (
    "white_british",
    "white_other_groups",
    "asian_indian",
    "asian_pakistani",
    "asian_bangladeshi",
    "asian_chinese_and_other",
    "black",
    "mixed",
    "other",
)
ETHNICITIES: tuple[Ethnicity, ...] = tuple(Ethnicity)
RELIGIONS: tuple[Religion, ...] = (
    Religion.CHRISTIAN,
    Religion.NO_RELIGION,
    Religion.MUSLIM,
    Religion.HINDU,
    Religion.SIKH,
    Religion.JEWISH,
    Religion.BUDDHIST,
    Religion.OTHER,
    Religion.NOT_STATED,
)


class ReferenceDataError(ValueError):
    """A packaged table is missing a row or column, or does not add up."""


def _read_text(name: str) -> str:
    return resources.files(DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def _csv(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(_read_text(name).splitlines()))


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_read_text(name))
    return data


def normalised(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        raise ReferenceDataError("weights must add up to more than zero")
    return {k: v / total for k, v in weights.items()}


def ipf(
    seed: NDArray[np.float64],
    margins: Sequence[NDArray[np.float64]],
    *,
    tolerance: float = 1e-9,
    max_iterations: int = 500,
) -> NDArray[np.float64]:
    """Iterative proportional fitting: scale ``seed`` until its sum along every axis but
    ``i`` equals ``margins[i]`` (each margin sums to 1)."""
    table = seed / seed.sum()
    axes = range(table.ndim)
    for _ in range(max_iterations):
        worst = 0.0
        for axis, margin in enumerate(margins):
            other = tuple(a for a in axes if a != axis)
            current = table.sum(axis=other)
            worst = max(worst, float(np.abs(current - margin).max()))
            factor = np.divide(margin, current, out=np.zeros_like(margin), where=current > 0)
            shape = [1] * table.ndim
            shape[axis] = -1
            table = table * factor.reshape(shape)
        if worst < tolerance:
            break
    result: NDArray[np.float64] = table / table.sum()
    return result


@dataclass(frozen=True)
class BoroughProfile:
    """One local authority: its weight and the fitted joint of its residents."""

    code: str
    name: str
    combined_authority: CombinedAuthority
    population: int
    born_outside_uk: float
    ethnicity: Mapping[Ethnicity, float]
    religion: Mapping[Religion, float]
    joint: NDArray[np.float64]  # [ethnicity, religion, born abroad (0 = UK, 1 = abroad)]

    def ethnicity_margin(self, abroad: bool | None = None) -> dict[Ethnicity, float]:
        table = self.joint if abroad is None else self.joint[:, :, [int(abroad)]]
        margin = table.sum(axis=(1, 2))
        margin = margin / margin.sum()
        return {e: float(margin[i]) for i, e in enumerate(ETHNICITIES)}


@dataclass(frozen=True)
class CountryTables:
    by_ethnicity: Mapping[Ethnicity, Mapping[str, float]]
    languages: Mapping[str, Mapping[str, float]]
    english_speaking: frozenset[Ethnicity] = frozenset()


@dataclass(frozen=True)
class ReferenceData:
    boroughs: Mapping[str, BoroughProfile]
    countries: CountryTables
    programmes: Mapping[str, Any]

    def boroughs_of(self, authority: CombinedAuthority) -> list[BoroughProfile]:
        return [b for b in self.boroughs.values() if b.combined_authority is authority]


def _expand_ethnicity(row: Mapping[str, str], within: Mapping[str, Any]) -> dict[Ethnicity, float]:
    shares: dict[Ethnicity, float] = {}
    for column in ETHNICITY_COLUMNS:
        value = float(row[column])
        if column in within:
            split = normalised(within[column])
            for name, share in split.items():
                shares[Ethnicity(name)] = shares.get(Ethnicity(name), 0.0) + value * share
        else:
            shares[Ethnicity(column)] = shares.get(Ethnicity(column), 0.0) + value
    total = sum(shares.values())
    if abs(total - 100.0) > 0.5:
        raise ReferenceDataError(f"ethnicity shares of {row['la_code']} add up to {total:.1f}%")
    return {e: shares.get(e, 0.0) / total for e in ETHNICITIES}


def _religion(row: Mapping[str, str]) -> dict[Religion, float]:
    shares = {r: float(row[r.value]) for r in RELIGIONS}
    total = sum(shares.values())
    if abs(total - 100.0) > 0.5:
        raise ReferenceDataError(f"religion shares of {row['la_code']} add up to {total:.1f}%")
    return {r: v / total for r, v in shares.items()}


@cache
def load_reference() -> ReferenceData:
    """Every table, checked against the contract vocabularies, and each borough's joint."""
    detail = _json("england_ethnicity_detail.json")
    within = detail["within_group"]
    columns = [Religion(c) for c in detail["religion_columns"]]
    if columns != list(RELIGIONS):
        raise ReferenceDataError("religion_columns must list the religions in RELIGIONS order")
    rows = [np.array(detail["religion_by_ethnicity"][e.value], dtype=float) for e in ETHNICITIES]
    if any(r.shape != (len(RELIGIONS),) for r in rows):
        raise ReferenceDataError("religion_by_ethnicity rows need one share per religion")
    religion_seed = np.stack([r / r.sum() for r in rows])
    abroad_seed = np.array([detail["born_outside_uk_by_ethnicity"][e.value] for e in ETHNICITIES])
    seed = religion_seed[:, :, None] * np.stack([1 - abroad_seed, abroad_seed], axis=1)[:, None, :]
    seed = np.maximum(seed, 1e-9)  # every combination possible, however rare

    ethnicity_rows = {r["la_code"]: r for r in _csv("ethnicity_by_la.csv")}
    religion_rows = {r["la_code"]: r for r in _csv("religion_by_la.csv")}
    boroughs: dict[str, BoroughProfile] = {}
    for row in _csv("local_authorities.csv"):
        code = row["la_code"]
        authority = CombinedAuthority(row["combined_authority"])
        if code not in LOCAL_AUTHORITIES[authority]:
            raise ReferenceDataError(f"{code} is not a local authority of {authority.value}")
        if code not in ethnicity_rows or code not in religion_rows:
            raise ReferenceDataError(f"{code} is missing from the ethnicity or religion table")
        ethnicity = _expand_ethnicity(ethnicity_rows[code], within)
        religion = _religion(religion_rows[code])
        abroad = float(row["born_outside_uk_pct"]) / 100.0
        joint = ipf(
            seed,
            [
                np.array([ethnicity[e] for e in ETHNICITIES]),
                np.array([religion[r] for r in RELIGIONS]),
                np.array([1.0 - abroad, abroad]),
            ],
        )
        boroughs[code] = BoroughProfile(
            code=code,
            name=row["la_name"],
            combined_authority=authority,
            population=int(row["population_mid2022"]),
            born_outside_uk=abroad,
            ethnicity=ethnicity,
            religion=religion,
            joint=joint,
        )
    missing = {c for las in LOCAL_AUTHORITIES.values() for c in las} - set(boroughs)
    if missing:
        raise ReferenceDataError(f"local_authorities.csv lacks {sorted(missing)}")

    countries = _json("countries.json")
    by_ethnicity = {
        Ethnicity(e): normalised(shares) for e, shares in countries["by_ethnicity"].items()
    }
    languages = {c: normalised(shares) for c, shares in countries["languages"].items()}
    unknown = {c for shares in by_ethnicity.values() for c in shares} - set(languages)
    if unknown:
        raise ReferenceDataError(f"countries without a language: {sorted(unknown)}")
    if set(by_ethnicity) != set(ETHNICITIES):
        missing_groups = sorted(e.value for e in set(ETHNICITIES) - set(by_ethnicity))
        raise ReferenceDataError(f"countries.json lacks ethnic groups {missing_groups}")
    return ReferenceData(
        boroughs=boroughs,
        countries=CountryTables(
            by_ethnicity=by_ethnicity,
            languages=languages,
            english_speaking=frozenset(
                Ethnicity(e) for e in countries.get("english_speaking_ethnicities", ())
            ),
        ),
        programmes=_json("programmes.json"),
    )
