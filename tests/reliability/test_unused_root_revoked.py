"""A root token lives only as long as its run may use it, against the real authorization server
and registry (embedded, real HTTP): a start that minted one and then failed to hand its run off
(the broker down) revokes it (RFC 7009, audited by the server); a start superseded in its
publish by its delivery's redelivery has its run revoked by the receiver (every token of it
refused, audited ``<run>.superseded``), and the redelivery's run is untouched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from e2e._harness import accepted_run_id, deployment, embedded_settings, post_webhook
from kombu.exceptions import OperationalError

from infrabot.system import System, running_system
from reliability._probes import system_clients

WAIT = 20.0


def _active(system: System, token: str) -> bool:
    with system_clients(system)("client:orchestrator") as orchestrator:
        return bool(orchestrator.introspect(token)["active"])


def _revocations(system: System, service: str, run_id: str) -> list[tuple[str, str, str]]:
    return [(r.reason, r.resource, r.request_id or "") for r in system.stack.audit.query(
        service=service, run_id=run_id) if r.action == "revoke"]


def test_a_root_token_whose_run_was_not_handed_off_is_revoked(tmp_path: Path) -> None:
    tokens: list[str] = []

    def broker_down(agent: str, run_id: str, workflow: str, token: str, *_: object) -> None:
        tokens.append(token)  # what went to the broker, if anything did
        raise OperationalError("connection refused")

    with running_system(embedded_settings(tmp_path / "state"), embedded_worker=False) as system:
        system.orchestrator.dispatch = broker_down
        answer = post_webhook(system.webhooks_url, deployment("sam"))
        assert (answer.status_code, answer.json()["reason"]) == (503, "broker_unavailable")
        [root] = tokens
        assert not _active(system, root)
        [run] = system.runtime.runs.list(10)
        assert (run.status, run.reason) == ("failed", "broker unavailable (OperationalError)")
        [(reason, resource, _)] = _revocations(system, "authserver", run.run_id)
        assert reason == "token_revoked" and resource.startswith("jti:")
        assert system.stack.audit.verify().ok


def test_a_run_superseded_in_its_publish_is_revoked_and_its_successor_is_not(
        tmp_path: Path) -> None:
    tokens: dict[str, str] = {}
    parked, go = threading.Event(), threading.Event()

    def parks_first(publish: Callable[..., None]) -> Callable[..., None]:
        def dispatch(agent: str, run_id: str, workflow: str, token: str, *rest: object) -> None:
            tokens[run_id] = token
            if len(tokens) == 1:  # the first start hangs in its publish, then returns
                parked.set()
                assert go.wait(WAIT), "the parked publish was never released"
                return
            publish(agent, run_id, workflow, token, *rest)
        return dispatch

    delivery = deployment("sam")
    with running_system(embedded_settings(tmp_path / "state"), embedded_worker=False) as system:
        system.orchestrator.dispatch = parks_first(system.orchestrator.dispatch)
        answers: list[int] = []
        first = threading.Thread(target=lambda: answers.append(
            post_webhook(system.webhooks_url, delivery).status_code))
        first.start()
        assert parked.wait(WAIT), "the first start never reached its publish"
        [orphan] = tokens
        successor = accepted_run_id(post_webhook(system.webhooks_url, delivery))
        assert successor != orphan
        assert not _active(system, tokens[orphan])  # revoked by run
        assert _revocations(system, "orchestrator", orphan) == [
            ("run_revoked", f"run_id:{orphan}", f"{orphan}.superseded")]
        assert _active(system, tokens[successor])
        go.set()
        first.join(WAIT)
        assert answers == [409]  # its publish returned after the take-over: stale
        assert _active(system, tokens[successor])
        assert [(r.status, r.run_id) for r in sorted(system.runtime.runs.list(10),
                                                     key=lambda r: r.run_id != orphan)] == [
            ("failed", orphan), ("running", successor)]
        assert system.stack.audit.verify().ok
