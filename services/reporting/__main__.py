"""``python -m services.reporting``: run the reporting service on its own."""

from __future__ import annotations

from services.reporting.app import create_app
from services.reporting.settings import ReportingSettings
from shared.service import run


def main() -> None:
    settings = ReportingSettings()
    run(lambda: create_app(settings), settings)


if __name__ == "__main__":
    main()
