"""The report's templates: shipped with the package (a non-editable install has them), escaped
by Jinja2's autoescaping, and every value display-safe."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import infrabot.demo
from infrabot.demo._templates import ENVIRONMENT

ROOT = Path(__file__).parents[2]
TEMPLATES = Path(infrabot.demo.__file__).parent / "templates"


def test_every_template_is_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["infrabot.demo"]
    shipped = sorted(p.relative_to(TEMPLATES.parent).as_posix() for p in TEMPLATES.iterdir())
    assert {"templates/report.html", "templates/graph.svg"} <= set(shipped)
    assert [f for f in shipped if not any(fnmatch(f, p) for p in patterns)] == []
    assert sorted(ENVIRONMENT.list_templates()) == sorted(p.name for p in TEMPLATES.iterdir())


def test_values_are_escaped_and_display_safe_in_text_and_attributes() -> None:
    template = ENVIRONMENT.from_string('<p title="{{ v }}">{{ v }}</p>{{ nothing }}')
    hostile = "<script>\"x' \u202e\x1b[2K</script>"
    html = template.render(v=hostile, nothing=None)
    safe = "&lt;script&gt;&#34;x&#39; \\u202e\\u001b[2K&lt;/script&gt;"
    assert html == f'<p title="{safe}">{safe}</p>-'
