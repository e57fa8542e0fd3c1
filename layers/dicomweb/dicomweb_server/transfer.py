"""Bulk import and export for the ``dicomweb`` command (``cli.py``), through the DICOMweb API.

Import walks files, folders and zip files, sends Part-10 instances in parallel STOW-RS batches
sized under the stack's request limit, uploads a file too large for one request straight to S3
through an upload session (``POST /uploads``: presigned URLs, the API key is enough; or, with
``drop``, into the bucket's ``incoming/`` prefix with AWS credentials), and keeps a journal so
that a second run after an interruption sends only what is left. Export writes a study, or every
study a search finds, to a folder of Part-10 files, one instance per request in parallel, skipping
files already written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .formats import multipart
from .formats.media import DICOM, parse_media_type

FAILURE_REASON, FAILED_SOP_SEQUENCE, REFERENCED_SOP_SEQUENCE = "00081197", "00081198", "00081199"


@dataclass(frozen=True)
class Source:
    """One candidate file: a path, or a member of a zip file."""

    label: str  # what the journal and the summary call it
    size: int
    read: Callable[[], bytes]
    stamp: str  # changes when the file does (size and mtime)


def sources(paths: Iterable[Path]) -> Iterator[Source]:
    """Every file under ``paths`` (folders recursively, zip members included), in a stable order."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                yield from sources(Path(root) / f for f in sorted(files))
        elif zipfile.is_zipfile(path):
            stat = path.stat()
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        yield Source(
                            f"{path}!{info.filename}",
                            info.file_size,
                            _member(path, info.filename),
                            f"{stat.st_size}:{stat.st_mtime_ns}:{info.CRC}",
                        )
        elif path.is_file():
            stat = path.stat()
            yield Source(str(path), stat.st_size, path.read_bytes, f"{stat.st_size}:{stat.st_mtime_ns}")


