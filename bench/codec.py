"""Part of benchmark 1 (exchange): what the JOSE codec costs a served exchange, PyJWT's JWS layer
against the hand-written one, measured in the same run.

Both codecs do the same work (decode both tokens strictly, encode the new one); the signature
checks are PyJWT's algorithm objects either way. Rows, interleaved round by round: the codec
alone over an exchange's tokens, and ``token(form)`` as served (Redis registry + SQLite audit)
with each codec in place. The difference is then put beside the served exchange: in process, and
over HTTP (one client, the rate the HTTP table of the same run measured).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench._cluster import flush
from bench._inproc import exchange_form, root_token, stack
from bench._report import Table, us
from bench._timing import compare
from orchestrator.identity import _jws

AGENT = "agent:infrabot"
SCOPE = "urn:infra:monitoring:read"
Codec = tuple[Callable[..., _jws.Segments], Callable[..., str]]
OWN: Codec = (_jws.decode, _jws.sign)
LIBRARY: Codec = (_jws.library_decode, _jws.library_sign)


def _with(codec: Codec, op: Callable[[int], object]) -> Callable[[int], object]:
    """``op`` with ``codec`` in place (two module attributes set per call, for both alike)."""
    def run(i: int) -> object:
        _jws.decode, _jws.sign = codec
        return op(i)
    return run


def run(root: Path, redis_url: str, *, iterations: int, rounds: int,
        http_per_exchange_us: float | None) -> Table:
    table = Table("Exchange: the JOSE codec, PyJWT vs hand-written (same run)",
                  ["operation", "hand-written", "PyJWT", "PyJWT - hand-written",
                   "share of the served exchange"])
    n, r = iterations, rounds
    warmup = max(5, n // 10)
    count = n * r + warmup
    flush(redis_url)
    try:
        with stack(root / "codec", redis_url=redis_url) as st:
            subject = root_token(st)
            target = {"resource": st.settings.service_url("datadog"), "scope": SCOPE}
            issued = st.auth.token(exchange_form(st, AGENT, subject, **target))
            claims = issued.claims.model_dump(mode="json", exclude_none=True)
            key = st.keyring.current
            tokens = [_jws.split(t) for t in
                      (subject, exchange_form(st, AGENT, subject)["client_assertion"][0])]
            peeked = [(p, _jws.unverified_header(p[0])) for p in tokens if p is not None]

            def codec_op(codec: Codec) -> Callable[[int], object]:
                decode, sign = codec

                def op(_i: int) -> object:
                    for parts, header in peeked:
                        decode(parts, header)
                    return sign(claims, key, {"typ": "at+jwt", "kid": key.kid})
                return op

            forms = {name: [exchange_form(st, AGENT, subject, **target) for _ in range(count)]
                     for name in ("own", "library")}
            samples = compare({
                "codec own": codec_op(OWN),
                "codec library": codec_op(LIBRARY),
                "served own": _with(OWN, lambda i: st.auth.token(forms["own"][i])),
                "served library": _with(LIBRARY, lambda i: st.auth.token(forms["library"][i])),
            }, n, r, warmup=warmup)
    finally:
        _jws.decode, _jws.sign = OWN
    m = {name: sample.median_us for name, sample in samples.items()}
    codec_diff = m["codec library"] - m["codec own"]
    served_diff = m["served library"] - m["served own"]
    table.add("codec alone: decode subject token + assertion, encode the new token",
              us(m["codec own"]), us(m["codec library"]), us(codec_diff),
              f"{codec_diff / m['served library']:.1%} (in process)")
    table.add("token(form), Redis registry + SQLite audit (as served)", us(m["served own"]),
              us(m["served library"]), us(served_diff),
              f"{served_diff / m['served library']:.1%} (in process)")
    if http_per_exchange_us:
        table.add("over HTTP, 1 client (from the HTTP table of this run)",
                  "-", us(http_per_exchange_us), us(served_diff),
                  f"{served_diff / http_per_exchange_us:.1%} (served over HTTP)")
    table.notes += [
        f"ES256. Median of {r} interleaved rounds x {n} calls; each token(form) call has its "
        "own prebuilt form. The library is kept unless it costs more than 15% of a served "
        "exchange (issue 14).",
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.",
    ]
    return table
