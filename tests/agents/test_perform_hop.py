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
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import respx

# The real `mock_services`, not tests/mock_services (see tests/e2e/conftest.py).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

from agents import HopOutcome, perform_hop
from agents._runtime import AgentRuntime
from orchestrator.catalog import CATALOG
from orchestrator.ci import CIEvent
from orchestrator.config import SERVICE_NAMES, Settings
from orchestrator.errors import Unavailable
from orchestrator.identity import client_key, load_directory
from orchestrator.runs import HopJournal, RunStore
from orchestrator.workflows import load_workflow, load_workflows

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
