"""``perform_hop`` alone, InfraBot's part of a linear post-deploy run
(tests/_workflows/linear-post-deploy.yaml, the shipped one before it branched): what it asks the authorization
server for, what it sends each service, and what it makes of every kind of answer.

Every HTTP answer (authorization server and services) is scripted with respx, and what the hop
sent is read from respx's recorded calls; the run log, the workflows, the directory and the
agents' keys are real. The end-to-end tests run the same hop against the real servers. (No
``__init__.py`` here: a test package named ``agents`` would shadow the real one.)
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from structlog.testing import capture_logs

# The real `mock_services`, not tests/mock_services (see tests/e2e/conftest.py).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

from agents import HopOutcome, perform_hop
from agents._hop import Hop, stopped
from agents._runtime import AgentRuntime
from orchestrator.catalog import CATALOG
from orchestrator.ci import CIEvent
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.errors import Unavailable
from orchestrator.keystore import client_key
from orchestrator.runs import Called, HopJournal, RunStore, StepRecord
from orchestrator.workflows import load_directory, load_workflow, load_workflows

AUTH = "http://auth.test"
ENDPOINTS = {"auth": AUTH, **{name: f"http://{name}.test" for name in SERVICE_NAMES}}
RUN_ID = "run-0123456789abcdef"
LINEAR = "linear-post-deploy"
LINEAR_FILE = Path(__file__).parents[1] / "_workflows" / f"{LINEAR}.yaml"

def sam_deploys() -> CIEvent:
    return CIEvent(delivery_id="d-1", event_type="deployment", user="user:sam",
                   sender_login="sam", repository="acme/service-x", service="service-x",
                   environment="prod", commit="9f2c1e7", trigger="ci_pipeline", pr=124)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mocked:
        yield mocked


@pytest.fixture
def runtime(tmp_path: Path, router: respx.MockRouter) -> Iterator[AgentRuntime]:
    settings = Settings(state_dir=tmp_path / "state")
    directory = load_directory(settings.workflows_dir / "directory.yaml")
    runs = RunStore(tmp_path / "runs.sqlite3")
    runs.create(RUN_ID, workflow="post-deploy", event=sam_deploys())
    runs.mark_running(RUN_ID)
    keys = {agent: client_key(tmp_path / "keys", agent, "ES256")
            for agent in ("agent:infrabot", "agent:argocd")}  # no key for agent:cleanup
    rt = AgentRuntime(settings=settings, endpoints=ENDPOINTS, directory=directory,
                      workflows={**load_workflows(settings.workflows_dir, directory),
                                 LINEAR: load_workflow(LINEAR_FILE, directory)}, runs=runs,
                      http=httpx.Client(), keys=keys)
    yield rt
    rt.close()


INFRABOT = "agent:infrabot"
STEPS = ("datadog.metrics.query", "github.pull.read", "github.comment.create")
SUBJECT = "subject-token-handed-to-infrabot"


def token_for(form: dict[str, str]) -> str:
    """The scripted token for one exchange: named by what it was asked for."""
    return f"token-for-{form.get('scope', '')}-{form.get('audience', '')}"


def issue(request: httpx.Request) -> httpx.Response:
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    return httpx.Response(200, json={"access_token": token_for(form), "scope": form["scope"],
                                     "token_type": "Bearer", "expires_in": 300,
                                     "issued_token_type":
                                         "urn:ietf:params:oauth:token-type:access_token"})


def script(router: respx.MockRouter, *, github: httpx.Response | Exception | None = None,
           datadog: httpx.Response | Exception | None = None) -> dict[str, respx.Route]:
    ok = httpx.Response(200, json={"ok": True})
    registered = httpx.Response(200, json={"client_id": "agent:infrabot", "jkt": "x" * 43,
                                           "expires_in": 86400})
    routes = {"auth": router.post(f"{AUTH}/token").mock(side_effect=issue),
              "dpop_keys": router.post(f"{AUTH}/dpop_keys").mock(return_value=registered),
              "revoke": router.post(f"{AUTH}/revoke").mock(return_value=httpx.Response(200)),
              "datadog": router.route(host="datadog.test"),
              "github": router.route(host="github.test")}
    for name, answer in (("datadog", datadog), ("github", github)):
        if isinstance(answer, Exception):
            routes[name].mock(side_effect=answer)
        else:
            routes[name].mock(return_value=answer or ok)
    return routes


def forms(route: respx.Route) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(c.request.content.decode()).items()}
            for c in route.calls]


def hop(runtime: AgentRuntime, agent: str = INFRABOT) -> HopOutcome:
    return perform_hop(runtime, run_id=RUN_ID, workflow=LINEAR, agent=agent,
                       token=SUBJECT, scope="")


def test_each_step_gets_its_own_narrow_token_then_the_hop_hands_off(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    routes = script(router)
    outcome = hop(runtime)

    assert (outcome.status, outcome.next_agent, outcome.generation) == \
        ("handed_off", "agent:argocd", 1)
    asked = forms(routes["auth"])
    assert [(f.get("resource"), f.get("audience"), f["scope"]) for f in asked[:3]] == \
        [(ENDPOINTS[CATALOG[s].service], None, CATALOG[s].scope) for s in STEPS]
    assert (asked[3].get("resource"), asked[3]["audience"]) == (None, "agent:argocd")
    assert outcome.next_token == token_for(asked[3])
    for form in asked:  # every exchange: the subject token, authenticated by InfraBot's key
        assert (form["subject_token"], form["client_id"]) == (SUBJECT, INFRABOT)
        assert form["client_assertion"].count(".") == 2
    calls = [c.request for name in ("datadog", "github") for c in routes[name].calls]
    assert [c.headers["Authorization"] for c in calls] == \
        [f"Bearer {token_for(f)}" for f in asked[:3]]
    keys = [(c.headers.get("X-Request-Id"), c.headers.get("Idempotency-Key")) for c in calls]
    assert keys == [(f"{RUN_ID}.infrabot.0", None), (f"{RUN_ID}.infrabot.1", None),
                    (f"{RUN_ID}.infrabot.2", f"{RUN_ID}.infrabot.2")]  # only the write
    assert json.loads(calls[2].content)["body"].startswith("Post-deploy checks for 9f2c1e7")


def test_a_refused_call_ends_the_hop_denied_and_a_redelivery_does_not_call_again(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    refused = httpx.Response(403, json={"error": "insufficient_scope", "reason": "scope_missing",
                                        "error_description": "no"})
    routes = script(router, github=refused)
    first = hop(runtime)
    assert (first.status, first.reason) == \
        ("denied", "agent:infrabot pr:read at github: 403 (scope_missing)")
    calls = len(routes["github"].calls)
    again = hop(runtime)  # the same message delivered again
    assert (again.status, again.reason) == (first.status, first.reason)
    assert len(routes["github"].calls) == calls  # a recorded denial is never retried


@pytest.mark.parametrize(("answer", "reason"), [
    (httpx.Response(503, json={"error": "temporarily_unavailable"}), "github_http_503"),
    (httpx.Response(409, json={"error": "conflict", "reason": "idempotency_key_in_use"}),
     "github_http_409"),
    (httpx.ConnectError("refused"), "github_unreachable"),
])
def test_a_transient_answer_is_retried_and_only_the_step_in_doubt_is_repeated(
        runtime: AgentRuntime, router: respx.MockRouter, answer: httpx.Response | Exception,
        reason: str) -> None:
    ok = httpx.Response(201, json={"id": 1})
    routes = script(router)
    def github(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return ok
        if isinstance(answer, Exception):
            raise answer
        return answer

    routes["github"].mock(side_effect=github)
    with pytest.raises(Unavailable) as raised:
        hop(runtime)
    assert raised.value.reason == reason
    step = HopJournal(runtime.runs).steps(RUN_ID, INFRABOT)[2]
    assert (step.state, step.idempotency_key) == ("started", f"{RUN_ID}.infrabot.2")

    routes["github"].mock(return_value=ok)  # the service is back: the retry
    before = {name: len(routes[name].calls) for name in ("datadog", "github")}
    assert hop(runtime).status == "handed_off"
    assert len(routes["datadog"].calls) == before["datadog"]  # done steps are not repeated
    repeated = routes["github"].calls[before["github"]:]
    assert [(c.request.method, c.request.headers.get("Idempotency-Key")) for c in repeated] == \
        [("POST", f"{RUN_ID}.infrabot.2")]  # the step in doubt, under its recorded key


@pytest.mark.parametrize(("answer", "status"), [
    ({"error": "invalid_grant", "reason": "token_revoked", "error_description": "x"}, "denied"),
    ({"error": "invalid_request", "reason": "token_expired", "error_description": "x"},
     "expired"),
])
def test_a_refused_exchange_ends_the_hop_before_any_call(
        runtime: AgentRuntime, router: respx.MockRouter, answer: dict[str, str],
        status: str) -> None:
    routes = script(router)
    routes["auth"].mock(return_value=httpx.Response(400, json=answer))
    outcome = hop(runtime)
    why = f"exchange for datadog.metrics.query: {answer['error']} ({answer['reason']})"
    assert (outcome.status, outcome.reason) == (status, f"agent:infrabot {why}")
    assert routes["datadog"].calls.call_count == 0


def test_the_authorization_server_unreachable_is_transient(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    routes = script(router)
    routes["auth"].mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(Unavailable) as raised:
        hop(runtime)
    assert raised.value.reason == "authserver_unavailable"


def test_a_hop_for_an_agent_whose_key_this_worker_lacks_fails_without_a_request(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    """A task misrouted to a worker that holds no key for its agent: it never signs with
    another agent's key, and asks nothing of anyone."""
    runs = runtime.runs
    HopJournal(runs).send(RUN_ID, "agent:argocd")
    HopJournal(runs).send(RUN_ID, "agent:cleanup")
    outcome = perform_hop(runtime, run_id=RUN_ID, workflow=LINEAR, agent="agent:cleanup",
                          token=SUBJECT, scope="", generation=1)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("agent:cleanup: this worker holds no key for agent:cleanup")
    assert len(router.calls) == 0


