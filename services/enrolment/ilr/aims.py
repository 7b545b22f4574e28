"""Which ILR learning aims are Common Ground programmes, and at what level.

The ILR names an aim only by its LARS reference (``LearnAimRef``); the programme (ESOL,
digital, ...) and level the enrolment contract needs are LARS attributes that the file
does not carry. This catalogue supplies them:

* the **Common Ground aim codes** ``Z<PROG><LV><x>`` (8 characters, the shape of LARS
  class codes for non-regulated provision; e.g. ``ZESOLE1A`` = ESOL Entry 1), which the
  simulator and the JSON examples use: ``PROG`` is ESOL, DIGI, EMPL, FSMA, FSEN or
  VOCA, ``LV`` is PE, E1, E2, E3, L1, L2, L3 or 00 (no level);
* and any LARS references a deployment lists in a CSV file
  (``ENROLMENT_ILR_AIM_CATALOGUE``: columns ``learn_aim_ref,programme,level`` with
  ``level`` empty for none), for its providers' regulated qualifications.

An aim that is in neither is not a Common Ground programme (an apprenticeship, an A
level): it is left out of the import and counted as out of scope, not refused.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from shared.contracts.reference import Level, Programme

PROGRAMME_CODES: Mapping[Programme, str] = MappingProxyType(
    {
        Programme.ESOL: "ESOL",
        Programme.DIGITAL: "DIGI",
        Programme.EMPLOYABILITY: "EMPL",
        Programme.FUNCTIONAL_MATHS: "FSMA",
        Programme.FUNCTIONAL_ENGLISH: "FSEN",
        Programme.VOCATIONAL: "VOCA",
    }
)
LEVEL_CODES: Mapping[Level | None, str] = MappingProxyType(
    {
        None: "00",
        Level.PRE_ENTRY: "PE",
        Level.ENTRY_1: "E1",
        Level.ENTRY_2: "E2",
        Level.ENTRY_3: "E3",
        Level.LEVEL_1: "L1",
        Level.LEVEL_2: "L2",
        Level.LEVEL_3: "L3",
    }
)
_PROGRAMMES = {code: p for p, code in PROGRAMME_CODES.items()}
_LEVELS = {code: lv for lv, code in LEVEL_CODES.items()}


@dataclass(frozen=True)
class AimInfo:
    programme: Programme
    level: Level | None


def aim_code(programme: Programme, level: Level | None, variant: str = "A") -> str:
    """The Common Ground aim code of a programme and level (``ZESOLE1A``)."""
    return f"Z{PROGRAMME_CODES[programme]}{LEVEL_CODES[level]}{variant}"


@dataclass(frozen=True)
class AimCatalogue:
    extra: Mapping[str, AimInfo] = field(default_factory=dict)

    def lookup(self, learn_aim_ref: str) -> AimInfo | None:
        ref = learn_aim_ref.strip().upper()
        if ref in self.extra:
            return self.extra[ref]
        if len(ref) == 8 and ref[0] == "Z":
            programme, level = _PROGRAMMES.get(ref[1:5]), ref[5:7]
            if programme is not None and level in _LEVELS:
                return AimInfo(programme, _LEVELS[level])
        return None

    @classmethod
    def from_csv(cls, path: str | Path | None) -> AimCatalogue:
        """The built-in codes plus the deployment's CSV (``learn_aim_ref,programme,level``)."""
        if not path:
            return cls()
        extra: dict[str, AimInfo] = {}
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                level = (row.get("level") or "").strip()
                extra[row["learn_aim_ref"].strip().upper()] = AimInfo(
                    Programme(row["programme"].strip()), Level(level) if level else None
                )
        return cls(MappingProxyType(extra))
