"""How matching's state is kept in MongoDB documents (and read back). Background
fields are structural here too: never stored without consent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import TypeAdapter

from services.matching.domain import (
    BackgroundFields,
    Match,
    Participant,
    ParticipantStatus,
    Volunteer,
)
from services.matching.domain.checkins import CheckIn
from shared.contracts.reference import AgeBand, CombinedAuthority, Ethnicity, Religion, Sex

Doc = dict[str, Any]


def day(value: date) -> str:
    return value.isoformat()


def from_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def must_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def background_doc(bg: BackgroundFields | None) -> Doc | None:
    if bg is None:
        return None
    return {
        "ethnicity": bg.ethnicity.value if bg.ethnicity else None,
        "religion": bg.religion.value if bg.religion else None,
        "country_of_birth": bg.country_of_birth,
    }


def _background(doc: Doc | None) -> BackgroundFields | None:
    if not doc:
        return None
    return BackgroundFields(
        ethnicity=Ethnicity(doc["ethnicity"]) if doc.get("ethnicity") else None,
        religion=Religion(doc["religion"]) if doc.get("religion") else None,
        country_of_birth=doc.get("country_of_birth"),
    )


def _opt(enum: Any, value: Any) -> Any:
    return enum(value) if value is not None else None


def volunteer_fields(v: Volunteer) -> Doc:
    """The coordinator-owned fields (never ``active`` nor the DBS notice marker)."""
    return {
        "combined_authority": v.combined_authority.value,
        "local_authority": v.local_authority,
        "capacity": v.capacity,
        "dbs_expires_on": day(v.dbs_expires_on),
        "updated_at": v.updated_at,
        "languages": list(v.languages),
        "availability": list(v.availability),
        "interests": list(v.interests),
        "gender": v.gender.value if v.gender else None,
        "gender_preference": v.gender_preference.value if v.gender_preference else None,
        "age_band": v.age_band.value if v.age_band else None,
        "consent_matching": v.consent_matching,
        # Structural: never stored without consent.
        "background": background_doc(v.background) if v.consent_matching else None,
        "version": v.version,
        "external_ref": v.external_ref,
    }


def volunteer_from_doc(doc: Doc) -> Volunteer:
    consent = bool(doc.get("consent_matching"))
    return Volunteer(
        volunteer_id=doc["_id"],
        combined_authority=CombinedAuthority(doc["combined_authority"]),
        local_authority=doc["local_authority"],
        capacity=int(doc["capacity"]),
        dbs_expires_on=date.fromisoformat(doc["dbs_expires_on"]),
        registered_at=must_utc(doc["registered_at"]),
        updated_at=must_utc(doc["updated_at"]),
        languages=tuple(doc.get("languages", ())),
        availability=tuple(doc.get("availability", ())),
        interests=tuple(doc.get("interests", ())),
        gender=_opt(Sex, doc.get("gender")),
        gender_preference=_opt(Sex, doc.get("gender_preference")),
        age_band=_opt(AgeBand, doc.get("age_band")),
        consent_matching=consent,
        background=_background(doc.get("background")) if consent else None,
        active=int(doc.get("active", 0)),
        dbs_expiry_notified_for=from_day(doc.get("dbs_expiry_notified_for")),
        version=int(doc.get("version", 1)),
        external_ref=doc.get("external_ref"),
    )


def ref_key(authority: CombinedAuthority, external_ref: str) -> str:
    """``volunteer_refs._id``: a coordinator reference is unique per combined authority."""
    return f"{authority.value}:{external_ref}"


def participant_doc(p: Participant) -> Doc:
    return {
        "_id": p.participant,
        "enrolment_id": p.enrolment_id,
        "combined_authority": p.combined_authority.value,
        "local_authority": p.local_authority,
        "age_band": p.age_band.value if p.age_band else None,
        "waiting_since": p.waiting_since,
        "pool_entered_at": p.pool_entered_at,
        "opted_in_at": p.opted_in_at,
        "status": p.status.value,
        "sex": p.sex.value if p.sex else None,
        "gender_preference": p.gender_preference.value if p.gender_preference else None,
        "languages": list(p.languages),
        "availability": list(p.availability),
        "interests": list(p.interests),
        "consent_matching": p.consent_matching,
        # Structural: never stored without consent.
        "background": background_doc(p.background) if p.consent_matching else None,
        "declined_volunteers": list(p.declined_volunteers),
        "previous_volunteers": list(p.previous_volunteers),
    }


def participant_from_doc(doc: Doc) -> Participant:
    consent = bool(doc.get("consent_matching"))
    return Participant(
        participant=doc["_id"],
        enrolment_id=doc.get("enrolment_id"),
        combined_authority=CombinedAuthority(doc["combined_authority"]),
        local_authority=doc["local_authority"],
        age_band=_opt(AgeBand, doc.get("age_band")),
        waiting_since=must_utc(doc["waiting_since"]),
        pool_entered_at=must_utc(doc["pool_entered_at"]),
        opted_in_at=must_utc(doc["opted_in_at"]),
        status=ParticipantStatus(doc["status"]),
        sex=_opt(Sex, doc.get("sex")),
        gender_preference=_opt(Sex, doc.get("gender_preference")),
        languages=tuple(doc.get("languages", ())),
        availability=tuple(doc.get("availability", ())),
        interests=tuple(doc.get("interests", ())),
        consent_matching=consent,
        background=_background(doc.get("background")) if consent else None,
        declined_volunteers=tuple(doc.get("declined_volunteers", ())),
        previous_volunteers=tuple(doc.get("previous_volunteers", ())),
    )


_MATCH = TypeAdapter(Match)
"""A match's document is the match itself, field by field (``_id`` = its id)."""


def match_doc(m: Match) -> Doc:
    # Python mode: datetimes stay BSON dates; enums and tuples encode as strings and arrays.
    fields = _MATCH.dump_python(m)
    return {"_id": fields.pop("match_id"), **fields}


def match_from_doc(doc: Doc) -> Match:
    fields = {k: must_utc(v) if isinstance(v, datetime) else v for k, v in doc.items()}
    fields["match_id"] = fields.pop("_id")
    return _MATCH.validate_python(fields)


def check_in_doc(c: CheckIn) -> Doc:
    return {
        "_id": c.check_in_id,
        "match_id": c.match_id,
        "met_on": day(c.met_on),
        "recorded_by": c.recorded_by,
        "recorder": c.recorder,
        "recorded_at": c.recorded_at,
    }


def check_in_from_doc(doc: Doc) -> CheckIn:
    return CheckIn(
        check_in_id=doc["_id"],
        match_id=doc["match_id"],
        met_on=date.fromisoformat(doc["met_on"]),
        recorded_by=doc["recorded_by"],
        recorder=doc["recorder"],
        recorded_at=must_utc(doc["recorded_at"]),
    )
