"""The DynamoDB key layout (``docs/data-model.md``): every key the index writes or reads is built
here. One table, ``pk`` / ``sk`` strings.

Hierarchy: study ``ST#{study}``/``#META``, series ``ST#{study}``/``SE#{series}``, instance
``ST#{study}``/``IN#{series}#{sop}``: one partition per study.

Postings (``P#…``): one item per study and searchable value, sort key ``{sort14}#{study}`` so every
posting partition reads newest first with the UID as tie-breaker. Partitions that could grow with
the archive or run hot are bucketed by month or year and split into ``SHARDS`` shards; the catalog
item lists the months that hold studies.
"""

from __future__ import annotations

import zlib
from typing import Any

from ..formats import dicom_json as dj
from ..records import InstanceRecord
from ..search.query import name_words, normalize_pn

META = "#META"
#: Posting partitions per bucket: 4 keeps a bulk import of 1,000 studies/s under 1,000 WCU/s per key.
SHARDS = 4
#: Prefix postings are written for prefixes of 1..PREFIX_MAX characters.
PREFIX_MAX = 8
#: The month of a study without a StudyDate.
NO_DATE = "000000"
CATALOG = ("P#CAT", "#MONTHS")
#: Prefixes of up to DENSE characters are shared by a large part of the archive (``S``, ``A1``):
#: their postings are bucketed by month, like dates, with a catalog of their own months; longer
#: prefixes are sparse enough for a year.
DENSE = 2

#: ``StoredInstance`` fields and the instance item attributes that hold them.
INSTANCE_FIELDS = {
    "sop_class_uid": "sop_class",
    "transfer_syntax_uid": "ts",
    "size": "size",
    "md5": "md5",
    "number_of_frames": "frames",
    "object_key": "obj",
}


def study_pk(study_uid: str) -> str:
    return f"ST#{study_uid}"


def series_sk(series_uid: str) -> str:
    return f"SE#{series_uid}"


def instance_sk(series_uid: str, sop_uid: str) -> str:
    return f"IN#{series_uid}#{sop_uid}"


def instance_fields(record: InstanceRecord) -> dict[str, Any]:
    """The instance item's attributes that ``INSTANCE_FIELDS`` names, from a record."""
    fields = {attr: getattr(record, field) for field, attr in INSTANCE_FIELDS.items()}
    return {attr: value for attr, value in fields.items() if value != ""}


def fields_of_item(item: dict[str, Any]) -> dict[str, Any]:
    """The ``StoredInstance`` fields an instance item holds (the inverse of ``instance_fields``)."""
    fields = {field: item[attr] for field, attr in INSTANCE_FIELDS.items() if attr in item}
    fields["size"] = int(fields["size"])
    fields["number_of_frames"] = int(fields.get("number_of_frames", 1))
    return fields


def shard_of(study_uid: str) -> int:
    return zlib.crc32(study_uid.encode()) % SHARDS


def posting_sk(sort14: str, study_uid: str) -> str:
    return f"{sort14}#{study_uid}"


def month_of(sort14: str) -> str:
    return sort14[:6] if sort14[:6].strip("0") else NO_DATE


def date_partition(month: str, shard: int) -> str:
    return f"P#DT#{month}#{shard}"


def exact_partition(kind: str, value: str) -> str:
    """``P#PID#…``, ``P#ACC#…``: one patient's or one accession's studies."""
    return f"P#{kind}#{value}"


def prefix_bucket(prefix: str, sort14: str) -> str:
    """The bucket of a prefix posting: its study's month for a dense prefix, else its year."""
    return month_of(sort14) if len(prefix) <= DENSE else sort14[:4]


def prefix_partition(kind: str, prefix: str, bucket: str, shard: int) -> str:
    """``P#PIDP#…``, ``P#ACCP#…``, ``P#PNP#…``: studies whose value starts with ``prefix``, by
    ``prefix_bucket``."""
    return f"P#{kind}#{prefix}#{bucket}#{shard}"


def prefix_catalog(kind: str, prefix: str) -> tuple[str, str]:
    """The months that hold postings of a dense prefix (``P#CAT#ACCP#A1``)."""
    return f"P#CAT#{kind}#{prefix}", "#MONTHS"


def modality_partition(modality: str, month: str, shard: int) -> str:
    return f"P#MOD#{modality}#{month}#{shard}"


#: Fuzzy name postings (``PNW``): prefixes of 1..WORD_PREFIX characters of a name's first WORDS_MAX
#: words, in every component group.
WORD_PREFIX, WORDS_MAX = 4, 6
#: (tag, exact kind, prefix kind) of the text keys that get exact and prefix postings.
TEXT_KEYS = (("00100020", "PID", "PIDP"), ("00080050", "ACC", "ACCP"))


