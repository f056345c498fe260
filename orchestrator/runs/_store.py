"""The run event log, shared by the orchestrator, the workers and the CLI: a SQLite file
(``<state_dir>/runs.sqlite3`` by default) or a PostgreSQL database (:mod:`orchestrator.db`).

Several processes, on one host or (PostgreSQL) many, read and write it at once; every write is
one short transaction, and one that numbers a run's events first locks the run, so two writers
never take the same ``seq``. A transaction's results are read after it ends wherever nothing
inside it depends on them, so on PostgreSQL most are one round trip, ``COMMIT`` included
(:mod:`orchestrator.db`); an event's number is taken inside its ``INSERT``. In a process the store is thread-safe. A database that cannot be
used (locked past the busy timeout, a full disk, a damaged file, a lost connection) raises
:class:`~orchestrator.errors.Unavailable` (``run_log_unavailable``).
Three guarantees the agents and the webhook receiver rely on:

* :meth:`RunStore.finish` never overwrites a terminal status: the first one recorded wins, and
  only the caller that recorded it is told so.
* :meth:`RunStore.mark_hop_done` is an atomic insert-or-ignore: exactly one caller, across
  threads and processes, learns that it completed a given agent's hop of a run.
* :meth:`RunStore.claim_delivery` likewise: exactly one caller learns that a CI delivery is new.
  The log is on disk, so this outlives a restart of the process or of an unpersisted Redis
  (:mod:`orchestrator.runs._deliveries`, which also lets a redelivery take over a delivery whose
  receiver died before its run was started, or before its first hop was received).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.db import Conflict, Database, Rows, Store, Transaction, open_database
from orchestrator.runs._deliveries import DeliveryClaims, mark_started
from orchestrator.runs._ends import CAUSES, ENDED, RunEnds, enqueue_end
from orchestrator.runs._events import EventDetail, Finished, detail_json
from orchestrator.runs._model import (
    TERMINAL_STATUSES,
    Run,
    RunEvent,
    RunExists,
    RunOrigin,
    UnknownRun,
    check_text,
)
from orchestrator.runs._schema import EVENT_COLUMNS, RUN_COLUMNS, SCHEMA, format_time, read_run

MAX_LIST = 1000
# How long wait gives a terminal run to be settled (a sweep comes every second).
SETTLE_SECONDS = 5.0
_TERMINAL_SQL = ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES))
_RUN_COLUMNS_SQL = ", ".join(f'"{name}"' for name in RUN_COLUMNS)
_SELECT_RUN = f"SELECT {_RUN_COLUMNS_SQL} FROM runs"
_INSERT_RUN = (f"INSERT INTO runs ({_RUN_COLUMNS_SQL}) "
               f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})")
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
# The next number of the run's events, inserted only if the run exists (else no row).
_APPEND_EVENT = ("INSERT INTO events (run_id, seq, time, kind, agent, detail) "
                 "SELECT run_id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?), "
                 "?, ?, ?, ? FROM runs WHERE run_id = ? {only_if}RETURNING seq")
_EXISTS = "SELECT 1 FROM runs WHERE run_id = ?"


def _now() -> datetime:
    return datetime.now(UTC)


class RunStore(DeliveryClaims, RunEnds, Store):
    """Runs and their event logs in a SQLite file (``target`` a path) or a PostgreSQL database
    (``target`` a ``postgresql://`` URL). Use as a context manager or :meth:`close`."""

    def __init__(self, target: Path | str, *, clock: Callable[[], datetime] = _now,
                 read_only: bool = False) -> None:
        """``read_only``: an existing run log (SQLite file or PostgreSQL database), only read:
        nothing created, migrated or written (no DDL; a write raises ``Unavailable``), and
        :class:`ConfigError` if it has no ``runs`` and ``events`` tables."""
        self._clock = clock
        self._finish_hooks: builtins.list[Callable[[str], None]] = []
        self._target = target
        self._db: Database = open_database(target, SCHEMA, read_only=read_only)

    @property
    def target(self) -> Path | str:
        """What it was opened with: another store on the same log can be opened with it."""
        return self._target

    def on_finish(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(run_id)`` after this store records a run's terminal status."""
        self._finish_hooks.append(hook)

    def create(self, run_id: str, *, workflow: str, event: RunOrigin,
               mode: str = "delegated") -> Run:
        """Record a new ``pending`` run rooted in ``event``; :class:`RunExists` if taken."""
        for name, value in (("run_id", run_id), ("workflow", workflow), ("user", event.user)):
            check_text(name, value)
        run = Run(run_id=run_id, workflow=workflow, user=event.user, status="pending",
                  trigger=event.trigger, environment=event.environment,
                  repository=event.repository, commit=event.commit, service=event.service,
                  pr=event.pr, mode=mode, created_at=self._clock())
        values = (run.run_id, run.workflow, run.user, run.status, None, run.trigger,
                  run.environment, run.repository, run.commit, run.service, run.pr, run.mode,
                  format_time(run.created_at), None)
        try:
            with self._write() as tx:
                tx.execute(_INSERT_RUN, values)
        except Conflict as exc:
            raise RunExists(f"run {run_id!r} already exists") from exc
        return run

    def add_event(self, run_id: str, agent: str | None, detail: EventDetail) -> RunEvent:
        """Append one event, of ``detail``'s kind; :class:`EventDetailError` (a ValueError) if
        the detail is not an event model, does not validate, or holds a raw JWT."""
        check_text("agent", agent)
        text = detail_json(detail)
        now = self._clock()
        with self._write() as tx:
            appended = append_event(tx, run_id, format_time(now), detail.kind, agent, text)
        seq = event_seq(appended, run_id)
        return RunEvent(run_id=run_id, seq=seq, time=now, kind=detail.kind, agent=agent,
                        detail=detail)

    def mark_running(self, run_id: str) -> bool:
        """``pending`` → ``running``; False if the run had already left ``pending``. Holds the
        run's lock, as :meth:`finish` does: a take-over's finish of a ``pending`` run
        (:meth:`take_over_delivery`) and this see the same status; marks the claim of the
        delivery it was started for ``started``."""
        with self._write() as tx:
            tx.lock(f"run:{run_id}")
            exists = tx.execute(_EXISTS, (run_id,))
            cursor = tx.execute(
                "UPDATE runs SET status = 'running' WHERE run_id = ? AND status = 'pending'",
                (run_id,))
            mark_started(tx, run_id)  # its delivery's claim: no take-over from now on
        _require(exists, run_id)
        return cursor.rowcount == 1

    def finish(self, run_id: str, status: str, reason: str, *,
               agent: str | None = None, cause: str = ENDED) -> bool:
        """Record the terminal status unless one is recorded already; True if this call did.

        The run's ``finished`` event (status and reason, by ``agent``) is written in the same
        transaction, so nobody ever sees a terminal run without it, and the run is queued for
        the revocation of its tokens (:mod:`orchestrator.runs._ends`), its record to say
        ``cause`` (one of ``CAUSES``).
        """
        return self._end(run_id, status, reason, agent=agent, cause=cause)

    def _end(self, run_id: str, status: str, reason: str, *, agent: str | None = None,
             if_pending: bool = False, cause: str = ENDED,
             first: Callable[[Transaction], bool] | None = None) -> bool:
        """:meth:`finish`; ``if_pending``: only if the run is still ``pending``; ``first``: a
        write of the same transaction, under the run's lock, done first, the run ended only if
        it returns True (and, with ``if_pending``, done only while the run is ``pending``)."""
        if cause not in CAUSES:
            raise ValueError(f"{cause!r} is not a cause of revocation")
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a terminal status")
        check_text("reason", reason)
        check_text("agent", agent)
        detail = detail_json(Finished.model_validate({"status": status, "reason": reason}))
        now = format_time(self._clock())
        only = "status = 'pending'" if if_pending else f"status NOT IN ({_TERMINAL_SQL})"
        with self._write() as tx:
            if first is not None:
                tx.lock(f"run:{run_id}")  # as mark_running: the status stays what is read
                if if_pending and tx.execute("SELECT 1 FROM runs WHERE run_id = ? AND status "
                                             "= 'pending'", (run_id,)).fetchone() is None:
                    return False
                if not first(tx):
                    return False
            # The event first, on the condition the UPDATE checks: only a finish changes it,
            # and every finish holds the run's lock, so both see the same status.
            appended = append_event(tx, run_id, now, "finished", agent, detail,
                                    only_if=(f"AND {only} ", ()))
            cursor = tx.execute("UPDATE runs SET status = ?, reason = ?, finished_at = ? "
                                f"WHERE run_id = ? AND {only}", (status, reason, now, run_id))
            enqueue_end(tx, run_id, now, cause)
            exists = tx.execute(_EXISTS, (run_id,))
        if cursor.rowcount != 1:
            _require(exists, run_id)
            return False
        event_seq(appended, run_id)
        for hook in self._finish_hooks:
            hook(run_id)
        return True

    def get(self, run_id: str, *, kinds: Sequence[str] | None = None) -> Run | None:
        """The run with all its events (only those of ``kinds`` if given: a light read of,
        say, its start), or None."""
        only = f" AND kind IN ({', '.join('?' * len(kinds))})" if kinds is not None else ""
        with self._read() as tx:
            found = tx.execute(f"{_SELECT_RUN} WHERE run_id = ?", (run_id,))
            events = tx.execute(f"{_SELECT_EVENTS} WHERE run_id = ?{only} ORDER BY seq",
                                (run_id, *(kinds or ())))
        row = found.fetchone()
        return None if row is None else read_run(row, events.fetchall())

    def list(self, limit: int = 20, *, status: str | None = None,
             user: str | None = None) -> builtins.list[Run]:
        """The newest ``limit`` runs (at most 1000) matching the filters, newest first."""
        if not 0 <= limit <= MAX_LIST:
            raise ValueError(f"limit must be between 0 and {MAX_LIST}")
        used = {name: value for name, value in (("status", status), ("user", user)) if value}
        where = " AND ".join(f'"{name}" = ?' for name in used) or "TRUE"
        with self._read() as tx:
            rows = tx.execute(
                f"{_SELECT_RUN} WHERE {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                [*used.values(), limit]).fetchall()
            ids = [row[0] for row in rows]
            events = tx.execute(
                f"{_SELECT_EVENTS} WHERE run_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY run_id, seq", ids).fetchall() if ids else []
        by_run: dict[str, builtins.list[tuple[Any, ...]]] = {}
        for event in events:
            by_run.setdefault(event[0], []).append(event)
        return [read_run(row, by_run.get(row[0], [])) for row in rows]

    def unfinished_before(self, when: datetime, limit: int = 100) -> builtins.list[str]:
        """The ids of runs created before ``when`` that have no terminal status, oldest first."""
        with self._read() as tx:
            rows = tx.execute(
                f"SELECT run_id FROM runs WHERE status NOT IN ({_TERMINAL_SQL}) "
                "AND created_at < ? ORDER BY created_at LIMIT ?",
                (format_time(when), limit))
        return [row[0] for row in rows.fetchall()]

    def wait(self, run_id: str, timeout: float, poll: float = 0.02) -> Run:
        """Block until the run is terminal, then until it is settled, its tokens revoked and
        that recorded (:meth:`settled`), for at most ``SETTLE_SECONDS`` more (the revoking
        process or the registry may be down), within ``timeout``; return it. TimeoutError if
        the run is not terminal after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (run := self.get(run_id)) is None or not run.terminal:
            if time.monotonic() >= deadline:
                state = "does not exist" if run is None else f"is still {run.status}"
                raise TimeoutError(f"run {run_id} {state} after waiting {timeout:g} s")
            time.sleep(poll)
        settle_by = min(deadline, time.monotonic() + SETTLE_SECONDS)  # its queue row only now
        while not self.settled(run_id) and time.monotonic() < settle_by:
            time.sleep(poll)
        return run

    def hop_done(self, run_id: str, agent: str) -> bool:
        """True if some task already completed ``agent``'s hop of this run."""
        with self._read() as tx:
            rows = tx.execute("SELECT 1 FROM hops WHERE run_id = ? AND agent = ?",
                              (run_id, agent))
        return rows.fetchone() is not None

    def mark_hop_done(self, run_id: str, agent: str, task_id: str) -> bool:
        """Record ``agent``'s hop of this run as done; True only for the first caller anywhere."""
        with self._write() as tx:
            cursor = tx.execute("INSERT INTO hops (run_id, agent, task_id, time) "
                                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                (run_id, agent, task_id, format_time(self._clock())))
        return cursor.rowcount == 1

    def __repr__(self) -> str:
        return f"RunStore({self._db.target!r})"

    def _write(self) -> AbstractContextManager[Transaction]:
        """One write transaction, committed on success, rolled back otherwise."""
        return self._db.transaction(write=True)

    def _read(self) -> AbstractContextManager[Transaction]:
        """One read transaction: a consistent snapshot of the run and its events."""
        return self._db.transaction(write=False)


def append_event(tx: Transaction, run_id: str, when: str, kind: str, agent: str | None,
                 detail: str, *, only_if: tuple[str, Sequence[Any]] = ("", ())) -> Rows:
    """Append one event (``detail`` already checked) inside the caller's write transaction,
    if the run exists (and the SQL condition ``only_if``, ``AND ...`` on the run's row, holds);
    its ``seq`` is the result's one row (none: not appended; see :func:`event_seq`). Takes the
    run's lock first: events are numbered per run, by every process."""
    tx.lock(f"run:{run_id}")
    condition, params = only_if
    return tx.execute(_APPEND_EVENT.format(only_if=condition),
                      (run_id, when, kind, agent, detail, run_id, *params))


def event_seq(appended: Rows, run_id: str) -> int:
    """The ``seq`` :func:`append_event` gave; :class:`UnknownRun` if there is no such run."""
    row = appended.fetchone()
    if row is None:
        raise UnknownRun(f"no run {run_id!r}")
    return int(row[0])


def _require(exists: Rows, run_id: str) -> None:
    if exists.fetchone() is None:
        raise UnknownRun(f"no run {run_id!r}")
