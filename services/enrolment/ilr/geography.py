"""Postcode → local authority for ILR intake.

The ILR gives a learner's home ``Postcode`` and each aim's delivery location
(``DelLocPostCode``), not a local authority; the enrolment contract needs the ONS LAD
code. The lookup uses the small district table in :mod:`shared.contracts.postcodes`
(approximate: each district goes to the borough holding most of it; docs/ilr.md says
where that differs from the ONS postcode lookup). This function is the only seam to
replace with the NSPL.
"""

from __future__ import annotations

import re

from shared.contracts.ilr import TEMPORARY_POSTCODE
from shared.contracts.postcodes import DISTRICT_TO_LAD

_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$")


def district_of(postcode: str | None) -> str | None:
    """The outward code of a well-formed UK postcode (``"OL9 7AB"`` → ``"OL9"``)."""
    if not postcode:
        return None
    match = _POSTCODE.match(postcode.strip().upper())
    return match.group(1) if match else None


def local_authority_of(postcode: str | None) -> str | None:
    """The LAD code of the borough holding most of the postcode's district, or None
    (unknown district, malformed, or the ILR's temporary postcode ZZ99 9ZZ)."""
    if not postcode or postcode.strip().upper() == TEMPORARY_POSTCODE:
        return None
    district = district_of(postcode)
    return DISTRICT_TO_LAD.get(district) if district else None
