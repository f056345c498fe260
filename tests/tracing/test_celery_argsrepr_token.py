"""Celery shows a task by its ``argsrepr`` and ``kwargsrepr`` headers (``celery inspect
active/reserved``, a Request's repr, its logs): a hop's token, and the join's hand-off token a
branch's hop carries, are replaced there whatever their shape, a JWT (delegated mode) or an
opaque string (static mode)."""

from __future__ import annotations

import inspect
import secrets
from pathlib import Path
from typing import Any

import pytest

from agents.tasks import JoinHandOff, enqueue
from infrabot.celery_app import TOKEN_ARG, TOKEN_KEYWORDS, create_celery, redacted
from orchestrator.config import Settings

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"
STATIC = secrets.token_urlsafe(32)  # what static mode hands an agent


def _published(tmp_path: Path, **options: Any) -> dict[str, Any]:
    app = create_celery(Settings(state_dir=tmp_path, broker_url="memory://"))
    app.send_task("agents.argocd", queue="argocd", **options)
    with app.connection_for_read() as connection:
        message = connection.SimpleQueue("argocd").get(timeout=5)
        message.ack()
    return dict(message.headers)


@pytest.mark.parametrize(("token", "mode"), [(JWT, "delegated"), (STATIC, "static")],
                         ids=["jwt", "opaque-static"])
def test_the_token_argument_is_replaced_whatever_its_shape(tmp_path: Path, token: str,
                                                           mode: str) -> None:
    headers = _published(tmp_path, args=["run-1", "post-deploy", token, "urn:infra:repo:read",
                                         mode, 1])
    assert headers["argsrepr"] == repr(["run-1", "post-deploy", "<token>",
                                        "urn:infra:repo:read", mode, 1])
    assert headers["kwargsrepr"] == "{}"
    assert token not in str(headers)


@pytest.mark.parametrize("token", [JWT, STATIC], ids=["jwt", "opaque-static"])
def test_the_token_keyword_is_replaced_whatever_its_shape(tmp_path: Path, token: str) -> None:
    headers = _published(tmp_path, args=["run-1", "post-deploy"],
                         kwargs={"token": token, "scope": "urn:infra:repo:read"})
    assert headers["argsrepr"] == repr(["run-1", "post-deploy"])
    assert headers["kwargsrepr"] == repr({"token": "<token>", "scope": "urn:infra:repo:read"})
    assert token not in str(headers)


def test_a_jwt_elsewhere_is_still_replaced_and_other_values_kept() -> None:
    assert redacted(["run-1", f"Bearer {JWT}", STATIC, "scope", "static", 0]) == repr(
        ["run-1", "<token>", "<token>", "scope", "static", 0])
    assert redacted({"note": JWT, "mode": "static"}) == repr({"note": "<token>",
                                                              "mode": "static"})
    assert redacted(None) == "[]"
    assert redacted(["run-1"]) == repr(["run-1"])  # shorter than the token's slot


def test_the_slot_is_the_hop_tasks_token_parameter(tmp_path: Path) -> None:
    app = create_celery(Settings(state_dir=tmp_path, broker_url="memory://"))
    parameters = list(inspect.signature(app.tasks["agents.argocd"].run).parameters)
    # a bound task's run: ``self`` is bound already, the rest is what a publisher sends
    assert parameters[:TOKEN_ARG + 1] == ["run_id", "workflow", "token"]


@pytest.mark.parametrize("token", [JWT, STATIC], ids=["jwt", "opaque-static"])
def test_a_branch_hops_join_token_is_replaced_whatever_its_shape(tmp_path: Path,
                                                                  token: str) -> None:
    app = create_celery(Settings(state_dir=tmp_path, broker_url="memory://"))
    enqueue(app, "agent:argocd", "run-1", "post-deploy", STATIC, "urn:infra:repo:read",
            "static", 1, JoinHandOff(token, "urn:infra:incident:write"))
    with app.connection_for_read() as connection:
        message = connection.SimpleQueue("argocd").get(timeout=5)
        message.ack()
    headers = dict(message.headers)
    assert headers["kwargsrepr"] == repr({"join_token": "<token>",
                                          "join_scope": "urn:infra:incident:write"})
    assert token not in str(headers) and STATIC not in str(headers)
    assert token not in repr(JoinHandOff(token, ""))
    keywords = list(inspect.signature(app.tasks["agents.argocd"].run).parameters)
    assert set(TOKEN_KEYWORDS) <= set(keywords)  # the hop task's own token parameters
