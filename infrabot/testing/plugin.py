"""The ``infrabot`` pytest plugin (registered through the ``pytest11`` entry point).

Kept light at import: every pytest run that has the package installed loads it, so the system
itself (the web stack, Celery) is imported only when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from infrabot.testing._system import EmbeddedSystem

_HELP = "workflows directory (directory.yaml and workflows) for the infrabot_system fixture"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("infrabot", "InfraBot chain tests")
    group.addoption("--infrabot-workflows", default=None, metavar="DIR", help=_HELP)
    parser.addini("infrabot_workflows", _HELP, default=None)


def _workflows_dir(config: pytest.Config) -> Path | None:
    value = config.getoption("--infrabot-workflows") or config.getini("infrabot_workflows")
    if not value:
        return None
    path = Path(str(value))
    return path if path.is_absolute() else Path(config.rootpath) / path


@pytest.fixture
def infrabot_system(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSystem]:
    """An embedded InfraBot system for one test; stopped when the test ends."""
    # Deferred on purpose: the system's imports are heavy, and this module loads in every run.
    from infrabot.testing._system import embedded_system

    state = tmp_path_factory.mktemp("infrabot") / "state"
    with embedded_system(state, _workflows_dir(request.config)) as system:
        yield system
