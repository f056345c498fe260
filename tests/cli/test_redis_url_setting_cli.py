"""A malformed Redis URL (``INFRABOT_REDIS_URL``, or a Redis ``INFRABOT_BROKER_URL``) is one line
at start naming the variable and the expected shape, never a traceback, and never shows the
URL: a password with an unencoded ``/`` once reached redis-py's parser, whose error quoted the
password's first characters."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import clean_env, infrabot

from orchestrator._urls import REDIS_SHAPE

SECRET = "Xk9/Qw+secretPart"


@pytest.mark.parametrize(("variable", "value"), [
    ("INFRABOT_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:6391/0"),
    ("INFRABOT_REDIS_URL", "redis://127.0.0.1:6379/fifteen"),
    ("INFRABOT_REDIS_URL", "http://127.0.0.1:6379/0"),
    ("INFRABOT_BROKER_URL", f"redis://:{SECRET}@127.0.0.1:6391/0"),
])
@pytest.mark.parametrize("command", [("serve", "--port-base", "0"), ("runs", "list")])
def test_a_malformed_redis_url_is_one_line_naming_the_variable(
        variable: str, value: str, command: tuple[str, ...], tmp_path: Path) -> None:
    env = clean_env(**{variable: value}, INFRABOT_STATE_DIR=str(tmp_path / "s"))
    result = infrabot(*command, env=env, cwd=tmp_path)
    assert result.returncode == 1, result
    assert result.error_line().startswith(f"bad setting {variable}: {REDIS_SHAPE}"), result
    assert "Traceback" not in result.stderr
    assert "Xk9" not in result.stderr + result.stdout
