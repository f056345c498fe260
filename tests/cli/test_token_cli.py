"""``infrabot token user|assertion|inspect`` as a user runs them: only the token on stdout (so
``$(...)`` captures it), everything human on stderr; inspect verifies against this state
directory's keys, shows the chain, and says why a token is refused; errors are one line."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import jwt
import pytest
from _cli import COMPACT_JWT, INFRABOT, Result, clean_env, infrabot, serving

from orchestrator.audit import contains_raw_jwt

NOT_CHECKED = "not checked: no running system and no Redis registry (set INFRABOT_REDIS_URL)"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return clean_env(INFRABOT_STATE_DIR=str(tmp_path_factory.mktemp("token") / "state"))


@pytest.fixture(scope="module")
def sam(env: dict[str, str]) -> Result:
    return infrabot("token", "user", "user:sam", "--env", "prod", "--trigger", "ci_pipeline",
                    env=env).ok()


def unverified(token: str) -> dict[str, object]:
    """The claims, decoded WITHOUT verification (the test only reads what was printed)."""
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_token_user_prints_only_the_token_on_stdout(sam: Result) -> None:
    lines = sam.stdout.splitlines()
    assert len(lines) == 1 and COMPACT_JWT.match(lines[0]), sam
    claims = unverified(lines[0])
    assert claims["sub"] == "user:sam"
    assert claims["may_act"] == {"sub": "agent:infrabot"}
    assert claims["ctx"] == {**claims["ctx"], "environment": "prod",  # type: ignore[dict-item]
                             "trigger": "ci_pipeline"}
    assert "urn:infra:deploy:create" in str(claims["scope"]).split()
    assert len(sam.stderr.splitlines()) == 1, sam
    assert sam.stderr.startswith("issued for user:sam: scope ")
    assert "expires in 900s, by this process (no running system; registry: this process only)" \
        in sam.stderr
    assert not contains_raw_jwt(sam.stderr)


def test_token_user_is_captured_by_command_substitution(env: dict[str, str]) -> None:
    script = 'T=$("$IB" token user user:sam 2>/dev/null) && "$IB" token inspect --json "$T"'
    done = subprocess.run(["bash", "-c", script], env={**env, "IB": str(INFRABOT)},
                          capture_output=True, text=True, timeout=60, check=False)
    result = Result(("bash", "-c", script), done.returncode, done.stdout, done.stderr)
    data = result.ok().json()
    assert isinstance(data, dict)
    assert data["valid"] is True
    assert data["chain"] == ["user:sam"]


def test_token_user_gets_the_scopes_asked_for_that_the_user_holds(env: dict[str, str]) -> None:
    result = infrabot("token", "user", "user:alex", "--scope", "repo:read", "--scope",
                      "urn:infra:monitoring:read", "--scope", "secrets:manage", env=env).ok()
    assert unverified(result.stdout.strip())["scope"] == \
        "urn:infra:monitoring:read urn:infra:repo:read"
    assert result.stderr.rstrip().endswith("; dropped urn:infra:secrets:manage")


def test_inspect_shows_validity_revocation_state_and_the_chain(env: dict[str, str],
                                                              sam: Result) -> None:
    result = infrabot("token", "inspect", sam.stdout.strip(), env=env).ok()
    assert result.stdout.startswith("valid: expires in ")
    assert NOT_CHECKED in result.text
    assert "user:sam (principal)" in result.stdout
    assert "may_act: sub=agent:infrabot" in result.stdout
    assert "ctx: trigger=ci_pipeline environment=prod repository=acme/service-x" in result.text
    assert "{" not in result.stdout  # no Python dict
    assert re.search(r"exp: \d+ \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", result.stdout)
    assert not contains_raw_jwt(result.stdout)


def test_inspect_json_is_valid_with_the_chain(env: dict[str, str], sam: Result) -> None:
    data = infrabot("token", "inspect", "--json", sam.stdout.strip(), env=env).ok().json()
    assert isinstance(data, dict)
    assert data["valid"] is True and data["reason"] == "ok"
    assert data["chain"] == ["user:sam"]
    assert data["claims"]["sub"] == "user:sam"
    assert 0 < data["expires_in"] <= 900
    assert data["revocation"] == NOT_CHECKED


def test_inspect_of_garbage_exits_1_with_the_reason(env: dict[str, str]) -> None:
    result = infrabot("token", "inspect", "garbage", env=env)
    assert result.returncode == 1, result
    result.no_traceback()
    assert result.stdout.startswith("invalid: malformed: token is not a compact JWS"), result
    data = infrabot("token", "inspect", "--json", "a.b.c", env=env).json()
    assert isinstance(data, dict)
    assert (data["valid"], data["reason"]) == (False, "malformed")


def test_inspect_of_a_tampered_token_is_a_bad_signature(env: dict[str, str], sam: Result) -> None:
    header, payload, signature = sam.stdout.strip().split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    result = infrabot("token", "inspect", f"{header}.{payload}.{flipped}", env=env)
    assert result.returncode == 1, result
    assert result.stdout.startswith("invalid: bad_signature: "), result


def test_inspect_shows_a_forged_token_s_claims_as_text_never_as_terminal_codes_or_markup(
        env: dict[str, str], sam: Result) -> None:
    """A refused token's claims are whatever its sender wrote: escape sequences, a bidi
    override, Rich markup (a link, a closing tag that would crash the render)."""
    header, _, signature = sam.stdout.strip().split(".")
    claims = {"sub": "[/bold][link=https://evil.example]user:sam\x1b]8;;x\x07[/link]",
              "act": {"sub": "agent:a\x1b[2J"}, "scope": "x\u202eyllA", "jti": "j\x1b[31m"}
    payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    result = infrabot("token", "inspect", f"{header}.{payload}.{signature}", env=env)
    assert result.returncode == 1, result
    result.no_traceback()
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert "[/bold][link=https://evil.example]user:sam\\u001b]8;;x\\u0007[/link]" \
        in result.stdout
    assert "acts: agent:a\\u001b[2J" in result.stdout
    assert "scope: x\\u202eyllA" in result.stdout


def test_inspect_of_claims_without_a_principal_prints_no_principal_line(
        env: dict[str, str], sam: Result) -> None:
    """A token of another type (a DPoP proof's claims: no sub, no act) shows its claims and no
    "None (principal)"; one with an act chain but no sub says the sub is missing."""
    _, _, signature = sam.stdout.strip().split(".")

    def encoded(part: dict[str, object]) -> str:
        return jwt.utils.base64url_encode(json.dumps(part).encode()).decode()

    header = encoded({"alg": "ES256", "typ": "dpop+jwt"})
    proof = encoded({"htm": "POST", "htu": "http://127.0.0.1:8700/token", "jti": "j1", "iat": 1})
    result = infrabot("token", "inspect", f"{header}.{proof}.{signature}", env=env)
    assert result.returncode == 1, result
    result.no_traceback()
    assert result.stdout == ("invalid: wrong_typ: typ must be at+jwt\n"
                             "claims below are UNVERIFIED\n"
                             "  jti: j1\n"), result
    acting = encoded({"act": {"sub": "agent:argocd"}, "jti": "j2"})
    result = infrabot("token", "inspect", f"{header}.{acting}.{signature}", env=env)
    assert result.stdout.splitlines()[2:] == ["(no sub claim) (principal)",
                                              "└── acts: agent:argocd", "  jti: j2"], result


def test_inspect_of_a_token_signed_in_another_state_dir_is_unknown_kid(
        env: dict[str, str], tmp_path: Path) -> None:
    other = clean_env(INFRABOT_STATE_DIR=str(tmp_path / "other"))
    foreign = infrabot("token", "user", "user:sam", env=other).ok().stdout.strip()
    result = infrabot("token", "inspect", foreign, env=env)
    assert result.returncode == 1, result
    result.no_traceback()
    assert result.stdout.startswith("invalid: unknown_kid: "), result
    assert "claims below are UNVERIFIED" in result.stdout


def test_token_user_for_an_unknown_user_is_one_error_line(env: dict[str, str]) -> None:
    result = infrabot("token", "user", "user:nobody", env=env)
    message = result.error_line()
    assert "unknown_user" in message and "user:nobody" in message
    assert result.stdout == ""


def test_token_assertion_prints_one_jwt_the_agent_signed(env: dict[str, str]) -> None:
    result = infrabot("token", "assertion", "agent:infrabot", "--ttl", "30", env=env).ok()
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and COMPACT_JWT.match(lines[0]), result
    claims = unverified(lines[0])
    assert claims["iss"] == claims["sub"] == "agent:infrabot"
    assert str(claims["aud"]).endswith("/token")
    assert claims["exp"] - claims["iat"] == 30  # type: ignore[operator]
    assert jwt.get_unverified_header(lines[0])["kid"]


def test_token_assertion_for_an_unknown_agent_is_one_error_line(env: dict[str, str]) -> None:
    result = infrabot("token", "assertion", "agent:nobody", env=env)
    assert result.error_line() == "agent:nobody is not an agent or client in the directory"
    assert result.stdout == ""


def test_inspect_with_a_running_system_that_does_not_answer_is_invalid(
        tmp_path: Path) -> None:
    """endpoints.json names a system (it was killed and left it behind): the registry is in that
    system's process, so an unanswered introspection is a refusal, never 'not revoked'."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "state"
    env = clean_env(INFRABOT_STATE_DIR=str(state), INFRABOT_AUTH_PORT=str(port))
    token = infrabot("token", "user", "user:sam", env=env).ok().stdout.strip()
    (state / "endpoints.json").write_text(json.dumps({"auth": f"http://127.0.0.1:{port}"}))
    result = infrabot("token", "inspect", "--json", token, env=env)
    assert result.returncode == 1, result
    data = result.json()
    assert isinstance(data, dict)
    assert (data["valid"], data["reason"]) == (False, "revocation_unavailable")
    assert data["revocation"] == "unavailable: treated as invalid"


def test_inspect_after_its_server_stopped_says_so(tmp_path: Path) -> None:
    """A token of a server that ran on ports the OS chose, inspected once it has stopped: not
    an unexplained issuer_mismatch, but what happened."""
    state = tmp_path / "state"
    state.mkdir()
    env = clean_env(INFRABOT_STATE_DIR=str(state))
    with serving(state, env) as urls:
        token_value = infrabot("token", "user", "sam", env=env).ok().stdout.strip()
    result = infrabot("token", "inspect", token_value, env=env)
    assert result.returncode == 1, result
    result.no_traceback()
    assert result.text.startswith(f"invalid: issuer_not_running: issued by {urls['auth']}, a server of this "
                     "state directory that is not running any more (no server runs from this "
                     "state directory now); tokens are checked only while their issuer runs, "
                     "or with INFRABOT_ISSUER set to it"), result
