"""Run the ``infrabot`` console script as a user would: a subprocess with a clean environment
(only the ``INFRABOT_*`` settings a test names), its output captured as text."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

INFRABOT = Path(sys.executable).with_name("infrabot")
COMPACT_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
SERVE_TIMEOUT = 30.0
WORKERS = 4  # concurrent invocations in run_all (a CLI process spends most of its time importing)


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``INFRABOT_*`` variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRABOT_")}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1")
    env.pop("COLUMNS", None)
    return {**env, **settings}


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout with every run of whitespace as one space (rich wraps at the terminal width)."""
        return " ".join(self.stdout.split())

    def ok(self) -> Result:
        assert self.returncode == 0, f"{self}"
        self.no_traceback()
        return self

    def no_traceback(self) -> None:
        assert "Traceback" not in self.stdout + self.stderr, f"{self}"

    def error_line(self) -> str:
        """The command failed with one line on stderr (``Error: ...``) and no traceback."""
        assert self.returncode != 0, f"expected a failure: {self}"
        self.no_traceback()
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), f"not one error line: {self}"
        return lines[0].removeprefix("Error: ")

    def json(self) -> object:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"infrabot {' '.join(self.args)} -> exit {self.returncode}\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")


def infrabot(*args: str, env: Mapping[str, str], cwd: Path | None = None,
             timeout: float = 60.0) -> Result:
    """``infrabot ARGS`` in ``env`` (from :func:`clean_env`); waits for it to exit."""
    done = subprocess.run([str(INFRABOT), *args], env=dict(env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


def run_all(calls: list[tuple[tuple[str, ...], Mapping[str, str]]]) -> list[Result]:
    """Independent ``infrabot`` invocations (args, env), run concurrently, results in order."""
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda call: infrabot(*call[0], env=call[1]), calls))


@contextmanager
def serving(state_dir: Path, env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """``infrabot serve --port-base 0`` on loopback; yields endpoints.json once written and
    stops the server by its pid (SIGTERM, then SIGKILL) on the way out."""
    log = state_dir.parent / f"{state_dir.name}-serve.log"
    path = state_dir / "endpoints.json"
    with log.open("wb") as handle:
        proc = subprocess.Popen([str(INFRABOT), "serve", "--port-base", "0"], env=dict(env),
                                cwd=state_dir.parent, stdin=subprocess.DEVNULL, stdout=handle,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + SERVE_TIMEOUT
            while not path.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"infrabot serve did not start:\n{log.read_text()}")
                time.sleep(0.05)
            yield json.loads(path.read_text())
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
