"""STOW-RS over HTTP (PS3.18 §10.5) on create_app, with the in-memory ports and with S3/DynamoDB on moto."""

from __future__ import annotations

import hashlib

import pytest
from pydicom.uid import generate_uid

from dicomweb_server.settings import Settings
from tests.corpus import make_instance, make_study, stow_body, truncated

from .doubles import FailingIndex

FAILED_SOP_SEQUENCE, REFERENCED_SOP_SEQUENCE, RETRIEVE_URL = "00081198", "00081199", "00081190"
SOP_CLASS, SOP_INSTANCE, FAILURE_REASON = "00081150", "00081155", "00081197"
BASE = "http://testserver"


def stow(client, payloads, path="/studies", **headers):
    body, content_type = stow_body(payloads)
    return client.post(path, content=body, headers={"content-type": content_type, **headers})


def value(item, tag):
    return item[tag]["Value"][0]


def failures(response):
    """(SOP Instance UID or None, FailureReason) of every failed instance, in request order."""
    return [
        (item[SOP_INSTANCE].get("Value", [None])[0], value(item, FAILURE_REASON))
        for item in response.json()[FAILED_SOP_SEQUENCE]["Value"]
    ]


def stored_sops(response):
    return [value(item, SOP_INSTANCE) for item in response.json().get(REFERENCED_SOP_SEQUENCE, {}).get("Value", [])]


def assert_not_stored(backend, instance):
    assert not [k for k in backend.objects() if k.startswith(instance.prefix)]
    assert backend.index.indexed_md5(instance.study_uid, instance.series_uid, instance.sop_uid) is None


def test_store_returns_references_with_retrieve_urls(client, backend):
    study = make_study(("ct", "mr"))
    response = stow(client, study)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    assert FAILED_SOP_SEQUENCE not in body
    assert body[RETRIEVE_URL]["Value"] == [f"{BASE}/studies/{study[0].study_uid}"]
    refs = body[REFERENCED_SOP_SEQUENCE]["Value"]
    assert [(value(r, SOP_CLASS), value(r, SOP_INSTANCE)) for r in refs] == [
        (i.sop_class_uid, i.sop_uid) for i in study
    ]
    assert [value(r, RETRIEVE_URL) for r in refs] == [
        f"{BASE}/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}" for i in study
    ]
    assert backend.objects() == sorted(i.stored_key(backend.index) for i in study)
    for inst in study:
        assert backend.blobs.get(inst.stored_key(backend.index)) == inst.data
        assert (
            backend.index.indexed_md5(inst.study_uid, inst.series_uid, inst.sop_uid)
            == hashlib.md5(inst.data).hexdigest()
        )


def test_store_into_a_named_study(client, backend):
    inst = make_instance("mr")
    response = stow(client, [inst], path=f"/studies/{inst.study_uid}")
    assert response.status_code == 200
    assert stored_sops(response) == [inst.sop_uid]
    assert backend.objects() == [inst.stored_key(backend.index)]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_valid_parts_are_stored_and_bad_ones_reported_with_nothing_left_behind(client, backend):
    good = make_instance("ct")
    cut = make_instance("mr")
    no_class = make_instance("mr", SOPClassUID=None)
    bad_uid = make_instance("ct", SeriesInstanceUID="1.2.abc")
    response = stow(client, [good, b"this is not DICOM " * 20, truncated(cut.data), no_class, bad_uid])
    assert response.status_code == 202
    assert stored_sops(response) == [good.sop_uid]
    assert failures(response) == [(None, 0xC000), (None, 0xC000), (no_class.sop_uid, 0xA900), (bad_uid.sop_uid, 0xA900)]
    assert backend.objects() == [good.stored_key(backend.index)]
    for bad in (cut, no_class):
        assert_not_stored(backend, bad)
    warning = response.headers["warning"]
    assert "part 2: not a DICOM Part-10 file" in warning
    assert "part 3: DICOM file is truncated" in warning
    assert "part 4: SOPClassUID is missing" in warning


