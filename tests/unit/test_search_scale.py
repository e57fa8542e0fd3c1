"""Study search at archive scale (docs/data-model.md): the items a search reads follow the page,
not the archive; continuation walks every match exactly once, also while studies arrive; the read
budget stops a search with a continuation instead of a silent cap; the index answers exactly what
a brute-force filter of every study answers."""

from __future__ import annotations

import random

import pytest
from starlette.testclient import TestClient

from dicomweb_server.blobs.memory import MemoryBlobStore
from dicomweb_server.index.keys import SHARDS
from dicomweb_server.index.memory import MemoryIndex
from dicomweb_server.search import continuation
from dicomweb_server.search.ordering import study_sort_text
from dicomweb_server.search.query import Level, parse_query
from dicomweb_server.search.results import study_attrs_with_aggregates
from dicomweb_server.settings import Settings
from dicomweb_server.web import create_app
from tests.archive import StudySpec, record, studies

QUERY_MIX = [
    [("PatientID", "PLACEHOLDER")],  # replaced by a real ID of the archive
    [("AccessionNumber", "PLACEHOLDER")],
    [("PatientID", "MRN*")],
    [("AccessionNumber", "A1*")],
    [("PatientName", "SMI*")],
    [("PatientName", "müller")],
    [("PatientName", "THOMPSON^JOHN")],
    [("PatientName", "thom"), ("fuzzymatching", "true")],
    [("ModalitiesInStudy", "CT")],
    [("ModalitiesInStudy", "MR,US")],
    [("StudyDate", "20100101-20151231")],
    [],
]


def load(index: MemoryIndex, specs: list[StudySpec]) -> None:
    for spec in specs:
        index.add_instance(record(spec))


def archive(n: int) -> tuple[MemoryIndex, list[StudySpec]]:
    index, specs = MemoryIndex(), list(studies(n))
    load(index, specs)
    return index, specs


