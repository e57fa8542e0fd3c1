"""Rendered and thumbnail resources (PS3.18 §8.3.5, §10.4.1.1.4-5) over HTTP on the full app, with
instances generated here: a 512×512 16-bit CT with Rescale Slope/Intercept, MONOCHROME1, VOI LUT and
Modality LUT Sequences, an enhanced multi-frame with per-frame windows, palette colour with 8- and
16-bit entries, YBR_FULL and YBR_FULL_422 JPEG, multi-frame animations. Every image is compared
with a reference computed here with numpy from the PS3.3 formulas (§C.11.1, §C.11.2.1.2-3), not by
the server's code. Thumbnails are counted in S3 calls (botocore event hooks on moto).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore
from dicomweb_server.errors import ServiceUnavailable
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from tests.corpus import stow_body, to_part10

# -- instances made here ----------------------------------------------------------------------------


def new_dataset(
    pixels: np.ndarray | None,
    photometric: str = "MONOCHROME2",
    *,
    bits_stored: int | None = None,
    sop_class: str = CTImageStorage,
    study: str | None = None,
    series: str | None = None,
    **attributes: Any,
) -> Dataset:
    """A Part-10-ready dataset; ``pixels`` (frames, rows, columns[, 3]) or (rows, columns[, 3])."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientID = "RENDER-TEST"
    ds.PatientName = "RENDER^TEST"
    ds.StudyDate = "20240105"
    ds.Modality = "SR" if pixels is None else "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if pixels is not None:
        ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def store(client: TestClient, *datasets: Dataset) -> list[str]:
    """STOW-RS the datasets; their instance paths."""
    body, content_type = stow_body([to_part10(ds) for ds in datasets])
    response = client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    return [
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}" for ds in datasets
    ]


def ct_pixels(rows: int = 512, columns: int = 512, seed: int = 8) -> np.ndarray:
    """Stored values 0..4095 (12 of 16 bits): a smooth body-like ramp with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    body = 1024 + 600 * np.sin(x / 37.0) * np.cos(y / 53.0) + 900 * (x + y) / (rows + columns)
    return np.clip(body + rng.normal(0, 80, (rows, columns)), 0, 4095).astype(np.uint16)


SLOPE, INTERCEPT = 1.5, -1024.0


def ct(photometric: str = "MONOCHROME2", **attributes: Any) -> tuple[Dataset, np.ndarray]:
    """The 512×512 CT and its modality values (Rescale Slope 1.5, Intercept -1024)."""
    stored = ct_pixels()
    ds = new_dataset(
        stored,
        photometric,
        bits_stored=12,
        RescaleSlope=SLOPE,
        RescaleIntercept=INTERCEPT,
        RescaleType="HU",
        **attributes,
    )
    return ds, stored * SLOPE + INTERCEPT


# -- references (PS3.3 §C.11.2.1.2.1, §C.11.2.1.3.1, §C.11.2.1.3.2), independent of the server -----


def voi(x: np.ndarray, center: float, width: float, function: str = "linear") -> np.ndarray:
    x = x.astype(np.float64)
    if function == "linear":
        c, w = center - 0.5, width - 1
        y = ((x - c) / w + 0.5) * 255
        y = np.where(x <= c - w / 2, 0, np.where(x > c + w / 2, 255, y))
    elif function == "linear-exact":
        y = ((x - center) / width + 0.5) * 255
        y = np.where(x <= center - width / 2, 0, np.where(x > center + width / 2, 255, y))
    else:
        with np.errstate(over="ignore"):
            y = 255 / (1 + np.exp(-4 * (x - center) / width))
    return np.rint(np.clip(y, 0, 255)).astype(np.int64)


def decode(response, media_type: str = "image/png") -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    img = Image.open(io.BytesIO(response.content))
    assert img.format == media_type.split("/")[1].upper().replace("JPEG", "JPEG")
    return np.asarray(img.convert("RGB") if img.mode in ("RGB", "P") else img).astype(np.int64)


def get_png(client: TestClient, path: str, **params: Any) -> np.ndarray:
    return decode(client.get(path, params=params, headers={"Accept": "image/png"}))


def assert_equal_but_float_ties(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to the reference; a pixel may differ by one where x.5 rounds the other way in float."""
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (diff.max(), (diff > 0).mean())


