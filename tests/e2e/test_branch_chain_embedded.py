"""A branch that hands off on, in one process against the real servers (docs/graphs.md): the
scanner's branch goes on to agent:commenter (declared only in this test's directory file), whose
hop carries the join's hand-off on, so the join goes out once the commenter (and ArgoCD) are
done. The commenter's hand-off is exchanged from the scanner's token (act nests, scope narrows);
a branch hop performed again publishes the next hop once; revoking the branch's first token
stops the agent after it, and the join ends the run with that stop."""

from __future__ import annotations

import base64
import collections
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from celery.signals import before_task_publish
from rich.console import Console, Group, RenderableType
from rich.text import Text

from agents.tasks import task_name
from e2e._branch_chain import ARGOCD, CLEANUP, COMMENTER, INFRABOT, SCANNER, with_commenter
from e2e._harness import (
    RUN_TIMEOUT,
    accepted_run_id,
    deployment,
    embedded_settings,
    events_of,
    post_webhook,
)
from infrabot.demo._render import _HopRows, hops
from infrabot.demo._report_edges import graph_edges
from infrabot.demo._report_svg import layout
from infrabot.system import System, running_system
from orchestrator.errors import Unavailable
from orchestrator.runs import Exchanged, HopJournal, Run, render_run


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    settings = embedded_settings(tmp_path / "state",
                                 workflows_dir=with_commenter(tmp_path / "workflows"))
    with running_system(settings) as running:
        yield running


def run_of(system: System) -> Run:
    run_id = accepted_run_id(post_webhook(system.webhooks_url, deployment("sam")))
    return system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT + 30)


def hand_offs(run: Run, agent: str) -> dict[str, dict[str, Any]]:
    """The claims of each token ``agent`` handed off, by the agent it was handed to."""
    return {d.hand_off: d.claims for d in events_of(run, "exchanged", agent)
            if isinstance(d, Exchanged) and d.hand_off is not None and d.claims}


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's payload, read without verifying (the token is the test's own capture)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload)
                                                                                % 4)))
    return decoded


class Published:
    """Every hop message published while in use: (task name, headers, args)."""

    def __init__(self, on: Callable[[str, dict[str, Any], list[Any]], None] | None = None
                 ) -> None:
        self.messages: list[tuple[str, dict[str, Any], list[Any]]] = []
        self.on = on

    def __call__(self, sender: str | None = None, body: Any = None,
                 headers: dict[str, Any] | None = None, **_: Any) -> None:
        self.messages.append((sender or "", dict(headers or {}), list(body[0])))
        if self.on is not None:
            self.on(sender or "", dict(headers or {}), list(body[0]))

    def __enter__(self) -> Self:
        before_task_publish.connect(self, weak=False)
        return self

    def __exit__(self, *_: object) -> None:
        before_task_publish.disconnect(self)

    def to(self, system: System, agent: str) -> list[tuple[dict[str, Any], list[Any]]]:
        wanted = task_name(system.celery, agent)
        return [(h, a) for name, h, a in self.messages if name == wanted]


def fired(system: System, published: Published, agent: str) -> int:
    """How many times ``agent``'s hop was published, its own retries aside."""
    return sum(not headers.get("retries") for headers, _ in published.to(system, agent))


def text_of(renderable: RenderableType) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def order(run: Run) -> list[str]:
    """The agents in the order each last acted."""
    last = {e.agent: i for i, e in enumerate(run.events) if e.agent is not None}
    return sorted(last, key=last.__getitem__)


