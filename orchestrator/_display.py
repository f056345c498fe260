"""Display-safe text: what any output of ours does with characters that are not printable.

Text that reaches us from outside (a resource name, a reason, a client id sent without
authentication) can carry C0 and C1 control characters (ESC sequences that move the cursor or
rewrite a terminal line, U+0085 NEXT LINE), bidirectional overrides and isolates (U+202A-U+202E,
U+2066-U+2069, U+200E/U+200F, U+061C) that make ``deny`` read as ``allow``, zero-width and other
format characters that hide differences between names, line and paragraph separators, and lone
surrogates that cannot even be encoded.

The rule is Python's own ``str.isprintable``: every character it calls not printable (Unicode
categories Cc, Cf, Cs, Co, Cn, Zl, Zp, and Zs other than the ASCII space) is shown as an escape
(``\\n``, ``\\t``, ``\\r``, else ``\\uXXXX``, a non-BMP character as its UTF-16 surrogate pair).
Those escapes are valid JSON escapes too, so the same function makes JSON text safe to view
(:func:`safe_json`) while a JSON parser still reads back the exact data.

The stores keep the exact text they were given (it is evidence, and the audit hash covers it);
every output neutralises it: the terminal tables (audit, runs, the demo story), JSON export,
and the HTML report (its templates apply :func:`display_safe` to every value before Jinja2's
autoescaping: ``infrabot/demo/_templates.py``; :func:`safe_html` is the same for HTML
written by hand).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    point = ord(char)
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def display_safe(text: object) -> str:
    """``text`` (``str()`` of anything) with every non-printable character shown as an escape.

    Idempotent, and the identity on printable text (checked at C speed first).
    """
    value = text if isinstance(text, str) else str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else _escape(c) for c in value)


def safe_json(value: Any, **options: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **options)`` with every non-printable character
    written as a JSON escape: the same data for a parser, nothing raw for a terminal.

    Only characters inside JSON strings can be non-printable (``indent`` newlines are kept).
    """
    text = json.dumps(value, ensure_ascii=False, **options)
    if "indent" not in options or options["indent"] is None:
        return display_safe(text)
    return "\n".join(display_safe(line) for line in text.split("\n"))


def safe_html(value: object) -> str:
    """Escaped for HTML text and attribute values, after :func:`display_safe`."""
    return escape(display_safe("-" if value is None else value), quote=True)
