"""Clients' own key pairs on disk (``keys init``) and what a registration may contain: only public
signing keys, all or none, never private material."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from orchestrator.errors import ConfigError
from orchestrator.identity import (
    NotAPublicKeySet,
    PrivateKeyMaterial,
    generate_private_key,
    public_key_of,
    public_keys_to_register,
    thumbprint,
)
from orchestrator.keystore import client_key_path, init_client_key, load_client_key

ALGS = ("ES256", "RS256", "EdDSA")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def public_jwk(alg: str = "ES256") -> dict[str, Any]:
    return dict(public_key_of(generate_private_key(alg), alg).jwk)


def test_init_makes_an_owner_only_key_once_and_rotate_replaces_it(tmp_path: Path) -> None:
    where = tmp_path / "clients"
    first = init_client_key(where, "agent:argocd", "ES256")
    assert first.created and first.replaced is None
    assert mode_of(where) == 0o700
    assert mode_of(client_key_path(where, "agent:argocd")) == 0o600
    again = init_client_key(where, "agent:argocd", "EdDSA")
    assert not again.created and again.key.kid == first.key.kid and again.key.alg == "ES256"
    rotated = init_client_key(where, "agent:argocd", "ES256", rotate=True)
    assert rotated.created and rotated.replaced is not None
    assert rotated.replaced.kid == first.key.kid != rotated.key.kid
    loaded = load_client_key(where, "agent:argocd")
    assert loaded is not None and loaded.kid == rotated.key.kid
    assert mode_of(client_key_path(where, "agent:argocd")) == 0o600
    assert sorted(p.name for p in where.iterdir() if not p.name.startswith(".")) == [
        "agent_argocd.pem"]  # the old private key is gone, no public file is written


def test_a_missing_key_loads_as_none(tmp_path: Path) -> None:
    assert load_client_key(tmp_path, "agent:cleanup") is None


@pytest.mark.parametrize("client_id", ["../x", "agent:../../etc", "agent:a/b", "agent:",
                                       "user:sam", "agent:A", "agent:x\x00", "client:.hidden"])
def test_no_key_path_is_built_from_an_id_outside_the_directorys_form(tmp_path: Path,
                                                                     client_id: str) -> None:
    with pytest.raises(ConfigError, match="is not a client id"):
        client_key_path(tmp_path, client_id)
    with pytest.raises(ConfigError, match="is not a client id"):
        init_client_key(tmp_path, client_id, "ES256")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("alg", ALGS)
def test_a_public_set_registers_normalised(alg: str) -> None:
    jwk = {**public_jwk(alg), "key_ops": ["verify"], "x5u": "https://evil.example/k"}
    [key] = public_keys_to_register({"keys": [jwk]}, ALGS)
    assert key.alg == alg and key.kid == jwk["kid"]
    assert "x5u" not in key.jwk and "key_ops" not in key.jwk  # only the key's own members


def test_a_key_without_kid_gets_its_thumbprint() -> None:
    jwk = public_jwk()
    kid = jwk.pop("kid")
    [key] = public_keys_to_register({"keys": [jwk]}, ALGS)
    assert key.kid == kid == key.jwk["kid"]


def refusal(document: object, allowed: tuple[str, ...] = ALGS) -> str:
    with pytest.raises(NotAPublicKeySet) as caught:
        public_keys_to_register(document, allowed)
    assert type(caught.value) is NotAPublicKeySet
    return str(caught.value)


def test_what_is_not_a_public_key_set_is_refused_with_its_reason() -> None:
    good = public_jwk()
    assert refusal([good]) == 'a JWK Set is a JSON object with a "keys" array'
    assert refusal(good) == 'a JWK Set is a JSON object with a "keys" array'
    assert refusal({"keys": []}) == "the JWK Set has no keys"
    assert refusal({"keys": [good, "x"]}) == "key 1 is not a JSON object"
    assert refusal({"keys": [{**good, "alg": "HS256"}]}) == \
        "key 0: alg must be one of ES256, RS256, EdDSA"
    assert refusal({"keys": [good]}, ("EdDSA",)) == "key 0: alg must be one of EdDSA"
    assert refusal({"keys": [{**good, "kid": "mine"}]}) == \
        f"key 0: kid must be its RFC 7638 thumbprint {good['kid']}"
    assert refusal({"keys": [{k: v for k, v in good.items() if k != "y"}]}) == \
        "key 0 is not a valid ES256 public key"
    assert refusal({"keys": [{**good, "use": "enc"}]}) == \
        "key 0 is not a valid ES256 public signing key"
    point = {**good, "x": good["y"]}  # not on the curve
    point["kid"] = thumbprint(point)
    assert refusal({"keys": [point]}) == "key 0 is not a valid ES256 public signing key"


def test_small_rsa_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwk = public_key_of(small, "RS256").jwk
    assert refusal({"keys": [jwk]}) == "key 0 is not a valid RS256 public signing key"


@pytest.mark.parametrize("alg", ALGS)
def test_private_material_refuses_the_whole_set(alg: str) -> None:
    private = generate_private_key(alg)
    full = {"ES256": ECAlgorithm, "RS256": RSAAlgorithm, "EdDSA": OKPAlgorithm}[alg].to_jwk(
        private, as_dict=True)
    with pytest.raises(PrivateKeyMaterial, match=r"key 1 holds private key material \(d"):
        public_keys_to_register({"keys": [public_jwk(), {**full, "alg": alg}]}, ALGS)


def test_a_symmetric_key_is_private_material() -> None:
    with pytest.raises(PrivateKeyMaterial, match=r"\(k\)"):
        public_keys_to_register({"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]},
                                ALGS)