def error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status
    return str(body["message"])


@pytest.fixture
def app_client(memory_client: TestClient) -> TestClient:
    return memory_client


# -- the VOI functions on a 16-bit CT ---------------------------------------------------------------


@pytest.fixture
def stored_ct(app_client: TestClient) -> tuple[str, np.ndarray]:
    ds, hu = ct(WindowCenter=40, WindowWidth=400)
    (path,) = store(app_client, ds)
    return path, hu


@pytest.mark.parametrize("function", ["linear", "linear-exact", "sigmoid"])
@pytest.mark.parametrize("window", [(40, 400), (-600, 1500), (300.5, 2.0)], ids=["soft-tissue", "lung", "narrow"])
def test_a_window_renders_the_ps3_3_function_of_the_modality_values(app_client, stored_ct, function, window):
    path, hu = stored_ct
    center, width = window
    got = get_png(app_client, f"{path}/rendered", window=f"{center},{width},{function}")
    assert_equal_but_float_ties(got, voi(hu, center, width, function))


def test_the_frame_resource_and_the_underscore_spelling_render_the_same(app_client, stored_ct):
    path, hu = stored_ct
    got = get_png(app_client, f"{path}/frames/1/rendered", window="100,700,LINEAR_EXACT")
    assert_equal_but_float_ties(got, voi(hu, 100, 700, "linear-exact"))


def test_linear_exact_is_not_linear(app_client, stored_ct):
    path, hu = stored_ct
    linear = get_png(app_client, f"{path}/rendered", window="300.5,2,linear")
    exact = get_png(app_client, f"{path}/rendered", window="300.5,2,linear-exact")
    assert set(np.unique(linear)) <= {0, 255}  # width 2: linear is a step
    assert len(np.unique(exact)) > 2  # linear-exact is a ramp over (299.5, 301.5]
    assert not np.array_equal(linear, exact)


def test_without_a_window_the_datasets_window_and_function_apply(app_client):
    ds, hu = ct(WindowCenter=[-500, 40], WindowWidth=[1400, 400], VOILUTFunction="SIGMOID")
    (path,) = store(app_client, ds)
    assert_equal_but_float_ties(get_png(app_client, f"{path}/rendered"), voi(hu, -500, 1400, "sigmoid"))


def test_without_any_window_the_frames_range_is_shown(app_client):
    ds, hu = ct()
    (path,) = store(app_client, ds)
    low, high = hu.min(), hu.max()
    want = np.rint((hu - low) * 255 / (high - low)).astype(np.int64)
    assert_equal_but_float_ties(get_png(app_client, f"{path}/rendered"), want)


def test_monochrome1_is_inverted(app_client):
    ds, hu = ct("MONOCHROME1", WindowCenter=40, WindowWidth=400)
    (path,) = store(app_client, ds)
    assert_equal_but_float_ties(get_png(app_client, f"{path}/rendered"), 255 - voi(hu, 40, 400))
    got = get_png(app_client, f"{path}/rendered", window="-600,1500,sigmoid")
    assert_equal_but_float_ties(got, 255 - voi(hu, -600, 1500, "sigmoid"))


# -- LUT sequences ------------------------------------------------------------------------------------


def lut_item(entries: np.ndarray, first_map: int, bits: int) -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [len(entries) % 65536, first_map, bits])  # LUT Descriptor
    item.add_new(0x00283006, "US", [int(v) for v in entries])  # LUT Data
    return item


def test_a_voi_lut_sequence_maps_the_values(app_client):
    stored = ct_pixels(256, 256)
    lut = np.rint(((np.arange(4096) / 4095.0) ** 0.5) * 65535).astype(np.uint16)  # a gamma curve
    ds = new_dataset(stored, bits_stored=12, sop_class=SecondaryCaptureImageStorage)
    ds.VOILUTSequence = Sequence([lut_item(lut, 0, 16)])
    (path,) = store(app_client, ds)
    want = np.rint(lut[stored].astype(np.float64) * 255 / 65535).astype(np.int64)
    assert np.array_equal(get_png(app_client, f"{path}/rendered"), want)
    # a window in the request replaces the dataset's VOI LUT
    assert_equal_but_float_ties(get_png(app_client, f"{path}/rendered", window="2048,4096"), voi(stored, 2048, 4096))


