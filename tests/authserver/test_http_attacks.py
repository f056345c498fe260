"""Hostile input over HTTP: forged, malformed, expired, mis-audienced, revoked and over-deep
tokens as ``subject_token`` and as the ``token`` to introspect, and garbage at the form level.
Nothing is accepted; nothing is answered with a 5xx; nothing sent is stored in the audit."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization

from orchestrator.identity import (
    CLIENT_ASSERTION_TYPE,
    generate_private_key,
    make_assertion,
    signing_key_of,
)
from tests.identity._twins import twin

from .conftest import (
    ARGOCD,
    CLEANUP,
    INFRABOT,
    ORCH,
    AuthServer,
    b64,
    b64json,
    refusal,
    serve,
    unverified_claims,
)

ATTACKER = signing_key_of(generate_private_key("ES256"), "ES256")
FORM_TYPE = {"content-type": "application/x-www-form-urlencoded"}


def _hs256(header: dict[str, Any], payload: object, secret: bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(payload)}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


def _public_pem(server: AuthServer) -> bytes:
    return server.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _flip(token: str, index: int) -> str:
    char = token[index]
    return token[:index] + ("A" if char != "A" else "B") + token[index + 1:]


def _nested(actors: list[str]) -> dict[str, Any] | None:
    node: dict[str, Any] | None = None
    for actor in reversed(actors):
        node = {"sub": actor, **({"act": node} if node else {})}
    return node


def _swap_payload(token: str, payload: dict[str, Any]) -> str:
    head, _, sig = token.split(".")
    return f"{head}.{b64json(payload)}.{sig}"


Forge = Callable[[AuthServer], str]
def _now() -> int:
    """Now when the attack is built (at test time, not collection time)."""
    return int(time.time())

# name -> (forge, the verifier's reason)
FORGED: dict[str, tuple[Forge, str]] = {
    "garbage": (lambda s: "garbage", "malformed"),
    "unicode": (lambda s: "ünïcødé.☃.✓", "malformed"),
    "two_segments": (lambda s: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0", "malformed"),
    "five_segments_jwe": (lambda s: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "malformed"),
    "padded_base64": (lambda s: s.mint() + "==", "malformed"),
    "trailing_newline": (lambda s: s.mint() + "\n", "malformed"),
    "alg_none_unsigned": (lambda s: f"{b64json(s.header(alg='none'))}."
                          f"{b64json(s.claims())}.", "malformed"),
    "alg_none_with_signature": (lambda s: f"{b64json(s.header(alg='none'))}."
                                f"{b64json(s.claims())}.c2ln", "alg_not_allowed"),
    "hs256_with_public_key_pem": (lambda s: _hs256(s.header(alg="HS256"), s.claims(),
                                                   _public_pem(s)), "alg_not_allowed"),
    "hs256_with_public_jwk": (lambda s: _hs256(s.header(alg="HS256"), s.claims(),
                                               json.dumps(s.key.public.jwk).encode()),
                              "alg_not_allowed"),
    "rs256_under_the_es256_kid": (lambda s: f"{b64json(s.header(alg='RS256'))}."
                                  f"{b64json(s.claims())}.c2ln", "alg_mismatch"),
    "embedded_jwk": (lambda s: s.sign(s.claims(), key=ATTACKER, header=s.header(
        kid=ATTACKER.kid, jwk=ATTACKER.public.jwk)), "key_in_header"),
    "jku_header": (lambda s: s.sign(s.claims(), key=ATTACKER, header=s.header(
        jku="http://127.0.0.1:1/jwks.json")), "key_in_header"),
    "x5u_header": (lambda s: s.sign(s.claims(), header=s.header(x5u="http://127.0.0.1:1/c")),
                   "key_in_header"),
    "crit_header": (lambda s: s.sign(s.claims(), header=s.header(crit=["exp"])),
                    "unsupported_crit"),
    "extra_header": (lambda s: s.sign(s.claims(), header=s.header(cty="JWT")),
                     "unexpected_header"),
    "typ_jwt": (lambda s: s.sign(s.claims(), header=s.header(typ="JWT")), "wrong_typ"),
    "no_typ": (lambda s: s.sign(s.claims(), header=s.header(typ=None)), "wrong_typ"),
    "no_kid": (lambda s: s.sign(s.claims(), header=s.header(kid=None)), "missing_kid"),
    "kid_not_a_string": (lambda s: s.sign(s.claims(), header=s.header(kid=7)), "missing_kid"),
    "unknown_kid": (lambda s: s.sign(s.claims(), header=s.header(kid="no-such-key")),
                    "unknown_kid"),
    "kid_path_traversal": (lambda s: s.sign(s.claims(), header=s.header(
        kid="../../keys/signing/keyring")), "unknown_kid"),
    "attacker_key_under_the_issuers_kid": (lambda s: s.sign(s.claims(), key=ATTACKER),
                                           "bad_signature"),
    "signature_flipped": (lambda s: _flip(s.mint(), -20), "bad_signature"),
    "payload_tampered": (lambda s: _swap_payload(s.mint(), s.claims(sub="user:robin")),
                         "bad_signature"),
    "signed_by_an_agents_key": (lambda s: s.sign(s.claims(), key=s.stack.clients[INFRABOT]),
                                "bad_signature"),
    "header_not_an_object": (lambda s: f"{b64json(['ES256'])}.{b64json(s.claims())}.c2ln",
                             "malformed"),
    "payload_not_an_object": (lambda s: s.sign(["user:sam"]), "malformed"),
    "payload_not_json": (lambda s: s.sign(b"\x00\xffnot json"), "malformed"),
    "too_large_9kb": (lambda s: s.mint(log_url="x" * 9000), "token_too_large"),
    "wrong_issuer": (lambda s: s.mint(iss="https://evil.example"), "issuer_mismatch"),
    "audience_list": (lambda s: s.mint(aud=[s.issuer]), "audience_mismatch"),
    "audience_elsewhere": (lambda s: s.mint(aud="https://evil.example"), "audience_mismatch"),
    "expired": (lambda s: s.mint(iat=_now() - 900, exp=_now() - 300), "token_expired"),
    "issued_in_the_future": (lambda s: s.mint(iat=_now() + 600, exp=_now() + 900),
                             "token_not_yet_valid"),
    "not_before_in_the_future": (lambda s: s.mint(nbf=_now() + 600), "token_not_yet_valid"),
    "lifetime_too_long": (lambda s: s.mint(exp=_now() + 3600), "lifetime_too_long"),
    "exp_huge": (lambda s: s.mint(exp=10**30), "lifetime_too_long"),
    "exp_string": (lambda s: s.mint(exp=str(_now() + 600)), "invalid_claims"),
    "exp_float": (lambda s: s.mint(exp=_now() + 600.5), "invalid_claims"),
    "exp_bool": (lambda s: s.mint(exp=True), "invalid_claims"),
    "missing_jti": (lambda s: s.mint(jti=None), "missing_claim"),
    "missing_ctx": (lambda s: s.mint(ctx=None), "missing_claim"),
    "missing_scope": (lambda s: s.mint(scope=None), "missing_claim"),
    "missing_exp": (lambda s: s.mint(exp=None), "missing_claim"),
    "unknown_claim": (lambda s: s.mint(admin=True), "invalid_claims"),
    "malformed_scope": (lambda s: s.mint(scope="admin *"), "invalid_claims"),
    "ctx_incomplete": (lambda s: s.mint(ctx={"trigger": "ci_pipeline"}), "invalid_claims"),
    "negative_user_version": (lambda s: s.mint(user_version=-1), "invalid_claims"),
    "act_as_string": (lambda s: s.mint(act="agent:infrabot"), "invalid_act"),
    "act_without_sub_is_invalid": (lambda s: s.mint(act={"act": {"sub": INFRABOT}}),
                                   "invalid_claims"),
    "inverted_chain_sub_agent": (lambda s: s.mint(sub=INFRABOT, act={"sub": "user:sam"},
                                                  user_version=0), "inverted_chain"),
    "user_as_actor": (lambda s: s.mint(act={"sub": "user:alex"}), "inverted_chain"),
    "client_as_principal": (lambda s: s.mint(sub=ORCH, user_version=0), "invalid_subject"),
    "cycle": (lambda s: s.mint(act=_nested([INFRABOT, ARGOCD, INFRABOT])), "chain_cycle"),
    "depth_5": (lambda s: s.mint(act=_nested([f"agent:a{i}" for i in range(5)])),
                "max_depth_exceeded"),
    "depth_20": (lambda s: s.mint(act=_nested([f"agent:a{i}" for i in range(20)])),
                 "max_depth_exceeded"),
    "too_many_ancestors": (lambda s: s.mint(ancestors=[f"jti-{i:08d}" for i in range(17)]),
                           "invalid_claims"),
}

# Valid tokens, wrongly used: refused at the token endpoint with the exchange rule's code.
MISUSED: dict[str, tuple[Callable[[AuthServer], dict[str, str]], str, str]] = {
    "may_act_for_another_agent": (
        lambda s: {**s.auth(ARGOCD), **s.exchange_form(s.root()["access_token"],
                                                       audience=CLEANUP)},
        "invalid_request", "may_act_mismatch"),
    "service_token_as_subject": (
        lambda s: {**s.auth(CLEANUP), **s.exchange_form(s.chain()[-1], resource=s.aws)},
        "invalid_request", "audience_mismatch"),
    "mis_scoped_escalation": (
        lambda s: {**s.auth(INFRABOT), **s.exchange_form(
            s.root(scopes=["urn:infra:monitoring:read"])["access_token"],
            resource=s.service("datadog"), scope="urn:infra:monitoring:mute")},
        "invalid_scope", "scope_not_grantable"),
    "mis_audienced_resource": (
        lambda s: {**s.auth(INFRABOT), **s.exchange_form(
            s.root()["access_token"], resource="https://evil.example")},
        "invalid_target", "unknown_resource"),
    "hand_off_skipping_an_agent": (
        lambda s: {**s.auth(INFRABOT), **s.exchange_form(s.root()["access_token"],
                                                         audience=CLEANUP)},
        "invalid_target", "handoff_not_allowed"),
    "replay_of_a_revoked_root": (lambda s: _revoked_form(s), "invalid_request", "token_revoked"),
    "client_assertion_as_subject": (
        lambda s: {**s.auth(INFRABOT), **s.exchange_form(s.assertion(INFRABOT),
                                                         audience=ARGOCD)},
        "invalid_request", "wrong_typ"),
}


def _revoked_form(server: AuthServer) -> dict[str, str]:
    root = server.root()["access_token"]
    server.clients[ORCH].revoke(root)
    return {**server.auth(INFRABOT), **server.exchange_form(root, audience=ARGOCD)}


@pytest.fixture(scope="module")
def sent(server: AuthServer) -> Iterator[list[str]]:
    """Every token sent in this module; none may be in the audit database at the end."""
    tokens: list[str] = []
    yield tokens
    server.assert_not_stored(*tokens)


@pytest.mark.parametrize("name", list(FORGED))
def test_forged_subject_token_is_refused(server: AuthServer, sent: list[str], name: str) -> None:
    forge, reason = FORGED[name]
    token = forge(server)
    sent.append(token)
    mark = server.audit_mark()
    response = server.exchange(INFRABOT, token, audience=ARGOCD)
    refusal(response, 400, "invalid_request", reason)
    server.assert_denied(mark, reason)


@pytest.mark.parametrize("name", list(FORGED))
def test_forged_token_is_inactive_at_introspection(
        server: AuthServer, sent: list[str], name: str) -> None:
    forge, reason = FORGED[name]
    token = forge(server)
    sent.append(token)
    mark = server.audit_mark()
    response = server.introspect(token)
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}
    records = server.records_since(mark)
    assert [(r.action, r.decision, r.reason) for r in records] == [("introspect", "deny", reason)]


@pytest.mark.parametrize("name", list(FORGED))
def test_forged_token_revocation_is_a_quiet_no_op(
        server: AuthServer, sent: list[str], name: str) -> None:
    token = FORGED[name][0](server)
    sent.append(token)
    response = server.post("/revoke", {**server.auth(ORCH), "token": token})
    assert response.status_code == 200


def test_there_are_at_least_thirty_distinct_forgeries() -> None:
    assert len(FORGED) >= 30


def test_a_reference_token_of_each_kind_is_accepted(server: AuthServer) -> None:
    """The forgeries differ from a token the server accepts only in what they forge."""
    assert server.exchange(INFRABOT, server.mint(), audience=ARGOCD).status_code == 200
    assert server.introspect(server.mint()).json()["active"] is True


def test_a_service_token_is_active_at_introspection_but_no_subject_token(
        server: AuthServer) -> None:
    """Introspection answers for every audience the server issues to; exchange only takes tokens
    meant for the server itself."""
    for_aws = server.mint(aud=server.aws, may_act=None)
    assert server.introspect(for_aws).json()["aud"] == server.aws
    refusal(server.exchange(INFRABOT, for_aws, audience=ARGOCD), 400, "invalid_request",
            "audience_mismatch")


@pytest.mark.parametrize("name", list(MISUSED))
def test_misused_valid_token_is_refused(server: AuthServer, sent: list[str], name: str) -> None:
    build, error, reason = MISUSED[name]
    form = build(server)
    sent.extend(v for v in form.values() if v.count(".") == 2)
    mark = server.audit_mark()
    refusal(server.post("/token", form), 400, error, reason)
    server.assert_denied(mark, reason)


def test_over_deep_chain_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    with serve(tmp_path_factory.mktemp("depth-1"), max_depth=1) as server:
        h1 = server.clients[INFRABOT].exchange(server.root()["access_token"], audience=ARGOCD)
        refusal(server.exchange(ARGOCD, h1["access_token"], audience=CLEANUP), 400,
                "invalid_request", "max_depth_exceeded")


# -- garbage at the form level ---------------------------------------------------------------------

ENDPOINTS = ["/token", "/introspect", "/revoke", "/revocations"]

BODIES: dict[str, tuple[bytes, dict[str, str]]] = {
    "binary": (bytes(range(256)) * 4, FORM_TYPE),
    "thousand_fields": ("&".join(f"f{i}=v" for i in range(1000)).encode(), FORM_TYPE),
    "invalid_percent_encoding": (b"grant_type=%ZZ%&token=%E0%A4%A&subject_token=%", FORM_TYPE),
    "percent_encoded_invalid_utf8": (b"token=%ff%fe&grant_type=%c3%28", FORM_TYPE),
    "huge_single_param": (b"token=" + b"A" * 60_000, FORM_TYPE),
    "huge_body": (b"token=" + b"A" * 200_000, FORM_TYPE),
    "nul_bytes": (b"grant_type=\x00&token=\x00\x00&client_assertion_type=\x00", FORM_TYPE),
    "only_separators": (b"&&&&====&&&;;;", FORM_TYPE),
    "empty": (b"", FORM_TYPE),
    "json": (b'{"token": "x"}', {"content-type": "application/json"}),
    "multipart": (b"--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nx\r\n--b--",
                  {"content-type": "multipart/form-data; boundary=b"}),
    "no_content_type": (b"token=x", {}),
    "latin1_charset": ("token=caf\xe9".encode("latin-1"),
                       {"content-type": "application/x-www-form-urlencoded; charset=latin-1"}),
    "very_long_name": (b"x" * 30_000 + b"=1", FORM_TYPE),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("name", list(BODIES))
def test_form_garbage_is_a_4xx(server: AuthServer, endpoint: str, name: str) -> None:
    body, headers = BODIES[name]
    response = server.post(endpoint, content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["error"] in {"invalid_request", "invalid_client",
                                         "unsupported_grant_type"}


@pytest.mark.parametrize(("name", "reason"), [("binary", "malformed_form"),
                                              ("thousand_fields", "malformed_form"),
                                              ("huge_body", "body_too_large"),
                                              ("json", "unsupported_content_type")])
def test_form_garbage_reasons(server: AuthServer, name: str, reason: str) -> None:
    body, headers = BODIES[name]
    mark = server.audit_mark()
    refusal(server.post("/token", content=body, headers=headers), 400, "invalid_request", reason)
    server.assert_denied(mark, reason)


def test_huge_subject_token_param(server: AuthServer) -> None:
    form = {**server.auth(INFRABOT), **server.exchange_form("A" * 60_000, audience=ARGOCD)}
    refusal(server.post("/token", form), 400, "invalid_request", "parameter_too_large")


def test_chunked_body_over_the_limit_without_a_length(server: AuthServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"token="
        for _ in range(100):
            yield b"A" * 4096

    response = server.post("/token", content=chunks(), headers=FORM_TYPE)
    refusal(response, 400, "invalid_request", "body_too_large")


def test_an_endless_body_is_refused_once_over_the_limit(server: AuthServer) -> None:
    """Regression: the whole body was read before its size was checked, so a body that never
    ends held the request (and its memory) open for as long as the client kept sending."""
    chunk = b"A" * 8192
    with socket.create_connection(("127.0.0.1", server.settings.auth_port), timeout=5) as conn:
        conn.sendall(b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        for _ in range(10):  # 80 KiB, and the body is never terminated
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        reply = b""
        while b"}" not in reply and (data := conn.recv(4096)):
            reply += data
    assert reply.startswith(b"HTTP/1.1 400"), reply[:80]
    assert b"body_too_large" in reply


def test_a_charset_parameter_is_accepted(server: AuthServer) -> None:
    form = {**server.auth(ORCH), "token": server.mint()}
    response = server.post("/introspect", content=_urlencode(form), headers={
        "content-type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert response.json()["active"] is True


def _urlencode(form: dict[str, str]) -> bytes:
    return urlencode(form).encode()


@pytest.mark.parametrize("request_line", [
    b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    (b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\n"),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
])
def test_malformed_http_is_a_4xx(server: AuthServer, request_line: bytes) -> None:
    port = server.settings.auth_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request_line)
        reply = conn.recv(1024)
    if reply:  # the server may also just close the connection
        status = int(reply.split(b" ", 2)[1])
        assert 400 <= status < 500, reply


def test_claimed_client_ids_are_not_remembered(server: AuthServer) -> None:
    """Regression: every client id an assertion claimed was cached, known or not, so anyone could
    grow the server's memory without bound, one made-up ``iss`` per request."""
    keys = server.stack.auth.client_keys
    for i in range(50):
        rogue = make_assertion(ATTACKER, issuer=f"agent:rogue-{i}-{'x' * 2000}",
                               subject="agent:rogue", audience=f"{server.url}/token",
                               now=int(time.time()))
        form = {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": rogue,
                "token": "x"}
        refusal(server.post("/introspect", form), 401, "invalid_client", "unknown_client")
    registry = keys._registry  # type: ignore[attr-defined]
    assert not [cid for cid in registry._by_client if "rogue" in cid]


