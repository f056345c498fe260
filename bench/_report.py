"""Tables as Markdown: printed, written raw (JSON and Markdown) to ``bench/raw/`` for every run,
and, only when asked (``--record``), put into ``bench/LATEST.md`` as each benchmark's latest
block, replacing the one before (``bench/RESULTS.md`` is the curated table chosen from them)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import redis

LATEST = Path(__file__).resolve().parent / "LATEST.md"
RAW = Path(__file__).resolve().parent / "raw"  # git-ignored


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self, level: int = 3) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) \
                + " |"

        out = [f"{'#' * level} {self.title}", "", line(self.columns),
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
        ("machine", (f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} "
                    f"{platform.release()}")),
    ]


def section(label: str, env: list[tuple[str, str]], tables: list[Table],
            command: str) -> str:
    head = [f"## {env[0][1]}: {label}", "", f"`{command}`", ""]
    head += [f"- {name}: {value}" for name, value in env]
    return "\n".join(head) + "\n\n" + "\n".join(t.markdown() for t in tables)


def write_raw(label: str, env: list[tuple[str, str]], tables: dict[str, list[Table]],
              command: str, params: Mapping[str, object], folder: Path = RAW) -> Path:
    """The whole run as JSON (every table by benchmark, the environment, the parameters) and as
    Markdown, in ``folder``; returns the JSON file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = re.sub(r"[^0-9]", "", env[0][1])[:14]
    path = folder / f"bench-{stamp}Z-{'-'.join(tables) or 'none'}"[:200]
    data = {"label": label, "command": command, "environment": dict(env),
            "params": {name: params.get(name) for name in tables},
            "tables": {name: [asdict(t) for t in produced] for name, produced in tables.items()}}
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    path.with_suffix(".md").write_text(
        section(label, env, [t for produced in tables.values() for t in produced], command))
    return json_path


def block(name: str, label: str, env: list[tuple[str, str]], tables: list[Table],
          command: str) -> str:
    """One benchmark's block of LATEST.md: its tables with when, where and what ran them."""
    head = [f"### {name}: {env[0][1]}: {label}", "", f"`{command}`", ""]
    head += [f"- {key}: {value}" for key, value in env if key != "code measured"]
    return "\n".join(head) + "\n\n" + "\n".join(t.markdown(level=4) for t in tables)


def _marks(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def record(blocks: dict[str, str], path: Path = LATEST) -> None:
    """Replace each named benchmark's block in ``path`` (or add it at the end); the curated
    text around the blocks is left as it is."""
    text = path.read_text()
    for name, body in blocks.items():
        start, end = _marks(name)
        new = f"{start}\n{body.rstrip()}\n{end}"
        if start in text and end in text:
            before, _, rest = text.partition(start)
            _, _, after = rest.partition(end)
            text = before + new + after
        else:
            text = text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text)
