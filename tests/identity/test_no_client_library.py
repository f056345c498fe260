"""``orchestrator.identity`` is the pure core: it imports no client library (Redis, SQL, HTTP),
neither in its own code (any import statement, at module level or inside a function) nor
through what it imports, and it touches no file. The adapters live at the edge
(``orchestrator.registry``, ``orchestrator.keystore`` ...)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import orchestrator.identity
from orchestrator.registry import RedisRevocationStore, open_store

CLIENT_LIBRARIES = ("redis", "hiredis", "sqlite3", "_sqlite3", "psycopg", "psycopg_pool",
                    "httpx", "httpcore", "requests", "urllib3", "aiohttp", "celery", "kombu")
CORE = Path(orchestrator.identity.__file__).resolve().parent


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_of_the_core_imports_a_client_library() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 10
    found = {path.name: sorted(_imported_names(path) & set(CLIENT_LIBRARIES))
             for path in modules}
    assert {name: libs for name, libs in found.items() if libs} == {}


FILE_SYSTEM = ("os", "fcntl", "pathlib", "shutil", "tempfile", "io", "glob")


def test_no_module_of_the_core_touches_the_file_system() -> None:
    """Keys and the directory file are read and written by adapters (``orchestrator.keystore``,
    ``orchestrator.workflows.load_directory``); the core gets them as values."""
    found = {}
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        opens = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name) and node.func.id == "open"]
        modules = sorted(_imported_names(path) & set(FILE_SYSTEM))
        if modules or opens:
            found[path.name] = (modules, opens)
    assert found == {}


def test_importing_the_core_loads_no_client_library() -> None:
    """In a fresh interpreter: what ``import orchestrator.identity`` pulls in, transitively."""
    code = ("import json, sys; import orchestrator.identity; "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert loaded & set(CLIENT_LIBRARIES) == set()


def test_the_redis_registry_is_an_adapter_outside_the_core() -> None:
    assert not Path(sys.modules[RedisRevocationStore.__module__].__file__ or "").is_relative_to(
        CORE)
    assert open_store(None).remote is False
