"""Composition root of the retrieve service under the Lambda Web Adapter (see run.sh)."""

from dicomweb_server.aws.web_adapter import asgi_app

app = asgi_app("retrieve")
