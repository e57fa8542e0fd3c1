"""The route table: every DICOMweb resource, the methods allowed on it and the service (Lambda
function) that serves each. ``template.yaml``, the route modules and the 405 answers agree on it
(tests/unit/test_routes.py checks all three).

On API Gateway each resource also routes HEAD and OPTIONS (CORS preflights) to the service that
serves its GET (``owner``). A method a resource does not declare falls through to ``/{proxy+}``,
which, like ``/``, routes every method to the search function (``CATCH_ALL_SERVICE``): its
catch-all route answers 405 with ``Allow`` for a known resource and 404 for a path that is none.
(Methods are listed one by one: the local emulator does not import API Gateway's ``ANY``.)
"""

from __future__ import annotations

from functools import cache
from re import Pattern

from starlette.routing import compile_path

_INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"

RESOURCES: dict[str, dict[str, str]] = {
    "/studies": {"GET": "search", "POST": "store"},
    "/series": {"GET": "search"},
    "/instances": {"GET": "search"},
    "/studies/{study}": {"GET": "retrieve", "POST": "store"},
    "/studies/{study}/metadata": {"GET": "retrieve"},
    "/studies/{study}/series": {"GET": "search"},
    "/studies/{study}/instances": {"GET": "search"},
    "/studies/{study}/series/{series}": {"GET": "retrieve"},
    "/studies/{study}/series/{series}/metadata": {"GET": "retrieve"},
    "/studies/{study}/series/{series}/instances": {"GET": "search"},
    _INSTANCE: {"GET": "retrieve"},
    _INSTANCE + "/metadata": {"GET": "retrieve"},
    _INSTANCE + "/bulkdata/{tagpath}": {"GET": "retrieve"},
    _INSTANCE + "/frames/{frames}": {"GET": "retrieve"},
    _INSTANCE + "/rendered": {"GET": "render"},
    _INSTANCE + "/frames/{frames}/rendered": {"GET": "render"},
    "/studies/{study}/rendered": {"GET": "render"},
    "/studies/{study}/series/{series}/rendered": {"GET": "render"},
    "/studies/{study}/thumbnail": {"GET": "render"},
    "/studies/{study}/series/{series}/thumbnail": {"GET": "render"},
    _INSTANCE + "/thumbnail": {"GET": "render"},
    _INSTANCE + "/frames/{frames}/thumbnail": {"GET": "render"},
    "/wadouri": {"GET": "retrieve"},
    "/uploads": {"POST": "store"},
    "/uploads/{session}": {"GET": "store"},
    "/uploads/{session}/files/{file}/complete": {"POST": "store"},
}
#: Paths with no resource go to this service on API Gateway (``/`` and ``/{proxy+}``).
CATCH_ALL_SERVICE = "search"


def allowed_methods(path: str) -> list[str]:
    """What an ``Allow`` header lists for a resource: its methods, HEAD with GET, and OPTIONS."""
    methods = set(RESOURCES[path])
    if "GET" in methods:
        methods.add("HEAD")
    methods.add("OPTIONS")
    order = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    return sorted(methods, key=order.index)


#: Methods the catch-all paths (``/`` and ``/{proxy+}``) route, one event each in template.yaml.
CATCH_ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def owner(path: str) -> str:
    """The service API Gateway sends a resource's HEAD and OPTIONS to: the one serving its GET."""
    methods = RESOURCES[path]
    return methods.get("GET") or next(iter(methods.values()))


@cache
def _patterns() -> list[tuple[Pattern[str], str]]:
    return [(compile_path(path)[0], path) for path in RESOURCES]


def resource_of(path: str) -> str | None:
    """The route template a concrete request path belongs to (``/studies/1.2`` → ``/studies/{study}``)."""
    for regex, template in _patterns():
        if regex.match(path):
            return template
    return None