def _member(archive: Path, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(archive) as z:
            return z.read(name)

    return read


def is_dicom(data: bytes) -> bool:
    """A Part-10 file, with its preamble or (as pydicom writes a dataset built in memory) without."""
    return data[128:132] == b"DICM" or (data[:2] == b"\x02\x00" and data[4:6].isalpha())


class Journal:
    """What earlier runs sent to this URL (one JSON line per file), so a rerun skips it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                self.done[entry["file"]] = entry["stamp"]
        self._lock = threading.Lock()

    def has(self, source: Source) -> bool:
        return self.done.get(source.label) == source.stamp

    def add(self, batch: Iterable[Source]) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                for s in batch:
                    out.write(json.dumps({"file": s.label, "stamp": s.stamp}) + "\n")


def journal_for(url: str) -> Journal:
    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Journal(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dicomweb" / f"import-{name}.jsonl")


@dataclass
class ImportSummary:
    stored: int = 0
    already: int = 0  # sent by an earlier run (the journal)
    dropped: int = 0  # put into incoming/ (indexed by the S3-drop path)
    uploaded: int = 0  # stored through an upload session (presigned S3 URLs)
    skipped: int = 0  # not DICOM
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_sent: int = 0

    def lines(self) -> list[str]:
        out = [
            f"stored:                 {self.stored}",
            f"already sent before:    {self.already}",
            f"uploaded to S3:         {self.uploaded}",
            f"dropped into incoming/: {self.dropped}",
            f"not DICOM, skipped:     {self.skipped}",
            f"failed:                 {len(self.failed)}",
        ]
        reasons = Counter(why for _, why in self.failed)
        out += [f"  {n} × {why}" for why, n in reasons.most_common()]
        return out


def _stow(session: Any, url: str, headers: dict[str, str], parts: list[bytes]) -> tuple[int, list[str]]:
    """One STOW-RS request; (instances stored, failure reasons of the others)."""
    body, ctype = multipart.encode(((p, {"Content-Type": DICOM}) for p in parts), DICOM)
    response = session.post(
        f"{url}/studies",
        data=body,
        headers={**headers, "Content-Type": ctype, "Accept": "application/dicom+json"},
        timeout=300,
    )
    if response.status_code in (200, 202, 409) and response.content:
        return _outcome(response.json())
    return 0, [_message(response)] * len(parts)


#: Files per upload session the import opens (the server takes up to its UPLOAD_MAX_FILES).
SESSION_FILES = 50


def _put(session: Any, entry: dict[str, Any], source: Source) -> str | None:
    """Upload one file to its presigned URL(s), completing a multipart upload; an error or None."""
    data = source.read()
    if entry["method"] == "PUT":
        r = session.put(entry["url"], data=data, timeout=600)
        return None if r.status_code == 200 else f"S3 PUT answered {r.status_code}"
    size = entry["part_size"]
    for n, url in enumerate(entry["parts"]):
        r = session.put(url, data=data[n * size : (n + 1) * size], timeout=600)
        if r.status_code != 200:
            return f"S3 UploadPart answered {r.status_code}"
    return None


def _upload_session(
    session: Any, url: str, headers: dict[str, str], files: list[Source], workers: int, timeout: float = 1800
) -> tuple[int, list[str]]:
    """Store ``files`` through one upload session: (instances stored, failure reasons)."""
    import time

    created = session.post(
        f"{url}/uploads", json={"files": [{"size": s.size} for s in files]}, headers=headers, timeout=60
    )
    if created.status_code != 201:
        return 0, [_message(created)] * len(files)
    answer = created.json()
    failed: list[str] = []
    with ThreadPoolExecutor(workers) as pool:
        errors = list(pool.map(lambda pair: _put(session, *pair), zip(answer["files"], files, strict=True)))
    for entry, error in zip(answer["files"], errors, strict=True):
        if error is None and entry["method"] == "multipart":
            done = session.post(entry["complete"], headers=headers, timeout=300)
            error = None if done.status_code == 202 else _message(done)
        if error is not None:
            failed.append(error)
    deadline = time.monotonic() + timeout
    while True:  # 202 with Retry-After: files still being indexed (a file not uploaded never is)
        r = session.get(answer["status"], headers={**headers, "Accept": "application/dicom+json"}, timeout=60)
        if r.status_code not in (200, 202, 409):
            return 0, [_message(r)] * len(files)
        stored, reasons = _outcome(r.json())
        pending = r.status_code == 202 and "Retry-After" in r.headers
        if not pending or stored + len(reasons) + len(failed) >= len(files) or time.monotonic() > deadline:
            break
        time.sleep(float(r.headers["Retry-After"]))
    if pending and stored + len(reasons) + len(failed) < len(files):
        left = len(files) - stored - len(reasons) - len(failed)
        failed.append(f"{left} files still being indexed; import again later")
    return stored, failed + reasons


def _outcome(doc: dict[str, Any]) -> tuple[int, list[str]]:
    """(instances stored, failure reasons) of a Store Instances Response."""
    stored = len(doc.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", []))
    return stored, [
        f"FailureReason 0x{item[FAILURE_REASON]['Value'][0]:04X}"
        for item in doc.get(FAILED_SOP_SEQUENCE, {}).get("Value", [])
    ]


def _message(response: Any) -> str:
    message = response.text[:200].strip()
    with contextlib.suppress(ValueError):
        message = str(response.json().get("message", message))
    return f"HTTP {response.status_code}: {message}"


def import_files(
    paths: list[Path],
    *,
    url: str,
    headers: dict[str, str],
    max_request_bytes: int = 4_000_000,
    max_batch: int = 50,
    workers: int = 4,
    drop: Callable[[str, bytes], None] | None = None,
    journal: Journal | None = None,
    progress: Any = None,
    http: Any = None,
) -> ImportSummary:
    """Store every DICOM file under ``paths`` through STOW-RS; files larger than one request may
    be go through upload sessions (or ``drop``, when given); ``progress`` is a tqdm-like bar
    updated with bytes sent; ``http`` a requests-like session (a new ``requests.Session`` by
    default)."""
    import requests

    summary = ImportSummary()
    lock = threading.Lock()
    session = http or requests.Session()

    def send(batch: list[tuple[Source, bytes]]) -> None:
        stored, failed = _stow(session, url, headers, [data for _, data in batch])
        with lock:
            summary.stored += stored
            summary.bytes_sent += sum(len(d) for _, d in batch)
            # A batch answer names instances, not files: the failures are reported by reason.
            summary.failed += [(f"batch of {len(batch)} from {batch[0][0].label}", why) for why in failed]
            if progress is not None:
                progress.update(sum(len(d) for _, d in batch))
                progress.set_postfix(stored=summary.stored, failed=len(summary.failed), refresh=False)
        if journal is not None and not failed:
            journal.add(s for s, _ in batch)

    def put_aside(source: Source, data: bytes) -> None:
        assert drop is not None
        drop(f"incoming/import-{secrets.token_hex(8)}.dcm", data)
        with lock:
            summary.dropped += 1
            summary.bytes_sent += len(data)
            if progress is not None:
                progress.update(len(data))
        if journal is not None:
            journal.add([source])

    large: list[Source] = []
    with ThreadPoolExecutor(workers) as pool:
        futures = []
        batch: list[tuple[Source, bytes]] = []
        size = 0
        for source in sources(paths):
            if journal is not None and journal.has(source):
                summary.already += 1
                if progress is not None:
                    progress.update(source.size)
                continue
            data = source.read()
            if not is_dicom(data):
                summary.skipped += 1
                if progress is not None:
                    progress.update(len(data))
                continue
            if len(data) + 200 > max_request_bytes:
                if drop is not None:
                    futures.append(pool.submit(put_aside, source, data))
                else:  # read again when it is uploaded: large files are not held in memory
                    large.append(source)
                continue
            if batch and (size + len(data) + 200 > max_request_bytes or len(batch) >= max_batch):
                futures.append(pool.submit(send, batch))
                batch, size = [], 0
            batch.append((source, data))
            size += len(data) + 200
        if batch:
            futures.append(pool.submit(send, batch))
        for future in futures:
            future.result()
    for start in range(0, len(large), SESSION_FILES):
        group = large[start : start + SESSION_FILES]
        stored, failed = _upload_session(session, url, headers, group, workers)
        summary.uploaded += stored
        summary.bytes_sent += sum(s.size for s in group)
        summary.failed += [(f"upload session of {len(group)} from {group[0].label}", why) for why in failed]
        if progress is not None:
            progress.update(sum(s.size for s in group))
        if journal is not None and not failed:
            journal.add(group)
    return summary


def _instances(session: Any, url: str, headers: dict[str, str], study: str) -> list[tuple[str, str]]:
    """(series, SOP Instance UID) of every instance of ``study``, through the Link continuation."""
    found: list[tuple[str, str]] = []
    next_url: str | None = f"{url}/studies/{study}/instances?limit=1000"
    while next_url:
        r = session.get(next_url, headers={**headers, "Accept": "application/dicom+json"}, timeout=120)
        if r.status_code == 204:
            break
        r.raise_for_status()
        found += [(i["0020000E"]["Value"][0], i["00080018"]["Value"][0]) for i in r.json()]
        link = r.headers.get("Link", "")
        next_url = link[1 : link.index(">")] if 'rel="next"' in link else None
    return found


def studies_matching(session: Any, url: str, headers: dict[str, str], query: list[tuple[str, str]]) -> list[str]:
    found: list[str] = []
    params: list[tuple[str, str]] | None = [*query, ("limit", "1000"), ("includefield", "0020000D")]
    next_url: str | None = f"{url}/studies"
    while next_url:
        r = session.get(next_url, params=params, headers={**headers, "Accept": "application/dicom+json"}, timeout=120)
        params = None  # the Link carries them
        if r.status_code == 204:
            break
        r.raise_for_status()
        found += [s["0020000D"]["Value"][0] for s in r.json()]
        link = r.headers.get("Link", "")
        next_url = link[1 : link.index(">")] if 'rel="next"' in link else None
    return found


@dataclass
class ExportSummary:
    written: int = 0
    present: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_written: int = 0

    def lines(self) -> list[str]:
        return [
            f"written:         {self.written}",
            f"already present: {self.present}",
            f"failed:          {len(self.failed)}",
            *[f"  {what}: {why}" for what, why in self.failed[:20]],
        ]


def export(
    studies: list[str],
    target: Path,
    *,
    url: str,
    headers: dict[str, str],
    workers: int = 4,
    progress: Any = None,
) -> ExportSummary:
    """Every instance of ``studies`` as ``target/{study}/{series}/{sop}.dcm``, as stored."""
    import requests

    session = requests.Session()
    summary = ExportSummary()
    lock = threading.Lock()

    def fetch(study: str, series: str, sop: str) -> None:
        path = target / study / series / f"{sop}.dcm"
        if path.exists() and path.stat().st_size > 0:
            with lock:
                summary.present += 1
            return
        r = session.get(
            f"{url}/studies/{study}/series/{series}/instances/{sop}",
            headers={**headers, "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
            timeout=300,
        )
        if r.status_code != 200:
            with lock:
                summary.failed.append((sop, f"HTTP {r.status_code}"))
            return
        (part,) = multipart.decode(r.content, parse_media_type(r.headers["content-type"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(part.body)
        partial.replace(path)  # never a half-written file under the final name
        with lock:
            summary.written += 1
            summary.bytes_written += len(part.body)
            if progress is not None:
                progress.update(1)

    with ThreadPoolExecutor(workers) as pool:
        jobs = []
        for study in studies:
            for series, sop in _instances(session, url, headers, study):
                jobs.append(pool.submit(fetch, study, series, sop))
        if progress is not None:
            progress.total = len(jobs)
        for job in jobs:
            job.result()
    return summary
