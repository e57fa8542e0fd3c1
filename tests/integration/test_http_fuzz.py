"""HTTP fuzz of the deployed stack: schemathesis generates valid and invalid requests for every
operation of the OpenAPI description (``web.openapi``, generated from the route table), a fixed
budget per operation, half of them aimed at stored instances; no answer is a 5xx and none takes
longer than the request timeout (a hang fails the test)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from dicomweb_server.web.resources import RESOURCES
from tests.corpus import Instance, make_instance, stow_body
from tests.http_fuzz import headers_for, schema, use_stored

from .conftest import Endpoint

#: Cases per operation (28 operations): about two minutes against the local stack.
EXAMPLES = 10
TIMEOUT = 60
OPERATIONS = [(method, path) for path, methods in RESOURCES.items() for method in methods]


@pytest.fixture(scope="module")
def stored(endpoint: Endpoint) -> list[Instance]:
    instances = [make_instance("ct"), make_instance("multiframe")]
    body, ctype = stow_body(instances)
    response = endpoint.post("/studies", body, ctype)
    assert response.status_code == 200, response.text
    return instances


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_operation_answers_5xx(endpoint: Endpoint, stored: list[Instance], method: str, path: str) -> None:
    operation = schema(endpoint.base_url)[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    seen: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=cases, which=st.sampled_from([None, 0, 1]))
    def run(case: Any, which: int | None) -> None:
        if which is not None:
            use_stored(case, stored[which])
        response = case.call(base_url=endpoint.base_url, headers=headers_for(case, endpoint.api_key), timeout=TIMEOUT)
        seen.append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text[:500], case.as_curl_command())

    run()
    assert seen, "no request was sent"
