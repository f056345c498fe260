"""A worker's runtime follows serve's ``endpoints.json`` (agents/_endpoints.py): a worker started
while serve is down, or before serve on OS-chosen ports has written the file, finds serve once
it has; a serve restarted on other ports is found there. While the file is missing (serve
stopped) the last URLs read stay: serve comes back where it was, or writes a new file. A file
that does not name an auth server (damaged, half written) never replaces good URLs. The file is
looked at as each hop starts, and a hop keeps the URLs it started with. URLs given explicitly
(the embedded system) stay as given.

Real files in a temporary state directory, written as serve writes them
(``infrabot.stack.write_endpoints``); only the authorization server's answers are scripted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from agents._endpoints import ServeEndpoints
from agents._runtime import AgentRuntime
from infrabot.stack import write_endpoints
from orchestrator.config import Settings
from orchestrator.keystore import client_key

INFRABOT = "agent:infrabot"
CONFIGURED = {"auth": "http://127.0.0.1:8700", "github": "http://127.0.0.1:8702"}
FIRST = {"auth": "http://127.0.0.1:41001", "github": "http://127.0.0.1:41002"}
SECOND = {"auth": "http://127.0.0.1:52001", "github": "http://127.0.0.1:52002"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    state = tmp_path / "state"
    state.mkdir()
    return Settings(state_dir=state, host="127.0.0.1", auth_port=8700, github_port=8702)


@pytest.fixture
def built(settings: Settings) -> Iterator[list[AgentRuntime]]:
    """The runtimes a test builds, closed after it."""
    runtimes: list[AgentRuntime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.close()


def build(built: list[AgentRuntime], settings: Settings,
          endpoints: dict[str, str] | None = None) -> AgentRuntime:
    runtime = AgentRuntime.build(settings, endpoints=endpoints,
                                 keys={INFRABOT: client_key(settings.keys_dir, INFRABOT, "ES256")})
    built.append(runtime)
    return runtime


def next_hop(runtime: AgentRuntime) -> None:
    """What a worker does as a hop starts (agents._runtime.runtime_for): follow serve's file."""
    assert isinstance(runtime.endpoints, ServeEndpoints)
    runtime.endpoints.follow()


def urls(runtime: AgentRuntime) -> dict[str, str]:
    """The URLs a hop starting now uses."""
    if isinstance(runtime.endpoints, ServeEndpoints):
        next_hop(runtime)
    return {"auth": runtime.endpoints["auth"], "github": runtime.service_url("github")}


def test_a_file_written_after_the_first_lookup_is_followed(
        settings: Settings, built: list[AgentRuntime]) -> None:
    runtime = build(built, settings)
    assert urls(runtime) == CONFIGURED  # serve is not up yet: the configured ports
    write_endpoints(settings, FIRST)
    assert urls(runtime) == FIRST


def test_a_rewritten_file_is_followed(settings: Settings, built: list[AgentRuntime]) -> None:
    write_endpoints(settings, FIRST)
    runtime = build(built, settings)
    assert urls(runtime) == FIRST
    write_endpoints(settings, SECOND)  # serve restarted on other ports
    assert urls(runtime) == SECOND


def test_a_removed_file_keeps_the_last_urls_until_a_new_one_comes(
        settings: Settings, built: list[AgentRuntime]) -> None:
    write_endpoints(settings, FIRST)
    runtime = build(built, settings)
    assert urls(runtime) == FIRST
    settings.endpoints_file.unlink()  # serve stopped
    assert urls(runtime) == FIRST
    write_endpoints(settings, SECOND)  # serve started again, on other ports
    assert urls(runtime) == SECOND


def test_a_damaged_file_never_replaces_good_urls(
        settings: Settings, built: list[AgentRuntime]) -> None:
    settings.endpoints_file.write_text('{"auth": "http://127.0.0.1:41')  # half written
    runtime = build(built, settings)
    assert urls(runtime) == CONFIGURED
    write_endpoints(settings, FIRST)
    assert urls(runtime) == FIRST
    settings.endpoints_file.write_text('{"auth": "http://127.0.0.1:52')
    assert urls(runtime) == FIRST
    settings.endpoints_file.write_text('{"github": "http://127.0.0.1:52002"}')  # no "auth"
    assert urls(runtime) == FIRST
    settings.endpoints_file.write_text("[]")
    assert urls(runtime) == FIRST
    write_endpoints(settings, SECOND)
    assert urls(runtime) == SECOND


