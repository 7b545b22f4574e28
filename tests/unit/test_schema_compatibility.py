"""The event contract may grow but never break: checked against schemas/ in the repo."""

from __future__ import annotations

import copy

from shared.contracts.schema_export import breaking_changes, checked_in_schemas, current_schemas


def test_checked_in_schemas_cover_every_event() -> None:
    assert set(checked_in_schemas()) == set(current_schemas()), (
        "run `uv run python -m shared.contracts.schema_export` and commit schemas/"
    )


def test_current_schemas_are_backward_compatible_with_checked_in() -> None:
    assert breaking_changes(checked_in_schemas(), current_schemas()) == []


def test_detects_removed_property_new_required_and_narrowed_type() -> None:
    old = current_schemas()
    ce_type = "org.commonground.EnrolmentAccepted.v1"
    new = copy.deepcopy(old)
    del new[ce_type]["properties"]["planned_hours"]
    new[ce_type]["required"].append("sex")
    new[ce_type]["properties"]["learning_aim_ref"] = {"type": "integer"}
    problems = breaking_changes(old, new)
    assert any("planned_hours: property removed" in p for p in problems)
    assert any("sex: newly required" in p for p in problems)
    assert any("learning_aim_ref: no longer accepts" in p for p in problems)


def test_adding_optional_property_is_compatible() -> None:
    old = current_schemas()
    new = copy.deepcopy(old)
    new["org.commonground.MatchEnded.v1"]["properties"]["note"] = {"type": "string"}
    assert breaking_changes(old, new) == []


def test_removing_event_type_is_breaking() -> None:
    old = current_schemas()
    new = {k: v for k, v in old.items() if k != "org.commonground.MatchEnded.v1"}
    assert breaking_changes(old, new) == ["org.commonground.MatchEnded.v1: event type removed"]