def test_nothing_valid_is_409(client, backend):
    response = stow(client, [b"garbage" * 30, truncated(make_instance("ct").data)])
    assert response.status_code == 409
    assert [reason for _, reason in failures(response)] == [0xC000, 0xC000]
    assert REFERENCED_SOP_SEQUENCE not in response.json()
    assert RETRIEVE_URL not in response.json()
    assert backend.objects() == []


def test_instances_of_another_study_are_refused_on_post_to_a_study(client, backend):
    wanted = generate_uid()
    mine = make_instance("ct", study_uid=wanted)
    other = make_instance("mr")
    response = stow(client, [mine, other], path=f"/studies/{wanted}")
    assert response.status_code == 202
    assert failures(response) == [(other.sop_uid, 0xA901)]
    assert "belongs to study" in response.headers["warning"]
    assert response.json()[RETRIEVE_URL]["Value"] == [f"{BASE}/studies/{wanted}"]
    assert_not_stored(backend, other)
    assert backend.objects() == [mine.stored_key(backend.index)]
    assert stow(client, [other], path=f"/studies/{wanted}").status_code == 409


def test_storing_the_same_instance_again_is_idempotent(client, backend):
    inst = make_instance("ct")
    assert stow(client, [inst]).status_code == 200
    again = stow(client, [inst])
    assert again.status_code == 200
    assert stored_sops(again) == [inst.sop_uid]
    assert backend.objects() == [inst.stored_key(backend.index)]
    (study,) = client.get("/studies", params={"StudyInstanceUID": inst.study_uid}).json()
    assert study["00201208"]["Value"] == [1]
    assert study["00201206"]["Value"] == [1]


def test_same_sop_instance_uid_with_different_content_is_refused(client, backend):
    original = make_instance("ct", PatientName="ORIGINAL^ONE")
    impostor = make_instance(
        "ct",
        study_uid=original.study_uid,
        series_uid=original.series_uid,
        sop_uid=original.sop_uid,
        PatientName="IMPOSTOR^TWO",
    )
    assert stow(client, [original]).status_code == 200
    response = stow(client, [impostor])
    assert response.status_code == 409
    assert failures(response) == [(original.sop_uid, 0x0111)]
    assert backend.blobs.get(original.stored_key(backend.index)) == original.data
    assert (
        backend.index.indexed_md5(original.study_uid, original.series_uid, original.sop_uid)
        == hashlib.md5(original.data).hexdigest()
    )
    (study,) = client.get("/studies", params={"StudyInstanceUID": original.study_uid}).json()
    assert study["00100010"]["Value"] == [{"Alphabetic": "ORIGINAL^ONE"}]


