"""``INFRABOT_LOG_LEVEL`` and ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` are checked with the other
settings: a bad one is the one ``bad setting`` line at start (naming the variable that is set,
never quoting a URL, which may hold a password), exit 1, before anything runs or is made."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import clean_env, infrabot
from pydantic import ValidationError

from orchestrator._log import configure
from orchestrator.config import Settings

LEVEL = "bad setting INFRABOT_LOG_LEVEL: not a log level: use DEBUG, INFO, WARNING, ERROR or " \
        "CRITICAL (any case)"
OTLP = "must be an http:// or https:// URL with a host (e.g. http://localhost:4318)"


@pytest.mark.parametrize("value", ["bogus", "10", "INFO "])
def test_a_bad_log_level_is_one_line_at_start(value: str, tmp_path: Path) -> None:
    result = infrabot("runs", "list", env=clean_env(INFRABOT_STATE_DIR=str(tmp_path),
                                                    INFRABOT_LOG_LEVEL=value))
    assert result.returncode == 1, result
    assert result.error_line() == LEVEL
    assert result.stdout == ""


@pytest.mark.parametrize(("value", "level"), [("debug", "DEBUG"), ("Warning", "WARNING"),
                                              ("warn", "WARN"), ("CRITICAL", "CRITICAL")])
def test_a_log_level_is_read_in_any_case(value: str, level: str) -> None:
    assert Settings(log_level=value).log_level == level


def test_configure_refuses_what_is_not_a_level() -> None:
    with pytest.raises(ValueError, match="not a log level"):
        configure("bogus")


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT",
                                      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
@pytest.mark.parametrize("url", ["notaurl", "localhost:4318", "ftp://collector:21",
                                 "http://", "https://user:s3cret@collector:port/",
                                 "http://user:s3cret@[::1"])
def test_a_bad_otlp_endpoint_is_one_line_at_start_never_quoted(variable: str, url: str,
                                                               tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = infrabot("serve", "--port-base", "0",
                      env=clean_env(INFRABOT_STATE_DIR=str(state), **{variable: url}),
                      timeout=30)
    assert result.returncode == 1, result
    assert result.error_line() == f"bad setting {variable}: {OTLP}"
    assert "s3cret" not in result.stderr and result.stdout == ""
    assert not state.exists()  # refused before serve made anything


def test_the_traces_endpoint_is_named_when_both_are_set(tmp_path: Path) -> None:
    """The exporter (and the settings) take ..._TRACES_ENDPOINT first: a bad one is named."""
    env = clean_env(INFRABOT_STATE_DIR=str(tmp_path), OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318",
                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="notaurl")
    assert infrabot("runs", "list", env=env).error_line() == \
        f"bad setting OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {OTLP}"


@pytest.mark.parametrize("url", ["http://localhost:4318", "https://collector.example/v1/traces",
                                 "http://[::1]:4318", ""])
def test_a_good_otlp_endpoint_is_taken(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    assert Settings().otlp_endpoint == url


def test_the_settings_object_refuses_a_bad_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "notaurl")
    with pytest.raises(ValidationError, match="must be an http:// or https:// URL"):
        Settings()


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT",
                                      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_with_tracing_off_a_shared_endpoint_is_not_read(variable: str, tmp_path: Path) -> None:
    """Another program's endpoint (a gRPC exporter's scheme-less ``host:4317``) in the shared
    variable does not stop a command that exports nothing."""
    result = infrabot("workflows", "list", env=clean_env(INFRABOT_STATE_DIR=str(tmp_path),
                                                         INFRABOT_TRACING="false",
                                                         **{variable: "collector:4317"}))
    assert result.returncode == 0, result
    assert "post-deploy" in result.stdout


def test_with_tracing_on_the_same_endpoint_is_refused(tmp_path: Path) -> None:
    result = infrabot("workflows", "list", env=clean_env(INFRABOT_STATE_DIR=str(tmp_path),
                                                         INFRABOT_TRACING="true",
                                                    OTEL_EXPORTER_OTLP_ENDPOINT="collector:4317"))
    assert result.returncode == 1, result
    assert result.error_line() == f"bad setting OTEL_EXPORTER_OTLP_ENDPOINT: {OTLP}"


def test_a_bad_tracing_setting_leaves_the_endpoint_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing's own value unreadable: the endpoint is checked as if tracing were on."""
    monkeypatch.setenv("INFRABOT_TRACING", "perhaps")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "notaurl")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert {error["loc"][0] for error in caught.value.errors()} == {"tracing", "otlp_endpoint"}
