"""Through the deployed API Gateway: unknown paths and undeclared methods are answered by the app
in our JSON error shape (404, 405 with Allow), never API Gateway's 403 Missing Authentication
Token; HEAD works on GET resources; the API key is checked before routing."""

from __future__ import annotations

import pytest
import requests

from .conftest import Endpoint

pytestmark = pytest.mark.integration

UID = "1.2.826.0.1.3680043.8.498.1"


def call(endpoint: Endpoint, method: str, path: str, *, key: bool = True) -> requests.Response:
    headers = endpoint.headers() if key else {}
    return requests.request(method, endpoint.base_url + path, headers=headers, timeout=60)


def error_of(response: requests.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status and set(body) == {"status", "error", "message"}
    return str(body["message"])


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_an_undeclared_method_on_studies_is_405_with_allow(endpoint: Endpoint, method: str) -> None:
    response = call(endpoint, method, "/studies")
    assert f"{method} is not allowed on /studies" in error_of(response, 405)
    assert response.headers["Allow"] == "GET, HEAD, POST, OPTIONS"


def test_an_undeclared_method_deep_in_the_tree_is_405(endpoint: Endpoint) -> None:
    response = call(endpoint, "DELETE", f"/studies/{UID}/series/{UID}/instances/{UID}/frames/1")
    error_of(response, 405)
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("path", ["/", "/nothing/here", f"/studies/{UID}/unknown", f"/studies/{UID}/series/{UID}/x/y"])
def test_a_path_that_is_no_resource_is_404_naming_it(endpoint: Endpoint, path: str) -> None:
    message = error_of(call(endpoint, "GET", path), 404)
    assert message == f"no DICOMweb resource at {path.rstrip('/') or '/'}"


def test_head_is_answered_by_the_function_serving_get(endpoint: Endpoint) -> None:
    response = call(endpoint, "HEAD", "/studies")
    assert response.status_code == 200 and response.content == b""
    assert call(endpoint, "HEAD", f"/studies/{UID}").status_code == 404  # retrieve's own "not stored here"


def test_the_api_key_is_checked_before_routing(endpoint: Endpoint) -> None:
    if not endpoint.api_key:
        pytest.skip("this stack was deployed without an API key")
    assert call(endpoint, "GET", "/nothing/here", key=False).status_code == 401
    assert call(endpoint, "PUT", "/studies", key=False).status_code == 401
    assert call(endpoint, "GET", "/nothing/here").status_code == 404
