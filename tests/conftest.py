"""Shared by every tier: command-line options."""

from __future__ import annotations

import pytest

from tests.integration_options import add_options


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
