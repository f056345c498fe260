"""With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a run's spans go out over OTLP/HTTP as every
collector expects: a small receiver in the test takes ``POST /v1/traces`` and decodes the
protobuf with the official ``opentelemetry-proto`` package."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from infrabot.system import running_system
from orchestrator.audit import contains_raw_jwt
from orchestrator.runs import RunStore, SpanLog
from tests.e2e._harness import (
    RUN_TIMEOUT,
    accepted_run_id,
    deployment,
    embedded_settings,
    post_webhook,
)


class Receiver:
    """An OTLP/HTTP traces endpoint on loopback keeping every request it decoded."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.content_types.add(self.headers["Content-Type"])
                ok = self.path == "/v1/traces"
                if ok:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.requests.append(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def spans(self) -> list[tuple[str, dict[str, str], str]]:
        """(name, attributes as text, trace id hex) of every span received."""
        out = []
        for request in self.requests:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: str(a.value.string_value or a.value.int_value)
                                      for a in span.attributes}
                        out.append((span.name, attributes, span.trace_id.hex()))
        return out

    def services(self) -> set[str]:
        return {a.value.string_value for r in self.requests for rs in r.resource_spans
                for a in rs.resource.attributes if a.key == "service.name"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_spans_go_out_over_otlp_http(receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    settings = embedded_settings(tmp_path_factory.mktemp("otlp") / "state")
    assert settings.otlp_endpoint == receiver.url
    with running_system(settings) as system:
        run_id = accepted_run_id(post_webhook(system.webhooks_url,
                                              deployment("sam", environment="staging")))
        run = system.runtime.runs.wait(run_id, timeout=RUN_TIMEOUT)
        assert run.status == "succeeded" and run.trace_id
    # leaving the block flushed the batch
    assert receiver.content_types == {"application/x-protobuf"}
    assert receiver.services() == {"infrabot"}
    ours = [(name, attrs, trace) for name, attrs, trace in receiver.spans()
            if attrs.get("infrabot.run_id") == run_id]
    assert {trace for _, _, trace in ours} == {run.trace_id}
    names = {name for name, _, _ in ours}
    assert {"exchange", "enforce datadog", "enforce github", "enforce aws",
            "enforce pagerduty", "run/agents.infrabot", "run/agents.argocd",
            "run/agents.cleanup"} <= names
    for name, attrs, _ in receiver.spans():
        assert not any(contains_raw_jwt(v) for v in attrs.values()), name
    with RunStore(settings.runs_target) as store:  # exported, so not kept as well
        assert SpanLog(store).of_trace(run.trace_id) == []
