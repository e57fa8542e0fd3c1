#!/usr/bin/env python3
"""Write the OpenAPI 3.1 description of the API (generated from the route table) as JSON.

python scripts/openapi.py                      # to stdout
python scripts/openapi.py -o openapi.json --server-url https://abc.execute-api.us-east-1.amazonaws.com/Prod
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "dicomweb"))
from dicomweb_server.web.openapi import describe  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument("--server-url", default="/", help="the API's base URL, as the servers entry")
    args = parser.parse_args(argv)
    text = json.dumps(describe(args.server_url), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
