"""``make dev``: every route under uvicorn on loopback, with in-memory storage (nothing persists)."""

from __future__ import annotations

import argparse

from ..blobs.memory import MemoryBlobStore
from ..index.memory import MemoryIndex
from ..settings import Settings
from .app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the development server binds to loopback only")
    import uvicorn

    settings = Settings(bucket_name="in-memory", table_name="in-memory")
    app = create_app(settings, index=MemoryIndex(), blobs=MemoryBlobStore())
    print(f"DICOMweb (in-memory) at http://{args.host}:{args.port}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
