"""The compact-JWS layer (PyJWT's codec under the one verifier) decodes a segment exactly when
PyJWT's own decoder does and signs exactly as ``jwt.encode`` does; the assertion check built on
it refuses what it refused through PyJWT, with the same reasons."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError

from orchestrator.errors import InvalidClient
from orchestrator.identity import AssertionPolicy, PublicKey, make_assertion, verify_assertion
from orchestrator.identity._jws import MalformedJWS, decode, sign
from orchestrator.identity._keys import generate_private_key, signing_key_of

from ._twins import twin
from .conftest import sign_raw

KEY = signing_key_of(generate_private_key("ES256"), "ES256")
AUD = "http://127.0.0.1:8700/token"
POLICY = AssertionPolicy(audiences=frozenset({AUD}), allowed_algs=("ES256",), leeway=5,
                         max_lifetime=300)
CLIENT = "agent:infrabot"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def pyjwt_decodes(segment: str) -> bool:
    try:
        PyJWS._decode_base64url_segment(segment.encode(), "segment")
    except DecodeError:
        return False
    return True


def decoded_signature(segment: str) -> bytes | None:
    """The signature segment as the verifier's codec decodes it in a token, or None."""
    head, payload, _ = make_assertion(KEY, issuer=CLIENT, subject=CLIENT, audience=AUD,
                                      now=int(time.time())).split(".")
    try:
        return decode([head, payload, segment]).signature
    except MalformedJWS:
        return None


def test_segment_rule_is_pyjwts() -> None:
    """Over every one- and two-character segment and 5000 random ones: the codec decodes a
    segment exactly when PyJWT's decoder does, to the same bytes, and the verifier refuses a
    token carrying an undecodable one as malformed, not for its signature."""
    rng = random.Random(8693)
    segments = [*_ALPHABET, *(a + b for a in _ALPHABET for b in _ALPHABET)]
    segments += ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 64)))
                 for _ in range(5000)]
    head, payload, _ = make_assertion(KEY, issuer=CLIENT, subject=CLIENT, audience=AUD,
                                      now=int(time.time())).split(".")
    for segment in segments:
        ours = decoded_signature(segment)
        assert (ours is not None) == pyjwt_decodes(segment), segment
        if ours is not None:
            assert ours == PyJWS._decode_base64url_segment(segment.encode(), "segment")
        expected = "malformed_assertion" if ours is None else "assertion_bad_signature"
        assert reason(f"{head}.{payload}.{segment}") == expected, segment


@pytest.mark.parametrize("headers", [{"kid": KEY.kid}, {"typ": "at+jwt", "kid": KEY.kid}])
def test_sign_writes_what_jwt_encode_writes(headers: dict[str, Any]) -> None:
    payload = {"iss": "x", "sub": "user:sam", "n": 1, "act": {"sub": "agent:a"}}
    ours = sign(payload, KEY, headers)
    theirs = jwt.encode(payload, KEY.private, algorithm="ES256", headers=headers)
    assert ours.rsplit(".", 1)[0] == theirs.rsplit(".", 1)[0]  # ECDSA signatures differ
    assert jwt.decode(ours, KEY.public.key, algorithms=["ES256"]) == payload


def keys(issuer: str) -> dict[str, PublicKey]:
    return {KEY.kid: KEY.public} if issuer == CLIENT else {}


def check(assertion: str) -> dict[str, Any]:
    return verify_assertion(assertion, keys=keys, policy=POLICY, now=int(time.time()))


def reason(assertion: str) -> str:
    with pytest.raises(InvalidClient) as caught:
        check(assertion)
    return caught.value.reason


@dataclass(frozen=True)
class In:
    """A time ``seconds`` from when the test runs (a parameter list is built at collection,
    minutes earlier in a long run)."""

    seconds: int
    as_float: bool = False

    def at(self, now: int) -> int | float:
        return float(now + self.seconds) if self.as_float else now + self.seconds


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"iss": CLIENT, "sub": CLIENT, "aud": AUD, "iat": now, "exp": now + 60,
              "jti": "jti-0123456789"}
    values.update({k: v.at(now) if isinstance(v, In) else v for k, v in changes.items()})
    return {k: v for k, v in values.items() if v is not None}


def test_an_assertion_pyjwt_wrote_is_accepted() -> None:
    written = jwt.encode(claims(), KEY.private, algorithm="ES256", headers={"kid": KEY.kid})
    assert check(twin(written, high=False))["sub"] == CLIENT
    assert check(make_assertion(KEY, issuer=CLIENT, subject=CLIENT, audience=AUD,
                                now=int(time.time())))["iss"] == CLIENT