@pytest.mark.parametrize("source", ["ct", "jpeg", "multiframe"])
@pytest.mark.parametrize("missing", [1, 100, "half"])
def test_truncated_part10_is_cannot_understand_and_not_stored(client, backend, source, missing):
    inst = make_instance(source)
    data = truncated(inst.data, len(inst.data) // 2 if missing == "half" else missing)
    response = stow(client, [data])
    assert response.status_code == 409
    assert [reason for _, reason in failures(response)] == [0xC000]
    assert backend.objects() == []
    assert_not_stored(backend, inst)


@pytest.mark.parametrize(
    "body_of, message",
    [
        (lambda body: body[: len(body) - 20], "missing closing delimiter"),
        (
            lambda body: body.replace(b"Content-Type: application/dicom", b"Content-Type application/dicom", 1),
            "malformed part header",
        ),
        (lambda body: b"", "the request body is empty"),
    ],
)
def test_malformed_multipart_is_400_and_stores_nothing(client, backend, body_of, message):
    body, content_type = stow_body([make_instance("ct"), make_instance("mr")])
    response = client.post("/studies", content=body_of(body), headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == 400
    assert message in response.json()["message"]
    assert backend.objects() == []


def test_boundary_that_is_not_in_the_body_is_400(memory_client, memory):
    body, _ = stow_body([make_instance("ct")])
    response = memory_client.post(
        "/studies", content=body, headers={"content-type": 'multipart/related; type="application/dicom"; boundary=nope'}
    )
    assert response.status_code == 400
    assert "does not contain the boundary 'nope'" in response.json()["message"]
    assert memory.objects() == []


@pytest.mark.parametrize(
    "content_type, status, message",
    [
        ('multipart/related; type="image/png"; boundary=b', 415, 'type="image/png" is not a STOW-RS request'),
        ("application/json", 415, "multipart/related"),
        ("application/dicom", 415, "multipart/related"),
        ('multipart/related; type="application/dicom"', 400, "no boundary parameter"),
        (None, 400, "Content-Type is missing"),
        ("not a media type", 400, "is not a media type"),
    ],
)
def test_wrong_content_type_is_refused_before_anything_is_stored(memory_client, memory, content_type, status, message):
    body, _ = stow_body([make_instance("ct")], boundary="b")
    headers = {"content-type": content_type} if content_type else {}
    response = memory_client.post("/studies", content=body, headers=headers)
    assert response.status_code in (status if isinstance(status, tuple) else (status,))
    assert message in response.json()["message"]
    assert memory.objects() == []


def test_body_above_the_request_limit_is_413(make_client, backend, settings):
    client = make_client(
        Settings(bucket_name=settings.bucket_name, table_name=settings.table_name, max_request_bytes=20_000)
    )
    response = stow(client, [make_instance("ct")])  # about 39 kB
    assert response.status_code == 413
    assert "accepts at most 20000 bytes" in response.json()["message"]
    assert "upload session: POST http://testserver/uploads" in response.json()["message"]
    assert backend.objects() == []
    assert stow(client, [make_instance("mr")]).status_code == 200  # about 10 kB is fine


@pytest.mark.parametrize("uid", ["abc", "1..2", "1." + "2" * 63, "1.2.3%0A"])
def test_invalid_study_uid_in_the_path_is_400(memory_client, memory, uid):
    response = stow(memory_client, [make_instance("ct")], path=f"/studies/{uid}")
    assert response.status_code == 400
    assert "Study Instance UID" in response.json()["message"]
    assert memory.objects() == []


@pytest.mark.parametrize("accept", ["image/png", 'multipart/related; type="application/dicom"'])
def test_unsatisfiable_accept_is_406_and_stores_nothing(memory_client, memory, accept):
    response = stow(memory_client, [make_instance("ct")], accept=accept)
    assert response.status_code == 406
    assert "application/dicom+json" in response.json()["message"]
    assert memory.objects() == []


@pytest.mark.parametrize(
    "accept",
    [
        "application/dicom+xml",
        'multipart/related; type="application/dicom+xml"',  # how several clients ask for it
        "multipart/related; type=application/dicom+xml, application/dicom+json;q=0.5",
        "application/xml",
    ],
)
def test_xml_response_when_asked(client, accept):
    inst = make_instance("ct")
    response = stow(client, [inst], accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+xml")
    assert f'<Value number="1">{inst.sop_uid}</Value>' in response.text


def test_a_failing_index_write_leaves_no_object_behind(make_client, backend):
    client = make_client(index=FailingIndex(backend.index), raise_server_exceptions=False)
    inst = make_instance("ct")
    response = stow(client, [inst])
    assert response.status_code == 409  # that instance failed; the request itself was fine
    [failed] = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0x0110]
    assert "could not be stored" in response.headers["Warning"]
    assert backend.objects() == []
    assert_not_stored(backend, inst)


def test_a_bug_while_storing_is_a_500_not_a_polite_failure_and_leaves_no_object(make_client, backend):
    """Only storage errors become per-instance failures: anything else is a server fault that must
    surface (a 500, logged by type), so a test that says "never a 5xx" can catch a bug."""

    class Buggy:
        def __getattr__(self, name):
            return getattr(backend.index, name)

        def add_instance(self, record):
            raise KeyError("a bug")

    client = make_client(index=Buggy(), raise_server_exceptions=False)
    inst = make_instance("ct")
    body, ctype = stow_body([inst])
    response = client.post("/studies", content=body, headers={"content-type": ctype})
    assert response.status_code == 500
    assert backend.objects() == []
    assert_not_stored(backend, inst)
