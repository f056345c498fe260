"""Where a checkpointer keeps the anchor (docs/audit.md, "The anchor") is what its caller says,
never guessed from the key object: ``anchor_dir`` is a required argument, so a key stand-in
without a ``directory`` still anchors where it is told, a caller that wants no anchor says
``None``, and the process that writes the trail (``Stack.build``) keeps it beside the audit key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infrabot.stack import Stack
from orchestrator.audit import AuditKeys, AuditStore, Checkpointer
from orchestrator.audit._anchorfile import ANCHOR_FILE, read_anchor
from orchestrator.config import Settings
from orchestrator.identity import SigningKey
from tests.audit.conftest import record


class BareKeys:
    """The audit key and nothing else: no ``directory`` to take an anchor's place from."""

    def __init__(self, keys: AuditKeys) -> None:
        self._keys = keys

    def current(self) -> SigningKey:
        return self._keys.current()


@pytest.fixture
def keys(tmp_path: Path) -> AuditKeys:
    return AuditKeys.open(tmp_path / "keys" / "audit", "ES256", now=int(time.time()))


def _signed(store: AuditStore, checkpointer: Checkpointer) -> str:
    """Two records, then a checkpoint signed now: its JWS."""
    store.anchor_with(checkpointer)
    store.append(record(resource="r-0"))
    store.append(record(resource="r-1"))
    row = checkpointer.checkpoint("requested")
    assert row is not None
    return row.jws


def test_a_key_stand_in_anchors_where_its_caller_says(keys: AuditKeys, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    with AuditStore(tmp_path / "audit.sqlite3", writer="svc") as store:
        jws = _signed(store, Checkpointer(store, BareKeys(keys), anchor_dir=anchors,
                                          every_records=100, every_seconds=60, clock=time.time))
    assert read_anchor(anchors / ANCHOR_FILE) == jws
    assert not (keys.directory / ANCHOR_FILE).exists()  # only where it was told


def test_none_keeps_no_anchor_even_beside_a_key_directory(keys: AuditKeys,
                                                          tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.sqlite3", writer="svc") as store:
        _signed(store, Checkpointer(store, keys, anchor_dir=None, every_records=100,
                                    every_seconds=60, clock=time.time))
    assert list(tmp_path.rglob(ANCHOR_FILE)) == []


def test_the_anchor_directory_must_be_said(keys: AuditKeys, tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.sqlite3", writer="svc") as store, \
            pytest.raises(TypeError, match="anchor_dir"):
        Checkpointer(store, keys, every_records=100, every_seconds=60,  # type: ignore[call-arg]
                     clock=time.time)


def test_the_writers_process_keeps_the_anchor_beside_the_audit_key(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    stack = Stack.build(settings)
    try:
        assert stack.checkpointer is not None
        jws = _signed(stack.audit, stack.checkpointer)
    finally:
        stack.close()
    assert read_anchor(settings.audit_keys_dir / ANCHOR_FILE) == jws
