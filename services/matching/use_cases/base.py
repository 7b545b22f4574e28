"""What every use case shares: the service's collaborators, the refusals of the use-case
layer, and scope checks."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.matching.domain import BatchPolicy, DomainError, WeightsBook
from services.matching.domain.health import HealthPolicy
from services.matching.metrics import MatchingMetrics
from services.matching.repository import UnitOfWorkFactory
from shared.auth import ApiKeyStore, Principal
from shared.contracts.reference import CombinedAuthority
from shared.crypto import KeyRing
from shared.learner_keys import MongoLearnerKeys
from shared.retries import RetryPolicy


class NotFound(DomainError):
    pass


class OutOfScope(DomainError):
    pass


class VolunteerNotFound(NotFound):
    pass


def utc_now() -> datetime:
    """Now, at the millisecond precision MongoDB stores (so events equal stored state)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def require_scope(principal: Principal, authority: CombinedAuthority) -> None:
    if authority not in principal.combined_authorities:
        raise OutOfScope(f"your key is not for combined authority {authority.value}")


@dataclass
class UseCases:
    """The collaborators of matching's use cases (each group of use cases extends it)."""

    uow: UnitOfWorkFactory
    """A unit of work per call: its repositories, and its ``run`` (one transaction) for
    a use case's get, decide, save and publish."""
    weights: WeightsBook
    policy: BatchPolicy
    metrics: MatchingMetrics
    clock: Callable[[], datetime] = utc_now
    on_commit: Callable[[], None] = field(default=lambda: None)
    """Called after a transaction that queued events (wakes the outbox relay)."""
    health_policy: HealthPolicy = field(default_factory=HealthPolicy)
    keys: ApiKeyStore | None = None
    """Where volunteer keys are stored (the service's ``api_keys``)."""
    learner_keys: MongoLearnerKeys | None = None
    """Learners' data keys (crypto-shredding); with ``key_ring``, personal data in
    enrolment events is opened here, and erased learners stay erased."""
    key_ring: KeyRing | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    """Transient failures of one step of an enrolment event are retried with it."""
