"""The API Gateway entry: the only module that knows about Mangum and the Lambda proxy event.

``functions/<name>/app.py`` calls ``api_handler("search")`` (etc.) once at cold start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from ..settings import Settings
from ..web.app import create_app
from .runtime import aws_clients, aws_ports, logger, metrics, upload_ports

TEXT_TYPES = ["application/json", "application/dicom+json", "application/dicom+xml", "text/", "application/xml"]


def api_key_provider(settings: Settings) -> Callable[[], str | None]:
    """The API key, read from Secrets Manager on first use (not at import) and then kept."""
    if settings.api_key or not settings.api_key_secret_arn:
        return lambda: settings.api_key or None
    cache: dict[str, str] = {}

    def provide() -> str | None:
        if "key" not in cache:
            import boto3

            secret = boto3.session.Session().client("secretsmanager")
            cache["key"] = secret.get_secret_value(SecretId=settings.api_key_secret_arn)["SecretString"]
        return cache["key"]

    return provide


def api_handler(service: str, settings: Settings | None = None) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler serving one DICOMweb service behind API Gateway (REST, proxy integration)."""
    settings = settings or Settings.from_env()
    clients = aws_clients()
    index, blobs = aws_ports(settings, clients)
    app = create_app(
        settings,
        index=index,
        blobs=blobs,
        services=[service],
        api_key=api_key_provider(settings),
        uploads=upload_ports(settings, clients) if service == "store" else None,
    )
    asgi = Mangum(app, lifespan="off", text_mime_types=TEXT_TYPES)  # type: ignore[arg-type]

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response: dict[str, Any] = asgi(event, context)
        status = int(response.get("statusCode", 500))
        metrics.add_dimension(name="operation", value=service)
        metrics.add_metric(name=f"status{status // 100}xx", unit=MetricUnit.Count, value=1)
        logger.info(
            "request", extra={"method": event.get("httpMethod"), "resource": event.get("resource"), "status": status}
        )
        return response

    return handler
