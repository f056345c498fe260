"""The hop journal: what each step of a hop did, recorded before and after it acts, so a
redelivered or retried hop does nothing twice (docs/journal.md).

One row per ``(run, agent, step)`` in the run log's ``journal`` table. A step is recorded
``started``, with its ``Idempotency-Key``, before its call, and gets its outcome after it:
``done`` (the service acted or answered), or a stop that ends the hop and the run: ``denied``,
``expired`` or ``failed``, with the reason the run ends with. A stop is final: a retried hop
reports the recorded stop again and never calls again. Where a hop picks up is the pure rule
of :mod:`orchestrator.runs._resume`: the first step without an outcome; if that step is
``started`` its outcome is in doubt (the hop stopped between the call and its recording), and
it is repeated only with the key recorded for it. Given the plan, it first compares each
record's action with the plan's at that step: a workflow changed while the run went on is never
resumed by step number.

A hand-off to the next agent is journaled under the *receiving* agent at step
:data:`DELIVERY_STEP` as a numbered generation: the sender takes generation ``n`` before it
publishes (``sending``), marks it ``sent`` after, and the receiving hop claims it
(``received``). A sender only publishes again while the last generation is ``sending`` (its
publication in doubt) and takes a new number to do so; a receiving hop proceeds only with the
generation the journal holds, so of two copies of a hand-off, exactly one is ever performed.
A fan-out's hand-offs take their generations together and are marked ``sent`` together, and
the first agent of a branch claims its own only once they are past doubt: a fork that stopped
between two publishes publishes the whole fan-out again (docs/graphs.md).

Every write is one short transaction of the run log, on SQLite or PostgreSQL
(:mod:`orchestrator.db`); the SQL is portable (``INSERT ... ON CONFLICT``, conditional
``UPDATE``). Every write takes the run's lock first, so a step's record changes only in one
transaction of the run at a time: an outcome's event is inserted on the condition its ``UPDATE``
checks, just before it, and both see the same record. Results are read after the transaction
ends, so on PostgreSQL every read and write of the journal is one round trip, ``COMMIT``
included. On PostgreSQL (READ COMMITTED) a conditional ``UPDATE`` or upsert of a row another
transaction is changing waits for it and re-checks its condition on the committed row, so two
copies of a hop still agree on one outcome; events are numbered under the run's lock
(:func:`~orchestrator.runs._store.append_event`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from orchestrator.db import Rows, Transaction
from orchestrator.errors import InfraBotError
from orchestrator.runs._events import EventDetail, detail_json
from orchestrator.runs._model import check_text
from orchestrator.runs._resume import StepRecord, StepState, Stop, idempotency_key
from orchestrator.runs._schema import format_time
from orchestrator.runs._store import RunStore, append_event

DeliveryState = Literal["sending", "sent", "received"]
Claim = Literal["claimed", "waiting", "stale"]  # a branch's first hop and its hand-off
DELIVERY_STEP = -1
_COLUMNS = "step, action, state, idempotency_key, reason, attempts"
_STEP = "SELECT 1 FROM journal WHERE run_id = ? AND agent = ? AND step = ?"
_INSERT = ("INSERT INTO journal (run_id, agent, step, action, state, idempotency_key, reason, "
           "attempts, updated_at) ")
# A step's first attempt, or one more while its record is still in the state it is inserted in.
_ANOTHER_ATTEMPT = ("ON CONFLICT (run_id, agent, step) DO UPDATE SET attempts = journal.attempts "
                    "+ 1, updated_at = excluded.updated_at WHERE journal.state = excluded.state")
# A hand-off published with others (``others``, a fan-out's, itself included) past doubt: one of
# them ``sent`` or ``received``, so the copies published are the ones performed.
_PAST_DOUBT = ("EXISTS (SELECT 1 FROM journal WHERE run_id = ? AND step = ? AND state <> "
               "'sending' AND agent IN ({others}))")
# A hand-off's first generation, or the next while it is in doubt (sending), unless it is past
# doubt: one row per target, all or none of them.
_SEND = (_INSERT + "SELECT ?, ?, ?, ?, ?, ?, NULL, 1, ? WHERE NOT " + _PAST_DOUBT + " "
         + _ANOTHER_ATTEMPT)


class HopJournal:
    """The journal on a run log (:class:`RunStore`), sharing its file and transactions."""

    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    def steps(self, run_id: str, agent: str) -> dict[int, StepRecord]:
        """Every journaled step of ``agent``'s hop of the run, by step number."""
        with self._runs._read() as tx:
            rows = tx.execute(f"SELECT {_COLUMNS} FROM journal WHERE run_id = ? AND agent = ? "
                              "AND step >= 0", (run_id, agent))
        return {row[0]: StepRecord(*row) for row in rows.fetchall()}

    def start(self, run_id: str, agent: str, step: int, action: str) -> StepRecord:
        """Record the step as started (again, if it is in doubt) before its call; the record,
        whose key the call must carry. :class:`StepConflict` if it has an outcome already (a
        copy of this hop recorded it meanwhile)."""
        check_text("action", action)
        now = format_time(self._runs._clock())
        with self._runs._write() as tx:
            _attempt(tx, run_id, agent, step, action, "started", now)
            found = _one(tx, run_id, agent, step)
        record = _record(found)
        if not record.in_doubt:
            raise StepConflict(record)
        return record

    def finish(self, run_id: str, agent: str, step: int, state: StepState, *,
               reason: str | None, event: EventDetail) -> bool:
        """Record a started step's outcome and its run-log event in one transaction; False
        (nothing written) if the step already had an outcome."""
        text = detail_json(event)
        check_text("reason", reason)
        now = format_time(self._runs._clock())
        with self._runs._write() as tx:
            append_event(tx, run_id, now, event.kind, agent, text, only_if=(
                f"AND EXISTS ({_STEP} AND state = 'started') ", (run_id, agent, step)))
            cursor = tx.execute(
                "UPDATE journal SET state = ?, reason = ?, updated_at = ? "
                "WHERE run_id = ? AND agent = ? AND step = ? AND state = 'started'",
                (state, reason, now, run_id, agent, step))
        return cursor.rowcount == 1

    def stop(self, run_id: str, agent: str, step: int, action: str, state: Stop, *,
             reason: str, event: EventDetail) -> StepRecord:
        """Record a step that ended the hop before its call (its exchange was refused) and the
        event, in one transaction, unless an outcome is recorded already; the record that
        stands (a retried hop reports it, whatever it would be told now)."""
        text = detail_json(event)
        check_text("action", action)
        check_text("reason", reason)
        now = format_time(self._runs._clock())
        with self._runs._write() as tx:
            append_event(tx, run_id, now, event.kind, agent, text, only_if=(
                f"AND NOT EXISTS ({_STEP} AND state <> 'started') ", (run_id, agent, step)))
            tx.execute(
                _INSERT + "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?) "
                "ON CONFLICT (run_id, agent, step) DO UPDATE SET "
                "state = excluded.state, reason = excluded.reason, "
                "updated_at = excluded.updated_at WHERE journal.state = 'started'",
                (run_id, agent, step, action, state, idempotency_key(run_id, agent, step),
                 reason, now))
            found = _one(tx, run_id, agent, step)
        return _record(found)

    def send(self, run_id: str, to_agent: str) -> int | None:
        """Before publishing the hand-off to ``to_agent``: the generation to publish, or None if
        one was published already (``sent``) or taken by the receiving hop (``received``)."""
        generations = self.send_together(run_id, (to_agent,))
        return generations[0] if generations is not None else None

    def send_together(self, run_id: str, to_agents: Sequence[str]) -> list[int] | None:
        """Before publishing the hand-offs to ``to_agents`` together (a fan-out's branches): each
        one's generation, or None if any of them was published already (``sent``) or taken by
        its receiving hop (``received``). All or none: then no other moves to a new generation
        either, so the copies published together still hold (a sender retried after part of
        its fan-out was marked sent, or two copies of it at once, would otherwise leave a branch
        stale, never ended, and the join never sent)."""
        now = format_time(self._runs._clock())
        others = ", ".join("?" * len(to_agents))
        with self._runs._write() as tx:
            tx.lock(f"run:{run_id}")
            attempted = [tx.execute(_SEND.format(others=others), (
                run_id, agent, DELIVERY_STEP, "hand_off", "sending",
                idempotency_key(run_id, agent, DELIVERY_STEP), now, run_id, DELIVERY_STEP,
                *to_agents)) for agent in to_agents]
            found = [_one(tx, run_id, agent, DELIVERY_STEP) for agent in to_agents]
        if any(cursor.rowcount != 1 for cursor in attempted):
            return None
        return [_record(rows).attempts for rows in found]

    def sent(self, run_id: str, to_agent: str, generation: int) -> None:
        """After publishing generation ``generation``: it is no longer in doubt."""
        self._set_delivery(run_id, to_agent, generation, "sent", "state = 'sending'")

    def published(self, run_id: str, to_agent: str, generation: int) -> bool:
        """:meth:`sent`, and whether ``generation`` is still the hand-off's (``sent``, or
        ``received`` already by its hop); False if it was renewed meanwhile (a redelivery took
        the run's delivery over, :meth:`RunStore.take_over_started`): the copy published is
        stale and its hop does nothing."""
        return self.published_together(run_id, {to_agent: generation})

    def published_together(self, run_id: str, generations: Mapping[str, int]) -> bool:
        """:meth:`published` for a fan-out's hand-offs (agent: generation), in one transaction:
        all are marked ``sent`` at once, and a branch claims its own only then
        (:meth:`receive_branch`). False if they were renewed meanwhile (all or
        none are: :meth:`send_together`)."""
        now = format_time(self._runs._clock())
        with self._runs._write() as tx:
            tx.lock(f"run:{run_id}")
            for agent, generation in generations.items():
                _mark(tx, run_id, agent, generation, "sent", "state = 'sending'", now)
            found = {agent: _one(tx, run_id, agent, DELIVERY_STEP) for agent in generations}
        return all(_attempts(rows) == generations[agent] for agent, rows in found.items())

    def receive_branch(self, run_id: str, agent: str, generation: int,
                       heads: Sequence[str]) -> Claim:
        """:meth:`receive` for the first agent of a branch: it claims its hand-off only once its
        fan-out (``heads``, its own included) is past doubt. While every hand-off of it is still
        ``sending`` the fork may have stopped between two publishes, and its copy performed
        again must be free to publish the whole fan-out again under new generations
        (:meth:`send_together`; a branch claimed first would stop it, and the branch never
        published would never start). Once one is past doubt, none is published again: the copy
        given is the one to perform. ``waiting``: not yet; ``stale``: renewed, or none
        journaled."""
        now = format_time(self._runs._clock())
        with self._runs._write() as tx:
            tx.lock(f"run:{run_id}")
            claimed = _mark(tx, run_id, agent, generation, "received",
                            _PAST_DOUBT.format(others=", ".join("?" * len(heads))), now,
                            (run_id, DELIVERY_STEP, *heads))
            found = _one(tx, run_id, agent, DELIVERY_STEP)
        if claimed.rowcount == 1:
            return "claimed"
        return "waiting" if _attempts(found) == generation else "stale"

    def renewed(self, run_id: str, to_agent: str, generation: int) -> bool:
        """Whether the hand-off to ``to_agent`` was renewed past ``generation`` (its sender
        published it again, or a redelivery took the run over): a copy carrying ``generation``
        is stale, even once its hop is done. Never for generation 0, which no journal holds."""
        record = self.delivery(run_id, to_agent) if generation else None
        return record is not None and record.attempts != generation

    def receive(self, run_id: str, agent: str, generation: int) -> bool:
        """The receiving hop claims the hand-off it was given; False for a stale copy (the
        sender published a later generation, or none is journaled)."""
        return self._set_delivery(run_id, agent, generation, "received", "1 = 1")

    def delivery(self, run_id: str, agent: str) -> StepRecord | None:
        """The hand-off to ``agent``'s hop of the run, if one was journaled."""
        with self._runs._read() as tx:
            found = _one(tx, run_id, agent, DELIVERY_STEP)
        row = found.fetchone()
        return StepRecord(*row) if row is not None else None

    def _set_delivery(self, run_id: str, agent: str, generation: int, state: DeliveryState,
                      only_if: str) -> bool:
        now = format_time(self._runs._clock())
        with self._runs._write() as tx:
            tx.lock(f"run:{run_id}")
            cursor = _mark(tx, run_id, agent, generation, state, only_if, now)
        return cursor.rowcount == 1