def test_urls_given_explicitly_never_follow_the_file(
        settings: Settings, built: list[AgentRuntime]) -> None:
    """The embedded system's runtime keeps its stack's URLs, while a worker's runtime in the
    same state directory follows the file."""
    embedded = build(built, settings, endpoints=dict(FIRST))
    worker = build(built, settings)
    write_endpoints(settings, SECOND)
    assert urls(embedded) == FIRST and urls(worker) == SECOND
    settings.endpoints_file.unlink()
    assert urls(embedded) == FIRST and urls(worker) == SECOND


def test_the_agents_client_follows_serve_and_registers_its_dpop_key_there(
        settings: Settings, built: list[AgentRuntime]) -> None:
    """An agent's client goes to the authorization server the file names now, and the agent's
    DPoP key is registered with a server that moved before its first exchange there."""
    write_endpoints(settings, FIRST)
    runtime = build(built, settings)
    registered = httpx.Response(200, json={"client_id": INFRABOT, "jkt": "x" * 43,
                                           "expires_in": 86400})
    with respx.mock(assert_all_mocked=True) as router:
        first = router.post(f"{FIRST['auth']}/dpop_keys").mock(return_value=registered)
        second = router.post(f"{SECOND['auth']}/dpop_keys").mock(return_value=registered)
        assert runtime.auth(INFRABOT).base_url == FIRST["auth"]
        assert runtime.auth(INFRABOT).base_url == FIRST["auth"]
        assert (first.call_count, second.call_count) == (1, 0)  # registered once, not per hop
        write_endpoints(settings, SECOND)
        next_hop(runtime)
        assert runtime.auth(INFRABOT).base_url == SECOND["auth"]
        assert (first.call_count, second.call_count) == (1, 1)


def test_a_hop_keeps_the_urls_it_started_with(
        settings: Settings, built: list[AgentRuntime]) -> None:
    """serve moving while a hop runs changes nothing of that hop (its token's audience and its
    call name one serve); the next hop goes to the new one."""
    write_endpoints(settings, FIRST)
    runtime = build(built, settings)
    next_hop(runtime)
    write_endpoints(settings, SECOND)  # mid-hop
    assert (runtime.endpoints["auth"], runtime.service_url("github")) == \
        (FIRST["auth"], FIRST["github"])
    next_hop(runtime)
    assert (runtime.endpoints["auth"], runtime.service_url("github")) == \
        (SECOND["auth"], SECOND["github"])


def test_hops_on_threads_of_one_process_each_keep_their_urls(
        settings: Settings, built: list[AgentRuntime]) -> None:
    """``--pool threads``: hops share the process's runtime. A hop started before serve moved
    keeps its URLs while another hop, started after, follows the move; so does the work the
    first hands to the process's pool (a token asked ahead, in the hop's context)."""
    write_endpoints(settings, FIRST)
    runtime = build(built, settings)
    first_started, moved = threading.Event(), threading.Event()
    seen: dict[str, tuple[str, str]] = {}

    def looked(name: str) -> None:
        seen[name] = (runtime.endpoints["auth"], runtime.service_url("github"))

    def hop_a() -> None:
        next_hop(runtime)
        first_started.set()
        assert moved.wait(10)
        looked("a")
        runtime.ahead(lambda: looked("a, asked ahead")).result(10)

    def hop_b() -> None:
        assert first_started.wait(10)
        write_endpoints(settings, SECOND)
        next_hop(runtime)
        looked("b")
        moved.set()

    threads = [threading.Thread(target=hop) for hop in (hop_a, hop_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"a": (FIRST["auth"], FIRST["github"]),
                    "a, asked ahead": (FIRST["auth"], FIRST["github"]),
                    "b": (SECOND["auth"], SECOND["github"])}
