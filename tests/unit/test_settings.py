"""Settings are read once at cold start; a missing required variable stops the function there,
with a message naming it, instead of failing at the first request."""

from __future__ import annotations

import pytest

from dicomweb_server.aws.api import api_handler
from dicomweb_server.aws.s3_events import s3_handler
from dicomweb_server.settings import MissingSetting, Settings


def test_from_env_names_each_missing_variable():
    with pytest.raises(MissingSetting, match="BUCKET_NAME and TABLE_NAME must be set"):
        Settings.from_env({})
    with pytest.raises(MissingSetting, match="^TABLE_NAME must be set"):
        Settings.from_env({"BUCKET_NAME": "b"})


def test_from_env_reads_the_template_variables():
    settings = Settings.from_env({"BUCKET_NAME": "b", "TABLE_NAME": "t", "MAX_RESPONSE_BYTES": "123"})
    assert (settings.bucket_name, settings.table_name, settings.max_response_bytes) == ("b", "t", 123)
    with pytest.raises(ValueError, match="MAX_RESPONSE_BYTES must be an integer, got 'lots'"):
        Settings.from_env({"BUCKET_NAME": "b", "TABLE_NAME": "t", "MAX_RESPONSE_BYTES": "lots"})


@pytest.mark.parametrize("build", [lambda: api_handler("search"), lambda: api_handler("store"), s3_handler])
def test_a_function_without_its_variables_fails_at_cold_start(build, monkeypatch):
    monkeypatch.delenv("BUCKET_NAME", raising=False)
    monkeypatch.setenv("TABLE_NAME", "t")
    with pytest.raises(MissingSetting, match="BUCKET_NAME must be set"):
        build()
