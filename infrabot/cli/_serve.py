"""``infrabot serve``: the authorization server, the mock services (the four built in and those
the workflows directory declares) and the webhook receiver."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import kombu
import redis
from kombu.exceptions import KombuError

from infrabot.cli._common import (
    CommandError,
    load_settings,
    state_dir_option,
    unusable_state_dir,
)
from orchestrator.config import Settings
from orchestrator.services import service_files

PROBE_SECONDS = 1.0  # how long the start-up checks wait for Redis or RabbitMQ to answer
LOCK_FILE = "serve.lock"  # held by the one serve of a state directory (its pid inside)


@click.command("serve")
@state_dir_option
@click.option("--port-base", type=click.IntRange(0, 65000), default=None,
              help="Listen on PORT_BASE (auth), +1 datadog, +2 github, +3 aws, +4 pagerduty, "
                   "+5 webhooks, +6 on the services declared in the workflows directory's "
                   "services/ (by name); 0 lets the OS pick every port. Default: the "
                   "INFRABOT_*_PORT settings (8700-8705) and INFRABOT_SERVICE_PORTS.")
def serve(state_dir: Path | None, port_base: int | None) -> None:
    """Serve the authorization server, the mock services and the webhook receiver.

    The webhook secret is INFRABOT_WEBHOOK_SECRET; unset, the first start writes a random one
    to DIR/webhook_secret (mode 0600) and later starts reuse it. Writes DIR/endpoints.json once
    every server is ready. One serve per state directory: a second is refused. With the
    default in-memory broker it also runs the agents in this process; with INFRABOT_BROKER_URL
    on Redis, start `infrabot worker` processes for them.

    \b
    Example:
      INFRABOT_REDIS_URL=redis://127.0.0.1:6379/0 infrabot serve --state-dir /tmp/ib
    """
    # Deferred: orchestrator.ci imports the web stack
    from orchestrator.ci._secret import ensure_secret_file

    ports: dict[str, Any] = {}
    if port_base is not None:
        names = ("auth", "datadog", "github", "aws", "pagerduty", "webhooks")
        ports = {f"{n}_port": (port_base + i if port_base else 0) for i, n in enumerate(names)}
        declared = service_files(load_settings(state_dir).workflows_dir)
        ports["service_ports"] = {n: (port_base + len(names) + i if port_base else 0)
                                  for i, n in enumerate(declared)}
    settings, secret_file, created = ensure_secret_file(load_settings(state_dir, **ports))
    with serving_from(settings.state_dir):  # before anything else waits: a second is refused
        _serve(settings, secret_file, created)
    click.echo("stopped", err=True)


def _serve(settings: Settings, secret_file: Path | None, created: bool) -> None:
    """Start everything, say where it listens, and serve until SIGINT or SIGTERM."""
    from infrabot.system import running_system  # deferred: the whole system is heavy to import

    for warning in (*redis_warnings(settings), *amqp_warnings(settings)):
        click.echo(warning, err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_system(settings, write_endpoints_file=True) as system:
        if secret_file is not None:  # once started: a failed start stays one line
            click.echo(f"webhook secret {'created in' if created else 'read from'} "
                       f"{secret_file} (give it to the sender; `infrabot simulate` reads it "
                       "there)", err=True)
        urls = system.endpoints()
        for name, url in urls.items():
            click.echo(f"{name:10} {url}", err=True)
        click.echo(f"endpoints written to {system.settings.endpoints_file}", err=True)
        try:
            stop.wait()
        finally:
            _forget(system.settings.endpoints_file, urls)


@contextmanager
def serving_from(state_dir: Path) -> Iterator[None]:
    """Hold ``state_dir`` for this serve while the block runs: an exclusive lock on its
    ``serve.lock``, which the kernel releases when the process ends, however it ends. A second
    serve there would write its own endpoints.json over this one's and delete it when it
    stops, leaving every other command saying that no system runs: refused, naming the first."""
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise unusable_state_dir(state_dir, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise CommandError(f"state directory {state_dir} is in use by another `infrabot "
                               f"serve` (pid {holder}): stop it first, or give this one a "
                               "--state-dir of its own") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # the lock with it; the file stays (unlinking it would race a new serve)


def _forget(path: Path, urls: dict[str, str]) -> None:
    """Remove endpoints.json on the way out, unless another `serve` has replaced it, so other
    commands say that no system runs instead of trying stale ports."""
    try:
        if json.loads(path.read_text()) == urls:
            path.unlink()
    except (OSError, ValueError):
        pass


def redis_warnings(settings: Settings) -> Iterator[str]:
    """One line for each Redis the settings name (the registry, a Redis broker) that does not
    answer now: serve still starts (Redis may come up later), but refuses webhooks until then.
    The line names the server, never the URL's password."""
    names: dict[str, list[str]] = {}
    if settings.redis_url:
        names.setdefault(settings.redis_url, []).append("INFRABOT_REDIS_URL")
    if settings.broker_kind == "redis":
        names.setdefault(settings.broker_url, []).append("INFRABOT_BROKER_URL")
    for url, settings_names in names.items():
        problem = _redis_problem(url)
        if problem is not None:
            named = " and ".join(settings_names)
            yield (f"warning: Redis at {_server(url)} ({named}) is not answering ({problem}): "
                   f"webhooks are refused (503) until it does; start redis-server or fix {named}")


def amqp_warnings(settings: Settings) -> Iterator[str]:
    """One line if a RabbitMQ broker (INFRABOT_BROKER_URL, amqp://) does not answer now or
    refuses the connection (a wrong vhost or password): serve still starts, but refuses
    webhooks (503 broker_unavailable) until it does. The line names the server and what it
    said, never the URL's password."""
    if settings.broker_kind != "amqp":
        return
    url = settings.broker_connection_url  # its shape checked by the settings
    conn = kombu.Connection(url, connect_timeout=PROBE_SECONDS,
                            ssl=settings.broker_tls or False)
    try:  # one try, no retry: the probe takes at most its timeout
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                               interval_max=0, timeout=PROBE_SECONDS)
    except (OSError, KombuError, *conn.connection_errors,
            *conn.channel_errors) as exc:
        problem = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")
        port = 5671 if url.lower().startswith("amqps") else 5672
        yield (f"warning: RabbitMQ at {_server(url, port)} (INFRABOT_BROKER_URL) is not "
               f"answering ({problem}): webhooks are refused (503) until it does; start "
               "rabbitmq-server or fix INFRABOT_BROKER_URL")
    finally:
        conn.release()


def _redis_problem(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_SECONDS,
                                  socket_timeout=PROBE_SECONDS)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")
    finally:
        client.close()
    return None


def _server(url: str, default_port: int = 6379) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "a local socket"
    return f"{host}:{port or default_port}{parts.path if parts.path not in ('', '/') else ''}"
