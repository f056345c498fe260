"""``infrabot keys init|register|list|revoke`` and the worker's key check, as subprocesses: the
pinned commands, their exact lines, file modes, and every bad input as one line."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _cli import Result, clean_env, infrabot
from jwt.algorithms import ECAlgorithm

from orchestrator.identity import generate_private_key
from orchestrator.keystore import write_private

DIRECTORY = Path(__file__).resolve().parents[2] / "workflows" / "directory.yaml"
REGISTER_ONLY = "register only the public JWK Set that `infrabot keys init` prints"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def keys(state: Path, *args: str) -> Result:
    return infrabot("keys", *args, "--state-dir", str(state), env=clean_env())


def test_init_prints_only_the_public_set_and_keeps_the_key(tmp_path: Path) -> None:
    host = tmp_path / "argocd-host"
    first = keys(host, "init", "agent:argocd").ok()
    document = first.json()
    assert isinstance(document, dict) and list(document) == ["keys"]
    [jwk] = document["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    kid = jwk["kid"]
    where = host / "keys" / "clients"
    assert first.stderr == f"created key {kid} for agent:argocd in {where}\n"
    assert [p.name for p in where.glob("*.pem")] == ["agent_argocd.pem"]
    assert mode(where / "agent_argocd.pem") == 0o600
    assert mode(host) == mode(host / "keys") == mode(where) == 0o700

    again = keys(host, "init", "agent:argocd").ok()
    assert again.json() == document
    assert again.stderr == f"kept the existing key {kid} for agent:argocd (--rotate replaces " \
                           "it)\n"

    rotated = keys(host, "init", "agent:argocd", "--rotate").ok()
    [new] = rotated.json()["keys"]  # type: ignore[index]
    assert new["kid"] != kid
    assert rotated.stderr == (
        f"rotated agent:argocd: new key {new['kid']} replaces {kid} in {where}; register the "
        f"new key, restart the worker, then `infrabot keys revoke agent:argocd {kid}`\n")
    assert [p.name for p in where.glob("*.pem")] == ["agent_argocd.pem"]


def test_init_tightens_a_loose_state_directory(tmp_path: Path) -> None:
    host = tmp_path / "loose"
    host.mkdir(mode=0o755)
    host.chmod(0o755)
    keys(host, "init", "agent:cleanup").ok()
    assert mode(host) == 0o700


def test_register_list_revoke(tmp_path: Path) -> None:
    server, host = tmp_path / "server", tmp_path / "host"
    jwks = tmp_path / "argocd.jwks"
    jwks.write_text(keys(host, "init", "agent:argocd").ok().stdout)
    kid = json.loads(jwks.read_text())["keys"][0]["kid"]

    server.mkdir(mode=0o700)  # where the server runs: `keys list` only reads, makes none
    assert keys(server, "list").ok().stderr == "no keys registered\n"
    assert keys(server, "register", "agent:argocd", "--jwks", str(jwks)).ok().stdout == \
        f"registered: agent:argocd {kid} ES256\n"
    assert keys(server, "register", "agent:argocd", "--jwks", str(jwks)).ok().stdout == \
        f"already registered: agent:argocd {kid} ES256\n"
    assert mode(server / "keys" / "client_registry.json") == 0o600
    assert list(server.rglob("*.pem")) == []  # the server got no private key

    table = keys(server, "list").ok().stdout.splitlines()
    assert table[0].split() == ["client", "kid", "alg", "added"]
    [row] = table[1:]
    client, listed_kid, alg, added = row.split()
    assert (client, listed_kid, alg) == ("agent:argocd", kid, "ES256")
    assert added.endswith("Z") and added[:2] == "20"
    assert keys(server, "list", "--json").ok().json() == [
        {"client_id": "agent:argocd", "kid": kid, "alg": "ES256", "added": added}]

    taken = keys(server, "register", "agent:cleanup", "--jwks", str(jwks))
    assert taken.error_line() == (f"refused: key {kid} is already registered for agent:argocd; "
                                  "each client needs a key of its own")

    assert keys(server, "revoke", "agent:argocd", kid).ok().stdout == (
        f"revoked agent:argocd {kid}: assertions signed with it are refused (invalid_client)\n")
    assert keys(server, "revoke", "agent:argocd", kid).error_line() == \
        f"no key '{kid}' is registered for 'agent:argocd'"
    [revoked] = keys(server, "list", "--json").ok().json()  # type: ignore[misc]
    assert (revoked["client_id"], revoked["kid"], set(revoked)) == (
        "agent:argocd", kid, {"client_id", "kid", "revoked"})


def test_list_in_a_missing_state_directory_is_one_line_and_makes_none(tmp_path: Path) -> None:
    typo = tmp_path / "sever"
    for args in (("list",), ("list", "--json")):
        result = keys(typo, *args)
        assert result.returncode == 1, result
        assert result.error_line() == (
            f"no such state directory: {typo} (where `infrabot serve` or `infrabot demo` ran; "
            "--state-dir or INFRABOT_STATE_DIR)")
        assert result.stdout == ""
    assert not typo.exists()


def test_revoke_takes_a_kid_that_begins_with_a_dash(tmp_path: Path) -> None:
    # base64url thumbprints begin with "-" one time in 64 (this failed CI once)
    keys(tmp_path, "list").ok()
    assert keys(tmp_path, "revoke", "agent:argocd", "-khi0xJXa-K3DexuHN7IohFO7Qi").error_line() == \
        "no key '-khi0xJXa-K3DexuHN7IohFO7Qi' is registered for 'agent:argocd'"


BAD_FILES = ("pem", "private-jwk", "not-json", "one-key", "empty", "hs256", "huge")


def _write_bad_files(root: Path) -> None:
    """The files the bad cases name, in ``root`` (made by the fixture, never at collection:
    two pytest workers collect at once)."""
    private = generate_private_key("ES256")
    full = ECAlgorithm.to_jwk(private, as_dict=True)
    write_private(root / "key.pem", private)
    files = {
        "pem": (root / "key.pem").read_bytes(),
        "private-jwk": json.dumps({"keys": [{**full, "alg": "ES256"}]}).encode(),
        "not-json": b"keys: [1, 2]\n",
        "one-key": json.dumps({"kty": "EC"}).encode(),
        "empty": b'{"keys": []}',
        "hs256": json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]}).encode(),
        "huge": b" " * (64 * 1024 + 1),
    }
    assert tuple(files) == BAD_FILES
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (root / name).write_bytes(content)


def bad_cases(root: Path) -> dict[str, tuple[tuple[str, ...], str]]:
    """Each case's arguments and error line; the files they name are in ``root / "files"``
    (:func:`_write_bad_files`). Writes nothing: the test's parameters are its names."""
    f = {name: root / "files" / name for name in BAD_FILES}
    init_unknown = {f"init {cid}": (("init", cid),
                                    (f"unknown client {cid!r}: not an agent or client in "
                                    f"{DIRECTORY}"))
                    for cid in ("../x", "agent:../../etc", "agent:nobody", "user:sam")}
    register_unknown = {f"register {cid}": (("register", cid, "--jwks", str(f["empty"])),
                                            (f"unknown client {cid!r}: not an agent or client "
                                            f"in {DIRECTORY}"))
                        for cid in ("../x", "agent:../../etc")}
    return {
        **init_unknown, **register_unknown,
        "a PEM private key": (("register", "agent:argocd", "--jwks", str(f["pem"])),
                              f"refused: {f['pem']} holds a private key; {REGISTER_ONLY}"),
        "a private JWK": (("register", "agent:argocd", "--jwks", str(f["private-jwk"])),
                          (f"refused: {f['private-jwk']}: key 0 holds private key material (d); "
                          f"{REGISTER_ONLY}")),
        "a symmetric key": (("register", "agent:argocd", "--jwks", str(f["hs256"])),
                            (f"refused: {f['hs256']}: key 0 holds private key material (k); "
                            f"{REGISTER_ONLY}")),
        "not JSON": (("register", "agent:argocd", "--jwks", str(f["not-json"])),
                     f"{f['not-json']} is not a public JWK Set: not JSON"),
        "a lone JWK": (("register", "agent:argocd", "--jwks", str(f["one-key"])),
                       (f"{f['one-key']} is not a public JWK Set: a JWK Set is a JSON object "
                       'with a "keys" array')),
        "no keys": (("register", "agent:argocd", "--jwks", str(f["empty"])),
                    f"{f['empty']} is not a public JWK Set: the JWK Set has no keys"),
        "too large": (("register", "agent:argocd", "--jwks", str(f["huge"])),
                      f"{f['huge']} is not a public JWK Set: larger than 65536 bytes"),
        "missing file": (("register", "agent:argocd", "--jwks", str(root / "nope.jwks")),
                         f"cannot read {root / 'nope.jwks'}: No such file or directory"),
        "revoke unknown": (("revoke", "agent:argocd", "nokid"),
                           "no key 'nokid' is registered for 'agent:argocd'"),
        "revoke path-like": (("revoke", "agent:../../etc", "nokid"),
                             "no key 'nokid' is registered for 'agent:../../etc'"),
    }


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Result, Path]]:
    root = tmp_path_factory.mktemp("bad-keys")
    _write_bad_files(root / "files")
    cases = bad_cases(root)

    def run(name: str) -> tuple[str, Result, Path]:
        args, expected = cases[name]
        state = root / "states" / name.replace(" ", "-").replace("/", "_").replace(":", "_")
        state.mkdir(parents=True)  # `keys revoke` refuses a missing one (a mistyped path)
        return expected, keys(state, *args), state

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(cases, pool.map(run, cases), strict=True))


