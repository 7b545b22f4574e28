"""The befriending scheme's rules, with no I/O: who may be paired (hard constraints),
how good a pair is (a weighted score that rewards difference), how the whole pool is
assigned at once (an optimal assignment, not first-come greedy), how each proposal is
explained, and how a match moves through its life.

Split by concern: :mod:`.errors`, :mod:`.weights` (scorer weights), :mod:`.profiles`
(what the scorer may read: consent is structural), :mod:`.volunteers`, :mod:`.pool`
(participants), :mod:`.constraints` (hard constraints), :mod:`.scoring`,
:mod:`.optimiser` (whole-pool assignment, batch policy), :mod:`.lifecycle` (a match's
transitions), :mod:`.events` (what is published); and, on top of those,
:mod:`.checkins`, :mod:`.health` (is a pair still meeting) and :mod:`.waiting` (why
someone waits). The names of the first ten are re-exported here.
"""

from services.matching.domain.constraints import (
    Violation,
    feasible,
    violations,
)
from services.matching.domain.errors import (
    DomainError,
    InvalidParticipant,
    InvalidTransition,
    VolunteerIneligible,
)
from services.matching.domain.events import (
    match_confirmed,
    match_declined,
    match_ended,
    match_proposed,
    volunteer_dbs_expired,
    volunteer_event,
)
from services.matching.domain.lifecycle import (
    ACTIVE_MATCH_STATUSES,
    FLAG_DBS_EXPIRED,
    SYSTEM,
    Match,
    MatchStatus,
    MatchTransition,
    Withdrawal,
    accept,
    decline,
    end,
    propose,
    withdraw,
)
from services.matching.domain.optimiser import (
    BatchPolicy,
    Proposal,
    greedy_assignment,
    optimal_assignment,
    total_objective,
    total_score,
)
from services.matching.domain.pool import (
    Participant,
    ParticipantStatus,
    background_fields,
    merge_opt_in,
    participant_from_opt_in,
)
from services.matching.domain.profiles import (
    SLOT_PATTERN,
    BackgroundFields,
    BridgingDimension,
    BridgingProfile,
    ParticipantView,
    VolunteerView,
    bridging_dimensions,
    bridging_profile,
    normalised,
)
from services.matching.domain.scoring import (
    ScoreBreakdown,
    explain,
    score,
    score_value,
    waiting_bonus,
)
from services.matching.domain.volunteers import (
    Volunteer,
    VolunteerDetails,
    needs_dbs_expiry_notice,
    register_or_update_volunteer,
)
from services.matching.domain.weights import (
    Weights,
    WeightsBook,
    WeightsError,
    weights_from_toml,
)

__all__ = [
    "ACTIVE_MATCH_STATUSES",
    "FLAG_DBS_EXPIRED",
    "SLOT_PATTERN",
    "SYSTEM",
    "BackgroundFields",
    "BatchPolicy",
    "BridgingDimension",
    "BridgingProfile",
    "DomainError",
    "InvalidParticipant",
    "InvalidTransition",
    "Match",
    "MatchStatus",
    "MatchTransition",
    "Participant",
    "ParticipantStatus",
    "ParticipantView",
    "Proposal",
    "ScoreBreakdown",
    "Violation",
    "Volunteer",
    "VolunteerDetails",
    "VolunteerIneligible",
    "VolunteerView",
    "Weights",
    "WeightsBook",
    "WeightsError",
    "Withdrawal",
    "accept",
    "background_fields",
    "bridging_dimensions",
    "bridging_profile",
    "decline",
    "end",
    "explain",
    "feasible",
    "greedy_assignment",
    "match_confirmed",
    "match_declined",
    "match_ended",
    "match_proposed",
    "merge_opt_in",
    "needs_dbs_expiry_notice",
    "normalised",
    "optimal_assignment",
    "participant_from_opt_in",
    "propose",
    "register_or_update_volunteer",
    "score",
    "score_value",
    "total_objective",
    "total_score",
    "violations",
    "volunteer_dbs_expired",
    "volunteer_event",
    "waiting_bonus",
    "weights_from_toml",
    "withdraw",
]
