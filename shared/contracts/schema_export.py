"""Export every event's JSON Schema into ``schemas/`` and check backward compatibility.

``python -m shared.contracts.schema_export`` rewrites the checked-in files; the test
suite calls :func:`breaking_changes` so that a change which would break existing
consumers or producers fails before it lands. Backward compatible means: every document
valid under the old schema is still valid under the new one, checked conservatively —
no property removed, no new required property, no type or enum narrowed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.contracts.registry import all_events

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def current_schemas() -> dict[str, dict[str, Any]]:
    return {
        model.ce_type(): model.model_json_schema(mode="serialization") for model in all_events()
    }


def checked_in_schemas(directory: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for ce_type, schema in current_schemas().items():
        path = directory / f"{ce_type}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = root.get("$defs", {}).get(name, {})
    return schema


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return set().union(*(_types(s, root) for s in schema["anyOf"]))
    if "enum" in schema:
        return {f"enum:{v!r}" for v in schema["enum"]}
    if "const" in schema:
        return {f"enum:{schema['const']!r}"}
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    return {kind} if kind else {"any"}


def _compare(
    old: dict[str, Any],
    new: dict[str, Any],
    old_root: dict[str, Any],
    new_root: dict[str, Any],
    path: str,
    problems: list[str],
    depth: int = 0,
) -> None:
    if depth > 20:
        return
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if "any" not in new_types:
        lost = {t for t in old_types - new_types if not (t == "integer" and "number" in new_types)}
        if lost:
            problems.append(f"{path}: no longer accepts {sorted(lost)}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name in old_props:
        if name not in new_props:
            problems.append(f"{path}.{name}: property removed")
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{path}.{name}: newly required")
    for name, old_sub in old_props.items():
        if name in new_props:
            _compare(
                old_sub, new_props[name], old_root, new_root, f"{path}.{name}", problems, depth + 1
            )
    if "items" in old and "items" in new:
        _compare(old["items"], new["items"], old_root, new_root, f"{path}[]", problems, depth + 1)
    for branch in ("anyOf",):
        for i, old_sub in enumerate(old.get(branch, [])):
            for new_sub in new.get(branch, []):
                if _types(old_sub, old_root) <= _types(new_sub, new_root):
                    _compare(
                        old_sub, new_sub, old_root, new_root, f"{path}|{i}", problems, depth + 1
                    )


def breaking_changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for ce_type, old_schema in old.items():
        if ce_type not in new:
            problems.append(f"{ce_type}: event type removed")
            continue
        _compare(old_schema, new[ce_type], old_schema, new[ce_type], ce_type, problems)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report breaking changes")
    args = parser.parse_args(argv)
    problems = breaking_changes(checked_in_schemas(), current_schemas())
    for problem in problems:
        sys.stderr.write(f"breaking: {problem}\n")
    if args.check or problems:
        return 1 if problems else 0
    for path in write():
        sys.stdout.write(f"wrote {path.relative_to(SCHEMA_DIR.parent)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