@pytest.mark.parametrize(("header", "expected"), [
    ({"alg": "ES256", "kid": 7}, "malformed_assertion"),  # PyJWT: kid must be a string
    ({"alg": "ES256", "b64": False}, "malformed_assertion"),  # would need an empty payload
    ({"alg": "ES256", "crit": ["exp"]}, "malformed_assertion"),  # unsupported extension
    ({"alg": "ES256", "crit": []}, "malformed_assertion"),
    ({"alg": "ES256", "crit": ["b64"], "b64": True}, "assertion_alg_refused"),
    ({"alg": "ES256", "jwk": {"kty": "EC"}}, "assertion_alg_refused"),
    ({"alg": "HS256"}, "assertion_alg_refused"),
])
def test_header_refusals_keep_their_reasons(header: dict[str, Any], expected: str) -> None:
    assert reason(sign_raw(header, claims(), KEY)) == expected


@pytest.mark.parametrize(("changes", "expected"), [
    ({"aud": ""}, "malformed_assertion"),  # PyJWT: an empty aud is a missing aud
    ({"aud": []}, "malformed_assertion"),
    ({"aud": [AUD, 7]}, "assertion_audience_mismatch"),
    ({"aud": "http://elsewhere"}, "assertion_audience_mismatch"),
    ({"exp": In(-60)}, "assertion_expired"),
    ({"exp": "soon"}, "malformed_assertion"),
    ({"nbf": In(600)}, "malformed_assertion"),
    ({"jti": None}, "malformed_assertion"),
    ({"jti": 12345678}, "malformed_assertion"),
    # iat is required and compared by the replay check (PyJWT requires it only if asked)
    ({"iat": None}, "malformed_assertion"),
    ({"iat": "now"}, "malformed_assertion"),
    ({"iat": True}, "malformed_assertion"),
    ({"iat": 10 ** 400}, "malformed_assertion"),  # no time, and not a float's: never a crash
    ({"nbf": float("inf")}, "malformed_assertion"),  # JSON's Infinity, which json reads
    ({"exp": float("inf")}, "malformed_assertion"),
    ({"iat": In(60)}, "assertion_not_yet_valid"),  # beyond the 5 s leeway
    ({"exp": In(3600)}, "assertion_lifetime_too_long"),
    ({"exp": In(60, as_float=True)}, "assertion_lifetime_too_long"),
])
def test_claim_refusals_keep_their_reasons(changes: dict[str, Any], expected: str) -> None:
    assert reason(sign_raw({"alg": "ES256", "kid": KEY.kid}, claims(**changes), KEY)) == expected


def test_iat_within_the_leeway_or_fractional_is_accepted_and_dated_to_the_second() -> None:
    for iat in (In(4), In(-1, as_float=True)):
        payload = check(sign_raw({"alg": "ES256", "kid": KEY.kid}, claims(iat=iat), KEY))
        assert POLICY.issued_at(payload) == int(payload["iat"] // 1)


def test_a_missing_claim_is_named() -> None:
    with pytest.raises(InvalidClient) as caught:
        check(sign_raw({"alg": "ES256", "kid": KEY.kid}, claims(iat=None), KEY))
    assert (caught.value.reason, caught.value.message) == (
        "malformed_assertion", "assertion lacks the 'iat' claim")


def test_a_non_canonical_segment_is_malformed() -> None:
    token = make_assertion(KEY, issuer=CLIENT, subject=CLIENT, audience=AUD,
                           now=int(time.time()))
    head, payload, sig = token.split(".")
    last = _ALPHABET.index(sig[-1])
    tampered = f"{head}.{payload}.{sig[:-1]}{_ALPHABET[last ^ 1]}"  # only unused bits differ
    assert not pyjwt_decodes(tampered.split(".")[2])
    assert reason(tampered) == "malformed_assertion"


def test_a_bad_signature_is_refused_as_such() -> None:
    other = signing_key_of(generate_private_key("ES256"), "ES256")
    forged = sign_raw({"alg": "ES256", "kid": KEY.kid}, claims(), other)
    assert reason(forged) == "assertion_bad_signature"


# -- ES256: one valid encoding per token (the low-S signature) ------------------------------------

def test_sign_writes_only_low_s_signatures() -> None:
    for n in range(64):
        token = sign({"n": n}, KEY, {"kid": KEY.kid})
        assert twin(token, high=False) == token


def test_a_high_s_twin_of_a_valid_assertion_is_refused_as_malleable() -> None:
    assertion = make_assertion(KEY, issuer=CLIENT, subject=CLIENT, audience=AUD,
                               now=int(time.time()))
    high = twin(assertion)
    assert high != assertion
    # the twin is a real signature over the same bytes (PyJWT accepts it), and only its form
    # is refused
    assert jwt.decode(high, KEY.public.key, algorithms=["ES256"], audience=AUD)["iss"] == CLIENT
    assert reason(high) == "assertion_malleable_signature"
    assert check(assertion)["iss"] == CLIENT


def test_a_high_s_signature_that_does_not_verify_is_a_bad_signature() -> None:
    other = signing_key_of(generate_private_key("ES256"), "ES256")
    forged = twin(sign_raw({"alg": "ES256", "kid": KEY.kid}, claims(), other))
    assert reason(forged) == "assertion_bad_signature"
