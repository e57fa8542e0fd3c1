"""Requests no route serves: unknown paths are a 404 that names the path, methods a resource does not
have a 405 with ``Allow``, a plain OPTIONS a 204 with ``Allow``, all in the JSON error shape of every
error, on the full app and on each single-service app API Gateway routes to."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from dicomweb_server.web.resources import RESOURCES
from tests.corpus import make_instance, stow_body

SETTINGS = Settings(bucket_name="routes-bucket", table_name="routes-table")
APPS = ["full", "search", "retrieve", "render", "store"]
CATCH_ALL_404 = "no DICOMweb resource at"
OTHER_FUNCTION_404 = "function, not by this one"
INSTANCE = "/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5"


def app_client(kind: str, settings: Settings = SETTINGS) -> TestClient:
    services = {} if kind == "full" else {"services": [kind]}
    app = create_app(settings, index=MemoryIndex(), blobs=MemoryBlobStore(), **services)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(params=APPS)
def any_app(request: pytest.FixtureRequest) -> TestClient:
    """The full app and every single-service app: the catch-all answers the same on each."""
    return app_client(request.param)


def error_of(r: Any, status: int) -> str:
    """The message of an error answer, after checking it has the one JSON error shape."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"status", "error", "message"} and body["status"] == status
    return str(body["message"])


