"""Relational queries at the root resources (PS3.18 §10.6.1.2): study-level keys at /series and
/instances, paging through limit/offset and the continuation, against a brute-force filter."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.keys import SHARDS
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.search import continuation, relational
from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.search.results import series_attrs_with_aggregates, study_attrs_with_aggregates
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from tests.archive import record, studies

SERIES, INSTANCES = 3, 2


@pytest.fixture(scope="module")
def index() -> MemoryIndex:
    index = MemoryIndex()
    for spec in studies(150, seed=11):
        for se in range(SERIES):
            for i in range(INSTANCES):
                index.add_instance(record(spec, se, i))
    return index


def expected_series(index: MemoryIndex, params) -> list[str]:  # type: ignore[no-untyped-def]
    """Brute force: every study newest first, each study's matching series in series order."""
    q = parse_query(params, Level.SERIES, relational=True)
    everything = index.search_studies(parse_query([("limit", "1000")], Level.STUDY, max_limit=1000, read_budget=10**6))
    out = []
    for study in everything.items:
        study_attrs = study_attrs_with_aggregates(study)
        for series in index.search_series(study.study_uid, parse_query([], Level.SERIES)).items:
            attrs = {**study_attrs, **series_attrs_with_aggregates(series)}
            if q.matches(attrs):
                out.append(series.series_uid)
    return out


def walk(index: MemoryIndex, search, params, limit: int, budget: int = 2000) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    token = None
    for _ in range(10_000):
        extra = [("continuation", token)] if token else []
        level = Level.SERIES if search is relational.search_series else Level.INSTANCE
        q = parse_query(params + [("limit", str(limit))] + extra, level, relational=True, read_budget=budget)
        page = search(index, q)
        seen += [getattr(r, "series_uid" if level is Level.SERIES else "sop_uid") for r in page.items]
        if page.cursor is None:
            return seen
        token = continuation.encode(q, page.cursor, page.skip)
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize(
    "params",
    [
        [("Modality", "CT")],
        [("PatientName", "S*")],
        [("PatientName", "S*"), ("SeriesNumber", "2")],
        [("StudyDate", "20100101-20181231"), ("Modality", "MR")],
        [],
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p) or "all",
)
@pytest.mark.parametrize("limit", [1, 4, 50])
def test_root_series_walk_every_match_once_in_order(index, params, limit) -> None:
    expected = expected_series(index, params)
    assert expected
    assert walk(index, relational.search_series, params, limit) == expected
    assert walk(index, relational.search_series, params, limit, budget=40) == expected  # budget stops, continues


def test_root_instances_take_study_series_and_instance_keys(index) -> None:
    spec = next(iter(studies(150, seed=11)))
    params = [("PatientID", spec.patient_id), ("SeriesNumber", "3"), ("InstanceNumber", "2")]
    found = walk(index, relational.search_instances, params, 10)
    assert found == [f"{spec.study_uid}.3.2"]
    everything = walk(index, relational.search_instances, [("PatientID", spec.patient_id)], 4)
    assert len(everything) == SERIES * INSTANCES


def test_root_resources_over_http(index) -> None:
    client = TestClient(create_app(Settings(bucket_name="b", table_name="t"), index=index, blobs=MemoryBlobStore()))
    spec = next(iter(studies(150, seed=11)))
    r = client.get("/series", params={"PatientID": spec.patient_id})
    assert r.status_code == 200
    assert {s["0020000D"]["Value"][0] for s in r.json()} == {spec.study_uid}  # study UID with every series
    assert [s["0020000E"]["Value"][0] for s in r.json()] == [f"{spec.study_uid}.{n}" for n in (1, 2, 3)]
    r = client.get("/instances", params={"PatientID": spec.patient_id, "Modality": spec.modality, "limit": "4"})
    assert r.status_code == 200 and len(r.json()) == 4 and 'rel="next"' in r.headers["link"]
    assert client.get("/series", params={"PatientID": "NOBODY"}).status_code == 204
    r = client.get("/series", params={"Colour": "blue"})
    assert r.status_code == 400 and "unknown query parameter 'Colour'" in r.json()["message"]


