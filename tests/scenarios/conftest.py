"""Shared by the scenario tests: the real ``mock_services`` first on sys.path, and ``check``
invoked in-process through click's CliRunner."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest's prepend import mode puts tests/ on sys.path, where tests/mock_services (no __init__)
# would be imported as a namespace package shadowing the real `mock_services` (installed
# editable, found after sys.path). Put the repository first and drop any shadow.
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]