class StepConflict(InfraBotError):
    """A step that was to be started has an outcome already: another copy of the hop (a
    duplicate delivery running at the same time) recorded it."""

    reason = "step_recorded"

    def __init__(self, record: StepRecord) -> None:
        super().__init__(f"step {record.step} is {record.state} already")
        self.record = record


def _attempt(tx: Transaction, run_id: str, agent: str, step: int, action: str,
             state: str, now: str) -> Rows:
    """Record a first attempt in ``state``, or one more while the record is still in it; its
    row count is 0 (nothing written) if the record has moved on."""
    tx.lock(f"run:{run_id}")
    return tx.execute(
        _INSERT + "VALUES (?, ?, ?, ?, ?, ?, NULL, 1, ?) " + _ANOTHER_ATTEMPT,
        (run_id, agent, step, action, state, idempotency_key(run_id, agent, step), now))


def _mark(tx: Transaction, run_id: str, agent: str, generation: int, state: DeliveryState,
          only_if: str, now: str, values: tuple[object, ...] = ()) -> Rows:
    """Move generation ``generation`` of the hand-off to ``agent`` to ``state``, if it is still
    the journal's and ``only_if`` (its parameters: ``values``) holds; its row count is 0
    otherwise."""
    return tx.execute(f"UPDATE journal SET state = ?, updated_at = ? WHERE run_id = ? AND "
                      f"agent = ? AND step = ? AND attempts = ? AND {only_if}",
                      (state, now, run_id, agent, DELIVERY_STEP, generation, *values))


def _one(tx: Transaction, run_id: str, agent: str, step: int) -> Rows:
    """The step's record, to read (:func:`_record`) once the transaction has ended."""
    return tx.execute(f"SELECT {_COLUMNS} FROM journal WHERE run_id = ? AND agent = ? "
                      "AND step = ?", (run_id, agent, step))


def _record(found: Rows) -> StepRecord:
    return StepRecord(*found.fetchone())


def _attempts(found: Rows) -> int | None:
    """The generation a hand-off's record holds (its ``attempts``), None if none is journaled."""
    row = found.fetchone()
    return StepRecord(*row).attempts if row is not None else None
