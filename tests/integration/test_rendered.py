"""Through the deployed stack: rendered and thumbnail resources at every level are routed to the
retrieve function, and a thumbnail is cached in the bucket under derived/thumbnails/ by the
function's own S3 permissions."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.corpus import make_study, stow_body

from .conftest import Endpoint

pytestmark = pytest.mark.integration


def _image(response: Any, media_type: str) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == media_type
    return Image.open(io.BytesIO(response.content))


def test_rendered_and_thumbnails_at_every_level(endpoint: Endpoint, s3: Any) -> None:
    instances = make_study(("ct",), instances_per_series=3)
    body, content_type = stow_body(instances)
    assert endpoint.post("/studies", body, content_type).status_code == 200
    middle = instances[1]  # InstanceNumber 2 of 3
    study = f"/studies/{middle.study_uid}"
    series = f"{study}/series/{middle.series_uid}"
    instance = f"{series}/instances/{middle.sop_uid}"

    want = np.asarray(_image(endpoint.get(f"{instance}/rendered", headers={"Accept": "image/png"}), "image/png"))
    for level in (study, series):
        got = _image(endpoint.get(f"{level}/rendered", headers={"Accept": "image/png"}), "image/png")
        assert np.array_equal(np.asarray(got), want)
    windowed = endpoint.get(
        f"{instance}/frames/1/rendered?window=40,400,sigmoid&viewport=64,64", headers={"Accept": "image/jpeg"}
    )
    assert _image(windowed, "image/jpeg").size == (64, 64)

    first = endpoint.get(f"{series}/thumbnail", headers={"Accept": "image/jpeg"})
    assert max(_image(first, "image/jpeg").size) <= 128
    prefix = f"derived/thumbnails/{middle.study_uid}/{middle.series_uid}/{middle.sop_uid}/"
    listed = s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=prefix).get("Contents", [])
    assert len(listed) == 1, listed
    for path in (f"{instance}/thumbnail", f"{study}/thumbnail", f"{instance}/frames/1/thumbnail"):
        again = endpoint.get(path, headers={"Accept": "image/jpeg"})
        assert again.status_code == 200 and again.content == first.content
    assert len(s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=prefix).get("Contents", [])) == 1

    bad = endpoint.get(f"{instance}/rendered?window=40,0", headers={"Accept": "image/png"})
    assert bad.status_code == 400 and "window width must be at least 1" in bad.json()["message"]
    assert endpoint.get(f"{study}/series/1.2.3.4/thumbnail").status_code == 404
