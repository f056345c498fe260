"""``infrabot audit verify`` on rows holding values of the wrong type or shape, and on a trusted
keys file nested too deep: one line and the documented exit status (4: nothing could be
checked; 1: tampering found), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import infrabot.cli._audit_verify as audit_verify
from infrabot.cli._audit import audit
from orchestrator.audit import public_document
from orchestrator.errors import ConfigError
from tests.audit.conftest import anchored_trail

EDITED_6 = "edited: writer svc seq 6 (record id 6): hash does not match the record content"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(audit, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """6 records of writer svc, anchored by checkpoints at seq 4 and 6."""
    state = tmp_path / "state"
    anchored_trail(state / "audit.sqlite3", state / "keys" / "audit")
    return state


@pytest.mark.parametrize(("sql", "why"), [
    ("UPDATE writers SET last_seq = 'six'", "writer head 'svc' is damaged"),
    ("INSERT INTO writers VALUES (X'41', 0, 'x')", "writer head b'A' is damaged"),
    ("UPDATE writers SET last_hash = X'00'", "writer head 'svc' is damaged"),
])
def test_a_writer_head_of_the_wrong_type_is_exit_4(state: Path, raw_db, sql: str,
                                                   why: str) -> None:
    db = state / "audit.sqlite3"
    with raw_db(db) as conn:
        conn.execute(sql)
    code, out, err = run("verify", "--state-dir", str(state))
    assert (code, out) == (4, "")
    assert err == (f"Error: {db}: damaged audit database: {why}: a column does not hold its "
                   "type\n")


@pytest.mark.parametrize("sql", [
    "UPDATE records SET service = X'64617461646f67' WHERE seq = 6",  # text column as a BLOB
    "UPDATE records SET jti = X'6a' WHERE seq = 6",  # a nullable one
    "UPDATE records SET status = X'c8' WHERE seq = 6",  # the integer one
    "UPDATE records SET context = '{\"a\": \"\\ud800\"}' WHERE seq = 6",  # no UTF-8 for it
])
def test_a_content_column_of_the_wrong_type_is_an_edited_record(state: Path, raw_db,
                                                                  sql: str) -> None:
    with raw_db(state / "audit.sqlite3") as conn:
        conn.execute(sql)
    code, out, err = run("verify", "--state-dir", str(state))
    assert code == 1
    assert out.splitlines()[1:] == [EDITED_6]
    assert err == "audit trail damaged: 1 problem (6 records from 1 writer, 2 checkpoints)\n"


@pytest.mark.parametrize("depth", [*range(900, 1000, 5), 100_000])
def test_a_json_column_nested_too_deep_is_an_edited_record(state: Path, raw_db,
                                                           depth: int) -> None:
    """Decoded in the snapshot but too deep to re-encode for the hash (or too deep to decode):
    the record is edited, whatever the stack depth where it is hashed."""
    nested = "[" * depth + "]" * depth
    with raw_db(state / "audit.sqlite3") as conn:
        conn.execute("UPDATE records SET chain = ? WHERE seq = 6", (nested,))
    code, out, _ = run("verify", "--state-dir", str(state))
    assert code == 1
    assert out.splitlines()[1:] == [EDITED_6]


def test_damage_found_while_checking_is_one_line_exit_4(state: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a damaged database makes the check itself raise is exit 4, one line."""
    def broken(*args: object) -> None:
        raise TypeError("'<' not supported between instances of 'bytes' and 'str'")

    monkeypatch.setattr(audit_verify, "check_trail", broken)
    code, out, err = run("verify", "--state-dir", str(state))
    assert (code, out) == (4, "")
    assert err == (f"Error: {state / 'audit.sqlite3'}: damaged audit database: '<' not "
                   "supported between instances of 'bytes' and 'str'\n")


def test_a_keys_file_nested_too_deep_is_one_line_exit_4(state: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = run("verify", "--state-dir", str(state), "--keys", str(keys))
    assert (code, out) == (4, "")
    assert err == f"Error: cannot read audit keys {keys}: RecursionError\n"


def test_a_published_keys_file_nested_too_deep_is_a_config_error(tmp_path: Path) -> None:
    """What GET /audit/keys serves: a ConfigError (answered 404 no_audit_keys), not a crash."""
    keys = tmp_path / "audit-keys.json"
    keys.write_text("{\"keys\": " + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError) as caught:
        public_document(keys)
    assert str(caught.value) == f"cannot read audit keys {keys}: RecursionError"
