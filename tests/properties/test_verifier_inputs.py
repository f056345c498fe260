"""Properties of the verifier against any input (tests/identity/test_properties.py changes one
character to another base64url-ish one; these go further):

* flipping any bit of any byte of a valid token (signed with each allowed algorithm), cutting
  it anywhere, or dropping, doubling or swapping a segment, is refused with ``InvalidToken``;
* no input raises anything but the project's own errors (:class:`InfraBotError` subclasses):
  random text and random objects as the token; random JSON payloads and random JSON headers
  signed with the real key; a valid payload with any one claim replaced by random JSON. Such a
  token either verifies (and then its claims are the model's, re-checked) or is refused.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms

from orchestrator.errors import InfraBotError, InvalidToken
from orchestrator.identity import AccessClaims, SigningKey, TokenVerifier, VerifiedToken, mint
from orchestrator.identity._jws import canonical
from orchestrator.keystore import KeyRing

from ._world import ALGS, ISSUER, NOW, policy

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
CLAIMS = {
    "iss": ISSUER, "sub": "user:sam", "aud": ISSUER, "client_id": "agent:infrabot",
    "scope": "urn:infra:monitoring:read urn:infra:deploy:comment", "iat": NOW,
    "exp": NOW + 600, "jti": "jti-fuzz-00001", "act": {"sub": "agent:infrabot"},
    "may_act": {"sub": "agent:argocd"}, "user_version": 0, "ancestors": ["jti-root-00001"],
    "registry_epoch": "epoch-fuzz-0001",
    "ctx": {"trigger": "ci_pipeline", "environment": "prod", "repository": "acme/service-x",
            "commit": "9f2c1e7", "run_id": "run-0001"},
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=8)


@pytest.fixture(scope="module")
def rings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyRing]:
    return {alg: KeyRing.open(Path(tmp_path_factory.mktemp(alg)), alg, now=NOW) for alg in ALGS}


@pytest.fixture(scope="module")
def tokens(rings: dict[str, KeyRing]) -> dict[str, str]:
    claims = AccessClaims.model_validate(CLAIMS)
    return {alg: mint(claims, ring.current) for alg, ring in rings.items()}


def verify(ring: KeyRing, token: object, *, max_depth: int = 4) -> VerifiedToken:
    return TokenVerifier(ring.jwks(), policy(max_depth)).verify(token, audience=ISSUER, now=NOW)


def verify_or_project_error(ring: KeyRing, token: object) -> VerifiedToken | None:
    """Verified, or refused with one of the project's errors; anything else fails the test."""
    try:
        verified = verify(ring, token)
    except InfraBotError:
        return None
    assert AccessClaims.model_validate(verified.claims.model_dump()) == verified.claims
    return verified


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_raw(header: Any, payload: Any, key: SigningKey) -> str:
    """A JWS over any JSON header and payload, signed with the real key's algorithm."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = get_default_algorithms()[key.alg].sign(signing_input.encode(), key.private)
    return f"{signing_input}.{b64(canonical(key.alg, signature))}"


# -- any change to a valid token is refused -------------------------------------------------------

@PROPERTY
@given(data=st.data())
def test_flipping_any_bit_of_any_byte_is_refused(rings: dict[str, KeyRing],
                                                 tokens: dict[str, str],
                                                 data: st.DataObject) -> None:
    alg = data.draw(st.sampled_from(ALGS))
    raw = bytearray(tokens[alg].encode())
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(InvalidToken):
        verify(rings[alg], raw.decode("latin-1"))


@pytest.mark.parametrize("alg", ALGS)
def test_flipping_each_bit_of_each_segment_end_is_refused(rings: dict[str, KeyRing],
                                                          tokens: dict[str, str],
                                                          alg: str) -> None:
    """Exhaustively where a lax base64 decoder would ignore bits: around every segment edge."""
    token = tokens[alg]
    edges = {i for dot in [-1, *[i for i, c in enumerate(token) if c == "."], len(token)]
             for i in range(dot - 2, dot + 3) if 0 <= i < len(token)}
    for position in sorted(edges):
        for bit in range(8):
            raw = bytearray(token.encode())
            raw[position] ^= 1 << bit
            with pytest.raises(InvalidToken):
                verify(rings[alg], raw.decode("latin-1"))


@PROPERTY
@given(data=st.data())
def test_cutting_or_reassembling_a_token_is_refused(rings: dict[str, KeyRing],
                                                    tokens: dict[str, str],
                                                    data: st.DataObject) -> None:
    alg = data.draw(st.sampled_from(ALGS))
    token = tokens[alg]
    header, payload, signature = token.split(".")
    other = tokens[data.draw(st.sampled_from([a for a in ALGS if a != alg]))].split(".")
    elsewhere = b64(json.dumps({**CLAIMS, "scope": "urn:infra:secrets:manage"}).encode())
    forged = data.draw(st.sampled_from([
        token[:data.draw(st.integers(0, len(token) - 1))],
        token[data.draw(st.integers(1, len(token) - 1)):],
        f"{header}.{payload}", f"{header}.{payload}.{signature}.{signature}",
        f"{payload}.{header}.{signature}", f"{header}.{payload}.{other[2]}",
        f"{other[0]}.{payload}.{signature}", f"{header}.{elsewhere}.{signature}",
        f"{header}..{signature}", token + data.draw(st.text(min_size=1, max_size=3)),
    ]))
    with pytest.raises(InvalidToken):
        verify(rings[alg], forged)


# -- no input raises anything but the project's errors --------------------------------------------

@PROPERTY
@given(token=st.text(max_size=300) | st.binary(max_size=100) | json_values)
def test_random_text_and_objects_are_refused_with_the_projects_errors(
        rings: dict[str, KeyRing], token: object) -> None:
    assert verify_or_project_error(rings["ES256"], token) is None


@PROPERTY
@given(alg=st.sampled_from(ALGS), payload=json_objects | json_values)
def test_random_json_payloads_signed_with_the_real_key(rings: dict[str, KeyRing], alg: str,
                                                       payload: Any) -> None:
    key = rings[alg].current
    token = signed_raw({"alg": alg, "typ": "at+jwt", "kid": key.kid}, payload, key)
    assert verify_or_project_error(rings[alg], token) is None


@PROPERTY
@given(alg=st.sampled_from(ALGS), data=st.data())
def test_random_headers_over_a_valid_payload(rings: dict[str, KeyRing], alg: str,
                                             data: st.DataObject) -> None:
    key = rings[alg].current
    base = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
    header = data.draw(st.one_of(
        json_values,
        json_objects,
        st.builds(lambda extra: {**base, **extra}, json_objects),
        st.builds(lambda name, value: {**base, name: value},
                  st.sampled_from(["alg", "typ", "kid", "crit", "jwk", "jku", "x5c", "cty"]),
                  json_values)))
    verified = verify_or_project_error(rings[alg], signed_raw(header, CLAIMS, key))
    if verified is not None:  # only a header the verifier accepts: exactly alg, typ, kid
        assert isinstance(header, dict) and set(header) <= {"alg", "typ", "kid"}
        assert (header["alg"], header["kid"]) == (alg, key.kid)
        assert str(header["typ"]).lower() in ("at+jwt", "application/at+jwt")


@PROPERTY
@given(alg=st.sampled_from(ALGS), data=st.data())
def test_any_claim_replaced_by_random_json(rings: dict[str, KeyRing], alg: str,
                                           data: st.DataObject) -> None:
    key = rings[alg].current
    name = data.draw(st.sampled_from([*CLAIMS, "nbf", "revocation_url", "log_url", "extra"]))
    value = data.draw(json_values)
    payload = {**CLAIMS, name: value}
    header = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
    verified = verify_or_project_error(rings[alg], signed_raw(header, payload, key))
    if verified is not None:
        assert verified.claims.model_dump(mode="json", exclude_none=True) == \
            AccessClaims.model_validate(payload).model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize("name", ["exp", "iat"])
def test_a_null_required_time_is_invalid_claims(rings: dict[str, KeyRing], name: str) -> None:
    """Regression (found by the property above): ``"iat": null`` or ``"exp": null`` passed the
    required-claim check and then failed an internal assertion (a 500 at a service, a crash at
    the authorization server) instead of being refused."""
    key = rings["ES256"].current
    token = signed_raw({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, {**CLAIMS, name: None},
                       key)
    with pytest.raises(InvalidToken) as refused:
        verify(rings["ES256"], token)
    assert refused.value.reason == "invalid_claims"
