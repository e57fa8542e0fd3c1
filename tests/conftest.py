"""Shared by every test tier: real event files (``events/*.json``), the same ones ``sam local invoke`` uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """The event ``events/{name}.json`` (``name`` may include the ``.json``), as a fresh dict."""
    path = EVENTS / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def pytest_addoption(parser: Any) -> None:
    from tests.integration_options import add_options

    add_options(parser)


@dataclass(frozen=True)
class LambdaContext:
    """What the Lambda runtime passes as ``context`` (the attributes Powertools reads)."""

    function_name: str = "dicomweb-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:dicomweb-test"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"
    log_group_name: str = "/aws/lambda/dicomweb-test"
    log_stream_name: str = "2024/05/01/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()
