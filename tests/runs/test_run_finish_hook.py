"""``RunStore.on_finish``: what the audit checkpointer listens to. Called once per run, after
the terminal status is committed, and only by the call that recorded it."""

from __future__ import annotations

from orchestrator.runs import RunStore
from tests._events import detail

from .conftest import Origin


def test_finish_hook_runs_once_after_the_commit(store: RunStore, origin: Origin) -> None:
    seen: list[tuple[str, str | None]] = []
    store.on_finish(lambda run_id: seen.append((run_id, store.get(run_id).status)))
    store.create("run-1", workflow="post-deploy", event=origin)
    store.add_event("run-1", None, detail("started"))
    assert seen == []
    assert store.finish("run-1", "succeeded", "ok", agent="agent:cleanup")
    assert not store.finish("run-1", "failed", "late")  # the first terminal status wins
    assert seen == [("run-1", "succeeded")]