def test_a_branch_hands_off_on_and_the_join_waits_for_its_end(system: System) -> None:
    with Published() as published:
        run = run_of(system)
    assert (run.status, run.reason) == ("succeeded", "ok"), run.reason
    assert [c.action for c in events_of(run, "called", COMMENTER)] == ["comment:post"]
    commenter_last = max(i for i, e in enumerate(run.events) if e.agent == COMMENTER)
    cleanup_first = min(i for i, e in enumerate(run.events) if e.agent == CLEANUP)
    assert commenter_last < cleanup_first  # the join waited for the branch's last agent
    assert [c.action for c in events_of(run, "called", CLEANUP)] == ["incident:resolve"]
    assert events_of(run, "branch_ended") == []

    # The commenter's hop is an ordinary hand-off of the branch: its own task id, the join's
    # hand-off passed on; the join went out once, from the branch that ended last.
    [(scanner_headers, _)] = published.to(system, SCANNER)
    [(commenter_headers, commenter_args)] = published.to(system, COMMENTER)
    assert (scanner_headers["id"], commenter_headers["id"]) == \
        (f"{run.run_id}.scanner", f"{run.run_id}.commenter")
    assert commenter_args[5] == 1  # its journaled generation
    assert fired(system, published, CLEANUP) == 1
    [(_, join_args)] = published.to(system, CLEANUP)
    assert join_args[5] == 1  # journaled when it went out

    # Delegation: exchanged from the scanner's token; act nests, scope narrows, may_act names it.
    branch = hand_offs(run, INFRABOT)[SCANNER]
    commenter = hand_offs(run, SCANNER)[COMMENTER]
    assert set(branch["scope"].split()) == {"urn:infra:repo:read", "urn:infra:deploy:comment"}
    assert commenter["scope"] == "urn:infra:deploy:comment"
    assert commenter["may_act"] == {"sub": COMMENTER}
    assert commenter["act"] == {"sub": SCANNER, "act": {"sub": INFRABOT}}
    assert commenter["cnf"]["jkt"] == system.runtime.dpop(COMMENTER).jkt
    assert commenter["ancestors"][-1] == branch["jti"]
    # The join, minted at the fork, names the branch's first token (deeper ones did not exist).
    join = hand_offs(run, INFRABOT)[CLEANUP]
    assert {branch["jti"], hand_offs(run, INFRABOT)[ARGOCD]["jti"]} <= set(join["ancestors"])
    assert join["act"] == {"sub": INFRABOT}
    assert order(run)[-1] == CLEANUP


