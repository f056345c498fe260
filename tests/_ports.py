"""Loopback ports for an ``infrabot serve`` that a test kills and starts again on the same ports
(``serve --port-base``).

While such a ``serve`` is down its ports are free, so they must be ones nothing else on the
machine takes meanwhile. A port the OS hands out for outgoing connections (the ephemeral range,
``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default) can be taken by any client
at any moment, another pytest-xdist worker's included. So the range is chosen below it, in a
slice of its own for each worker (``PYTEST_XDIST_WORKER``: gw0, gw1, ...), so two workers never
pick the same ports, and probed port by port; a taken one makes it pick another.
"""

from __future__ import annotations

import os
import random
import re
import socket
from pathlib import Path

from infrabot.system import SERVER_NAMES
from orchestrator.config import Settings
from orchestrator.services import service_files

LOWEST = 26000  # above the registered ports the test machines' services listen on
SLICE = 600  # ports per worker
_DEFAULT_EPHEMERAL_START = 32768
_ATTEMPTS = 50


def serve_port_count(workflows_dir: Path | None = None) -> int:
    """How many ports ``serve --port-base`` binds: the authorization server, the four services,
    the webhook receiver, and each service ``workflows_dir`` declares (None: the default
    directory's; infrabot/cli/_serve.py, infrabot/system.py)."""
    folder = workflows_dir or Settings.model_fields["workflows_dir"].default
    return len(SERVER_NAMES) + len(service_files(folder))


def ephemeral_start() -> int:
    """The lowest port the OS picks for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_START


def worker_slice() -> range:
    """This process's own ports: slot 0 for a run without xdist, slot N+1 for worker gwN."""
    found = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    slot = int(found[1]) + 1 if found else 0
    slots = (ephemeral_start() - LOWEST) // SLICE
    if slots < 1:
        raise AssertionError(f"no ports between {LOWEST} and the ephemeral range "
                             f"({ephemeral_start()})")
    start = LOWEST + (slot % slots) * SLICE
    return range(start, start + SLICE)


def free_port_base(count: int) -> int:
    """A port ``p`` of this worker's slice with ``p .. p+count-1`` free on loopback now."""
    ports = worker_slice()
    for _ in range(_ATTEMPTS):
        base = random.randrange(ports.start, ports.stop - count + 1)
        if all(_free(port) for port in range(base, base + count)):
            return base
    raise AssertionError(f"no {count} free loopback ports in a row in {ports}")


def _free(port: int) -> bool:
    with socket.socket() as probe:  # no SO_REUSEADDR: a port still in TIME_WAIT counts as taken
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
