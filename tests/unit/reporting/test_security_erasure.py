"""An erased learner stays counted but loses their ethnicity, and the live projection
agrees with a rebuild made after the erasure (which cannot open the sealed ethnicity)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from services.reporting.domain.projection import (
    NOT_STATED,
    AggregateKey,
    Counts,
    LoadedStates,
    is_consumed,
    keys_needed,
    project_batch,
)
from shared.cloudevents import Event
from shared.contracts.enrolment import LearnerErased
from shared.contracts.reference import Ethnicity
from tests.factories.reporting import accepted, completed, withdrawn

ERASED_AT = datetime(2025, 6, 1, tzinfo=UTC)


def run(batches: Sequence[Sequence[Event]]) -> dict[AggregateKey, Counts]:
    """Project batch after batch, carrying states and summing deltas (as the store does)."""
    loaded = LoadedStates()
    totals: dict[AggregateKey, Counts] = {}
    for batch in batches:
        keys = keys_needed(batch)
        assert keys.learners or keys.match_ids
        outcome = project_batch(loaded, list(batch))
        assert outcome.failed == []
        loaded.enrolments.update(outcome.enrolments)
        loaded.participants.update(outcome.participants)
        for key, counts in outcome.deltas.items():
            target = totals.setdefault(key, {})
            for name, value in counts.items():
                target[name] = target.get(name, 0) + value
    return {k: {n: v for n, v in c.items() if v} for k, c in totals.items() if any(c.values())}


def test_erasure_keeps_the_count_and_drops_the_ethnicity() -> None:
    e = accepted(ethnicity=Ethnicity.BLACK_CARIBBEAN)
    other = accepted(ethnicity=Ethnicity.BLACK_CARIBBEAN)
    erased = LearnerErased(learner=e.learner, erased_at=ERASED_AT, enrolment_ids=(e.enrolment_id,))
    assert is_consumed(erased)
    before = run([[e, other, completed(e)]])
    after = run([[e, other, completed(e)], [erased]])
    outcomes = {k: c for k, c in after.items() if k[0] == "outcomes"}
    assert outcomes == {k: c for k, c in before.items() if k[0] == "outcomes"}
    equality = {k[1][-1]: c for k, c in after.items() if k[0] == "equality"}
    assert equality[Ethnicity.BLACK_CARIBBEAN.value]["started"] == 1  # the other learner
    assert equality[NOT_STATED]["started"] == 1 and equality[NOT_STATED]["completed"] == 1


def test_live_projection_equals_a_rebuild_after_erasure_however_it_is_batched() -> None:
    e = accepted(ethnicity=Ethnicity.OTHER_ARAB)
    erased = LearnerErased(learner=e.learner, erased_at=ERASED_AT)
    # A rebuild after the erasure cannot open the sealed background: no ethnicity.
    unopened = e.model_copy(update={"background": type(e.background)()})
    live_apart = run([[e], [withdrawn(e)], [erased]])
    live_together = run([[e, withdrawn(e), erased]])
    rebuilt = run([[unopened, withdrawn(unopened), erased]])
    assert live_apart == live_together == rebuilt
