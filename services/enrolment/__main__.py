"""``python -m services.enrolment``: run the enrolment service on its own."""

from __future__ import annotations

from services.enrolment.app import create_app
from services.enrolment.settings import EnrolmentSettings
from shared.service import run


def main() -> None:
    settings = EnrolmentSettings()
    run(lambda: create_app(settings), settings)


if __name__ == "__main__":
    main()
