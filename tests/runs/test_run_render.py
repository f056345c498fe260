"""Rendering: ``infrabot runs show`` reads a run hop by hop; ``runs list`` one line per run."""

from __future__ import annotations

import re

from rich.console import Console, RenderableType

from orchestrator import runs as runs_package
from orchestrator.runs import RunStore, render_run, render_runs, summarize
from tests._events import detail

from .conftest import Origin

READ = "urn:infra:monitoring:read"
TAG = "urn:infra:infrastructure:tag"


def text_of(renderable: RenderableType) -> str:
    console = Console(record=True, width=160)
    console.print(renderable)
    return console.export_text()


def denied_run(store: RunStore, origin: Origin) -> None:
    store.create("run-7", workflow="post-deploy", event=origin)
    store.add_event("run-7", None, detail(
        "started", event="deployment", user="user:sam", trigger="ci_pipeline",
        environment="prod", service="service-x", commit="9f2c1e7", mode="delegated"))
    store.add_event("run-7", None, detail(
        "root_granted", needed=[READ, TAG], granted=[READ], dropped=[TAG],
        may_act="agent:infrabot"))
    store.mark_running("run-7")
    store.add_event("run-7", "agent:infrabot", detail(
        "exchanged", for_="datadog.query_metrics", requested=READ, granted=READ, ms=4))
    store.add_event("run-7", "agent:infrabot", detail(
        "called", service="datadog", action="metrics:query", method="GET", path="/metrics",
        status=200, reason="ok", replayed=False, ms=3))
    store.add_event("run-7", "agent:infrabot", detail("handed_off", to="agent:argocd", scope=TAG))
    store.add_event("run-7", "agent:argocd", detail(
        "retrying", reason="aws_unreachable", attempt=1, in_seconds=0.2))
    store.add_event("run-7", "agent:argocd", detail(
        "call_denied", service="aws", action="instances:tag", method="POST", path="/tags",
        status=403, reason="insufficient_scope", replayed=False))
    store.add_event("run-7", "agent:argocd", detail(
        "exchange_denied", for_="aws.clean", requested="urn:infra:infrastructure:clean",
        error="invalid_scope", reason="scope_not_grantable"))
    store.finish("run-7", "denied", "agent:argocd exchange for aws.clean: invalid_scope")
    store.add_event("run-7", "agent:argocd", detail(
        "finished", status="denied", reason="agent:argocd exchange for aws.clean: invalid_scope"))


def test_a_run_renders_its_header_and_every_hop(store: RunStore, origin: Origin) -> None:
    denied_run(store, origin)
    run = store.get("run-7")
    assert run is not None
    text = text_of(render_run(run))
    for expected in (
        "run-7", "post-deploy (delegated)", "user:sam", "denied",
        "agent:argocd exchange for aws.clean: invalid_scope",
        "ci_pipeline → prod: acme/service-x@9f2c1e7 (service-x, PR #42)",
        "deployment by user:sam: service-x@9f2c1e7 to prod via ci_pipeline",
        f"requested {READ} {TAG} / granted {READ}; dropped",  # long lines wrap
        f"{TAG}; may_act agent:infrabot",
        f"datadog.query_metrics: requested {READ} / granted {READ} (4 ms)",
        "GET datadog metrics:query → 200 allow (3 ms)",
        "to agent:argocd with urn:infra:infrastructure:tag",
        "attempt 1 failed: aws_unreachable; retry in 0.2 s",
        "POST aws instances:tag → 403 deny (insufficient_scope)",
        "denied: invalid_scope (scope_not_grantable)",
    ):
        assert expected in text, expected
    # Offsets from the run's creation, in ms (the test clock steps 5 ms per reading).
    assert re.search(r"│\s+5 │ orchestrator\s+│ started ", text)
    assert re.search(r"│\s+50 │ agent:argocd\s+│ finished ", text)
    order = [kind for kind in ("started", "root_granted", "exchanged", "called", "handed_off",
                               "retrying", "call_denied", "exchange_denied", "finished")]
    positions = [text.index(f" {kind} ") for kind in order]
    assert positions == sorted(positions)


