"""The route table, the template and the app agree: every (method, path) API Gateway sends to a
function is a route of that function's app, and nothing else is.

Normalised explicitly: each resource's HEAD and OPTIONS events go to the service serving its GET
(``resources.owner``), where Starlette answers HEAD for every GET route on its own and the CORS
middleware (or the catch-all route) answers OPTIONS; ``/`` and ``/{proxy+}`` route every method
of ``CATCH_ALL_METHODS`` to the catch-all service, whose catch-all route answers 404 or 405.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from starlette.routing import Route

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from dicomweb_server.web.resources import CATCH_ALL_METHODS, CATCH_ALL_SERVICE, RESOURCES, owner

ROOT = Path(__file__).resolve().parents[2]
CATCH_ALL = "/{path:path}"


class _CfnLoader(yaml.SafeLoader):
    """Reads template.yaml, keeping CloudFormation tags (!Ref, !Sub, ...) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_routes(template_text: str) -> dict[str, set[tuple[str, str]]]:
    """{service: {(METHOD, path)}} from each function's Api events; the service is what its
    composition root (functions/<dir>/app.py) passes to ``api_handler``."""
    template = yaml.load(template_text, Loader=_CfnLoader)
    out: dict[str, set[tuple[str, str]]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        events = [e["Properties"] for e in (props.get("Events") or {}).values() if e["Type"] == "Api"]
        if not events:
            continue
        root = (ROOT / props["CodeUri"] / "app.py").read_text()
        (service,) = re.findall(r'api_handler\("(\w+)"\)', root)
        out[service] = {(e["Method"].upper(), e["Path"]) for e in events}
    return out


def app_routes(service: str) -> set[tuple[str, str]]:
    settings = Settings(bucket_name="b", table_name="t")
    app = create_app(settings, index=MemoryIndex(), blobs=MemoryBlobStore(), services=[service])
    while not hasattr(app, "routes"):  # unwrap the CORS, API key and slash middleware
        app = app.app
    pairs = set()
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == CATCH_ALL:
            continue
        pairs |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
    return pairs


def expected_template(service: str, app: set[tuple[str, str]]) -> set[tuple[str, str]]:
    owned = {(method, path) for path in RESOURCES if owner(path) == service for method in ("HEAD", "OPTIONS")}
    if service == CATCH_ALL_SERVICE:
        owned |= {(method, path) for method in CATCH_ALL_METHODS for path in ("/", "/{proxy+}")}
    return app | owned


TEMPLATE = (ROOT / "template.yaml").read_text()


@pytest.mark.parametrize("service", ["search", "retrieve", "render", "store"])
def test_each_functions_api_events_are_exactly_its_app_routes(service):
    declared = template_routes(TEMPLATE)[service]
    assert declared == expected_template(service, app_routes(service))


def test_the_route_table_is_what_the_apps_serve():
    served = {(m, p): s for s in ("search", "retrieve", "render", "store") for m, p in app_routes(s)}
    table = {(m, p): s for p, methods in RESOURCES.items() for m, s in methods.items()}
    assert served == table


def test_a_route_added_to_the_template_alone_is_caught():
    studies = "Properties: {RestApiId: !Ref DicomwebApi, Path: /studies, Method: GET}\n"
    extra_event = "        Extra:\n          Type: Api\n          " + studies.replace("/studies", "/workitems")
    extra = TEMPLATE.replace(studies, studies + extra_event, 1)
    assert extra != TEMPLATE
    declared = template_routes(extra)["search"]
    assert declared - expected_template("search", app_routes("search")) == {("GET", "/workitems")}
