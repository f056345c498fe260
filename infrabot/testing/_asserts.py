"""Assertions about a chain with messages a person can act on: what was expected, and what the
run actually did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infrabot.testing._system import ChainRun
from orchestrator.audit import StoredRecord
from orchestrator.catalog import CATALOG
from orchestrator.runs import HAND_OFF, CallDenied, ExchangeDenied


def _action(name: str) -> tuple[str, str]:
    """A workflow action (``aws.ec2.create_tags``) as (service, audit action)."""
    action = CATALOG.get(name)
    if action is None:
        raise AssertionError(f"unknown action {name!r}; actions are named as in workflows, "
                             f"e.g. {', '.join(sorted(CATALOG)[:3])}")
    return action.service, action.audit_action


def _target(refusal: ExchangeDenied | CallDenied) -> str:
    """What was refused: the exchange's target, or the action called."""
    return refusal.for_ if isinstance(refusal, ExchangeDenied) else refusal.action


def _calls(run: ChainRun, agent: str) -> list[StoredRecord]:
    return [r for r in run.audit if r.performed_by == agent and r.action != "token_exchange"]


def _what_happened(run: ChainRun, agent: str) -> str:
    calls = [f"{r.service} {r.action} → {r.decision} ({r.reason})" for r in _calls(run, agent)]
    denied = [f"{e.kind} for {_target(e.detail)}: {e.detail.reason}" for e in run.run.events
              if e.agent == agent and isinstance(e.detail, ExchangeDenied | CallDenied)]
    lines = calls + denied
    return (f"run {run.run_id} ended {run.status}"
            + (f" ({run.reason})" if run.reason else "") + f"; {agent} did: "
            + ("; ".join(lines) if lines else "nothing"))


def assert_allowed(run: ChainRun, *, agent: str, action: str) -> StoredRecord:
    """``agent`` called ``action`` and the service allowed it; returns its audit record."""
    service, audit_action = _action(action)
    for record in _calls(run, agent):
        if (record.service, record.action, record.decision) == (service, audit_action, "allow"):
            return record
    raise AssertionError(f"expected {agent} to be allowed {action} ({service} "
                         f"{audit_action}), but {_what_happened(run, agent)}")


def assert_denied(run: ChainRun, *, agent: str, action: str,
                  reason: str | None = None) -> ExchangeDenied | CallDenied:
    """``agent``'s ``action`` (a workflow action, or ``"hand-off to agent:<name>"``) was
    refused, at the token exchange or at the service, with ``reason`` if given; returns the
    refusal (its run event's detail)."""
    service, audit_action = ("", "") if action.startswith(HAND_OFF) else _action(action)
    for event in run.run.events:
        d = event.detail
        if event.agent != agent or not isinstance(d, ExchangeDenied | CallDenied):
            continue
        same = d.for_ == action if isinstance(d, ExchangeDenied) else \
            (d.service, d.action) == (service, audit_action)
        if same and (reason is None or d.reason == reason):
            return d
    wanted = f" with reason {reason!r}" if reason else ""
    raise AssertionError(f"expected {agent}'s {action} to be denied{wanted}, but "
                         f"{_what_happened(run, agent)}")


def assert_chain(token_claims: Mapping[str, Any], actors: Sequence[str], *,
                 on_behalf_of: str | None = None) -> None:
    """The token's ``act`` chain is ``actors`` (current actor first) and its ``sub`` is
    ``on_behalf_of`` if given."""
    found, node = [], token_claims.get("act")
    while isinstance(node, Mapping):
        found.append(node.get("sub"))
        node = node.get("act")
    problems = []
    if found != list(actors):
        problems.append(f"actors {found} (current first), expected {list(actors)}")
    if on_behalf_of is not None and token_claims.get("sub") != on_behalf_of:
        problems.append(f"on behalf of {token_claims.get('sub')!r}, expected {on_behalf_of!r}")
    if problems:
        raise AssertionError("token chain mismatch: " + "; ".join(problems))
