"""The run log's claim of a delivery commits on PostgreSQL, but the answer to its COMMIT is lost
(the connection breaks after the server committed): the receiver cannot know the claim was
recorded, answers 503, and must release that claim too, or the sender's redelivery of an event
that never started a run is refused 409 ``replayed_delivery``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.ci import build_deployment_event
from orchestrator.identity import Directory
from orchestrator.runs import RunStore
from tests._postgres import fresh_schema
from tests.stores._pg_proxy import Proxy, proxy

from .conftest import SECRET, running_webhook


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as where:
        yield where


def _drop_held_reply(through: Proxy) -> None:
    """Once a COMMIT's answer is held, hang up that one connection without passing it on."""
    assert through.holding.wait(timeout=30), "the claim's COMMIT was never sent"
    held = next(link for link in list(through._links) if link.held is not None)
    held.close()


def test_a_claim_whose_commit_answer_was_lost_is_released(
        tmp_path: Path, directory: Directory, url: str) -> None:
    headers, body = build_deployment_event("sam", "service-x", "prod", "9f2c1e7", secret=SECRET)
    with proxy(url) as through, RunStore(through.url(url)) as log, \
            running_webhook(tmp_path, directory, runs=log) as webhook:
        through.hold_next_commit_reply()  # the next write is the claim of the delivery's 1st key
        dropping = threading.Thread(target=_drop_held_reply, args=(through,))
        dropping.start()
        first = webhook.post(headers, body)
        dropping.join(timeout=30)
        assert (first.status_code, first.json()["reason"]) == (503, "replay_cache_unavailable")
        assert webhook.starter.events == []
        again = webhook.post(headers, body)  # the sender's redelivery: nothing was started
        assert again.status_code == 202, again.text
        assert len(webhook.starter.events) == 1
        replay = webhook.post(headers, body)
        assert (replay.status_code, replay.json()["reason"]) == (409, "replayed_delivery")
