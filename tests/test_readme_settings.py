"""README's configuration table and the settings object agree: every setting has its row, and
every row names a setting. A field added to :class:`~orchestrator.config.Settings` without a
row (or a row left behind by a removed one) fails here, by its variable's name."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from orchestrator.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = "| variable | default | meaning |"


def table_variables(text: str) -> set[str]:
    """The variables the configuration table's rows name in their first cell (``_X`` after an
    ``INFRABOT_`` name abbreviates ``INFRABOT_X``)."""
    lines = text.splitlines()
    start = lines.index(HEADER) + 2  # past the header and its rule
    names: set[str] = set()
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        for name in re.findall(r"`([A-Z_]+)`", line.split("|")[1]):
            names.add(f"INFRABOT{name}" if name.startswith("_") else name)
    return names


def setting_variables() -> dict[str, set[str]]:
    """Per setting, the environment variables it is read from."""
    out: dict[str, set[str]] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        out[name] = ({c for c in alias.choices if isinstance(c, str) and c.isupper()}
                     if isinstance(alias, AliasChoices) else {f"INFRABOT_{name.upper()}"})
    return out


def test_every_setting_has_its_row_and_every_row_a_setting() -> None:
    documented = table_variables(README.read_text(encoding="utf-8"))
    settings = setting_variables()
    assert [name for name, variables in settings.items() if not variables & documented] == []
    assert documented - set().union(*settings.values()) == set()


def test_the_table_is_read_as_its_rows_say() -> None:
    lines = ["intro", HEADER, "| --- | --- | --- |",
             "| `INFRABOT_AUTH_PORT`, `_GITHUB_PORT` | 8700 | ports |",
             "| `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_X`) | unset | `INFRABOT_NOT_HERE` |",
             "", "| `INFRABOT_AFTER_THE_TABLE` | 1 | no |"]
    assert table_variables("\n".join(lines)) == {"INFRABOT_AUTH_PORT", "INFRABOT_GITHUB_PORT",
                                     "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_X"}
