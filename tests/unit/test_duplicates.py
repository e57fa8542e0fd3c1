"""The duplicate policy (``DuplicatePolicy``: reject, accept-identical, overwrite), on the in-memory
index and on DynamoDB (moto): barrier-interleaved writers of one SOP Instance UID end with exactly
one object whose MD5 the index names, each told the truth; an overwrite moves the index, the
aggregates, the postings and the stored metadata to the new version, bumps the series ``ver`` and
leaves the old object as a noncurrent S3 version."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydicom.uid import generate_uid
from starlette.testclient import TestClient

from dicomweb_server.index.keys import META, series_sk, study_pk
from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.settings import DuplicatePolicy, Settings
from dicomweb_server.store.drop import index_dropped
from dicomweb_server.store.ingest import InvalidInstance, Reason, Stored, ingest
from dicomweb_server.store.repair import repair
from dicomweb_server.web import create_app
from tests.corpus import Instance, make_instance, stow_body
from tests.unit.conftest import BUCKET, TABLE, Backend

REJECT, IDENTICAL, OVERWRITE = DuplicatePolicy.REJECT, DuplicatePolicy.ACCEPT_IDENTICAL, DuplicatePolicy.OVERWRITE


class Gate:
    """A blob store whose ``put`` waits until every writer has read the index and is about to
    write: all of them then race for the index's conditional write."""

    def __init__(self, blobs: Any, writers: int) -> None:
        self._blobs = blobs
        self._barrier = threading.Barrier(writers, timeout=60)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)

    def put(self, key: str, data: bytes, content_type: str = "application/dicom") -> None:
        self._barrier.wait()
        self._blobs.put(key, data, content_type)


def store(backend: Backend, data: bytes, policy: DuplicatePolicy, blobs: Any = None) -> Stored | Reason:
    try:
        return ingest(data, index=backend.index, blobs=blobs or backend.blobs, duplicate_policy=policy).outcome
    except InvalidInstance as exc:
        return exc.reason


def race(backend: Backend, contents: list[bytes], policy: DuplicatePolicy) -> list[Stored | Reason]:
    gate = Gate(backend.blobs, len(contents))
    with ThreadPoolExecutor(len(contents)) as pool:
        return list(pool.map(lambda data: store(backend, data, policy, gate), contents))


def versions(count: int, **attrs: Any) -> list[Instance]:
    """``count`` different files with the same study, series and SOP Instance UIDs."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    return [
        make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientID=f"DUP-{n}", **attrs)
        for n in range(count)
    ]


def one_object(backend: Backend, inst: Instance) -> bytes:
    """Exactly one object under the instance's folder, it is the one the index names, its MD5
    is the index's, and the study still counts one instance."""
    md5, key = backend.index.indexed_object(inst.study_uid, inst.series_uid, inst.sop_uid)
    assert [k for k in backend.objects() if k.startswith(inst.prefix)] == [key]
    stored = backend.blobs.get(key)
    assert hashlib.md5(stored).hexdigest() == md5  # noqa: S324
    assert backend.index.get_study(inst.study_uid).instance_count == 1
    return stored


def item(backend: Backend, pk: str, sk: str) -> dict[str, Any]:
    got = backend.index.store.get(pk, sk)  # type: ignore[attr-defined]
    assert got is not None
    return got


def studies(backend: Backend, *params: tuple[str, str]) -> list[str]:
    return [s.study_uid for s in backend.index.search_studies(parse_query(list(params), Level.STUDY)).items]


# -- races, every policy, both indexes ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", [REJECT, IDENTICAL])
def test_racing_writers_of_other_content_one_is_stored_the_other_told_0x0111(backend, policy) -> None:
    a, b = versions(2)
    outcomes = race(backend, [a.data, b.data], policy)
    assert sorted(map(str, outcomes)) == sorted([str(Stored.NEW), str(Reason.DUPLICATE_SOP_INSTANCE)])
    assert one_object(backend, a) == [a, b][outcomes.index(Stored.NEW)].data


