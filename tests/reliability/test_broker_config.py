"""The broker settings as the workers get them, and the shipped systemd units.

RabbitMQ (production): durable agent queues, persistent messages, publisher confirms, late
acknowledgement, prefetch 1. Redis: the patched transport (``infrabot._redis_broker``), the
configured visibility timeout, a sweep for expired hops every 5 s on every call under a lock that
outlives a dead holder by 10 s only, and the agent queues recorded from publication. A URL that
names no broker is refused at start-up with one line naming the variable.
"""

from __future__ import annotations

import configparser
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from e2e._harness import INFRABOT, REPO, clean_env
from pydantic import ValidationError

from infrabot.celery_app import (
    RESTORE_INTERVAL,
    SWEEP_LOCK_SECONDS,
    create_celery,
)
from orchestrator.config import Settings


def worker_refusal(state_dir: Path, broker_url: str, **settings: str) -> str:
    """``infrabot worker`` with ``broker_url`` (and ``settings``, more variables): it must
    refuse to start (exit 1, nothing on stdout); what it said on stderr."""
    result = subprocess.run([str(INFRABOT), "worker", "--state-dir", str(state_dir)],
                            env=clean_env(INFRABOT_BROKER_URL=broker_url, **settings),
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (1, ""), result
    return result.stderr


AGENT_QUEUES = ("infrabot", "argocd", "scanner", "notifier", "rollback", "cleanup")
DEPLOY = REPO / "deploy"


def test_rabbitmq_gets_durable_queues_persistent_messages_and_confirms(tmp_path: Path) -> None:
    app = create_celery(Settings(state_dir=tmp_path, broker_url="amqp://guest:guest@h:5672/v"))
    conf = app.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost,
            conf.worker_prefetch_multiplier) == (True, True, 1)
    assert conf.task_default_delivery_mode == "persistent"
    assert conf.broker_transport_options == {"confirm_publish": True}
    assert conf.broker_connection_max_retries is None  # a worker waits for its broker
    with app.connection_for_write() as connection:
        assert connection.transport_cls == "amqp"
    for queue in AGENT_QUEUES:
        declared = app.amqp.queues[queue]
        assert declared.durable and not declared.auto_delete and declared.exchange.durable


def test_redis_gets_the_patched_transport_and_a_frequent_sweep(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, broker_url="redis://127.0.0.1:1/0",
                        visibility_timeout_seconds=75)
    app = create_celery(settings)
    assert app.conf.broker_transport_options == {
        "visibility_timeout": 75, "unacked_restore_interval": RESTORE_INTERVAL,
        "unacked_restore_throttle": 1, "unacked_mutex_expire": SWEEP_LOCK_SECONDS,
        "tracked_queues": sorted(AGENT_QUEUES), "socket_timeout": 5, "socket_connect_timeout": 5}
    with app.connection_for_write() as connection:
        assert connection.transport.__class__.__module__ == "infrabot._redis_broker"
        assert connection.transport.Channel.__module__ == "infrabot._redis_broker"


def test_a_hops_time_limit_is_its_tasks_and_the_visibility_timeout_outlasts_it(
        tmp_path: Path) -> None:
    redis_url = "redis://127.0.0.1:1/0"
    default = create_celery(Settings(state_dir=tmp_path, broker_url=redis_url)).conf
    assert (default.task_time_limit, default.task_soft_time_limit) == (30, 25)
    short = create_celery(Settings(state_dir=tmp_path, broker_url=redis_url,
                                   hop_time_limit_seconds=15, visibility_timeout_seconds=26))
    assert (short.conf.task_time_limit, short.conf.task_soft_time_limit) == (15, 10)
    assert short.conf.broker_transport_options["visibility_timeout"] == 26
    # 30 s by default, so 41 s is the least visibility timeout; one second less is refused
    Settings(state_dir=tmp_path, broker_url=redis_url, visibility_timeout_seconds=41)
    with pytest.raises(ValidationError, match="visibility_timeout_seconds must be >= "
                                              "hop_time_limit_seconds [+] 11: a hop must never "
                                              "come back while it runs"):
        Settings(state_dir=tmp_path, broker_url=redis_url, visibility_timeout_seconds=40)
    with pytest.raises(ValidationError, match="visibility_timeout_seconds must be >= "):
        Settings(state_dir=tmp_path, broker_url=redis_url, hop_time_limit_seconds=110)
    # RabbitMQ has no visibility timeout to outlast
    Settings(state_dir=tmp_path, broker_url="amqp://guest:guest@h:5672/v",
             hop_time_limit_seconds=600)
    for bad in ({"hop_time_limit_seconds": 9}, {"hop_time_limit_seconds": 601},
                {"visibility_timeout_seconds": 20, "hop_time_limit_seconds": 10}):
        with pytest.raises(ValidationError):
            Settings(state_dir=tmp_path, broker_url=redis_url, **bad)


def test_a_visibility_timeout_a_hop_could_outlast_is_one_line_at_start(tmp_path: Path) -> None:
    assert worker_refusal(tmp_path, "redis://127.0.0.1:1/0",
                          INFRABOT_HOP_TIME_LIMIT_SECONDS="110") == (
        "Error: bad settings: visibility_timeout_seconds must be >= hop_time_limit_seconds + "
        "11: a hop must never come back while it runs\n")


