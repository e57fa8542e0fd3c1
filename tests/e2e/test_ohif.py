"""OHIF 3.13.2 (the prebuilt viewer from npm) in Debian's Chromium opens what we serve, same-origin
and cross-origin: a 200-slice 512×512 CT series, a 30-frame JPEG ultrasound, a multi-frame RLE
angiography run and a highdicom SEG. For each: no console error, no failed request, a viewport
canvas with non-uniform pixels, every frame of the series fetched; time to first image and to all
frames loaded, and a screenshot, go to the artifacts folder (``timings.json``, ``*.png``)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import ohif
import pytest

from . import data

pytestmark = pytest.mark.e2e

#: Pixels of the first viewport canvas: how many distinct grey levels (0 when not readable yet).
CANVAS_STATS = """() => {
  const canvas = document.querySelector('canvas.cornerstone-canvas');
  if (!canvas || !canvas.width || !canvas.height) return null;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) return { readable: false };
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const levels = new Set();
  for (let i = 0; i < data.length; i += 4 * 7) levels.add(data[i] * 65536 + data[i + 1] * 256 + data[i + 2]);
  let red = 0;
  for (let i = 0; i < data.length; i += 4 * 7) if (data[i] > data[i + 1] + 60 && data[i] > data[i + 2] + 60) red++;
  return { readable: true, width: canvas.width, height: canvas.height, distinct: levels.size, red };
}"""
#: A request for pixels: one frame, or a whole instance (how OHIF loads a SEG).
PIXEL_REQUEST = re.compile(r"/frames/\d+$|/instances/[0-9.]+$")
FIRST_IMAGE_TIMEOUT = 90.0
ALL_FRAMES_TIMEOUT = 180.0


class Watch:
    """What the page did: console errors, failed requests, and when each pixel request finished."""

    def __init__(self, page: Any, api_root: str) -> None:
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.pixel_responses: list[tuple[float, str]] = []
        self.api_root = api_root
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: self.failed.append(f"{req.method} {req.url}: {req.failure}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.request.method} {response.url}: {response.status}")
        url = response.url
        if url.startswith(self.api_root) and PIXEL_REQUEST.search(url.split("?")[0]):
            self.pixel_responses.append((time.perf_counter(), url))

    def frames_fetched(self, study: data.Study) -> int:
        seen = set()
        for _, url in self.pixel_responses:
            if study.series_uid in url:
                seen.add(url)
        return len(seen)


def _wait_for(page: Any, started: float, timeout: float, done: Any) -> float | None:
    """Seconds since ``started`` until the viewport canvas's pixels satisfy ``done``, or None."""
    while time.perf_counter() - started < timeout:
        stats = page.evaluate(CANVAS_STATS)
        if stats and stats.get("readable") and done(stats):
            return time.perf_counter() - started
        page.wait_for_timeout(100)
    return None


def _skip_tour(page: Any) -> None:
    """OHIF's first-visit tour covers the page; a new user would skip it too."""
    skip = page.get_by_text("Skip all")
    if skip.count():
        skip.first.click()


def _record(artifacts: Path, entry: dict[str, Any]) -> None:
    path = artifacts / "timings.json"
    found = json.loads(path.read_text()) if path.exists() else []
    found.append(entry)
    path.write_text(json.dumps(found, indent=2) + "\n")


@pytest.mark.parametrize("origin", ["same-origin", "cross-origin"])
@pytest.mark.parametrize("name", ["ct-200", "us-jpeg-30", "xa-rle-24", "ct-seg"])
def test_ohif_opens_the_series(
    name: str, origin: str, studies: dict[str, data.Study], cloud: Any, viewer_dist: Path, browser: Any, artifacts: Path
) -> None:
    study = studies[name]
    with ohif.serving(cloud.base_url, same_origin=origin == "same-origin", dist=viewer_dist) as viewer:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        watch = Watch(page, viewer.dicomweb_root)
        seg, shown = name == "ct-seg", None
        # A SEG is opened as a user does: the study, then the SEG's thumbnail, then "Yes" to load it.
        url = viewer.viewer_url(study.study_uid) + ("" if seg else f"&SeriesInstanceUIDs={study.series_uid}")
        started = time.perf_counter()
        page.goto(url)
        first_image = _wait_for(page, started, FIRST_IMAGE_TIMEOUT, lambda s: s.get("distinct", 0) > 8)
        assert first_image is not None, f"no image in the viewport after {FIRST_IMAGE_TIMEOUT} s"
        _skip_tour(page)
        if seg:
            page.locator('[data-cy^="study-browser-thumbnail"]:has-text("SEG")').first.dblclick()
            page.get_by_role("button", name="Yes").click(timeout=FIRST_IMAGE_TIMEOUT * 1000)
            shown = _wait_for(page, started, FIRST_IMAGE_TIMEOUT * 2, lambda s: s.get("red", 0) > 200)
            if shown is None:
                page.screenshot(path=str(artifacts / f"{origin}-{name}-failed.png"))
            assert shown is not None, f"the segmentation is not drawn over the CT: {page.evaluate(CANVAS_STATS)}"
        all_frames = None
        while time.perf_counter() - started < ALL_FRAMES_TIMEOUT:
            if watch.frames_fetched(study) >= study.frames:
                all_frames = max(t for t, _ in watch.pixel_responses) - started
                break
            page.wait_for_timeout(200)
        page.wait_for_timeout(500)
        page.screenshot(path=str(artifacts / f"{origin}-{name}.png"))
        context.close()
    _record(
        artifacts,
        {
            "study": name,
            "origin": origin,
            "frames": study.frames,
            "frames_fetched": watch.frames_fetched(study),
            "time_to_first_image_s": round(first_image, 2),
            "time_to_all_frames_s": None if all_frames is None else round(all_frames, 2),
            **({"time_to_segmentation_s": round(shown, 2)} if shown is not None else {}),
        },
    )
    assert not watch.errors, watch.errors
    assert not watch.failed, watch.failed
    assert all_frames is not None, f"{watch.frames_fetched(study)} of {study.frames} frames fetched"
