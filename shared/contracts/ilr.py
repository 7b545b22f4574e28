"""ILR (Individualised Learner Record) reference data: the code lists of the file format
for the years the enrolment service accepts, and their mapping onto our vocabularies.

Data, not rules: the enrolment service's ILR intake (services/enrolment/ilr) and the
reporting service's QAR measures (services/reporting/domain/qar.py) both read these.

Sources, per list below:

* **ILR specification for 2025 to 2026** and **ILR specification for 2026 to 2027**
  (Department for Education, "Individualised Learner Record (ILR) specification",
  Appendix A code lists: CompStatus, Outcome, WithdrawReason, FundModel,
  LearnDelFAMType/Code, Ethnicity, Sex). The 2026/27 lists below are the 2025/26 lists
  carried forward: we know of no change to these fields between the two years. Check
  them against the published 2026/27 appendix when it is revised (each year is its own
  entry, so a change is one edit).
* Cross-checked against the national validation service's constants
  (SkillsFundingAgency/DC-ILR-2021-ValidationService, ``Rules/Constants``:
  ``ReasonForWithdrawal``, ``FundModels``, ``LearningDeliveryFAMCodeConstants``), which
  also fix the SOF codes of the mayoral combined authorities (110-115).
* FundModel 11 (tailored learning), 37 (skills bootcamps) and 38 (Adult Skills Fund,
  aims starting on or after 1 August 2024) are as the Common Ground design notes state
  for 2025/26 onwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from shared.contracts.reference import CombinedAuthority, Ethnicity


@dataclass(frozen=True)
class IlrYear:
    """One collection year of the ILR: its XML namespace and ``CollectionDetails/Year``."""

    code: str  # "2627"
    namespace: str  # "ESFA/ILR/2026-27"
    first_day: date  # 1 August
    last_day: date  # 31 July

    @property
    def label(self) -> str:
        return f"{self.first_day.year}/{str(self.last_day.year)[2:]}"


ILR_YEARS: Mapping[str, IlrYear] = MappingProxyType(
    {
        "2526": IlrYear("2526", "ESFA/ILR/2025-26", date(2025, 8, 1), date(2026, 7, 31)),
        "2627": IlrYear("2627", "ESFA/ILR/2026-27", date(2026, 8, 1), date(2027, 7, 31)),
    }
)
YEAR_BY_NAMESPACE: Mapping[str, IlrYear] = MappingProxyType(
    {y.namespace: y for y in ILR_YEARS.values()}
)


@dataclass(frozen=True)
class CodeList:
    """The valid codes of one ILR field in one collection year, with their meaning."""

    field: str
    year: str
    source: str
    codes: Mapping[int, str]

    def __contains__(self, code: object) -> bool:
        return code in self.codes


def _per_year(field: str, codes: Mapping[int, str], source: str) -> Mapping[str, CodeList]:
    frozen = MappingProxyType(dict(codes))
    return MappingProxyType(
        {
            "2526": CodeList(field, "2526", f"ILR specification 2025 to 2026: {source}", frozen),
            "2627": CodeList(
                field,
                "2627",
                f"ILR specification 2026 to 2027: {source} (unchanged from 2025 to 2026)",
                frozen,
            ),
        }
    )


COMP_STATUS = _per_year(
    "CompStatus",
    {
        1: "The learner is continuing or intending to continue the learning activities",
        2: "The learner has completed the learning activities",
        3: "The learner has withdrawn from the learning activities",
        6: "Learner has temporarily withdrawn from the aim due to an agreed break in learning",
    },
    "Appendix A, CompStatus",
)

OUTCOME = _per_year(
    "Outcome",
    {
        1: "Achieved",
        2: "Partial achievement",
        3: "No achievement",
        8: "Learning activities are complete but the outcome is not yet known",
    },
    "Appendix A, Outcome",
)

WITHDRAW_REASON = _per_year(
    "WithdrawReason",
    {
        2: "Learner has transferred to another provider",
        3: "Learner injury / illness",
        7: "Learner has transferred between providers due to intervention by or with the "
        "written agreement of the funding body",
        28: "OLASS learner withdrawn due to circumstances outside the provider's control",
        29: "Learner has been made redundant",
        40: "Learner has transferred to a new learning aim with the same provider",
        41: "Learner has transferred to another provider to undertake learning that meets "
        "a specific government strategy",
        42: "Academic failure/left in bad standing/not permitted to progress - HE only",
        43: "Financial reasons",
        44: "Other personal reasons",
        45: "Written off after lapse of time - HE only",
        46: "Exclusion",
        47: "Learner has transferred to another provider due to merger",
        48: "Industrial placement learner has withdrawn due to circumstances outside the "
        "provider's control",
        97: "Other",
        98: "Reason not known",
    },
    "Appendix A, WithdrawReason",
)

FUND_MODEL = _per_year(
    "FundModel",
    {
        10: "Community Learning",
        11: "Tailored learning",
        25: "16-19 (excluding Apprenticeships)",
        35: "Adult skills (aims starting before 1 August 2024)",
        36: "Apprenticeships (from 1 May 2017)",
        37: "Skills Bootcamps",
        38: "Adult Skills Fund (aims starting on or after 1 August 2024)",
        81: "Other Adult",
        82: "Other 16-19",
        99: "Non-funded (no funding from the funding body)",
    },
    "Appendix A, FundModel",
)

AIM_TYPE = _per_year(
    "AimType",
    {
        1: "Programme aim",
        3: "Component learning aim within a programme",
        4: "Learning aim that is not part of a programme",
        5: "Core aim (16-19 study programmes)",
    },
    "Appendix A, AimType",
)

# LearningDeliveryFAM types and codes this platform reads.
SOURCE_OF_FUNDING = _per_year(
    "LearnDelFAMType SOF",
    {
        1: "HEFCE / Office for Students",
        105: "Education and Skills Funding Agency - Adult",
        107: "Education and Skills Funding Agency - 16-19",
        108: "Local authority (Community Learning)",
        110: "Greater Manchester Combined Authority",
        111: "Liverpool City Region Combined Authority",
        112: "West Midlands Combined Authority",
        113: "West of England Combined Authority",
        114: "Tees Valley Combined Authority",
        115: "Cambridgeshire and Peterborough Combined Authority",
        116: "Greater London Authority",
        117: "North of Tyne Combined Authority",
        118: "West Yorkshire Combined Authority",
        119: "South Yorkshire Mayoral Combined Authority",
        120: "North East Combined Authority",
        998: "Other",
    },
    "Appendix A, LearningDeliveryFAM type SOF",
)
FULL_OR_CO_FUNDING = _per_year(
    "LearnDelFAMType FFI",
    {1: "Fully funded learning aim", 2: "Co-funded learning aim"},
    "Appendix A, LearningDeliveryFAM type FFI",
)
RESTART = _per_year(
    "LearnDelFAMType RES",
    {1: "Learning aim restarted (after a break in learning)"},
    "Appendix A, LearningDeliveryFAM type RES",
)
FAM_TYPES_USED: tuple[str, ...] = ("SOF", "FFI", "RES")

# SOF code → the combined authority that funds the aim (the six on this platform).
SOF_COMBINED_AUTHORITY: Mapping[int, CombinedAuthority] = MappingProxyType(
    {
        110: CombinedAuthority.GREATER_MANCHESTER,
        111: CombinedAuthority.LIVERPOOL_CITY_REGION,
        112: CombinedAuthority.WEST_MIDLANDS,
        113: CombinedAuthority.WEST_OF_ENGLAND,
        114: CombinedAuthority.TEES_VALLEY,
        115: CombinedAuthority.CAMBRIDGESHIRE_PETERBOROUGH,
    }
)
COMBINED_AUTHORITY_SOF: Mapping[CombinedAuthority, int] = MappingProxyType(
    {ca: code for code, ca in SOF_COMBINED_AUTHORITY.items()}
)

# ILR Ethnicity (2025/26, 2026/27: the 2011 census list the ILR uses) → ONS 2021
# categories. The ILR list has no Roma code: Roma learners are in 34 (any other White
# background), so ``white_roma`` never comes from an ILR file. 99 (not provided) → None.
ETHNICITY = _per_year(
    "Ethnicity",
    {
        31: "English / Welsh / Scottish / Northern Irish / British",
        32: "Irish",
        33: "Gypsy or Irish Traveller",
        34: "Any other White background",
        35: "White and Black Caribbean",
        36: "White and Black African",
        37: "White and Asian",
        38: "Any other Mixed / multiple ethnic background",
        39: "Indian",
        40: "Pakistani",
        41: "Bangladeshi",
        42: "Chinese",
        43: "Any other Asian background",
        44: "African",
        45: "Caribbean",
        46: "Any other Black / African / Caribbean background",
        47: "Arab",
        98: "Any other ethnic group",
        99: "Not provided",
    },
    "Appendix A, Ethnicity",
)
ETHNICITY_TO_ONS: Mapping[int, Ethnicity | None] = MappingProxyType(
    {
        31: Ethnicity.WHITE_BRITISH,
        32: Ethnicity.WHITE_IRISH,
        33: Ethnicity.WHITE_GYPSY_IRISH_TRAVELLER,
        34: Ethnicity.WHITE_OTHER,
        35: Ethnicity.MIXED_WHITE_BLACK_CARIBBEAN,
        36: Ethnicity.MIXED_WHITE_BLACK_AFRICAN,
        37: Ethnicity.MIXED_WHITE_ASIAN,
        38: Ethnicity.MIXED_OTHER,
        39: Ethnicity.ASIAN_INDIAN,
        40: Ethnicity.ASIAN_PAKISTANI,
        41: Ethnicity.ASIAN_BANGLADESHI,
        42: Ethnicity.ASIAN_CHINESE,
        43: Ethnicity.ASIAN_OTHER,
        44: Ethnicity.BLACK_AFRICAN,
        45: Ethnicity.BLACK_CARIBBEAN,
        46: Ethnicity.BLACK_OTHER,
        47: Ethnicity.OTHER_ARAB,
        98: Ethnicity.OTHER_ANY,
        99: None,
    }
)
ONS_TO_ETHNICITY: Mapping[Ethnicity, int] = MappingProxyType(
    {
        **{e: code for code, e in ETHNICITY_TO_ONS.items() if e is not None},
        Ethnicity.WHITE_ROMA: 34,
    }
)

SEX_CODES: tuple[str, ...] = ("F", "M")
TEMPORARY_POSTCODE = "ZZ99 9ZZ"
