"""Shared by every test tier: real event files (``events/*.json``), the same ones ``sam local invoke`` uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """The event ``events/{name}.json`` (``name`` may include the ``.json``), as a fresh dict."""
    path = EVENTS / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def pytest_addoption(parser: Any) -> None:
    from tests.integration_options import add_options

    add_options(parser)