def resolved(params: list[tuple[str, str]], specs: list[StudySpec]) -> list[tuple[str, str]]:
    subst = {"PatientID": specs[len(specs) // 2].patient_id, "AccessionNumber": specs[-1].accession}
    return [(k, subst[k] if v == "PLACEHOLDER" else v) for k, v in params]


def query(params: list[tuple[str, str]], **kwargs: int):  # type: ignore[no-untyped-def]
    return parse_query(params, Level.STUDY, max_limit=5000, **kwargs)


def brute_force(index: MemoryIndex, specs: list[StudySpec], q) -> list[str]:  # type: ignore[no-untyped-def]
    """Every study that matches, newest first: the matcher applied to every study of the archive."""
    everything = [index.get_study(s.study_uid) for s in specs]
    found = [s for s in everything if s is not None and q.matches(study_attrs_with_aggregates(s))]
    found.sort(key=lambda s: (study_sort_text(s.attrs), s.study_uid), reverse=True)
    return [s.study_uid for s in found]


def reads_of(index: MemoryIndex, q) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    before = index.store.reads
    page = index.search_studies(q)
    return index.store.reads - before, len(page.items)


@pytest.fixture(scope="module")
def small() -> tuple[MemoryIndex, list[StudySpec]]:
    return archive(1000)


@pytest.fixture(scope="module")
def large() -> tuple[MemoryIndex, list[StudySpec]]:
    return archive(10_000)


@pytest.mark.parametrize("params", QUERY_MIX, ids=lambda p: "&".join(f"{k}={v}" for k, v in p) or "all")
def test_items_read_follow_the_page_not_the_archive(small, large, params) -> None:
    limit = 10
    got = {}
    for name, (index, specs) in (("small", small), ("large", large)):
        q = query(resolved(params, specs) + [("limit", str(limit))])
        got[name] = reads_of(index, q)
        reads, rows = got[name]
        # postings: one page per shard read (a posting list of one patient/accession is one "shard"),
        # plus the study items hydrated, plus the catalog of months
        assert reads <= 2 * (rows + 1) + SHARDS * (limit + 1) + 1, (name, params, got[name])
    (small_reads, small_rows), (large_reads, large_rows) = got["small"], got["large"]
    if small_rows < limit:
        return  # one patient's (or one full name's) studies: too few to compare across sizes
    assert large_rows == limit, (params, got)
    # Flat: 10x the archive reads at most the shards' first pages more (a sparse small archive
    # empties its shards sooner; past that, the reads do not grow with the archive).
    share = -(-(limit + 1) // SHARDS) + 1
    assert large_reads <= small_reads + SHARDS * share, (params, got)


def walk_continuation(index: MemoryIndex, params, limit: int, budget: int = 2000) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    """Every page through continuation tokens (as the Link header carries them)."""
    seen: list[str] = []
    token, pages = None, 0
    while True:
        extra = [("continuation", token)] if token else []
        q = query(params + [("limit", str(limit))] + extra, read_budget=budget)
        page = index.search_studies(q)
        seen += [s.study_uid for s in page.items]
        pages += 1
        assert pages < 10_000
        if page.cursor is None:
            assert not page.more
            return seen, pages
        token = continuation.encode(q, page.cursor, page.skip)


@pytest.mark.parametrize("seed", range(6))
def test_the_index_answers_what_a_brute_force_filter_answers_with_every_kind_of_paging(small, seed) -> None:
    index, specs = small
    rng = random.Random(seed)
    spec = rng.choice(specs)
    candidates = [
        [("PatientName", spec.name.split("^")[0][: rng.randrange(1, 6)] + "*")],
        [("PatientID", spec.patient_id[:4] + "*"), ("ModalitiesInStudy", spec.modality)],
        [("StudyDate", f"{spec.date[:4]}0101-{spec.date[:4]}1231"), ("PatientName", "*A*")],
        [("ModalitiesInStudy", "CT"), ("StudyDescription", "HEAD*")],
        [("StudyDescription", "*3")],  # nothing indexed: the budgeted walk of every study
        [("AccessionNumber", spec.accession[:3] + "*"), ("StudyDate", f"-{spec.date}")],
    ]
    params = rng.choice(candidates)
    expected = brute_force(index, specs, query(params))
    assert expected, params
    limit = rng.choice((1, 3, 7, 50))
    budget = rng.choice((15, 60, 2000))
    seen, pages = walk_continuation(index, params, limit, budget)
    assert seen == expected, (params, limit, budget)  # every match, once, in order
    offset_seen: list[str] = []
    offset = 0
    while True:  # limit/offset over an unchanging archive (with a budget that never runs out)
        q = query(params + [("limit", str(limit)), ("offset", str(offset))], read_budget=10**6)
        page = index.search_studies(q)
        offset_seen += [s.study_uid for s in page.items]
        if not page.more:
            break
        offset += limit
        assert len(page.items) == limit and offset < 10_000
    assert offset_seen == expected, (params, limit)


def test_continuation_walks_every_match_once_while_studies_arrive() -> None:
    index, specs = archive(300)
    params = [("ModalitiesInStudy", "CT")]
    expected = brute_force(index, specs, query(params))
    first = index.search_studies(query(params + [("limit", "20")]))
    assert [s.study_uid for s in first.items] == expected[:20]
    # New CT studies arrive, newer and older than the cursor, between two pages.
    arriving = [s for s in studies(60, first=10_000, seed=3) if s.modality == "CT"]
    load(index, arriving)
    seen = [s.study_uid for s in first.items]
    q = query(params + [("limit", "20")])
    token = continuation.encode(q, first.cursor or "")
    rest, _ = walk_continuation_from(index, params, 20, token)
    seen += rest
    assert len(seen) == len(set(seen)), "a study was shown twice"
    assert set(expected) <= set(seen), "a study that existed at the first page was skipped"
    newer = {s.study_uid for s in arriving if s.date + s.time > (first.cursor or "")[:14]}
    assert not newer & set(rest), "studies newer than the cursor belong before it, not on later pages"


def walk_continuation_from(index: MemoryIndex, params, limit: int, token: str, budget: int = 2000):  # type: ignore[no-untyped-def]
    seen: list[str] = []
    pages = 0
    while token:
        q = query(params + [("limit", str(limit)), ("continuation", token)], read_budget=budget)
        page = index.search_studies(q)
        seen += [s.study_uid for s in page.items]
        pages += 1
        assert pages < 10_000
        token = continuation.encode(q, page.cursor, page.skip) if page.cursor else ""
    return seen, pages


def test_an_offset_deeper_than_the_budget_continues_where_it_stopped_skipping() -> None:
    index, specs = archive(300)
    params = [("StudyDescription", "*2")]  # unindexed: about 1 in 7 studies
    expected = brute_force(index, specs, query(params))
    q = query(params + [("limit", "5"), ("offset", "30")], read_budget=40)
    page = index.search_studies(q)
    assert page.budget_spent is not None and page.skip > 0 and page.items == []
    seen, _ = walk_continuation_from(index, params, 5, continuation.encode(q, page.cursor or "", page.skip), budget=40)
    assert seen == expected[30:]


def test_a_search_that_runs_out_of_budget_says_so_and_continues() -> None:
    index, specs = archive(300)
    params = [("StudyDescription", "KNEE 6")]  # unindexed, and rare
    expected = brute_force(index, specs, query(params))
    page = index.search_studies(query(params + [("limit", "100")], read_budget=50))
    assert page.budget_spent is not None and page.budget_spent >= 50
    assert page.more and page.cursor is not None and len(page.items) < len(expected)
    seen, pages = walk_continuation(index, params, 100, budget=50)
    assert seen == expected and pages > 2


# -- over HTTP: Link, Warning, and tokens that are not ours ---------------------------------------


@pytest.fixture
def http() -> tuple[TestClient, list[StudySpec]]:
    index, specs = archive(120)
    settings = Settings(bucket_name="b", table_name="t", qido_read_budget=40)
    return TestClient(create_app(settings, index=index, blobs=MemoryBlobStore())), specs


def next_link(response) -> str | None:  # type: ignore[no-untyped-def]
    link = response.headers.get("link")
    if not link:
        return None
    assert link.endswith('>; rel="next"') and link.startswith("<http")
    return link[1 : link.index(">")]


def test_the_link_header_walks_every_page(http) -> None:
    client, specs = http
    seen: list[str] = []
    url: str | None = "/studies?ModalitiesInStudy=CT&limit=7"
    while url:
        r = client.get(url)
        assert r.status_code == 200
        seen += [s["0020000D"]["Value"][0] for s in r.json()]
        url = next_link(r)
        if url:
            assert "offset" not in url and "continuation=" in url
            assert "Warning" in r.headers
    expected = sorted((s for s in specs if s.modality == "CT"), key=lambda s: (s.date + s.time, s.study_uid))
    assert seen == [s.study_uid for s in reversed(expected)]


def test_a_budget_stop_is_a_warning_with_a_next_link(http) -> None:
    client, _ = http
    r = client.get("/studies", params={"StudyDescription": "KNEE 6", "limit": "100"})
    assert r.status_code == 200
    assert "The search stopped after reading" in r.headers["Warning"]
    assert next_link(r)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("garbage!", "not a token this server issued"),
        ("eyJjIjogIkRST1AgVEFCTEUiLCAiZiI6ICJ4In0", "not a token this server issued"),  # {"c": "DROP TABLE"…}
        (None, "belongs to another query"),
    ],
)
def test_a_forged_or_stale_continuation_is_a_400(http, token, message) -> None:
    client, _ = http
    if token is None:  # a real token of another query
        other = query([("ModalitiesInStudy", "MR")])
        token = continuation.encode(other, "20200101000000#1.2.3")
    r = client.get("/studies", params={"ModalitiesInStudy": "CT", "continuation": token})
    assert r.status_code == 400 and message in r.json()["message"]


@pytest.mark.parametrize(
    "params",
    [
        [("PatientName", "田中*")],  # an Ideographic group has its own prefix postings
        [("PatientName", "S*")],  # dense prefixes: month buckets through their own catalog
        [("AccessionNumber", "A1*")],  # ... whose months are few (accessions carry their year)
        [("PatientID", "H*"), ("StudyDate", "20030101-20081231")],
        [("PatientName", "jo smi"), ("fuzzymatching", "true")],  # fuzzy: the PNW postings of "SMI"
        [("PatientName", "m*r"), ("fuzzymatching", "true")],  # a wildcard inside a word
        [("PatientName", "中"), ("fuzzymatching", "true")],  # a word of the Ideographic group
        [("PatientName", "中村^JOHN")],
        [("StudyDate", "20100101-20121231"), ("StudyTime", "120000-080000")],  # one date-time range
        [("StudyDate", "-20050630"), ("StudyTime", "-060000"), ("ModalitiesInStudy", "CT")],
    ],
    ids=[
        "ideographic-prefix",
        "dense-name",
        "dense-accession",
        "dense-id",
        "fuzzy-words",
        "fuzzy-wildcard",
        "fuzzy-ideographic",
        "ideographic-name",
        "combined-range",
        "combined-open",
    ],  # fmt: skip
)
def test_names_in_every_group_and_combined_date_time_ranges_page_like_a_brute_force_filter(small, params) -> None:
    index, specs = small
    expected = brute_force(index, specs, query(params))
    assert expected, params
    for limit, budget in ((7, 40), (50, 2000)):
        seen, _ = walk_continuation(index, params, limit, budget)
        assert seen == expected, (params, limit, budget)
