"""The Indicators of Integration (Home Office framework, third edition, 2019) as the
platform computes them: the programme groups, every indicator with its definition, source
events and domain, and the framework domains no event can measure, listed as such."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.reporting.domain.integration_facts import ACTIVITY_WINDOW_DAYS
from shared.contracts.reference import Programme

FRAMEWORK = {
    "name": "Indicators of Integration framework",
    "publisher": "Home Office",
    "edition": "third edition, 2019",
}

ADULT_SKILLS = (
    Programme.FUNCTIONAL_MATHS.value,
    Programme.FUNCTIONAL_ENGLISH.value,
    Programme.VOCATIONAL.value,
    Programme.EMPLOYABILITY.value,
)
PROGRAMME_GROUPS: Mapping[str, tuple[str, ...]] = {
    "esol": (Programme.ESOL.value,),
    "adult_skills": ADULT_SKILLS,
    "digital": (Programme.DIGITAL.value,),
}

DOMAIN_LABELS: Mapping[str, str] = {
    "language_and_communication": "Language and communication",
    "education": "Education",
    "digital_skills": "Digital skills",
    "social_bridges": "Social bridges",
    "work": "Work",
}
OUTCOME_EVENTS = ("EnrolmentCompleted", "EnrolmentWithdrawn", "OutcomeRecorded")


@dataclass(frozen=True)
class Indicator:
    key: str
    domain: str
    name: str
    kind: Literal["count", "rate", "median_days"]
    definition: str
    source_events: tuple[str, ...]
    numerator: str | None = None
    denominator: str | None = None


INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "esol_starts",
        "language_and_communication",
        "ESOL enrolments started",
        "count",
        "ESOL enrolments whose learning started in the quarter (start cohort).",
        ("EnrolmentAccepted",),
        numerator="esol.started",
    ),
    Indicator(
        "esol_achievement_rate",
        "language_and_communication",
        "ESOL achievement rate",
        "rate",
        "Of the quarter's ESOL starts that have left (completed or withdrawn), the share who "
        "completed and achieved (ILR outcome 1): achieved / leavers.",
        ("EnrolmentAccepted", *OUTCOME_EVENTS),
        numerator="esol.achieved",
        denominator="esol.leavers",
    ),
    Indicator(
        "esol_progression_rate",
        "language_and_communication",
        "ESOL progression between levels",
        "rate",
        "Of the quarter's ESOL starts with a level recorded since (assessment, completion "
        "or later outcome), the share whose highest level is above their starting level "
        "(Pre-entry, Entry 1-3, Level 1-2).",
        ("EnrolmentAccepted", "AssessmentRecorded", "EnrolmentCompleted", "OutcomeRecorded"),
        numerator="esol.esol_progressed",
        denominator="esol.esol_assessed",
    ),
    Indicator(
        "esol_median_days_to_progress",
        "language_and_communication",
        "ESOL median time to progress",
        "median_days",
        "Median days from the start date to the first record of a level above the starting "
        "level, over the quarter's ESOL starts that progressed. Shown only beside a "
        "published count of progressed learners of at least the threshold.",
        ("EnrolmentAccepted", "AssessmentRecorded", "EnrolmentCompleted", "OutcomeRecorded"),
        numerator="esol.esol_progressed",
    ),
    Indicator(
        "adult_skills_starts",
        "education",
        "Adult-skills enrolments started",
        "count",
        "Functional maths, functional English, vocational and employability enrolments "
        "whose learning started in the quarter.",
        ("EnrolmentAccepted",),
        numerator="adult_skills.started",
    ),
    Indicator(
        "adult_skills_achievement_rate",
        "education",
        "Adult-skills achievement rate",
        "rate",
        "Achieved / leavers over the quarter's adult-skills starts (as for ESOL).",
        ("EnrolmentAccepted", *OUTCOME_EVENTS),
        numerator="adult_skills.achieved",
        denominator="adult_skills.leavers",
    ),
    Indicator(
        "digital_starts",
        "digital_skills",
        "Digital skills enrolments started",
        "count",
        "Digital skills programme enrolments whose learning started in the quarter.",
        ("EnrolmentAccepted",),
        numerator="digital.started",
    ),
    Indicator(
        "digital_achievement_rate",
        "digital_skills",
        "Digital skills achievement rate",
        "rate",
        "Achieved / leavers over the quarter's digital skills starts.",
        ("EnrolmentAccepted", *OUTCOME_EVENTS),
        numerator="digital.achieved",
        denominator="digital.leavers",
    ),
    Indicator(
        "bridges_confirmed",
        "social_bridges",
        "Cross-background befriending matches",
        "count",
        "Befriending matches confirmed in the quarter whose volunteer and participant differ "
        "on at least one bridging dimension shared with consent.",
        ("MatchConfirmed",),
        numerator="bridges.cross_confirmed",
    ),
    Indicator(
        "bridges_share",
        "social_bridges",
        "Share of matches that bridge backgrounds",
        "rate",
        "Cross-background matches / matches confirmed in the quarter.",
        ("MatchConfirmed",),
        numerator="bridges.cross_confirmed",
        denominator="bridges.confirmed",
    ),
    Indicator(
        "bridges_active_6w_share",
        "social_bridges",
        "Bridges still active at 6 weeks",
        "rate",
        "Of the quarter's cross-background matches, the share still active 42 days after "
        f"confirmation (not ended, a meeting in the {ACTIVITY_WINDOW_DAYS} days up to it). "
        "Not yet observable until every match of the quarter has reached 42 days.",
        ("MatchConfirmed", "MatchCheckInRecorded", "MatchEnded"),
        numerator="bridges.cross_active_6w",
        denominator="bridges.cross_confirmed",
    ),
    Indicator(
        "bridges_active_6m_share",
        "social_bridges",
        "Bridges still active at 6 months",
        "rate",
        "The same at 182 days after confirmation.",
        ("MatchConfirmed", "MatchCheckInRecorded", "MatchEnded"),
        numerator="bridges.cross_active_6m",
        denominator="bridges.cross_confirmed",
    ),
)

ILR_FIELDS_FOR_WORK = (
    "LearnerEmploymentStatus.EmpStat (employment status, e.g. 10 employed, 11 not employed "
    "and seeking work, 12 not employed and not seeking) with DateEmpStatApp",
    "EmploymentStatusMonitoring ESMType/ESMCode: SEI self-employed, EII hours employed, LOU "
    "length unemployed, BSI benefit status",
    "LearnerDestinationandProgression DPOutcome: OutType (EMP paid employment, EDU, "
    "VOL...), OutCode, OutStartDate, OutCollDate",
)

UNMEASURED_DOMAINS: tuple[dict[str, Any], ...] = (
    {
        "domain": "work",
        "label": "Work",
        "group": "markers and means",
        "status": "needs_data",
        "reason": "No event carries employment status or destinations. The ILR has them; "
        "intake would have to accept and publish these fields (as events, with the same "
        "pseudonymisation) for work indicators per borough and quarter.",
        "data_needed": list(ILR_FIELDS_FOR_WORK),
    },
    *(
        {
            "domain": key,
            "label": label,
            "group": group,
            "status": "not_measurable",
            "reason": reason,
            "data_needed": [],
        }
        for key, label, group, reason in (
            (
                "housing",
                "Housing",
                "markers and means",
                "No housing data is collected; the postcode stays in the enrolment service.",
            ),
            (
                "health_and_social_care",
                "Health and social care",
                "markers and means",
                "Only ILR withdrawal reasons mention health; that is not a health measure.",
            ),
            ("leisure", "Leisure", "markers and means", "No leisure activity is recorded."),
            (
                "social_bonds",
                "Social bonds",
                "social connections",
                "Connections within one's own community are not recorded.",
            ),
            (
                "social_links",
                "Social links",
                "social connections",
                "Links with institutions beyond these programmes are not recorded.",
            ),
            (
                "culture",
                "Culture",
                "facilitators",
                "No cultural knowledge or participation is recorded.",
            ),
            (
                "safety",
                "Safety",
                "facilitators",
                "No experience of safety or harassment is recorded.",
            ),
            (
                "stability",
                "Stability",
                "facilitators",
                "No residential or personal stability is recorded (year of arrival alone "
                "is not stability).",
            ),
            (
                "rights_and_responsibilities",
                "Rights and responsibilities",
                "foundation",
                "No data on rights, entitlements or citizenship.",
            ),
        )
    ),
)
