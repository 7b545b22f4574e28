"""Postcode district → local authority, for the boroughs of the six combined authorities.

A **small, approximate table** kept as reference data: each outward code (postcode
district, e.g. ``OL9``) is assigned to the one borough that holds most of it. Districts
that straddle a boundary (a few in every city region) therefore put some addresses in a
neighbouring borough of the same combined authority, and districts mostly outside the
six combined authorities are not listed. A production deployment should use the ONS
National Statistics Postcode Lookup (NSPL), which maps every full postcode.

Used by the enrolment service's ILR intake (home and delivery postcodes → LAD) and by
the ILR fixture generator (simulator/ilr.py) to draw postcodes in a borough.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType


def _districts(prefix: str, numbers: Iterable[int]) -> list[str]:
    return [f"{prefix}{n}" for n in numbers]


_BY_LAD: dict[str, list[str]] = {
    # Greater Manchester
    "E08000001": _districts("BL", range(1, 8)),  # Bolton
    "E08000002": ["BL0", "BL8", "BL9", "M25", "M26", "M45"],  # Bury
    "E08000003": [
        *_districts("M", (1, 2, 4, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20, 21, 22, 23)),
        "M40",
        "M90",
    ],  # Manchester
    "E08000004": ["OL1", "OL2", "OL3", "OL4", "OL8", "OL9", "M35"],  # Oldham
    "E08000005": ["OL10", "OL11", "OL12", "OL15", "OL16", "M24"],  # Rochdale
    "E08000006": _districts("M", (3, 5, 6, 7, 27, 28, 30, 38, 44, 50)),  # Salford
    "E08000007": _districts("SK", range(1, 9)),  # Stockport
    "E08000008": ["OL5", "OL6", "OL7", "SK14", "SK15", "SK16", "M34", "M43"],  # Tameside
    "E08000009": ["M16", "M17", "M31", "M32", "M33", "M41", "WA14", "WA15"],  # Trafford
    "E08000010": [*_districts("WN", range(1, 8)), "M29", "M46"],  # Wigan
    # Liverpool City Region
    "E08000011": ["L28", "L32", "L33", "L34", "L36"],  # Knowsley
    "E08000012": _districts("L", (*range(1, 20), 24, 25, 26, 27)),  # Liverpool
    "E08000013": ["WA9", "WA10", "WA11", "WA12", "L35"],  # St Helens
    "E08000014": [*_districts("L", (20, 21, 22, 23, 29, 30, 31, 37, 38)), "PR8", "PR9"],
    "E08000015": _districts("CH", (*range(41, 50), *range(60, 64))),  # Wirral
    "E06000006": ["WA7", "WA8"],  # Halton
    # Tees Valley
    "E06000001": ["TS24", "TS25", "TS26", "TS27"],  # Hartlepool
    "E06000002": ["TS1", "TS3", "TS4", "TS5", "TS7"],  # Middlesbrough
    "E06000003": ["TS6", "TS10", "TS11", "TS12", "TS13", "TS14"],  # Redcar and Cleveland
    "E06000004": _districts("TS", (2, 8, 15, 16, 17, 18, 19, 20, 21, 22, 23)),  # Stockton
    "E06000005": ["DL1", "DL2", "DL3"],  # Darlington
    # West Midlands
    "E08000025": _districts("B", (*range(1, 22), *range(23, 36), 38, 42, 44, 45))
    + _districts("B", range(72, 77)),  # Birmingham
    "E08000026": _districts("CV", range(1, 7)),  # Coventry
    "E08000027": ["DY1", "DY2", "DY3", "DY5", "DY6", "DY8", "DY9", "B62", "B63"],  # Dudley
    "E08000028": [*_districts("B", range(64, 72)), "DY4", "WS10"],  # Sandwell
    "E08000029": ["B36", "B37", "B40", "B90", "B91", "B92", "B93", "B94", "CV7"],  # Solihull
    "E08000030": ["WS1", "WS2", "WS3", "WS4", "WS5", "WS8", "WS9", "B43"],  # Walsall
    "E08000031": _districts("WV", (1, 2, 3, 4, 6, 10, 11, 14)),  # Wolverhampton
    # Cambridgeshire & Peterborough
    "E06000031": ["PE1", "PE2", "PE3", "PE4", "PE6", "PE7"],  # Peterborough
    "E07000008": ["CB1", "CB2", "CB3", "CB4", "CB5"],  # Cambridge
    "E07000009": ["CB6", "CB7", "CB25"],  # East Cambridgeshire
    "E07000010": ["PE13", "PE14", "PE15", "PE16"],  # Fenland
    "E07000011": ["PE19", "PE26", "PE27", "PE28", "PE29"],  # Huntingdonshire
    "E07000012": ["CB21", "CB22", "CB23", "CB24", "SG8"],  # South Cambridgeshire
    # West of England
    "E06000022": ["BA1", "BA2", "BS31", "BS39"],  # Bath and North East Somerset
    "E06000023": _districts("BS", (*range(1, 12), 13, 14)),  # Bristol
    "E06000025": _districts("BS", (15, 16, 30, 32, 34, 35, 36, 37)),  # South Gloucestershire
}

DISTRICT_TO_LAD: Mapping[str, str] = MappingProxyType(
    {district: lad for lad, districts in _BY_LAD.items() for district in districts}
)
LAD_DISTRICTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {lad: tuple(d) for lad, d in _BY_LAD.items()}
)