def prefix_values(record: InstanceRecord) -> list[tuple[str, str, list[str]]]:
    """(prefix kind, prefix, the values it indexes) for every prefix posting a new study writes.

    Names have no exact partition (SIIM^JOE also matches SIIM^JOE^M). Every component group of a
    name (Alphabetic, Ideographic, Phonetic) is indexed; a partition two groups share holds one
    posting whose ``v`` lists both, one per line (text values hold no control characters)."""
    out: list[tuple[str, str, list[str]]] = []
    for tag, _, kind in TEXT_KEYS:
        value = str(dj.first(record.study, tag, "") or "").strip()
        out += [(kind, start, [value]) for start in prefixes(value)] if value else []
    names: dict[str, list[str]] = {}
    words: dict[str, list[str]] = {}
    for group in dict.fromkeys(normalize_pn(g) for g in dj.pn_groups(record.study, "00100010")):
        for start in prefixes(group, names=True) if group else ():
            names.setdefault(start, []).append(group)
        for start in dict.fromkeys(w[:n] for w in name_words(group)[:WORDS_MAX] for n in range(1, WORD_PREFIX + 1)):
            words.setdefault(start, []).append(group)
    return (
        out
        + [("PNP", start, groups) for start, groups in names.items()]
        + [("PNW", start, groups) for start, groups in words.items()]
    )


def dense_prefixes(record: InstanceRecord) -> set[tuple[str, str]]:
    """(kind, prefix) of a new study's dense prefix postings: the prefix catalogs it must be in."""
    return {(kind, prefix) for kind, prefix, _ in prefix_values(record) if len(prefix) <= DENSE}


def study_postings(record: InstanceRecord, sort14: str) -> list[dict[str, Any]]:
    """Every posting a new study writes (``docs/data-model.md``, Posting kinds)."""
    uid, study = record.study_uid, record.study
    sk, shard = posting_sk(sort14, uid), shard_of(uid)

    def posting(pk: str, value: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"pk": pk, "sk": sk, "study": uid}
        if value is not None:
            item["v"] = value
        return item

    out = [posting(date_partition(month_of(sort14), shard))]
    for tag, exact, _ in TEXT_KEYS:
        value = str(dj.first(study, tag, "") or "").strip()
        if value:
            out.append(posting(exact_partition(exact, value)))
    for kind, prefix, values in prefix_values(record):
        pk = prefix_partition(kind, prefix, prefix_bucket(prefix, sort14), shard)
        out.append(posting(pk, "\n".join(values)))
    if record.modality:
        out += modality_postings(record.modality, sort14, uid)
    return out


def prefixes(value: str, *, names: bool = False) -> list[str]:
    """The prefixes of ``value`` that get a posting partition: 1..PREFIX_MAX characters, and for a
    name every longer run of whole components (``THOMPSON^JOHN``), so a full name is one partition."""
    out = [value[:n] for n in range(1, min(len(value), PREFIX_MAX) + 1)]
    if names:
        parts = value.split("^")
        out += [b for b in ("^".join(parts[: i + 1]) for i in range(len(parts))) if len(b) > PREFIX_MAX]
    return out


def modality_postings(modality: str, sort14: str, study_uid: str) -> list[dict[str, Any]]:
    pk = modality_partition(modality, month_of(sort14), shard_of(study_uid))
    return [{"pk": pk, "sk": posting_sk(sort14, study_uid), "study": study_uid}]


def series_modality_partition(modality: str, month: str, shard: int) -> str:
    return f"P#SMOD#{modality}#{month}#{shard}"


_FLIP = str.maketrans("0123456789.", "9876543210:")


def series_rank(series_attrs: dict[str, Any], series_uid: str) -> str:
    """A series' place in its study, spelled so that a newest-first (descending) walk meets the
    series of a study in ascending SeriesNumber then UID order, as ``search.ordering`` lists them:
    digits flipped, ``~`` ending each part so a shorter UID comes first, no number last."""
    try:
        number = min(max(int(float(dj.first(series_attrs, "00200011"))), -(10**11)), 10**11 - 1)
        rank = f"{number + 10**11:012d}".translate(_FLIP) + "~"
    except (TypeError, ValueError):
        rank = "!"
    return rank + series_uid.translate(_FLIP) + "~"


def series_modality_posting(record: InstanceRecord, sort14: str) -> dict[str, Any]:
    """A new series' place under its Modality (``P#SMOD#…``), ordered as ``/series`` lists it:
    its study's place, then ``series_rank``. What ``/series?Modality=…`` walks."""
    pk = series_modality_partition(record.modality, month_of(sort14), shard_of(record.study_uid))
    sk = f"{posting_sk(sort14, record.study_uid)}#{series_rank(record.series, record.series_uid)}"
    return {"pk": pk, "sk": sk, "study": record.study_uid, "series": record.series_uid}


def series_posting(study_uid: str, series_uid: str, series_attrs: dict[str, Any], sort14: str) -> dict[str, Any] | None:
    """A series' ``P#SMOD#…`` posting from its attributes, or None when it has no Modality."""
    modality = str(dj.first(series_attrs, "00080060", "") or "")
    if not modality:
        return None
    pk = series_modality_partition(modality, month_of(sort14), shard_of(study_uid))
    sk = f"{posting_sk(sort14, study_uid)}#{series_rank(series_attrs, series_uid)}"
    return {"pk": pk, "sk": sk, "study": study_uid, "series": series_uid}


def lookup_postings(record: InstanceRecord) -> list[dict[str, Any]]:
    """Where a series and an instance live (``P#SE#{series}``, ``P#IN#{sop}``): what a bare
    SeriesInstanceUID or SOPInstanceUID at ``/series`` or ``/instances`` reads first. Written with
    every instance (an identical Put when the series' posting exists already)."""
    return [
        {"pk": f"P#SE#{record.series_uid}", "sk": record.study_uid, "study": record.study_uid},
        {"pk": f"P#IN#{record.sop_uid}", "sk": f"{record.study_uid}#{record.series_uid}", "study": record.study_uid},
    ]
