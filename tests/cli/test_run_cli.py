"""``infrabot run WORKFLOW --user-token FILE|-`` as a user types it, against ``infrabot serve``
trusting a stand-in Keycloak (its keys on a real JWKS endpoint on loopback)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import INFRABOT, clean_env, infrabot, serving

from tests._json_server import QuietHandler, answer, json_server
from tests.federation._idp import AUDIENCE, HEADERS, IdPServer, Vendor, keycloak_claims, rsa_key
from tests.federation.conftest import workflows_with


@pytest.fixture(scope="module")
def idp() -> Iterator[IdPServer]:
    with IdPServer([Vendor("keycloak", "keycloak/realms/acme", [rsa_key("kc-1")])]) as server:
        yield server


@pytest.fixture(scope="module")
def served(idp: IdPServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("run_cli")
    keycloak = {"issuer": idp.issuer("keycloak"), "profile": "keycloak",
                "discovery_url": idp.discovery_url("keycloak"), "audience": AUDIENCE,
                "roles": {"infra-checker": ["urn:infra:monitoring:read", "urn:infra:repo:read",
                                            "urn:infra:deploy:comment",
                                            "urn:infra:infrastructure:read"]}}
    workflows = workflows_with(tmp / "workflows", {"acme": keycloak})
    state = tmp / "state"
    state.mkdir()
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_WORKFLOWS_DIR=str(workflows))
    with serving(state, env):
        yield env


def token(idp: IdPServer, **kw: object) -> str:
    key = idp.vendors["keycloak"].keys[0]
    return key.sign(HEADERS["keycloak"](key), keycloak_claims(idp, roles=("infra-checker",),
                                                              **kw))


def test_run_from_a_token_file(idp: IdPServer, served: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "token.jwt"
    user_token = token(idp)
    path.write_text(user_token + "\n")
    result = infrabot("run", "manual-check", "--env", "staging", "--pr", "124", "--user-token",
                      str(path), env=served).ok()
    run_id = result.stdout.strip()
    assert run_id.startswith("run-") and user_token not in result.stdout + result.stderr
    shown = infrabot("runs", "show", run_id, env=served).ok()
    assert "succeeded" in shown.text and "user_request" in shown.text


def test_run_from_stdin_as_json(idp: IdPServer, served: dict[str, str]) -> None:
    done = subprocess.run([str(INFRABOT), "run", "manual-check", "--env", "staging", "--pr",
                           "124", "--user-token", "-", "--json"], input=token(idp),
                          env=served, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert '"status": "succeeded"' in done.stdout


def test_a_refused_token_is_one_line(idp: IdPServer, served: dict[str, str],
                                     tmp_path: Path) -> None:
    path = tmp_path / "token.jwt"
    path.write_text(token(idp, aud="api://another-api"))
    line = infrabot("run", "manual-check", "--env", "staging", "--user-token", str(path),
                    env=served).error_line()
    assert line == "refused (401 audience_mismatch): token is not meant for this audience"


def test_a_file_that_holds_no_token(served: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "empty.jwt"
    path.write_text("\n")
    line = infrabot("run", "manual-check", "--env", "staging", "--user-token", str(path),
                    env=served).error_line()
    assert line == f"{path} does not hold one token"


def test_no_run_log_is_one_line_and_nothing_is_sent(tmp_path: Path) -> None:
    """The run log is opened (read-only) before the run is asked for: one that serve has not
    made is one line, and no run is started that nothing here could follow."""
    posts: list[str] = []

    class Receiver(QuietHandler):
        def do_POST(self) -> None:
            posts.append(self.path)
            answer(self, 202, {"status": "accepted", "run_id": "run-0123456789abcdef"})

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = tmp_path / "user.jwt"
    path.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n")
    with json_server(Receiver) as url:
        (state / "endpoints.json").write_text(json.dumps({"auth": url, "webhooks": url}))
        line = infrabot("run", "manual-check", "--env", "staging", "--user-token", str(path),
                        env=clean_env(INFRABOT_STATE_DIR=str(state))).error_line()
    assert line == (f"no run log at {state / 'runs.sqlite3'}; start `infrabot serve` first (it "
                    "makes the run log), or set INFRABOT_DATABASE_URL to the database serve uses")
    assert posts == []
    assert not (state / "runs.sqlite3").exists()