def test_wrong_method(server: AuthServer) -> None:
    for endpoint in ENDPOINTS:
        assert server.http.get(f"{server.url}{endpoint}").status_code == 405


def test_the_server_is_still_healthy(server: AuthServer) -> None:
    assert server.http.get(f"{server.url}/health").json() == {"status": "ok"}
    assert server.root()["scope"]


def test_claims_inside_act_other_than_identity_are_ignored_over_http(server: AuthServer) -> None:
    """RFC 8693 section 4.1: ``exp``, ``nbf``, ``aud`` or ``scope`` inside ``act`` are not used.
    The token is introspected and exchanged as if they were absent, and they are not copied."""
    now = int(time.time())
    ignored = {"exp": now - 3600, "nbf": now + 3600, "aud": server.aws, "scope": "x"}
    token = server.mint(client_id=INFRABOT, may_act={"sub": ARGOCD},
                        scope="urn:infra:infrastructure:read",
                        act={"sub": INFRABOT, **ignored})
    body = server.introspect(token).json()
    assert body["active"] is True and body["act"] == {"sub": INFRABOT}
    response = server.exchange(ARGOCD, token, audience=CLEANUP)
    assert response.status_code == 200, response.text
    issued = unverified_claims(response.json()["access_token"])
    assert issued["act"] == {"sub": ARGOCD, "act": {"sub": INFRABOT}}


def test_a_high_s_twin_of_a_client_assertion_is_invalid_client(server: AuthServer) -> None:
    """ES256: the other encoding of a valid assertion is refused as such (and its first use,
    not spent by the refusal, still authenticates)."""
    token = server.root()["access_token"]
    form = {**server.auth(INFRABOT), "token": token}
    twin_form = {**form, "client_assertion": twin(form["client_assertion"])}
    mark = server.audit_mark()
    refusal(server.post("/token", {**twin_form, **server.exchange_form(token, audience=ARGOCD)}),
            401, "invalid_client", "assertion_malleable_signature")
    server.assert_denied(mark, "assertion_malleable_signature", twin_form["client_assertion"])
    assert server.post("/introspect", form).json()["active"] is True


def test_a_high_s_twin_of_an_issued_token_is_refused(server: AuthServer) -> None:
    token = server.root()["access_token"]
    response = server.exchange(INFRABOT, twin(token), audience=ARGOCD)
    refusal(response, 400, "invalid_request", "malleable_signature")
    assert server.introspect(twin(token)).json() == {"active": False}
    assert server.exchange(INFRABOT, token, audience=ARGOCD).status_code == 200