def test_a_modality_lut_sequence_comes_before_the_window(app_client):
    stored = ct_pixels(256, 256)
    lut = (np.arange(4096) * 3 // 2).astype(np.uint16)  # a Modality LUT of 16 bits
    ds = new_dataset(
        stored, bits_stored=12, sop_class=SecondaryCaptureImageStorage, WindowCenter=3000, WindowWidth=2000
    )
    ds.ModalityLUTSequence = Sequence([lut_item(lut, 0, 16)])
    ds.ModalityLUTSequence[0].ModalityLUTType = "OD"
    (path,) = store(app_client, ds)
    assert_equal_but_float_ties(get_png(app_client, f"{path}/rendered"), voi(lut[stored], 3000, 2000))


# -- enhanced multi-frame -----------------------------------------------------------------------------


def enhanced_ct(frames: int = 3) -> tuple[Dataset, np.ndarray, list[tuple[float, float, float, float]]]:
    """An Enhanced CT: rescale in the Shared Functional Groups (frame 3 overrides it), a window per
    frame, and a misleading top-level window that must not be used."""
    stored = np.stack([ct_pixels(128, 128, seed=n) for n in range(frames)])
    ds = new_dataset(stored, bits_stored=12, sop_class=EnhancedCTImageStorage, WindowCenter=0, WindowWidth=1)
    shared = Dataset()
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, -1024, "HU"
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    # (slope, intercept, center, width) of each frame
    expected = [(1.0, -1024.0, 40.0, 400.0), (1.0, -1024.0, -600.0, 1500.0), (2.0, -2048.0, 500.0, 3000.0)]
    per_frame = []
    for n in range(frames):
        item = Dataset()
        window = Dataset()
        window.WindowCenter, window.WindowWidth = expected[n][2], expected[n][3]
        item.FrameVOILUTSequence = Sequence([window])
        if n == 2:
            own = Dataset()
            own.RescaleSlope, own.RescaleIntercept, own.RescaleType = 2, -2048, "HU"
            item.PixelValueTransformationSequence = Sequence([own])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return ds, stored, expected


def test_enhanced_multiframe_uses_each_frames_functional_groups(app_client):
    ds, stored, expected = enhanced_ct()
    (path,) = store(app_client, ds)
    for number, (slope, intercept, center, width) in enumerate(expected, start=1):
        got = get_png(app_client, f"{path}/frames/{number}/rendered")
        assert_equal_but_float_ties(got, voi(stored[number - 1] * slope + intercept, center, width))
    # a window in the request still replaces the frame's own window, with the frame's own rescale
    got = get_png(app_client, f"{path}/frames/3/rendered", window="0,1000")
    assert_equal_but_float_ties(got, voi(stored[2] * 2.0 - 2048, 0, 1000))


# -- colour ----------------------------------------------------------------------------------------------


def rgb_pixels(rows: int = 96, columns: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:columns]
    return np.stack(
        [255 * x / (columns - 1), 255 * y / (rows - 1), 128 + 100 * np.sin((x + y) / 15.0)], axis=-1
    ).astype(np.uint8)


PALETTE_DATA = {"Red": 0x00281201, "Green": 0x00281202, "Blue": 0x00281203}


@pytest.mark.parametrize("layout", ["8-bit", "8-bit-in-16-bit-words", "16-bit"])
def test_palette_colour_entries_of_8_and_16_bits(app_client, layout):
    index = (np.add.outer(np.arange(64), np.arange(64)) * 2 % 256).astype(np.uint8)
    red, green, blue = np.arange(256), 255 - np.arange(256), (np.arange(256) * 3) % 256
    ds = new_dataset(index, "PALETTE COLOR", sop_class=SecondaryCaptureImageStorage)
    bits = 16 if layout == "16-bit" else 8
    for colour, entries in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, bits])
        if layout == "8-bit":
            data = entries.astype(np.uint8).tobytes()
        elif layout == "8-bit-in-16-bit-words":
            data = entries.astype("<u2").tobytes()
        else:
            data = (entries * 257).astype("<u2").tobytes()  # full 16-bit range: 255 → 65535
        ds.add_new(PALETTE_DATA[colour], "OW", data)
    (path,) = store(app_client, ds)
    want = np.stack([red[index], green[index], blue[index]], axis=-1)
    assert np.array_equal(get_png(app_client, f"{path}/rendered"), want)