def test_reject_refuses_even_the_same_bytes_racing_or_later(backend) -> None:
    (a,) = versions(1)
    outcomes = race(backend, [a.data] * 3, REJECT)
    assert outcomes.count(Stored.NEW) == 1 and outcomes.count(Reason.DUPLICATE_SOP_INSTANCE) == 2
    assert store(backend, a.data, REJECT) is Reason.DUPLICATE_SOP_INSTANCE
    assert one_object(backend, a) == a.data


def test_accept_identical_racing_identical_writers_all_succeed(backend) -> None:
    (a,) = versions(1)
    outcomes = race(backend, [a.data] * 3, IDENTICAL)
    assert outcomes.count(Stored.NEW) == 1 and outcomes.count(Stored.IDENTICAL_DUPLICATE) == 2
    assert one_object(backend, a) == a.data


def test_concurrent_overwriters_all_stored_the_last_commit_wins_losers_removed(backend) -> None:
    first, *others = versions(4)
    assert store(backend, first.data, OVERWRITE) is Stored.NEW
    outcomes = race(backend, [o.data for o in others], OVERWRITE)
    assert outcomes == [Stored.REPLACED] * 3  # each did replace what was stored when it committed
    stored = one_object(backend, first)
    assert stored in [o.data for o in others]
    assert item(backend, study_pk(first.study_uid), series_sk(first.series_uid))["ver"] == 1 + 3


def test_racing_first_writers_under_overwrite_end_with_one_object(backend) -> None:
    contents = versions(3)
    outcomes = race(backend, [c.data for c in contents], OVERWRITE)
    assert outcomes.count(Stored.NEW) == 1 and outcomes.count(Stored.REPLACED) == 2
    one_object(backend, contents[0])
    summary = backend.index.get_study(contents[0].study_uid)
    assert (summary.instance_count, summary.series_count) == (1, 1)


def test_overwrite_with_the_same_bytes_changes_nothing(backend) -> None:
    (a,) = versions(1)
    assert store(backend, a.data, OVERWRITE) is Stored.NEW
    before = item(backend, study_pk(a.study_uid), series_sk(a.series_uid))
    assert store(backend, a.data, OVERWRITE) is Stored.IDENTICAL_DUPLICATE
    assert item(backend, study_pk(a.study_uid), series_sk(a.series_uid)) == before
    assert one_object(backend, a) == a.data


# -- what an overwrite changes ------------------------------------------------------------------------------


def test_overwrite_moves_the_study_in_search_and_changes_series_metadata(backend) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    old = make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientName="OLDNAME^ANNA")
    sibling = make_instance("ct", study_uid=study, series_uid=series, PatientName="OLDNAME^ANNA")
    new = make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientName="NEWNAME^BERT")
    for inst in (old, sibling):
        assert store(backend, inst.data, OVERWRITE) is Stored.NEW
    assert studies(backend, ("PatientName", "OLDNAME*")) == [study]
    assert store(backend, new.data, OVERWRITE) is Stored.REPLACED
    assert studies(backend, ("PatientName", "OLDNAME*")) == []
    assert studies(backend, ("PatientName", "OLDNAME^ANNA")) == []
    assert studies(backend, ("PatientName", "NEWNAME*")) == [study]
    assert studies(backend, ("PatientName", "bert"), ("fuzzymatching", "true")) == [study]
    # the old name's postings are gone, not just filtered
    assert not [k for k in _postings(backend) if "OLDNAME" in k]
    metadata = {i.sop_uid: i.metadata for i in backend.index.list_instances(study, series, with_metadata=True)}
    assert metadata[sop]["00100010"]["Value"] == [{"Alphabetic": "NEWNAME^BERT"}]
    summary = backend.index.get_study(study)
    assert (summary.instance_count, summary.series_count) == (2, 1)
    assert summary.attrs["00100010"]["Value"] == [{"Alphabetic": "NEWNAME^BERT"}]
    assert item(backend, study_pk(study), series_sk(series))["ver"] == 3  # two adds, one overwrite
    assert item(backend, study_pk(study), META)["ver"] == 3


def _postings(backend: Backend) -> list[str]:
    """Every posting partition key in the index (memory: its items; moto: a scan, tests only)."""
    store = backend.index.store  # type: ignore[attr-defined]
    if hasattr(store, "_items"):
        return [pk for pk, part in store._items.items() if pk.startswith("P#") and part]
    client, table = store._db, store.table
    keys: list[str] = []
    for page in client.get_paginator("scan").paginate(TableName=table):
        keys += [i["pk"]["S"] for i in page["Items"] if i["pk"]["S"].startswith("P#")]
    return keys


