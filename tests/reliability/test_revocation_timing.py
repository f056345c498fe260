"""Revocation: how soon it bites, and how far it reaches, over real HTTP, with the registry in
process (embedded) and in Redis (distributed mode's registry, db 11).

* Latency: from a revoke answering (RFC 7009 ``/revoke`` of a run's root token) to the first
  refused check, at the authorization server (introspection and exchange) and at a service. The
  very next check after the revoke returns is refused: no stale window by default
  (``revocation_stale_seconds`` = 0). Measured per trial, reported (``record_property`` and
  stdout). With a configured stale window the services may answer from their cache for that
  long, never longer.
* Cascade: a root token with a tree of descendants (two hand-offs to ArgoCD, one of them with
  two hand-offs to CleanupAgent, each with service tokens). Revoking the root refuses every
  descendant at the authorization server and every service token at its service; a second
  root's tree is untouched until one of its middle tokens is revoked, which refuses that
  subtree only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from e2e._harness import embedded_settings

from infrabot.system import System, running_system
from reliability._probes import (
    READS,
    error_of,
    exchange_form,
    proof_headers,
    read,
    root_for_infrabot,
    system_clients,
)

ORCH = "client:orchestrator"
REGISTRIES = [pytest.param("memory", id="memory"),
              pytest.param("redis", id="redis", marks=pytest.mark.redis)]


@pytest.fixture
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    registry = request.param
    redis_url = request.getfixturevalue("reliability_redis_url") if registry == "redis" else None
    stale = getattr(request, "stale", 0)
    settings = embedded_settings(tmp_path / "state", redis_url=redis_url,
                                 revocation_stale_seconds=stale)
    with running_system(settings, embedded_worker=False) as running:
        yield running


@dataclass
class Node:
    """A token of the tree: who may exchange it (hand-off) or which service it is for."""

    name: str
    token: str
    holder: str  # the agent that holds it (may exchange it if ``service`` is None)
    service: str | None = None
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


# root, InfraBot's 4 service tokens, 2 hand-offs to ArgoCD each with 2 service tokens and 2
# hand-offs to CleanupAgent each with 2 service tokens
TREE_SIZE = 1 + 4 + 2 * (1 + 2 + 2 * (1 + 2))
NEXT = {"agent:infrabot": "agent:argocd", "agent:argocd": "agent:cleanup"}
SERVICES_OF = {"agent:infrabot": ("datadog", "github", "aws", "pagerduty"),
               "agent:argocd": ("aws", "pagerduty"), "agent:cleanup": ("aws", "pagerduty")}


def grow(system: System, node: Node, hand_offs: list[int]) -> None:
    """Give ``node`` (a hand-off token) its service tokens and ``hand_offs[0]`` hand-offs to the
    next agent, each grown with ``hand_offs[1:]``."""
    endpoints = system.endpoints()
    with system_clients(system)(node.holder) as agent:
        for service in SERVICES_OF[node.holder]:
            token = agent.exchange(node.token, resource=endpoints[service],
                                   scope=READS[service][2])["access_token"]
            node.children.append(Node(f"{node.name}/{service}", token, node.holder, service))
        nxt = NEXT.get(node.holder)
        for index in range(hand_offs[0] if hand_offs and nxt else 0):
            token = agent.exchange(node.token, audience=nxt)["access_token"]
            child = Node(f"{node.name}/{nxt.split(':')[1]}{index}", token, nxt)
            node.children.append(child)
            grow(system, child, hand_offs[1:])


def tree(system: System, run_id: str) -> Node:
    root = root_for_infrabot(system_clients(system), run_id)["access_token"]
    node = Node(f"root:{run_id}", root, "agent:infrabot")
    grow(system, node, [2, 2])  # infrabot -> 2 x argocd -> 2 x cleanup each
    return node


@dataclass
class Checker:
    system: System
    http: httpx.Client

    def introspect(self, token: str) -> bool:
        with system_clients(self.system, self.http)(ORCH) as orch:
            return bool(orch.introspect(token)["active"])

    def exchange(self, node: Node) -> tuple[int, str | None, str | None]:
        """A hand-off token exchanged by its holder for its first service: the answer."""
        with system_clients(self.system, self.http)(node.holder) as agent:
            service = SERVICES_OF[node.holder][0]
            form = exchange_form(agent, node.token, resource=self.system.endpoints()[service])
            url = self.system.settings.auth_url + "/token"
            return error_of(self.http.post(url, data=form,
                                           headers=proof_headers(agent, self.http, url)))

    def call(self, node: Node) -> tuple[int, str | None, str | None]:
        assert node.service is not None
        return error_of(read(self.http, self.system.endpoints(), node.service, node.token))

    def allowed_everywhere(self, node: Node) -> None:
        for each in node.walk():
            assert self.introspect(each.token), each.name
            if each.service is None:
                assert self.exchange(each)[0] == 200, each.name
            else:
                assert self.call(each)[0] == 200, each.name

    def refused_everywhere(self, node: Node, reason: str) -> list[str]:
        """Every token under ``node`` refused: inactive at introspection, refused at exchange
        (a hand-off token) or at its service (a service token). ``reason`` for ``node`` itself,
        ``ancestor_revoked`` below it."""
        checked = []
        for each in node.walk():
            why = reason if each is node else "ancestor_revoked"
            assert not self.introspect(each.token), each.name
            if each.service is None:
                assert self.exchange(each) == (400, "invalid_request", why), each.name
            else:
                assert self.call(each) == (401, "invalid_token", why), each.name
            checked.append(each.name)
        return checked


@pytest.mark.parametrize("system", REGISTRIES, indirect=True)
def test_revoking_a_root_refuses_its_whole_tree_and_nothing_else(system: System) -> None:
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        check = Checker(system, http)
        first, second = tree(system, "run-cascade-1"), tree(system, "run-cascade-2")
        assert len(list(first.walk())) == TREE_SIZE
        check.allowed_everywhere(first)
        check.allowed_everywhere(second)

        with system_clients(system)(ORCH) as orch:
            orch.revoke(first.token)
        refused = check.refused_everywhere(first, "token_revoked")
        assert len(refused) == TREE_SIZE
        check.allowed_everywhere(second)

        middle = second.children[4]  # the first hand-off to ArgoCD, with its subtree
        assert middle.holder == "agent:argocd" and middle.service is None
        with system_clients(system)("agent:infrabot") as infrabot:  # the agent that obtained it
            infrabot.revoke(middle.token)
        assert len(check.refused_everywhere(middle, "token_revoked")) == 1 + 2 + 2 * 3
        below = {n.name for n in middle.walk()}
        for node in (n for n in second.walk() if n.name not in below):
            assert check.introspect(node.token), node.name


@pytest.mark.parametrize("system", REGISTRIES, indirect=True)
def test_revocation_bites_on_the_very_next_check(system: System, large: bool,
                                                 record_property: Callable[[str, object],
                                                                           None]) -> None:
    """Per trial: a fresh root and its tokens; revoke the root; the first check after the
    revoke returns is refused, at the authorization server and at the service."""
    trials = 40 if large else 8
    endpoints = system.endpoints()
    at_auth, at_service = [], []
    with httpx.Client(timeout=10.0, trust_env=False) as http, \
            system_clients(system)(ORCH) as orch, \
            system_clients(system)("agent:infrabot") as infrabot:
        for trial in range(trials):
            root = root_for_infrabot(system_clients(system), f"run-latency-{trial}")["access_token"]
            aws = infrabot.exchange(root, resource=endpoints["aws"],
                                    scope=READS["aws"][2])["access_token"]
            assert read(http, endpoints, "aws", aws).status_code == 200  # cached keys, warm
            assert orch.introspect(aws)["active"] is True
            at_the_server = bool(trial % 2)
            orch.revoke(root)
            returned = time.perf_counter()
            answer = orch.introspect(aws) if at_the_server else read(http, endpoints, "aws", aws)
            elapsed_ms = (time.perf_counter() - returned) * 1000
            if at_the_server:
                assert answer == {"active": False}
                at_auth.append(elapsed_ms)
            else:
                assert error_of(answer) == (401, "invalid_token", "ancestor_revoked")
                at_service.append(elapsed_ms)
            form = exchange_form(infrabot, root, resource=endpoints["aws"])
            refused = error_of(http.post(system.settings.auth_url + "/token", data=form))
            assert refused == (400, "invalid_request", "token_revoked")
    summary = {"auth_ms_max": round(max(at_auth), 2),
               "auth_ms_median": round(statistics.median(at_auth), 2),
               "service_ms_max": round(max(at_service), 2),
               "service_ms_median": round(statistics.median(at_service), 2),
               "stale_checks_after_revoke": 0, "trials": trials}
    for key, value in summary.items():
        record_property(f"revocation_{key}", value)
    print(f"\nrevocation to first refused check: {summary}")


@pytest.fixture
def stale_system(tmp_path: Path) -> Iterator[System]:
    settings = embedded_settings(tmp_path / "state", revocation_stale_seconds=STALE)
    with running_system(settings, embedded_worker=False) as running:
        yield running


STALE = 2


def test_a_configured_stale_window_is_the_only_delay(stale_system: System) -> None:
    """With ``revocation_stale_seconds`` set, a service may keep admitting a token it checked
    less than that long ago after its revocation, and refuses it once the window has passed;
    the authorization server never caches."""
    system = stale_system
    endpoints = system.endpoints()
    with httpx.Client(timeout=10.0, trust_env=False) as http, \
            system_clients(system)(ORCH) as orch, \
            system_clients(system)("agent:infrabot") as infrabot:
        root = root_for_infrabot(system_clients(system), "run-stale")["access_token"]
        aws = infrabot.exchange(root, resource=endpoints["aws"],
                                scope=READS["aws"][2])["access_token"]
        assert read(http, endpoints, "aws", aws).status_code == 200
        # The service asked the registry while handling that read, so no later than its answer
        # arrived: ``checked``. A read sent at ``s`` is decided no earlier than ``s``, so one
        # sent STALE or more after ``checked`` is decided past the window and must be refused.
        checked = time.monotonic()  # the registry's answer the service may reuse
        orch.revoke(root)
        assert orch.introspect(aws) == {"active": False}
        allowed_sent = None  # when the last read admitted from the cache was sent
        while True:
            sent = time.monotonic()
            if sent >= checked + STALE + 3:
                break
            answer = read(http, endpoints, "aws", aws)
            if answer.status_code != 200:
                break
            allowed_sent = sent
            time.sleep(0.05)
        assert error_of(answer) == (401, "invalid_token", "ancestor_revoked")
        refused_after = sent - checked  # the first refused read, as it was sent
        assert allowed_sent is None or allowed_sent - checked < STALE, allowed_sent - checked
        assert refused_after < STALE + 0.5, refused_after
    print(f"\nstale window {STALE} s: refused {refused_after:.2f} s after the cached check")
