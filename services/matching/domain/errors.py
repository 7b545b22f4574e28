"""What the scheme's rules refuse: one exception per kind of refusal."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.matching.domain.lifecycle import MatchStatus


class DomainError(Exception):
    """A rule of the scheme refused an operation; the message says which."""


class InvalidParticipant(DomainError):
    """An opt-in that can never be processed as it is (e.g. unknown local authority)."""


class InvalidTransition(DomainError):
    def __init__(self, match_id: str, status: MatchStatus, wanted: str) -> None:
        super().__init__(f"match {match_id} is {status.value}; it cannot be {wanted}")
        self.status = status


class VolunteerIneligible(DomainError):
    pass
