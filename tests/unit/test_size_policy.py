"""The one large-response rule (``retrieve.size_policy``): branch by branch on hand-built records, then
each branch as a client sees it: a 413 that names what to ask for instead, decided before any
object is read when the size is known, or an answer built and measured when only a bound is."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.errors import PayloadTooLarge
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.records import StoredInstance
from dicomweb_server.retrieve import size_policy as policy
from dicomweb_server.retrieve.size_policy import Answer, Delivery, Size
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from tests.corpus import Instance, make_instance, make_study, stow_body

EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LS = "1.2.840.10008.1.2.4.80"
BASE = "https://pacs.example/dicomweb"
ANSWER = Answer("study", "retrieve its series one by one")


def stored(
    *,
    study: str = "1.2.3",
    series: str = "1.2.3.1",
    sop: str = "1.2.3.1.1",
    size: int = 1000,
    frames: int = 1,
    ts: str = EXPLICIT,
    rows: int | None = None,
    columns: int | None = None,
    samples: int | None = None,
    bits: int | None = None,
) -> StoredInstance:
    """A StoredInstance whose index attributes hold only the pixel-geometry attributes given."""
    attrs: dict[str, Any] = {}
    for tag, value in (("00280010", rows), ("00280011", columns), ("00280002", samples), ("00280100", bits)):
        if value is not None:
            attrs[tag] = {"vr": "US", "Value": [value]}
    return StoredInstance(
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid=ts,
        size=size,
        md5="0" * 32,
        number_of_frames=frames,
        attrs=attrs,
        series_attrs={},
        metadata=None,
    )


# -- decide and check_measured ---------------------------------------------------------------------


def test_an_exact_size_at_the_limit_is_sent_inline() -> None:
    assert policy.decide(Size(1000), ANSWER, 1000) is Delivery.INLINE
    assert policy.decide(Size(0), ANSWER, 1) is Delivery.INLINE


def test_an_exact_size_one_byte_above_the_limit_is_a_413_naming_size_limit_and_hint() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        policy.decide(Size(1001), ANSWER, 1000)
    assert caught.value.status == 413
    message = caught.value.message
    assert "study is 1001 bytes" in message
    assert "response limit of 1000 bytes" in message
    assert message.endswith("retrieve its series one by one")


def test_an_upper_bound_above_the_limit_is_measured_and_one_within_it_is_inline() -> None:
    assert policy.decide(Size(10**9, exact=False), ANSWER, 1000) is Delivery.MEASURE
    assert policy.decide(Size(1001, exact=False), ANSWER, 1000) is Delivery.MEASURE
    assert policy.decide(Size(1000, exact=False), ANSWER, 1000) is Delivery.INLINE
    assert policy.decide(Size(999, exact=False), ANSWER, 1000) is Delivery.INLINE


def test_check_measured_passes_at_the_limit_and_refuses_one_byte_more() -> None:
    assert policy.check_measured(500, ANSWER, 500) is None
    with pytest.raises(PayloadTooLarge, match=r"is 501 bytes, above this server's response limit of 500 bytes"):
        policy.check_measured(501, ANSWER, 500)


# -- sizes known before reading --------------------------------------------------------------------


def test_decoded_frame_bytes_is_rows_columns_samples_and_bytes_per_sample() -> None:
    assert policy.decoded_frame_bytes(stored(rows=4, columns=5, samples=3, bits=8)) == 60
    assert policy.decoded_frame_bytes(stored(rows=4, columns=5, samples=1, bits=16)) == 40
    assert policy.decoded_frame_bytes(stored(rows=4, columns=5, samples=1, bits=32)) == 80
    # SamplesPerPixel defaults to 1 and BitsAllocated to 16 when the index does not have them
    assert policy.decoded_frame_bytes(stored(rows=4, columns=5)) == 40
    # 1-bit (BitsAllocated 1) samples are counted as a byte each, never as zero
    assert policy.decoded_frame_bytes(stored(rows=4, columns=5, bits=1)) == 20
    # bits overrides BitsAllocated (rendered output is 8 bits per sample)
    assert policy.decoded_frame_bytes(stored(rows=4, columns=5, samples=3, bits=16), bits=8) == 60
    # no Rows/Columns: no pixels
    assert policy.decoded_frame_bytes(stored()) == 0


def test_decoded_frame_bytes_ignores_unreadable_values() -> None:
    inst = stored(rows=4, columns=5)
    broken = StoredInstance(**{**inst.__dict__, "attrs": {**inst.attrs, "00280002": {"vr": "US", "Value": ["x"]}}})
    assert policy.decoded_frame_bytes(broken) == 40


def test_instances_size_is_exact_as_stored_and_an_upper_bound_when_transcoding() -> None:
    a = stored(sop="1.1", size=1000, rows=10, columns=10, bits=16)
    b = stored(sop="1.2", size=2000, rows=10, columns=10, bits=16, frames=3, ts=JPEG_BASELINE)
    exact = 1000 + 2000 + 2 * policy.PART_OVERHEAD
    assert policy.instances_size([a, b], None) == Size(exact, exact=True)
    # asking for a stored syntax changes nothing
    assert policy.instances_size([a], EXPLICIT) == Size(1000 + policy.PART_OVERHEAD, exact=True)
    # only the instance that changes syntax adds its decoded frames and a header allowance
    # and, at the least, its decoded pixels (the unchanged one its stored size)
    bound = policy.instances_size([a, b], EXPLICIT)
    assert bound == Size(exact + 200 * 3 + policy.HEADER_ALLOWANCE, exact=False, least=1000 + 200 * 3)
    # an encoded target has no known least size
    assert policy.instances_size([b], [JPEG_LS]).least == 0


def test_a_bound_whose_least_size_does_not_fit_is_refused_before_it_is_built() -> None:
    answer = policy.Answer("study", "ask for less")
    with pytest.raises(PayloadTooLarge, match="the study is at least 900 bytes, above this server's streaming limit"):
        policy.choose(Size(5000, exact=False, least=900), answer, policy.Limits(100, 800))
    assert policy.choose(Size(5000, exact=False, least=700), answer, policy.Limits(100, 800)) is Delivery.MEASURE
    with pytest.raises(PayloadTooLarge, match="at least 900 bytes, above this server's response limit of 800"):
        policy.decide(Size(5000, exact=False, least=900), answer, 800)


def test_jpeg_frames_size_bounds_each_frame_by_its_8_bit_size_or_stored_share() -> None:
    small_file = stored(size=50, rows=10, columns=10, bits=16)  # 8-bit decoded: 100 bytes per frame
    big_file = stored(size=10_000, rows=10, columns=10, frames=2)  # 5000 stored bytes per frame
    assert policy.jpeg_frames_size([small_file]) == Size(100 + policy.PART_OVERHEAD, exact=False)
    assert policy.jpeg_frames_size([big_file]) == Size((5000 + policy.PART_OVERHEAD) * 2, exact=False)
    assert policy.jpeg_frames_size([small_file, big_file]).bytes == 300 + 10_400


def test_frames_size_is_exact_for_native_pixels_and_a_bound_for_encapsulated() -> None:
    inst = stored(size=500, rows=10, columns=10, bits=16)  # 200 decoded bytes per frame
    assert policy.frames_size(inst, 3, native_exact=True) == Size((200 + policy.PART_OVERHEAD) * 3, exact=True)
    assert policy.frames_size(inst, 3, native_exact=False) == Size(500 * 3 + policy.PART_OVERHEAD * 3, exact=False)
    big = stored(size=100, rows=100, columns=100, bits=16)  # decoded beats the stored size
    assert policy.frames_size(big, 1, native_exact=False) == Size(20_000 + policy.PART_OVERHEAD, exact=False)
    url = "https://example.org/studies/1/series/2/instances/3"  # each part's Content-Location counts too
    framing = policy.PART_FRAMING + len(url + "/frames/1")
    assert policy.frames_size(inst, 3, native_exact=True, location=url) == Size((200 + framing) * 3, exact=True)


def test_rendered_size_is_an_upper_bound_from_the_8_bit_size() -> None:
    inst = stored(rows=10, columns=20, samples=1, bits=16)
    assert policy.rendered_size(inst) == Size(200 * 3 + 4096, exact=False)


# -- what to ask for instead -------------------------------------------------------------------------


def test_a_multi_series_retrieve_hints_at_its_first_series() -> None:
    instances = [stored(series="1.2.3.9", sop="9.1"), stored(series="1.2.3.5", sop="5.1")]
    answer = policy.instances_answer(instances, "study", BASE)
    assert answer.what == "study"
    assert answer.smaller == f"retrieve its series one by one (for example {BASE}/studies/1.2.3/series/1.2.3.5)"
    assert policy.instances_answer(instances, "study", BASE, as_jpeg=True).what == "study as JPEG"


def test_a_single_series_retrieve_hints_at_an_instance() -> None:
    instances = [stored(sop="1.2.3.1.7"), stored(sop="1.2.3.1.8")]
    answer = policy.instances_answer(instances, "series", BASE)
    url = f"{BASE}/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.7"
    assert answer.smaller == f"retrieve its instances one by one (for example {url})"


def test_a_single_instance_retrieve_hints_at_its_frames() -> None:
    answer = policy.instances_answer([stored()], "instance", BASE)
    url = f"{BASE}/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1/frames/1"
    assert answer.smaller == f"retrieve its frames in smaller groups (for example {url})"


def test_metadata_hints_name_the_level_below() -> None:
    series_url = f"{BASE}/studies/1.2.3/series/1.2.3.1"
    two_series = [stored(), stored(series="1.2.3.2", sop="2.1")]
    study = policy.metadata_answer(two_series, "study", BASE)
    assert study.what == "metadata of the study"
    assert study.smaller == f"ask for the metadata of each series instead (for example {series_url}/metadata)"

    one_series = [stored(sop="1.2.3.1.1"), stored(sop="1.2.3.1.2")]
    instance_hint = (
        f"ask for the metadata of each instance instead (for example {series_url}/instances/1.2.3.1.1/metadata)"
    )
    assert policy.metadata_answer(one_series, "study", BASE).smaller == instance_hint
    assert policy.metadata_answer(one_series, "series", BASE).smaller == instance_hint

    instance = policy.metadata_answer([stored()], "instance", BASE)
    assert instance.what == "metadata of the instance"
    assert instance.smaller == f"retrieve the instance itself instead ({series_url}/instances/1.2.3.1.1)"


def test_search_frames_and_rendered_hints() -> None:
    assert "limit and offset" in policy.search_answer().smaller
    assert "fewer frames" in policy.frames_answer().smaller
    assert "smaller viewport" in policy.rendered_answer().smaller


# -- over HTTP -----------------------------------------------------------------------------------------

JPEG_STUDY = 'multipart/related; type="image/jpeg"'
OCTET_FRAMES = 'multipart/related; type="application/octet-stream"'


@dataclass
class CountingBlobs:
    """The archive's blob store, counting every object read."""

    inner: MemoryBlobStore
    gets: list[str] = field(default_factory=list)

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return self.inner.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.gets.append(key)
        return self.inner.get_range(key, start, end)

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        self.inner.put(key, data, content_type)

    def copy(self, source_key: str, target_key: str, **conditions: object) -> None:
        self.inner.copy(source_key, target_key, **conditions)  # type: ignore[arg-type]

    def delete(self, key: str) -> None:
        self.inner.delete(key)