def test_rediss_gets_the_patched_transport_and_verifies_the_certificate(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    plain = create_celery(Settings(state_dir=tmp_path, broker_url="rediss://127.0.0.1:1/0"))
    assert plain.conf.broker_transport == "infrabot._redis_broker:Transport"
    assert plain.conf.broker_use_ssl == {  # kombu's own default: no verification
        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    given = create_celery(Settings(
        state_dir=tmp_path, broker_url=f"rediss://127.0.0.1:1/0?ssl_ca_certs={ca}"))
    assert given.conf.broker_url == "rediss://127.0.0.1:1/0"  # the options go as broker_use_ssl
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True,
                "ssl_ca_certs": str(ca)}
    assert given.conf.broker_use_ssl == expected
    with given.connection_for_write() as connection:
        assert connection.transport.__class__.__module__ == "infrabot._redis_broker"
        assert connection.ssl == expected
    assert not create_celery(Settings(state_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
                             ).conf.broker_use_ssl


def test_amqps_verifies_the_certificate_and_the_host_name(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    app = create_celery(Settings(state_dir=tmp_path, broker_url=(
        f"amqps://guest:guest@broker.example:5671/v?heartbeat=10&ssl_ca_certs={ca}")))
    assert app.conf.broker_url == "amqps://guest:guest@broker.example:5671/v?heartbeat=10"
    assert app.conf.broker_use_ssl == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None,
                                       "ca_certs": str(ca)}  # None: kombu names the host
    unchecked = create_celery(Settings(state_dir=tmp_path, broker_url=(
        "amqps://guest:guest@broker.example:5671/v?ssl_cert_reqs=none")))
    assert unchecked.conf.broker_use_ssl == {"cert_reqs": ssl.CERT_NONE}


@pytest.mark.parametrize(("url", "message"), [
    ("rediss://127.0.0.1:1/0?ssl_ca_certs=/nowhere/ca.pem",
     "ssl_ca_certs: no such file: /nowhere/ca.pem"),
    ("amqps://h:5671/?ssl_certfile=/nowhere/c.pem", "ssl_certfile: no such file: /nowhere/c.pem"),
    ("rediss://127.0.0.1:1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs: use required, optional or none"),
    ("amqps://h:5671/?ssl_check_hostname=maybe", "ssl_check_hostname: use true or false"),
    ("rediss://127.0.0.1:1/0?ssl_min_version=3", ("ssl_min_version: not a TLS parameter (known: "
     "ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname)")),
    ("redis://127.0.0.1:1/0?ssl_cert_reqs=none",
     "ssl_cert_reqs: TLS parameters need rediss:// or amqps://"),
])
def test_a_bad_tls_parameter_is_one_line_at_start(tmp_path: Path, url: str, message: str) -> None:
    assert worker_refusal(tmp_path, url) == f"Error: bad setting INFRABOT_BROKER_URL: {message}\n"


def test_a_url_that_names_no_broker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a broker URL: use amqp:// "):
        Settings(broker_url="kafka://127.0.0.1:9092")
    assert worker_refusal(tmp_path, "kafka://127.0.0.1:9092") == (
        "Error: bad setting INFRABOT_BROKER_URL: not a broker URL: use "
        "amqp:// (RabbitMQ), redis:// or memory://\n")


@pytest.mark.parametrize("unit", ["infrabot-serve.service", "infrabot-worker@.service"])
def test_the_shipped_units_always_restart(unit: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / unit)
    service = parser["Service"]
    assert service["Restart"] == "always"
    assert parser["Unit"]["StartLimitIntervalSec"] == "0"  # never gives up
    assert service["EnvironmentFile"] == "/etc/infrabot/infrabot.env"
    command = service["ExecStart"].split()
    assert command[0].endswith("/infrabot") and command[1] in ("serve", "worker")
    options = [arg for arg in command[2:] if arg.startswith("--")]
    usage = subprocess.run([str(INFRABOT), command[1], "--help"], capture_output=True,
                           text=True, timeout=60, env=clean_env(), check=True).stdout
    assert all(option in usage for option in options), (options, usage)
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", str(DEPLOY / unit)],
                                capture_output=True, text=True, timeout=60, check=False)
        problems = [line for line in verify.stderr.splitlines()
                    if "is not executable" not in line]  # /opt/infrabot is not installed here
        assert problems == []


def test_a_published_hop_names_no_token_in_what_celery_logs(tmp_path: Path) -> None:
    """Celery logs a task by its argsrepr header (received, retried, a cancel that failed after
    a connection loss): every hop goes out with its token replaced there."""
    app = create_celery(Settings(state_dir=tmp_path, broker_url="memory://"))
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyOnNhbSJ9.c2lnbmF0dXJl"
    app.send_task("agents.argocd", args=["run-1", "post-deploy", token, "urn:infra:repo:read",
                                         "delegated", 1], queue="argocd")
    with app.connection_for_read() as connection:
        message = connection.SimpleQueue("argocd").get(timeout=5)
        headers = message.headers
        message.ack()
    assert headers["argsrepr"] == repr(["run-1", "post-deploy", "<token>", "urn:infra:repo:read",
                                        "delegated", 1])
    assert headers["kwargsrepr"] == "{}"
    assert token not in str(headers)
