#!/bin/sh
# The handler when the template's Streaming is Enabled: the Lambda Web Adapter
# (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs this script, waits until the app answers on
# AWS_LWA_PORT, then turns each invocation into an HTTP request and streams the answer back.
export PYTHONPATH="${LAMBDA_TASK_ROOT}:/opt/python:${PYTHONPATH}"
exec python3 -m uvicorn asgi:app --app-dir "${LAMBDA_TASK_ROOT}" --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
  --no-access-log --timeout-keep-alive 900
