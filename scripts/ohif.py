"""The OHIF viewer against a DICOMweb endpoint, on 127.0.0.1, for people and for the e2e test.

OHIF's npm package ``@ohif/app`` ships a prebuilt viewer (``dist/``); this script fetches it once
with ``npm pack`` into ``.local/ohif/<version>/`` (no build, no node_modules), and serves it with a
generated ``app-config.js`` whose data source is the DICOMweb URL:

* cross-origin (the default): the viewer calls the API directly, so the API's CORS answers matter;
* same-origin (``--same-origin``): the viewer's own server forwards ``/dicomweb/...`` to the API,
  adding the API key when one is given, as a reverse proxy or CloudFront in front of both would.

    python scripts/ohif.py serve [--endpoint .local/endpoint.json] [--port 3000] [--same-origin]

``make ohif`` runs that against the stack ``make run`` started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mimetypes
import shutil
import subprocess
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "3.13.2"
HOST = "127.0.0.1"
PROXY_PREFIX = "/dicomweb"
#: Request headers the proxy passes on to the API (hop-by-hop ones and Host are not).
FORWARDED_REQUEST_HEADERS = ("accept", "accept-encoding", "content-type", "if-none-match", "range")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def fetch_viewer(version: str = VERSION, cache: Path = ROOT / ".local" / "ohif") -> Path:
    """The ``dist`` folder of ``@ohif/app@version``, fetched from the npm registry once."""
    dist = cache / version / "dist"
    if (dist / "index.html").is_file():
        return dist
    work = cache / f"{version}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to fetch the OHIF viewer (Debian: apt-get install npm)")
    subprocess.run(
        [npm, "pack", f"@ohif/app@{version}", "--pack-destination", str(work), "--silent"],
        check=True,
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    (tarball,) = work.glob("*.tgz")
    with tarfile.open(tarball) as tar:
        tar.extractall(work, filter="data")
    shutil.rmtree(cache / version, ignore_errors=True)
    (work / "package").rename(cache / version)
    shutil.rmtree(work, ignore_errors=True)
    return dist


def app_config(dicomweb_root: str) -> str:
    """OHIF's ``window.config`` with one DICOMweb data source at ``dicomweb_root``."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dicomweb",
        "configuration": {
            "friendlyName": "Serverless DICOMweb",
            "name": "dicomweb",
            "wadoUriRoot": f"{dicomweb_root}/wadouri",
            "qidoRoot": dicomweb_root,
            "wadoRoot": dicomweb_root,
            "qidoSupportsIncludeField": True,
            "supportsReject": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata,video,pdf",
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": "dicomweb",
        "investigationalUseDialog": {"option": "never"},
        "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


@dataclass
class Viewer:
    """A running viewer server: where to open it and what it serves."""

    url: str
    dicomweb_root: str
    server: ThreadingHTTPServer

    def viewer_url(self, study_uid: str) -> str:
        return f"{self.url}/viewer?StudyInstanceUIDs={urllib.parse.quote(study_uid)}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(dist: Path, config_js: bytes, upstream: str | None, api_key: str | None) -> type[BaseHTTPRequestHandler]:
    index = (dist / "index.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            return

        def do_GET(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_OPTIONS(self) -> None:
            self._serve()

        def _serve(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if upstream is not None and (path == PROXY_PREFIX or path.startswith(PROXY_PREFIX + "/")):
                self._proxy()
            elif path == "/app-config.js":
                self._send(200, "text/javascript", config_js)
            else:
                self._static(path)

        def _static(self, path: str) -> None:
            target = (dist / urllib.parse.unquote(path).lstrip("/")).resolve()
            if dist.resolve() not in target.parents or not target.is_file():
                # Client-side routes (/viewer, /segmentation, ...) are the single-page app.
                self._send(200, "text/html", index)
                return
            media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self._send(200, media, target.read_bytes())

        def _proxy(self) -> None:
            assert upstream is not None
            rest = self.path[len(PROXY_PREFIX) :]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
            headers["Forwarded"] = f'host="{self.headers.get("Host", "")}";proto=http'
            if api_key:
                headers["apikey"] = api_key
            request = urllib.request.Request(upstream + rest, data=body, headers=headers, method=self.command)
            try:
                response = urllib.request.urlopen(request, timeout=120)  # noqa: S310 - loopback upstream
            except urllib.error.HTTPError as exc:
                response = exc
            with response:
                data = response.read()
                self.send_response(response.status)
                for name, value in response.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        def _send(self, status: int, media: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store" if media == "text/html" else "max-age=3600")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler


def serve(
    dicomweb_url: str,
    *,
    port: int = 0,
    same_origin: bool = False,
    api_key: str | None = None,
    dist: Path | None = None,
) -> Viewer:
    """Serve the viewer on 127.0.0.1:``port`` (0: a free one) in a background thread."""
    dist = dist or fetch_viewer()
    server = ThreadingHTTPServer((HOST, port), BaseHTTPRequestHandler)
    url = f"http://{HOST}:{server.server_address[1]}"
    root = f"{url}{PROXY_PREFIX}" if same_origin else dicomweb_url.rstrip("/")
    server.RequestHandlerClass = _handler(
        dist,
        app_config(root).encode(),
        dicomweb_url.rstrip("/") if same_origin else None,
        api_key if same_origin else None,
    )
    threading.Thread(target=server.serve_forever, name="ohif", daemon=True).start()
    return Viewer(url, root, server)


@contextlib.contextmanager
def serving(dicomweb_url: str, **kwargs: object) -> Iterator[Viewer]:
    viewer = serve(dicomweb_url, **kwargs)  # type: ignore[arg-type]
    try:
        yield viewer
    finally:
        viewer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the viewer against a DICOMweb endpoint")
    run.add_argument("--endpoint", type=Path, default=ROOT / ".local" / "endpoint.json")
    run.add_argument("--url", help="the DICOMweb base URL (default: the endpoint file's)")
    run.add_argument("--port", type=int, default=3000)
    run.add_argument("--same-origin", action="store_true", help="forward /dicomweb to the API (adds the API key)")
    sub.add_parser("fetch", help="fetch the viewer only")
    args = parser.parse_args()
    if args.command == "fetch":
        print(fetch_viewer())
        return
    url, key = args.url, None
    if url is None:
        found = json.loads(args.endpoint.read_text())
        url, key = found["base_url"], found.get("api_key")
    if key and not args.same_origin:
        print("the stack has an API key and OHIF sends none: use --same-origin (the proxy adds it)")
    viewer = serve(url, port=args.port, same_origin=args.same_origin, api_key=key)
    print(f"OHIF {VERSION} at {viewer.url} (DICOMweb root {viewer.dicomweb_root}); Ctrl-C stops")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        viewer.stop()


if __name__ == "__main__":
    main()
