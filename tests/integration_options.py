"""Command-line options of the integration tests (registered from tests/conftest.py)."""

from __future__ import annotations

import pytest


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("dicomweb")
    group.addoption("--dicomweb-url", default=None, help="DICOMweb base URL of an already deployed stack")
    group.addoption("--dicomweb-api-key", default=None, help="its API key, if it has one")