@dataclass
class Archive:
    """One index and blob store, loaded through an app without a small limit, read through apps with one."""

    index: MemoryIndex = field(default_factory=MemoryIndex)
    blobs: MemoryBlobStore = field(default_factory=MemoryBlobStore)

    def store(self, instances: Iterable[Instance]) -> None:
        body, ctype = stow_body(list(instances))
        r = self.client().post("/studies", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text

    def client(self, limit: int | None = None) -> TestClient:
        return self.counted(limit)[0]

    def counted(self, limit: int | None = None) -> tuple[TestClient, CountingBlobs]:
        extra = {} if limit is None else {"max_response_bytes": limit}
        settings = Settings(bucket_name="size-bucket", table_name="size-table", **extra)
        blobs = CountingBlobs(self.blobs)
        return TestClient(create_app(settings, index=self.index, blobs=blobs)), blobs


@pytest.fixture
def archive() -> Archive:
    return Archive()


def instance_path(i: Instance) -> str:
    return f"/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}"


def too_large(r: Any) -> str:
    """The message of a 413 in the error shape every error has."""
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == 413 and body["error"] == "Payload Too Large"
    return str(body["message"])


def test_a_study_over_the_limit_is_refused_with_a_series_url_before_any_object_is_read(archive: Archive) -> None:
    study = make_study(("ct", "mr"))
    archive.store(study)
    client, blobs = archive.counted(limit=20_000)
    message = too_large(client.get(f"/studies/{study[0].study_uid}"))
    first_series = sorted(i.series_uid for i in study)[0]
    assert f"http://testserver/studies/{study[0].study_uid}/series/{first_series}" in message
    assert "retrieve its series one by one" in message
    assert "above this server's response limit of 20000 bytes" in message
    assert blobs.gets == []
    # following the hint works for the series that fits
    mr = next(i for i in study if i.source == "mr")
    assert client.get(f"/studies/{mr.study_uid}/series/{mr.series_uid}").status_code == 200


def test_a_single_series_over_the_limit_names_an_instance_url(archive: Archive) -> None:
    series = make_study(("mr",), instances_per_series=2)
    archive.store(series)
    client, blobs = archive.counted(limit=15_000)
    first = next(i for i in series if i.dataset().InstanceNumber == 1)
    message = too_large(client.get(f"/studies/{first.study_uid}/series/{first.series_uid}"))
    assert f"retrieve its instances one by one (for example http://testserver{instance_path(first)})" in message
    assert blobs.gets == []
    assert client.get(instance_path(first)).status_code == 200


def test_frames_over_the_limit_ask_for_fewer_frames_without_reading_the_object(archive: Archive) -> None:
    ct = make_instance("ct")  # 128 x 128 x 16 bits: 32 KiB of native pixel data per frame
    archive.store([ct])
    client, blobs = archive.counted(limit=30_000)
    message = too_large(client.get(instance_path(ct) + "/frames/1", headers={"Accept": OCTET_FRAMES}))
    assert "frames answer is" in message and "ask for fewer frames per request" in message
    assert blobs.gets == []


def test_encapsulated_frames_are_measured_and_one_frame_of_two_fits(archive: Archive) -> None:
    rle = make_instance("multiframe")  # two RLE frames of 100 x 100 RGB: about 30 kB each decoded
    archive.store([rle])
    client = archive.client(limit=45_000)
    message = too_large(client.get(instance_path(rle) + "/frames/1,2", headers={"Accept": OCTET_FRAMES}))
    assert "ask for fewer frames per request" in message
    assert client.get(instance_path(rle) + "/frames/1", headers={"Accept": OCTET_FRAMES}).status_code == 200


def test_a_study_as_jpeg_whose_bound_is_over_the_limit_is_sent_when_the_real_body_fits(archive: Archive) -> None:
    study = make_study(("ct", "mr"))
    archive.store(study)
    url = f"/studies/{study[0].study_uid}"
    real = len(archive.client().get(url, headers={"Accept": JPEG_STUDY}).content)
    index_view = archive.index.list_instances(study[0].study_uid)
    assert policy.jpeg_frames_size(index_view).bytes > real  # only the bound is above the limit
    r = archive.client(limit=real).get(url, headers={"Accept": JPEG_STUDY})
    assert r.status_code == 200
    assert len(r.content) == real
    assert r.headers["content-type"].startswith("multipart/related")


def test_a_study_as_jpeg_whose_real_body_does_not_fit_is_a_413_once_it_passes_the_limit(archive: Archive) -> None:
    """Measured as it is produced, and refused as soon as it passes the limit (never built whole)."""
    study = make_study(("ct", "mr"))
    archive.store(study)
    url = f"/studies/{study[0].study_uid}"
    real = len(archive.client().get(url, headers={"Accept": JPEG_STUDY}).content)
    message = too_large(archive.client(limit=real - 1).get(url, headers={"Accept": JPEG_STUDY}))
    assert f"the study as JPEG is more than {real - 1} bytes" in message
    assert f"limit of {real - 1} bytes" in message
    assert "retrieve its series one by one" in message


def test_series_metadata_over_the_limit_hints_at_instance_metadata(archive: Archive) -> None:
    series = make_study(("ct",), instances_per_series=2)  # about 11 kB of metadata per CT instance
    archive.store(series)
    client = archive.client(limit=15_000)
    first = next(i for i in series if i.dataset().InstanceNumber == 1)
    message = too_large(
        client.get(
            f"/studies/{first.study_uid}/series/{first.series_uid}/metadata", headers={"Accept-Encoding": "identity"}
        )
    )
    assert "metadata of the series is" in message
    assert f"(for example http://testserver{instance_path(first)}/metadata)" in message
    r = client.get(instance_path(first) + "/metadata")
    assert r.status_code == 200 and r.json()[0]["00080018"]["Value"] == [first.sop_uid]


def test_a_search_answer_over_the_limit_asks_for_limit_and_offset(archive: Archive) -> None:
    for _ in range(5):
        archive.store(make_study(("mr",), PatientID="SIZE-POLICY"))
    client = archive.client(limit=2_000)
    message = too_large(client.get("/studies", params={"PatientID": "SIZE-POLICY"}))
    assert "search result is" in message and "limit and offset" in message
    r = client.get("/studies", params={"PatientID": "SIZE-POLICY", "limit": 1})
    assert r.status_code == 200 and len(r.json()) == 1


def test_a_rendered_image_under_a_tiny_limit_is_413_and_a_smaller_viewport_fits(archive: Archive) -> None:
    ct = make_instance("ct")
    archive.store([ct])
    rendered = instance_path(ct) + "/rendered"
    full = len(archive.client().get(rendered).content)
    assert policy.rendered_size(archive.index.list_instances(ct.study_uid)[0]).bytes > full
    client = archive.client(limit=full - 1)
    message = too_large(client.get(rendered))
    assert f"the rendered image is {full} bytes" in message and "smaller viewport" in message
    r = client.get(rendered, params={"viewport": "32,32"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert archive.client(limit=full).get(rendered).status_code == 200


def test_an_exact_frames_size_is_never_below_the_body_sent(archive: Archive) -> None:
    ct = make_instance("ct")  # generate_uid(): 64-character UIDs, as real archives have
    archive.store([ct])
    url = instance_path(ct) + "/frames/1"
    real = len(archive.client().get(url, headers={"Accept": OCTET_FRAMES}).content)
    r = archive.client(limit=real - 1).get(url, headers={"Accept": OCTET_FRAMES})
    assert r.status_code == 413, f"a {len(r.content)}-byte body was sent under a {real - 1}-byte limit"
