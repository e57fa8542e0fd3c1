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
from ..search.query import normalize_pn

META = "#META"
#: Posting partitions per bucket: 4 keeps a bulk import of 1,000 studies/s under 1,000 WCU/s per key.
SHARDS = 4
#: Prefix postings are written for prefixes of 1..PREFIX_MAX characters.
PREFIX_MAX = 8
#: The month of a study without a StudyDate.
NO_DATE = "000000"
CATALOG = ("P#CAT", "#MONTHS")

#: ``StoredInstance`` fields and the instance item attributes that hold them.
INSTANCE_FIELDS = {
    "sop_class_uid": "sop_class",
    "transfer_syntax_uid": "ts",
    "size": "size",
    "md5": "md5",
    "number_of_frames": "frames",
}


def study_pk(study_uid: str) -> str:
    return f"ST#{study_uid}"


def series_sk(series_uid: str) -> str:
    return f"SE#{series_uid}"


def instance_sk(series_uid: str, sop_uid: str) -> str:
    return f"IN#{series_uid}#{sop_uid}"


def instance_fields(record: InstanceRecord) -> dict[str, Any]:
    """The instance item's attributes that ``INSTANCE_FIELDS`` names, from a record."""
    return {attr: getattr(record, field) for field, attr in INSTANCE_FIELDS.items()}


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


def prefix_partition(kind: str, prefix: str, year: str, shard: int) -> str:
    """``P#PIDP#…``, ``P#ACCP#…``, ``P#PNP#…``: studies whose value starts with ``prefix``, by year."""
    return f"P#{kind}#{prefix}#{year}#{shard}"


def modality_partition(modality: str, month: str, shard: int) -> str:
    return f"P#MOD#{modality}#{month}#{shard}"


#: (tag, exact kind, prefix kind) of the text keys that get exact and prefix postings.
TEXT_KEYS = (("00100020", "PID", "PIDP"), ("00080050", "ACC", "ACCP"))


def study_postings(record: InstanceRecord, sort14: str) -> list[dict[str, Any]]:
    """Every posting a new study writes (``docs/data-model.md``, Posting kinds)."""
    uid, study = record.study_uid, record.study
    sk, shard, year = posting_sk(sort14, uid), shard_of(uid), sort14[:4]

    def posting(pk: str, value: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"pk": pk, "sk": sk, "study": uid}
        if value is not None:
            item["v"] = value
        return item

    out = [posting(date_partition(month_of(sort14), shard))]
    for tag, exact, prefix in TEXT_KEYS:
        value = str(dj.first(study, tag, "") or "").strip()
        if value:
            out.append(posting(exact_partition(exact, value)))
            out += [posting(prefix_partition(prefix, start, year, shard), value) for start in prefixes(value)]
    # Names have no exact partition (SIIM^JOE also matches SIIM^JOE^M). Every component group
    # (Alphabetic, Ideographic, Phonetic) is indexed; a partition two groups share holds one posting
    # whose ``v`` lists both, one per line (text values hold no control characters).
    names: dict[str, list[str]] = {}
    for group in dict.fromkeys(normalize_pn(g) for g in dj.pn_groups(study, "00100010")):
        for start in prefixes(group, names=True) if group else ():
            names.setdefault(start, []).append(group)
    out += [posting(prefix_partition("PNP", start, year, shard), "\n".join(v)) for start, v in names.items()]
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


def lookup_postings(record: InstanceRecord) -> list[dict[str, Any]]:
    """Where a series and an instance live (``P#SE#{series}``, ``P#IN#{sop}``): what a bare
    SeriesInstanceUID or SOPInstanceUID at ``/series`` or ``/instances`` reads first. Written with
    every instance (an identical Put when the series' posting exists already)."""
    return [
        {"pk": f"P#SE#{record.series_uid}", "sk": record.study_uid, "study": record.study_uid},
        {"pk": f"P#IN#{record.sop_uid}", "sk": f"{record.study_uid}#{record.series_uid}", "study": record.study_uid},
    ]
