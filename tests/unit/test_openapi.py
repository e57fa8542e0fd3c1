"""The OpenAPI description lists every route of the route table and of the app, with its path
parameters, and nothing else (it is generated from ``RESOURCES``, so it cannot drift)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from starlette.routing import Route

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from dicomweb_server.web.openapi import describe
from dicomweb_server.web.resources import RESOURCES

ROOT = Path(__file__).resolve().parents[2]
DOC = describe()
_METHODS = {"get", "post", "put", "delete", "patch", "head", "options"}


def _operations(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in _METHODS}


def test_every_route_of_the_route_table_is_described_and_nothing_else() -> None:
    table = {(m, p) for p, methods in RESOURCES.items() for m in methods}
    assert _operations(DOC) == table


def test_every_route_the_app_serves_is_described() -> None:
    app = create_app(Settings(bucket_name="b", table_name="t"), index=MemoryIndex(), blobs=MemoryBlobStore())
    while not hasattr(app, "routes"):  # through the CORS, API key and slash middlewares
        app = app.app
    served = {(m, r.path) for r in app.routes if isinstance(r, Route) and r.path != "/{path:path}" for m in r.methods}
    assert {(m, p) for m, p in served if m != "HEAD"} == _operations(DOC)


@pytest.mark.parametrize("path", sorted(RESOURCES))
def test_each_path_parameter_is_declared_required(path: str) -> None:
    declared = {p["name"]: p for p in DOC["paths"][path].get("parameters", [])}
    assert set(declared) == set(re.findall(r"{(\w+)}", path))
    assert all(p["in"] == "path" and p["required"] for p in declared.values())


def test_searches_describe_the_qido_parameters_and_media_types() -> None:
    op = DOC["paths"]["/studies"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert {"PatientName", "StudyDate", "limit", "offset", "includefield", "fuzzymatching", "continuation"} <= names
    assert "application/dicom+json" in op["responses"]["200"]["content"]
    stow = DOC["paths"]["/studies"]["post"]
    assert 'multipart/related; type="application/dicom"' in stow["requestBody"]["content"]


def test_the_api_key_header_is_the_security_scheme() -> None:
    schemes = DOC["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {("header", "apikey"), ("header", "x-api-key")}
    assert DOC["security"]


def test_it_is_a_valid_openapi_3_1_document() -> None:
    schema = schemathesis.openapi.from_dict(DOC)
    schema.validate()  # raises on a document that breaks the OpenAPI 3.1 meta-schema
    assert len(list(schema.get_all_operations())) == len(_operations(DOC))


def test_the_script_writes_the_same_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "openapi.py"), "-o", str(out), "--server-url", "http://x"],
                   check=True)  # fmt: skip
    assert json.loads(out.read_text()) == describe("http://x")
