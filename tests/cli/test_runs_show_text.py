"""`runs show` shows what the run log holds as text: an agent name or a hand-off's `for` that
holds terminal escapes or a bidi override is printed escaped, in the table and in the
delegation-chain lines under it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from _cli import clean_env, infrabot

from orchestrator.runs import RunStore
from tests._events import detail

RECORD = {"delegator_id": "agent:infrabot", "delegatee_id": "agent:argocd",
          "delegation_timestamp": 1, "run_id": "run-1", "parent_jti": "abcdefgh12",
          "scope": "urn:infra:repo:read"}


def test_runs_show_prints_hostile_text_escaped(tmp_path: Path) -> None:
    origin = SimpleNamespace(user="user:sam", trigger="ci_pipeline", environment="prod",
                             repository="acme/x", commit="abc", service="x", pr=None)
    with RunStore(tmp_path / "runs.sqlite3") as runs:
        runs.create("run-1", workflow="post-deploy", event=origin)
        runs.add_event("run-1", "agent:argocd\x1b[2J", detail(
            "exchanged", **{"for": "x\u202eyllA"},
            claims={"sub": "user:sam", "delegation_chain": [RECORD]}))
    shown = infrabot("runs", "show", "run-1", "--state-dir", str(tmp_path),
                     env=clean_env(COLUMNS="200")).ok().stdout
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "delegation_chain (agent:argocd\\u001b[2J, x\\u202eyllA):" in shown