def test_ybr_full_is_shown_as_rgb(app_client):
    rgb = rgb_pixels()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = new_dataset(ybr, "YBR_FULL", sop_class=SecondaryCaptureImageStorage)
    (path,) = store(app_client, ds)
    assert np.abs(get_png(app_client, f"{path}/rendered") - rgb.astype(np.int64)).max() <= 2


def test_ybr_full_422_jpeg_is_shown_in_its_colours(app_client):
    rgb = rgb_pixels()
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=95, subsampling=1)  # 4:2:2 YCbCr, JFIF
    ds = new_dataset(None, sop_class=SecondaryCaptureImageStorage, Modality="OT")
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([out.getvalue()])
    ds["PixelData"].VR = "OB"
    (path,) = store(app_client, ds)
    got = get_png(app_client, f"{path}/rendered")
    diff = np.abs(got - rgb.astype(np.int64))
    assert got.shape == rgb.shape
    assert diff.mean() < 3 and np.percentile(diff, 99) < 12, (diff.mean(), np.percentile(diff, 99))
    # red, green and blue are where they belong (a YCbCr shown as RGB would fail this by far)
    for channel in range(3):
        assert np.corrcoef(got[..., channel].ravel(), rgb[..., channel].ravel())[0, 1] > 0.99


# -- animations, viewport, quality, accept -------------------------------------------------------------


@pytest.fixture
def cine(app_client) -> tuple[str, np.ndarray]:
    ramp = np.tile((np.arange(60) * 4).astype(np.uint8), (40, 1))
    frames = np.stack([np.roll(ramp, 12 * n, axis=1) for n in range(5)])  # the ramp moves right
    ds = new_dataset(frames, sop_class=SecondaryCaptureImageStorage, FrameTime=40)
    (path,) = store(app_client, ds)
    return path, frames


