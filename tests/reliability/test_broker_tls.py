"""The brokers over TLS, each a server of the test's own that listens with TLS only: a Redis
(``rediss://``) and a RabbitMQ node (``amqps://``). The whole chain runs with the server's
certificate and name verified; a certificate the URL's CA did not sign is refused before anything
is sent, and so is one for another host. Over Redis, a hop is still recorded from its
publication (our transport, as over ``redis://``)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e._harness import SAM, accepted_run_id, assert_post_deploy_hops, deployment
from e2e._processes import Distributed

from bench._servers import rabbitmq_server_binary
from infrabot.celery_app import create_celery
from orchestrator.config import Settings
from reliability._rabbit_tls import TlsRabbitNode
from tests._redis_server import RedisServer
from tests._tls import ServerCertificate, certificate_authority, server_certificate

pytestmark = pytest.mark.redis
HOP = "agents.argocd"


@pytest.fixture(params=["redis", "rabbitmq"])
def tls_broker(request: pytest.FixtureRequest, tmp_path: Path
               ) -> Iterator[tuple[str, ServerCertificate]]:
    """A TLS-only broker of the test's own: its URL (naming the CA) and its certificate."""
    pki = server_certificate(tmp_path / "pki")
    if request.param == "redis":
        with RedisServer(tmp_path / "redis", tls=pki) as redis_server:
            yield redis_server.url(), pki
        return
    if rabbitmq_server_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no rabbitmq-server: CI must provide one")
        pytest.skip("no rabbitmq-server: install rabbitmq-server")
    node = TlsRabbitNode("rabbitmq", tmp_path / "rabbit", tls=pki)
    try:  # a start that times out has spawned the node already: it is killed too
        node.start()
        yield node.url, pki
    finally:
        node.kill()


def refusal(tmp_path: Path, url: str) -> str:
    """Publish one hop at once (no retry, no reconnection) and return why it was refused: the
    messages of the error and its causes (the broker's, or its result backend's, connection)."""
    app = create_celery(Settings(state_dir=tmp_path / "state", broker_url=url))
    app.conf.broker_connection_max_retries = 0
    app.conf.task_publish_retry = False
    try:
        app.send_task(HOP, kwargs={"run_id": "run-tls"}, queue="argocd")
    except Exception as exc:  # noqa: BLE001 - any refusal; its text is what is checked
        messages, cause = [], exc  # type: tuple[list[str], BaseException | None]
        while cause is not None:
            messages.append(str(cause))
            cause = cause.__cause__ or cause.__context__
        return " / ".join(messages)
    raise AssertionError(f"published over {url}")


def test_the_whole_chain_runs_over_tls(tmp_path: Path, e2e_redis_url: str,
                                       tls_broker: tuple[str, ServerCertificate]) -> None:
    d = Distributed(tmp_path / "system", e2e_redis_url, broker_url=tls_broker[0])
    try:
        d.serve()
        d.worker(concurrency=2)
        run = d.wait_run(accepted_run_id(d.webhook(deployment("sam"))))
        assert (run.status, run.reason, run.user) == ("succeeded", "ok", SAM), d.logs()
        assert_post_deploy_hops(run)
    finally:
        d.close()


def test_a_certificate_the_ca_did_not_sign_is_refused(
        tmp_path: Path, tls_broker: tuple[str, ServerCertificate]) -> None:
    url, pki = tls_broker
    other_ca, _ = certificate_authority(tmp_path / "other", "another-ca")
    assert "CERTIFICATE_VERIFY_FAILED" in refusal(tmp_path, url.replace(str(pki.ca),
                                                                        str(other_ca)))


def test_a_hop_over_redis_tls_is_recorded_from_its_publication(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", tls=server_certificate(tmp_path / "pki")) as server:
        app = create_celery(Settings(state_dir=tmp_path / "state", broker_url=server.url()))
        assert app.conf.broker_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
        app.send_task(HOP, kwargs={"run_id": "run-tls"}, queue="argocd")
        with server.client() as raw:
            assert raw.llen("argocd") == 1
            assert raw.hlen("unacked") == 1  # our transport's record, made with the LPUSH


def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    """Signed by the trusted CA, but for elsewhere.test, not 127.0.0.1: the name check refuses
    it (kombu alone would not check the name)."""
    pki = server_certificate(tmp_path / "pki", name="elsewhere.test")
    with RedisServer(tmp_path / "redis", tls=pki) as server:
        assert "IP address mismatch" in refusal(tmp_path, server.url())
