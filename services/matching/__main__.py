"""``python -m services.matching``: run the matching service on its own."""

from __future__ import annotations

from services.matching.app import create_app
from services.matching.settings import MatchingSettings
from shared.service import run


def main() -> None:
    settings = MatchingSettings()
    run(lambda: create_app(settings), settings)


if __name__ == "__main__":
    main()
