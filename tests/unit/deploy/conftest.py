"""Fixtures of the deployment-file tests (helpers live in deploy_support.py)."""

from __future__ import annotations

import pytest
from deploy_support import Catalogue, load_catalogue


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()
