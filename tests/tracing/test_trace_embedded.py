"""Every chain is one trace: the whole system embedded, its spans caught by the SDK's in-memory
exporter and kept in the run log, for a post-deploy run started by a signed CI event."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from infrabot.system import running_system
from orchestrator.audit import StoredRecord, contains_raw_jwt
from orchestrator.runs import Run, RunStore, SpanLog, SpanRecord
from orchestrator.tracing import RunLogSpanExporter
from tests.e2e._harness import (
    RUN_TIMEOUT,
    accepted_run_id,
    deployment,
    embedded_settings,
    post_webhook,
)


@dataclass
class Traced:
    state: Path
    run: Run
    records: list[StoredRecord]
    spans: list[ReadableSpan]
    kept: list[SpanRecord]

    @property
    def trace_id(self) -> str:
        trace_id = self.run.trace_id  # what the run's started event recorded
        assert trace_id is not None
        return trace_id

    def by_id(self) -> dict[str, ReadableSpan]:
        return {format_span_id(s.context.span_id): s for s in self.spans if s.context}

    def ancestors(self, span: ReadableSpan) -> list[str]:
        """The names of ``span``'s ancestors, nearest first."""
        spans, names = self.by_id(), []
        parent = span.parent
        while parent is not None:
            found = spans.get(format_span_id(parent.span_id))
            if found is None:
                names.append("<missing>")
                break
            names.append(found.name)
            parent = found.parent
        return names


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Traced:
    memory = InMemorySpanExporter()
    settings = embedded_settings(tmp_path_factory.mktemp("trace") / "state")
    with running_system(settings, span_exporters=[
            memory, RunLogSpanExporter(settings.runs_target)]) as system:
        run_id = accepted_run_id(post_webhook(system.webhooks_url,
                                              deployment("sam", environment="staging")))
        run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)
        records = system.stack.audit.query(run_id=run_id)
    # leaving the block flushed every span
    spans = list(memory.get_finished_spans())
    with RunStore(settings.runs_target) as store:
        # The run's trace, as its started event recorded it: the first span to finish may be
        # another trace's (a worker registering its DPoP keys as it starts, say).
        kept = SpanLog(store).of_trace(run.trace_id or "")
    return Traced(settings.state_dir, run, records, spans, kept)


ROOT = ["POST /webhooks/github", "call POST /webhooks/github"]


def run_spans(traced: Traced) -> list[ReadableSpan]:
    return [s for s in traced.spans if (s.attributes or {}).get("infrabot.run_id")
            == traced.run.run_id]


def test_the_run_is_one_trace(traced: Traced) -> None:
    assert traced.run.status == "succeeded"
    ours = run_spans(traced)
    assert len(ours) > 20  # the run, three hops, every exchange and every enforcement
    assert {format_trace_id(s.context.trace_id) for s in ours if s.context} == {traced.trace_id}


def test_every_audit_record_of_the_run_names_its_trace(traced: Traced) -> None:
    assert traced.records
    assert {r.context.get("trace_id") for r in traced.records} == {traced.trace_id}


def test_the_parent_child_shape(traced: Traced) -> None:
    """The CI sender's request (this test's httpx client, instrumented as a CI system's would
    be: its traceparent is the event's) → the receiver's → run → Celery publish → hop →
    exchange / service call → the server's request → our exchange or enforcement span."""
    (root_span,) = [s for s in traced.spans if s.name.startswith("run ")]
    assert traced.ancestors(root_span)[-2:] == ROOT
    exchanges = [s for s in run_spans(traced) if s.name == "exchange"]
    agents = {(s.attributes or {}).get("infrabot.agent") for s in exchanges}
    assert agents == {"client:orchestrator", "agent:infrabot", "agent:argocd", "agent:scanner",
                      "agent:cleanup"}
    for span in exchanges:
        chain = traced.ancestors(span)
        assert chain[0] == "POST /token" and chain[-2:] == ROOT, chain
        if (span.attributes or {}).get("infrabot.agent", "").startswith("agent:"):
            assert any(name.startswith("run/agents.") for name in chain), chain
    enforcements = [s for s in run_spans(traced) if s.name.startswith("enforce ")]
    assert {s.name for s in enforcements} == {"enforce datadog", "enforce github", "enforce aws",
                                              "enforce pagerduty"}
    for span in enforcements:
        chain = traced.ancestors(span)
        assert any(name.startswith("run/agents.") for name in chain), chain
        assert chain[-2:] == ROOT, chain


def test_spans_carry_the_decision(traced: Traced) -> None:
    hops = [s for s in traced.spans if s.name.startswith("run/agents.") and "wake" not in s.name]
    assert {(s.attributes or {}).get("infrabot.agent") for s in hops} == {
        "agent:infrabot", "agent:argocd", "agent:scanner", "agent:cleanup"}
    (exchange,) = [s for s in run_spans(traced) if s.name == "exchange"
                   and (s.attributes or {}).get("infrabot.agent") == "agent:cleanup"
                   and (s.attributes or {}).get("infrabot.scope_requested")
                   == "urn:infra:infrastructure:clean"]
    attributes = exchange.attributes or {}
    assert attributes["infrabot.on_behalf_of"] == "user:sam"
    assert attributes["infrabot.decision"] == "allow" and attributes["infrabot.reason"] == "ok"
    assert attributes["infrabot.scope.granted"] == "urn:infra:infrastructure:clean"
    assert attributes["infrabot.chain"] == \
        "agent:cleanup <- agent:infrabot <- user:sam"  # the join continues from the fork


def test_no_span_carries_a_token(traced: Traced) -> None:
    for span in traced.spans:
        for key, value in (span.attributes or {}).items():
            text = value if isinstance(value, str) else str(value)
            assert not contains_raw_jwt(text), (span.name, key)
            assert "eyJ" not in text, (span.name, key)


def test_the_run_log_keeps_the_runs_spans(traced: Traced) -> None:
    assert {s.trace_id for s in traced.kept} == {traced.trace_id}
    assert {s.span_id for s in traced.kept} >= {format_span_id(s.context.span_id)
                                                 for s in run_spans(traced) if s.context}


def test_runs_show_prints_the_trace_id_and_the_waterfall(traced: Traced) -> None:
    infrabot = Path(sys.executable).with_name("infrabot")
    done = subprocess.run([str(infrabot), "runs", "show", traced.run.run_id, "--trace",
                           "--state-dir", str(traced.state)], capture_output=True, text=True,
                          timeout=60, check=False, env={"PATH": "/usr/bin:/bin",
                                                        "COLUMNS": "200", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"trace       {traced.trace_id}" in out or traced.trace_id in out
    assert f"trace {traced.trace_id}" in out  # the waterfall's title
    lines = out.splitlines()
    hop = next(i for i, line in enumerate(lines) if "run/agents.cleanup [agent:cleanup]" in line)
    deeper = [line for line in lines[hop + 1:] if "exchange [agent:cleanup]" in line]
    assert deeper and "allow" in deeper[0] and "█" in deeper[0]