def test_overwrite_recounts_modalities_and_sop_classes_exactly(backend) -> None:
    study, ct_series, mr_series, sop = generate_uid(), generate_uid(), generate_uid(), generate_uid()
    ct = make_instance("ct", study_uid=study, series_uid=ct_series, sop_uid=sop)
    mr = make_instance("mr", study_uid=study, series_uid=mr_series)
    for inst in (ct, mr):
        assert store(backend, inst.data, OVERWRITE) is Stored.NEW
    summary = backend.index.get_study(study)
    assert summary.modalities == ("CT", "MR") and len(summary.sop_classes) == 2
    # the CT instance is sent again as an MR image (its series' only instance)
    as_mr = make_instance("mr", study_uid=study, series_uid=ct_series, sop_uid=sop)
    assert store(backend, as_mr.data, OVERWRITE) is Stored.REPLACED
    summary = backend.index.get_study(study)
    assert summary.modalities == ("MR",)
    assert summary.sop_classes == (mr.sop_class_uid,)
    assert (summary.instance_count, summary.series_count) == (2, 2)
    assert studies(backend, ("ModalitiesInStudy", "CT")) == []
    assert studies(backend, ("ModalitiesInStudy", "MR")) == [study]
    series = backend.index.search_series_everywhere(parse_query([("Modality", "MR")], Level.SERIES))
    assert sorted(s.series_uid for s in series.items) == sorted([ct_series, mr_series])
    assert backend.index.search_series_everywhere(parse_query([("Modality", "CT")], Level.SERIES)).items == []


def test_overwrite_that_moves_the_study_date_moves_every_posting(backend) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    old = make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, StudyDate="20190304")
    other_series = make_instance("mr", study_uid=study, StudyDate="20190304")
    for inst in (old, other_series):
        assert store(backend, inst.data, OVERWRITE) is Stored.NEW
    new = make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, StudyDate="20240506")
    assert store(backend, new.data, OVERWRITE) is Stored.REPLACED
    assert studies(backend, ("StudyDate", "20190101-20191231")) == []
    assert studies(backend, ("StudyDate", "20240506")) == [study]
    assert studies(backend, ("ModalitiesInStudy", "MR"), ("StudyDate", "20240101-")) == [study]
    for modality in ("CT", "MR"):  # each series once, in the new month
        page = backend.index.search_series_everywhere(parse_query([("Modality", modality)], Level.SERIES))
        assert len(page.items) == 1
    assert studies(backend) == [study]  # listed once


def test_concurrent_overwrites_of_several_instances_keep_aggregates_exact(backend) -> None:
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(4)]
    for n, sop in enumerate(sops):
        made = make_instance("ct", study_uid=study, series_uid=series, sop_uid=sop, PatientName="A^B", Modality="CT")
        assert store(backend, made.data, OVERWRITE) is Stored.NEW, n
    # every instance is sent again at once, as MR with a new name; plus two new instances
    again = [
        make_instance("mr", study_uid=study, series_uid=series, sop_uid=sop, PatientName="C^D", Modality="MR")
        for sop in sops
    ]
    extra = [make_instance("ct", study_uid=study, series_uid=series, Modality="CT") for _ in range(2)]
    outcomes = race(backend, [i.data for i in again + extra], OVERWRITE)
    assert outcomes == [Stored.REPLACED] * 4 + [Stored.NEW] * 2
    summary = backend.index.get_study(study)
    assert (summary.instance_count, summary.series_count) == (6, 1)
    assert summary.modalities == ("CT", "MR")
    assert set(summary.sop_classes) == {again[0].sop_class_uid, extra[0].sop_class_uid}
    assert studies(backend, ("PatientName", "C^D")) == [study]
    assert item(backend, study_pk(study), series_sk(series))["ver"] == 4 + 4 + 2
    assert item(backend, study_pk(study), series_sk(series))["n_inst"] == 6
    for inst in again:
        one_object_of(backend, inst)


