"""Tables as Markdown (printed, and appended to ``bench/RESULTS.md`` with the environment)."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import redis

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) \
                + " |"

        out = [f"### {self.title}", "", line(self.columns),
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


def us(value: float) -> str:
    return f"{value:,.1f} µs" if value < 10_000 else f"{value / 1000:,.2f} ms"


def ms(value: float) -> str:
    return f"{value:,.1f} ms"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def mib(value: float) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> str:
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                              capture_output=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, text=True, capture_output=True, timeout=10,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"


def redis_server_version(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return str(client.info("server").get("redis_version", "unknown"))
    except (redis.RedisError, OSError):
        return "not reachable"
    finally:
        client.close()


def environment(redis_url: str) -> list[tuple[str, str]]:
    import orchestrator

    code = Path(orchestrator.__file__).resolve().parent.parent
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("commit", _git()),
        ("code measured", str(code)),
        ("python", platform.python_version()),
        ("celery", _version("celery")),
        ("pyjwt", _version("PyJWT")),
        ("cryptography", _version("cryptography")),
        ("redis-py / hiredis / server",
         f"{_version('redis')} / {_version('hiredis')} / {redis_server_version(redis_url)}"),
        ("machine", f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} "
                    f"{platform.release()}"),
    ]


def section(label: str, env: list[tuple[str, str]], tables: list[Table],
            command: str) -> str:
    head = [f"## {env[0][1]}: {label}", "", f"`{command}`", ""]
    head += [f"- {name}: {value}" for name, value in env]
    return "\n".join(head) + "\n\n" + "\n".join(t.markdown() for t in tables)


def append(text: str, path: Path = RESULTS) -> None:
    if not path.exists():
        path.write_text("# Benchmark results\n\nEach section is one run of `python -m bench`, "
                        "appended by the run itself. See README.md for what each table "
                        "measures.\n\n")
    with path.open("a") as fp:
        fp.write("\n" + text)
