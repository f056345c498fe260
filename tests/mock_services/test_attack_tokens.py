"""Attack tokens against every service over real HTTP: none is accepted, none causes a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from mock_services import SERVICE_NAMES
from orchestrator.identity import generate_private_key, signing_key_of
from orchestrator.identity import sign_jws as sign

READ = {
    "datadog": ("datadog.monitor.read", {"monitor_id": 1001}),
    "github": ("github.pull.read", {"owner": "acme", "repo": "service-x", "pull_number": 124}),
    "aws": ("aws.ec2.describe_instances", {}),
    "pagerduty": ("pagerduty.incident.read", {"id": "P7X9K2Q"}),
}
SCOPES = {"datadog": "urn:infra:monitoring:read", "github": "urn:infra:repo:read",
          "aws": "urn:infra:infrastructure:read", "pagerduty": "urn:infra:incident:read"}


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(stack, service: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": stack.settings.issuer_url, "sub": "user:sam", "aud": stack.urls[service],
        "client_id": "agent:infrabot", "scope": SCOPES[service], "iat": now, "exp": now + 300,
        "jti": "attack-token-0001", "act": {"sub": "agent:infrabot"}, "user_version": 0,
        "registry_epoch": stack.revocation.standing("user:sam").registry_epoch,
        "ctx": {"trigger": "ci_pipeline", "environment": "prod", "repository": "acme/service-x",
                "commit": "9f2c1e7", "run_id": "run-attack"},
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def signed(stack, payload: dict[str, Any], **header: Any) -> str:
    key = stack.ring.current
    headers = {"typ": "at+jwt", "kid": key.kid, **header}
    return sign(payload, key, headers)  # as jwt.encode writes it, its signature low-S


def hs256_with_public_key(stack, payload: dict[str, Any]) -> str:
    public = stack.ring.current.public.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": stack.ring.current.kid}
    head = b64(json.dumps(header)) + "." + b64(json.dumps(payload))
    return head + "." + b64(hmac.new(public, head.encode(), hashlib.sha256).digest())


def unsigned(stack, payload: dict[str, Any], alg: str = "none") -> str:
    header = {"alg": alg, "typ": "at+jwt", "kid": stack.ring.current.kid}
    return b64(json.dumps(header)) + "." + b64(json.dumps(payload)) + "."


def tampered(stack, payload: dict[str, Any]) -> str:
    head, _, sig = signed(stack, payload).split(".")
    wider = {**payload, "scope": payload["scope"] + " urn:infra:secrets:manage"}
    return f"{head}.{b64(json.dumps(wider))}.{sig}"


def swap_payload(token: str, payload: str) -> str:
    head, _, sig = token.split(".")
    return f"{head}.{payload}.{sig}"


def nested(depth: int) -> dict[str, Any]:
    act: dict[str, Any] = {"sub": "agent:infrabot"}
    for i in range(depth):
        act = {"sub": f"agent:hop{i}", "act": act}
    return act


STRANGER = signing_key_of(generate_private_key("ES256"), "ES256")
ATTACKS: dict[str, Callable[[Any, str], str]] = {
    "alg_none": lambda s, v: unsigned(s, claims(s, v)),
    "alg_None_with_signature": lambda s, v: unsigned(s, claims(s, v), "None") + "c2ln",
    "hs256_key_confusion": lambda s, v: hs256_with_public_key(s, claims(s, v)),
    "embedded_jwk": lambda s, v: signed(s, claims(s, v), jwk=STRANGER.public.jwk),
    "jku_header": lambda s, v: signed(s, claims(s, v), jku="http://127.0.0.1:1/jwks.json"),
    "x5u_header": lambda s, v: signed(s, claims(s, v), x5u="http://127.0.0.1:1/cert.pem"),
    "crit_header": lambda s, v: signed(s, claims(s, v), crit=["exp"]),
    "stranger_key_own_kid": lambda s, v: jwt.encode(
        claims(s, v), STRANGER.private, algorithm="ES256",
        headers={"typ": "at+jwt", "kid": STRANGER.kid}),
    "stranger_key_issuer_kid": lambda s, v: jwt.encode(
        claims(s, v), STRANGER.private, algorithm="ES256",
        headers={"typ": "at+jwt", "kid": s.ring.current.kid}),
    "kid_path_traversal": lambda s, v: signed(s, claims(s, v), kid="../../../../etc/passwd"),
    "typ_jwt": lambda s, v: signed(s, claims(s, v), typ="JWT"),
    "no_typ": lambda s, v: signed(s, claims(s, v), typ=None),
    "tampered_payload": lambda s, v: tampered(s, claims(s, v)),
    "inverted_chain": lambda s, v: signed(s, claims(s, v, sub="agent:infrabot",
                                                    act={"sub": "user:sam"})),
    "user_inside_act": lambda s, v: signed(s, claims(s, v, act={"sub": "agent:infrabot",
                                                                "act": {"sub": "user:alex"}})),
    "actor_cycle": lambda s, v: signed(s, claims(s, v, act={
        "sub": "agent:infrabot", "act": {"sub": "agent:argocd",
                                         "act": {"sub": "agent:infrabot"}}})),
    "act_nested_too_deep": lambda s, v: signed(s, claims(s, v, act=nested(40))),
    "wrong_issuer": lambda s, v: signed(s, claims(s, v, iss="http://127.0.0.1:9")),
    "audience_list": lambda s, v: signed(s, claims(s, v, aud=[s.urls[v], "x"])),
    "lifetime_too_long": lambda s, v: signed(s, claims(s, v, exp=int(time.time()) + 86400)),
    "not_yet_valid": lambda s, v: signed(s, claims(s, v, nbf=int(time.time()) + 3600)),
    "issued_in_future": lambda s, v: signed(s, claims(s, v, iat=int(time.time()) + 3600,
                                                     exp=int(time.time()) + 3900)),
    "exp_as_string": lambda s, v: signed(s, claims(s, v, exp="9999999999")),
    "missing_ctx": lambda s, v: signed(s, claims(s, v, ctx=None)),
    "scope_injection": lambda s, v: signed(s, claims(s, v, scope="* " + SCOPES[v])),
    "payload_is_array": lambda s, v: swap_payload(signed(s, claims(s, v)), b64("[1,2]")),
    "garbage": lambda s, v: "not-a-token",
    "two_segments": lambda s, v: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0",
    "five_segments_jwe": lambda s, v: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
    "oversized": lambda s, v: signed(s, claims(s, v, log_url="x" * 9000)),
    "binary_header": lambda s, v: b64(b"\xff\xfe\x00") + "." + b64("{}") + ".c2ln",
}


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_no_attack_token_is_accepted_and_none_causes_a_5xx(stack, http, service):
    assert len(ATTACKS) >= 20
    name, params = READ[service]
    outcomes = {}
    for attack, make in ATTACKS.items():
        response = stack.call(http, name, params, token=make(stack, service))
        outcomes[attack] = (response.status_code, response.json().get("reason"))
        assert response.status_code in (400, 401, 403), (attack, response.text)
        [record] = stack.records(response)
        assert record.decision == "deny" and record.status == response.status_code
    assert outcomes["alg_none"][1] == "malformed"
    assert outcomes["hs256_key_confusion"][1] == "alg_not_allowed"
    assert outcomes["embedded_jwk"][1] == "key_in_header"
    assert outcomes["jku_header"][1] == "key_in_header"
    assert outcomes["stranger_key_issuer_kid"][1] == "bad_signature"
    assert outcomes["tampered_payload"][1] == "bad_signature"
    assert outcomes["inverted_chain"][1] == "inverted_chain"
    assert outcomes["actor_cycle"][1] == "chain_cycle"
    assert outcomes["act_nested_too_deep"][1] == "max_depth_exceeded"
    assert outcomes["wrong_issuer"][1] == "issuer_mismatch"
    assert outcomes["audience_list"][1] == "audience_mismatch"
    assert outcomes["oversized"][1] == "token_too_large"
    assert outcomes["typ_jwt"][1] == "wrong_typ"
