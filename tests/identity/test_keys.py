"""Signing keys: RFC 7638 thumbprints, JWKS round trips and filtering, the on-disk key ring."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from orchestrator.errors import ConfigError, InvalidToken
from orchestrator.identity import JWKSet, TokenVerifier, VerifierPolicy, mint, thumbprint
from orchestrator.keystore import KeyRing, client_key

from .conftest import ALL_ALGS, ISSUER, NOW, Authority, b64

# RFC 7638 section 3.1.
RFC7638_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
         "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
         "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWh"
         "AI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def published(jwk: dict[str, Any], alg: str) -> dict[str, Any]:
    """A JWK as the issuer publishes it: kid is its thumbprint."""
    return {**jwk, "alg": alg, "use": "sig", "kid": thumbprint(jwk)}


def ec_jwk(curve: ec.EllipticCurve | None = None) -> dict[str, Any]:
    public = ec.generate_private_key(curve or ec.SECP256R1()).public_key()
    return ECAlgorithm.to_jwk(public, as_dict=True)


def rsa_jwk(bits: int = 2048) -> dict[str, Any]:
    public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return RSAAlgorithm.to_jwk(public, as_dict=True)


# --- RFC 7638 thumbprints ------------------------------------------------------------------------

def test_thumbprint_of_the_rfc7638_example_key() -> None:
    assert thumbprint(RFC7638_KEY) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members() -> None:
    required_only = {"kty": "RSA", "n": RFC7638_KEY["n"], "e": "AQAB"}
    assert thumbprint({**required_only, "use": "sig", "x5t": "x"}) == RFC7638_THUMBPRINT


def test_thumbprint_refuses_an_unknown_kty() -> None:
    with pytest.raises(ValueError):
        thumbprint({"kty": "oct", "k": "c2VjcmV0"})


# --- JWKS round trips ----------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALL_ALGS)
def test_keys_round_trip_through_jwks(tmp_path: Path, alg: str) -> None:
    ring = KeyRing.open(tmp_path, alg, now=NOW)
    document = json.loads(json.dumps(ring.jwks().to_dict()))
    parsed = JWKSet.from_dict(document, ALL_ALGS)
    key = parsed.get(ring.current.kid)
    assert key is not None
    assert parsed.kids() == [ring.current.kid]
    assert key.alg == alg
    assert key.kid == thumbprint(key.jwk)
    assert key.jwk == ring.current.public.jwk
    assert _PRIVATE_MEMBERS.isdisjoint(key.jwk)


_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_a_key_from_a_published_jwks_verifies_what_the_ring_signs(
        tmp_path: Path, alg: str, authority: Authority) -> None:
    ring = KeyRing.open(tmp_path, alg, now=NOW)
    keys = JWKSet.from_dict(json.loads(json.dumps(ring.jwks().to_dict())), ALL_ALGS)
    verifier = TokenVerifier(keys, VerifierPolicy(issuer=ISSUER, allowed_algs=ALL_ALGS))
    token = mint(authority.root().claims, ring.current)
    assert verifier.verify(token, audience=ISSUER, now=NOW).kid == ring.current.kid


def test_jwks_from_dict_keeps_only_allowed_algorithms(tmp_path: Path) -> None:
    es = KeyRing.open(tmp_path / "es", "ES256", now=NOW).current.public.jwk
    ed = KeyRing.open(tmp_path / "ed", "EdDSA", now=NOW).current.public.jwk
    parsed = JWKSet.from_dict({"keys": [es, ed]}, ("EdDSA",))
    assert parsed.kids() == [ed["kid"]]


@pytest.mark.parametrize("document", [None, [], "keys", {}, {"keys": {}}, {"keys": "x"}])
def test_jwks_from_dict_refuses_a_document_that_is_not_a_jwks(document: object) -> None:
    with pytest.raises(ValueError):
        JWKSet.from_dict(document, ALL_ALGS)


def _rsa_private_jwk() -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private, as_dict=True)
    return {**jwk, "alg": "RS256", "kid": thumbprint(jwk)}


def _x25519_as_eddsa() -> dict[str, Any]:
    public = x25519.X25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return published({"kty": "OKP", "crv": "X25519", "x": b64(raw)}, "EdDSA")


def _ed25519() -> dict[str, Any]:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return published(OKPAlgorithm.to_jwk(public, as_dict=True), "EdDSA")


REFUSED_JWKS: dict[str, Any] = {
    "private_rsa_members": _rsa_private_jwk,
    "private_d_on_ec": lambda: {**published(ec_jwk(), "ES256"), "d": "AAAA"},
    "symmetric_k": lambda: {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "x"},
    "wrong_kid": lambda: {**published(ec_jwk(), "ES256"), "kid": "not-the-thumbprint"},
    "missing_kid": lambda: {k: v for k, v in published(ec_jwk(), "ES256").items() if k != "kid"},
    "kid_of_another_key": lambda: {**published(ec_jwk(), "ES256"),
                                   "kid": thumbprint(ec_jwk())},
    "alg_not_allowed": lambda: published(ec_jwk(ec.SECP384R1()), "ES384"),
    "alg_missing": lambda: {k: v for k, v in published(ec_jwk(), "ES256").items() if k != "alg"},
    "kty_alg_mismatch_ec_as_rs256": lambda: published(ec_jwk(), "RS256"),
    "kty_alg_mismatch_rsa_as_es256": lambda: published(rsa_jwk(), "ES256"),
    "rsa_1024": lambda: published(rsa_jwk(1024), "RS256"),
    "p384_as_es256": lambda: published(ec_jwk(ec.SECP384R1()), "ES256"),
    "x25519_as_eddsa": _x25519_as_eddsa,
    "use_enc": lambda: {**published(ec_jwk(), "ES256"), "use": "enc"},
    "garbage_coordinates": lambda: {**published(ec_jwk(), "ES256"), "x": "!!!"},
    "not_an_object": lambda: "a string",
}


@pytest.mark.parametrize("make_jwk", REFUSED_JWKS.values(), ids=REFUSED_JWKS.keys())
def test_jwks_from_dict_drops_keys_that_must_not_be_used(make_jwk: Any) -> None:
    good = _ed25519()
    parsed = JWKSet.from_dict({"keys": [make_jwk(), good]}, (*ALL_ALGS, "ES384", "HS256"))
    assert parsed.kids() == [good["kid"]]


def test_jwks_from_dict_keeps_a_2048_bit_rsa_key() -> None:
    jwk = published(rsa_jwk(2048), "RS256")
    assert JWKSet.from_dict({"keys": [jwk]}, ALL_ALGS).kids() == [jwk["kid"]]


# --- the key ring on disk ------------------------------------------------------------------------

def test_key_ring_files_are_owner_only(key_dir: Path, ring: KeyRing) -> None:
    assert mode_of(key_dir / f"{ring.current.kid}.pem") == 0o600
    assert mode_of(key_dir / "keyring.json") == 0o600
    assert mode_of(key_dir) & 0o077 == 0


def test_key_ring_files_stay_owner_only_after_rotation(key_dir: Path, ring: KeyRing) -> None:
    new = ring.rotate(now=NOW + 10, keep_for_seconds=900)
    assert mode_of(key_dir / f"{new.kid}.pem") == 0o600
    assert mode_of(key_dir / "keyring.json") == 0o600


def test_reopening_the_key_ring_yields_the_same_key(key_dir: Path, ring: KeyRing) -> None:
    again = KeyRing.open(key_dir, "ES256", now=NOW + 60)
    assert again.current.kid == ring.current.kid
    assert again.jwks().kids() == [ring.current.kid]


def test_the_kid_is_the_thumbprint_of_the_public_key(ring: KeyRing) -> None:
    assert ring.current.kid == thumbprint(ring.current.public.jwk)


def test_rotation_keeps_the_old_public_key_until_its_retire_time(
        key_dir: Path, ring: KeyRing) -> None:
    old = ring.current
    new = ring.rotate(now=NOW + 100, keep_for_seconds=1000)
    assert new.kid != old.kid
    assert ring.current.kid == new.kid
    assert set(ring.jwks().kids()) == {old.kid, new.kid}
    ring.refresh(now=NOW + 1099)
    assert set(ring.jwks().kids()) == {old.kid, new.kid}
    ring.refresh(now=NOW + 1100)
    assert ring.jwks().kids() == [new.kid]


def test_a_token_signed_before_rotation_verifies_until_the_old_key_retires(
        authority: Authority) -> None:
    token = mint(authority.root().claims, authority.ring.current)
    authority.ring.rotate(now=NOW + 10, keep_for_seconds=900)
    assert authority.verify(token, now=NOW + 20).kid != authority.ring.current.kid
    authority.ring.refresh(now=NOW + 910)
    with pytest.raises(InvalidToken) as info:
        authority.verify(token, now=NOW + 20)
    assert info.value.reason == "unknown_kid"


def test_a_second_rotation_sets_no_new_retire_time_on_older_keys(ring: KeyRing) -> None:
    first = ring.current.kid
    second = ring.rotate(now=NOW + 10, keep_for_seconds=100).kid
    third = ring.rotate(now=NOW + 50, keep_for_seconds=1000).kid
    assert set(ring.jwks().kids()) == {first, second, third}
    ring.refresh(now=NOW + 110)
    assert set(ring.jwks().kids()) == {second, third}
    ring.refresh(now=NOW + 1050)
    assert ring.jwks().kids() == [third]


def test_another_key_ring_on_the_same_directory_sees_a_rotation_after_refresh(
        key_dir: Path, ring: KeyRing) -> None:
    other = KeyRing.open(key_dir, "ES256", now=NOW)
    old = ring.current.kid
    new = ring.rotate(now=NOW + 5, keep_for_seconds=600).kid
    assert other.current.kid == old
    other.refresh(now=NOW + 6)
    assert other.current.kid == new
    assert set(other.jwks().kids()) == {old, new}
    other.refresh(now=NOW + 605)
    assert other.jwks().kids() == [new]


def test_refresh_without_a_key_ring_is_a_config_error(key_dir: Path, ring: KeyRing) -> None:
    (key_dir / "keyring.json").unlink()
    with pytest.raises(ConfigError):
        ring.refresh(now=NOW)


def test_a_corrupt_key_ring_is_a_config_error(key_dir: Path, ring: KeyRing) -> None:
    (key_dir / "keyring.json").write_text("{not json")
    with pytest.raises(ConfigError):
        KeyRing.open(key_dir, "ES256", now=NOW)


def test_a_corrupt_private_key_is_a_config_error(key_dir: Path, ring: KeyRing) -> None:
    (key_dir / f"{ring.current.kid}.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(ConfigError) as info:
        KeyRing.open(key_dir, "ES256", now=NOW)
    assert "AAAA" not in str(info.value)


def test_an_unsupported_algorithm_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        KeyRing.open(tmp_path, "HS256", now=NOW)


def test_client_key_is_made_once_and_kept_owner_only(tmp_path: Path) -> None:
    first = client_key(tmp_path, "agent:argocd", "EdDSA")
    again = client_key(tmp_path, "agent:argocd", "ES256")
    assert again.kid == first.kid
    assert again.alg == "EdDSA"
    assert mode_of(tmp_path / "agent_argocd.pem") == 0o600
    assert client_key(tmp_path, "agent:cleanup", "EdDSA").kid != first.kid
