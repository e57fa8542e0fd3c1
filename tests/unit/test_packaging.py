"""What gets deployed agrees with what is tested: pinned dependencies and the index table's keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from tests.corpus import TABLE_KEYS

ROOT = Path(__file__).resolve().parents[2]


def requirements(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_layer_requirements_match_the_project_dependencies():
    assert requirements(ROOT / "layers/dicomweb/requirements.txt") == set(project()["dependencies"])


def test_the_render_function_carries_exactly_the_pixel_extra():
    pixels = set(project()["optional-dependencies"]["pixels"])
    assert requirements(ROOT / "functions/render/requirements.txt") == pixels


def test_retrieve_function_carries_exactly_the_pixel_and_streaming_extras():
    extras = project()["optional-dependencies"]
    expected = set(extras["pixels"]) | set(extras["streaming"])
    assert requirements(ROOT / "functions/retrieve/requirements.txt") == expected


class _CfnLoader(yaml.SafeLoader):
    """Reads template.yaml, keeping CloudFormation tags (!Ref, !Sub, ...) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_the_moto_table_has_the_key_schema_of_template_yaml():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)
    table = template["Resources"]["IndexTable"]["Properties"]
    declared = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
    assert {name: (declared[name], kind) for name, kind in keys.items()} == TABLE_KEYS
    assert table["BillingMode"] == "PAY_PER_REQUEST"
