"""What the processes' logs (orchestrator/_log.py) print for an exception: its plain traceback,
redacted, never a frame's local variables, which would print whatever the frame held: settings
with a password in the broker's URL, the static token, a token."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from agents._runtime import AgentRuntime
from orchestrator._log import redact
from orchestrator.config import Settings
from orchestrator.orchestration import Orchestrator

PASSWORD = "S3cretBrokerPw"
STATIC = "static-Tok3n-opaque-0123456789abcdefghijklmn"
TOKEN = "eyJhbGciOiJFUzI1NiJ9." + "A" * 80 + ".c2ln"

PROGRAM = textwrap.dedent(f"""
    from orchestrator._log import configure, get_logger
    from orchestrator.config import Settings
    from agents._runtime import AgentRuntime

    configure(json={{json}})
    settings = Settings(broker_url="amqp://infrabot:{PASSWORD}@127.0.0.1:5672/",
                        redis_url="redis://:{PASSWORD}@127.0.0.1:6379/0")

    def hop(settings, runtime, token):
        raise RuntimeError("the service refused " + token)

    try:
        hop(settings, AgentRuntime.__new__(AgentRuntime), "{TOKEN}")
    except RuntimeError:
        get_logger(agent="agent:argocd").exception("hop_crashed")
""")


@pytest.mark.parametrize("json", [False, True])
def test_an_exception_is_logged_as_its_traceback_with_no_secret(json: bool) -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM.replace("{json}", str(json))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    logged = result.stderr
    assert "hop_crashed" in logged and "RuntimeError: the service refused" in logged
    assert "[redacted token]" in logged
    for secret in (PASSWORD, TOKEN, TOKEN[:40]):
        assert secret not in logged


def test_settings_and_the_runtime_never_show_their_secrets_in_a_repr() -> None:
    settings = Settings(broker_url=f"amqp://u:{PASSWORD}@h:5672/",
                        redis_url=f"redis://:{PASSWORD}@h:6379/0", static_token=STATIC)
    assert PASSWORD not in repr(settings) and STATIC not in repr(settings)
    for holder in (AgentRuntime, Orchestrator):
        shown = [f.name for f in dataclasses.fields(holder) if f.repr]
        assert "static_token" not in shown and shown, holder


# A real JWT's payload is a JSON object too: glued to other text, "eyJ" then "eyJ" gives it away.
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize(("text", "shown"), [
    (f"sent Bearer {TOKEN} to github", "sent Bearer [redacted token] to github"),
    (f"sent jwt_{JWT} to github", "sent [redacted token] to github"),
    (f"sent Bearer%20{JWT} to github", "sent Bearer%[redacted token] to github"),
    (f"sent host.example.{JWT} to github", "sent host.example.[redacted token] to github"),
])
def test_a_token_glued_to_other_text_is_redacted(text: str, shown: str) -> None:
    assert redact(text) == shown
