"""Where ``infrabot serve`` is, for a process that performs hops.

serve writes its servers' URLs to ``endpoints.json`` in its state directory when it is ready
(replacing the file in one step) and removes it when it stops; it may listen on ports the OS
picked, different at each start. Without that file, the URLs are the configured ports.
A worker's runtime lives as long as its process, so it follows the file
(:class:`ServeEndpoints`): at the start of each hop it reads it again if it changed, and keeps
the last URLs read while it is missing (serve stopped: it comes back where it was, or writes a
new file). A hop sees one set of URLs from start to end, whichever thread of the process it
runs on and whatever other hops start meanwhile (``--pool threads``): its token's audience and its
call's URL never name two different serves.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path

from orchestrator.catalog import service_names
from orchestrator.config import Settings

# The URLs the hop running in this context took at its start (and the ServeEndpoints they are
# of): a context of its own per thread, copied into the work a hop hands to another thread.
_THIS_HOP: ContextVar[tuple[ServeEndpoints, Mapping[str, str]] | None] = ContextVar(
    "serve_urls_of_this_hop", default=None)


def configured_endpoints(settings: Settings) -> dict[str, str]:
    """The URLs of the configured ports (``INFRABOT_HOST``, the port settings)."""
    return {"auth": settings.auth_url, **{n: settings.service_url(n) for n in service_names()}}


def file_endpoints(path: Path) -> dict[str, str] | None:
    """The URLs ``path`` names, or None: no such file, or not one naming an auth server."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and "auth" in data:
        return {str(k): str(v) for k, v in data.items()}
    return None


def read_endpoints(settings: Settings) -> dict[str, str]:
    """``endpoints.json`` if ``infrabot serve`` wrote one, else the configured ports (read once)."""
    return file_endpoints(settings.endpoints_file) or configured_endpoints(settings)


class ServeEndpoints(Mapping[str, str]):
    """serve's URLs, following its ``endpoints.json``: :meth:`follow` (at each hop's start)
    checks the file (one ``stat``) and, if it changed since it was last read, reads it again;
    lookups in that hop's context (its thread, and work it hands to another with the context
    copied) give the URLs it found then, lookups elsewhere (a renewal thread) the newest any
    :meth:`follow` found. Until a file naming an auth server has
    been read: the configured ports. A missing file keeps the last URLs read; so does a file
    that is not valid (half written, no ``auth``), which is read again at the next
    :meth:`follow`. A change is seen by the file's inode, modification time and size (serve
    replaces the file; a copy written over it has a new modification time). Shared by the
    threads of a process: :meth:`follow` holds the lock and replaces the URLs whole."""

    def __init__(self, settings: Settings) -> None:
        self._path = settings.endpoints_file
        self._urls = configured_endpoints(settings)
        self._read: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the file read
        self._lock = threading.Lock()
        self._refresh()

    def follow(self) -> None:
        """Take serve's URLs as its ``endpoints.json`` says now, for the hop in this context."""
        _THIS_HOP.set((self, self._refresh()))

    def _refresh(self) -> Mapping[str, str]:
        """The newest URLs: the file read again if it changed since it was last read."""
        with self._lock:
            try:
                stat = os.stat(self._path)
            except OSError:  # serve is not running (or not ready): read whatever comes next
                self._read = None
                return self._urls
            found = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if found != self._read:
                urls = file_endpoints(self._path)
                if urls is not None:
                    self._urls, self._read = urls, found
            return self._urls

    def _now(self) -> Mapping[str, str]:
        held = _THIS_HOP.get()
        return held[1] if held is not None and held[0] is self else self._urls

    def __getitem__(self, name: str) -> str:
        return self._now()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    def __repr__(self) -> str:
        return f"ServeEndpoints({str(self._path)!r})"
