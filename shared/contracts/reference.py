"""Reference vocabularies used in contract fields (ILR codes, ONS 2021 categories, geography).

These are *data* shared by every service so that a code means the same everywhere;
rules that use them (e.g. "a local authority must belong to the stated combined
authority") live in the services' domain modules.
"""

from __future__ import annotations

from datetime import date
from enum import IntEnum, StrEnum


class Programme(StrEnum):
    ESOL = "esol"
    DIGITAL = "digital"
    EMPLOYABILITY = "employability"
    FUNCTIONAL_MATHS = "functional_maths"
    FUNCTIONAL_ENGLISH = "functional_english"
    VOCATIONAL = "vocational"

    @property
    def label(self) -> str:
        """The programme's name in reports and forms."""
        return PROGRAMME_LABELS[self]


# Beside the enum so that a new programme gets its name in the same edit (a unit test
# checks every member has one: reports would otherwise fail at runtime).
PROGRAMME_LABELS: dict[Programme, str] = {
    Programme.ESOL: "ESOL",
    Programme.DIGITAL: "Digital skills",
    Programme.EMPLOYABILITY: "Employability",
    Programme.FUNCTIONAL_MATHS: "Functional maths",
    Programme.FUNCTIONAL_ENGLISH: "Functional English",
    Programme.VOCATIONAL: "Vocational",
}


class Level(StrEnum):
    """Qualification levels. The first six are the ESOL levels, in order."""

    PRE_ENTRY = "pre_entry"
    ENTRY_1 = "entry_1"
    ENTRY_2 = "entry_2"
    ENTRY_3 = "entry_3"
    LEVEL_1 = "level_1"
    LEVEL_2 = "level_2"
    LEVEL_3 = "level_3"

    @property
    def label(self) -> str:
        """The level's name in reports and forms."""
        return LEVEL_LABELS[self]


# In display order (the enum's order); a unit test checks every member has a name.
LEVEL_LABELS: dict[Level, str] = {
    Level.PRE_ENTRY: "Pre-entry",
    Level.ENTRY_1: "Entry 1",
    Level.ENTRY_2: "Entry 2",
    Level.ENTRY_3: "Entry 3",
    Level.LEVEL_1: "Level 1",
    Level.LEVEL_2: "Level 2",
    Level.LEVEL_3: "Level 3",
}


ESOL_LEVELS: tuple[Level, ...] = (
    Level.PRE_ENTRY,
    Level.ENTRY_1,
    Level.ENTRY_2,
    Level.ENTRY_3,
    Level.LEVEL_1,
    Level.LEVEL_2,
)


class Sex(StrEnum):
    """ILR Sex field."""

    FEMALE = "F"
    MALE = "M"


class AgeBand(StrEnum):
    AGE_16_18 = "16-18"
    AGE_19_24 = "19-24"
    AGE_25_34 = "25-34"
    AGE_35_49 = "35-49"
    AGE_50_64 = "50-64"
    AGE_65_PLUS = "65+"


class Ethnicity(StrEnum):
    """ONS 2021 census ethnic group, 19 categories (England and Wales)."""

    ASIAN_BANGLADESHI = "asian_bangladeshi"
    ASIAN_CHINESE = "asian_chinese"
    ASIAN_INDIAN = "asian_indian"
    ASIAN_PAKISTANI = "asian_pakistani"
    ASIAN_OTHER = "asian_other"
    BLACK_AFRICAN = "black_african"
    BLACK_CARIBBEAN = "black_caribbean"
    BLACK_OTHER = "black_other"
    MIXED_WHITE_ASIAN = "mixed_white_asian"
    MIXED_WHITE_BLACK_AFRICAN = "mixed_white_black_african"
    MIXED_WHITE_BLACK_CARIBBEAN = "mixed_white_black_caribbean"
    MIXED_OTHER = "mixed_other"
    WHITE_BRITISH = "white_british"
    WHITE_IRISH = "white_irish"
    WHITE_GYPSY_IRISH_TRAVELLER = "white_gypsy_irish_traveller"
    WHITE_ROMA = "white_roma"
    WHITE_OTHER = "white_other"
    OTHER_ARAB = "other_arab"
    OTHER_ANY = "other_any"

    @property
    def group(self) -> str:
        """The ONS high-level group (asian, black, mixed, white, other)."""
        return self.value.split("_", 1)[0]


class Religion(StrEnum):
    """ONS 2021 census religion categories."""

    NO_RELIGION = "no_religion"
    CHRISTIAN = "christian"
    BUDDHIST = "buddhist"
    HINDU = "hindu"
    JEWISH = "jewish"
    MUSLIM = "muslim"
    SIKH = "sikh"
    OTHER = "other"
    NOT_STATED = "not_stated"


class FundModel(IntEnum):
    """ILR FundModel codes of the adult learning this platform takes (a subset of the ILR
    code list: :data:`shared.contracts.ilr.FUND_MODEL` has the whole list per year).

    Source: ILR specification 2025 to 2026 and 2026 to 2027, field FundModel. 38 (Adult
    Skills Fund) is for aims starting on or after 1 August 2024; 35 is the earlier adult
    skills model, kept for continuing learners; 11 is tailored learning."""

    ADULT_SKILLS = 35
    COMMUNITY_LEARNING = 10
    OTHER_ADULT = 81
    NON_FUNDED = 99
    ADULT_SKILLS_FUND = 38
    TAILORED_LEARNING = 11


# FundModel 38 applies to aims starting on or after this day (ILR 2024/25 onwards).
ADULT_SKILLS_FUND_FROM = date(2024, 8, 1)


class CompletionStatus(IntEnum):
    """ILR CompStatus."""

    CONTINUING = 1
    COMPLETED = 2
    WITHDRAWN = 3
    BREAK = 6