def concrete(template: str) -> str:
    """A request path for a route template, with valid-looking UIDs and frame 1."""
    values = {
        "study": "1.2.3",
        "series": "1.2.3.4",
        "instance": "1.2.3.4.5",
        "frames": "1",
        "tagpath": "7FE00010",
        "session": "0" * 32,
        "file": "1",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


# -- 405 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_an_undeclared_method_on_studies_is_405_with_allow(any_app: TestClient, method: str) -> None:
    r = any_app.request(method, "/studies")
    message = error_of(r, 405)
    assert r.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert r.json()["error"] == "Method Not Allowed"
    assert message == f"{method} is not allowed on /studies; allowed: GET, HEAD, POST, OPTIONS"


def test_patch_on_frames_is_405_allowing_only_reads(any_app: TestClient) -> None:
    r = any_app.patch(INSTANCE + "/frames/1")
    error_of(r, 405)
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


def test_post_on_a_read_only_resource_is_405(any_app: TestClient) -> None:
    r = any_app.post("/studies/1.2.3/metadata", content=b"x")
    error_of(r, 405)
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("template", sorted(RESOURCES))
def test_every_resource_answers_put_with_its_own_allow(template: str) -> None:
    r = app_client("full").put(concrete(template), content=b"")
    error_of(r, 405)
    allowed = r.headers["allow"].split(", ")
    declared = set(RESOURCES[template])
    assert declared <= set(allowed)
    assert ("HEAD" in allowed) == ("GET" in declared)
    assert allowed[-1] == "OPTIONS" and "PUT" not in allowed


# -- 404 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nothing/here", "/", "/studies/1.2.3/unknown", "/studies/1.2.3/series/4/frames"])
def test_a_path_with_no_resource_is_404_naming_the_path(any_app: TestClient, path: str) -> None:
    r = any_app.get(path)
    assert error_of(r, 404) == f"{CATCH_ALL_404} {path}"
    assert r.json()["error"] == "Not Found"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
def test_any_method_on_a_path_with_no_resource_is_404_not_405(method: str) -> None:
    r = app_client("full").request(method, "/nothing/here")
    assert CATCH_ALL_404 in error_of(r, 404)
    assert "allow" not in r.headers


@pytest.mark.parametrize(
    ("kind", "method", "path", "owner"),
    [
        ("search", "GET", "/studies/1.2.3", "retrieve"),
        ("search", "POST", "/studies", "store"),
        ("retrieve", "GET", "/studies", "search"),
        ("store", "GET", INSTANCE + "/metadata", "retrieve"),
    ],
)
def test_a_resource_of_another_function_is_a_404_naming_that_function(
    kind: str, method: str, path: str, owner: str
) -> None:
    r = app_client(kind).request(method, path, content=b"")
    assert error_of(r, 404) == f"{method} {path} is served by the {owner} function, not by this one"


# -- OPTIONS, CORS, HEAD ------------------------------------------------------------------------------------


def test_a_plain_options_is_204_with_allow(any_app: TestClient) -> None:
    r = any_app.options("/studies")
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert r.content == b""
    assert any_app.options(INSTANCE + "/frames/1").headers["allow"] == "GET, HEAD, OPTIONS"


def test_options_on_a_path_with_no_resource_is_404(memory_client: TestClient) -> None:
    assert CATCH_ALL_404 in error_of(memory_client.options("/nothing/here"), 404)


def test_a_cors_preflight_is_still_answered_by_cors(any_app: TestClient) -> None:
    r = any_app.options(
        "/studies",
        headers={
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept, apikey",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "GET" in r.headers["access-control-allow-methods"]
    assert "apikey" in r.headers["access-control-allow-headers"].lower()


def test_errors_carry_cors_headers_for_browsers(memory_client: TestClient) -> None:
    r = memory_client.put("/studies", headers={"Origin": "https://viewer.example"})
    assert r.status_code == 405 and r.headers["access-control-allow-origin"] == "*"


def test_head_on_a_get_resource_is_200_without_a_body(memory_client: TestClient) -> None:
    body, ctype = stow_body([make_instance("ct")])  # a search with a match (no match is a 204)
    assert memory_client.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
    r = memory_client.head("/studies")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-type"].startswith("application/dicom+json")


def test_head_on_a_stored_instance_is_200_without_a_body(memory_client: TestClient) -> None:
    instance = make_instance("mr")
    body, ctype = stow_body([instance])
    assert memory_client.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
    path = f"/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"
    for url in (path, path + "/metadata"):
        r = memory_client.head(url)
        assert r.status_code == 200 and r.content == b"", url


def test_head_on_an_unknown_path_is_404(memory_client: TestClient) -> None:
    assert memory_client.head("/nothing/here").status_code == 404


# -- API key ----------------------------------------------------------------------------------------------


@pytest.fixture
def keyed() -> TestClient:
    return app_client("full", Settings(bucket_name="routes-bucket", table_name="routes-table", api_key="k"))


def test_the_api_key_is_checked_before_routing(keyed: TestClient) -> None:
    r = keyed.get("/nothing/here")
    assert "API key is required" in error_of(r, 401)
    assert "apikey" in r.headers["www-authenticate"]
    assert error_of(keyed.put("/studies"), 401)
    assert "not valid" in error_of(keyed.get("/nothing/here", headers={"apikey": "wrong"}), 403)


def test_with_the_api_key_an_unknown_path_is_404_and_a_bad_method_405(keyed: TestClient) -> None:
    assert CATCH_ALL_404 in error_of(keyed.get("/nothing/here", headers={"apikey": "k"}), 404)
    assert CATCH_ALL_404 in error_of(keyed.get("/nothing/here", headers={"x-api-key": "k"}), 404)
    r = keyed.put("/studies", headers={"apikey": "k"})
    error_of(r, 405)
    assert r.headers["allow"] == "GET, HEAD, POST, OPTIONS"


def test_options_needs_no_api_key(keyed: TestClient) -> None:
    r = keyed.options("/studies")
    assert r.status_code == 204 and r.headers["allow"] == "GET, HEAD, POST, OPTIONS"


# -- trailing slash ---------------------------------------------------------------------------------------


def test_a_trailing_slash_still_routes(memory_client: TestClient) -> None:
    r = memory_client.get("/studies/")
    assert r.status_code == 204 and r.content == b""  # routed: an empty archive's search
    assert "study 1.2.3 is not stored here" in error_of(memory_client.get("/studies/1.2.3/series/"), 404)
    r = memory_client.put("/studies/")
    error_of(r, 405)
    assert r.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert memory_client.options("/studies/").status_code == 204


# -- every declared (path, method) is served by its service -----------------------------------------------


@pytest.mark.parametrize(
    ("template", "method", "service"),
    [(template, method, service) for template, methods in RESOURCES.items() for method, service in methods.items()],
)
def test_every_declared_resource_is_served_by_its_service(template: str, method: str, service: str) -> None:
    client = app_client(service)
    path = concrete(template)
    r = client.request(method, path, content=b"" if method == "POST" else None)
    assert r.status_code != 405, (method, path, r.text)
    if r.status_code == 404:
        message = error_of(r, 404)
        assert CATCH_ALL_404 not in message and OTHER_FUNCTION_404 not in message, (method, path, message)
        assert "not stored here" in message
    if method == "GET":  # and HEAD with it
        assert client.head(path).status_code == r.status_code
