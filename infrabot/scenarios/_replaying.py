"""A sibling's token replayed, for a scenario: the moment a fan-out publishes its branches, the
token handed off to one branch's agent is presented by another branch's agent, authenticated
with that agent's own key, at the authorization server: what a compromised branch would try.

The token is taken from the branch's task message as it is published (``before_task_publish``,
in this process: embedded) and never kept: only the server's answer is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.signals import before_task_publish

from agents.tasks import task_name
from infrabot.scenarios._model import Scenario
from orchestrator.errors import InfraBotError, OAuthError

if TYPE_CHECKING:
    from infrabot.system import System


@dataclass
class Replayed:
    """The server's answer to the replay: ``allow``, or the refusal's error and reason."""

    outcome: str | None = None
    error: str | None = None
    reason: str | None = None


@contextlib.contextmanager
def replaying(system: System, scenario: Scenario) -> Iterator[Replayed]:
    rule = scenario.changes.replay
    answer = Replayed()
    if rule is None:
        yield answer
        return
    wanted = task_name(system.celery, rule.token_of)
    datadog = system.runtime.service_url("datadog")

    def on_publish(sender: str | None = None, body: Any = None, **_: Any) -> None:
        if sender != wanted or answer.outcome is not None:
            return
        token = body[0][2]  # the hop's args: run, workflow, token, ...
        try:
            system.runtime.auth(rule.by).exchange(token, resource=datadog,
                                                  scope="urn:infra:monitoring:read")
            answer.outcome = "allow"
        except OAuthError as exc:
            answer.outcome, answer.error, answer.reason = "deny", exc.code, exc.reason
        except InfraBotError as exc:
            answer.outcome, answer.reason = "failed", exc.reason

    before_task_publish.connect(on_publish, weak=False)
    try:
        yield answer
    finally:
        before_task_publish.disconnect(on_publish)