@pytest.mark.parametrize("name", sorted(bad_cases(Path("/unused"))))
def test_bad_input_is_one_line(bad_results: dict[str, tuple[str, Result, Path]],
                               name: str) -> None:
    expected, result, state = bad_results[name]
    assert result.returncode == 1, result
    assert result.error_line() == expected, result
    assert result.stdout == "", result
    assert list(state.rglob("*.pem")) == [] and list(state.rglob("*.json")) == []


def test_a_damaged_registry_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(parents=True)
    (tmp_path / "keys" / "client_registry.json").write_text("{damaged")
    assert keys(tmp_path, "list").error_line() == (
        f"bad_configuration: the client registry {tmp_path / 'keys' / 'client_registry.json'} "
        "is damaged (not the JSON infrabot writes)")


def test_a_worker_without_its_agents_key_exits_at_once(tmp_path: Path) -> None:
    state = tmp_path / "argocd-host"
    env = clean_env(INFRABOT_BROKER_URL="redis://127.0.0.1:1/0")
    result = infrabot("worker", "-Q", "argocd", "--state-dir", str(state), env=env, timeout=30)
    assert result.error_line() == (
        f"no key for agent:argocd in {state / 'keys' / 'clients'}: create it with `infrabot keys "
        f"init agent:argocd --state-dir {state}`, then register its public key at the "
        "authorization server (`infrabot keys register agent:argocd --jwks FILE`)")
    keys(state, "init", "agent:argocd").ok()
    other = infrabot("worker", "-Q", "argocd,cleanup", "--state-dir", str(state), env=env,
                     timeout=30)
    assert other.error_line().startswith("no key for agent:cleanup in ")


def test_an_unwritable_key_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(parents=True)
    (tmp_path / "keys" / "clients").write_text("a file where the key directory belongs")
    assert keys(tmp_path, "init", "agent:argocd").error_line() == (
        f"cannot write agent:argocd's key in {tmp_path / 'keys' / 'clients'}: File exists")
    (tmp_path / "keys" / "client_registry.json").mkdir()
    assert keys(tmp_path, "revoke", "agent:argocd", "x").error_line() == (
        f"bad_configuration: cannot read the client registry "
        f"{tmp_path / 'keys' / 'client_registry.json'}: Is a directory")
