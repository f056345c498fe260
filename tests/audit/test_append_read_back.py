"""A batch whose connection was lost at its commit, and whose read-back cannot say whether it was
stored: the append raises ``ConnectionLost`` (it may be stored), never a plain ``Unavailable``
(which says it was not).

A fake database gives the faults in the order the tests need (a lost commit, then no connection
at all, as while a server restarts); tests/stores/test_connection_faults.py kills real
connections, where the order cannot be chosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from orchestrator.audit import AuditRecord, AuditStore
from orchestrator.audit._append import READ_BACK_ATTEMPTS, ChainWriter, prepare
from orchestrator.db import ConnectionLost, Dialect
from orchestrator.errors import Unavailable


class _Rows:
    rowcount = 0

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []


class _Tx:
    def lock(self, _name: str) -> None:
        return None

    def execute(self, _sql: str, _parameters: Any = ()) -> _Rows:
        return _Rows()

    def executemany(self, _sql: str, _rows: Any) -> _Rows:
        return _Rows()


class _Faulty:
    """The first transaction's connection is lost at its commit; each later one fails as
    ``later`` says."""

    dialect = Dialect.SQLITE  # every batch through the statements' transaction

    def __init__(self, later: type[Unavailable]) -> None:
        self.later, self.transactions = later, 0

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[_Tx]:
        self.transactions += 1
        if self.transactions > 1:
            raise self.later("audit database cannot be used", reason="audit_unavailable")
        yield _Tx()
        raise ConnectionLost("audit database cannot be used", reason="audit_unavailable")


def _content(make_record: Any) -> Any:
    record: AuditRecord = make_record()
    return prepare(record.content())


def test_no_connection_for_the_read_back_leaves_the_commit_unknown(make_record: Any) -> None:
    db = _Faulty(Unavailable)
    with pytest.raises(ConnectionLost, match="^audit database cannot be used$") as caught:
        ChainWriter(db, "w").write([_content(make_record)])  # type: ignore[arg-type]
    assert caught.value.reason == "audit_unavailable"
    assert db.transactions == 2  # no connection: not tried again


def test_a_read_back_lost_every_time_leaves_the_commit_unknown(make_record: Any) -> None:
    db = _Faulty(ConnectionLost)
    with pytest.raises(ConnectionLost, match="^audit database cannot be used$"):
        ChainWriter(db, "w").write([_content(make_record)])  # type: ignore[arg-type]
    assert db.transactions == 1 + READ_BACK_ATTEMPTS


@pytest.mark.parametrize("raised", [ConnectionLost, Unavailable])
def test_append_says_which_it_was(tmp_path: Any, make_record: Any, monkeypatch: Any,
                                  raised: type[Unavailable]) -> None:
    with AuditStore(tmp_path / "audit.sqlite3") as store:
        def submit(_item: object) -> None:
            raise raised("audit database cannot be used", reason="audit_unavailable")

        monkeypatch.setattr(store._group, "submit", submit)
        with pytest.raises(Unavailable, match="^audit store cannot be written$") as caught:
            store.append(make_record())
    assert type(caught.value) is raised and caught.value.reason == "audit_unavailable"
