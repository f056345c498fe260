"""The package rules of docs/architecture.md, checked on the source: imports run one way, and an
import inside a function says why it is there."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "agents", "mock_services", "infrabot")
# What each package may import, besides itself and third-party code.
ALLOWED = {
    "orchestrator": set(),
    "agents": {"orchestrator"},
    "mock_services": {"orchestrator"},
    "infrabot": {"orchestrator", "agents", "mock_services"},
}


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import of a module, and whether it sits inside a function."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, id(node) in inner


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""] if node.level == 0 else []


def _sources() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


def test_packages_import_only_downwards() -> None:
    wrong = []
    for package, path in _sources():
        for node, _ in _imports(ast.parse(path.read_text())):
            for target in _targets(node):
                top = target.split(".")[0]
                if top in PACKAGES and top != package and top not in ALLOWED[package]:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert wrong == []


def test_an_import_inside_a_function_says_why() -> None:
    unexplained = []
    for _, path in _sources():
        lines = path.read_text().splitlines()
        for node, inside in _imports(ast.parse("\n".join(lines))):
            if not inside:
                continue
            around = " ".join(lines[node.lineno - 2:node.end_lineno or node.lineno]).lower()
            if "deferred" not in around:
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unexplained == []


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The checks above read what they should: a function-level import of the agents is both."""
    tree = ast.parse("def f():\n    from agents.tasks import enqueue\n")
    found = list(_imports(tree))
    assert [(_targets(node), inside) for node, inside in found] == [(["agents.tasks"], True)]


def test_no_module_is_over_300_lines() -> None:
    """Small modules with one job each: a module that grows past 300 lines is split."""
    long = [f"{path.relative_to(ROOT)}: {n}" for _, path in _sources()
            if (n := len(path.read_text().splitlines())) > 300]
    assert long == []


def test_the_command_line_loads_a_command_only_when_it_runs() -> None:
    """``infrabot`` itself imports no command's module, nor the web stack, Celery or tracing's
    instrumentation; a command pays for its own imports (docs/architecture.md)."""
    probe = ("import sys, infrabot.cli; print(sorted(m for m in sys.modules if m.startswith("
             "('infrabot.', 'fastapi', 'celery', 'opentelemetry'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    assert loaded.strip() == "['infrabot.cli', 'infrabot.cli._common']"