def gif_frames(response) -> tuple[list[np.ndarray], list[int]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    img = Image.open(io.BytesIO(response.content))
    frames, durations = [], []
    for n in range(img.n_frames):
        img.seek(n)
        frames.append(np.asarray(img.convert("L")).astype(np.int64))
        durations.append(img.info["duration"])
    return frames, durations


def test_a_multiframe_instance_as_gif_is_an_animation_of_every_frame(app_client, cine):
    path, frames = cine
    got, durations = gif_frames(app_client.get(f"{path}/rendered", headers={"Accept": "image/gif"}))
    assert len(got) == 5 and durations == [40] * 5
    for n, frame in enumerate(got, start=1):
        assert np.array_equal(frame, get_png(app_client, f"{path}/frames/{n}/rendered"))
    # JPEG and PNG hold one frame: the first
    assert np.array_equal(get_png(app_client, f"{path}/rendered"), get_png(app_client, f"{path}/frames/1/rendered"))


def test_a_frame_list_renders_as_an_animation_of_those_frames(app_client, cine):
    path, _ = cine
    got, _ = gif_frames(app_client.get(f"{path}/frames/4,2/rendered", headers={"Accept": "image/jpeg, image/gif"}))
    assert len(got) == 2
    assert np.array_equal(got[0], get_png(app_client, f"{path}/frames/4/rendered"))
    assert np.array_equal(got[1], get_png(app_client, f"{path}/frames/2/rendered"))
    message = error(app_client.get(f"{path}/frames/1,2/rendered", headers={"Accept": "image/png"}), 406)
    assert "several frames are rendered only as image/gif" in message


@pytest.mark.parametrize(
    ("viewport", "size"),
    [
        ("128,128", (128, 128)),
        ("256,64", (64, 64)),
        ("64,256", (64, 64)),
        ("1024,1024", (1024, 1024)),
        ("300,200", (200, 200)),
    ],
)
def test_a_viewport_fits_the_image_keeping_its_aspect_ratio(app_client, stored_ct, viewport, size):
    path, hu = stored_ct
    got = get_png(app_client, f"{path}/rendered", viewport=viewport)
    assert got.shape == size
    full = Image.fromarray(voi(hu, 40, 400).astype(np.uint8)).resize(size, Image.Resampling.BOX)
    assert np.corrcoef(got.ravel(), np.asarray(full).ravel())[0, 1] > 0.95


def test_a_viewport_region_is_cropped_and_negative_sizes_flip_it(app_client, stored_ct):
    path, hu = stored_ct
    reference = voi(hu, 40, 400)
    region = get_png(app_client, f"{path}/rendered", viewport="256,128,100,50,256,128")
    assert np.array_equal(region, reference[50:178, 100:356])
    flipped = get_png(app_client, f"{path}/rendered", viewport="256,128,100,50,-256,-128")
    assert np.array_equal(flipped, reference[50:178, 100:356][::-1, ::-1])
    to_edge = get_png(app_client, f"{path}/rendered", viewport="512,512,400,,,")
    assert np.array_equal(
        to_edge,
        np.asarray(Image.fromarray(reference[:, 400:].astype(np.uint8)).resize((112, 512), Image.Resampling.LANCZOS)),
    )


def test_jpeg_quality_changes_the_size_not_the_picture(app_client, stored_ct):
    path, _ = stored_ct
    low = app_client.get(f"{path}/rendered", params={"quality": 20}, headers={"Accept": "image/jpeg"})
    high = app_client.get(f"{path}/rendered", params={"quality": 100}, headers={"Accept": "image/jpeg"})
    assert len(low.content) < len(high.content) / 2
    a, b = decode(low, "image/jpeg"), decode(high, "image/jpeg")
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_the_accept_query_parameter_replaces_the_header(app_client, stored_ct):
    path, _ = stored_ct
    response = app_client.get(f"{path}/rendered", params={"accept": "image/png"}, headers={"Accept": "image/jpeg"})
    assert response.headers["content-type"] == "image/png"
    response = app_client.get(f"{path}/rendered", headers={"Accept": "text/html, image/*;q=0.5"})
    assert response.headers["content-type"] == "image/jpeg"


def test_annotation_is_ignored_with_a_warning(app_client, stored_ct):
    path, _ = stored_ct
    plain = app_client.get(f"{path}/rendered", headers={"Accept": "image/png"})
    annotated = app_client.get(
        f"{path}/rendered", params={"annotation": "patient,technique"}, headers={"Accept": "image/png"}
    )
    assert annotated.status_code == 200 and annotated.content == plain.content
    assert "annotation is not supported" in annotated.headers["warning"]
    assert "warning" not in plain.headers


# -- study and series level ---------------------------------------------------------------------------


def test_study_and_series_render_the_middle_image_of_the_first_series_with_images(app_client):
    study = generate_uid()
    report = new_dataset(None, sop_class=BasicTextSRStorage, study=study, SeriesNumber=1)
    series = generate_uid()
    images = [
        new_dataset(
            ct_pixels(64, 64, seed=n), bits_stored=12, study=study, series=series, SeriesNumber=2, InstanceNumber=n
        )
        for n in (3, 1, 2)
    ]
    paths = store(app_client, report, *images)
    middle = paths[1 + [3, 1, 2].index(2)]
    want = get_png(app_client, f"{middle}/rendered")
    assert np.array_equal(get_png(app_client, f"/studies/{study}/rendered"), want)
    assert np.array_equal(get_png(app_client, f"/studies/{study}/series/{series}/rendered"), want)
    # the same for thumbnails
    thumb = get_png(app_client, f"{middle}/thumbnail")
    assert np.array_equal(get_png(app_client, f"/studies/{study}/thumbnail"), thumb)
    assert np.array_equal(get_png(app_client, f"/studies/{study}/series/{series}/thumbnail"), thumb)


# -- thumbnails -----------------------------------------------------------------------------------------


@pytest.fixture
def s3_app(aws) -> Iterator[tuple[TestClient, Any, list[tuple[str, str]]]]:
    """The app on S3 (moto) with an in-memory index; every S3 call as (operation, key)."""
    calls: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, str(params.get("Key", ""))))

    aws.s3.meta.events.register("before-parameter-build.s3", record)
    settings = Settings(bucket_name=aws.bucket, table_name=aws.table)
    client = TestClient(create_app(settings, index=MemoryIndex(), blobs=S3BlobStore(aws.s3, aws.bucket)))
    yield client, aws, calls
    aws.s3.meta.events.unregister("before-parameter-build.s3", record)