def test_empty_and_absent_scopes_render_as_none(store: RunStore, origin: Origin) -> None:
    """Details whose scopes are empty or absent (None) still read; a detail of an unknown
    shape is never stored (tests/runs/test_run_events.py)."""
    store.create("run-1", workflow="post-deploy", event=origin)
    store.add_event("run-1", "agent:infrabot", detail("exchanged", requested=None, granted=""))
    store.add_event("run-1", None, detail("root_granted", needed=[], granted=[]))
    store.add_event("run-1", "agent:infrabot", detail("handed_off", scope=None))
    run = store.get("run-1")
    assert run is not None
    text = text_of(render_run(run))
    assert "datadog.metrics.query: requested (none) / granted (none) (4 ms)" in text
    assert "requested (none) / granted (none); may_act agent:infrabot" in text
    assert "to agent:argocd with (none)" in text


def test_the_run_list_has_one_line_per_run(store: RunStore) -> None:
    store.create("run-a", workflow="post-deploy", event=Origin())
    store.create("run-b", workflow="hotfix", event=Origin(user="user:alex",
                                                          environment="staging"))
    store.finish("run-a", "succeeded", "ok")
    text = text_of(render_runs(store.list()))
    for header in ("run id", "workflow", "user", "env", "status", "reason", "duration"):
        assert header in text
    line_a = next(line for line in text.splitlines() if "run-a" in line)
    line_b = next(line for line in text.splitlines() if "run-b" in line)
    for expected in ("post-deploy", "user:sam", "prod", "succeeded", "ok", "10 ms"):
        assert expected in line_a
    for expected in ("hotfix", "user:alex", "staging", "pending"):
        assert expected in line_b
    assert text.index("run-b") < text.index("run-a")


def test_the_public_surface_is_pinned() -> None:
    assert sorted(runs_package.__all__) == sorted([
        "EVENT_KINDS", "STATUSES", "TERMINAL_STATUSES", "EventKind", "Mode", "Run", "RunEvent",
        "RunExists", "RunOrigin", "RunStatus", "RunStore", "UnknownRun", "render_run",
        "render_runs", "summarize",
        "shown_claims",  # what the run log shows of a token: its claims, never the token
        # the runs' spans and their waterfall (docs/tracing.md)
        "SpanLog", "SpanRecord", "WaterfallRow", "render_waterfall", "waterfall_rows",
        # the hop journal (docs/journal.md)
        "DELIVERY_STEP", "STOPS", "HopJournal", "Resume", "StepConflict", "StepRecord",
        "idempotency_key", "resume_point",
        # what each event says, one model per kind (docs/run-events.md)
        "EventDetail", "EventDetailError", "parse_detail", "Timed", "DENIALS", "HAND_OFF",
        "Started", "RootGranted", "RootDenied", "Exchanged", "ExchangeDenied", "Called",
        "CallDenied", "HandedOff", "Retrying", "Finished",
        # workflow graphs (docs/graphs.md)
        "StepSkipped", "BranchTaken", "BranchEnded",
        # a CI delivery's claim names the run its receiver starts (docs/ci-events.md)
        "DeliveryClaim", "new_run_id",
        # a run's end queued for the revocation of its tokens, and why (docs/reliability.md)
        "EndedRun", "ENDED", "SUPERSEDED", "DEADLINE_EXCEEDED",
    ])


def test_an_exchange_shows_the_dpop_key_its_token_is_bound_to(store: RunStore,
                                                             origin: Origin) -> None:
    store.create("run-9", workflow="post-deploy", event=origin)
    jkt = "Z" * 12 + "a" * 31
    store.add_event("run-9", "agent:infrabot", detail(
        "exchanged", for_="datadog.query_metrics", requested=READ, granted=READ,
        claims={"cnf": {"jkt": jkt}}))
    store.add_event("run-9", "agent:infrabot", detail(
        "exchanged", for_="github.pull.read", requested=READ, granted=READ, claims={},
        ahead=True))
    run = store.get("run-9")
    assert run is not None
    bound, unbound = (summarize(e) for e in run.events)
    assert f"granted urn:infra:monitoring:read; DPoP-bound to key {jkt}" in bound
    assert "DPoP" not in unbound
    # overlapped hops (docs/journal.md): a token asked for during the call before says so
    assert "granted urn:infra:monitoring:read; asked while the call before was in flight" in unbound
    assert "in flight" not in bound
