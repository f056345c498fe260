"""A delivery that could not start a run for a transient reason may be delivered again: the
sender's redelivery (same X-GitHub-Delivery) is accepted, not refused as a replay. One that did
start a run is refused, even by a receiver whose replay cache has lost its memory since (an
unpersisted Redis restarted): the run log on disk remembers it."""

from __future__ import annotations

from pathlib import Path

from orchestrator.ci import build_deployment_event
from orchestrator.errors import ConfigError, Unavailable
from orchestrator.identity import Directory, MemoryRevocationStore
from orchestrator.runs import RunStore

from .conftest import SECRET, Webhook, new_delivery_id, running_webhook


def test_a_transient_failure_releases_the_delivery(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    webhook.starter.error = Unavailable("the broker cannot be reached",
                                        reason="broker_unavailable")
    first = webhook.post(headers, body)
    assert first.status_code == 503
    assert first.json()["reason"] == "broker_unavailable"
    webhook.starter.error = None
    again = webhook.post(headers, body)
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "accepted"
    assert len(webhook.starter.events) == 1
    replay = webhook.post(headers, body)
    assert replay.status_code == 409
    assert replay.json()["reason"] == "replayed_delivery"


def test_a_crash_in_starting_the_run_releases_the_delivery(webhook: Webhook) -> None:
    """A 500 started nothing either: the sender's redelivery must not be refused as a replay."""
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    webhook.starter.error = RuntimeError("a bug")
    first = webhook.post(headers, body)
    assert (first.status_code, first.json()["reason"]) == (500, "internal_error")
    webhook.starter.error = None
    again = webhook.post(headers, body)
    assert again.status_code == 202, again.text
    assert len(webhook.starter.events) == 1


def test_a_permanent_failure_keeps_the_delivery_claimed(webhook: Webhook) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    webhook.starter.error = ConfigError("no workflow", reason="no_matching_workflow")
    assert webhook.post(headers, body).status_code == 422
    webhook.starter.error = None
    replay = webhook.post(headers, body)
    assert replay.status_code == 409
    assert replay.json()["reason"] == "replayed_delivery"


def test_a_delivery_is_refused_after_the_replay_cache_lost_its_memory(
        tmp_path: Path, directory: Directory) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    with running_webhook(tmp_path, directory) as before:
        assert before.post(headers, body).status_code == 202
    # the same state directory, a replay cache that remembers nothing (a restarted Redis)
    with running_webhook(tmp_path, directory, replay=MemoryRevocationStore()) as after:
        replay = after.post(headers, body)
        assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")
        renamed = after.post(new_delivery_id(headers), body)  # the header is not signed
        assert (renamed.status_code, renamed.json()["reason"]) == (409, "replayed_delivery")
        assert after.starter.events == []
        assert [(r.decision, r.reason) for r in after.records()] == [
            ("allow", "accepted"), ("deny", "replayed_delivery"), ("deny", "replayed_delivery")]


class FailingLog(RunStore):
    """A run log whose record of deliveries cannot be written once (a full disk, say)."""

    failures = 1

    def claim_delivery(self, delivery_id: str, *, ttl: int,
                       run_id: str | None = None) -> bool:
        if self.failures:
            self.failures -= 1
            raise Unavailable("run log cannot be used", reason="run_log_unavailable")
        return super().claim_delivery(delivery_id, ttl=ttl, run_id=run_id)


def test_a_delivery_log_that_cannot_be_written_fails_closed_and_releases_the_claim(
        tmp_path: Path, directory: Directory) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    replay = MemoryRevocationStore()
    with running_webhook(tmp_path, directory, replay=replay,
                         runs=FailingLog(tmp_path / "runs.sqlite3")) as webhook:
        first = webhook.post(headers, body)
        assert (first.status_code, first.json()["reason"]) == (503, "replay_cache_unavailable")
        assert webhook.starter.events == []
        again = webhook.post(headers, body)  # the sender's redelivery: nothing was claimed
        assert again.status_code == 202, again.text
        assert len(webhook.starter.events) == 1