def one_object_of(backend: Backend, inst: Instance) -> None:
    md5, key = backend.index.indexed_object(inst.study_uid, inst.series_uid, inst.sop_uid)
    assert [k for k in backend.objects() if k.startswith(inst.prefix)] == [key]
    assert backend.blobs.get(key) == inst.data and hashlib.md5(inst.data).hexdigest() == md5  # noqa: S324


def test_the_replaced_object_stays_as_a_noncurrent_s3_version(aws) -> None:
    from dicomweb_server.blobs.s3 import S3BlobStore
    from dicomweb_server.index.dynamodb import DynamoDbIndex

    index, blobs = DynamoDbIndex(aws.dynamodb, aws.table), S3BlobStore(aws.s3, aws.bucket)
    old, new = versions(2)
    ingest(old.data, index=index, blobs=blobs, duplicate_policy=OVERWRITE)
    _, old_key = index.indexed_object(old.study_uid, old.series_uid, old.sop_uid)
    assert ingest(new.data, index=index, blobs=blobs, duplicate_policy=OVERWRITE).outcome is Stored.REPLACED
    listed = aws.s3.list_object_versions(Bucket=aws.bucket, Prefix=old_key)
    (kept,) = [v for v in listed.get("Versions", []) if v["Key"] == old_key]
    assert not kept["IsLatest"]
    recovered = aws.s3.get_object(Bucket=aws.bucket, Key=old_key, VersionId=kept["VersionId"])["Body"].read()
    assert recovered == old.data


def test_every_add_bumps_the_series_ver(backend) -> None:
    study, series = generate_uid(), generate_uid()
    for n in range(3):
        store(backend, make_instance("ct", study_uid=study, series_uid=series).data, IDENTICAL)
        assert item(backend, study_pk(study), series_sk(series))["ver"] == n + 1


# -- a write whose answer was lost --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [REJECT, IDENTICAL, OVERWRITE])
def test_an_entry_whose_object_is_gone_is_not_called_stored(backend, policy) -> None:
    """The index write's answer was lost, its writer removed its object, and then the write
    landed: the index names an object that is not there. The next writer of the instance is not
    told "already stored": its object takes the entry's place."""
    (a,) = versions(1)
    index = backend.index

    class LateWrite:
        def __getattr__(self, name: str) -> Any:
            return getattr(index, name)

        def add_instance(self, record: Any) -> Any:
            self.landing = record
            raise TimeoutError("the answer was lost")

    late = LateWrite()
    with pytest.raises(TimeoutError):
        ingest(a.data, index=late, blobs=backend.blobs, duplicate_policy=policy)  # type: ignore[arg-type]
    assert [k for k in backend.objects() if k.startswith(a.prefix)] == []  # removed, as it was not indexed
    index.add_instance(late.landing)  # ... and now the write lands
    assert store(backend, a.data, policy) is Stored.REPLACED
    assert one_object(backend, a) == a.data
    assert store(backend, a.data, IDENTICAL) is Stored.IDENTICAL_DUPLICATE


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [(REJECT, ("rejected", 0x0111)), (IDENTICAL, ("rejected", 0x0111)), (OVERWRITE, ("indexed", None))],
)
def test_the_s3_drop_follows_the_policy(backend, policy, outcome) -> None:
    old, new = versions(2)
    assert store(backend, old.data, policy) is Stored.NEW
    backend.blobs.put("incoming/again.dcm", new.data)
    got, reason = index_dropped("incoming/again.dcm", index=backend.index, blobs=backend.blobs, duplicate_policy=policy)
    assert (got.value, reason) == outcome
    assert one_object(backend, old) == (new.data if policy is OVERWRITE else old.data)
    assert ("rejected/again.dcm" in backend.objects()) is (policy is not OVERWRITE)
    assert "incoming/again.dcm" not in backend.objects()


