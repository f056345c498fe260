"""Whether the server has ended a pooled PostgreSQL connection, told without a round trip
(:mod:`orchestrator.db._postgres`).

A server that ends a session (``pg_terminate_backend``, a shutdown, ``idle_session_timeout``)
first sends its goodbye, a ``FATAL`` error, and closes the socket only once the backend process
has exited, a moment later (after it has left ``pg_stat_activity``). Until the close arrives,
the goodbye is the only sign, and it is in one of two places:

* still on the socket, which then polls readable;
* read by libpq already, in the same read as the last reply of the connection's previous round
  trip (the backend was killed just after answering, before the client read the answer). libpq
  then keeps it in its input buffer (after a pipeline's last result) or reports it as a notice,
  an error outside any query; the connection still looks healthy and its socket is quiet.

Both are checked: what libpq holds is parsed (no I/O), so a goodbye there reaches the notice
handler :func:`watch_goodbye` installed, and the socket is polled.
"""

from __future__ import annotations

import select
import weakref
from typing import Any

import psycopg
from psycopg.errors import Diagnostic

# Connections whose server's goodbye libpq has read: ended, whatever their socket says.
_ENDED: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
_GOODBYE = frozenset({"FATAL", "PANIC"})


def watch_goodbye(conn: psycopg.Connection[Any]) -> None:
    """Remember it when libpq reads the server's goodbye on ``conn`` outside a query."""
    ref = weakref.ref(conn)

    def heard(diag: Diagnostic) -> None:
        if diag.severity_nonlocalized in _GOODBYE and (ended := ref()) is not None:
            _ENDED.add(ended)

    conn.add_notice_handler(heard)


def ended_by_server(conn: psycopg.Connection[Any]) -> bool:
    """An idle connection has nothing to read, and libpq has read no goodbye on it, unless the
    server has ended it. ``conn`` must have been given to :func:`watch_goodbye`."""
    if conn.closed:
        return True
    try:
        conn.pgconn.is_busy()  # parses what libpq has read (no I/O): a goodbye there is heard
        if conn.closed or conn in _ENDED:
            return True
        poller = select.poll()  # not select.select, which refuses a descriptor past 1023
        poller.register(conn.pgconn.socket, select.POLLIN)  # a hang-up or error is always told
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.OperationalError):
        return True
