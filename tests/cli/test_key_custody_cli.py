"""With a shared broker, a command signs only with a key its host already holds and makes none:
`token proof`, `revoke` and `token inspect` on a host without the key (the ci host) are one line
naming the key and the command that makes it, and leave no private key behind. And a key
`keys revoke` removed is refused by `keys register` for good."""

from __future__ import annotations

import json
from pathlib import Path

from _cli import Result, clean_env, infrabot

DISTRIBUTED = "redis://127.0.0.1:1/0"


def ci_host(tmp_path: Path) -> Path:
    state = tmp_path / "ci"
    state.mkdir(mode=0o700)
    (state / "endpoints.json").write_text(json.dumps({"auth": "http://127.0.0.1:1"}))
    return state


def test_commands_on_a_host_without_keys_make_none(tmp_path: Path) -> None:
    state = ci_host(tmp_path)
    env = clean_env(INFRABOT_BROKER_URL=DISTRIBUTED, INFRABOT_STATE_DIR=str(state))
    proof = infrabot("token", "proof", "agent:argocd", env=env)
    assert proof.error_line() == (
        f"no DPoP key for agent:argocd in {state / 'keys' / 'dpop'}: a worker of agent:argocd "
        f"makes it as it starts (`infrabot worker -Q QUEUE --state-dir {state}`): run this "
        "command on that worker's host")
    orchestrator = (f"no key for client:orchestrator in {state / 'keys' / 'clients'}: "
                    "`infrabot serve` makes it in its state directory: run this command on "
                    "serve's host, with --state-dir that directory")
    assert infrabot("revoke", "--jti", "abcdefgh12345678", env=env).error_line() == \
        orchestrator
    assert infrabot("token", "user", "user:sam", env=env).error_line() == orchestrator
    assert sorted(str(p.relative_to(state)) for p in state.rglob("*.pem")) == []


def test_token_user_with_no_running_system_makes_no_key_on_a_host_without_them(
        tmp_path: Path) -> None:
    state = tmp_path / "ci"
    state.mkdir(mode=0o700)  # no endpoints.json: no system running from here
    env = clean_env(INFRABOT_BROKER_URL=DISTRIBUTED, INFRABOT_STATE_DIR=str(state))
    assert infrabot("token", "user", "user:sam", env=env).error_line() == (
        f"no key for client:orchestrator in {state / 'keys' / 'clients'}: `infrabot serve` "
        "makes it in its state directory: run this command on serve's host, with --state-dir "
        "that directory")
    assert sorted(str(p.relative_to(state)) for p in state.rglob("*.pem")) == []


def test_embedded_a_proof_still_makes_the_key_it_signs_with(tmp_path: Path) -> None:
    state = ci_host(tmp_path)
    env = clean_env(INFRABOT_STATE_DIR=str(state))
    assert infrabot("token", "proof", "agent:argocd", env=env).ok().stdout.count(".") == 2
    assert (state / "keys" / "dpop" / "agent_argocd.pem").exists()


def test_a_revoked_key_is_never_registered_again(tmp_path: Path) -> None:
    server, host = tmp_path / "server", tmp_path / "host"
    env = clean_env()
    jwks = tmp_path / "argocd.jwks"
    jwks.write_text(infrabot("keys", "init", "agent:argocd", "--state-dir", str(host),
                             env=env).ok().stdout)
    kid = json.loads(jwks.read_text())["keys"][0]["kid"]

    def keys(*args: str) -> Result:
        return infrabot("keys", *args, "--state-dir", str(server), env=env)

    keys("register", "agent:argocd", "--jwks", str(jwks)).ok()
    keys("revoke", "agent:argocd", kid).ok()
    for client in ("agent:argocd", "agent:cleanup"):
        refused = keys("register", client, "--jwks", str(jwks))
        assert refused.error_line() == (
            f"refused: key {kid} was revoked (for agent:argocd) and is never registered "
            "again; make a new key")
    [listed] = keys("list", "--json").ok().json()  # type: ignore[misc]
    assert (listed["client_id"], listed["kid"], set(listed)) == (
        "agent:argocd", kid, {"client_id", "kid", "revoked"})
