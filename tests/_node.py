"""Node 20 and an npm package installed from a folder's lock file, for the tests that drive a
real Node program (``tests/interop/node``: openid-client; ``tests/federation/node``:
oidc-provider). Skipped with the reason when Node or npm is absent, except on CI
(``CI=true``), where that is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must provide it (see .ci/run)")
    pytest.skip(reason)


def node_with(folder: Path, package: str) -> str:
    """The ``node`` binary (20 or later), with ``package`` installed in ``folder`` by
    ``npm ci`` from its lock file when it is missing."""
    binary, npm = shutil.which("node"), shutil.which("npm")
    if binary is None or npm is None:
        unavailable("node and npm (Node 20) are not installed")
    assert binary is not None and npm is not None
    major = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True,
                           timeout=30).stdout.strip().lstrip("v").split(".")[0]
    if int(major) < 20:
        unavailable(f"{package} needs Node 20 or later, found v{major}")
    if not (folder / "node_modules" / package).is_dir():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            unavailable(f"npm ci in {folder} failed: {done.stderr.strip()[-300:]}")
    return binary