class Outcome(IntEnum):
    """ILR Outcome."""

    ACHIEVED = 1
    PARTIAL = 2
    NOT_ACHIEVED = 3
    NOT_YET_KNOWN = 8


class WithdrawalReason(IntEnum):
    """ILR WithdrawReason codes.

    Source: ILR specification 2025 to 2026 (Appendix: WithdrawReason), the same list
    carried into 2026 to 2027; cross-checked against the national validation service's
    ``ReasonForWithdrawal`` constants. The member names before issue 15 did not match the
    national meanings of several codes; they remain as aliases (same values) so that
    existing code keeps working, but the canonical names below are the national ones.
    """

    TRANSFERRED_TO_ANOTHER_PROVIDER = 2
    INJURY_OR_ILLNESS = 3
    TRANSFERRED_BY_INTERVENTION_OR_CONSENT = 7
    OLASS_OUTSIDE_PROVIDER_CONTROL = 28
    LEARNER_MADE_REDUNDANT = 29
    TRANSFERRED_NEW_LEARNING_AIM = 40
    TRANSFERRED_GOVERNMENT_STRATEGY = 41
    ACADEMIC_FAILURE = 42
    FINANCIAL_REASONS = 43
    OTHER_PERSONAL_REASONS = 44
    WRITTEN_OFF_HE = 45
    EXCLUSION = 46
    TRANSFERRED_DUE_TO_MERGER = 47
    INDUSTRIAL_PLACEMENT_WITHDREW = 48
    OTHER = 97
    NOT_KNOWN = 98
    # Former names, kept as aliases with their former values (their wording was not the
    # ILR's: e.g. FINANCIAL is code 7, a transfer; the ILR's financial reasons are 43).
    TRANSFERRED_SAME_PROVIDER = 2
    HEALTH = 3
    FINANCIAL = 7
    OTHER_PERSONAL = 28
    WRITTEN_OFF_AFTER_LEARNER_LEFT = 29
    INDUSTRIAL_PLACEMENT_LEFT = 41
    FINANCIAL_CRISIS_CARE = 43
    EXCLUDED = 44
    TRANSFERRED_NEW_PROVIDER = 45
    MADE_REDUNDANT = 46


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


class CombinedAuthority(StrEnum):
    GREATER_MANCHESTER = "E47000001"
    LIVERPOOL_CITY_REGION = "E47000004"
    TEES_VALLEY = "E47000006"
    WEST_MIDLANDS = "E47000007"
    CAMBRIDGESHIRE_PETERBOROUGH = "E47000008"
    WEST_OF_ENGLAND = "E47000009"


COMBINED_AUTHORITY_NAMES: dict[CombinedAuthority, str] = {
    CombinedAuthority.GREATER_MANCHESTER: "Greater Manchester",
    CombinedAuthority.LIVERPOOL_CITY_REGION: "Liverpool City Region",
    CombinedAuthority.TEES_VALLEY: "Tees Valley",
    CombinedAuthority.WEST_MIDLANDS: "West Midlands",
    CombinedAuthority.CAMBRIDGESHIRE_PETERBOROUGH: "Cambridgeshire & Peterborough",
    CombinedAuthority.WEST_OF_ENGLAND: "West of England",
}

# ONS LAD codes and names, per combined authority (2023 boundaries).
LOCAL_AUTHORITIES: dict[CombinedAuthority, dict[str, str]] = {
    CombinedAuthority.GREATER_MANCHESTER: {
        "E08000001": "Bolton",
        "E08000002": "Bury",
        "E08000003": "Manchester",
        "E08000004": "Oldham",
        "E08000005": "Rochdale",
        "E08000006": "Salford",
        "E08000007": "Stockport",
        "E08000008": "Tameside",
        "E08000009": "Trafford",
        "E08000010": "Wigan",
    },
    CombinedAuthority.LIVERPOOL_CITY_REGION: {
        "E08000011": "Knowsley",
        "E08000012": "Liverpool",
        "E08000013": "St. Helens",
        "E08000014": "Sefton",
        "E08000015": "Wirral",
        "E06000006": "Halton",
    },
    CombinedAuthority.TEES_VALLEY: {
        "E06000001": "Hartlepool",
        "E06000002": "Middlesbrough",
        "E06000003": "Redcar and Cleveland",
        "E06000004": "Stockton-on-Tees",
        "E06000005": "Darlington",
    },
    CombinedAuthority.WEST_MIDLANDS: {
        "E08000025": "Birmingham",
        "E08000026": "Coventry",
        "E08000027": "Dudley",
        "E08000028": "Sandwell",
        "E08000029": "Solihull",
        "E08000030": "Walsall",
        "E08000031": "Wolverhampton",
    },
    CombinedAuthority.CAMBRIDGESHIRE_PETERBOROUGH: {
        "E06000031": "Peterborough",
        "E07000008": "Cambridge",
        "E07000009": "East Cambridgeshire",
        "E07000010": "Fenland",
        "E07000011": "Huntingdonshire",
        "E07000012": "South Cambridgeshire",
    },
    CombinedAuthority.WEST_OF_ENGLAND: {
        "E06000022": "Bath and North East Somerset",
        "E06000023": "Bristol, City of",
        "E06000025": "South Gloucestershire",
    },
}

LOCAL_AUTHORITY_NAMES: dict[str, str] = {
    code: name for las in LOCAL_AUTHORITIES.values() for code, name in las.items()
}


def combined_authority_of(local_authority: str) -> CombinedAuthority | None:
    """The combined authority a local authority code belongs to, if any."""
    for ca, las in LOCAL_AUTHORITIES.items():
        if local_authority in las:
            return ca
    return None
