"""There is no default webhook secret. ``infrabot serve`` with INFRABOT_WEBHOOK_SECRET unset
writes a random one to DIR/webhook_secret (0600, in a 0700 directory) on its first start, says
where (never what), and reuses it on the next; ``infrabot simulate`` signs with that file, or
with INFRABOT_WEBHOOK_SECRET when it is set. Run as a user types the commands."""

from __future__ import annotations

import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import clean_env, infrabot, serving


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secret") / "state"  # not created: serve makes it


@pytest.fixture(scope="module")
def env(state: Path) -> dict[str, str]:
    return clean_env(INFRABOT_STATE_DIR=str(state))


@pytest.fixture(scope="module")
def first_start(state: Path, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The secret file's text and serve's output, from the first start; serve keeps running."""
    with serving(state, env):
        text = (state / "webhook_secret").read_text()
        yield text, _serve_log(state)


def _serve_log(state: Path) -> str:
    return (state.parent / f"{state.name}-serve.log").read_text()


def test_the_first_start_writes_a_private_random_secret(state: Path,
                                                        first_start: tuple[str, str]) -> None:
    text, log = first_start
    path = state / "webhook_secret"
    assert re.fullmatch(r"[0-9a-f]{64}\n", text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert f"webhook secret created in {path}" in log
    assert text.strip() not in log  # where it is, never what it is
    assert [p.name for p in state.iterdir() if p.name.startswith(".webhook_secret")] == []


def test_simulate_signs_with_the_secret_serve_wrote(env: dict[str, str],
                                                    first_start: tuple[str, str]) -> None:
    data = infrabot("simulate", "deploy", "--user", "sam", "--json", env=env).ok().json()
    assert isinstance(data, dict)
    assert (data["sent"], data["accepted"], data["refused"]) == (1, 1, {})
    assert data["statuses"] == {"succeeded": 1}


def test_the_setting_wins_over_the_file(env: dict[str, str],
                                        first_start: tuple[str, str]) -> None:
    other = {**env, "INFRABOT_WEBHOOK_SECRET": secrets.token_hex(32)}
    result = infrabot("simulate", "deploy", "--user", "sam", "--json", env=other)
    assert result.error_line() == "event 1 refused at the receiver: 401 bad_signature"
    data = result.json()  # a refusal was not expected: exit 1, and the summary still printed
    assert isinstance(data, dict)
    assert (data["sent"], data["accepted"], data["refused"]) == (1, 0, {"bad_signature": 1})
    assert data["statuses"] == {}


def test_a_restart_reuses_the_secret(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = clean_env(INFRABOT_STATE_DIR=str(state))
    with serving(state, env):
        text = (state / "webhook_secret").read_text()
    assert "webhook secret created in" in _serve_log(state)
    with serving(state, env):  # the same state directory, after a stop
        assert (state / "webhook_secret").read_text() == text
        assert f"webhook secret read from {state / 'webhook_secret'}" in _serve_log(state)
        data = infrabot("simulate", "deploy", "--user", "robin", "--json", env=env).ok().json()
        assert isinstance(data, dict) and data["accepted"] == 1


def test_serve_with_a_secret_set_writes_no_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_WEBHOOK_SECRET=secrets.token_hex(32))
    with serving(state, env):
        assert not (state / "webhook_secret").exists()
        assert "webhook secret" not in _serve_log(state)
        data = infrabot("simulate", "deploy", "--user", "sam", "--json", env=env).ok().json()
        assert isinstance(data, dict) and data["accepted"] == 1
