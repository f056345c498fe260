"""Distributed-mode hints: ``infrabot serve`` whose Redis (or RabbitMQ) does not answer (a URL at a
closed port) says so in one line when it starts, and logs a warning naming what is down on each
webhook it refuses for it."""

from __future__ import annotations

import socket
from pathlib import Path

from _cli import clean_env, infrabot, serving


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_warns_at_start_and_on_each_refused_webhook(tmp_path: Path) -> None:
    port = closed_port()
    state = tmp_path / "state"
    state.mkdir()
    env = clean_env(INFRABOT_STATE_DIR=str(state),
                    INFRABOT_REDIS_URL=f"redis://:not-shown@127.0.0.1:{port}/0")
    with serving(state, env):
        result = infrabot("simulate", "deploy", "--user", "sam", env=env)
    log = (tmp_path / "state-serve.log").read_text()
    assert result.stdout == "lost  503 replay_cache_unavailable (no run started)\n", result
    assert result.error_line() == "1 event lost: 503 replay_cache_unavailable 1"
    warnings = [line for line in log.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        (f"warning: Redis at 127.0.0.1:{port}/0 (INFRABOT_REDIS_URL) is not answering (Error 111 "
        f"connecting to 127.0.0.1:{port}. Connection refused): webhooks are refused (503) until "
        "it does; start redis-server or fix INFRABOT_REDIS_URL")], log
    refused = [line for line in log.splitlines() if "webhook_answered" in line]
    assert len(refused) == 4, log  # the first send and its three retries, each refused
    for line in refused:
        assert "[warning" in line and "status=503" in line, line
        assert ("hint='the revocation registry (INFRABOT_REDIS_URL) or the run log cannot be "
                "used: is Redis running?'") in line
    assert "not-shown" not in log


def test_one_line_names_both_settings_when_broker_and_registry_share_the_redis(
        tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/3"
    state = tmp_path / "state"
    state.mkdir()
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_REDIS_URL=url,
                    INFRABOT_BROKER_URL=url)
    with serving(state, env):
        pass
    warnings = [line for line in (tmp_path / "state-serve.log").read_text().splitlines()
                if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert "(INFRABOT_REDIS_URL and INFRABOT_BROKER_URL) is not answering" in warnings[0]


def test_serve_warns_at_start_when_rabbitmq_does_not_answer_or_refuses(tmp_path: Path) -> None:
    """The same start-up line for a RabbitMQ broker: nothing listening, or the machine's
    RabbitMQ refusing a vhost it does not have; the URL's password is never shown."""
    port = closed_port()
    cases = {"closed": (f"amqp://guest:not-shown@127.0.0.1:{port}/",
                        (f"RabbitMQ at 127.0.0.1:{port} (INFRABOT_BROKER_URL) is not "
                         "answering ([Errno 111] Connection refused)")),
             "no vhost": ("amqp://guest:guest@127.0.0.1:5672/infrabot-no-such-vhost",
                          ("RabbitMQ at 127.0.0.1:5672/infrabot-no-such-vhost "
                           "(INFRABOT_BROKER_URL) is not answering (Connection.open: (530) "
                           "NOT_ALLOWED - vhost infrabot-no-such-vhost not found)"))}
    for name, (url, said) in cases.items():
        state = tmp_path / name.replace(" ", "-")
        state.mkdir()
        with serving(state, clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_BROKER_URL=url)):
            pass
        log = (tmp_path / f"{state.name}-serve.log").read_text()
        warnings = [line for line in log.splitlines() if line.startswith("warning: ")]
        assert warnings == [(f"warning: {said}: webhooks are refused (503) until it does; "
                             "start rabbitmq-server or fix INFRABOT_BROKER_URL")], log
        assert "not-shown" not in log
