"""``run_load``'s bounded send retries and its accounting, against a real HTTP server on
loopback that answers a script: 503s, a dropped connection, a replayed delivery on a retry.

Every event ends in exactly one count (accepted, refused, lost), 502/503/504 and connection
errors are retried at most ``SEND_ATTEMPTS`` times, and a run accepted but never finished is
counted unfinished. The receiver process killed mid-load is tests/reliability/
test_load_receiver_down.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.ci._load import SEND_ATTEMPTS, EventSpec, run_load
from orchestrator.errors import TransientError
from orchestrator.runs import RunStore
from tests._json_server import QuietHandler, answer, json_server

SECRET = b"load-test-secret"


class Script:
    """One answer per request, in order: an HTTP status with a JSON body, or ``"drop"``."""

    def __init__(self, answers: list[tuple[int, dict[str, str]] | str]) -> None:
        self.answers = list(answers)
        self.lock = threading.Lock()
        self.requests = 0

    def next(self) -> tuple[int, dict[str, str]] | str:
        with self.lock:
            self.requests += 1
            return self.answers.pop(0)


@pytest.fixture
def receiver() -> Iterator[tuple[str, Script]]:
    script = Script([])

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            scripted = script.next()
            if scripted == "drop":
                self.close_connection = True
                self.connection.shutdown(2)  # no answer at all: the client sees it closed
                return
            answer(self, *scripted)

    with json_server(Handler) as url:
        yield url, script


def events(count: int) -> list[EventSpec]:
    return [EventSpec("sam", "service-x", "prod", "ci_pipeline", f"{i:07x}") for i in range(count)]


UNAVAILABLE = (503, {"error": "temporarily_unavailable", "reason": "replay_cache_unavailable"})


def test_each_event_is_counted_once_through_retries(receiver: tuple[str, Script],
                                                    tmp_path: Path) -> None:
    url, script = receiver
    script.answers = [
        (202, {"run_id": "run-1"}),                                   # accepted at once
        UNAVAILABLE, "drop", (202, {"run_id": "run-2"}),              # accepted, third try
        *[UNAVAILABLE] * SEND_ATTEMPTS,                               # lost: 503 every time
        "drop", (409, {"error": "invalid_request", "reason": "replayed_delivery"}),  # answer lost
        # refused as a replay after a 503: the receiver took no earlier attempt, so this is
        # its own answer (a replayed event), not a lost one
        UNAVAILABLE, (409, {"error": "invalid_request", "reason": "replayed_delivery"}),
        (401, {"error": "invalid_request", "reason": "bad_signature"}),  # refused, not retried
    ]
    RunStore(tmp_path / "runs.sqlite3").close()  # serve made the run log; run_load only reads
    waits: list[float] = []
    report = run_load(url, SECRET, tmp_path / "runs.sqlite3", events(6), rate=0, timeout=1.0,
                      sleep=waits.append)
    assert script.requests == 1 + 3 + SEND_ATTEMPTS + 2 + 2 + 1
    assert (report.sent, report.accepted, report.run_ids) == (6, 2, ["run-1", "run-2"])
    assert dict(report.refused) == {"replayed_delivery": 1, "bad_signature": 1}
    assert dict(report.lost) == {"503 replay_cache_unavailable": 1,
                                 "answer_lost (replayed_delivery on retry)": 1}
    assert report.retries == 2 + (SEND_ATTEMPTS - 1) + 1 + 1
    assert [w for w in waits if w > 0] == [0.25, 0.5, 0.25, 0.5, 1.0, 0.25, 0.25]
    assert report.unfinished == 2  # the runs were never recorded as finished
    assert report.as_dict()["lost"] == dict(report.lost)


def test_a_receiver_that_never_answers_the_first_event_is_an_error(tmp_path: Path) -> None:
    RunStore(tmp_path / "runs.sqlite3").close()
    with pytest.raises(TransientError) as caught:
        run_load("http://127.0.0.1:9", SECRET, tmp_path / "runs.sqlite3", events(3), rate=0,
                 timeout=5.0, sleep=lambda _: None)
    assert (caught.value.reason, caught.value.message) == ("receiver_unreachable",
                                                           "ConnectError")
