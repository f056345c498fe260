"""The agents' hop, driven one hop at a time against the real servers (see test_hop_resume)."""

from __future__ import annotations

import sys
from pathlib import Path

# The real `mock_services`, not tests/mock_services (see tests/e2e/conftest.py).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]
