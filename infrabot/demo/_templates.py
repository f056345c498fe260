"""The report's Jinja2 templates (``infrabot/demo/templates/``, shipped as package data).

Autoescaping is on for every template, and every ``{{ value }}`` is made display-safe first
(:func:`~orchestrator._display.display_safe`: control characters and bidirectional overrides show
as escapes; ``None`` shows as ``-``), then escaped for HTML text and attribute values alike. Only
:class:`~markupsafe.Markup` passes through unchanged, and the one filter here that makes it,
``|preformatted``, escapes each line it joins. The stylesheet and the two scripts are
templates with no expressions, included inline.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from orchestrator._display import display_safe


def _display_safe(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    return display_safe("-" if value is None else value)


def _preformatted(text: str) -> Markup:
    """Text for ``<pre>``: each line display-safe and escaped, joined by real newlines (which
    display-safety alone would show as ``\\n``)."""
    return Markup("\n").join(display_safe(line) for line in text.split("\n"))


def _num(value: float) -> str:
    """A coordinate or size in the SVG: one decimal."""
    return f"{value:.1f}"


ENVIRONMENT = Environment(
    loader=PackageLoader("infrabot.demo", "templates"), autoescape=True,
    finalize=_display_safe, undefined=StrictUndefined, keep_trailing_newline=True,
    trim_blocks=True, lstrip_blocks=True)
ENVIRONMENT.filters["num"] = _num
ENVIRONMENT.filters["preformatted"] = _preformatted


def render(name: str, **context: Any) -> str:
    return ENVIRONMENT.get_template(name).render(**context)


def source(name: str) -> str:
    """A template's text as shipped (the browser test loads the error beacon alone)."""
    loader = ENVIRONMENT.loader
    assert loader is not None
    return loader.get_source(ENVIRONMENT, name)[0]
