"""Statistical disclosure control: rounding, primary and secondary suppression, rates."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.reporting.domain.disclosure import (
    SECONDARY,
    SUPPRESSED,
    Line,
    Protected,
    grid_lines,
    protect,
    round_count,
)


def test_rounding_to_nearest_five_and_true_zero() -> None:
    assert [round_count(v) for v in (0, 5, 6, 7, 8, 12, 13, 1002)] == [0, 5, 5, 5, 10, 10, 15, 1000]
    p = protect({"zero": 0, "three": 3, "seven": 7, "five": 5})
    assert p.display("zero") == 0
    assert p.display("three") == SUPPRESSED
    assert p.display("seven") == 5
    assert p.display("five") == 5


def test_single_suppressed_cell_in_a_line_pulls_the_next_smallest() -> None:
    values = {"a": 3, "b": 40, "c": 9, "d": 0, "total": 52}
    p = protect(values, [Line("total", ("a", "b", "c", "d"))])
    assert p.display("a") == SUPPRESSED
    # d is a true zero: suppressing it would protect nothing; c (9) is the next smallest.
    assert p.display("c") == SECONDARY
    assert p.display("b") == 40
    assert p.display("d") == 0
    assert p.display("total") == 50


def test_two_primary_suppressions_need_no_secondary() -> None:
    values = {"a": 2, "b": 4, "c": 30, "total": 36}
    p = protect(values, [Line("total", ("a", "b", "c"))])
    assert [p.display(k) for k in ("a", "b", "c", "total")] == [SUPPRESSED, SUPPRESSED, 30, 35]


def test_secondary_suppression_cascades_across_rows_and_columns() -> None:
    # 2x2 table with margins: suppressing (r1,c1) forces one more in row r1 and column c1,
    # and those force more in their other lines until no line has a single hidden cell.
    values = {
        ("r1", "c1"): 2, ("r1", "c2"): 20, ("r1", "t"): 22,
        ("r2", "c1"): 30, ("r2", "c2"): 40, ("r2", "t"): 70,
        ("T", "c1"): 32, ("T", "c2"): 60, ("T", "t"): 92,
    }  # fmt: skip
    lines = grid_lines(
        ["r1", "r2"], ["c1", "c2"], total_row="T", row_relations=[("t", ("c1", "c2"))]
    )
    p = protect(values, lines)
    hidden = {cell for cell in values if p.is_suppressed(cell)}
    assert hidden == {("r1", "c1"), ("r1", "c2"), ("r2", "c1"), ("r2", "c2")}
    assert_no_line_has_a_single_hidden_cell(p, lines)


def test_a_line_whose_only_member_is_hidden_hides_its_total() -> None:
    p = protect({"only": 3, "sum": 3, "other": 3}, [Line("sum", ("only",))])
    assert p.display("sum") == SUPPRESSED


def test_rates_use_unrounded_values_and_are_withheld_when_disclosive() -> None:
    p = protect({"completed": 17, "achieved": 3})
    assert p.rate("completed", 23) == round(17 / 23, 3)  # not 15/25 from rounded values
    assert p.rate("achieved", 23) is None  # numerator suppressed
    assert p.rate("completed", 19) is None  # complement (2) would be a small count
    assert p.rate("completed", 0) is None
    assert protect({"x": 0}).rate("x", 10) == 0.0


def test_unrounded_mode_shows_true_values() -> None:
    p = protect({"a": 3, "b": 7, "t": 10}, [Line("t", ("a", "b"))], rounded=False)
    assert [p.display(k) for k in ("a", "b", "t")] == [3, 7, 10]
    assert p.rate("a", 10) == 0.3


def assert_no_line_has_a_single_hidden_cell(p: Protected, lines: list[Line]) -> None:
    for line in lines:
        if line.total is not None and not p.is_suppressed(line.total):
            hidden = [m for m in line.members if p.is_suppressed(m)]
            assert len(hidden) != 1, (line, hidden)


small_counts = st.one_of(st.integers(0, 6), st.integers(0, 60))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda n_rows: st.integers(1, 5).flatmap(
            lambda n_cols: st.lists(
                st.lists(small_counts, min_size=n_cols, max_size=n_cols),
                min_size=n_rows,
                max_size=n_rows,
            )
        )
    )
)
def test_protected_tables_never_reveal_a_small_count(grid: list[list[int]]) -> None:
    rows = [f"r{i}" for i in range(len(grid))]
    cols = [f"c{j}" for j in range(len(grid[0]))]
    values: dict[tuple[str, str], int] = {}
    for r, row in zip(rows, grid, strict=True):
        for c, v in zip(cols, row, strict=True):
            values[(r, c)] = v
        values[(r, "total")] = sum(row)
    for c in [*cols, "total"]:
        values[("T", c)] = sum(values[(r, c)] for r in rows)
    lines = grid_lines(
        rows, [*cols, "total"], total_row="T", row_relations=[("total", tuple(cols))]
    )
    p = protect(values, lines)

    for cell, true in values.items():
        shown = p.display(cell)
        if 1 <= true <= 4:
            assert shown in (SUPPRESSED, SECONDARY)
        elif isinstance(shown, int):
            assert shown % 5 == 0 and abs(shown - true) <= 2
            assert (shown == 0) == (true == 0)
        else:
            assert shown == SECONDARY, (cell, true, shown)
        if shown == SUPPRESSED:
            assert 1 <= true <= 4
    assert_no_line_has_a_single_hidden_cell(p, lines)
    # Idempotent: protecting again with the same lines changes nothing.
    assert protect(values, lines).suppressed == p.suppressed
