"""Logging without patient data: an exception is logged as its type and where it happened, never
its message (pydicom and boto3 messages can quote attribute values, names or IDs)."""

from __future__ import annotations

import traceback


def exception_summary(exc: BaseException) -> dict[str, str]:
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in reversed(frames))
    return {"error_type": f"{type(exc).__module__}.{type(exc).__qualname__}", "where": where}