def failing_once(original: Callable[..., Any], when: Callable[..., bool]) -> Callable[..., Any]:
    calls = {"failed": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        if not calls["failed"] and when(*args, **kwargs):
            calls["failed"] += 1
            raise Unavailable("gone", reason="run_log_unavailable")
        return original(*args, **kwargs)

    return call


def assert_retried_once(run: Run) -> None:
    """The scanner's hop retried once, and nothing else: the join went out only once the run
    log showed the scanner's hop done too (by the scanner's retry, which found the commenter
    ended), so it never waited."""
    retries = [(e.agent, e.detail.reason) for e in run.events if e.kind == "retrying"]
    assert retries == [(SCANNER, "run_log_unavailable")]


def comments(system: System, run_id: str) -> collections.Counter[str]:
    return collections.Counter(r.action for r in system.stack.audit.query(run_id=run_id)
                               if r.performed_by == COMMENTER and r.action != "token_exchange")


def test_a_branch_hop_performed_again_publishes_the_next_hop_once(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner's hop published the commenter's and journaled it sent, then could not record
    itself done: retried, it finds the hand-off sent, publishes nothing, records itself done and,
    every branch ended by then, publishes the join."""
    runs = system.runtime.runs
    monkeypatch.setattr(runs, "mark_hop_done", failing_once(
        runs.mark_hop_done, lambda run_id, agent, task_id: agent == SCANNER))
    with Published() as published:
        run = run_of(system)
    assert (run.status, run.reason) == ("succeeded", "ok"), run.reason
    assert_retried_once(run)
    assert len(published.to(system, SCANNER)) == 2  # the first hop and its retry
    assert len(published.to(system, COMMENTER)) == 1
    delivery = HopJournal(runs).delivery(run.run_id, COMMENTER)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("received", 1)
    assert comments(system, run.run_id) == collections.Counter({"comment:post": 1})
    assert len(events_of(run, "called", CLEANUP)) == 1
    assert len(events_of(run, "finished")) == 1


def test_a_branch_hand_off_in_doubt_is_published_again_and_performed_once(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner's hop published the commenter's but could not journal it sent: retried, it
    mints and publishes it again under a new generation (unless the first copy claimed it
    meanwhile). Of the copies, one is performed; the other does nothing (stale) and publishes
    no join, so the join runs once, after the commenter."""
    monkeypatch.setattr(HopJournal, "published_together", failing_once(
        HopJournal.published_together,
        lambda journal, run_id, generations: COMMENTER in generations))
    with Published() as published:
        run = run_of(system)
    assert (run.status, run.reason) == ("succeeded", "ok"), run.reason
    assert_retried_once(run)
    copies = published.to(system, COMMENTER)
    assert [args[5] for _, args in copies] in ([1], [1, 2])
    delivery = HopJournal(system.runtime.runs).delivery(run.run_id, COMMENTER)
    assert delivery is not None and delivery.state == "received"
    assert delivery.attempts == len(copies)
    assert comments(system, run.run_id) == collections.Counter({"comment:post": 1})
    assert len(events_of(run, "called", COMMENTER)) == 1
    assert fired(system, published, CLEANUP) == 1  # by the branch that ended last, once
    assert len(events_of(run, "called", CLEANUP)) == 1


def test_revoking_a_branch_s_first_token_stops_the_agent_after_it_and_the_join(
        system: System) -> None:
    """As the scanner hands off, its branch token (the fork's hand-off to it) is revoked: the
    commenter's token has it in its ancestors, so the commenter's first exchange is refused; its
    branch ends there, and the join ends the run with that stop, acting on nothing."""
    tokens: dict[str, str] = {}
    scanner_task, commenter_task = (task_name(system.celery, a) for a in (SCANNER, COMMENTER))

    def revoke(name: str, headers: dict[str, Any], args: list[Any]) -> None:
        if name == scanner_task:
            tokens["branch"] = args[2]
        elif name == commenter_task and "revoked" not in tokens:
            tokens["revoked"] = claims_of(tokens["branch"])["jti"]
            system.orchestrator.auth.revoke_by(jti=tokens["revoked"])

    with Published(on=revoke):
        run = run_of(system)
    assert run.status == "denied"
    assert run.reason == (f"{COMMENTER} exchange for github.comment.create: invalid_request "
                          "(ancestor_revoked)")
    [ended] = events_of(run, "branch_ended")
    assert (ended.status, ended.reason) == ("denied", run.reason)
    assert [e.agent for e in run.events if e.kind == "branch_ended"] == [COMMENTER]
    assert events_of(run, "called", COMMENTER) == []
    assert events_of(run, "exchanged", CLEANUP) == []  # the join acts on nothing
    assert [(f.status, f.reason) for f in events_of(run, "finished")] == \
        [("denied", run.reason)]


def test_an_agent_deeper_in_a_branch_shows_under_its_branch(system: System) -> None:
    """``runs show``, the terminal story and the HTML report's graph draw the commenter inside
    the scanner's branch, and the join waiting for the branch's last agent."""
    run = run_of(system)
    assert run.branches == {ARGOCD: (ARGOCD,), SCANNER: (SCANNER, COMMENTER)}
    shown = [line.strip() for line in text_of(render_run(run)).splitlines()]
    branch = shown.index(f"branch    {INFRABOT} fan-out to {ARGOCD} ∥ {SCANNER}, joined by "
                         f"{CLEANUP}")
    assert shown[branch + 1:branch + 3] == [f"∥ {ARGOCD}", f"∥ {SCANNER} → {COMMENTER}"]
    story = hops(run, {}).renderable
    assert isinstance(story, Group)
    [rows] = [r.rows for r in story.renderables if isinstance(r, _HopRows)]
    tokens = {cells[1].plain: cells[3].plain for cells, _ in rows
              if isinstance(cells[1], Text) and isinstance(cells[3], Text)}
    assert tokens[f"hand-off to {CLEANUP}"].endswith(
        f" · join of {ARGOCD}, {SCANNER} → {COMMENTER}")
    assert tokens[f"hand-off to {COMMENTER}"] == \
        f"may_act {COMMENTER} · DPoP · in {SCANNER}'s branch"
    edges = {(e.source, e.target, e.head) for e in graph_edges(run)}
    assert (COMMENTER, CLEANUP, "join waits for it") in edges
    assert (SCANNER, CLEANUP, "join waits for it") not in edges
    assert (ARGOCD, CLEANUP, "join waits for it") in edges
    assert (SCANNER, COMMENTER, "hand-off · 1 scopes") in edges
    at = {n.id: n for n in layout(run, graph_edges(run)).nodes}
    assert at[COMMENTER].y == at[SCANNER].y  # on its branch's row, the column after it
    assert at[COMMENTER].x > at[SCANNER].x and at[COMMENTER].x < at[CLEANUP].x
