"""Reliability tests: killed workers and flaky services, with the real chain (see tests/e2e)."""

from __future__ import annotations

import sys
from pathlib import Path

# See tests/e2e/conftest.py: the real `mock_services`, not the tests/mock_services directory.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

from e2e._fixtures import distributed, e2e_redis_url

__all__ = ["distributed", "e2e_redis_url"]