def test_a_thumbnail_is_cached_after_the_first_request(s3_app):
    client, aws, calls = s3_app
    ds, hu = ct(WindowCenter=40, WindowWidth=400)
    (path,) = store(client, ds)
    calls.clear()
    first = client.get(f"{path}/thumbnail", headers={"Accept": "image/jpeg"})
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    thumb_keys = [key for op, key in calls if key.startswith("derived/thumbnails/")]
    assert [op for op, _ in calls] == ["GetObject", "GetObject", "PutObject"]
    assert calls[1][1].startswith("studies/") and len(set(thumb_keys)) == 1
    key = thumb_keys[0]
    md5 = __import__("hashlib").md5(to_part10(ds)).hexdigest()
    assert f"/{ds.SOPInstanceUID}/{md5}/" in key
    assert Image.open(io.BytesIO(first.content)).size == (128, 128)
    calls.clear()
    second = client.get(f"{path}/thumbnail", headers={"Accept": "image/jpeg"})
    assert second.content == first.content
    assert calls == [("GetObject", key)]  # the cached thumbnail only: no instance read, no decode
    stored = aws.s3.get_object(Bucket=aws.bucket, Key=key)
    assert stored["ContentType"] == "image/jpeg" and stored["Body"].read() == first.content
    shown = np.asarray(Image.open(io.BytesIO(first.content))).astype(np.int64)
    reference = np.asarray(Image.fromarray(voi(hu, 40, 400).astype(np.uint8)).resize((128, 128), Image.Resampling.BOX))
    assert np.corrcoef(shown.ravel(), reference.ravel())[0, 1] > 0.98


def test_thumbnails_of_other_sizes_and_types_are_cached_apart(s3_app):
    client, aws, calls = s3_app
    ds, _ = ct()
    (path,) = store(client, ds)
    small = client.get(f"{path}/thumbnail", params={"viewport": "64,32"}, headers={"Accept": "image/png"})
    assert Image.open(io.BytesIO(small.content)).size == (32, 32)
    default = client.get(f"{path}/frames/1/thumbnail", headers={"Accept": "image/png"})
    assert Image.open(io.BytesIO(default.content)).size == (128, 128)
    gif = client.get(f"/studies/{ds.StudyInstanceUID}/thumbnail", headers={"Accept": "image/gif"})
    assert gif.headers["content-type"] == "image/gif"
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="derived/thumbnails/")["Contents"]
    assert len(listed) == 3


def test_concurrent_first_requests_store_one_thumbnail(s3_app):
    client, aws, _ = s3_app
    ds, _ = ct()
    (path,) = store(client, ds)
    bodies: list[bytes] = []
    lock = threading.Lock()

    def fetch() -> None:
        response = client.get(f"{path}/thumbnail", headers={"Accept": "image/png"})
        assert response.status_code == 200
        with lock:
            bodies.append(response.content)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 6 and len(set(bodies)) == 1
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="derived/thumbnails/")["Contents"]
    assert len(listed) == 1
    assert aws.s3.get_object(Bucket=aws.bucket, Key=listed[0]["Key"])["Body"].read() == bodies[0]


class FailingPuts(MemoryBlobStore):
    """Stores instances, but every thumbnail write is throttled."""

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        if key.startswith("derived/"):
            raise ServiceUnavailable("S3 is throttling")
        super().put(key, data, content_type)