# -- Overlapped hops (docs/journal.md): the next token asked for while a call is in flight ----

GITHUB_READ, GITHUB_WRITE = CATALOG["github.pull.read"].scope, CATALOG["github.comment.create"].scope
WAIT = 2.0  # how long a scripted service waits to see an exchange arrive during its call


def with_settings(runtime: AgentRuntime, **changed: object) -> AgentRuntime:
    runtime.settings = runtime.settings.model_copy(update=changed)
    return runtime


def seen_during(routes: dict[str, respx.Route], host: str, scope: str, *,
                answer: httpx.Response | Exception | None = None,
                wait: float = WAIT) -> list[bool]:
    """Script ``host`` to wait (up to ``wait`` s) for an exchange asking for ``scope`` before it
    answers; per call, whether that exchange had arrived by then."""
    asked = threading.Event()
    seen: list[bool] = []

    def exchange(request: httpx.Request) -> httpx.Response:
        if parse_qs(request.content.decode()).get("scope") == [scope]:
            asked.set()
        return issue(request)

    def service(request: httpx.Request) -> httpx.Response:
        seen.append(asked.wait(wait))
        if isinstance(answer, Exception):
            raise answer
        return answer or httpx.Response(200, json={"ok": True})

    routes["auth"].mock(side_effect=exchange)
    routes[host].mock(side_effect=service)
    return seen


