"""Processes the benchmarks and the end-to-end tests start: started in their own session,
stopped by pid, measured from ``/proc``.

Every process started through :class:`Processes` is stopped by :meth:`Processes.close` (SIGTERM
to every pid first, so they shut down together, then for each: SIGKILL to it if it outlives the
timeout and to any child it left behind, each by pid). Nothing here signals a process group or
a process by name. ``tests/e2e/_processes.py`` starts ``infrabot serve``/``worker`` through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MIB = 1024 * 1024


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without INFRABOT_* or proxy settings, plus ``extra``."""
    dropped = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INFRABOT_") and k.lower() not in dropped}
    # The caller's PYTHONPATH first: pointing it at another checkout benchmarks that code's
    # processes with these benchmarks (bench/README.md, "before and after").
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    env.update(extra)
    return env


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (``/proc/PID/status``) and ``Pss`` (``smaps_rollup``) of ``pid``
    in bytes; empty if the process is gone."""
    out: dict[str, int] = {}
    for path, names in (("status", ("VmRSS", "VmHWM")), ("smaps_rollup", ("Pss",))):
        try:
            text = Path(f"/proc/{pid}/{path}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name in names:
                out[name] = int(value.split()[0]) * 1024
    return out


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        if not self.handle.closed:
            self.handle.flush()
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        return children_of(self.pid)


@dataclass
class Processes:
    """The processes started here (logs in ``logs``, run in ``cwd``); a context manager that
    stops them all."""

    logs: Path
    cwd: Path = REPO
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}-{len(self.procs)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(argv, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                 stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        proc = Proc(name, popen, log, handle)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 20.0) -> None:
        children = children_of(proc.pid)
        if proc.alive():
            _signal(proc.pid, signal.SIGTERM)
        self._reap(proc, children, timeout)

    def close(self) -> None:
        """SIGTERM every process at once (a warm shutdown each), then reap them one by one."""
        children = {proc.pid: children_of(proc.pid) for proc in self.procs}
        for proc in self.procs:
            if proc.alive():
                _signal(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            self._reap(proc, children[proc.pid], 20.0)
        self.procs.clear()

    @staticmethod
    def _reap(proc: Proc, children: list[int], timeout: float) -> None:
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.popen.wait(5)
        deadline = time.monotonic() + 5
        for child in children:  # a prefork pool's children, if the parent left any behind
            while _exists(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _exists(child):
                _signal(child, signal.SIGKILL)
        if not proc.handle.closed:
            proc.handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exists(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