def test_a_thumbnail_that_cannot_be_cached_is_still_answered(settings):
    blobs = FailingPuts()
    client = TestClient(create_app(settings, index=MemoryIndex(), blobs=blobs))
    ds, _ = ct()
    (path,) = store(client, ds)
    response = client.get(f"{path}/thumbnail", headers={"Accept": "image/png"})
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (128, 128)
    assert not [k for k in blobs.objects if k.startswith("derived/")]


def test_a_multiframe_thumbnail_shows_the_middle_frame(app_client, cine):
    path, _ = cine
    thumb = get_png(app_client, f"{path}/thumbnail")
    assert np.array_equal(thumb, get_png(app_client, f"{path}/frames/3/thumbnail"))
    assert not np.array_equal(thumb, get_png(app_client, f"{path}/frames/1/thumbnail"))


# -- bad input -------------------------------------------------------------------------------------------


BAD = [
    ("/rendered?window=40,0", "image/png", 400, "window width must be at least 1 for the linear function"),
    ("/rendered?window=40,-400", "image/png", 400, "window width must be at least 1"),
    ("/rendered?window=40,-400,sigmoid", "image/png", 400, "window width must be greater than 0 for the sigmoid"),
    ("/rendered?window=40,0,linear-exact", "image/png", 400, "greater than 0 for the linear-exact function"),
    ("/rendered?window=abc,400", "image/png", 400, "center 'abc' is not a number"),
    ("/rendered?window=40,wide", "image/png", 400, "width 'wide' is not a number"),
    ("/rendered?window=nan,400", "image/png", 400, "center must be a finite number"),
    ("/rendered?window=40,400,cubic", "image/png", 400, "window function 'cubic' is not supported"),
    ("/rendered?window=40,400,linear,x", "image/png", 400, "expected center,width[,function]"),
    ("/rendered?viewport=0,0", "image/png", 400, "width and height must be between 1 and 4096 pixels"),
    ("/rendered?viewport=100000,100000", "image/png", 400, "width and height must be between 1 and 4096 pixels"),
    ("/rendered?viewport=64,64,0,0,0,10", "image/png", 400, "sw and sh must not be 0"),
    ("/rendered?viewport=64,64,-1,0,10,10", "image/png", 400, "sx and sy must not be negative"),
    ("/rendered?viewport=64,64,600,0,10,10", "image/png", 400, "outside the 512x512 image"),
    ("/rendered?viewport=64,64,1", "image/png", 400, "expected width,height or width,height,sx,sy,sw,sh"),
    ("/rendered?quality=0", "image/jpeg", 400, "quality='0' must be a whole number from 1 to 100"),
    ("/rendered?quality=101", "image/jpeg", 400, "quality='101' must be a whole number from 1 to 100"),
    ("/rendered?quality=high", "image/jpeg", 400, "quality='high' must be a whole number from 1 to 100"),
    ("/rendered", "text/html", 406, "rendered images are available as image/jpeg, image/png, image/gif"),
    ("/frames/2/rendered", "image/png", 404, "frame 2 does not exist; the instance has 1 frame"),
    ("/frames/0/thumbnail", "image/png", 400, "'0' is not a frame number"),
    ("/thumbnail?viewport=0,10", "image/png", 400, "width and height must be between 1 and 4096 pixels"),
    ("/thumbnail", "application/dicom", 406, "rendered images are available as"),
]


@pytest.mark.parametrize(("suffix", "accept", "status", "message"), BAD, ids=[b[0] + " " + b[1] for b in BAD])
def test_bad_rendered_requests_say_what_was_wrong(app_client, stored_ct, suffix, accept, status, message):
    path, _ = stored_ct
    assert message in error(app_client.get(path + suffix, headers={"Accept": accept}), status)


def test_the_largest_viewport_is_a_setting(memory):
    settings = Settings(bucket_name="b", table_name="t", rendered_max_viewport=256)
    client = TestClient(create_app(settings, index=memory.index, blobs=memory.blobs))
    ds, _ = ct()
    (path,) = store(client, ds)
    assert "between 1 and 256 pixels" in error(client.get(f"{path}/rendered?viewport=257,10"), 400)
    assert get_png(client, f"{path}/rendered", viewport="256,256").shape == (256, 256)


