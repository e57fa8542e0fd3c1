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


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    """A tagged node as ``{"!Tag": value}`` (its value read as plain YAML)."""
    if isinstance(node, yaml.SequenceNode):
        return {f"!{suffix}": loader.construct_sequence(node, deep=True)}
    if isinstance(node, yaml.MappingNode):
        return {f"!{suffix}": loader.construct_mapping(node, deep=True)}
    return {f"!{suffix}": loader.construct_scalar(node)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _tagged)


def template_routes(template_text: str) -> dict[str, set[tuple[str, str]]]:
    """{service: {(METHOD, path)}} from each function's Api events and from the API's
    DefinitionBody (the routes whose integration names the function); the service is what its
    composition root (functions/<dir>/app.py) passes to ``api_handler``."""
    template = yaml.load(template_text, Loader=_CfnLoader)
    out: dict[str, set[tuple[str, str]]] = {}
    body_paths = {
        (method.upper(), path, str(operation["x-amazon-apigateway-integration"]["uri"]))
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Api" and "DefinitionBody" in resource["Properties"]
        for path, item in resource["Properties"]["DefinitionBody"]["paths"].items()
        for method, operation in item.items()
    }
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        events = [e["Properties"] for e in (props.get("Events") or {}).values() if e["Type"] == "Api"]
        routes = {(e["Method"].upper(), e["Path"]) for e in events}
        routes |= {(method, path) for method, path, uri in body_paths if "${" + name + ".Arn}" in uri}
        if not routes:
            continue
        root = (ROOT / props["CodeUri"] / "app.py").read_text()
        (service,) = re.findall(r'api_handler\("(\w+)"\)', root)
        out[service] = routes
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


def test_every_retrieve_method_streams_when_streaming_is_enabled_and_is_buffered_otherwise():
    """Under the Lambda Web Adapter's response_stream mode every answer of the retrieve function is
    a stream, so each of its methods must use STREAM and the response-streaming-invocations URI."""
    template = yaml.load(TEMPLATE, Loader=_CfnLoader)
    paths = template["Resources"]["DicomwebApi"]["Properties"]["DefinitionBody"]["paths"]
    integrations = [op["x-amazon-apigateway-integration"] for item in paths.values() for op in item.values()]
    assert len(integrations) == len(template_routes(TEMPLATE)["retrieve"])
    for integration in integrations:
        assert integration["responseTransferMode"] == {"!If": ["IsStreaming", "STREAM", "BUFFERED"]}
        condition, streamed, buffered = integration["uri"]["!If"]
        assert condition == "IsStreaming"
        assert streamed["!Sub"].endswith("/2021-11-15/functions/${RetrieveFunction.Arn}/response-streaming-invocations")
        assert buffered["!Sub"].endswith("/2015-03-31/functions/${RetrieveFunction.Arn}/invocations")
    retrieve = template["Resources"]["RetrieveFunction"]["Properties"]
    assert retrieve["Handler"] == {"!If": ["IsStreaming", "run.sh", "app.handler"]}
    variables = retrieve["Environment"]["Variables"]
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"]["!If"][:2] == ["IsStreaming", "/opt/bootstrap"]
    assert variables["AWS_LWA_INVOKE_MODE"]["!If"][:2] == ["IsStreaming", "response_stream"]