def test_a_replacement_whose_answer_was_lost_keeps_the_new_object(backend) -> None:
    """The replacing write landed but its writer saw an error: the object the index now names
    stays (the old one is left for the repair command, named by no entry), and sending the new
    version again is an identical duplicate."""
    old, new = versions(2)
    assert store(backend, old.data, OVERWRITE) is Stored.NEW
    _, old_key = backend.index.indexed_object(old.study_uid, old.series_uid, old.sop_uid)
    index = backend.index

    class LostAnswer:
        def __getattr__(self, name: str) -> Any:
            return getattr(index, name)

        def replace_instance(self, record: Any, was: tuple[str, str]) -> bool:
            assert index.replace_instance(record, was)
            raise TimeoutError("the answer was lost")

    with pytest.raises(TimeoutError):
        ingest(new.data, index=LostAnswer(), blobs=backend.blobs, duplicate_policy=OVERWRITE)  # type: ignore[arg-type]
    md5, key = index.indexed_object(old.study_uid, old.series_uid, old.sop_uid)
    assert backend.blobs.get(key) == new.data and md5 == new.md5
    assert sorted(k for k in backend.objects() if k.startswith(old.prefix)) == sorted([key, old_key])
    assert store(backend, new.data, OVERWRITE) is Stored.IDENTICAL_DUPLICATE
    assert repair(index, backend.blobs, grace=0).removed == [old_key]
    assert one_object(backend, old) == new.data


def test_repair_indexes_waiting_files_with_the_policy_it_is_given(memory) -> None:
    old, new = versions(2)
    assert store(memory, old.data, OVERWRITE) is Stored.NEW
    memory.blobs.put("incoming/new.dcm", new.data)
    report = repair(memory.index, memory.blobs, grace=0, duplicate_policy=OVERWRITE)
    assert report.dropped == ["incoming/new.dcm"]
    assert one_object(memory, old) == new.data


# -- the setting, through the app ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "second", "status"),
    [("reject", "same", 409), ("accept-identical", "same", 200), ("accept-identical", "other", 409)],
)
def test_the_setting_decides_what_stow_answers(memory, policy, second, status) -> None:
    settings = Settings(bucket_name=BUCKET, table_name=TABLE, duplicate_policy=policy)  # type: ignore[arg-type]
    client = TestClient(create_app(settings, index=memory.index, blobs=memory.blobs))
    a, b = versions(2)
    body, ctype = stow_body([a])
    assert client.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
    body, ctype = stow_body([a if second == "same" else b])
    r = client.post("/studies", content=body, headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
    assert r.status_code == status
    if status == 409:
        (failed,) = r.json()["00081198"]["Value"]
        assert failed["00081197"]["Value"] == [0x0111]
        assert "already stored" in r.headers["warning"]
        if policy == "reject":
            assert "duplicate policy is 'reject'" in r.headers["warning"]


def test_overwrite_through_the_app_serves_the_new_version(memory) -> None:
    settings = Settings(bucket_name=BUCKET, table_name=TABLE, duplicate_policy=OVERWRITE)
    client = TestClient(create_app(settings, index=memory.index, blobs=memory.blobs))
    old, new = versions(2, PatientName="OLD^NAME")
    new = make_instance(
        "ct", study_uid=old.study_uid, series_uid=old.series_uid, sop_uid=old.sop_uid, PatientName="NEW^NAME"
    )
    metadata = f"/studies/{old.study_uid}/series/{old.series_uid}/metadata"
    names = []
    for inst in (old, new):
        body, ctype = stow_body([inst])
        assert client.post("/studies", content=body, headers={"Content-Type": ctype}).status_code == 200
        for _ in range(2):  # the second answer comes from the series metadata cached under its ver
            names.append([m["00100010"]["Value"] for m in client.get(metadata).json()])
    assert names == [[[{"Alphabetic": "OLD^NAME"}]]] * 2 + [[[{"Alphabetic": "NEW^NAME"}]]] * 2
    assert client.get("/studies", params={"PatientName": "OLD*"}).status_code == 204
    found = client.get("/studies", params={"PatientName": "NEW*"}).json()
    assert [s["0020000D"]["Value"] for s in found] == [[old.study_uid]]


def test_the_setting_is_read_from_the_environment_and_checked() -> None:
    env = {"BUCKET_NAME": "b", "TABLE_NAME": "t"}
    assert Settings.from_env(env).duplicate_policy is IDENTICAL
    assert Settings.from_env({**env, "DUPLICATE_POLICY": "overwrite"}).duplicate_policy is OVERWRITE
    with pytest.raises(ValueError, match="duplicate_policy must be one of reject, accept-identical, overwrite"):
        Settings.from_env({**env, "DUPLICATE_POLICY": "sometimes"})
