"""What a raw compact JWT looks like in free text: the one rule behind the filters that keep
tokens out of log lines (:mod:`orchestrator._log`), audit records and spans
(:func:`orchestrator.audit.contains_raw_jwt`).

A compact JWS is three base64url runs joined by dots, a JWE five; the first run is a JSON object,
and ``{"`` encodes as ``eyJ``. Two shapes are raw tokens:

* a run of three or more segments whose first segment *starts* with ``eyJ`` (any JWS or JWE,
  the signature or the payload of either may be empty), as in ``Bearer eyJ...``;
* a token glued after other base64url characters (``jwt_eyJ...``, ``Bearer%20eyJ...``): the
  first segment *contains* ``eyJ`` and the second one starts with it too, a JSON header then a
  JSON payload. Honest text (a file name, a host, a hash) does not hold ``eyJ`` twice in that
  order across dots; a glued JWE, whose second segment is an encrypted key, is not caught.

The search is linear in the text's length: a candidate starts only where a base64url run
starts, and each run is scanned a bounded number of times (``eyJeyJeyJ...`` is never
rescanned from every ``eyJ``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_RUN = "[A-Za-z0-9_-]"
# At every start of a base64url run, the next three dot-separated runs (zero-width: candidates
# may overlap, so "host.eyJ...eyJ...sig" is read from "eyJ" too). Each run is read as the
# first, second and third of a candidate at most, so the search stays linear.
_CANDIDATE = re.compile(rf"(?<!{_RUN})(?=({_RUN}+)\.({_RUN}*)\.({_RUN}*))")
_MORE_SEGMENTS = re.compile(rf"(?:\.{_RUN}*)*")  # a JWE's fourth and fifth


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """Where each raw JWT is, with what it is glued to and every segment it has."""
    covered = 0
    for found in _CANDIDATE.finditer(text):
        header, second = found.group(1), found.group(2)
        if found.start() < covered or not (
                header.startswith("eyJ") and second
                or "eyJ" in header and second.startswith("eyJ")):
            continue
        more = _MORE_SEGMENTS.match(text, found.end(3))
        covered = more.end() if more else found.end(3)
        yield found.start(), covered


def contains_raw_jwt(text: str) -> bool:
    """True if ``text`` holds something shaped like a compact JWT (JWS or JWE)."""
    return next(_spans(text), None) is not None


def redact_raw_jwts(text: str, replacement: str) -> str:
    """``text`` with every raw JWT (with what it is glued to) replaced by ``replacement``."""
    parts, last = [], 0
    for start, end in _spans(text):
        parts += [text[last:start], replacement]
        last = end
    return "".join(parts) + text[last:] if parts else text
