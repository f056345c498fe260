"""End-to-end tests: the whole product, embedded and distributed (see ``_harness``)."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ is on sys.path (pytest's prepend import mode), where tests/mock_services (no __init__)
# would be imported as a namespace package shadowing the real `mock_services` (installed
# editable, found after sys.path). Put the repository first and drop any shadow (as
# tests/mock_services/conftest.py does).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("mock_services"), "__file__", "") is None:
    del sys.modules["mock_services"]

from e2e._fixtures import broker_url, distributed, e2e_redis_url

__all__ = ["broker_url", "distributed", "e2e_redis_url"]
