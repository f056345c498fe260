"""Benchmark 1: what one RFC 8693 token exchange costs the authorization server.

In process: :meth:`AuthorizationService.token` with a prebuilt form (infrabot exchanges sam's
root token for a Datadog token), against the floor measured in the same run: the signature
operations no implementation can skip, done raw with ``cryptography`` (ES256: verify the
subject token, verify the client assertion, sign the new token). Over HTTP: exchanges per second
from 1, 4 and 8 concurrent clients (threads, one ``httpx.Client`` each) against a real
``infrabot serve`` on loopback (Redis registry), beside the same server's cheapest endpoint.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import codec, exchange_http
from bench._cluster import flush
from bench._inproc import (
    RawJWS,
    b64url_decode,
    b64url_encode,
    exchange_form,
    root_token,
    stack,
)
from bench._report import Table, ratio, us
from bench._timing import compare
from infrabot.stack import Stack
from orchestrator.identity import (
    ExchangeRequest,
    decide,
    mint,
    parse_scopes,
    verify_assertion,
)

AGENT = "agent:infrabot"
SCOPE = "urn:infra:monitoring:read"
GOAL = 1.3


def run(redis_url: str, *, iterations: int = 1000, rounds: int = 5, http_requests: int = 1500,
        http_clients: tuple[int, ...] = (1, 4, 8), work: Path | None = None) -> list[Table]:
    with tempfile.TemporaryDirectory(prefix="bench-exchange-", dir=work) as tmp:
        root = Path(tmp)
        tables = [in_process(root, redis_url, iterations=iterations, rounds=rounds)]
        rates: dict[int, float] = {}
        if http_requests:
            tables.append(exchange_http.over_http(root / "http", redis_url, requests=http_requests,
                                    clients=http_clients, rates=rates))
        tables.append(codec.run(root, redis_url, iterations=iterations, rounds=rounds,
                                http_per_exchange_us=1e6 / rates[1] if rates.get(1) else None))
    return tables


def _raw_codec(form: dict[str, list[str]], issued: str) -> Callable[[int], object]:
    """The decoding and encoding ``token(form)`` cannot skip, with no check: both tokens' header
    and payload decoded, the new token's encoded (the form arrives parsed, as in the rows it is
    compared with)."""
    tokens = [form["subject_token"][0], form["client_assertion"][0]]
    header, payload = (json.loads(b64url_decode(part)) for part in issued.split(".")[:2])

    def codec(_i: int) -> object:
        for token in tokens:
            head, claims, _ = token.split(".")
            json.loads(b64url_decode(head))
            json.loads(b64url_decode(claims))
        new_header = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        new_payload = json.dumps(payload, separators=(",", ":")).encode()
        return f"{b64url_encode(new_header)}.{b64url_encode(new_payload)}"

    return codec


def _token_op(st: Stack, root_tok: str, count: int) -> Callable[[int], object]:
    """``token(form)`` over ``count`` prebuilt forms, one per call."""
    target = {"resource": st.settings.service_url("datadog"), "scope": SCOPE}
    forms = [exchange_form(st, AGENT, root_tok, **target) for _ in range(count)]
    return lambda i: st.auth.token(forms[i])


def in_process(root: Path, redis_url: str, *, iterations: int, rounds: int) -> Table:
    table = Table("Exchange, in process: AuthorizationService.token(form) vs raw ES256 floor",
                  ["operation", "per exchange", "raw floor", "ratio"])
    n, r = iterations, rounds
    warmup = max(5, n // 10)
    flush(redis_url)
    with stack(root / "memory") as st, stack(root / "audited") as audited, \
            stack(root / "redis", redis_url=redis_url) as served:
        svc = st.auth
        svc.audit = None  # the exchange alone: no audit record built or written
        root_tok = root_token(st)
        now = int(time.time())
        form = exchange_form(st, AGENT, root_tok, resource=st.settings.service_url("datadog"),
                             scope=SCOPE)
        issued = svc.token(form)
        subject = svc.verifier.verify(root_tok, audience=svc.issuer, now=now)
        request = ExchangeRequest(subject=subject, actor=AGENT, scopes=parse_scopes(SCOPE),
                                  resource=st.settings.service_url("datadog"))
        issuance = svc.issuance(st.settings.token_ttl_seconds)
        grant = decide(request, st.directory, issuance, now=now)
        signing = st.keyring.current
        assertion = form["client_assertion"][0]
        public = signing.public.key
        raw_subject = RawJWS(root_tok, public)  # type: ignore[arg-type]
        raw_assertion = RawJWS(assertion, st.clients[AGENT].public.key)  # type: ignore[arg-type]
        raw_sign = RawJWS.signer(signing, RawJWS(issued.access_token,
                                                 public).signing_input)  # type: ignore[arg-type]
        count = n * r + warmup
        codec = _raw_codec(form, issued.access_token)
        samples = compare({
            "raw codec": codec,
            "raw verify subject": raw_subject.verify,
            "raw verify assertion": raw_assertion.verify,
            "raw sign": raw_sign,
            "verify subject token": lambda _: svc.verifier.verify(root_tok, audience=svc.issuer,
                                                                  now=now),
            "verify client assertion": lambda _: verify_assertion(
                assertion, keys=svc.client_keys, policy=svc.assertion_policy, now=now),
            "sign new token": lambda _: mint(grant.claims, signing),
            "decide": lambda _: decide(request, st.directory, issuance, now=now),
            "core": _token_op(st, root_tok, count),
            "audited": _token_op(audited, root_token(audited), count),
            "served": _token_op(served, root_token(served), count),
        }, n, r, warmup=warmup)
    m = {name: sample.median_us for name, sample in samples.items()}
    floor = m["raw verify subject"] + m["raw verify assertion"] + m["raw sign"]
    for name, raw in (("verify subject token", "raw verify subject"),
                      ("verify client assertion", "raw verify assertion"),
                      ("sign new token", "raw sign")):
        table.add(name, us(m[name]), us(m[raw]), ratio(m[name], m[raw]))
    table.add("decide (exchange rules, no I/O)", us(m["decide"]), "-", "-")
    table.add("**token(form)**, in-memory registry, no audit sink", f"**{us(m['core'])}**",
              us(floor), f"**{ratio(m['core'], floor)}**")
    table.add("token(form), in-memory registry + SQLite audit", us(m["audited"]), us(floor),
              ratio(m["audited"], floor))
    table.add("token(form), Redis registry + SQLite audit (as served)", us(m["served"]),
              us(floor), ratio(m["served"], floor))
    table.add("floor + raw codec (no check at all)", us(floor + m["raw codec"]), us(floor),
              ratio(floor + m["raw codec"], floor))
    table.notes += [
        (f"ES256. Floor = raw verify of the subject token ({raw_subject.size} B) + raw verify of "
        f"the client assertion ({raw_assertion.size} B) + raw sign of the new token "
        f"({len(issued.access_token)} B), each measured here with `cryptography`."),
        (f"Median of {r} interleaved rounds x {n} calls; every token(form) call has its own "
        "prebuilt form (a client assertion is accepted once). Goal: token(form) within "
        f"{GOAL}x of the floor: {'met' if m['core'] <= GOAL * floor else 'not met'}."),
        (f"Raw codec ({us(m['raw codec'])}): what token(form) must do besides the crypto, done "
        "raw: decode the header and payload JSON of both tokens, encode the new token's header "
        "and payload. With it the floor leaves "
        f"{us(max(0.0, GOAL * floor - floor - m['raw codec']))} of the {GOAL}x budget for every "
        "check an exchange makes (both tokens' claims, replay, revocation, the exchange rules)."),
        ("Component rows compare each step with its own raw operation. The first token(form) row "
        "has no audit sink (no record built); the SQLite row adds the audit record every "
        "exchange builds and writes; the Redis row also puts the assertion replay "
        "claim and the revocation check on Redis, as `infrabot serve` does in distributed mode "
        "(both in one round trip, sent before the subject token's signature check)."),
    ]
    return table
