"""Part of benchmark 1 (exchange): what the JOSE codec (PyJWT's JWS layer) costs a served
exchange, above the cheapest decoding any hand-written codec could do.

Issue 14 keeps a hand-written codec only if the library costs more than 15% of a served exchange;
docs/identity.md records the run that compared the two and chose PyJWT. This table keeps the
question answered in every run: it times, interleaved round by round, the strict decoding of an
exchange's two tokens (the subject token and the client assertion) by the codec, the same two
decoded raw (base64url and JSON, no check at all: less than any codec could do), and
``token(form)`` as served (Redis registry + SQLite audit); then puts the difference beside the
served exchange, in process and over HTTP (one client, from the HTTP table of the same run).
Encoding is not in it: the hand-written encoder cost the same as PyJWT's (docs/identity.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench._cluster import flush
from bench._inproc import b64url_decode, exchange_form, root_token, stack
from bench._report import Table, us
from bench._timing import compare
from orchestrator.identity import _jws

AGENT = "agent:infrabot"
SCOPE = "urn:infra:monitoring:read"
LIMIT = 0.15


def run(root: Path, redis_url: str, *, iterations: int, rounds: int,
        http_per_exchange_us: float | None) -> Table:
    table = Table("Exchange: what the JOSE codec (PyJWT) costs a served exchange",
                  ["operation", "per exchange", "raw decode (no check)", "codec - raw",
                   "share of the served exchange"])
    n, r = iterations, rounds
    warmup = max(5, n // 10)
    flush(redis_url)
    with stack(root / "codec", redis_url=redis_url) as st:
        subject = root_token(st)
        target = {"resource": st.settings.service_url("datadog"), "scope": SCOPE}
        forms = [exchange_form(st, AGENT, subject, **target) for _ in range(n * r + warmup)]
        tokens = [subject, forms[0]["client_assertion"][0]]
        split = [parts for parts in map(_jws.split, tokens) if parts is not None]

        def codec(_i: int) -> object:
            return [_jws.decode(parts) for parts in split]

        def raw(_i: int) -> object:
            return [[json.loads(b64url_decode(part)) for part in token.split(".")[:2]]
                    for token in tokens]

        def served(i: int) -> object:
            return st.auth.token(forms[i])

        samples = compare({"codec": codec, "raw": raw, "served": served}, n, r, warmup=warmup)
    m = {name: sample.median_us for name, sample in samples.items()}
    extra = m["codec"] - m["raw"]
    table.add("decode subject token + client assertion (PyJWT, strict)", us(m["codec"]),
              us(m["raw"]), us(extra), f"{extra / m['served']:.1%} (in process)")
    table.add("token(form), Redis registry + SQLite audit (as served)", us(m["served"]),
              "-", "-", "100%")
    if http_per_exchange_us:
        table.add("over HTTP, 1 client (from the HTTP table of this run)",
                  us(http_per_exchange_us), "-", us(extra),
                  f"{extra / http_per_exchange_us:.1%} (served over HTTP)")
    table.notes += [
        (f"ES256; subject token {len(subject)} B, assertion {len(tokens[1])} B. Median of {r} "
        f"interleaved rounds x {n} calls; each token(form) call has its own prebuilt form."),
        (f"A hand-written codec could save at most 'codec - raw' per exchange. Issue 14 keeps the "
        f"library while that is under {LIMIT:.0%} of a served exchange: "
        f"{'met' if extra <= LIMIT * m['served'] else 'NOT met, see docs/identity.md'}."),
    ]
    return table
