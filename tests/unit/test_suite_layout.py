"""The suite itself: pytest imports test modules by basename (rootdir-relative, no
package __init__ in the tiers), so two test files with one name stop the whole run at
collection. This fails first, naming them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_names_are_unique_across_tiers() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    duplicates = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert duplicates == {}, f"rename one of each: {duplicates}"