def test_an_instance_without_pixels_is_a_406_naming_it(app_client):
    study = generate_uid()
    report = new_dataset(None, sop_class=BasicTextSRStorage, study=study)
    (path,) = store(app_client, report)
    for suffix in ("/rendered", "/thumbnail", "/frames/1/rendered"):
        message = error(app_client.get(path + suffix, headers={"Accept": "image/png"}), 406)
        assert f"instance {report.SOPInstanceUID} has no pixel data" in message
    for level in (f"/studies/{study}", f"/studies/{study}/series/{report.SeriesInstanceUID}"):
        for resource in ("/rendered", "/thumbnail"):
            message = error(app_client.get(level + resource), 406)
            assert "has no instance with pixel data to render" in message


@pytest.mark.parametrize("resource", ["rendered", "thumbnail"])
def test_unknown_uids_are_404s_naming_them(app_client, stored_ct, resource):
    path, _ = stored_ct
    _, _, study, _, series, _, sop = path.split("/")
    unknown = "1.2.3.4.5.6.7"
    cases = [
        (f"/studies/{unknown}/{resource}", f"study {unknown} is not stored here"),
        (f"/studies/{study}/series/{unknown}/{resource}", f"series {unknown} is not stored here"),
        (f"/studies/{study}/series/{series}/instances/{unknown}/{resource}", f"instance {unknown} is not stored here"),
        (f"/studies/{study}/series/{series}/instances/{unknown}/frames/1/{resource}", f"instance {unknown}"),
    ]
    for url, message in cases:
        assert message in error(app_client.get(url), 404)
    assert "is not a valid" in error(app_client.get(f"/studies/not-a-uid/{resource}"), 400)


def test_a_rendered_image_above_the_response_limit_is_a_413_with_a_hint(memory):
    settings = Settings(bucket_name="b", table_name="t", max_response_bytes=2000)
    client = TestClient(create_app(settings, index=memory.index, blobs=memory.blobs, services=["render"]))
    writer = TestClient(create_app(Settings(bucket_name="b", table_name="t"), index=memory.index, blobs=memory.blobs))
    ds, _ = ct()
    (path,) = store(writer, ds)
    assert "ask for a smaller viewport" in error(client.get(f"{path}/rendered", headers={"Accept": "image/png"}), 413)
    assert (
        client.get(f"{path}/rendered", params={"viewport": "16,16"}, headers={"Accept": "image/png"}).status_code == 200
    )


def test_what_was_stored_is_what_was_rendered(app_client, stored_ct):
    """The instance path reads back as the dataset that was stored (guards the helpers above)."""
    path, hu = stored_ct
    response = app_client.get(path, headers={"Accept": "application/dicom; transfer-syntax=*"})
    ds = dcmread(io.BytesIO(response.content))
    assert np.array_equal(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept), hu)


def test_the_render_settings_come_from_the_environment_and_must_be_positive():
    settings = Settings.from_env(
        {"BUCKET_NAME": "b", "TABLE_NAME": "t", "RENDERED_MAX_VIEWPORT": "512", "THUMBNAIL_SIZE": "64"}
    )
    assert (settings.rendered_max_viewport, settings.thumbnail_size) == (512, 64)
    default = Settings(bucket_name="b", table_name="t")
    assert (default.rendered_max_viewport, default.thumbnail_size) == (4096, 128)
    with pytest.raises(ValueError, match="thumbnail_size must be positive"):
        Settings(bucket_name="b", table_name="t", thumbnail_size=0)


def test_the_thumbnail_size_is_a_setting(memory):
    settings = Settings(bucket_name="b", table_name="t", thumbnail_size=50)
    client = TestClient(create_app(settings, index=memory.index, blobs=memory.blobs))
    ds, _ = ct()
    (path,) = store(client, ds)
    assert get_png(client, f"{path}/thumbnail").shape == (50, 50)
