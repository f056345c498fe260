"""A Redis broker over TLS (``rediss://``) gets our transport, with the hop recorded from its
publication as over ``redis://``, and the server's certificate verified: a certificate the
URL's CA did not sign is refused before anything is sent. Against a ``redis-server`` of the
test's own that listens with TLS only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e._harness import SAM, accepted_run_id, agents_in_order, deployment
from e2e._processes import Distributed
from kombu.exceptions import OperationalError

from infrabot.celery_app import create_celery
from orchestrator.config import Settings
from reliability._redis_server import RedisServer
from reliability._tls import certificate_authority, server_certificate

pytestmark = pytest.mark.redis
HOP = "agents.argocd"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", tls=server_certificate(tmp_path / "pki"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_hop_over_tls_is_recorded_from_its_publication(tmp_path: Path,
                                                        tls_redis: RedisServer) -> None:
    app = create_celery(Settings(state_dir=tmp_path / "state", broker_url=tls_redis.url()))
    assert app.conf.broker_use_ssl["ssl_cert_reqs"] == "required"
    app.send_task(HOP, kwargs={"run_id": "run-tls"}, queue="argocd")
    with tls_redis.client() as raw:
        assert raw.llen("argocd") == 1
        assert raw.hlen("unacked") == 1  # our transport's record, made with the LPUSH


def test_a_certificate_the_ca_did_not_sign_is_refused(tmp_path: Path,
                                                       tls_redis: RedisServer) -> None:
    other_ca, _ = certificate_authority(tmp_path / "other", "another-ca")
    url = tls_redis.url().replace(str(tls_redis.tls.ca), str(other_ca))  # type: ignore[union-attr]
    app = create_celery(Settings(state_dir=tmp_path / "state", broker_url=url))
    app.conf.broker_connection_max_retries = 0
    app.conf.task_publish_retry = False
    with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        app.send_task(HOP, kwargs={"run_id": "run-tls"}, queue="argocd")
    with tls_redis.client() as raw:
        assert raw.dbsize() == 0


def test_the_whole_chain_runs_over_a_tls_broker(tmp_path: Path, e2e_redis_url: str,
                                                tls_redis: RedisServer) -> None:
    d = Distributed(tmp_path / "system", e2e_redis_url, broker_url=tls_redis.url())
    try:
        d.serve()
        d.worker(concurrency=2)
        run = d.wait_run(accepted_run_id(d.webhook(deployment("sam"))))
        assert (run.status, run.reason, run.user) == ("succeeded", "ok", SAM), d.logs()
        assert agents_in_order(run) == ["orchestrator", "agent:infrabot", "agent:argocd",
                                        "agent:cleanup"]
    finally:
        d.close()