def test_a_bare_series_or_sop_instance_uid_reads_its_lookup_posting_not_the_archive(index) -> None:
    spec = list(studies(150, seed=11))[77]
    series_uid, sop_uid = f"{spec.study_uid}.2", f"{spec.study_uid}.3.1"
    before = index.store.reads
    page = relational.search_series(
        index, parse_query([("SeriesInstanceUID", series_uid)], Level.SERIES, relational=True)
    )
    assert [s.series_uid for s in page.items] == [series_uid]
    assert index.store.reads - before < 20  # lookup posting, catalog-free UID plan, the study's series
    page = relational.search_instances(
        index, parse_query([("SOPInstanceUID", sop_uid)], Level.INSTANCE, relational=True)
    )
    assert [i.sop_uid for i in page.items] == [sop_uid]
    missing = parse_query([("SOPInstanceUID", "1.2.3.4.5.6")], Level.INSTANCE, relational=True)
    assert relational.search_instances(index, missing).items == []


@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_a_list_of_study_or_series_uids_is_walked_to_the_end(index, limit) -> None:
    """Found by review: a UID-list plan ignored the cursor (pages repeated) and more than one step of
    studies was cut off silently."""
    specs = list(studies(150, seed=11))[:40]
    uids = "\\".join(s.study_uid for s in specs)
    seen = walk(index, relational.search_series, [("StudyInstanceUID", uids)], limit)
    assert len(seen) == len(set(seen)) == 40 * SERIES
    series = "\\".join(f"{s.study_uid}.1" for s in specs[:30])
    seen = walk(index, relational.search_series, [("SeriesInstanceUID", series)], limit)
    assert sorted(seen) == sorted(f"{s.study_uid}.1" for s in specs[:30])


def test_a_forged_cursor_before_a_date_range_is_an_empty_page_not_an_error(index) -> None:
    q = parse_query([("StudyDate", "20240101-")], Level.STUDY)
    token = continuation.encode(q, "00000000000000#1")
    page = index.search_studies(parse_query([("StudyDate", "20240101-"), ("continuation", token)], Level.STUDY))
    assert page.items == [] and not page.more


def mixed(count: int) -> MemoryIndex:
    """Studies of three series: the study's modality, then an SR in every fifth study, then a PR."""
    index = MemoryIndex()
    for n, spec in enumerate(studies(count, seed=5)):
        index.add_instance(record(spec, 0, 0))
        if n % 5 == 0:
            index.add_instance(record(spec, 1, 0, modality="SR"))
        index.add_instance(record(spec, 2, 0, modality="PR"))
    return index


@pytest.fixture(scope="module")
def mixed_small() -> MemoryIndex:
    return mixed(600)


@pytest.mark.parametrize(
    "params",
    [
        [("Modality", "SR")],
        [("Modality", "SR,CT")],
        [("Modality", "PR"), ("StudyDate", "20050101-20151231")],
        [("Modality", "SR"), ("StudyDescription", "HEAD*")],  # a study key the postings do not hold
        [("Modality", "SR"), ("SeriesNumber", "2")],
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p),
)
@pytest.mark.parametrize("limit, budget", [(1, 2000), (6, 25), (200, 2000)])
def test_series_by_modality_walk_every_match_once_in_the_study_walks_order(mixed_small, params, limit, budget) -> None:
    expected = expected_series(mixed_small, params)
    assert expected
    assert walk(mixed_small, relational.search_series, params, limit, budget) == expected


def test_series_by_modality_reads_follow_the_page_not_the_archive(mixed_small) -> None:
    """PS3.18 Table 6.7.1-1's series Modality drives on series postings: a page of SR series (a
    fifth of the studies) reads about the page, whatever the archive's size."""
    large = mixed(3000)
    got = []
    for index in (mixed_small, large):
        q = parse_query([("Modality", "SR"), ("limit", "10")], Level.SERIES, relational=True)
        before = index.store.reads
        page = relational.search_series(index, q)
        got.append((index.store.reads - before, len(page.items)))
        assert len(page.items) == 10 and page.more
    (small_reads, _), (large_reads, _) = got
    share = -(-11 // SHARDS) + 1
    assert large_reads <= 2 * (10 + 1) + SHARDS * share + 1, got  # series items + postings + catalog
    assert large_reads <= small_reads + SHARDS, got
