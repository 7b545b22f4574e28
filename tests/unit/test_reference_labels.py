"""Programmes and levels are declared once, in shared/contracts/reference.py, each with
its name beside it: a member added without a name fails here, not as a KeyError in a
report or form at runtime."""

from __future__ import annotations

from enum import StrEnum

import pytest

from shared.contracts.reference import LEVEL_LABELS, PROGRAMME_LABELS, Level, Programme


@pytest.mark.parametrize(
    ("vocabulary", "labels"), [(Programme, PROGRAMME_LABELS), (Level, LEVEL_LABELS)]
)
def test_every_member_has_a_name(vocabulary: type[StrEnum], labels: dict[StrEnum, str]) -> None:
    assert list(labels) == list(vocabulary), "name every member, in the enum's order"
    assert all(label.strip() for label in labels.values())
    assert len(set(labels.values())) == len(labels), "two members share a name"


def test_members_answer_their_name() -> None:
    assert Programme.DIGITAL.label == "Digital skills"
    assert Level.ENTRY_1.label == "Entry 1"
