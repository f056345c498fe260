"""The delegation graph's edges, read from a run's events: the root grant and every hand-off
(named for its way: fan-out, branch taken, join from the fork) with the scopes handed off, each
branch's last agent to its join ("join waits for it", no token), the calls with the scopes used,
and the denials with their reasons. Laid out and drawn by :mod:`infrabot.demo._report_svg`.
:func:`route` names the agents that acted, as the run's hand-offs went.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.runs import (
    BranchTaken,
    CallDenied,
    Called,
    Exchanged,
    ExchangeDenied,
    HandedOff,
    RootDenied,
    RootGranted,
    Run,
    RunEvent,
)


def short(scope: object) -> str:
    return str(scope).replace("urn:infra:", "")


def scope_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [short(s) for s in value.split()]
    return [short(s) for s in value] if isinstance(value, (list, tuple)) else []


def peer_of(event: RunEvent, root_agent: str | None = None) -> str | None:
    """The node an event reaches out to: the service called, or the next agent (a refused
    root grant's: ``root_agent``, the workflow's first agent, when it is known)."""
    d = event.detail
    if isinstance(d, Called | CallDenied):
        return d.service or None
    if isinstance(d, HandedOff):
        return d.to or None
    if isinstance(d, Exchanged | ExchangeDenied):
        return d.hand_off if d.hand_off is not None else (d.for_.partition(".")[0] or None)
    if isinstance(d, RootGranted):
        return d.may_act or root_agent
    if isinstance(d, RootDenied):
        return root_agent
    return None


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # "handoff", "call" or "denied"
    head: str | None = None
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> list[str]:
        return ([self.head] if self.head else []) + self.lines


class _Edges:
    """Edges keyed by (source, target, kind): calls between the same pair share one edge."""

    def __init__(self, ends: dict[str, str] | None = None) -> None:
        self.ends = ends or {}  # a branch's head -> its last agent (the join waits for it)
        self.edges: dict[tuple[str, str, str], Edge] = {}
        self.used: dict[str, list[str]] = {}  # agent -> scopes of its last exchange for a call
        self.ways: dict[str, str] = {}  # agent handed off to -> what kind of way (graphs.md)

    def add(self, source: str, target: str, kind: str, head: str | None, lines: list[str],
            note: str) -> None:
        edge = self.edges.setdefault((source, target, kind), Edge(source, target, kind, head))
        edge.lines += [line for line in lines if line not in edge.lines]
        edge.notes.append(note)

    def take(self, event: RunEvent, agent: str, peer: str) -> None:
        d = event.detail
        if isinstance(d, RootGranted | HandedOff):
            scopes = scope_list(d.granted if isinstance(d, RootGranted) else d.scope)
            what = "root grant" if isinstance(d, RootGranted) else \
                self.ways.get(peer, "hand-off")
            self.add(agent, peer, "handoff", f"{what} · {len(scopes)} scopes", scopes,
                     f"{what}: {' '.join(scopes)}")
        elif isinstance(d, BranchTaken):
            for target in d.to:
                self.ways[target] = "fan-out" if len(d.to) > 1 else \
                    "branch taken" if d.when else "hand-off"
            for branch in d.to if d.join else ():  # no token on this edge
                self.ways[d.join or ""] = "join (from the fork)"
                last = self.ends.get(branch, branch)  # the branch's last agent, as it ran
                self.add(last, d.join or "", "handoff", "join waits for it", [],
                         f"{d.join} starts once {branch}'s branch is done")
        elif isinstance(d, Exchanged) and d.hand_off is None:
            self.used[agent] = scope_list(d.granted)
        elif isinstance(d, Called):
            scopes = self.used.pop(agent, []) or [f"{d.action} (no exchange)"]
            self.add(agent, peer, "call", None, scopes, f"{d.method} {d.action} → {d.status}")
        elif isinstance(d, CallDenied):
            reason = f"✗ {d.status} {d.reason}"
            scopes = self.used.pop(agent, []) or [d.action]
            self.add(agent, peer, "denied", reason, scopes, f"{d.kind}: {reason}")
        elif isinstance(d, ExchangeDenied | RootDenied):
            reason = f"✗ {d.error} ({d.reason})"
            scopes = scope_list(d.requested if isinstance(d, ExchangeDenied) else d.needed)
            self.add(agent, peer, "denied", reason, scopes, f"{d.kind}: {reason}")


def graph_edges(run: Run, root_agent: str | None = None) -> list[Edge]:
    """The hand-offs, calls and denials of a run, in the order they first happened."""
    edges = _Edges({head: chain[-1] for head, chain in run.branches.items()})
    for event in run.events:
        peer = peer_of(event, root_agent)
        if peer is not None or isinstance(event.detail, BranchTaken):
            edges.take(event, event.agent or run.user, peer or "")
    return list(edges.edges.values())


def route(run: Run) -> str:
    """The agents that acted, as the run's hand-offs went: ``a → b``, a fan-out's branches
    ``a → b ∥ (c → d)`` and its join ``⇒ join e``; empty when no agent was granted a token."""
    first = next((e.detail.may_act for e in run.events if isinstance(e.detail, RootGranted)),
                 None)
    onward: dict[str, list[str]] = {}
    forks: dict[str, BranchTaken] = {}
    for e in run.events:
        if isinstance(e.detail, HandedOff) and e.agent is not None:
            onward.setdefault(e.agent, []).append(e.detail.to)
        elif isinstance(e.detail, BranchTaken) and e.agent is not None and e.detail.join:
            forks.setdefault(e.agent, e.detail)
    seen: set[str] = set()

    def way(agent: str) -> str:
        seen.add(agent)
        fork = forks.get(agent)
        if fork is not None and fork.join is not None:
            branches = [" → ".join(run.branches.get(head, (head,))) for head in fork.to]
            seen.update(a for head in fork.to for a in run.branches.get(head, (head,)))
            text = " ∥ ".join(f"({b})" if " → " in b else b for b in branches)
            return f"{agent} → {text} ⇒ join {way(fork.join)}" \
                if fork.join in onward.get(agent, []) else f"{agent} → {text}"
        after = [a for a in onward.get(agent, []) if a not in seen]
        return agent if not after else f"{agent} → {' ∥ '.join(way(a) for a in after)}"

    return way(first) if first else ""