def revoked(routes: dict[str, respx.Route]) -> list[str]:
    return [f["token"] for f in forms(routes["revoke"])]


def test_the_next_steps_token_is_asked_for_while_the_call_before_is_in_flight(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    routes = script(router)
    asked, calls, seen = threading.Semaphore(0), [0], []

    def exchange(request: httpx.Request) -> httpx.Response:
        asked.release()
        return issue(request)

    def service(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] == 1:
            assert asked.acquire(timeout=WAIT)  # step 0's own token
        seen.append(asked.acquire(timeout=WAIT))  # the next exchange, during this call
        return httpx.Response(200, json={"ok": True})

    routes["auth"].mock(side_effect=exchange)
    for host in ("datadog", "github"):
        routes[host].mock(side_effect=service)
    outcome = hop(with_settings(runtime, overlap_hops=True))
    assert outcome.status == "handed_off"
    assert seen == [True, True, True]  # each call saw the next exchange arrive while in flight
    run = runtime.runs.get(RUN_ID)
    assert run is not None
    exchanged = [e.detail for e in run.events if e.kind == "exchanged"]
    # Recorded as each step takes its token, in the order of the steps: `runs show` reads the
    # hop as before, and says which were asked for ahead.
    assert [(d.requested, d.ahead) for d in exchanged] == [  # type: ignore[union-attr]
        (CATALOG[STEPS[0]].scope, False), (GITHUB_READ, True), (GITHUB_WRITE, True),
        (forms(routes["auth"])[3]["scope"], True)]  # the hand-off, during the last call
    kinds = [e.kind for e in run.events if e.agent == INFRABOT]
    assert kinds == ["exchanged", "called"] * 3 + ["exchanged", "handed_off"]
    assert revoked(routes) == []  # every token asked for was used


def test_by_default_every_token_is_asked_for_just_before_its_call(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    routes = script(router)
    seen = seen_during(routes, "datadog", GITHUB_READ, wait=0.3)
    assert not runtime.settings.overlap_hops  # the default (docs/journal.md: measured)
    assert hop(runtime).status == "handed_off"
    assert seen == [False]
    run = runtime.runs.get(RUN_ID)
    assert run is not None
    assert not any(e.detail.ahead for e in run.events if e.kind == "exchanged")  # type: ignore[union-attr]


CONDITIONAL = """\
name: conditional
description: a step whose condition reads the answer of the step before it
trigger: {events: [deployment], environments: [prod], triggers: [ci_pipeline], task: cond}
agents:
  - agent: agent:infrabot
    steps:
      - id: latency
        action: datadog.metrics.query
        params: {from: "1", to: "2", query: "avg:x"}
      - action: github.comment.create
        when: "max(steps.latency.series.0.pointlist.*.1) <= 500"
        params: {owner: acme, repo: service-x, issue_number: "124", body: nominal}
    hand_off: agent:argocd
  - agent: agent:argocd
    steps:
      - action: github.deployment_status.create
        params: {owner: acme, repo: service-x, deployment_id: "9001", state: success,
                 environment: prod, description: rolled out}
"""


@pytest.mark.parametrize(("latency", "commented"), [(900, False), (120, True)])
def test_a_step_whose_condition_reads_the_call_in_flight_is_not_asked_for_ahead(
        runtime: AgentRuntime, router: respx.MockRouter, tmp_path: Path, latency: int,
        commented: bool) -> None:
    (tmp_path / "conditional.yaml").write_text(CONDITIONAL)
    runtime.workflows["conditional"] = load_workflow(tmp_path / "conditional.yaml",
                                                     runtime.directory)
    routes = script(router)
    asked: list[str] = []
    during: list[list[str]] = []

    def exchange(request: httpx.Request) -> httpx.Response:
        asked.append(parse_qs(request.content.decode())["scope"][0])
        return issue(request)

    def datadog(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)  # time enough for any exchange asked ahead to arrive
        during.append(list(asked))
        return httpx.Response(200, json={"series": [{"pointlist": [[1, latency]]}]})

    routes["auth"].mock(side_effect=exchange)
    routes["datadog"].mock(side_effect=datadog)
    outcome = perform_hop(with_settings(runtime, overlap_hops=True), run_id=RUN_ID,
                          workflow="conditional", agent=INFRABOT, token=SUBJECT, scope="")
    assert outcome.status == "handed_off"
    # Only the call's own token: not the conditional step's, nor the hand-off beyond it
    # (whether the step runs, and so what comes next, is not known while the call is out).
    assert during == [[CATALOG["datadog.metrics.query"].scope]]
    # Minted only for a step that runs: a skipped step never had a token.
    assert (GITHUB_WRITE in asked) is commented
    assert len(asked) == 2 + commented  # the call's, the comment's if it runs, the hand-off's
    assert revoked(routes) == []


class Crash(Exception):
    """A bug in the middle of a hop."""


@pytest.mark.parametrize(("host", "answer", "unused"), [
    ("github", httpx.Response(403, json={"error": "insufficient_scope",
                                         "reason": "scope_missing"}), GITHUB_WRITE),
    ("github", httpx.Response(404, json={"error": "not_found"}), GITHUB_WRITE),
    ("datadog", httpx.Response(503, json={"error": "temporarily_unavailable"}), GITHUB_READ),
    ("datadog", httpx.ConnectError("refused"), GITHUB_READ),
    ("datadog", Crash("bug"), GITHUB_READ),
])
def test_a_hop_that_stops_early_revokes_the_token_it_asked_for_ahead(
        runtime: AgentRuntime, router: respx.MockRouter, host: str,
        answer: httpx.Response | Exception, unused: str) -> None:
    routes = script(router)
    seen = seen_during(routes, host, unused, answer=answer)
    with capture_logs() as logs:
        try:
            outcome: HopOutcome | None = hop(with_settings(runtime, overlap_hops=True))
        except (Unavailable, Crash):  # a retry, a crash: the task's to handle
            outcome = None
    assert seen[-1] is True
    assert outcome is None or outcome.status in ("denied", "failed")
    ahead = [f for f in forms(routes["auth"]) if f["scope"] == unused]
    assert len(ahead) == 1
    # RFC 7009, authenticated by the agent's own key, for exactly that token.
    assert revoked(routes) == [token_for(ahead[0])]
    (form,) = forms(routes["revoke"])
    assert (form["client_id"], form["client_assertion"].count(".")) == (INFRABOT, 2)
    run = runtime.runs.get(RUN_ID)
    assert run is not None  # the step never ran: no exchange of it in the run log
    assert unused not in [e.detail.requested for e in run.events  # type: ignore[union-attr]
                          if e.kind == "exchanged"]
    assert [entry["event"] for entry in logs if "ahead" in entry["event"]] == \
        ["ahead_token_revoked"]
    assert token_for(ahead[0]) not in repr(logs)  # never logged


def test_a_revocation_that_fails_leaves_the_hops_outcome_as_it_was(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    routes = script(router)
    seen = seen_during(routes, "github", GITHUB_WRITE, answer=httpx.Response(
        403, json={"error": "insufficient_scope", "reason": "scope_missing"}))
    routes["revoke"].mock(return_value=httpx.Response(503, json={"error": "unavailable"}))
    with capture_logs() as logs:
        outcome = hop(with_settings(runtime, overlap_hops=True))
    assert seen == [True] and outcome.status == "denied"
    assert len(routes["revoke"].calls) == 1
    assert [e["event"] for e in logs if "ahead" in e["event"]] == ["ahead_token_unrevoked"]


def test_a_retried_hop_never_uses_a_token_its_earlier_attempt_minted(
        runtime: AgentRuntime, router: respx.MockRouter) -> None:
    routes = script(router)
    minted: list[str] = []

    def unique(request: httpx.Request) -> httpx.Response:
        answer = issue(request)
        token = f"{json.loads(answer.content)['access_token']}-{len(minted)}"
        minted.append(token)
        return httpx.Response(200, json={**json.loads(answer.content), "access_token": token})

    hand_off_asked = threading.Event()

    def asked(request: httpx.Request) -> httpx.Response:
        answer = unique(request)
        if "audience" in parse_qs(request.content.decode()):
            hand_off_asked.set()
        return answer

    def github(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"ok": True})
        assert hand_off_asked.wait(WAIT)  # asked for while this call is in flight
        return httpx.Response(503, json={"error": "temporarily_unavailable"})

    routes["auth"].mock(side_effect=asked)
    routes["github"].mock(side_effect=github)
    with pytest.raises(Unavailable):
        hop(with_settings(runtime, overlap_hops=True))
    first = list(minted)
    assert len(first) == 4  # the three steps' and the hand-off, asked while step 2 was in flight
    assert revoked(routes) == [first[3]]
    routes["github"].mock(return_value=httpx.Response(201, json={"id": 1}))
    retried = hop(runtime)
    assert retried.status == "handed_off"
    again = minted[len(first):]
    assert len(again) == 2  # the step in doubt and the hand-off, each exchanged anew
    used = [c.request.headers["Authorization"].removeprefix("Bearer ")
            for c in routes["github"].calls[2:]]
    assert used == [again[0]] and retried.next_token == again[1]
    run = runtime.runs.get(RUN_ID)
    assert run is not None
    assert [e.kind for e in run.events if e.agent == INFRABOT] == \
        ["exchanged", "called"] * 2 + ["exchanged", "exchanged", "called", "exchanged",
                                       "handed_off"]


# -- two copies of one hop at once (a redelivery while the first still runs) ---------------------

def test_a_step_another_copy_recorded_is_not_called_and_its_answer_is_the_recorded_one(
        runtime: AgentRuntime) -> None:
    """The other copy started the step and recorded it done, with its named answer, after this
    copy found where to resume and before it started the step: this copy calls nothing (respx
    would refuse the request) and goes on with the answer the other copy recorded."""
    run = runtime.runs.get(RUN_ID)
    assert run is not None
    journal = HopJournal(runtime.runs)
    journal.start(RUN_ID, INFRABOT, 0, STEPS[0])
    journal.finish(RUN_ID, INFRABOT, 0, "done", reason=None, event=Called(
        service="datadog", action="metrics:query", method="GET", path="/api/v1/query",
        status=200, reason="ok", replayed=False, ms=3, step_id="errors",
        result={"series": [1, 2]}))
    copy = Hop(runtime, run, runtime.workflows[LINEAR], INFRABOT, journal)
    assert copy.call(0, STEPS[0], {}, "token-of-this-copy", step_id="errors") == \
        {"series": [1, 2]}
    assert copy.call(0, STEPS[0], {}, "token-of-this-copy") is None  # a step with no name


def test_a_stop_that_finds_the_step_done_by_another_copy_makes_this_copy_the_duplicate(
) -> None:
    done = StepRecord(1, STEPS[1], "done", "run-1.infrabot.1", None, 1)
    assert stopped(done).outcome == HopOutcome(
        "duplicate", "step 1 recorded done by another copy of the hop")
    denied = StepRecord(1, STEPS[1], "denied", "run-1.infrabot.1", "refused", 1)
    assert stopped(denied).outcome == HopOutcome("denied", "refused")
